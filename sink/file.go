package sink

import (
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// OriginAttr is the extended attribute that records a file's source URL, as
// `curl --xattr` and wget2 do. haul reads it to tell "this URL was already fetched
// here" from "another URL owns this name".
const OriginAttr = "user.xdg.origin.url"

// PartSuffix is appended to a final name to form its staging file.
const PartSuffix = ".part"

// File is the plain-file sink: each entry is written to NAME.part beside its final
// name, made durable, then renamed to NAME.
//
// A File takes its directory as its own while it is open: it sees what was
// there when it opened and what other haul processes write with the same
// directory as theirs, but a name another program (or a haul process given a
// directory above or below it) makes meanwhile may be reported absent (see
// known.go) and found only when a commit meets it, which never replaces it.
type File struct {
	root       *os.Root
	dirs       *dirCache
	committer  *committer // nil with NoSync: commits rename at once
	checkpoint int64
	runTag     string
	dir        string
	presence   *presence   // the shared lock on the directory (nil if it could not be opened)
	unnamedOK  bool        // new files may be staged unnamed: O_TMPFILE and /proc work, not Named
	noUnnamed  atomic.Bool // a directory without O_TMPFILE was met
}

var _ Sink = (*File)(nil)

// FileOptions configures a File sink. The zero value is the safe default.
type FileOptions struct {
	// NoSync skips flushing file data to stable storage before the rename: faster,
	// but after a power loss a final name may hold a truncated file.
	NoSync bool
	// Checkpoint is the progress interval in body bytes (default DefaultCheckpoint).
	Checkpoint int64
	// RunTag, if set, is recorded with every file written (an extended
	// attribute) and reported by Stat as Info.RunTag: with a tag unique to a
	// run, the engine tells the files this run wrote from older ones (--force).
	RunTag string
	// Named stages every new file as NAME.part from the start, as when another
	// haul process shares the directory (see tmpfile.go), rather than unnamed.
	Named bool
	// MaxOpen bounds the file descriptors the sink keeps open besides its
	// writers': cached directory handles and commits waiting for the flush,
	// each a staging file and, at worst, a directory of its own (0: 512
	// handles and 1,024 commits). Below that, an eighth goes to handles and
	// the rest to commits.
	MaxOpen int
}

// NewFile returns a sink that writes under dir, creating dir if needed.
// The caller must Close it when done.
func NewFile(dir string, opts FileOptions) (*File, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	dirs, pending := 512, maxPending
	if opts.MaxOpen > 0 && opts.MaxOpen < dirs+2*pending {
		dirs = max(opts.MaxOpen/8, 8)
		pending = max((opts.MaxOpen-dirs)/2, 8)
	}
	s := &File{root: root, dirs: newDirCache(root, dirs), checkpoint: opts.Checkpoint, runTag: opts.RunTag, dir: dir}
	if s.checkpoint <= 0 {
		s.checkpoint = DefaultCheckpoint
	}
	if !opts.NoSync {
		s.committer = newCommitter(pending)
	}
	if top, err := root.Open("."); err == nil {
		s.presence = newPresence(top)
		alone := s.presence.alone() // takes the shared lock
		s.unnamedOK = !opts.Named && tmpfileWorks(top)
		if s.unnamedOK && alone {
			s.knowTop(top)
		}
	}
	return s, nil
}

// knownTopMax is the most entries the sink's directory may hold at the start
// for known to be kept: each is added to it.
const knownTopMax = 4096

// knowTop starts known (see known.go) when the sink's directory holds few
// entries: they are recorded, and the directory counts as fresh.
func (s *File) knowTop(top *os.File) {
	if foldsCase(int(top.Fd())) {
		return
	}
	names, err := top.Readdirnames(knownTopMax + 1)
	if err != nil && err != io.EOF || len(names) > knownTopMax {
		return
	}
	k := newKnown()
	for _, n := range names {
		k.add("", n)
	}
	k.trust.Store(true)
	s.dirs.known, s.dirs.topFresh = k, true
}

// Made records that this process made name (a slash-separated path in the
// sink's directory) by other means than the sink, such as a manifest written
// there: Stat then looks it up rather than answer from the names the sink made
// (see known.go). Call it before making the file.
func (s *File) Made(name string) {
	if filepath.IsLocal(name) {
		s.dirs.creating("", path.Clean(filepath.ToSlash(name)))
	}
}

// unnamed reports whether a new file may be staged unnamed (see tmpfile.go).
func (s *File) unnamed() bool {
	if !s.unnamedOK || s.noUnnamed.Load() {
		return false
	}
	if !s.presence.lately() {
		s.dirs.distrust()
		return false
	}
	return true
}

// alone reports whether no other haul process uses the sink's directory: only
// then are empty directories removed (see dirCache.prune), since another
// process may have just opened one to write in it.
func (s *File) alone() bool { return s.presence != nil && s.presence.alone() }

// Writable reports why this process may not create files in the sink's
// directory, or nil. A permission error on one file or subdirectory concerns
// that entry; one on the directory itself concerns them all.
func (s *File) Writable() error {
	return unix.Faccessat(unix.AT_FDCWD, s.dir, unix.W_OK|unix.X_OK, unix.AT_EACCESS)
}

// Close waits for pending commits and releases the sink's directory handles.
// No Writer may be in use.
func (s *File) Close() error {
	if s.committer != nil {
		s.committer.close()
	}
	if s.presence != nil {
		s.presence.close()
	}
	s.dirs.close()
	return s.root.Close()
}

// Flush implements Sink.
func (s *File) Flush() {
	if s.committer != nil {
		s.committer.flush()
	}
}

// Stat implements Sink. A symbolic link or directory at the final name is reported
// as ErrNotRegular: haul never follows a link it did not create.
func (s *File) Stat(name string) (Info, error) {
	return s.stat(name, false)
}

// stat is Stat; with plainSize, Info.Size is the body size recorded for a
// compressed file (sizeAttr), when it has one.
func (s *File) stat(name string, plainSize bool) (Info, error) {
	dir, base, err := split(name)
	if err != nil {
		return Info{}, err
	}
	d, err := s.dirs.acquire(dir, false)
	if err != nil {
		return Info{}, err
	}
	defer s.dirs.release(d)
	if s.dirs.absent(d, base) {
		return Info{}, &fs.PathError{Op: "lstat", Path: base, Err: syscall.ENOENT}
	}
	st, err := d.lstat(base)
	if err != nil {
		return Info{}, err
	}
	if !isRegular(&st) {
		return Info{}, &fs.PathError{Op: "stat", Path: name, Err: ErrNotRegular}
	}
	info := Info{Size: st.Size, ModTime: mtime(&st)}
	f, err := d.openFile(base, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return Info{}, err
	}
	defer f.Close()
	if info.Origin, err = getXattr(f, OriginAttr); err != nil {
		return info, err
	}
	if s.runTag != "" {
		if info.RunTag, err = getXattr(f, runAttr); err != nil {
			return info, err
		}
	}
	if err := readMeta(f, &info, &st); err != nil {
		return info, err
	}
	if !plainSize {
		return info, nil
	}
	if v, err := getXattr(f, sizeAttr); err == nil && v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
			info.Size = n
		}
	}
	return info, nil
}

