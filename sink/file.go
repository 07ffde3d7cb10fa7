package sink

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
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
	root   *os.Root
	dirs   *dirCache
	noSync bool
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
	return &File{root: root, dirs: newDirCache(root, 512), noSync: opts.NoSync}, nil
}

// Close releases the sink's directory handles. No Writer may be in use.
func (s *File) Close() error {
	s.dirs.close()
	return s.root.Close()
}

// Stat implements Sink. A symbolic link or directory at the final name is reported
// as ErrNotRegular: haul never follows a link it did not create.
func (s *File) Stat(name string) (Info, error) {
	dir, base := path.Split(name)
	d, err := s.dirs.acquire(path.Clean("/" + dir)[1:], false)
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
	dir, base := path.Split(name)
	d, err := s.dirs.acquire(path.Clean("/" + dir)[1:], true)
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

type fileWriter struct {
	s     *File
	d     *dirRef
	f     *os.File
	part  string
	final string
}

func (w *fileWriter) Write(p []byte) (int, error) { return w.f.Write(p) }

// Commit implements Writer: fdatasync (unless NoSync), close, rename.
func (w *fileWriter) Commit() (err error) {
	defer w.s.dirs.release(w.d)
	defer func() {
		if err != nil {
			w.d.r.Remove(w.part)
		}
	}()
	if !w.s.noSync {
		if err := fdatasync(w.f); err != nil {
			w.f.Close()
			return fmt.Errorf("sync: %w", err)
		}
	}
	if err := w.f.Close(); err != nil {
		return err
	}
	return w.d.r.Rename(w.part, w.final)
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

func fdatasync(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Fdatasync(int(fd)) }); err != nil {
		return err
	}
	return serr
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
