package sink

import (
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// syncBatch makes the data of every file in batch durable, one syncfs per
// filesystem (on one of its files), and sets each file's syncErr.
func syncBatch(batch []commitReq) {
	for _, ws := range byDevice(batch) {
		err := syncFS(ws[0].f)
		for _, w := range ws {
			w.syncErr = err
		}
	}
}

// syncFS flushes the filesystem f is on (a variable: tests record it).
var syncFS = syncfs

func syncfs(f *os.File) error { return control(f, unix.Syncfs) }

func fdatasync(f *os.File) error { return control(f, unix.Fdatasync) }

// startWriteback asks the kernel to start writing n bytes at off to disk, and
// does not wait (SYNC_FILE_RANGE_WRITE alone).
func startWriteback(f *os.File, off, n int64) {
	control(f, func(fd int) error { return unix.SyncFileRange(fd, off, n, unix.SYNC_FILE_RANGE_WRITE) })
}

// renameExcl renames from to to in dfd unless to exists.
func renameExcl(dfd int, from, to string) error {
	return unix.Renameat2(dfd, from, dfd, to, unix.RENAME_NOREPLACE)
}

// errNoAttr is the error for an absent extended attribute.
const errNoAttr = unix.ENODATA

// setMtime sets f's access and modification times to t: utimensat on the
// descriptor itself (a NULL path), not through /proc/self/fd as
// unix.Futimes does, which costs a path lookup per file.
func setMtime(f *os.File, t time.Time) {
	ts := [2]unix.Timespec{unix.NsecToTimespec(t.UnixNano()), unix.NsecToTimespec(t.UnixNano())}
	control(f, func(fd int) error {
		_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
		if e != 0 {
			return e
		}
		return nil
	})
}
