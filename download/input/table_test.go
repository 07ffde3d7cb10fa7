package input

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// readAll reads a list to its end: each entry as "ROW/LINE #INDEX URL out=
// sha256= size= key= meta", each bad row or line as its error.
func readAll(t testing.TB, r *Reader) ([]string, error) {
	t.Helper()
	var out []string
	for i := 0; i < 100000; i++ {
		e, err := r.Next()
		var le *LineError
		switch {
		case err == io.EOF:
			return out, nil
		case errors.As(err, &le):
			out = append(out, err.Error())
		case err != nil:
			return out, err
		default:
			s := fmt.Sprintf("%d/%d #%d %s", e.Row, e.Line, e.Index, e.URL)
			for _, kv := range []struct{ k, v string }{{"out", e.Out}, {"sha256", e.SHA256}, {"key", e.Key}} {
				if kv.v != "" {
					s += " " + kv.k + "=" + kv.v
				}
			}
			if e.Size >= 0 {
				s += fmt.Sprintf(" size=%d", e.Size)
			}
			if e.Meta != "" {
				if !json.Valid([]byte(e.Meta)) {
					t.Fatalf("meta %q is not JSON", e.Meta)
				}
				s += " " + e.Meta
			}
			out = append(out, s)
		}
	}
	t.Fatal("no io.EOF")
	return nil, nil
}

