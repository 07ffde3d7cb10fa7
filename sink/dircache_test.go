package sink

import (
	"os"
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
