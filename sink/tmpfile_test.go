package sink

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/sys/unix"
)

func exists(t *testing.T, p string) bool {
	t.Helper()
	_, err := os.Lstat(p)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

// A small new file is staged unnamed: no NAME.part appears at any point, and
// the final name appears, complete and with its origin, only at the commit.
func TestUnnamedSmallFile(t *testing.T) {
	s, dir := newSink(t, FileOptions{})
	if !s.unnamedOK {
		t.Skip("no O_TMPFILE here")
	}
	w, err := s.Create("d/small", "http://h/small")
	if err != nil {
		t.Fatal(err)
	}
	w.SetValidator(`"v"`, 5000)
	w.Write(bytes.Repeat([]byte("x"), 5000))
	if exists(t, filepath.Join(dir, "d/small"+PartSuffix)) || exists(t, filepath.Join(dir, "d/small")) {
		t.Fatal("a name appeared before the commit")
	}
	if err := commit(t, w); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "d/small")); len(got) != 5000 {
		t.Fatalf("final file holds %d bytes", len(got))
	}
	if info, _ := s.Stat("d/small"); info.Origin != "http://h/small" {
		t.Errorf("origin %q", info.Origin)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "d")); len(ents) != 1 {
		t.Errorf("directory holds %v", ents)
	}
}

// A file announced, or found, bigger than unnamedMax gets its NAME.part (locked)
// as soon as that is known: another process then sees it and waits for it.
func TestUnnamedNamedWhenBig(t *testing.T) {
	s, dir := newSink(t, FileOptions{})
	if !s.unnamedOK {
		t.Skip("no O_TMPFILE here")
	}
	announced, _ := s.Create("a", "http://h/a")
	announced.SetValidator(`"v"`, unnamedMax+1)
	if !exists(t, filepath.Join(dir, "a"+PartSuffix)) {
		t.Error("no a.part once the length was announced over unnamedMax")
	}
	found, _ := s.Create("b", "http://h/b")
	found.SetValidator("", -1)
	found.Write(make([]byte, unnamedMax))
	if exists(t, filepath.Join(dir, "b"+PartSuffix)) {
		t.Error("b.part before more than unnamedMax bytes")
	}
	found.Write([]byte("1"))
	if !exists(t, filepath.Join(dir, "b"+PartSuffix)) {
		t.Error("no b.part after more than unnamedMax bytes")
	}
	// Named, they are locked as any staging file: another sink cannot take them.
	other, err := NewFile(dir, FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.Create("a", "http://h/a"); !errors.Is(err, ErrLocked) {
		t.Errorf("another sink's Create: %v, want ErrLocked", err)
	}
	for _, w := range []Writer{announced, found} {
		if err := commit(t, w); err != nil {
			t.Fatal(err)
		}
	}
	if exists(t, filepath.Join(dir, "a"+PartSuffix)) || !exists(t, filepath.Join(dir, "a")) || !exists(t, filepath.Join(dir, "b")) {
		t.Error("commit did not rename the named staging files")
	}
}

// Stopped with bytes worth resuming, an unnamed file is named and its progress
// saved, as a .part file's is: the next Create resumes it.
func TestUnnamedAbortSavesProgress(t *testing.T) {
	s, dir := newSink(t, FileOptions{})
	if !s.unnamedOK {
		t.Skip("no O_TMPFILE here")
	}
	w, _ := s.Create("f", "http://h/f")
	w.SetValidator(`"v1"`, 10000)
	w.Write(bytes.Repeat([]byte("a"), 3000))
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	if !exists(t, filepath.Join(dir, "f"+PartSuffix)) {
		t.Fatal("no f.part after Abort")
	}
	w, err := s.Create("f", "http://h/f")
	if err != nil {
		t.Fatal(err)
	}
	if p := w.Partial(); p.Offset != 3000 || p.Validator != `"v1"` || p.Total != 10000 {
		t.Fatalf("Partial %+v, want 3000 bytes under \"v1\"", p)
	}
	w.Write(bytes.Repeat([]byte("b"), 7000))
	if err := commit(t, w); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(dir, "f"))
	if want := strings.Repeat("a", 3000) + strings.Repeat("b", 7000); string(got) != want {
		t.Errorf("resumed file differs (%d bytes)", len(got))
	}
	// Nothing to resume (no validator): nothing is left.
	w, _ = s.Create("g", "http://h/g")
	w.Write([]byte("partial"))
	w.Abort()
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("after an Abort with nothing to resume the directory holds %v", ents)
	}
}

