package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/urfave/cli/v2"

	"github.com/haul/haul/download"
	"github.com/haul/haul/download/input"
)

// tableOptions are the flags that say how to read the list: its format and,
// for a table, which columns hold the fields.
type tableOptions struct {
	format  input.Format      // --input-format; FormatAuto: by -i's name
	columns map[string]string // --col FIELD=COLUMN
	cut     *listCut          // where the list's sources record a cut
	// sampleKeys: each entry is a sample named by its key (or position), so
	// a key that cannot name one makes a bad line (input.Options.SampleKeys).
	sampleKeys bool
}

// listCut holds the error of a list cut off midway, which its source
// records and reports as the list's end: the entries read before it finish,
// then the run fails with it (exit 3).
type listCut struct {
	mu  sync.Mutex
	err error
}

func (c *listCut) set(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
	}
}

// cutErr returns the cut of the list as a fatal error, or nil.
func (t *tableOptions) cutErr() error {
	if t.cut == nil {
		return nil
	}
	t.cut.mu.Lock()
	defer t.cut.mu.Unlock()
	if t.cut.err == nil {
		return nil
	}
	return &download.FatalError{Err: t.cut.err}
}

// colFlag collects --col FIELD=COLUMN as given, commas and all (a
// StringSliceFlag would split a column name at its commas).
type colFlag struct{ vals []string }

func (c *colFlag) Set(s string) error { c.vals = append(c.vals, s); return nil }
func (c *colFlag) String() string     { return "" }

func tableFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "input-format",
			Usage: "the list's `FORMAT`: lines, csv, tsv or parquet (default: what -i's name says, .csv, .tsv, .parquet, also .csv.gz, .tsv.zst ...; else lines)"},
		&cli.GenericFlag{Name: "col", Value: &colFlag{},
			Usage: "take a field (url, out, sha256, size or key) from another table column: `FIELD=COLUMN` (repeatable)"},
	}
}

func parseTable(c *cli.Context, o *options) error {
	if s := c.String("input-format"); s != "" {
		f, err := input.ParseFormat(s)
		if err != nil {
			return fmt.Errorf("--input-format %w", err)
		}
		o.table.format = f
	}
	if cf, ok := c.Generic("col").(*colFlag); ok {
		for _, v := range cf.vals {
			field, col, ok := strings.Cut(v, "=")
			field = strings.ToLower(strings.TrimSpace(field))
			switch {
			case !ok || col == "":
				return fmt.Errorf("--col %q: want FIELD=COLUMN, FIELD one of %s", v, strings.Join(input.Fields, ", "))
			case !isField(field):
				return fmt.Errorf("--col %q: %q is not a field: want one of %s", v, field, strings.Join(input.Fields, ", "))
			case o.table.columns[field] != "":
				return fmt.Errorf("--col %q: %s is given twice", v, field)
			}
			if o.table.columns == nil {
				o.table.columns = map[string]string{}
			}
			o.table.columns[field] = col
		}
	}
	format := o.table.format
	if format == input.FormatAuto && o.input != "" && o.input != "-" {
		format = input.FormatOf(o.input)
	}
	switch {
	case len(o.urls) > 0 && (o.table.format != input.FormatAuto || o.table.columns != nil):
		return errors.New("--input-format and --col are about a list read with -i or from standard input, not URL arguments")
	case format == input.FormatParquet && (o.input == "" || o.input == "-"):
		return errors.New("--input-format parquet: a Parquet list is read from its end, so it must be a file: give it with -i FILE")
	case o.table.columns != nil && (format == input.FormatAuto || format == input.FormatLines):
		return fmt.Errorf("--col applies to tables: give --input-format csv, tsv or parquet (or -i FILE.csv, .tsv, .parquet)")
	}
	return nil
}

func isField(f string) bool {
	for _, g := range input.Fields {
		if f == g {
			return true
		}
	}
	return false
}

// openList returns the source that reads the list in r, of any format (see
// input.Open): name is its file, or "" for standard input. check reads its
// start at once (a regular file: an unreadable one is a usage error before
// anything is done); on a pipe the first read waits for the run. The
// returned close releases the decoders, not r.
func openList(o *options, r io.Reader, name string, check bool) (download.Source, func(), error) {
	label := name
	if label == "" {
		label = "standard input"
	}
	var keep func(string) bool
	if o.shardN > 1 {
		// Rows of other shards are dropped by the engine: their meta is
		// not built.
		k, n, by := o.shardK, o.shardN, o.shardBy
		keep = func(u string) bool {
			if by == download.ShardByHost {
				u = download.HostShardKey(u)
			}
			return download.ShardOf(u, n) == k
		}
	}
	lr, err := input.Open(r, input.Options{Format: o.table.format, Name: label, Columns: o.table.columns, Keep: keep,
		SampleKeys: o.table.sampleKeys})
	if err != nil {
		return nil, nil, err
	}
	if check {
		// A list that is not what it says is refused now; a read error
		// comes again from the first Next, reported as the run's.
		var le *input.ListError
		if err := lr.Check(); errors.As(err, &le) {
			lr.Close()
			return nil, nil, err
		}
	}
	if o.table.cut == nil {
		o.table.cut = &listCut{}
	}
	return listSource{lr, o.table.cut}, func() { lr.Close() }, nil
}

// listSource is a list's reader as the engine sees it. A list cut off
// midway (a compressed stream cut short, a damaged Parquet page) ends there:
// the entries read before it finish, and then the run fails (exit 3, see
// tableOptions.cutErr). It is not a usage error: the list was readable, and
// what it held up to the cut ran.
type listSource struct {
	r   *input.Reader
	cut *listCut
}

func (s listSource) Next() (download.Entry, error) {
	e, err := s.r.Next()
	var ce *input.CutError
	if errors.As(err, &ce) {
		s.cut.set(err)
		return e, io.EOF
	}
	return e, err
}

// isRegular reports whether f is a regular file (not a pipe, a FIFO, a
// terminal).
func isRegular(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode().IsRegular()
}
