package sink

import (
	"errors"
	"io/fs"
	"os"
	"path"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"golang.org/x/sys/unix"
)

// dirCache keeps directories under the sink's root open, so that per-file
// operations (open, stat, rename) resolve one path component against an open
// directory instead of walking the whole path again, and so that a directory is
// created once per run rather than once per file.
//
// Directories are opened through the os.Root, which refuses any path (or
// symbolic link) that leads outside it. The per-file operations then use the
// *at system calls on that directory with a single name component, no slash, and
// never follow a symbolic link at that component (O_NOFOLLOW,
// AT_SYMLINK_NOFOLLOW; renameat and unlinkat act on links themselves), so they
// cannot leave the directory either. They also skip what os.Root and os.File
// would add per call (a second walk, an lstat before rename, a poller
// registration per file): a few system calls per file, which counts at 10,000
// small files a second.
//
// It keeps the max most recently used handles (golang-lru's simplelru, used
// under mu, so that a lookup and its refs++ are one step), besides the sink's
// directory itself; a handle evicted while in use is closed by its last
// release, never under its user. A directory is opened (or created) under its
// parent's handle, one component at a time (openAt), its parents taken from
// the cache the same way.
//
// The handles open at once are the cached ones and those evicted while in
// use: a writer holds its directory from Create to its commit, so at most max
// plus the writers and the commits waiting for the flush.
type dirCache struct {
	root *os.Root

	mu  sync.Mutex
	lru *simplelru.LRU[string, *dirRef]
	top *dirRef // the sink's directory itself, kept open apart from lru: every directory's first parent

	umu     sync.Mutex
	unnamed map[string]int // files staged unnamed (no NAME.part), by path: see checkNoPart

	made  map[string]bool // directories this process created that hold no file of its yet (under mu)
	inUse map[string]int  // acquires not yet released, by directory (under mu)
	// missing are directories just found not to exist (under mu), bounded
	// by maxMissing: the Create that follows the Stat of a file in a new
	// directory makes it without looking for it again.
	missing map[string]struct{}

	known    *known // the names this process made (nil: not kept, see known)
	topFresh bool   // the top held only names in known when the sink opened
}

// prune removes dir, and its parents, where this process created them and
// nothing is in them: what a failed entry leaves, which would otherwise stay
// behind empty (wget -x leaves none) and could later block a file of that name.
// A directory in use, or one that existed before, is never removed.
func (c *dirCache) prune(dir string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for dir != "" && c.made[dir] {
		if c.inUse[dir] > 0 {
			return // a worker has it, or is opening it (evicted handles included)
		}
		if err := c.root.Remove(dir); err != nil {
			return // not empty (another entry's file), or gone
		}
		delete(c.made, dir)
		c.lru.Remove(dir) // not in use: evict closes it
		dir = parentDir(dir)
	}
}

// parentDir is dir's parent in the sink ("" for the top).
func parentDir(dir string) string {
	if p := path.Dir(dir); p != "." {
		return p
	}
	return ""
}

// settled records that dir holds a file: it and its parents are no longer
// candidates for prune.
func (c *dirCache) settled(dir string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for ; dir != "" && c.made[dir]; dir = parentDir(dir) {
		delete(c.made, dir)
	}
}

// stagingUnnamed records (n = 1) or forgets (n = -1) a file staged unnamed.
func (c *dirCache) stagingUnnamed(path string, n int) {
	c.umu.Lock()
	defer c.umu.Unlock()
	if c.unnamed == nil {
		c.unnamed = make(map[string]int)
	}
	if c.unnamed[path] += n; c.unnamed[path] <= 0 {
		delete(c.unnamed, path)
	}
}

func (c *dirCache) isStagingUnnamed(path string) bool {
	c.umu.Lock()
	defer c.umu.Unlock()
	return c.unnamed[path] > 0
}

// maxMissing bounds dirCache.missing: a few per worker.
const maxMissing = 1024

// noteMissing records that dir was just found not to exist.
func (c *dirCache) noteMissing(dir string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.missing == nil || len(c.missing) >= maxMissing {
		c.missing = make(map[string]struct{})
	}
	c.missing[dir] = struct{}{}
}

// wasMissing reports (once) whether dir was recently found not to exist.
func (c *dirCache) wasMissing(dir string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.missing[dir]; ok {
		delete(c.missing, dir)
		return true
	}
	return false
}

