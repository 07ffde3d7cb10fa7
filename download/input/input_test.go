package input

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/haul/haul/internal/testutil"
)

const (
	hexLower = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	hexMixed = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"
)

func TestParseLineGood(t *testing.T) {
	tests := []struct {
		name, line string
		want       Entry
	}{
		{"bare", "http://x/a", Entry{URL: "http://x/a", Size: -1, Line: 7}},
		{"https upper scheme", "HTTPS://x/a", Entry{URL: "HTTPS://x/a", Size: -1, Line: 7}},
		{"trimmed", " \thttp://x/a \t\r", Entry{URL: "http://x/a", Size: -1, Line: 7}},
		{"all fields", "http://x/a out=d/f.txt sha256=" + hexMixed + "\tsize=12",
			Entry{URL: "http://x/a", Out: "d/f.txt", SHA256: hexLower, Size: 12, Line: 7}},
		{"out cleaned", "http://x/a out=./d//e/../f", Entry{URL: "http://x/a", Out: "d/f", Size: -1, Line: 7}},
		{"size zero", "http://x/a size=0", Entry{URL: "http://x/a", Size: 0, Line: 7}},
		{"port and query", "http://x:8080/a?b=c&d=e#f", Entry{URL: "http://x:8080/a?b=c&d=e#f", Size: -1, Line: 7}},
		{"json", `{"url":"http://x/a","out":"x/a","sha256":"` + hexMixed + `","size":5}`,
			Entry{URL: "http://x/a", Out: "x/a", SHA256: hexLower, Size: 5, Line: 7}},
		{"json nulls", `{"url":"http://x/a","out":null,"sha256":null,"size":null}`,
			Entry{URL: "http://x/a", Size: -1, Line: 7}},
		{"json empty strings", `{"url":"http://x/a","out":"","sha256":""}`,
			Entry{URL: "http://x/a", Size: -1, Line: 7}},
		{"json spaces", ` { "url" : "http://x/a" , "size" : 5 } `, Entry{URL: "http://x/a", Size: 5, Line: 7}},
		{"json url space in path", `{"url":"http://x/a b#c d"}`, Entry{URL: "http://x/a b#c d", Size: -1, Line: 7}},
		{"json keys match exactly", `{"url":"http://x/a","Size":"x","OUT":5}`, Entry{URL: "http://x/a", Size: -1, Line: 7}},
		{"json manifest", `{"url":"http://x/a","out":"x/a","status":"ok","size":5,"sha256":null,"http_status":200,"error":null,"attempts":1,"duration_ms":3}`,
			Entry{URL: "http://x/a", Out: "x/a", Size: 5, Line: 7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok, err := ParseLine([]byte(tt.line), 7)
			if err != nil || !ok || got != tt.want {
				t.Fatalf("ParseLine(%q) = %+v, %v, %v; want %+v, true, nil", tt.line, got, ok, err, tt.want)
			}
		})
	}
}

func TestParseLineSkipped(t *testing.T) {
	for _, line := range []string{"", " ", "\t \r", "\r", "# comment", "  # http://x/a", "#"} {
		got, ok, err := ParseLine([]byte(line), 1)
		if ok || err != nil || got != (Entry{}) {
			t.Errorf("ParseLine(%q) = %+v, %v, %v; want skipped", line, got, ok, err)
		}
	}
}

