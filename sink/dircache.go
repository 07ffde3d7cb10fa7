package sink

import (
	"os"
	"sync"
)

// dirCache keeps directories under the sink's root open as *os.Root handles, so that
// per-file operations (open, stat, rename) resolve one path component against an
// open directory instead of walking the whole path again, and so that a directory
// is created once per run rather than once per file.
//
// It holds at most max idle handles; a handle in use is never closed under its user.
type dirCache struct {
	root *os.Root
	max  int

	mu sync.Mutex
	m  map[string]*dirRef
}

type dirRef struct {
	r       *os.Root
	refs    int
	evicted bool
}

func newDirCache(root *os.Root, max int) *dirCache {
	return &dirCache{root: root, max: max, m: make(map[string]*dirRef)}
}

// acquire returns the open directory dir ("" is the root itself), creating it and
// its parents first when create is set. The caller must release it.
func (c *dirCache) acquire(dir string, create bool) (*dirRef, error) {
	c.mu.Lock()
	if d := c.m[dir]; d != nil {
		d.refs++
		c.mu.Unlock()
		return d, nil
	}
	c.mu.Unlock()

	// Open outside the lock: directory creation must not serialize the workers.
	// Two workers racing for the same new directory both open it; one handle wins.
	r, err := c.open(dir, create)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if d := c.m[dir]; d != nil {
		r.Close()
		d.refs++
		return d, nil
	}
	if len(c.m) >= c.max {
		c.evictLocked()
	}
	d := &dirRef{r: r, refs: 1}
	c.m[dir] = d
	return d, nil
}

func (c *dirCache) open(dir string, create bool) (*os.Root, error) {
	if dir == "" {
		dir = "."
	} else if create {
		if err := c.root.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
	}
	return c.root.OpenRoot(dir)
}

// evictLocked drops about half of the cached handles; the ones still in use are
// closed by their last release.
func (c *dirCache) evictLocked() {
	for k, d := range c.m {
		delete(c.m, k)
		d.evicted = true
		if d.refs == 0 {
			d.r.Close()
		}
		if len(c.m) <= c.max/2 {
			return
		}
	}
}

func (c *dirCache) release(d *dirRef) {
	c.mu.Lock()
	d.refs--
	if d.refs == 0 && d.evicted {
		d.r.Close()
	}
	c.mu.Unlock()
}

// close closes every cached handle. No handle may be in use.
func (c *dirCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, d := range c.m {
		delete(c.m, k)
		d.r.Close()
	}
}