type dirRef struct {
	f       *os.File // the open directory, or nil: fd alone (opened by openAt)
	fd      int
	dev     uint64 // its filesystem (st_dev): its files' too, for the group commit
	refs    int
	evicted bool // out of the cache: the last release closes it
	path    string
	fresh   bool // every entry in it was made by this process, and recorded in known (which is kept)
}

func newDirCache(root *os.Root, max int) *dirCache {
	c := &dirCache{root: root, inUse: make(map[string]int)}
	c.lru, _ = simplelru.NewLRU(max, evict) // max > 0: NewFile keeps it at 8 or more
	return c
}

// evict is called, under mu, for a handle leaving the cache.
func evict(_ string, d *dirRef) {
	d.evicted = true
	if d.refs == 0 {
		d.close()
	}
}

func (d *dirRef) close() {
	if d.f != nil {
		d.f.Close()
	} else {
		unix.Close(d.fd)
	}
}

// acquire returns the open directory dir ("" is the root itself), creating it and
// its parents first when create is set. The caller must release it.
func (c *dirCache) acquire(dir string, create bool) (*dirRef, error) {
	c.mu.Lock()
	// In use from now until release, even while it is being opened: prune
	// never removes it under a worker.
	c.inUse[dir]++
	if dir == "" && c.top != nil {
		c.top.refs++
		c.mu.Unlock()
		return c.top, nil
	}
	if d, ok := c.lru.Get(dir); ok {
		d.refs++
		c.mu.Unlock()
		return d, nil
	}
	c.mu.Unlock()

	// Open outside the lock: directory creation must not serialize the workers.
	// Two workers racing for the same new directory both open it; one handle wins.
	d, err := c.openAt(dir, create)
	if d == nil && err == nil {
		d, err = c.openRoot(dir, create)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.doneWithLocked(dir)
		return nil, err
	}
	if dir == "" {
		if c.top != nil {
			d.close()
			c.top.refs++
			return c.top, nil
		}
		d.fresh = c.topFresh
		c.top = d
		return d, nil
	}
	if old, ok := c.lru.Get(dir); ok {
		d.close()
		old.refs++
		return old, nil
	}
	c.lru.Add(dir, d) // evicts the least recently used handle when full
	return d, nil
}

// openRoot opens dir through the os.Root (creating it and its parents first
// when create is set): the way for the top directory, and for a path through
// a symbolic link, which the Root follows as long as it stays inside.
func (c *dirCache) openRoot(dir string, create bool) (*dirRef, error) {
	f, err := c.open(dir, create)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, err
	}
	return &dirRef{f: f, fd: int(f.Fd()), dev: uint64(st.Dev), refs: 1, path: dir}, nil
}

// openAt opens dir under its parent's handle (acquired, so opened or created
// the same way in turn), creating it when create is set: one component, with
// openat(O_DIRECTORY|O_NOFOLLOW) and mkdirat, a few system calls where the
// Root walks the whole path again and stats the result. It returns nil and
// no error when dir is the top directory, or a symbolic link or not a
// directory is on the way: openRoot then decides. A directory it creates
// itself is recorded as made (see prune), and refused where a file of the
// same name is being written (see mkdirs).
func (c *dirCache) openAt(dir string, create bool) (*dirRef, error) {
	if dir == "" {
		return nil, nil
	}
	parent, name := parentDir(dir), path.Base(dir)
	p, err := c.acquire(parent, create)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &fs.PathError{Op: "open", Path: dir, Err: syscall.ENOENT}
		}
		c.distrust() // the Root's walk may go through a symbolic link (see linked)
		return nil, nil
	}
	defer c.release(p)
	made := false
	for attempt := 0; ; attempt++ {
		var fd int
		var err error
		if attempt == 0 && (create && c.wasMissing(dir) || c.absent(p, name)) {
			err = unix.ENOENT // make it first: mkdirat says if it is there after all
		} else {
			err = ignoringEINTR(func() (err error) {
				fd, err = unix.Openat(p.fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
				return err
			})
		}
		if err == nil {
			dev := p.dev // a directory just made is on its parent's filesystem
			if !made {
				var st unix.Stat_t
				if err := unix.Fstat(fd, &st); err != nil {
					unix.Close(fd)
					return nil, &fs.PathError{Op: "stat", Path: dir, Err: err}
				}
				dev = uint64(st.Dev) // it may be a mount point
			}
			// A directory made in one that folds case folds case too; in a
			// fresh one it cannot (see knowTop).
			fresh := made && c.known != nil && (p.fresh || !foldsCase(fd))
			return &dirRef{fd: fd, dev: dev, refs: 1, path: dir, fresh: fresh}, nil
		}
		if err == unix.ELOOP || err == unix.ENOTDIR {
			c.linked(p, name)
			return nil, nil
		}
		// Another worker's prune may remove it between mkdirat and openat:
		// once more, as in open.
		if err == unix.ENOENT && !create {
			c.noteMissing(dir)
		}
		if err != unix.ENOENT || !create || attempt > 1 {
			return nil, &fs.PathError{Op: "open", Path: dir, Err: err}
		}
		if c.isStagingUnnamed(dir) {
			return nil, &fs.PathError{Op: "mkdir", Path: dir, Err: ErrFileInWay}
		}
		if !c.absent(p, name+PartSuffix) {
			if _, err := p.lstat(name + PartSuffix); err == nil {
				return nil, &fs.PathError{Op: "mkdir", Path: dir, Err: ErrFileInWay}
			}
		}
		c.creating(parent, name)
		err = ignoringEINTR(func() error { return unix.Mkdirat(p.fd, name, 0o755) })
		if err == nil {
			c.mu.Lock()
			if c.made == nil {
				c.made = make(map[string]bool)
			}
			c.made[dir] = true
			c.mu.Unlock()
		} else if err != unix.EEXIST { // EEXIST: another worker made it meanwhile
			return nil, &fs.PathError{Op: "mkdir", Path: dir, Err: err}
		}
		made = err == nil
	}
}

