package input

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// The first bytes of the compressed lists haul reads, and of a Parquet file.
var (
	magicGzip    = []byte{0x1f, 0x8b}
	magicZstd    = []byte{0x28, 0xb5, 0x2f, 0xfd}
	magicParquet = []byte("PAR1")
)

// MaxZstdWindow is the largest zstd window a list may need (32 MiB): the
// decoder keeps that much of the list's past in memory. zstd's own levels
// stay below it up to --ultra -20; only --long or level 21 and 22 on big
// lists go past, and such a list is refused at its start rather than let
// the decoder take hundreds of MiB.
const MaxZstdWindow = 32 << 20

// ListError is a list that cannot be read from its start: a compressed
// stream that does not decompress, a table without a header haul can use, a
// Parquet file whose footer does not parse. Nothing of it was read.
type ListError struct {
	Name string // the list: a file name, or "standard input"
	Err  error
}

func (e *ListError) Error() string { return fmt.Sprintf("%s: %v", e.Name, e.Err) }
func (e *ListError) Unwrap() error { return e.Err }

// CutError is a list that broke off after its start: a compressed stream
// cut short or damaged midway, a Parquet page that does not decode. The
// entries before it were read; the rest cannot be.
type CutError struct {
	Name  string
	After string // what was read before: "line N", "row N"
	Err   error
}

func (e *CutError) Error() string {
	after := ""
	if e.After != "" {
		after = " after " + e.After
	}
	return fmt.Sprintf("%s: the list is cut off or damaged%s (%v): the entries after it were not read", e.Name, after, e.Err)
}
func (e *CutError) Unwrap() error { return e.Err }

// decompress returns what br holds: decompressed when it starts with the
// magic bytes of gzip or zstd (the codec's name is then returned too), else
// br itself. The returned close releases the decoder.
//
// The zstd decoder runs with a concurrency of 1: it then decodes in the
// caller's Read, one block at a time, with no goroutine decoding ahead and
// no decoded blocks queued, which a list read at the pace of its downloads
// does not need and the memory bound would pay for. Its window is capped at
// MaxZstdWindow.
func decompress(br *bufio.Reader, name string) (r io.Reader, codec string, closeFn func(), err error) {
	head, err := br.Peek(4) // fewer bytes at the end of a short list
	if len(head) < 4 && err != nil && err != io.EOF {
		return nil, "", nil, err // a read error of the list: as is
	}
	raw := &rawReader{r: br}
	switch {
	case bytes.HasPrefix(head, magicGzip):
		z, err := gzip.NewReader(raw)
		if err != nil {
			if raw.err != nil {
				return nil, "gzip", nil, raw.err
			}
			return nil, "gzip", nil, &ListError{Name: name, Err: fmt.Errorf("not a valid gzip stream (%w)", err)}
		}
		return &firstRead{r: z, raw: raw, name: name, codec: "gzip"}, "gzip", func() { z.Close() }, nil
	case bytes.HasPrefix(head, magicZstd):
		z, err := zstd.NewReader(raw, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(MaxZstdWindow), zstd.WithDecoderMaxMemory(MaxZstdWindow))
		if err != nil {
			return nil, "zstd", nil, &ListError{Name: name, Err: fmt.Errorf("zstd: %w", err)}
		}
		return &firstRead{r: z, raw: raw, name: name, codec: "zstd"}, "zstd", z.Close, nil
	}
	return br, "", func() {}, nil
}

// firstRead tells a decompressor's errors apart: one before its first byte
// is a *ListError (the list is not what its magic bytes say), one after a
// *CutError. A read error of the list itself is returned as is, as it is
// for a list that is not compressed.
type firstRead struct {
	r     io.Reader
	raw   *rawReader
	name  string
	codec string
	n     int64
}

func (f *firstRead) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	f.n += int64(n)
	switch {
	case err == nil || err == io.EOF:
		return n, err
	case f.raw.err != nil && errors.Is(err, f.raw.err):
		return n, f.raw.err
	case !strings.HasPrefix(err.Error(), f.codec+":"):
		err = fmt.Errorf("%s: %w", f.codec, err)
	}
	if f.n == 0 {
		what := "not a valid %s stream (%w)"
		if errors.Is(err, io.ErrUnexpectedEOF) {
			what = "a %s stream cut off before its first block ended (%w)"
		}
		return n, &ListError{Name: f.name, Err: fmt.Errorf(what, f.codec, err)}
	}
	return n, &CutError{Name: f.name, Err: err}
}

// rawReader remembers the read error of the compressed bytes.
type rawReader struct {
	r   io.Reader
	err error
}

func (r *rawReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}
