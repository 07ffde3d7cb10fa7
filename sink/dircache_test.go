package sink

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// The cache keeps the most recently used handles; one evicted while a worker
// holds it stays open until released.
func TestDirCacheEviction(t *testing.T) {
	root, err := os.OpenRoot(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	c := newDirCache(root, 2)
	defer c.close()
	get := func(dir string) *dirRef {
		t.Helper()
		d, err := c.acquire(dir, true)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	held := get("a")
	c.release(get("b"))
	c.release(get("c")) // evicts a, the least recently used, which is held
	if !held.evicted {
		t.Fatal("a was not evicted")
	}
	if _, err := held.lstat("."); err != nil {
		t.Fatalf("an evicted handle in use was closed: %v", err)
	}
	c.release(held)
	if _, err := held.lstat("."); err == nil {
		t.Error("an evicted handle stayed open after its release")
	}

	b := get("b") // b is now the most recent; c the oldest
	c.release(b)
	c.release(get("d"))
	if _, err := b.lstat("."); err != nil || b.evicted {
		t.Errorf("b, used more recently than c, was evicted (%v)", err)
	}
}

// A new directory is made under its parent's handle, its parents too (each
// recorded as made, for prune), one found missing by a lookup is made by
// the next create all the same, and a directory whose name a file being
// written holds (NAME.part) is refused at any depth.
func TestDirCacheMakesDirectoriesUnderTheirParents(t *testing.T) {
	top := t.TempDir()
	root, err := os.OpenRoot(top)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	c := newDirCache(root, 8)
	defer c.close()
	if _, err := c.acquire("h/a/b", false); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("lookup of a missing directory: %v, want it not to exist", err)
	}
	if _, err := c.acquire("h", false); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("lookup of a missing directory: %v, want it not to exist", err)
	}
	d, err := c.acquire("h/a/b", true)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(top, "h/a/b")); err != nil || !fi.IsDir() {
		t.Fatalf("h/a/b not made: %v", err)
	}
	f, err := d.openFile("x", os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatalf("a file in the new directory: %v", err)
	}
	f.Close()
	if _, err := os.Stat(filepath.Join(top, "h/a/b/x")); err != nil {
		t.Fatalf("the file is not in h/a/b: %v", err)
	}
	c.release(d)
	c.mu.Lock()
	made := len(c.made)
	c.mu.Unlock()
	if made != 3 {
		t.Errorf("%d directories recorded as made, want 3 (h, h/a, h/a/b)", made)
	}
	if err := os.WriteFile(filepath.Join(top, "h/a/c"+PartSuffix), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.acquire("h/a/c/d", true); !errors.Is(err, ErrFileInWay) {
		t.Errorf("a directory where a file is being written: %v, want ErrFileInWay", err)
	}
	if _, err := os.Stat(filepath.Join(top, "h/a/c")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("h/a/c was made over the file being written: %v", err)
	}
}
