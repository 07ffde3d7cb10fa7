package sink

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// sizeAttr records on a compressed file the size of the body it holds, so a
// re-run can check size= without decompressing.
const sizeAttr = "user.haul.size"

// Compressed is a sink that stores each entry compressed on the fly, as NAME.gz
// or NAME.zst, on top of the File sink (same staging, locking, durability).
//
// It stays resumable: every checkpoint interval (FileOptions.Checkpoint) of body the current gzip member
// or zstd frame is ended, and the checkpoint records both the compressed length
// and the body offset it covers. A later run cuts the staging file back to the
// last checkpoint and continues with a new member or frame; concatenated members
// and frames are one valid stream for gzip -d, zstd -d and every library.
type Compressed struct {
	f      *File
	ext    string
	newEnc func() (encoder, error)
	newDec func(io.Reader) (io.ReadCloser, error)
	encs   sync.Pool
}

var _ Sink = (*Compressed)(nil)

// Writable is File.Writable.
func (c *Compressed) Writable() error { return c.f.Writable() }

type encoder interface {
	io.WriteCloser
	Reset(io.Writer)
}

// Codecs haul can compress with.
const (
	Gzip = "gzip"
	Zstd = "zstd"
)

// zstdWindow bounds each zstd encoder's memory (window plus tables): with one
// encoder per job, --jobs 64 stays well under 256 MB. Larger windows gain
// little on typical downloads.
const zstdWindow = 1 << 20

// NewCompressed returns a sink that compresses with codec ("gzip" or "zstd") at
// level (0: the codec's usual default, gzip 6 and zstd 3; otherwise the gzip
// 1-9 or zstd 1-22 scale) into f. Closing f closes it.
func NewCompressed(f *File, codec string, level int) (*Compressed, error) {
	c := &Compressed{f: f}
	switch codec {
	case Gzip:
		if level == 0 {
			level = gzip.DefaultCompression
		} else if level < gzip.BestSpeed || level > gzip.BestCompression {
			return nil, fmt.Errorf("gzip level %d: want 1-9", level)
		}
		c.ext = ".gz"
		c.newEnc = func() (encoder, error) { return gzip.NewWriterLevel(io.Discard, level) }
		c.newDec = func(r io.Reader) (io.ReadCloser, error) { return gzip.NewReader(r) }
	case Zstd:
		if level == 0 {
			level = 3
		} else if level < 1 || level > 22 {
			return nil, fmt.Errorf("zstd level %d: want 1-22", level)
		}
		c.ext = ".zst"
		opts := []zstd.EOption{zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(level)),
			zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(zstdWindow), zstd.WithLowerEncoderMem(true)}
		c.newEnc = func() (encoder, error) { return zstd.NewWriter(nil, opts...) }
		c.newDec = func(r io.Reader) (io.ReadCloser, error) {
			d, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
			if err != nil {
				return nil, err
			}
			return d.IOReadCloser(), nil
		}
	default:
		return nil, fmt.Errorf("unknown compression %q (want gzip or zstd)", codec)
	}
	return c, nil
}

// Ext is the suffix added to every name: ".gz" or ".zst".
func (c *Compressed) Ext() string { return c.ext }

// Stat implements Sink; Info.Size is the body (uncompressed) size when recorded.
func (c *Compressed) Stat(name string) (Info, error) { return c.f.stat(name+c.ext, true) }

// Staged implements Sink: the body offset a resume would continue from.
func (c *Compressed) Staged(name, origin string) (Partial, error) {
	return c.f.staged(name+c.ext, origin)
}

// Open implements Sink: it reads the body, decompressed. A file that does not
// decompress (damaged, truncated, or not compressed at all) reads with an error
// that satisfies errors.Is(err, ErrCorrupt).
func (c *Compressed) Open(name string) (io.ReadCloser, error) {
	f, err := c.f.Open(name + c.ext)
	if err != nil {
		return nil, err
	}
	d, err := c.newDec(&fileErrs{r: f})
	if err != nil {
		f.Close()
		return nil, corrupt(err)
	}
	return &readCloser{Reader: &decodeErrs{r: d}, close: func() error { d.Close(); return f.Close() }}, nil
}

// ErrCorrupt reports a stored file whose contents cannot be read back as a body.
var ErrCorrupt = errors.New("stored file is corrupt")

// fileErrs marks the errors of reading the file itself, so that decodeErrs can
// tell them (I/O errors) from the decoder's own (corrupt data).
type fileErrs struct{ r io.Reader }

type fileError struct{ error }

func (e fileError) Unwrap() error { return e.error }

func (f *fileErrs) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err != nil && err != io.EOF {
		err = fileError{err}
	}
	return n, err
}

type decodeErrs struct{ r io.Reader }

func (d *decodeErrs) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	if err != nil && err != io.EOF {
		err = corrupt(err)
	}
	return n, err
}

// corrupt wraps err in ErrCorrupt unless it came from reading the file.
func corrupt(err error) error {
	var fe fileError
	if errors.As(err, &fe) {
		return fe.error
	}
	return fmt.Errorf("%w: %w", ErrCorrupt, err)
}

