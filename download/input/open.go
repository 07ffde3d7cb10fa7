package input

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
)

// Format is how a list is written.
type Format int

// The formats of a list.
const (
	// FormatAuto: the one the file's name says (FormatOf).
	FormatAuto Format = iota
	// FormatLines: one entry per line (see ParseLine).
	FormatLines
	// FormatCSV: a table, RFC 4180, with a header row.
	FormatCSV
	// FormatTSV: a table as CSV, with tabs between cells.
	FormatTSV
	// FormatParquet: a table in an Apache Parquet file.
	FormatParquet
)

var formatNames = []string{FormatAuto: "auto", FormatLines: "lines", FormatCSV: "csv", FormatTSV: "tsv", FormatParquet: "parquet"}

func (f Format) String() string { return formatNames[f] }

// FormatNames are the names ParseFormat takes.
func FormatNames() []string { return append([]string(nil), formatNames[FormatAuto+1:]...) }

// ParseFormat parses a format's name: lines, csv, tsv or parquet.
func ParseFormat(s string) (Format, error) {
	for f, n := range formatNames {
		if f != int(FormatAuto) && strings.EqualFold(s, n) {
			return Format(f), nil
		}
	}
	return FormatAuto, fmt.Errorf("%q: want lines, csv, tsv or parquet", s)
}

// FormatOf returns the format a file's name says: FormatCSV for NAME.csv,
// FormatTSV for NAME.tsv (or .tab), FormatParquet for NAME.parquet (or .pq),
// each also with .gz, .zst or .zstd after it; FormatLines for any other.
// Case does not matter.
func FormatOf(name string) Format {
	ext := strings.ToLower(path.Ext(name))
	switch ext {
	case ".gz", ".zst", ".zstd":
		ext = strings.ToLower(path.Ext(strings.TrimSuffix(name, path.Ext(name))))
	}
	switch ext {
	case ".csv":
		return FormatCSV
	case ".tsv", ".tab":
		return FormatTSV
	case ".parquet", ".pq":
		return FormatParquet
	}
	return FormatLines
}

// Fields are the table columns that mean something to haul, the keys of a
// line of the same names. A table's other columns go into Entry.Meta.
var Fields = []string{"url", "out", "sha256", "size", "key"}

// Options says how to read a list.
type Options struct {
	// Format of the list; FormatAuto: what Name says (FormatOf).
	Format Format
	// Name is the list's name in messages: its file, or "standard input".
	Name string
	// Columns maps a field (one of Fields) to the table column that holds it
	// (--col FIELD=COLUMN), in place of the column named after the field.
	Columns map[string]string
	// Keep, when set, says which URLs this run will fetch (its shard): the
	// other rows are still read and checked, so that each run reports the
	// same bad rows, but get no Meta, the costly part of a row.
	Keep func(url string) bool
	// SampleKeys: the entries' keys name samples (--tar), so a key that
	// CheckKey refuses makes its line or row a bad one. Otherwise keys are
	// carried as written.
	SampleKeys bool
}

// Reader reads the entries of a list, of any format, one at a time. It is a
// download.Source.
type Reader struct {
	o      Options
	in     io.Reader
	ready  bool
	err    error // sticky, from opening
	next   func() (Entry, error)
	closes []func()
}

// Open returns a Reader of the list r. Nothing is read yet: the first Next
// (or Check) reads the list's first bytes, which tell a compressed list (gzip
// or zstd, decompressed as it is read), and a table's header. A Parquet list
// must be a file (r an *os.File of a regular file: Parquet is read from its
// end); a CSV or TSV list, a text list and a compressed one may be any
// stream. Open's errors are about the options, before anything is read.
func Open(r io.Reader, o Options) (*Reader, error) {
	if o.Format == FormatAuto {
		o.Format = FormatOf(o.Name)
	}
	if o.Name == "" {
		o.Name = "the list"
	}
	for f, col := range o.Columns {
		switch {
		case !isField(f):
			return nil, fmt.Errorf("--col %s=%s: %q is not one of %s", f, col, f, strings.Join(Fields, ", "))
		case col == "":
			return nil, fmt.Errorf("--col %s=: no column named", f)
		case o.Format == FormatLines:
			return nil, fmt.Errorf("--col %s=%s: %s is not a table (CSV, TSV or Parquet; see --input-format)", f, col, o.Name)
		}
	}
	if o.Format == FormatParquet {
		if _, ok := parquetFile(r); !ok {
			return nil, fmt.Errorf("%s: a Parquet list must be a file (it is read from its end): give it with -i FILE", o.Name)
		}
	}
	return &Reader{o: o, in: r}, nil
}