// absent reports whether name certainly does not exist in d: d holds only
// entries this process made, and name is not one of them (see known).
func (c *dirCache) absent(d *dirRef, name string) bool {
	return d.fresh && c.known.trust.Load() && c.known.absent(d.path, name) // fresh: known is kept
}

// creating records, before the system call, that name is made in dir.
func (c *dirCache) creating(dir, name string) {
	if c.known != nil {
		c.known.add(dir, name)
	}
}

// linked stops answering from known if name in d is a symbolic link: the
// entries made through it are recorded under the link's path, not under the
// directory it leads to (the sink's own, or one made later, which counts as
// fresh), and a lookup there would not find them.
func (c *dirCache) linked(d *dirRef, name string) {
	if c.known == nil || !c.known.trust.Load() {
		return
	}
	if st, err := d.lstat(name); err != nil || st.Mode&unix.S_IFMT == unix.S_IFLNK {
		c.distrust()
	}
}

// distrust stops answering from known: another process may write here.
func (c *dirCache) distrust() {
	if c.known != nil {
		c.known.trust.Store(false)
	}
}

// doneWithLocked ends one use of the directory dir (see inUse).
func (c *dirCache) doneWithLocked(dir string) {
	if c.inUse[dir]--; c.inUse[dir] <= 0 {
		delete(c.inUse, dir)
	}
}

