package sink

import (
	"errors"
	"io/fs"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/haul/haul/internal/urlid"
)

// The response validators recorded with a committed file, for a later
// conditional request (--update): If-None-Match with the ETag, else
// If-Modified-Since with the Last-Modified. Weak ETags are kept too: If-None-Match
// compares weakly.
const (
	etagAttr     = "user.haul.etag"
	modifiedAttr = "user.haul.modified"
	// lengthAttr is the file's length when haul committed it: a file changed
	// on disk since (truncated, overwritten by another tool) is told from one
	// the server's validators still describe (Info.Changed).
	lengthAttr = "user.haul.length"
)

// saveMeta records w's cache validators on the staging file, so that they
// travel with it to its final name. An attribute that does not fit, or a
// filesystem without attributes, costs only the cheap question next time.
func (w *fileWriter) saveMeta() {
	length := strconv.FormatInt(w.written, 10)
	for _, a := range [...]struct{ name, v string }{{etagAttr, w.etag}, {modifiedAttr, w.modified}, {lengthAttr, length}} {
		var err error
		if a.v != "" {
			err = setXattr(w.f, a.name, a.v)
		} else if w.kept > 0 {
			err = removeXattr(w.f, a.name) // an adopted .part's, of another response
		}
		if err != nil && !attrTooBig(err) && !xattrUnsupported(err) && !errors.Is(err, errNoAttr) {
			return
		}
	}
}

// SetCacheValidators implements Writer.
func (w *fileWriter) SetCacheValidators(etag, lastModified string) {
	w.etag, w.modified = etag, lastModified
}

// readMeta fills info's cache validators from f's attributes, and Changed
// from the length recorded at the commit against size, the file's length now.
func readMeta(f *os.File, info *Info, size int64) error {
	var err error
	if info.ETag, err = getXattr(f, etagAttr); err != nil {
		return err
	}
	if info.LastModified, err = getXattr(f, modifiedAttr); err != nil {
		return err
	}
	v, err := getXattr(f, lengthAttr)
	if err != nil {
		return err
	}
	if n, perr := strconv.ParseInt(v, 10, 64); perr == nil && n != size {
		info.Changed = true
	}
	return nil
}

// Staged implements Sink: what Create would resume for name and origin, read
// without creating, locking or changing anything (for --dry-run).
func (s *File) Staged(name, origin string) (Partial, error) {
	return s.staged(name, origin)
}

func (s *File) staged(name, origin string) (Partial, error) {
	dir, base, err := split(name)
	if err != nil {
		return Partial{}, err
	}
	d, err := s.dirs.acquire(dir, false)
	if errors.Is(err, fs.ErrNotExist) {
		return Partial{}, nil
	}
	if err != nil {
		return Partial{}, err
	}
	defer s.dirs.release(d)
	st, err := d.lstat(base + PartSuffix)
	if errors.Is(err, fs.ErrNotExist) || err == nil && !isRegular(&st) {
		return Partial{}, nil
	}
	if err != nil {
		return Partial{}, err
	}
	f, err := d.openFile(base+PartSuffix, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return Partial{}, err
	}
	defer f.Close()
	got, err := getXattr(f, OriginAttr)
	if err != nil {
		return Partial{}, err
	}
	v, _ := getXattr(f, resumeAttr)
	rs, ok := parseResumeState(v)
	if !ok || !urlid.Same(got, origin) || st.Size < rs.durable || rs.durable == 0 {
		return Partial{Total: -1}, nil // nothing Create would keep
	}
	return Partial{Offset: rs.plain, Validator: rs.validator, Total: rs.total}, nil
}