// The commit of an unnamed file never replaces a file of another origin (a link
// cannot), replaces one of the same origin, and replaces anything after Replace.
func TestUnnamedCommitOverExisting(t *testing.T) {
	s, dir := newSink(t, FileOptions{})
	if !s.unnamedOK {
		t.Skip("no O_TMPFILE here")
	}
	put := func(name, origin, body string) {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o644)
		if origin != "" {
			unix.Setxattr(p, OriginAttr, []byte(origin), 0)
		}
	}
	write := func(name, origin string, replace bool) error {
		w, err := s.Create(name, origin)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, "new")
		if replace {
			w.Replace()
		}
		return commit(t, w)
	}
	put("other", "http://h/other", "old")
	if err := write("other", "http://h/mine", false); !errors.Is(err, ErrTaken) {
		t.Errorf("commit over another origin's file: %v, want ErrTaken", err)
	}
	put("same", "http://h/same", "old")
	if err := write("same", "http://h/same", false); err != nil {
		t.Errorf("commit over the same origin's file: %v", err)
	}
	put("forced", "http://h/x", "old")
	if err := write("forced", "http://h/forced", true); err != nil {
		t.Errorf("commit with Replace: %v", err)
	}
	for name, want := range map[string]string{"other": "old", "same": "new", "forced": "new"} {
		if got, _ := os.ReadFile(filepath.Join(dir, name)); string(got) != want {
			t.Errorf("%s holds %q, want %q", name, got, want)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 3 {
		t.Errorf("directory holds %v", ents)
	}
}

// With another haul process (here: another sink) on the directory, new files
// are staged as NAME.part, so that each sees, and waits for, the other's.
func TestUnnamedOnlyWhenAlone(t *testing.T) {
	s, dir := newSink(t, FileOptions{})
	if !s.unnamedOK {
		t.Skip("no O_TMPFILE here")
	}
	other, err := NewFile(dir, FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, sk := range []*File{s, other} {
		w, err := sk.Create("x"+filepath.Base(sk.dir), "http://h/x")
		if err != nil {
			t.Fatal(err)
		}
		if w.(*fileWriter).tmp {
			t.Errorf("staged unnamed with another sink on the directory")
		}
		w.Discard()
	}
	other.Close()
	w, _ := s.Create("y", "http://h/y")
	if !w.(*fileWriter).tmp {
		t.Errorf("staged as y.part once alone again")
	}
	w.Discard()
	s2, _ := newSink(t, FileOptions{Named: true})
	w, _ = s2.Create("z", "http://h/z")
	if w.(*fileWriter).tmp {
		t.Errorf("staged unnamed with FileOptions.Named")
	}
	w.Discard()
}

// A directory is not created where a file of its name is staged unnamed (the
// tree layout can map one URL to "a" and another to "a/b"): the first wins, as
// with a NAME.part.
func TestUnnamedFileInWay(t *testing.T) {
	s, _ := newSink(t, FileOptions{})
	if !s.unnamedOK {
		t.Skip("no O_TMPFILE here")
	}
	w, _ := s.Create("a", "http://h/a")
	if _, err := s.Create("a/b", "http://h/a/b"); !errors.Is(err, ErrFileInWay) {
		t.Errorf("Create(a/b) while a is staged: %v, want ErrFileInWay", err)
	}
	if err := commit(t, w); err != nil {
		t.Fatal(err)
	}
}

// prune removes only what is empty and unused: never a directory another
// worker holds (even through a handle evicted from the cache) or is opening.
func TestPruneNeverUnderAWorker(t *testing.T) {
	s, dir := newSink(t, FileOptions{})
	c := s.dirs
	a, err := c.acquire("p/q", true)
	if err != nil {
		t.Fatal(err)
	}
	// Another worker is opening p/q (acquire counts it before it opens).
	c.mu.Lock()
	c.inUse["p/q"]++
	c.mu.Unlock()
	c.release(a)
	c.prune("p/q")
	if !exists(t, filepath.Join(dir, "p/q")) {
		t.Fatal("pruned a directory another worker was opening")
	}
	c.mu.Lock()
	c.doneWithLocked("p/q")
	c.mu.Unlock()

	// A worker holds p/q through a handle the cache has since evicted.
	b, _ := c.acquire("p/q", true)
	c.mu.Lock()
	c.lru.Purge() // evicts every handle
	c.mu.Unlock()
	c.prune("p/q")
	if !exists(t, filepath.Join(dir, "p/q")) {
		t.Fatal("pruned a directory held through an evicted handle")
	}
	c.release(b)
	c.prune("p/q")
	if exists(t, filepath.Join(dir, "p")) {
		t.Error("p/q and p, created here and empty, were not pruned once unused")
	}
}

// A check that found the process alone stands for aloneFor: another process
// that starts on the directory is seen once that time has passed, or at once
// by a check of its own.
func TestPresenceAloneStandsBriefly(t *testing.T) {
	dir := t.TempDir()
	open := func() *presence {
		f, err := os.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		return newPresence(f)
	}
	synctest.Test(t, func(t *testing.T) {
		p := open()
		defer p.close()
		if !p.lately() {
			t.Fatal("not alone on a directory of its own")
		}
		q := open()
		defer q.close()
		if q.alone() { // takes its shared lock: company for p
			t.Fatal("the second one alone")
		}
		if !p.lately() {
			t.Error("company seen before aloneFor passed: want the last check to stand")
		}
		time.Sleep(aloneFor)
		if p.lately() {
			t.Error("company not seen once aloneFor passed")
		}
		p.aloneUntil.Store(int64(time.Since(p.start) + time.Hour))
		if p.alone() || p.lately() {
			t.Error("alone, or lately, after a check that saw company")
		}
	})
}
