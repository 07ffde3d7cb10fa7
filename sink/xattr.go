package sink

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/haul/haul/internal/urlid"
)

// resumeAttr holds, on a staging file, what a later run needs to continue it:
// how many bytes are known durable, the full length, and the validator that
// guards them. It is written only after those bytes were flushed, so after a
// power loss it can lag behind the data but never run ahead of it.
const resumeAttr = "user.haul.resume"

// runAttr holds FileOptions.RunTag on every file written with one.
const runAttr = "user.haul.run"

// setOrigin records origin (a urlid.Origin value) on f. Where the filesystem has no
// room for it (ext4 keeps all of a file's attributes in one block, 1 KiB on
// small filesystems), it records the short form instead.
func setOrigin(f *os.File, origin string) error {
	err := setXattr(f, OriginAttr, origin)
	if attrTooBig(err) {
		err = setXattr(f, OriginAttr, urlid.Short(origin))
	}
	return err
}

// attrTooBig reports whether err from setting an attribute means it does not fit
// (ENOSPC: no room left in the file's attribute block; E2BIG: over the
// filesystem's limit). A disk that is really full fails the data writes too.
func attrTooBig(err error) bool {
	return err == unix.ENOSPC || err == unix.E2BIG
}

// control runs f with f's descriptor.
func control(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

func setXattr(f *os.File, name, value string) error {
	err := control(f, func(fd int) error { return unix.Fsetxattr(fd, name, []byte(value), 0) })
	if xattrUnsupported(err) {
		return nil // documented: without xattrs, no origin checks and no resume
	}
	return err
}

func removeXattr(f *os.File, name string) error {
	err := control(f, func(fd int) error { return unix.Fremovexattr(fd, name) })
	if err == errNoAttr || xattrUnsupported(err) {
		return nil
	}
	return err
}

// getXattr returns the attribute's value, "" when it is absent or unsupported.
func getXattr(f *os.File, name string) (string, error) {
	var buf [1024]byte
	var n int
	err := control(f, func(fd int) (err error) { n, err = unix.Fgetxattr(fd, name, buf[:]); return })
	// A long URL: ask for the size, then read it. macOS may fill the buffer
	// with the start of the value instead of failing with ERANGE.
	if err == unix.ERANGE || err == nil && n == len(buf) {
		var big []byte
		err = control(f, func(fd int) (err error) {
			if n, err = unix.Fgetxattr(fd, name, nil); err == nil {
				big = make([]byte, n)
				n, err = unix.Fgetxattr(fd, name, big)
			}
			return
		})
		if err == nil {
			return string(big[:n]), nil
		}
	}
	if err == errNoAttr || xattrUnsupported(err) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

func xattrUnsupported(err error) bool {
	return err == unix.ENOTSUP || err == unix.EOPNOTSUPP || err == syscall.EPERM
}

// resumeState is the value of resumeAttr: "v1 DURABLE PLAIN TOTAL VALIDATOR"
// for a file written in order, where DURABLE counts bytes of the staging file,
// PLAIN the body bytes they hold (the same unless the file is compressed); or
// "v2 TOTAL RANGES VALIDATOR" for a plain file written in pieces (RangeWriter),
// where RANGES lists the durable ranges as START-END (END exclusive), sorted,
// disjoint and comma-separated ("-" for none), all within TOTAL. The validator
// comes last in both: a Last-Modified holds spaces.
type resumeState struct {
	durable   int64 // v2: the end of the last range (the file holds at least that)
	plain     int64 // v2: the end of the range from 0 (0 if none)
	total     int64 // -1 unknown
	validator string
	ranges    []Range // v2 only (non-nil)
}

func (r resumeState) String() string {
	if r.ranges != nil {
		var b strings.Builder
		for i, rg := range r.ranges {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%d-%d", rg.Start, rg.End)
		}
		if len(r.ranges) == 0 {
			b.WriteByte('-')
		}
		return fmt.Sprintf("v2 %d %s %s", r.total, b.String(), r.validator)
	}
	return fmt.Sprintf("v1 %d %d %d %s", r.durable, r.plain, r.total, r.validator)
}

// rest returns the ranges past the one from 0 (Partial.Done), nil if none.
func (r resumeState) rest() []Range {
	rs := r.ranges
	if len(rs) > 0 && rs[0].Start == 0 {
		rs = rs[1:]
	}
	if len(rs) == 0 {
		return nil
	}
	return slices.Clone(rs)
}

func parseResumeState(s string) (resumeState, bool) {
	if strings.HasPrefix(s, "v2 ") {
		return parseRanged(s)
	}
	f := strings.SplitN(s, " ", 5)
	if len(f) != 5 || f[0] != "v1" || f[4] == "" {
		return resumeState{}, false
	}
	var n [3]int64
	for i := range n {
		v, err := strconv.ParseInt(f[i+1], 10, 64)
		if err != nil || v < -1 {
			return resumeState{}, false
		}
		n[i] = v
	}
	if n[0] < 0 || n[1] < 0 {
		return resumeState{}, false
	}
	return resumeState{durable: n[0], plain: n[1], total: n[2], validator: f[4]}, true
}

// parseRanged parses a v2 value; anything damaged (unsorted, overlapping or
// empty ranges, a range past the length) is refused: the file starts over.
func parseRanged(s string) (resumeState, bool) {
	f := strings.SplitN(s, " ", 4)
	if len(f) != 4 || f[3] == "" {
		return resumeState{}, false
	}
	total, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil || total <= 0 {
		return resumeState{}, false
	}
	rs := resumeState{total: total, validator: f[3], ranges: []Range{}}
	if f[2] == "-" {
		return rs, true
	}
	prev := int64(-1)
	for _, p := range strings.Split(f[2], ",") {
		a, b, ok := strings.Cut(p, "-")
		if !ok {
			return resumeState{}, false
		}
		start, err1 := strconv.ParseInt(a, 10, 64)
		end, err2 := strconv.ParseInt(b, 10, 64)
		if err1 != nil || err2 != nil || start <= prev || start >= end || end > total {
			return resumeState{}, false
		}
		rs.ranges = append(rs.ranges, Range{start, end})
		prev = end
	}
	rs.durable = prev
	if rs.ranges[0].Start == 0 {
		rs.plain = rs.ranges[0].End
	}
	return rs, true
}

func lock(f *os.File) error {
	err := control(f, func(fd int) error { return unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB) })
	if err == unix.EWOULDBLOCK {
		return ErrLocked
	}
	return err
}