func isField(f string) bool {
	for _, g := range Fields {
		if f == g {
			return true
		}
	}
	return false
}

// Check reads the start of the list now: a compressed stream's first bytes
// and a table's header. It returns a *ListError if the list cannot be read
// from its start, or a read error. For a file, call it before the run, so
// that such a list is refused before anything else is done; on a pipe it
// would wait for the list's writer.
func (r *Reader) Check() error {
	r.open()
	return r.err
}

// Next returns the next entry. A bad line or row is a *LineError (call Next
// again for the one after it); io.EOF is the end. A list cut off midway is a
// *CutError, one unreadable from its start a *ListError; a read error is
// returned as is.
func (r *Reader) Next() (Entry, error) {
	r.open()
	if r.err != nil {
		return Entry{}, r.err
	}
	e, err := r.next()
	if err == nil && r.o.SampleKeys && e.Key != "" {
		if kerr := CheckKey(e.Key); kerr != nil {
			return Entry{}, &LineError{Line: e.Line, Row: e.Row, Reason: kerr.Error()}
		}
	}
	return e, err
}

// Close releases the decoders. It does not close the stream Open was given.
func (r *Reader) Close() error {
	for _, c := range r.closes {
		c()
	}
	r.closes = nil
	return nil
}

func (r *Reader) open() {
	if r.ready {
		return
	}
	r.ready = true
	if r.o.Format == FormatParquet {
		f, _ := parquetFile(r.in)
		p, err := openParquet(f, r.o)
		if err != nil {
			r.err = err
			return
		}
		r.next = p.next
		r.closes = append(r.closes, p.close)
		return
	}
	raw := bufio.NewReaderSize(r.in, 64<<10)
	d, _, closeFn, err := decompress(raw, r.o.Name)
	if err != nil {
		r.err = err
		return
	}
	r.closes = append(r.closes, closeFn)
	br := bufio.NewReaderSize(d, MaxLineLen+2) // the Scanner's size: it takes br as is
	if head, err := br.Peek(len(magicParquet)); err != nil && err != io.EOF && err != bufio.ErrBufferFull {
		r.err = err // a *ListError, or a read error
		return
	} else if string(head) == string(magicParquet) && r.o.Format != FormatParquet {
		r.err = &ListError{Name: r.o.Name, Err: fmt.Errorf("a Parquet file, read as %s: give it with -i FILE.parquet or --input-format parquet", r.o.Format)}
		return
	}
	switch r.o.Format {
	case FormatCSV, FormatTSV:
		sep := byte(',')
		if r.o.Format == FormatTSV {
			sep = '\t'
		}
		t, err := openCSV(br, sep, r.o)
		if err != nil {
			r.err = err
			return
		}
		r.next = t.next
	default:
		s := NewScanner(br)
		r.next = func() (Entry, error) {
			e, err := s.Next()
			var ce *CutError
			if errors.As(err, &ce) && ce.After == "" {
				ce.After = fmt.Sprintf("line %d", s.Lines())
			}
			return e, err
		}
	}
}

// parquetFile returns r as a file Parquet can be read from: one with ReadAt
// and a size, a regular file.
func parquetFile(r io.Reader) (parquetSource, bool) {
	f, ok := r.(parquetSource)
	if !ok {
		return nil, false
	}
	fi, err := f.Stat()
	return f, err == nil && fi.Mode().IsRegular()
}

// parquetSource is what a Parquet list is read from (an *os.File).
type parquetSource interface {
	io.ReaderAt
	Stat() (fs.FileInfo, error)
}