func TestParseLineBad(t *testing.T) {
	tests := []struct{ name, line, reason string }{
		{"unparseable URL", "http://x/%zz", "invalid URL"},
		{"bad host", "http://[::1/a", "invalid URL"},
		{"relative URL", "x/a", "not absolute"},
		{"ftp scheme", "ftp://x/a", `unsupported scheme "ftp"`},
		{"file scheme", "file:///etc/passwd", `unsupported scheme "file"`},
		{"missing host", "http:///a", "missing host"},
		{"opaque", "http:x", "missing host"},
		{"control char in URL", "http://x/a\x01b", "control character"},
		{"out absolute", "http://x/a out=/etc/passwd", `out= path "/etc/passwd" is absolute`},
		{"out escaping", "http://x/a out=../x", `out= path "../x" escapes --dir`},
		{"out escaping after clean", "http://x/a out=a/../../x", "escapes --dir"},
		{"out dotdot", "http://x/a out=..", "escapes --dir"},
		{"out staging name", "http://x/a out=d/b.part", `out= path "d/b.part": names ending in .part are haul's partial files`},
		{"out staging dir", "http://x/a out=d.part/b", "haul's partial files"},
		{"out not UTF-8", "http://x/a out=caf\xe9.txt", "is not valid UTF-8"},
		{"out name too long", "http://x/a out=d/" + strings.Repeat("n", 241), "a name of 241 bytes (at most 240"},
		{"out dot", "http://x/a out=.", "names no file"},
		{"out cleans to dot", "http://x/a out=a/..", "names no file"},
		{"out empty", "http://x/a out=", "empty out= path"},
		{"out backslash", `http://x/a out=a\b`, "backslash"},
		{"NUL", "http://x/a\x00", "NUL byte in line"},
		{"NUL in comment", "# a\x00b", "NUL byte in line"},
		{"unknown key", "http://x/a foo=bar", `unknown field "foo"`},
		{"no equals", "http://x/a extra", "not key=value"},
		{"duplicate key", "http://x/a size=1 size=2", `duplicate field "size"`},
		{"short sha256", "http://x/a sha256=abc", "bad sha256"},
		{"non-hex sha256", "http://x/a sha256=" + strings.Repeat("g", 64), "bad sha256"},
		{"negative size", "http://x/a size=-1", "bad size"},
		{"plus size", "http://x/a size=+1", "bad size"},
		{"non-numeric size", "http://x/a size=1k", "bad size"},
		{"overflow size", "http://x/a size=99999999999999999999", "bad size"},
		{"empty size", "http://x/a size=", "bad size"},
		{"over-long", "http://x/" + strings.Repeat("a", MaxLineLen), "line longer than 64 KiB"},
		{"json bad", `{"url":"http://x/a"`, "invalid JSON"},
		{"json trailing", `{"url":"http://x/a"} x`, "invalid JSON"},
		{"json url type", `{"url":5}`, "invalid JSON"},
		{"json missing url", `{"out":"a"}`, "missing url"},
		{"json URL is not url", `{"URL":"http://x/a"}`, "missing url"},
		{"json null url", `{"url":null}`, "missing url"},
		{"json empty url", `{"url":""}`, "missing url"},
		{"json ftp", `{"url":"ftp://x/a"}`, "unsupported scheme"},
		{"json out escaping", `{"url":"http://x/a","out":"../a"}`, "escapes --dir"},
		{"json out NUL", `{"url":"http://x/a","out":"a\u0000b"}`, "control character"},
		{"json url newline", `{"url":"http://x/a\nb"}`, "control character"},
		{"url not UTF-8", "http://x/a\xff\xfe", "not valid UTF-8"},
		{"json url space in query", `{"url":"http://x/a?b c"}`, "a space in the query"},
		{"json size float", `{"url":"http://x/a","size":1.5}`, "bad size"},
		{"json size exponent", `{"url":"http://x/a","size":1e3}`, "bad size"},
		{"json size negative", `{"url":"http://x/a","size":-1}`, "bad size"},
		{"json size string", `{"url":"http://x/a","size":"5"}`, "bad size"},
		{"json bad sha256", `{"url":"http://x/a","sha256":"abc"}`, "bad sha256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok, err := ParseLine([]byte(tt.line), 3)
			var le *LineError
			if !errors.As(err, &le) || ok || got != (Entry{}) {
				t.Fatalf("ParseLine(%q) = %+v, %v, %v; want *LineError", tt.line, got, ok, err)
			}
			if le.Line != 3 || !strings.Contains(le.Reason, tt.reason) {
				t.Errorf("error = %+v; want line 3, reason containing %q", le, tt.reason)
			}
			if !strings.HasPrefix(err.Error(), "input line 3: ") {
				t.Errorf("Error() = %q", err)
			}
		})
	}
}