func (c *dirCache) open(dir string, create bool) (*os.File, error) {
	if dir == "" {
		return c.root.Open(".")
	}
	var f *os.File
	for attempt := 0; ; attempt++ {
		var err error
		if create {
			err = c.mkdirs(dir)
		}
		if err == nil {
			f, err = c.root.Open(dir)
		}
		if err == nil {
			break
		}
		// Another worker's prune may have removed a parent just created: once
		// more.
		if !create || attempt > 0 || !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	if fi, err := f.Stat(); err != nil || !fi.IsDir() {
		f.Close()
		return nil, &fs.PathError{Op: "open", Path: dir, Err: syscall.ENOTDIR}
	}
	return f, nil
}

// mkdirs creates dir and its missing parents, recording those it created (see
// prune). It refuses to create a directory where a file of the same name is
// being written (NAME.part exists, or it is staged unnamed): the tree layout can
// map one URL to a file "a" and another to a file inside "a/". Whichever comes
// first wins; without this check a pending commit of "a" would fail after "a/"
// was created.
func (c *dirCache) mkdirs(dir string) error {
	for i := 0; i <= len(dir); i++ {
		if i < len(dir) && dir[i] != '/' {
			continue
		}
		p := dir[:i]
		if _, err := c.root.Lstat(p); err == nil {
			continue
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if _, err := c.root.Lstat(p + PartSuffix); err == nil || c.isStagingUnnamed(p) {
			return &fs.PathError{Op: "mkdir", Path: p, Err: ErrFileInWay}
		}
		// p is the first missing one: create it and the rest.
		made := func(f func(string)) { // p and each directory below it, down to dir
			for j := i; j <= len(dir); j++ {
				if j == len(dir) || dir[j] == '/' {
					f(dir[:j])
				}
			}
		}
		made(func(d string) { c.creating("", d) })
		if err := c.root.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		c.mu.Lock()
		if c.made == nil {
			c.made = make(map[string]bool)
		}
		made(func(d string) { c.made[d] = true })
		c.mu.Unlock()
		return nil
	}
	return nil
}

func (c *dirCache) release(d *dirRef) {
	c.mu.Lock()
	c.doneWithLocked(d.path)
	d.refs--
	if d.refs == 0 && d.evicted {
		d.close()
	}
	c.mu.Unlock()
}

// close closes every cached handle. No handle may be in use.
func (c *dirCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lru.Purge()
	if c.top != nil {
		c.top.close()
		c.top = nil
	}
}

// The per-file operations. name is always a single component (no slash).

func (d *dirRef) lstat(name string) (unix.Stat_t, error) {
	var st unix.Stat_t
	err := ignoringEINTR(func() error { return unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) })
	if err != nil {
		return st, &fs.PathError{Op: "lstat", Path: name, Err: err}
	}
	return st, nil
}

// openFile opens name without following a symbolic link. The *os.File is not
// registered with the network poller (regular files gain nothing from it).
func (d *dirRef) openFile(name string, flags int, perm uint32) (*os.File, error) {
	var fd int
	err := ignoringEINTR(func() (err error) {
		fd, err = unix.Openat(d.fd, name, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
		return err
	})
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	return os.NewFile(uintptr(fd), name), nil
}

func (d *dirRef) rename(from, to string) error {
	if err := unix.Renameat(d.fd, from, d.fd, to); err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return nil
}

// renameNoReplace renames from to to unless to exists (fs.ErrExist), in one
// atomic step: renameExcl (renameat2 RENAME_NOREPLACE on Linux, renameatx_np
// RENAME_EXCL on macOS), else link and unlink (renameByLink).
func (d *dirRef) renameNoReplace(from, to string) error {
	err := ignoringEINTR(func() error { return renameExcl(d.fd, from, to) })
	if err == unix.EINVAL || err == unix.ENOSYS || err == unix.ENOTSUP || err == unix.EOPNOTSUPP {
		return d.renameByLink(from, to) // not on this filesystem, or this system
	}
	if err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return nil
}

// renameByLink is renameNoReplace as link(2) then unlink(2): the link fails
// with EEXIST if to exists, atomically. A crash in between leaves from as a
// second name of the final file, which is never resumed (openLocked drops a
// staging file with two links). Only where the filesystem has no hard links
// either does it check first and rename (not atomic).
func (d *dirRef) renameByLink(from, to string) error {
	err := ignoringEINTR(func() error { return unix.Linkat(d.fd, from, d.fd, to, 0) })
	if err == nil {
		// The file has its final name: a failed unlink leaves only that
		// second name, harmless, so it does not fail the commit.
		d.remove(from)
		return nil
	}
	if err == unix.EPERM || err == unix.ENOTSUP || err == unix.EOPNOTSUPP || err == unix.ENOSYS { // no hard links here
		if _, serr := d.lstat(to); serr == nil {
			err = unix.EEXIST
		} else {
			err = unix.Renameat(d.fd, from, d.fd, to)
		}
	}
	if err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return nil
}

// origin returns the origin recorded on the file name (not following links),
// "" if it has none or is not a regular file.
func (d *dirRef) origin(name string) (string, error) {
	f, err := d.openFile(name, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if errors.Is(err, unix.ELOOP) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	return getXattr(f, OriginAttr)
}

func (d *dirRef) remove(name string) error {
	if err := unix.Unlinkat(d.fd, name, 0); err != nil {
		return &fs.PathError{Op: "remove", Path: name, Err: err}
	}
	return nil
}

func ignoringEINTR(f func() error) error {
	for {
		if err := f(); err != unix.EINTR {
			return err
		}
	}
}

func isRegular(st *unix.Stat_t) bool { return st.Mode&unix.S_IFMT == unix.S_IFREG }

func mtime(st *unix.Stat_t) time.Time { return time.Unix(st.Mtim.Sec, st.Mtim.Nsec) }

func ctime(st *unix.Stat_t) time.Time { return time.Unix(st.Ctim.Sec, st.Ctim.Nsec) }