// Flush implements Sink.
func (c *Compressed) Flush() { c.f.Flush() }

// Create implements Sink.
func (c *Compressed) Create(name, origin string) (Writer, error) {
	fw, err := c.f.create(name+c.ext, origin)
	if err != nil {
		return nil, err
	}
	fw.manual = true
	if fw.inPieces {
		// Written in pieces (a plain file's record): never so when compressed.
		if err := fw.Restart(); err != nil {
			fw.Abort()
			return nil, err
		}
	}
	if fw.partial.Offset > 0 {
		if err := c.checkKept(fw); err != nil {
			fw.Abort() // nothing was written: the staging file stays as found
			return nil, err
		}
	}
	enc, ok := c.encs.Get().(encoder)
	if !ok {
		if enc, err = c.newEnc(); err != nil {
			fw.Discard()
			return nil, err
		}
	}
	enc.Reset(fw)
	return &compWriter{c: c, fw: fw, enc: enc, plain: fw.plain, frame: fw.plain}, nil
}

// checkKept decodes the bytes kept from an earlier run. If they are not whole
// frames holding exactly the body bytes the resume state says (damaged on disk,
// or written by something else), the file starts over: resumed, it would fail
// the same way on every run (the engine reads Prefix to hash it) or be
// committed corrupt. It costs a decode of the kept bytes, once per resume.
func (c *Compressed) checkKept(fw *fileWriter) error {
	n, err := c.decodedLen(io.NewSectionReader(fw.f, 0, fw.kept))
	if err == nil && n != fw.partial.Offset {
		err = ErrCorrupt
	}
	if errors.Is(err, ErrCorrupt) {
		return fw.Restart()
	}
	return err // reading the file failed: not a reason to drop it
}

// decodedLen is the number of body bytes r decodes to; a decoding error
// satisfies errors.Is(err, ErrCorrupt), an error reading r does not.
func (c *Compressed) decodedLen(r io.Reader) (int64, error) {
	d, err := c.newDec(&fileErrs{r: r})
	if err != nil {
		return 0, corrupt(err)
	}
	defer d.Close()
	return io.Copy(io.Discard, &decodeErrs{r: d})
}

type compWriter struct {
	c     *Compressed
	fw    *fileWriter
	enc   encoder
	plain int64 // body bytes handed to the encoder
	frame int64 // plain at the start of the current frame
}

func (w *compWriter) Partial() Partial               { return w.fw.Partial() }
func (w *compWriter) SetValidator(v string, n int64) { w.fw.SetValidator(v, n) }

// SetCacheValidators implements Writer.
func (w *compWriter) SetCacheValidators(etag, lm string) { w.fw.SetCacheValidators(etag, lm) }
func (w *compWriter) Replace()                           { w.fw.Replace() }

// Prefix implements Writer: the kept body bytes, decompressed.
func (w *compWriter) Prefix() io.Reader {
	d, err := w.c.newDec(w.fw.Prefix())
	if err != nil {
		return &errReader{err}
	}
	return d
}

func (w *compWriter) Write(p []byte) (int, error) {
	n, err := w.enc.Write(p)
	w.plain += int64(n)
	if err == nil && w.plain-w.frame >= w.fw.s.checkpoint {
		if err = w.endFrame(); err == nil {
			w.fw.checkpoint()
		}
	}
	return n, err
}

// endFrame ends the current member or frame, so the file is a complete stream
// of every body byte so far, and starts the next one.
func (w *compWriter) endFrame() error {
	if err := w.enc.Close(); err != nil {
		w.fw.SetValidator("", -1) // the file may end mid-frame: never resume it
		return err
	}
	w.fw.plain, w.frame = w.plain, w.plain
	w.enc.Reset(w.fw)
	return nil
}

func (w *compWriter) Restart() error {
	w.enc.Reset(io.Discard) // drop buffered bytes of the old body
	if err := w.fw.Restart(); err != nil {
		return err
	}
	w.plain, w.frame = 0, 0
	w.enc.Reset(w.fw)
	return nil
}

func (w *compWriter) Abort() error {
	if w.plain > w.fw.plain {
		w.endFrame() // on error, endFrame made the file unresumable
	}
	w.release()
	return w.fw.Abort()
}

func (w *compWriter) Discard() error {
	w.release()
	return w.fw.Discard()
}

func (w *compWriter) Commit(done func(error)) {
	err := w.enc.Close()
	w.release()
	if err == nil {
		err = setXattr(w.fw.f, sizeAttr, strconv.FormatInt(w.plain, 10))
	}
	if err != nil {
		w.fw.Discard()
		done(err)
		return
	}
	w.fw.Commit(done)
}

func (w *compWriter) release() {
	w.enc.Reset(io.Discard)
	w.c.encs.Put(w.enc)
	w.enc = nil
}

type readCloser struct {
	io.Reader
	close func() error
}

func (r *readCloser) Close() error { return r.close() }

type errReader struct{ err error }

func (r *errReader) Read([]byte) (int, error) { return 0, r.err }