func openString(t testing.TB, in string, o Options) *Reader {
	t.Helper()
	r, err := Open(strings.NewReader(in), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestCSVTable(t *testing.T) {
	const sum = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	tests := []struct {
		name string
		in   string
		o    Options
		want []string
	}{
		{"columns matched regardless of case, others into meta in order",
			"\ufeffTEXT,URL,Size,width,SHA256,Out,Key\n" +
				"\"a cat, \"\"sitting\"\"\non a mat\",http://x/1,5,640," + strings.ToUpper(sum) + ",d/1.jpg,s1\n" +
				"plain,http://x/2,,,,,\n",
			Options{Format: FormatCSV},
			[]string{
				`1/2 #0 http://x/1 out=d/1.jpg sha256=` + sum + ` key=s1 size=5 {"TEXT":"a cat, \"sitting\"\non a mat","width":"640"}`,
				`2/4 #1 http://x/2 {"TEXT":"plain","width":null}`,
			}},
		{"--col maps other columns; the field's own name then goes to meta",
			"url,LINK,SAMPLE_ID,caption\nhttp://x/ignored,http://x/1,42,hi\n",
			Options{Format: FormatCSV, Columns: map[string]string{"url": "LINK", "key": "sample_id"}},
			[]string{`1/2 #0 http://x/1 key=42 {"url":"http://x/ignored","caption":"hi"}`}},
		{"TSV",
			"url\tcaption\nhttp://x/1\ta, b \"c\"\n\"http://x/2\"\t\"t\tu\"\n",
			Options{Format: FormatTSV},
			[]string{`1/2 #0 http://x/1 {"caption":"a, b \"c\""}`, `2/3 #1 http://x/2 {"caption":"t\tu"}`}},
		{"URL cell trimmed, empty cells absent",
			"url,out,size,key\n  http://x/1 ,,,\r\n",
			Options{Format: FormatCSV},
			[]string{`1/2 #0 http://x/1`}},
		{"bad rows named by row and line; they count for the index",
			"url,n\n" +
				"http://x/1,1\n" +
				",2\n" +
				"ftp://x/3,3\n" +
				"\"http://x/4\",\"four\nlines\n\n\",extra\n" +
				"http://x/5\n" +
				"\"http://x/6\"x,6\n" +
				"http://x/7,7\n",
			Options{Format: FormatCSV},
			[]string{
				`1/2 #0 http://x/1 {"n":"1"}`,
				`input row 2 (line 3): no URL (its url cell is empty)`,
				`input row 3 (line 4): unsupported scheme "ftp"`,
				`input row 4 (line 5): 3 cells, the header has 2`,
				`input row 5 (line 9): 1 cells, the header has 2`,
				`input row 6 (line 10): a quoted cell goes on after its closing quote ('x'): a quote inside a quoted cell is written twice`,
				`7/11 #6 http://x/7 {"n":"7"}`,
			}},
		{"bad fields",
			"url,sha256,size,key,out\n" +
				"http://x/1,abc,,,\n" +
				"http://x/2,,-1,,\n" +
				"http://x/3,,,a.b,\n" +
				"http://x/4,,,,../x\n",
			Options{Format: FormatCSV, SampleKeys: true},
			[]string{
				`input row 1 (line 2): bad sha256 "abc": want 64 hex digits`,
				`input row 2 (line 3): bad size "-1": want a non-negative integer`,
				`input row 3 (line 4): key "a.b" holds a . or a / (a sample's members are named KEY.EXT)`,
				`input row 4 (line 5): out= path "../x" escapes --dir`,
			}},
		{"rows that Keep refuses have no meta",
			"url,n\nhttp://x/1,1\nhttp://x/2,2\n",
			Options{Format: FormatCSV, Keep: func(u string) bool { return u == "http://x/2" }},
			[]string{`1/2 #0 http://x/1`, `2/3 #1 http://x/2 {"n":"2"}`}},
		{"other cells over 64 KiB", "url,a,b\nhttp://x/1," + strings.Repeat("a", 32<<10) + "," + strings.Repeat("b", 32<<10) + "\n" +
			"http://x/2," + strings.Repeat("a", 32<<10) + "," + strings.Repeat("b", 32<<10+1) + "\n",
			Options{Format: FormatCSV, Keep: func(string) bool { return false }},
			[]string{"1/2 #0 http://x/1", "input row 2 (line 3): its other cells hold more than 64 KiB"}},
		{"only a header", "url\n", Options{Format: FormatCSV}, nil},
		{"empty", "", Options{Format: FormatCSV}, nil},
		{"meta escapes control characters and keeps <>&",
			"url,t\nhttp://x/1,\"<a&b>\x01\xff\u2028\"\n",
			Options{Format: FormatCSV},
			[]string{`1/2 #0 http://x/1 {"t":"<a&b>\u0001\ufffd\u2028"}`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readAll(t, openString(t, tt.in, tt.o))
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// A table whose header haul cannot use is refused before its first row,
// naming the list and the column or flag.
func TestCSVTableBadHeader(t *testing.T) {
	tests := []struct {
		name string
		in   string
		cols map[string]string
		want string
	}{
		{"no url column", "link,caption\nhttp://x/1,a\n", nil,
			`t.csv: no url column (the columns are "link", "caption"): name it with --col url=COLUMN`},
		{"--col names a missing column", "url,caption\n", map[string]string{"key": "id"},
			`t.csv: --col key=id: no column "id" (the columns are "url", "caption")`},
		{"two url columns", "URL,url\n", nil,
			`t.csv: columns "URL" and "url" are both the url: choose one with --col url=COLUMN`},
		{"two columns of one name", "url,a,a\n", nil, `t.csv: columns 2 and 3 are both named "a"`},
		{"one column for two fields", "url,id\n", map[string]string{"key": "id", "out": "id"},
			`t.csv: column "id" is given to two fields`},
		{"bad header", "url,\"a\"b\n", nil,
			`t.csv: its header (line 1): a quoted cell goes on after its closing quote ('b'): a quote inside a quoted cell is written twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := openString(t, tt.in, Options{Name: "t.csv", Columns: tt.cols})
			err := r.Check()
			var le *ListError
			if !errors.As(err, &le) || err.Error() != tt.want {
				t.Fatalf("Check = %v\nwant *ListError %s", err, tt.want)
			}
			if _, err2 := r.Next(); err2 != err {
				t.Errorf("Next after a failed Check = %v", err2)
			}
		})
	}
}

func TestOpenOptions(t *testing.T) {
	for _, tt := range []struct {
		o    Options
		want string
	}{
		{Options{Name: "l.txt", Columns: map[string]string{"url": "u"}}, "--col url=u: l.txt is not a table (CSV, TSV or Parquet; see --input-format)"},
		{Options{Format: FormatCSV, Columns: map[string]string{"uri": "u"}}, `--col uri=u: "uri" is not one of url, out, sha256, size, key`},
		{Options{Name: "t.parquet"}, "t.parquet: a Parquet list must be a file (it is read from its end): give it with -i FILE"},
	} {
		if _, err := Open(strings.NewReader(""), tt.o); err == nil || err.Error() != tt.want {
			t.Errorf("Open(%+v) = %v, want %s", tt.o, err, tt.want)
		}
	}
}

func TestFormatOf(t *testing.T) {
	for name, want := range map[string]Format{
		"a.csv": FormatCSV, "A.CSV.GZ": FormatCSV, "x/b.tsv.zst": FormatTSV, "c.tab": FormatTSV, "d.parquet": FormatParquet,
		"e.txt": FormatLines, "f": FormatLines, "g.gz": FormatLines, "h.jsonl.zstd": FormatLines, "csv": FormatLines,
	} {
		if got := FormatOf(name); got != want {
			t.Errorf("FormatOf(%q) = %v, want %v", name, got, want)
		}
	}
	for _, s := range []string{"lines", "CSV", "tsv", "parquet"} {
		if _, err := ParseFormat(s); err != nil {
			t.Errorf("ParseFormat(%q): %v", s, err)
		}
	}
	if _, err := ParseFormat("json"); err == nil || err.Error() != `"json": want lines, csv, tsv or parquet` {
		t.Errorf("ParseFormat(json) = %v", err)
	}
}

func gzipped(t testing.TB, s string) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write([]byte(s))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func zstded(t testing.TB, s string) []byte {
	w, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	return w.EncodeAll([]byte(s), nil)
}

// gzip and zstd lists are recognised by their first bytes, whatever their
// name, text lists and tables alike.
func TestCompressedLists(t *testing.T) {
	text := "http://x/1\n# c\nhttp://x/2 key=k2\n"
	table := "url,n\nhttp://x/1,1\n"
	for _, tt := range []struct {
		name string
		data []byte
		o    Options
		want string
	}{
		{"gzip text", gzipped(t, text), Options{Name: "list"}, "0/1 #0 http://x/1|0/3 #1 http://x/2 key=k2"},
		{"zstd text", zstded(t, text), Options{Name: "list.txt"}, "0/1 #0 http://x/1|0/3 #1 http://x/2 key=k2"},
		{"gzip csv", gzipped(t, table), Options{Name: "t.csv.gz"}, `1/2 #0 http://x/1 {"n":"1"}`},
		{"zstd tsv", zstded(t, strings.ReplaceAll(table, ",", "\t")), Options{Format: FormatTSV}, `1/2 #0 http://x/1 {"n":"1"}`},
		{"gzip of two members", append(gzipped(t, "http://x/1\n"), gzipped(t, "http://x/2\n")...), Options{}, "0/1 #0 http://x/1|0/2 #1 http://x/2"},
		{"empty gzip", gzipped(t, ""), Options{}, ""},
		{"not compressed", []byte(text), Options{}, "0/1 #0 http://x/1|0/3 #1 http://x/2 key=k2"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Open(bytes.NewReader(tt.data), tt.o)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if err := r.Check(); err != nil {
				t.Fatal(err)
			}
			got, err := readAll(t, r)
			if err != nil || strings.Join(got, "|") != tt.want {
				t.Errorf("got %q, %v\nwant %q", got, err, tt.want)
			}
		})
	}
}

// A compressed list that does not decompress from its start is a
// *ListError; one cut off or damaged midway a *CutError after the entries
// before it.
func TestCompressedListsBroken(t *testing.T) {
	var lines strings.Builder
	for i := range 20000 {
		fmt.Fprintf(&lines, "http://x/%d\n", i)
	}
	gz, zs := gzipped(t, lines.String()), zstded(t, lines.String())
	corrupt := func(b []byte) []byte {
		c := bytes.Clone(b)
		for i := len(c) / 2; i < len(c)/2+64; i++ {
			c[i] ^= 0x55
		}
		return c
	}
	for _, tt := range []struct {
		name    string
		data    []byte
		start   string // the *ListError, "" for none
		cutSome bool   // a *CutError after some entries
	}{
		{"garbage after the gzip magic", append([]byte{0x1f, 0x8b}, "garbage garbage garbage"...), "l: not a valid gzip stream (gzip: invalid header)", false},
		{"garbage after the zstd magic", append([]byte{0x28, 0xb5, 0x2f, 0xfd}, "garbage garbage garbage"...), "l: not a valid zstd stream (zstd: ", false},
		{"gzip magic alone", []byte{0x1f, 0x8b}, "l: not a valid gzip stream (", false},
		{"gzip cut off", gz[:len(gz)/2], "", true},
		{"zstd cut off", zs[:len(zs)/2], "", true},
		{"gzip damaged", corrupt(gz), "", true},
		{"zstd damaged", corrupt(zs), "", true},
		{"gzip without its trailer", gz[:len(gz)-4], "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Open(bytes.NewReader(tt.data), Options{Name: "l"})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			got, err := readAll(t, r)
			var le *ListError
			var ce *CutError
			switch {
			case tt.start != "":
				if !errors.As(err, &le) || !strings.HasPrefix(err.Error(), tt.start) || len(got) > 0 {
					t.Fatalf("after %d entries: %v; want a *ListError %q before any", len(got), err, tt.start)
				}
				if err := r.Check(); !errors.As(err, &le) {
					t.Errorf("Check = %v", err)
				}
			case !errors.As(err, &ce):
				t.Fatalf("after %d entries: %v; want a *CutError", len(got), err)
			default:
				if tt.cutSome && (len(got) == 0 || len(got) >= 20000) {
					t.Errorf("a *CutError after %d entries", len(got))
				}
				if want := fmt.Sprintf("l: the list is cut off or damaged after line %d (", len(got)); !strings.HasPrefix(err.Error(), want) &&
					!strings.HasPrefix(err.Error(), fmt.Sprintf("l: the list is cut off or damaged after line %d (", len(got)+1)) {
					t.Errorf("error %q, want it to start %q", err, want)
				}
			}
		})
	}
}

// A zstd list whose window is over MaxZstdWindow is refused at its start.
func TestZstdWindowBound(t *testing.T) {
	// A frame by hand: magic, a header with no content size and a window of
	// 2^(10+16) = 64 MiB, one last raw block of 11 bytes.
	frame := append([]byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 16 << 3, 1 | 11<<3, 0, 0}, "http://x/1\n"...)
	ok := append([]byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 13 << 3, 1 | 11<<3, 0, 0}, "http://x/1\n"...) // 8 MiB
	if got, err := readAll(t, openString(t, string(ok), Options{})); err != nil || len(got) != 1 {
		t.Fatalf("a frame with an 8 MiB window: %q, %v", got, err)
	}
	r := openString(t, string(frame), Options{Name: "l"})
	err := r.Check()
	var le *ListError
	if !errors.As(err, &le) || !strings.Contains(err.Error(), "window") {
		t.Fatalf("Check = %v, want a *ListError about the window", err)
	}
}

// A Parquet file given as a text list is named as such, not read as lines.
func TestParquetReadAsLines(t *testing.T) {
	r := openString(t, "PAR1\x15\x04", Options{Name: "list"})
	if err := r.Check(); err == nil || err.Error() != "list: a Parquet file, read as lines: give it with -i FILE.parquet or --input-format parquet" {
		t.Fatalf("Check = %v", err)
	}
}

func TestLineKeysAndMeta(t *testing.T) {
	for _, tt := range []struct{ line, want string }{
		{"http://x/a key=k1", "k1 "},
		{`{"url":"http://x/a","key":"k2","meta":{"a": [1, 2],"b":null}}`, `k2 {"a":[1,2],"b":null}`},
		{`{"url":"http://x/a","key":123}`, "123 "},
		{`{"url":"http://x/a","key":"","meta":null}`, " "},
	} {
		e, ok, err := ParseLine([]byte(tt.line), 1)
		if !ok || err != nil || e.Key+" "+e.Meta != tt.want {
			t.Errorf("ParseLine(%q) = %+v, %v, %v; want key and meta %q", tt.line, e, ok, err, tt.want)
		}
	}
	for _, tt := range []struct{ line, want string }{
		{"http://x/a key=", "empty key="},
		{`{"url":"http://x/a","key":1.5}`, `"key" is neither a string nor an integer`},
		{`{"url":"http://x/a","meta":[1]}`, `"meta" is not an object`},
	} {
		if _, _, err := ParseLine([]byte(tt.line), 1); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseLine(%q) = %v, want an error with %q", tt.line, err, tt.want)
		}
	}
}

// A key is carried as written, unless keys name samples: then one that
// CheckKey refuses makes a bad line or row.
func TestSampleKeys(t *testing.T) {
	list := "http://x/1 key=a/b.jpg\n{\"url\":\"http://x/2\",\"key\":\"k\\u0001\"}\nhttp://x/3 key=" + strings.Repeat("k", MaxKeyLen+1) +
		"\nhttp://x/4 key=s-4\n"
	got, err := readAll(t, openString(t, list, Options{}))
	if err != nil || len(got) != 4 || got[0] != "0/1 #0 http://x/1 key=a/b.jpg" {
		t.Fatalf("without SampleKeys: %q, %v", got, err)
	}
	got, err = readAll(t, openString(t, list, Options{SampleKeys: true}))
	want := []string{
		`input line 1: key "a/b.jpg" holds a . or a / (a sample's members are named KEY.EXT)`,
		`input line 2: key "k\x01" contains a control character`,
		`input line 3: key "` + strings.Repeat("k", 100) + `"...: 201 bytes (at most 200)`,
		"0/4 #3 http://x/4 key=s-4",
	}
	if err != nil || strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("with SampleKeys: %q, %v\nwant %q", got, err, want)
	}
	for _, k := range []string{"", ".", "a/b", "\xff", "a\u0085b", "a\u2028b"} {
		if CheckKey(k) == nil {
			t.Errorf("CheckKey(%q) = nil", k)
		}
	}
}

// Index counts every line that is neither blank nor a comment, bad ones too.
func TestScannerIndex(t *testing.T) {
	s := NewScanner(strings.NewReader("# c\nhttp://x/0\n\nftp://x/1\n" + strings.Repeat("a", MaxLineLen+1) + "\nhttp://x/3\n"))
	var got []string
	for {
		e, err := s.Next()
		if err == io.EOF {
			break
		}
		if err == nil {
			got = append(got, fmt.Sprintf("%s #%d %s", e.URL, e.Index, e.SampleKey()))
		}
	}
	if want := "http://x/0 #0 000000000|http://x/3 #3 000000003"; strings.Join(got, "|") != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
