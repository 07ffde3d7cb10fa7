package sink

import (
	"errors"
	"io/fs"
	"os"

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
)

// saveMeta records w's cache validators on the staging file, so that they
// travel with it to its final name. An attribute that does not fit, or a
// filesystem without attributes, costs only the cheap question next time.
func (w *fileWriter) saveMeta() {
	for _, a := range [...]struct{ name, v string }{{etagAttr, w.etag}, {modifiedAttr, w.modified}} {
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

// readMeta fills info's cache validators from f's attributes.
func readMeta(f *os.File, info *Info) error {
	var err error
	if info.ETag, err = getXattr(f, etagAttr); err != nil {
		return err
	}
	info.LastModified, err = getXattr(f, modifiedAttr)
	return err
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
