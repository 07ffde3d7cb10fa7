package sink

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// StoredSample is one whole sample found in a tar file: its body member
// KEY.EXT and the KEY.json beside it.
type StoredSample struct {
	Key    string
	Member string // KEY.EXT
	Offset int64  // where the body's bytes start in the tar file
	Size   int64
	URL    string // from KEY.json
}

// maxSampleJSON bounds a KEY.json read back: haul writes the URL and the
// row's other columns there, nothing near this.
const maxSampleJSON = 16 << 20

// errNotSample: the tar holds a member haul does not write.
var errNotSample = errors.New("not a sample haul writes")

// ScanTar reads the samples of a tar file of size bytes in order, calling fn
// for each whole one (body and KEY.json, both complete), and returns the
// offset just past the last whole sample: where a tar cut short (a crash
// while it was written) is cut back to before it is appended to. err says why
// the scan stopped before the end-of-archive blocks or the end of the file
// (nil: it reached one of them); the samples before that point are whole
// either way.
//
// Only the bodies' headers and the KEY.json members are read: the bodies are
// skipped.
func ScanTar(r io.ReaderAt, size int64, fn func(StoredSample)) (end int64, err error) {
	sr := io.NewSectionReader(r, 0, size)
	return scanTar(tar.NewReader(sr), func() int64 { p, _ := sr.Seek(0, io.SeekCurrent); return p }, size, fn)
}

// ScanTarStream is ScanTar reading the tar of size bytes from r in one
// pass (an object read with one GET): the bodies are read and dropped.
func ScanTarStream(r io.Reader, size int64, fn func(StoredSample)) (end int64, err error) {
	cr := &countReader{r: r}
	return scanTar(tar.NewReader(cr), func() int64 { return cr.n }, size, fn)
}

// countReader counts the bytes read through it: where a tar.Reader that
// cannot seek is in the tar.
type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func scanTar(tr *tar.Reader, pos func() int64, size int64, fn func(StoredSample)) (end int64, err error) {
	for {
		body, err := tr.Next()
		if err == io.EOF {
			return end, nil
		}
		if err != nil {
			return end, fmt.Errorf("at byte %d: %w", end, err)
		}
		s, err := bodyMember(body, pos(), size)
		if err != nil {
			return end, fmt.Errorf("at byte %d: %w", end, err)
		}
		meta, err := tr.Next()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return end, fmt.Errorf("at byte %d (%s): %w", end, s.Member, err)
		}
		if meta.Name != s.Key+".json" || meta.Typeflag != tar.TypeReg || meta.Size > maxSampleJSON {
			return end, fmt.Errorf("at byte %d: %s follows %s: %w", end, meta.Name, s.Member, errNotSample)
		}
		metaEnd := pos() + meta.Size
		if blockAlign(metaEnd) > size { // its padding too: a whole sample ends on a block
			return end, fmt.Errorf("at byte %d (%s): %w", end, meta.Name, io.ErrUnexpectedEOF)
		}
		var m struct {
			URL string `json:"url"`
			Key string `json:"key"`
		}
		b, err := io.ReadAll(tr)
		if err == nil {
			err = json.Unmarshal(b, &m)
		}
		if err == nil && (m.Key != s.Key || m.URL == "") {
			err = fmt.Errorf("names key %q and url %q: %w", m.Key, m.URL, errNotSample)
		}
		if err != nil {
			return end, fmt.Errorf("at byte %d (%s): %w", end, meta.Name, err)
		}
		s.URL = m.URL
		fn(s)
		end = blockAlign(metaEnd)
	}
}

// bodyMember checks the header of a sample's first member, whose data starts
// at off.
func bodyMember(h *tar.Header, off, size int64) (StoredSample, error) {
	key, ext, ok := strings.Cut(h.Name, ".")
	if !ok || key == "" || ext == "" || ext == "json" || strings.Contains(h.Name, "/") || h.Typeflag != tar.TypeReg {
		return StoredSample{}, fmt.Errorf("%s: %w", h.Name, errNotSample)
	}
	if h.Size < 0 || off+h.Size > size {
		return StoredSample{}, fmt.Errorf("%s: %w", h.Name, io.ErrUnexpectedEOF)
	}
	return StoredSample{Key: key, Member: h.Name, Offset: off, Size: h.Size}, nil
}

const tarBlock = 512

func blockAlign(n int64) int64 { return (n + tarBlock - 1) &^ (tarBlock - 1) }
