//go:build unix && !linux

package sink

import (
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// What other systems than Linux do instead (macOS, the BSDs): no syncfs, so the
// group commit fsyncs each file (syncFiles); no fdatasync or sync_file_range;
// no unnamed staging (O_TMPFILE).

func syncBatch(batch []commitReq) { syncFiles(batch) }

// fdatasync is os.File.Sync: on macOS F_FULLFSYNC, since a checkpoint's state
// must not reach the disk before its data does, and fsync leaves the data in the
// drive's cache (out of order).
func fdatasync(f *os.File) error { return f.Sync() }

func startWriteback(*os.File, int64, int64) {}

func tmpfileWorks(*os.File) bool { return false }

func foldsCase(int) bool { return false } // known is not kept here (no unnamed staging)

func (d *dirRef) openUnnamed(string) (*os.File, error) { return nil, nil }

func (d *dirRef) link(f *os.File, name string) error {
	return &os.LinkError{Op: "link", Old: f.Name(), New: name, Err: unix.ENOTSUP}
}

const errNoAttr = unix.ENOATTR

// setMtime sets f's access and modification times to t.
func setMtime(f *os.File, t time.Time) {
	tv := unix.NsecToTimeval(t.UnixNano())
	control(f, func(fd int) error { return unix.Futimes(fd, []unix.Timeval{tv, tv}) })
}
