package sink

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// Where a directory's filesystem has no O_TMPFILE (the open fails with EINVAL
// or EOPNOTSUPP), files are staged as NAME.part from then on.
func TestUnnamedUnsupported(t *testing.T) {
	s, dir := sinkWithoutTmpfile(t, FileOptions{})
	w, err := s.Create("f", "http://h/f")
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "body")
	if !exists(t, filepath.Join(dir, "f"+PartSuffix)) || !s.noUnnamed.Load() {
		t.Error("not staged as f.part where O_TMPFILE failed")
	}
	if err := commit(t, w); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "f")); string(got) != "body" {
		t.Errorf("got %q", got)
	}
}

// Once a directory without O_TMPFILE is met, the sink no longer looks for
// company before each file: every name is looked up from then on.
func TestUnnamedUnsupportedLooksNamesUp(t *testing.T) {
	s, dir := sinkWithoutTmpfile(t, FileOptions{NoSync: true})
	w, err := s.Create("f", "http://h/f")
	if err != nil {
		t.Fatal(err)
	}
	w.Discard()
	if err := os.WriteFile(filepath.Join(dir, "planted"), []byte("p"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat("planted"); err != nil {
		t.Errorf("Stat(planted) = %v, want the file found", err)
	}
}

// Where the directories fold case ("A" and "a" one entry), names are always
// looked up: the record of exact names made cannot tell. (This kernel may
// have no case folding: foldsCase stands in for its ioctl.)
func TestKnownNotKeptWhereCaseFolds(t *testing.T) {
	real := foldsCase
	t.Cleanup(func() { foldsCase = real })
	foldsCase = func(int) bool { return true }
	s, _ := newSink(t, FileOptions{NoSync: true})
	if s.dirs.known != nil {
		t.Error("names made are recorded in a directory that folds case")
	}
}

// sinkWithoutTmpfile is a new sink whose O_TMPFILE opens fail from now on,
// as on a filesystem without it (EINVAL: O_TMPFILE needs write access).
func sinkWithoutTmpfile(t *testing.T, opts FileOptions) (*File, string) {
	t.Helper()
	s, dir := newSink(t, opts)
	if !s.unnamedOK {
		t.Skip("no O_TMPFILE here")
	}
	real := unnamedFlags
	t.Cleanup(func() { unnamedFlags = real })
	unnamedFlags = unix.O_RDONLY | unix.O_TMPFILE
	return s, dir
}
