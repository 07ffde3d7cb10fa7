package sink

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
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
type File struct {
	root      *os.Root
	dirs      *dirCache
	committer *committer // nil with NoSync: commits rename at once
	rootDir   *os.File
}

var _ Sink = (*File)(nil)

// FileOptions configures a File sink. The zero value is the safe default.
type FileOptions struct {
	// NoSync skips flushing file data to stable storage before the rename: faster,
	// but after a power loss a final name may hold a truncated file.
	NoSync bool
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
	s := &File{root: root, dirs: newDirCache(root, 512)}
	if !opts.NoSync {
		if s.rootDir, err = root.Open("."); err != nil {
			root.Close()
			return nil, err
		}
		s.committer = newCommitter(s.rootDir)
	}
	return s, nil
}

// Close waits for pending commits and releases the sink's directory handles.
// No Writer may be in use.
func (s *File) Close() error {
	if s.committer != nil {
		s.committer.close()
		s.rootDir.Close()
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
	dir, base, err := split(name)
	if err != nil {
		return Info{}, err
	}
	d, err := s.dirs.acquire(dir, false)
	if err != nil {
		return Info{}, err
	}
	defer s.dirs.release(d)
	fi, err := d.r.Lstat(base)
	if err != nil {
		return Info{}, err
	}
	if !fi.Mode().IsRegular() {
		return Info{}, &fs.PathError{Op: "stat", Path: name, Err: ErrNotRegular}
	}
	info := Info{Size: fi.Size(), ModTime: fi.ModTime()}
	f, err := d.r.OpenFile(base, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return Info{}, err
	}
	defer f.Close()
	info.Origin, err = getOrigin(f)
	return info, err
}

// Open implements Sink.
func (s *File) Open(name string) (io.ReadCloser, error) {
	return s.root.OpenFile(name, os.O_RDONLY|unix.O_NOFOLLOW, 0)
}

// Create implements Sink.
func (s *File) Create(name, origin string) (Writer, error) {
	dir, base, err := split(name)
	if err != nil {
		return nil, err
	}
	d, err := s.dirs.acquire(dir, true)
	if err != nil {
		return nil, err
	}
	part := base + PartSuffix
	// O_EXCL never follows a symbolic link, so a link planted at the staging name
	// cannot redirect the write, even to another file inside the directory.
	const flags = os.O_WRONLY | os.O_CREATE | os.O_EXCL
	f, err := d.r.OpenFile(part, flags, 0o644)
	if errors.Is(err, fs.ErrExist) {
		if err = d.r.Remove(part); err == nil {
			f, err = d.r.OpenFile(part, flags, 0o644)
		}
	}
	if err != nil {
		s.dirs.release(d)
		return nil, err
	}
	if err := setOrigin(f, origin); err != nil {
		f.Close()
		d.r.Remove(part)
		s.dirs.release(d)
		return nil, err
	}
	return &fileWriter{s: s, d: d, f: f, part: part, final: base}, nil
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

type fileWriter struct {
	s     *File
	d     *dirRef
	f     *os.File
	part  string
	final string
}

func (w *fileWriter) Write(p []byte) (int, error) { return w.f.Write(p) }

// Commit implements Writer: close the staging file, then rename it, at once with
// NoSync, else after the committer's next filesystem flush.
func (w *fileWriter) Commit(done func(error)) {
	err := w.f.Close()
	if w.s.committer == nil || err != nil {
		done(w.rename(err))
		return
	}
	w.s.committer.submit(commitReq{w: w, done: done})
}

// rename moves the staging file to the final name unless err says the data may
// not be safe, in which case the staging file is removed. It releases the
// directory handle either way.
func (w *fileWriter) rename(err error) error {
	defer w.s.dirs.release(w.d)
	if err == nil {
		err = w.d.r.Rename(w.part, w.final)
	}
	if err != nil {
		w.d.r.Remove(w.part)
	}
	return err
}

// Abort implements Writer: the staging file is removed.
func (w *fileWriter) Abort() error {
	defer w.s.dirs.release(w.d)
	w.f.Close()
	return w.d.r.Remove(w.part)
}

// Restart implements Writer.
func (w *fileWriter) Restart() error {
	if err := w.f.Truncate(0); err != nil {
		return err
	}
	_, err := w.f.Seek(0, io.SeekStart)
	return err
}

func setOrigin(f *os.File, origin string) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.Fsetxattr(int(fd), OriginAttr, []byte(origin), 0)
	}); err != nil {
		return err
	}
	if xattrUnsupported(serr) {
		return nil // documented: duplicate detection falls back to existence checks
	}
	return serr
}

func getOrigin(f *os.File) (string, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return "", err
	}
	var (
		buf  [4096]byte
		n    int
		serr error
	)
	if err := rc.Control(func(fd uintptr) { n, serr = unix.Fgetxattr(int(fd), OriginAttr, buf[:]) }); err != nil {
		return "", err
	}
	if serr == unix.ERANGE { // a URL longer than 4 KiB: ask for the size, then read it
		var big []byte
		rc.Control(func(fd uintptr) {
			if n, serr = unix.Fgetxattr(int(fd), OriginAttr, nil); serr == nil {
				big = make([]byte, n)
				n, serr = unix.Fgetxattr(int(fd), OriginAttr, big)
			}
		})
		if serr == nil {
			return string(big[:n]), nil
		}
	}
	if serr == unix.ENODATA || xattrUnsupported(serr) {
		return "", nil
	}
	if serr != nil {
		return "", serr
	}
	return string(buf[:n]), nil
}

func xattrUnsupported(err error) bool {
	return err == unix.ENOTSUP || err == unix.EOPNOTSUPP || err == syscall.EPERM
}