// Open implements Sink.
func (s *File) Open(name string) (io.ReadCloser, error) {
	return s.root.OpenFile(name, os.O_RDONLY|unix.O_NOFOLLOW, 0)
}

// Create implements Sink. The staging file NAME.part is locked (flock) for as
// long as the Writer lives, so another haul process on the same directory never
// writes it at the same time; a lock dies with its process, so one left by a
// killed run never blocks a later one. When the file holds bytes an earlier run
// left with a validator, the Writer reports them as resumable.
func (s *File) Create(name, origin string) (Writer, error) {
	return s.create(name, origin)
}

func (s *File) create(name, origin string) (*fileWriter, error) {
	dir, base, err := split(name)
	if err != nil {
		return nil, err
	}
	d, err := s.dirs.acquire(dir, true)
	if err != nil {
		return nil, err
	}
	w := &fileWriter{s: s, d: d, part: base + PartSuffix, final: base, path: name, dir: dir}
	if err := w.open(origin); err != nil {
		if w.tmp {
			w.closeUnnamed()
		} else if w.f != nil {
			w.f.Close()
		}
		w.left = w.f != nil && !w.tmp // a NAME.part there, kept
		w.releaseDir()
		return nil, err
	}
	return w, nil
}

// split checks that name is a clean local path and splits it into its directory
// ("" for the top) and file name.
func split(name string) (dir, base string, err error) {
	if !filepath.IsLocal(name) || path.Clean(name) != name {
		return "", "", &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	dir, base = path.Split(name)
	return strings.TrimSuffix(dir, "/"), base, nil
}
