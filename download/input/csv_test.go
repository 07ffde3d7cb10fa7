package input

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
)

// readRecords reads every record of in, each as "LINE:cell|cell", or
// "LINE!reason" for a bad one.
func readRecords(t testing.TB, in string, sep byte) []string {
	t.Helper()
	rr := newRecordReader(bufio.NewReaderSize(strings.NewReader(in), MaxLineLen+2), sep)
	var out []string
	for i := 0; ; i++ {
		if i > len(in)+2 {
			t.Fatalf("no io.EOF after %d records", i)
		}
		cells, line, err := rr.Read()
		var re *recordError
		switch {
		case err == io.EOF:
			return out
		case errors.As(err, &re):
			if re.Line != line {
				t.Fatalf("recordError line %d, Read line %d", re.Line, line)
			}
			out = append(out, fmt.Sprintf("%d!%s", line, re.Reason))
		case err != nil:
			t.Fatalf("Read: %v", err)
		default:
			out = append(out, fmt.Sprintf("%d:%s", line, strings.Join(cells, "|")))
		}
	}
}

func TestRecordReader(t *testing.T) {
	long := strings.Repeat("x", MaxRowLen)
	// A quoted cell longer than the reader's buffer, with a CRLF whose CR
	// ends one buffer-full and whose LF starts the next.
	across := strings.Repeat("q", MaxLineLen+2-2) + "\r\n" + strings.Repeat("r", 3*MaxLineLen)
	tests := []struct {
		name string
		in   string
		sep  byte
		want []string
	}{
		{"plain", "a,b\nc,d\n", ',', []string{"1:a|b", "2:c|d"}},
		{"no newline at the end", "a,b\nc,d", ',', []string{"1:a|b", "2:c|d"}},
		{"quoted comma, quote and newline", "\"x,y\",\"say \"\"hi\"\"\",\"one\ntwo\"\nz,w,v\n", ',',
			[]string{"1:x,y|say \"hi\"|one\ntwo", "3:z|w|v"}},
		{"CRLF", "a,b\r\nc,d\r\n", ',', []string{"1:a|b", "2:c|d"}},
		{"CRLF in a quoted cell reads as LF", "\"a\r\nb\",c\r\n", ',', []string{"1:a\nb|c"}},
		{"CR alone stays", "a\rb,c\n", ',', []string{"1:a\rb|c"}},
		{"CR at the very end", "a,b\r", ',', []string{"1:a|b"}},
		{"empty lines skipped", "a\n\n\r\n\nb\n", ',', []string{"1:a", "5:b"}},
		{"empty cells", "a,,\n,\n", ',', []string{"1:a||", "2:|"}},
		{"quoted empty cell is a record", "\"\"\n", ',', []string{"1:"}},
		{"quote in an unquoted cell is literal", "a\"b,c\"\"d,e\"\n", ',', []string{"1:a\"b|c\"\"d|e\""}},
		{"unquoted cell starting with a space then a quote", " \"a\",b\n", ',', []string{"1: \"a\"|b"}},
		{"text after a closing quote", "\"a\"b,c\nd,e\n", ',',
			[]string{"1!a quoted cell goes on after its closing quote ('b'): a quote inside a quoted cell is written twice", "2:d|e"}},
		{"space after a closing quote", "\"a\" ,b\nc,d\n", ',',
			[]string{"1!a quoted cell goes on after its closing quote (' '): a quote inside a quoted cell is written twice", "2:c|d"}},
		{"CR then text after a closing quote", "\"a\"\rb\nc\n", ',',
			[]string{"1!a quoted cell goes on after its closing quote ('b'): a quote inside a quoted cell is written twice", "2:c"}},
		{"bad record spanning lines", "\"a\nb\"x\nc\n", ',',
			[]string{"1!a quoted cell goes on after its closing quote ('x'): a quote inside a quoted cell is written twice", "3:c"}},
		{"quoted cell not closed", "a,b\nc,\"d\ne,f\n", ',',
			[]string{"1:a|b", "2!a quoted cell is not closed by the end of the list"}},
		{"TSV", "a\tb,c\n\"d\te\"\tf\n", '\t', []string{"1:a|b,c", "2:d\te|f"}},
		{"row at the limit", long[:MaxRowLen-1] + "\n", ',', []string{"1:" + long[:MaxRowLen-1]}},
		{"row over the limit", long + ",y\nz\n", ',', []string{"1!a row longer than 1 MiB", "2:z"}},
		{"quoted row over the limit", "\"" + long + "\n\"\nz\n", ',', []string{"1!a row longer than 1 MiB", "3:z"}},
		{"separators over the limit", strings.Repeat(",", MaxRowLen) + "\nz\n", ',', []string{"1!a row longer than 1 MiB", "2:z"}},
		{"quoted cell across buffers", "\"" + across + "\",b\nc\n", ',',
			[]string{"1:" + strings.Replace(across, "\r\n", "\n", 1) + "|b", "3:c"}},
		{"empty", "", ',', nil},
		{"only newlines", "\n\r\n\n", ',', nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := readRecords(t, tt.in, tt.sep)
			if !slices.Equal(got, tt.want) {
				t.Errorf("got  %.300q\nwant %.300q", got, tt.want)
			}
		})
	}
}

// The record reader agrees with encoding/csv (strict) wherever that reads a
// list without an error, and past that never panics, always ends, and
// numbers its records in order.
func FuzzRecordReader(f *testing.F) {
	for _, s := range []string{
		"url,out\nhttp://x/a,a\n", "\"a,b\",\"c\"\"d\"\n\"e\nf\",g\r\n", "a\"b,c\n", "\"a\"b\n",
		"\"unclosed\n", "a\tb\n\"c\td\"\te\n", "\r\n\r\n", "a,b\r", "\"\"\"\"\n", "\"a\"\r\n\"b\"\r",
		",,,\n", "\n\n\"\n\"\n",
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(strings.ReplaceAll(s, ",", "\t")), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, tab bool) {
		sep := byte(',')
		if tab {
			sep = '\t'
		}
		in := string(data)
		var got []string
		lines := []int{}
		rr := newRecordReader(bufio.NewReaderSize(strings.NewReader(in), 16), sep) // small: records span buffers
		for i := 0; ; i++ {
			if i > len(in)+2 {
				t.Fatalf("no io.EOF after %d reads", i)
			}
			cells, line, err := rr.Read()
			if err == io.EOF {
				break
			}
			var re *recordError
			if err != nil && !errors.As(err, &re) {
				t.Fatalf("Read: %v", err)
			}
			if line < 1 || len(lines) > 0 && line <= lines[len(lines)-1] {
				t.Fatalf("record at line %d after %v", line, lines)
			}
			lines = append(lines, line)
			if err != nil {
				got = append(got, "!")
				continue
			}
			got = append(got, fmt.Sprintf("%d:%q", line, cells))
		}
		cr := csv.NewReader(strings.NewReader(in))
		cr.Comma = rune(sep)
		cr.FieldsPerRecord = -1
		var want []string
		for {
			rec, err := cr.Read()
			if err == io.EOF {
				break
			}
			if err != nil {
				return // encoding/csv refuses it: nothing to compare
			}
			line, _ := cr.FieldPos(0)
			want = append(want, fmt.Sprintf("%d:%q", line, rec))
		}
		if !slices.Equal(got, want) {
			t.Fatalf("input %q\ngot  %q\nwant %q (encoding/csv)", in, got, want)
		}
	})
}