func TestParseLineMaxLen(t *testing.T) {
	line := "http://x/" + strings.Repeat("a", MaxLineLen-len("http://x/"))
	if _, ok, err := ParseLine([]byte(line+"\r"), 1); !ok || err != nil {
		t.Errorf("line of exactly MaxLineLen (plus \\r): ok=%v err=%v", ok, err)
	}
}

// scanAll runs s to the end and returns entries and errors as strings, one per Next call.
func scanAll(t *testing.T, s *Scanner) []string {
	t.Helper()
	var out []string
	for i := 0; i < 100; i++ {
		e, err := s.Next()
		switch {
		case err == io.EOF:
			return out
		case err != nil:
			var le *LineError
			if !errors.As(err, &le) {
				t.Fatalf("Next: non-LineError %v", err)
			}
			out = append(out, err.Error())
		default:
			out = append(out, strings.TrimSpace(fmt.Sprintf("%d %s %s", e.Line, e.URL, e.Out)))
		}
	}
	t.Fatal("Next did not reach io.EOF")
	return nil
}

func TestScanner(t *testing.T) {
	long := "http://x/" + strings.Repeat("a", 3*MaxLineLen) + "\n"
	exact := "http://x/" + strings.Repeat("a", MaxLineLen-len("http://x/"))
	tests := []struct {
		name, in string
		want     []string
		lines    int
	}{
		{"mixed", "# list\nhttp://x/1\n\n  \nftp://x/2\nhttp://x/3 out=a/b\n#end\n",
			[]string{"2 http://x/1", `input line 5: unsupported scheme "ftp"`, "6 http://x/3 a/b"}, 7},
		{"over-long then good", "http://x/1\n" + long + "http://x/3\n",
			[]string{"1 http://x/1", "input line 2: line longer than 64 KiB", "3 http://x/3"}, 3},
		{"over-long last without newline", "http://x/1\n" + strings.TrimSuffix(long, "\n"),
			[]string{"1 http://x/1", "input line 2: line longer than 64 KiB"}, 2},
		{"crlf", "http://x/1\r\n\r\n# c\r\nhttp://x/2 out=f\r\n",
			[]string{"1 http://x/1", "4 http://x/2 f"}, 4},
		{"no trailing newline", "http://x/1\nhttp://x/2",
			[]string{"1 http://x/1", "2 http://x/2"}, 2},
		{"exactly MaxLineLen with CRLF", exact + "\r\nhttp://x/2\n",
			[]string{"1 " + exact, "2 http://x/2"}, 2},
		{"one over MaxLineLen", exact + "a\nhttp://x/2\n",
			[]string{"input line 1: line longer than 64 KiB", "2 http://x/2"}, 2},
		{"empty", "", nil, 0},
		{"only newline", "\n", nil, 1},
		{"NUL line", "http://x/1\x00\nhttp://x/2\n",
			[]string{"input line 1: NUL byte in line", "2 http://x/2"}, 2},
		// A byte order mark (editors on Windows write one) is not part of line 1.
		{"BOM", "\ufeffhttp://x/1\n\ufeffhttp://x/2\n",
			[]string{"1 http://x/1", `input line 2: invalid URL "\ufeffhttp://x/2": first path segment in URL cannot contain colon`}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewScanner(strings.NewReader(tt.in))
			got := scanAll(t, s)
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("got %q\nwant %q", got, tt.want)
			}
			if s.Lines() != tt.lines {
				t.Errorf("Lines() = %d, want %d", s.Lines(), tt.lines)
			}
			if _, err := s.Next(); err != io.EOF {
				t.Errorf("Next after EOF = %v", err)
			}
		})
	}
}

type errReader struct{ data string }

var errBoom = errors.New("boom")

