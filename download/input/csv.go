package input

import (
	"bufio"
	"fmt"
	"io"
)

// MaxRowLen is the longest accepted CSV or TSV record (1 MiB), its cells'
// bytes together: a longer one is a bad row, read past without holding it.
const MaxRowLen = 1 << 20

// recordReader reads the records of a CSV (RFC 4180) or TSV stream, one at a
// time. It is encoding/csv's strict reader except in one point: a quote
// inside an unquoted cell is an ordinary character (a"b is the cell a"b), as
// with csv.Reader's LazyQuotes. LazyQuotes itself is looser in two ways that
// lose rows without a word, so it is not used: a quoted cell followed by
// anything but a separator or the end of the line ("a" ,b) would run on,
// through the next line breaks, to the next quote; and a quoted cell never
// closed would take the rest of the list. Here the first is a bad record,
// and the second a bad record that ends the list.
//
// As with encoding/csv, empty lines are skipped, CRLF line ends are read as
// LF (inside quoted cells too), and a quoted cell may hold separators, quotes
// (doubled) and line breaks.
type recordReader struct {
	r     *bufio.Reader
	sep   byte
	line  int   // lines begun so far
	err   error // sticky: io.EOF or a read error
	cells []string
	buf   []byte // the record's cells' bytes
	ends  []int  // where each cell ends in buf
}

// recordError is a record that breaks the format; the reader goes on at the
// line after it.
type recordError struct {
	Line   int // where the record starts
	Reason string
}

func (e *recordError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Reason) }

func newRecordReader(r *bufio.Reader, sep byte) *recordReader {
	return &recordReader{r: r, sep: sep}
}

// The states of the record machine.
const (
	cellStart = iota // at the start of a cell
	unquoted         // in an unquoted cell
	quoted           // in a quoted cell
	quoteSeen        // a quote in a quoted cell: its end, or the first of two
	quoteCR          // a CR after a quoted cell's closing quote: an LF must follow
	badRecord        // after a malformed quoted cell: skipping to the line's end
)

// Read returns the next record's cells (valid until the next Read) and the
// line it starts on. At the end it returns io.EOF; a record that breaks the
// format returns a *recordError (and the next Read goes on after it); a read
// error is returned as is, and again by every later Read.
func (rr *recordReader) Read() (cells []string, line int, err error) {
	if rr.err != nil {
		return nil, 0, rr.err
	}
	rr.buf, rr.ends = rr.buf[:0], rr.ends[:0]
	state := cellStart
	start := 0 // the line the record starts on; 0 until its first byte
	var reason string
	tooLong := false
	// fits reports whether n more bytes fit in the record: each cell counts
	// one byte more, so that a line of separators is bounded too.
	fits := func(n int) bool {
		if len(rr.buf)+len(rr.ends)+n > MaxRowLen {
			tooLong = true
		}
		return !tooLong
	}
	add := func(b ...byte) {
		if fits(len(b)) {
			rr.buf = append(rr.buf, b...)
		}
	}
	// inCell reports whether the current cell has bytes.
	inCell := func() bool { return len(rr.buf) > 0 && (len(rr.ends) == 0 || rr.ends[len(rr.ends)-1] < len(rr.buf)) }
	endCell := func() {
		if fits(1) {
			rr.ends = append(rr.ends, len(rr.buf))
		}
	}
	// endLine ends an unquoted cell at a line end, without the CR of a CRLF,
	// and reports whether the line was empty (no record).
	endLine := func() bool {
		if inCell() && rr.buf[len(rr.buf)-1] == '\r' {
			rr.buf = rr.buf[:len(rr.buf)-1]
		}
		if len(rr.ends) == 0 && len(rr.buf) == 0 && !tooLong {
			return true
		}
		endCell()
		return false
	}
	for {
		// ReadSlice returns at each LF, so a record always ends at the end of
		// a chunk; a longer line comes in several chunks (ErrBufferFull), the
		// state carried over.
		chunk, rerr := rr.r.ReadSlice('\n')
		if rerr != nil && rerr != io.EOF && rerr != bufio.ErrBufferFull {
			rr.err = rerr // a partial record before a read error is dropped
			return nil, 0, rerr
		}
		if len(chunk) > 0 && start == 0 {
			start = rr.line + 1
		}
		for i := 0; i < len(chunk); i++ {
			c := chunk[i]
			switch state {
			case cellStart, unquoted:
				if state == cellStart && c == '"' {
					state = quoted
					continue
				}
				// A run of plain bytes in one step (a quote is one of them).
				j := i
				for j < len(chunk) && chunk[j] != rr.sep && chunk[j] != '\n' {
					j++
				}
				add(chunk[i:j]...)
				i = j
				switch {
				case j == len(chunk):
					state = unquoted
				case chunk[j] == rr.sep:
					endCell()
					state = cellStart
				default: // LF
					rr.line++
					if endLine() {
						state, start = cellStart, 0 // an empty line
						continue
					}
					return rr.finish(start, tooLong, reason)
				}
			case quoted:
				j := i
				for j < len(chunk) && chunk[j] != '"' && chunk[j] != '\n' {
					j++
				}
				add(chunk[i:j]...)
				i = j
				switch {
				case j == len(chunk):
				case chunk[j] == '"':
					state = quoteSeen
				case inCell() && rr.buf[len(rr.buf)-1] == '\r':
					rr.line++
					rr.buf[len(rr.buf)-1] = '\n' // CRLF in a quoted cell reads as LF
				default:
					rr.line++
					add('\n')
				}
			case quoteSeen, quoteCR:
				switch {
				case state == quoteSeen && c == '"':
					add('"')
					state = quoted
				case state == quoteSeen && c == rr.sep:
					endCell()
					state = cellStart
				case c == '\n':
					rr.line++
					endCell()
					return rr.finish(start, tooLong, reason)
				case state == quoteSeen && c == '\r':
					state = quoteCR
				default:
					reason = fmt.Sprintf("a quoted cell goes on after its closing quote (%q): a quote inside a quoted cell is written twice", c)
					state = badRecord
				}
			case badRecord:
				if c == '\n' {
					rr.line++
					return rr.finish(start, tooLong, reason)
				}
			}
		}
		if rerr != io.EOF {
			continue
		}
		rr.err = io.EOF
		switch state {
		case cellStart, unquoted:
			if endLine() {
				return nil, 0, io.EOF
			}
		case quoted:
			reason = "a quoted cell is not closed by the end of the list"
		case quoteSeen, quoteCR:
			endCell()
		}
		return rr.finish(start, tooLong, reason)
	}
}

// finish returns the record just read, or its error.
func (rr *recordReader) finish(start int, tooLong bool, reason string) ([]string, int, error) {
	switch {
	case reason != "":
		return nil, start, &recordError{Line: start, Reason: reason}
	case tooLong:
		return nil, start, &recordError{Line: start, Reason: fmt.Sprintf("a row longer than %d MiB", MaxRowLen>>20)}
	}
	s := string(rr.buf)
	rr.cells = rr.cells[:0]
	prev := 0
	for _, end := range rr.ends {
		rr.cells = append(rr.cells, s[prev:end])
		prev = end
	}
	return rr.cells, start, nil
}
