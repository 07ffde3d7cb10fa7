package index

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/html"
)

func mustParse(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func links(t testing.TB, page, body string) []Link {
	t.Helper()
	var got []Link
	if err := Links(mustParse(t, page), strings.NewReader(body), func(l Link) bool {
		got = append(got, l)
		return true
	}); err != nil {
		t.Fatalf("Links: %v", err)
	}
	return got
}

// The top of the tree, as each server's captured listing (testdata/*.html,
// written by go test -run TestServers -update) must give it, with one URL per
// name whatever the server's escaping.
func TestLinksFixtures(t *testing.T) {
	const page = "http://127.0.0.1:8080/"
	for _, s := range servers {
		t.Run(s.name, func(t *testing.T) {
			body, err := os.ReadFile(filepath.Join("testdata", s.name+".html"))
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, f := range treeFiles {
				if s.surrogates {
					f = surrogateEscape(f)
				}
				if !strings.Contains(f, "/") {
					want = append(want, page+escapeSegment(f))
				}
			}
			for _, d := range []string{"d1", "empty", "withindex", "link"} {
				if d == "link" && s.symlinkAsFile || s.bare {
					want = append(want, page+d)
				} else {
					want = append(want, page+d+"/")
				}
			}
			var got []string
			for _, l := range links(t, page, string(body)) {
				got = append(got, l.URL)
				if l.Dir != strings.HasSuffix(l.URL, "/") || l.URL != page+escapeSegment(l.Name)+map[bool]string{true: "/"}[l.Dir] {
					t.Errorf("%+v: Name or Dir do not match URL", l)
				}
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("got  %q\nwant %q", got, want)
			}
		})
	}
}

func TestLinksHrefs(t *testing.T) {
	const page = "http://Example.com:80/pub/a%20b/"
	const dir = "http://Example.com:80/pub/a%20b/"
	for _, c := range []struct {
		href string
		want string // "" for dropped; a trailing "/" means Dir
		name string // the Name, when not the URL's last segment as is
	}{
		{"f.txt", dir + "f.txt", ""},
		{"./f.txt", dir + "f.txt", ""},
		{"sub/", dir + "sub/", "sub"},
		{"./sub/", dir + "sub/", "sub"},
		{"%66.txt", dir + "f.txt", ""},               // unreserved decoded
		{"a%2a", dir + "a*", "a*"},                   // sub-delims as they are
		{"a%3f", dir + "a%3F", "a?"},                 // upper-case escapes
		{"100%.txt", dir + "100%25.txt", "100%.txt"}, // a bare '%' is itself
		{"100%2.txt", dir + "100%252.txt", "100%2.txt"},
		{"a b", dir + "a%20b", "a b"},
		{"caf\u00e9", dir + "caf%C3%A9", "café"},
		{"tom&amp;jerry", dir + "tom&jerry", "tom&jerry"}, // entity decoded by the tokenizer
		{"  f.txt\n", dir + "f.txt", ""},                  // spaces around, as browsers strip
		{"f\n.txt", dir + "f.txt", ""},                    // tabs and newlines inside too
		{"2024-01-02T10:00.log", dir + "2024-01-02T10:00.log", ""},
		{"./x:y", dir + "x:y", ""},
		{"back%5Cslash", dir + "back%5Cslash", `back\slash`},
		{`back\slash`, dir + "back%5Cslash", `back\slash`},
		{"/pub/a%20b/abs", dir + "abs", ""},      // absolute path, same directory
		{"/pub/a b/abs", dir + "abs", ""},        // spelled otherwise
		{"/pub/a%20b/x/../abs", dir + "abs", ""}, // dot segments resolved
		{"sub/../f.txt", dir + "f.txt", ""},
		{"http://example.com/pub/a%20b/abs", dir + "abs", ""}, // full URL, the page's host spelling kept
		{"HTTP://EXAMPLE.COM:80/pub/a%20b/abs", dir + "abs", ""},
		{"//example.com/pub/a%20b/abs", dir + "abs", ""},

		{"", "", ""},                     // the page itself
		{".", "", ""},                    // the page itself
		{"./", "", ""},                   // the page itself
		{"../", "", ""},                  // parent
		{"..", "", ""},                   // parent
		{"/", "", ""},                    // top
		{"/pub/", "", ""},                // an ancestor
		{"?C=N;O=D", "", ""},             // Apache's sort links
		{"?sort=name&order=asc", "", ""}, // Caddy's
		{"f.txt?x=1", "", ""},            // any query
		{"f.txt?", "", ""},
		{"#", "", ""},
		{"f.txt#frag", "", ""},
		{"sub/deeper/f.txt", "", ""}, // two levels down: the page between lists it
		{"sub//", "", ""},
		{"mailto:a@example.com", "", ""},
		{"javascript:void(0)", "", ""},
		{"x:y", "", ""}, // a scheme, as a browser reads it
		{"ftp://example.com/pub/a%20b/f", "", ""},
		{"https://example.com/pub/a%20b/f", "", ""}, // another scheme: another origin
		{"http://example.com:8080/pub/a%20b/f", "", ""},
		{"http://other.example/pub/a%20b/f", "", ""},
		{"//other.example/pub/a%20b/f", "", ""},
		{"/pub/other/f", "", ""},
		{"%2e%2e/", "", ""}, // an escaped parent is no name
		{"%2E/", "", ""},
		{"a%2fb", "", ""}, // a name with '/'
		{"a%00b", "", ""}, // with NUL
		{"data:text/html,x", "", ""},
	} {
		got := links(t, page, `<a href="`+strings.ReplaceAll(c.href, `"`, "&quot;")+`">x</a>`)
		switch {
		case c.want == "" && len(got) == 0:
		case c.want == "" || len(got) != 1:
			t.Errorf("%q: got %+v, want %q", c.href, got, c.want)
		default:
			l := got[0]
			name := c.name
			if name == "" {
				name = strings.TrimSuffix(c.want[strings.LastIndex(strings.TrimSuffix(c.want, "/"), "/")+1:], "/")
			}
			if l.URL != c.want || l.Dir != strings.HasSuffix(c.want, "/") || l.Name != name {
				t.Errorf("%q: got %+v, want %q (name %q)", c.href, l, c.want, name)
			}
		}
	}
}

func TestLinksMarkup(t *testing.T) {
	const page = "http://h/d/"
	for _, c := range []struct {
		name, body string
		want       []string
	}{
		{"upper case and unquoted", `<A HREF=a.txt>a</A><a href='b.txt'>b</a>`, []string{"a.txt", "b.txt"}},
		{"first of two hrefs", `<a href="a.txt" href="b.txt">a</a>`, []string{"a.txt"}},
		{"no value", `<a href>x</a><a name="x">y</a><a href="a">a</a>`, []string{"a"}},
		// Icon and name linking to one entry (as some templates do): once.
		{"adjacent duplicates", `<a href="a"><img></a> <a href="a">a</a><a href="b">b</a><a href="a">a</a>`,
			[]string{"a", "b", "a"}},
		{"not links", `<link href="style.css"><img src="i.gif"><area href="m"><use xlink:href="#x"/>`, nil},
		{"script and comments", `<script>var s = '<a href="no">';</script><!-- <a href="no2"> --><a href="yes">`,
			[]string{"yes"}},
		{"self-closing", `<a href="a"/>`, []string{"a"}},
		{"base", `<a href="before">x</a><base href="/other/"><a href="after">x</a><a href="/d/abs">x</a>`,
			[]string{"before", "abs"}},
		{"base inside", `<base href="sub/"><a href="f">x</a><a href="../g">x</a>`, []string{"g"}},
		{"only the first base", `<base href="/x/"><base href="/d/"><a href="f">x</a>`, nil},
		{"base without href", `<base target="_blank"><base href="/x/"><a href="f">x</a>`, nil},
		{"truncated tag", `<a href="a">a</a><a href="trunc`, []string{"a"}},
	} {
		var got []string
		for _, l := range links(t, page, c.body) {
			got = append(got, strings.TrimPrefix(l.URL, page))
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
	}
}

// User info stays (the root was given with it); the page's own spelling of
// the host is kept.
func TestLinksUserinfo(t *testing.T) {
	got := links(t, "http://u:p%40ss@h:8080/d/", `<a href="f">f</a><a href="http://h:8080/d/g">g</a>`)
	if len(got) != 2 || got[0].URL != "http://u:p%40ss@h:8080/d/f" || got[1].URL != "http://u:p%40ss@h:8080/d/g" {
		t.Errorf("got %+v", got)
	}
}

// A page whose URL is not a directory lists the directory it is in.
func TestLinksPageNotDir(t *testing.T) {
	got := links(t, "http://h/d/index.html", `<a href="f">f</a><a href="index.html">self</a>`)
	if len(got) != 2 || got[0].URL != "http://h/d/f" || got[1].URL != "http://h/d/index.html" {
		t.Errorf("got %+v", got)
	}
}

// Links gives each link before the rest of the page has arrived.
func TestLinksStreams(t *testing.T) {
	pr, pw := io.Pipe()
	go func() {
		pw.Write([]byte(`<html><a href="first">1</a><a href="second">2</a>`))
		// Blocks until the first link was seen, which proves it was given early.
	}()
	err := Links(mustParse(t, "http://h/"), pr, func(l Link) bool {
		return l.Name != "first" // stop: the pipe never ends
	})
	if err != nil {
		t.Fatal(err)
	}
	pw.Close()
}

func TestLinksStop(t *testing.T) {
	n := 0
	err := Links(mustParse(t, "http://h/"), strings.NewReader(`<a href="a"><a href="b"><a href="c">`), func(Link) bool {
		n++
		return n < 2
	})
	if err != nil || n != 2 {
		t.Errorf("n = %d, err = %v; want 2, nil", n, err)
	}
}

func TestLinksErrors(t *testing.T) {
	boom := errors.New("boom")
	r := io.MultiReader(strings.NewReader(`<a href="a">`), &failReader{boom})
	var got []string
	err := Links(mustParse(t, "http://h/"), r, func(l Link) bool { got = append(got, l.Name); return true })
	if !errors.Is(err, boom) || !slices.Equal(got, []string{"a"}) {
		t.Errorf("got %q, %v; want [a], boom", got, err)
	}
	// One tag over the tokenizer's bound fails the page: memory stays bounded.
	long := `<a href="a"></a><a title="` + strings.Repeat("x", maxToken+1) + `" href="b">`
	err = Links(mustParse(t, "http://h/"), strings.NewReader(long), func(Link) bool { return true })
	if !errors.Is(err, html.ErrBufferExceeded) {
		t.Errorf("a tag of %d bytes: %v, want ErrBufferExceeded", maxToken+1, err)
	}
}

type failReader struct{ err error }

func (r *failReader) Read([]byte) (int, error) { return 0, r.err }

func TestEscapeSegment(t *testing.T) {
	for in, want := range map[string]string{
		"plain.txt":      "plain.txt",
		"a b":            "a%20b",
		"100%":           "100%25",
		"?#/":            "%3F%23%2F",
		"!$&'()*+,;=:@~": "!$&'()*+,;=:@~",
		"é":              "%C3%A9",
		"\x00\n\xff":     "%00%0A%FF",
		`"<>\^{|}` + "`": "%22%3C%3E%5C%5E%7B%7C%7D%60",
	} {
		if got := escapeSegment(in); got != want {
			t.Errorf("escapeSegment(%q) = %q, want %q", in, got, want)
		}
		if got := unescape(escapeSegment(in)); got != in {
			t.Errorf("unescape(escapeSegment(%q)) = %q", in, got)
		}
	}
}

// FuzzLinks: whatever the page, every link is a canonical direct child of
// the page's directory, and reading its own URL back as an href gives it
// again. The seeds are the servers' listings (testdata/fuzz/FuzzLinks,
// written by go test -run TestServers -update).
func FuzzLinks(f *testing.F) {
	for _, s := range []string{
		`<a href="a">`, `<base href="/x/"><a href="../d/b/">`, `<a href="%2e%2e/">`, `<a href="?C=N;O=D">`,
		`<a href="http://h:80/d/x">`, `<a href="100%.txt">`, `<script><a href="x"></script>`,
	} {
		f.Add([]byte(s))
	}
	page := mustParse(f, "http://h/d/")
	f.Fuzz(func(t *testing.T, body []byte) {
		err := Links(page, strings.NewReader(string(body)), func(l Link) bool {
			rest, ok := strings.CutPrefix(l.URL, "http://h/d/")
			if !ok {
				t.Fatalf("%q is not below http://h/d/", l.URL)
			}
			seg := strings.TrimSuffix(rest, "/")
			if seg == "" || strings.ContainsAny(seg, "/?#") || l.Dir != strings.HasSuffix(rest, "/") {
				t.Fatalf("%+v is not one segment below the page", l)
			}
			if l.Name != unescape(seg) || escapeSegment(l.Name) != seg || l.Name == "." || l.Name == ".." {
				t.Fatalf("%+v: Name and URL disagree, or not canonical", l)
			}
			if _, err := url.Parse(l.URL); err != nil {
				t.Fatalf("%q does not parse: %v", l.URL, err)
			}
			again := links(t, "http://h/d/", fmt.Sprintf(`<a href="%s">`, html.EscapeString(l.URL)))
			if len(again) != 1 || again[0] != l {
				t.Fatalf("%q read back as %+v", l.URL, again)
			}
			return true
		})
		if err != nil && !errors.Is(err, html.ErrBufferExceeded) {
			t.Fatalf("Links: %v", err)
		}
	})
}
