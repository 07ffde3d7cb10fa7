package sink

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// The no-replace rename of systems without renameat2 or renameatx_np (link,
// then unlink) never replaces a file, and leaves one name when it renames.
func TestRenameByLink(t *testing.T) {
	s, dir := newSink(t, FileOptions{NoSync: true})
	d, err := s.dirs.acquire("", false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.dirs.release(d)
	os.WriteFile(filepath.Join(dir, "a.part"), []byte("new"), 0o644)
	os.WriteFile(filepath.Join(dir, "b"), []byte("old"), 0o644)
	if err := d.renameByLink("a.part", "b"); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("onto an existing file: %v, want ErrExist", err)
	}
	for name, want := range map[string]string{"a.part": "new", "b": "old"} {
		if got, _ := os.ReadFile(filepath.Join(dir, name)); string(got) != want {
			t.Errorf("%s = %q after a refused rename, want %q", name, got, want)
		}
	}
	if err := d.renameByLink("a.part", "a"); err != nil {
		t.Fatal(err)
	}
	if exists(t, filepath.Join(dir, "a.part")) {
		t.Error("a.part still there after the rename")
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(dir, "a"), &st); err != nil || st.Nlink != 1 {
		t.Errorf("a: %d links, %v; want 1", st.Nlink, err)
	}
}

// The group commit without syncfs (syncFiles, for other systems than Linux)
// fsyncs every file and flushes each device once; a failed flush fails the
// files it covers, and only those.
func TestSyncFilesFallback(t *testing.T) {
	s, dir := newSink(t, FileOptions{NoSync: true, Named: true})
	var files, devices []string
	failFile := ""
	origFile, origDevice := syncFile, syncDevice
	t.Cleanup(func() { syncFile, syncDevice = origFile, origDevice })
	syncFile = func(f *os.File) error {
		files = append(files, f.Name())
		if f.Name() == failFile {
			return syscall.EIO
		}
		return origFile(f)
	}
	syncDevice = func(f *os.File) error {
		devices = append(devices, f.Name())
		return origDevice(f)
	}
	var batch []commitReq
	for _, name := range []string{"a", "b", "c"} {
		w, err := s.create(name, "http://h/"+name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(name))
		batch = append(batch, commitReq{w: w}, commitReq{}) // a Flush barrier too
	}
	failFile = "b" + PartSuffix
	syncFiles(batch)
	if len(files) != 3 || len(devices) != 1 {
		t.Errorf("fsync of %v and device flushes on %v: want each file once, one device once", files, devices)
	}
	for _, r := range batch {
		if r.w == nil {
			continue
		}
		err := r.w.rename(r.w.syncErr)
		if r.w.final == "b" {
			if !errors.Is(err, syscall.EIO) || exists(t, filepath.Join(dir, "b")) {
				t.Errorf("b, whose fsync failed: commit %v", err)
			}
		} else if got, _ := os.ReadFile(filepath.Join(dir, r.w.final)); err != nil || string(got) != r.w.final {
			t.Errorf("%s: %q, %v", r.w.final, got, err)
		}
	}
}