func (r *errReader) Read(p []byte) (int, error) {
	if r.data == "" {
		return 0, errBoom
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestScannerReadError(t *testing.T) {
	s := NewScanner(&errReader{data: "http://x/1\nhttp://x/par"})
	if e, err := s.Next(); err != nil || e.URL != "http://x/1" {
		t.Fatalf("Next = %+v, %v", e, err)
	}
	for i := 0; i < 2; i++ {
		if _, err := s.Next(); err != errBoom {
			t.Fatalf("Next = %v, want the read error as is", err)
		}
	}
}

func TestScannerStreams(t *testing.T) {
	pr, pw := io.Pipe()
	s := NewScanner(pr)
	go func() {
		pw.Write([]byte("# head\nhttp://x/1\n"))
	}()
	type result struct {
		e   Entry
		err error
	}
	next := func() result {
		ch := make(chan result, 1)
		go func() { e, err := s.Next(); ch <- result{e, err} }()
		var r result
		testutil.WaitFor(t, "Next (a Scanner that does not stream blocks here)", func() bool {
			select {
			case r = <-ch:
				return true
			default:
				return false
			}
		})
		return r
	}
	if r := next(); r.err != nil || r.e.URL != "http://x/1" || r.e.Line != 2 {
		t.Fatalf("first Next = %+v, %v", r.e, r.err)
	}
	go func() {
		pw.Write([]byte("http://x/2\n"))
		pw.Close()
	}()
	if r := next(); r.err != nil || r.e.URL != "http://x/2" || r.e.Line != 3 {
		t.Fatalf("second Next = %+v, %v", r.e, r.err)
	}
	if r := next(); r.err != io.EOF {
		t.Fatalf("third Next = %v, want io.EOF", r.err)
	}
}

func FuzzParseLine(f *testing.F) {
	for _, s := range []string{
		"http://x/a", " https://x/a out=d/f sha256=" + hexMixed + " size=3\r", "# c", "",
		"ftp://x/a", "http://x/a out=../x", "http://x/a out=/x", "http://x/a out=a/../../b",
		"http://x/a\x00", "http://x/a k=v", `{"url":"http://x/a","out":"x/a","size":5,"sha256":null}`,
		`{"url":"http://x/a","size":1.5}`, `{"url":"http://x/a","out":"a\u0000"}`, "{", "http:x", "http://[::1]:80/",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		e, ok, err := ParseLine(line, 1)
		if err != nil {
			var le *LineError
			if !errors.As(err, &le) || le.Line != 1 || ok {
				t.Fatalf("bad error %#v ok=%v", err, ok)
			}
			return
		}
		if !ok {
			return
		}
		u, perr := url.Parse(e.URL)
		if perr != nil || (strings.ToLower(u.Scheme) != "http" && strings.ToLower(u.Scheme) != "https") || u.Host == "" {
			t.Fatalf("accepted URL %q", e.URL)
		}
		if e.Out != "" && (!filepath.IsLocal(e.Out) || strings.ContainsRune(e.Out, 0)) {
			t.Fatalf("accepted out %q", e.Out)
		}
		if e.SHA256 != "" && (len(e.SHA256) != 64 || strings.Trim(e.SHA256, "0123456789abcdef") != "") {
			t.Fatalf("accepted sha256 %q", e.SHA256)
		}
		if e.Size < -1 || e.Line != 1 {
			t.Fatalf("bad size/line %+v", e)
		}
	})
}

// A bad line's message never prints the password of the URL on it, even when
// the URL does not parse (the message goes to stderr and the manifest).
func TestBadLinePasswordRedacted(t *testing.T) {
	for _, line := range []string{
		"http://user:secret@[::1/x",
		`{"url":"http://user:secret@127.0.0.1:1/a?x y"}`,
		"http://u:secret@h/%zz",
		"http://u:secret@/x",
		"http://u:secret@h/\x01",
	} {
		_, _, err := ParseLine([]byte(line), 1)
		if err == nil {
			t.Errorf("%q parsed", line)
			continue
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("%q: message %q shows the password", line, err)
		}
	}
}
