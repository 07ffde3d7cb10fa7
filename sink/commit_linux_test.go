package sink

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

func devOf(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return uint64(st.Dev)
}

// recordSyncFS records the filesystem (st_dev) of each syncfs.
func recordSyncFS(t *testing.T) func() map[uint64]int {
	t.Helper()
	var mu sync.Mutex
	synced := make(map[uint64]int)
	orig := syncFS
	syncFS = func(f *os.File) error {
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			return err
		}
		mu.Lock()
		synced[uint64(st.Dev)]++
		mu.Unlock()
		return orig(f)
	}
	t.Cleanup(func() { syncFS = orig })
	return func() map[uint64]int {
		mu.Lock()
		defer mu.Unlock()
		return synced
	}
}

// A filesystem mounted inside the sink's directory is flushed too before its
// files are renamed, not only the directory's own.
func TestGroupCommitSyncsEveryFilesystem(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o755)
	if err := unix.Mount("tmpfs", sub, "tmpfs", 0, "size=4m"); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(sub, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", sub, err)
		}
	})
	top, inner := devOf(t, dir), devOf(t, sub)
	if top == inner {
		t.Skip("the tmpfs has the directory's device number")
	}
	s, err := NewFile(dir, FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	synced := recordSyncFS(t)

	names := []string{"a", "sub/b", "sub/c/d", "e"}
	errs := make(chan error, len(names))
	for _, name := range names {
		w, err := s.Create(name, "http://h/"+name)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(w, "body of %s", name)
		w.Commit(func(err error) { errs <- err })
	}
	s.Flush()
	for range names {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range names {
		if got, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(got) != "body of "+name {
			t.Errorf("%s: %q, %v", name, got, err)
		}
	}
	got := synced()
	if got[top] == 0 || got[inner] == 0 || len(got) != 2 {
		t.Errorf("syncfs by device %v, want both %d (the directory's) and %d (the tmpfs at sub)", got, top, inner)
	}
}
