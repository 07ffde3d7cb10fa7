package sink

import (
	"io/fs"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// tmpfileWorks reports whether files can be staged unnamed in dir and linked
// later: the filesystem supports O_TMPFILE, and /proc is there to link through
// (linkat with AT_EMPTY_PATH needs a capability).
func tmpfileWorks(dir *os.File) bool {
	ok := false
	control(dir, func(dfd int) error {
		fd, err := unix.Openat(dfd, ".", unix.O_RDWR|unix.O_TMPFILE|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		var st unix.Stat_t
		ok = unix.Stat(procFD(fd), &st) == nil && st.Nlink == 0
		return nil
	})
	return ok
}

func procFD(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// unnamedFlags opens an unnamed file (a variable: a test makes the open fail as
// on a filesystem without O_TMPFILE).
var unnamedFlags = unix.O_RDWR | unix.O_TMPFILE | unix.O_CLOEXEC

// openUnnamed creates an unnamed file in d, nil if the filesystem cannot.
func (d *dirRef) openUnnamed(name string) (*os.File, error) {
	var fd int
	err := ignoringEINTR(func() (err error) {
		fd, err = unix.Openat(d.fd, ".", unnamedFlags, 0o644)
		return err
	})
	switch {
	case err == nil:
		return os.NewFile(uintptr(fd), name), nil
	case err == unix.EOPNOTSUPP || err == unix.EISDIR || err == unix.EINVAL:
		return nil, nil // this directory is on a filesystem without O_TMPFILE
	}
	return nil, &fs.PathError{Op: "open", Path: name, Err: err}
}

// link gives f, an unnamed file, the name name in d. It fails with an error
// satisfying errors.Is(err, fs.ErrExist) if name exists: like a rename with
// RENAME_NOREPLACE, it never replaces a file.
func (d *dirRef) link(f *os.File, name string) error {
	err := control(f, func(fd int) error {
		return unix.Linkat(unix.AT_FDCWD, procFD(fd), d.fd, name, unix.AT_SYMLINK_FOLLOW)
	})
	if err != nil {
		return &os.LinkError{Op: "link", Old: f.Name(), New: name, Err: err}
	}
	return nil
}

// fsCasefoldFL is FS_CASEFOLD_FL (linux/fs.h): a directory whose names are
// looked up without regard to case (ext4, f2fs; inherited by the directories
// made in it).
const fsCasefoldFL = 0x40000000

// foldsCase reports whether the directory fd looks names up without regard to
// case: there "A" and "a" are one entry, which known (exact names) cannot tell.
// (A variable: this kernel may have no case folding, and a test stands in.)
var foldsCase = func(fd int) bool {
	flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	return err == nil && flags&fsCasefoldFL != 0
}
