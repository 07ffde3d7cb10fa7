package input

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxMetaLen is the most a row's other cells may hold together (64 KiB, a
// text line's limit): an entry carries them while it is in flight, and
// thousands may be.
const MaxMetaLen = 64 << 10

var metaTooLong = fmt.Sprintf("its other cells hold more than %d KiB", MaxMetaLen>>10)

// The fields of a row, as indexes into Fields.
const (
	fURL = iota
	fOut
	fSHA256
	fSize
	fKey
	nFields
)

// columns is what a table's header means: which column holds each field,
// and which are the others, carried in Meta.
type columns struct {
	names []string
	field [nFields]int // the column of each field, -1 for none
	meta  []int        // the other columns, in the table's order
}

// mapColumns finds the fields among names (a table's columns, in order): a
// column named after a field, case aside, or the one --col names for it.
func mapColumns(names []string, o Options) (*columns, error) {
	c := &columns{names: names}
	seen := map[string]int{}
	for i, n := range names {
		if j, dup := seen[n]; dup {
			return nil, fmt.Errorf("columns %d and %d are both named %q", j+1, i+1, n)
		}
		seen[n] = i
	}
	for f, field := range Fields {
		c.field[f] = -1
		if col, ok := o.Columns[field]; ok {
			i, err := findColumn(names, col)
			if err != nil {
				return nil, fmt.Errorf("--col %s=%s: %w", field, col, err)
			}
			c.field[f] = i
			continue
		}
		for i, n := range names {
			if !strings.EqualFold(strings.TrimSpace(n), field) {
				continue
			}
			if c.field[f] >= 0 {
				return nil, fmt.Errorf("columns %q and %q are both the %s: choose one with --col %s=COLUMN", names[c.field[f]], n, field, field)
			}
			c.field[f] = i
		}
	}
	if c.field[fURL] < 0 {
		return nil, fmt.Errorf("no url column (the columns are %s): name it with --col url=COLUMN", listColumns(names))
	}
	for i := range names {
		mapped := false
		for f := range c.field {
			if c.field[f] == i {
				if mapped {
					return nil, fmt.Errorf("column %q is given to two fields", names[i])
				}
				mapped = true
			}
		}
		if !mapped {
			c.meta = append(c.meta, i)
		}
	}
	return c, nil
}

// findColumn returns the column named col: exactly, else regardless of case
// when only one matches.
func findColumn(names []string, col string) (int, error) {
	found := -1
	for i, n := range names {
		if n == col || strings.TrimSpace(n) == col {
			return i, nil
		}
		if strings.EqualFold(strings.TrimSpace(n), col) {
			if found >= 0 {
				return 0, fmt.Errorf("no column %q, and %q and %q differ from it only in case", col, names[found], n)
			}
			found = i
		}
	}
	if found < 0 {
		return 0, fmt.Errorf("no column %q (the columns are %s)", col, listColumns(names))
	}
	return found, nil
}

func listColumns(names []string) string {
	const most = 20
	q := make([]string, 0, min(len(names), most))
	for _, n := range names[:min(len(names), most)] {
		q = append(q, strconv.Quote(n))
	}
	s := strings.Join(q, ", ")
	if len(names) > most {
		s += fmt.Sprintf(" and %d more", len(names)-most)
	}
	if s == "" {
		s = "none"
	}
	return s
}

// fill sets e's fields from a row's field values (v[f], "" when absent),
// checked as a line's keys are.
func fill(e *Entry, v *[nFields]string) error {
	e.Size = -1
	u := v[fURL]
	if u == "" {
		return errors.New("no URL (its url cell is empty)")
	}
	if err := checkURL(u); err != nil {
		return err
	}
	e.URL = u
	for f := fOut; f < nFields; f++ {
		if v[f] == "" {
			continue
		}
		if err := setField(e, Fields[f], v[f]); err != nil {
			return err
		}
	}
	return nil
}

// csvTable reads a CSV or TSV table.
type csvTable struct {
	rr    *recordReader
	o     Options
	c     *columns
	row   int // data rows read
	index int // entries read: rows, bad ones too
	meta  []byte
}

// openCSV reads a CSV or TSV table's header (after a UTF-8 byte order mark,
// if any).
func openCSV(br *bufio.Reader, sep byte, o Options) (*csvTable, error) {
	if bom, _ := br.Peek(3); string(bom) == "\xef\xbb\xbf" {
		br.Discard(3)
	}
	t := &csvTable{rr: newRecordReader(br, sep), o: o}
	header, line, err := t.rr.Read()
	switch {
	case err == io.EOF:
		return t, nil // an empty list: no rows
	case err != nil:
		var re *recordError
		if errors.As(err, &re) {
			return nil, &ListError{Name: o.Name, Err: fmt.Errorf("its header (line %d): %s", line, re.Reason)}
		}
		return nil, err
	}
	names := make([]string, len(header))
	for i, h := range header {
		names[i] = strings.Clone(h)
	}
	if t.c, err = mapColumns(names, o); err != nil {
		return nil, &ListError{Name: o.Name, Err: err}
	}
	return t, nil
}

func (t *csvTable) next() (Entry, error) {
	if t.c == nil {
		return Entry{}, io.EOF
	}
	cells, line, err := t.rr.Read()
	if err == io.EOF {
		return Entry{}, io.EOF
	}
	var re *recordError
	if err != nil && !errors.As(err, &re) {
		var ce *CutError
		if errors.As(err, &ce) && ce.After == "" {
			ce.After = fmt.Sprintf("row %d (line %d)", t.row, t.rr.line)
		}
		return Entry{}, err
	}
	t.row++
	e := Entry{Line: line, Row: t.row, Index: t.index}
	t.index++
	bad := func(reason string) (Entry, error) {
		return Entry{}, &LineError{Line: line, Row: t.row, Reason: reason}
	}
	if re != nil {
		return bad(re.Reason)
	}
	if len(cells) != len(t.c.names) {
		return bad(fmt.Sprintf("%d cells, the header has %d", len(cells), len(t.c.names)))
	}
	var v [nFields]string
	for f, i := range t.c.field {
		if i >= 0 {
			v[f] = strings.Trim(cells[i], " \t\r\n")
		}
	}
	if err := fill(&e, &v); err != nil {
		return bad(err.Error())
	}
	size := 0
	for _, i := range t.c.meta {
		size += len(cells[i])
	}
	if size > MaxMetaLen {
		return bad(metaTooLong)
	}
	if len(t.c.meta) > 0 && (t.o.Keep == nil || t.o.Keep(e.URL)) {
		b := append(t.meta[:0], '{')
		for k, i := range t.c.meta {
			if k > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, t.c.names[i])
			b = append(b, ':')
			if cells[i] == "" {
				b = append(b, "null"...)
			} else {
				b = appendJSONString(b, cells[i])
			}
		}
		b = append(b, '}')
		e.Meta = string(b)
		t.meta = b
	}
	return e, nil
}

// appendJSONString appends s to b as a JSON string. Bytes that are not
// valid UTF-8 become U+FFFD, as with encoding/json; <, > and & stay as they
// are.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		// U+2028 and U+2029 are valid JSON but end lines in JavaScript:
		// escaped, as encoding/json does.
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
