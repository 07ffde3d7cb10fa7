package index

import (
	"bytes"
	"context"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
)

// bareListing serves a tree as h2o's file.dirlisting does: a directory's
// listing links its parent as ".." and every entry without a trailing "/",
// directories included; a directory asked for without its "/" is redirected
// to it (301), a file is served, anything else is 404.
type bareListing struct {
	files map[string]string // path below the top ("a/b.txt") → content
}

func (b *bareListing) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := strings.TrimPrefix(r.URL.Path, "/")
	if body, ok := b.files[p]; ok {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, body)
		return
	}
	dir, isDir := strings.CutSuffix(p, "/")
	if !isDir && p != "" {
		if b.isDir(p) {
			http.Redirect(w, r, "/"+escapePath(p)+"/", http.StatusMovedPermanently)
			return
		}
		http.NotFound(w, r)
		return
	}
	if p != "" && !b.isDir(dir) {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	fmt.Fprintf(w, "<!DOCTYPE html>\n<TITLE>Index of /%s</TITLE>\n<UL>\n<LI><A HREF=\"..\">Parent Directory</A>", html.EscapeString(p))
	for _, name := range b.children(p) {
		fmt.Fprintf(w, "<LI><A HREF=\"%s\">%s</A>", html.EscapeString(escapeSegment(name)), html.EscapeString(name))
	}
	io.WriteString(w, "</UL>")
}

func (b *bareListing) isDir(p string) bool {
	for f := range b.files {
		if strings.HasPrefix(f, p+"/") {
			return true
		}
	}
	return false
}

// children are the sorted names of the entries of directory p ("" or
// ending in "/").
func (b *bareListing) children(p string) []string {
	seen := map[string]bool{}
	for f := range b.files {
		if rest, ok := strings.CutPrefix(f, p); ok {
			name, _, _ := strings.Cut(rest, "/")
			seen[name] = true
		}
	}
	var names []string
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// bareTree is three levels deep, with spaces in the names of a directory
// and a file, and a directory holding only a directory.
var bareTree = map[string]string{
	"top.txt":               "top\n",
	"a/one.txt":             "one\n",
	"a/b/two.txt":           "two\n",
	"a/b/c/three.bin":       "three\x00\xff\n",
	"c d/e f/g h.txt":       "g h\n",
	"c d/plain":             "no extension\n",
	"only dirs/inner/x.txt": "x\n",
	"z.html":                "<html><a href=\"top.txt\">an HTML file, not a listing</a></html>\n",
}

// A listing that writes its directories without a trailing "/" (h2o's) is
// walked whole: a link the server redirects to the same path plus "/" is a
// directory, listed and never given as a file, and every file arrives, its
// own bytes. An HTML file is a file.
func TestWalkDirectoriesLinkedWithoutSlash(t *testing.T) {
	srv := &bareListing{files: bareTree}
	s := httptest.NewServer(srv)
	defer s.Close()
	es, des := walkAll(t, NewSource(context.Background(), s.Client(), []string{s.URL + "/"}, fast(Options{})))
	if len(des) > 0 {
		t.Errorf("errors: %v", des)
	}
	var want []string
	for f := range bareTree {
		want = append(want, s.URL+"/"+escapePath(f))
	}
	got := urls(es)
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	for _, e := range es {
		u, _ := url.Parse(e.URL)
		f := strings.TrimPrefix(u.Path, "/")
		if srv.isDir(f) {
			t.Errorf("%s is a directory, given as a file", e.URL)
			continue
		}
		resp, err := s.Client().Get(e.URL)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.Request.URL.String() != e.URL || !bytes.Equal(body, []byte(bareTree[f])) {
			t.Errorf("%s: %d bytes from %s (%v), want the file's %d", e.URL, len(body), resp.Request.URL, err, len(bareTree[f]))
		}
	}
}

// A listing that links a directory of its server with the "/" is taken at
// its word: its links without one are files, asked about by no request. A
// page with no such link (a flat directory of python's, Go's FileServer)
// costs a HEAD for each file before its first subdirectory, none after.
func TestWalkAsksOnlyListingsThatMayHideDirectories(t *testing.T) {
	var heads sync.Map // path → true
	tr := &tree{dirs: map[string][]string{
		"/nginx/":       {"a.iso", "b.txt", "sub/"},
		"/nginx/sub/":   {"c.txt"},
		"/python/":      {"a.txt", "b.txt", "sub/", "c.txt"},
		"/python/sub/":  {"d.txt"},
		"/crumbs/":      {"a.txt"},
		"/elsewhere/":   {"a.txt"},
		"/python2/":     {"sub/"},
		"/python2/sub/": {"late.txt"},
	}}
	tr.hook = func(w http.ResponseWriter, r *http.Request, hit int) bool {
		if r.Method == http.MethodHead {
			heads.Store(r.URL.Path, true)
			return false
		}
		var before string
		switch {
		case strings.HasPrefix(r.URL.Path, "/python"):
		case r.URL.Path == "/crumbs/":
			before = `<a href="/">home</a> / <a href="/crumbs/">crumbs</a>`
		case r.URL.Path == "/elsewhere/":
			before = `<a href="http://example.com/">another server</a>`
		default:
			return false // nginx: the parent as "../" first
		}
		names := tr.dirs[r.URL.Path]
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, "<html><body>"+before+"<ul>")
		for _, n := range names {
			fmt.Fprintf(w, "<li><a href=\"%s\">%s</a></li>", n, n)
		}
		io.WriteString(w, "</ul></body></html>")
		return true
	}
	s := httptest.NewServer(tr)
	defer s.Close()
	roots := []string{"/nginx/", "/python/", "/crumbs/", "/elsewhere/", "/python2/"}
	for i := range roots {
		roots[i] = s.URL + roots[i]
	}
	es, des := walkAll(t, NewSource(context.Background(), s.Client(), roots, fast(Options{})))
	if len(des) > 0 {
		t.Errorf("errors: %v", des)
	}
	want := []string{"/nginx/a.iso", "/nginx/b.txt", "/nginx/sub/c.txt", "/python/a.txt", "/python/b.txt",
		"/python/c.txt", "/python/sub/d.txt", "/crumbs/a.txt", "/elsewhere/a.txt", "/python2/sub/late.txt"}
	for i := range want {
		want[i] = s.URL + want[i]
	}
	if got := urls(es); !slices.Equal(got, want) {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	var asked []string
	heads.Range(func(k, _ any) bool { asked = append(asked, k.(string)); return true })
	slices.Sort(asked)
	// python2's sub/ is marked: its own file is not asked about, though
	// its page links no directory.
	if want := []string{"/elsewhere/a.txt", "/python/a.txt", "/python/b.txt"}; !slices.Equal(asked, want) {
		t.Errorf("HEAD asked for %q, want %q", asked, want)
	}
}

// Only a redirect to the link's own path plus "/" makes a directory: a link
// answered with HTML, an error, a redirect elsewhere or with a query, or a
// HEAD the server refuses, is a file (the engine fetches it and reports
// what it gets).
func TestWalkLinkIsDirectoryOnlyIfRedirectedToSlash(t *testing.T) {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/":
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, `<a href="page">p</a><a href="gone">g</a><a href="moved">m</a><a href="query">q</a>`+
				`<a href="nohead">n</a><a href="Dir%20X">d</a><a href="loop">l</a>`)
		case "/page":
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, `<a href="x">not a listing</a>`)
		case "/moved":
			http.Redirect(w, r, "/elsewhere/", http.StatusFound)
		case "/elsewhere/", "/query/":
			w.Header().Set("Content-Type", "text/html")
		case "/query":
			http.Redirect(w, r, "/query/?sort=name", http.StatusFound)
		case "/nohead":
			if r.Method == http.MethodHead {
				w.WriteHeader(http.StatusMethodNotAllowed)
			}
		case "/Dir X":
			http.Redirect(w, r, "/Dir%20X/", http.StatusMovedPermanently)
		case "/Dir X/":
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, `<a href="..">up</a><a href="inner">i</a>`)
		case "/Dir X/inner":
			io.WriteString(w, "file")
		case "/loop":
			http.Redirect(w, r, "/loop", http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	}))
	defer s.Close()
	es, des := walkAll(t, NewSource(context.Background(), s.Client(), []string{s.URL + "/"}, fast(Options{Retries: -1})))
	want := []string{"/page", "/gone", "/moved", "/query", "/nohead", "/loop", "/Dir%20X/inner"}
	for i := range want {
		want[i] = s.URL + want[i]
	}
	if got := urls(es); !slices.Equal(got, want) || len(des) > 0 {
		t.Errorf("got  %q %v\nwant %q", got, des, want)
	}
}

func TestIsDirRedirect(t *testing.T) {
	for _, c := range []struct {
		link, final string
		want        bool
	}{
		{"http://h/a", "http://h/a/", true},
		{"http://h/d/c%20d", "http://h/d/c%20d/", true},
		{"http://h/d/c%20d", "http://h/d/c d/", true},
		{"http://h/x:y", "http://h/x%3Ay/", true},
		{"http://h/a", "http://H:80/a/", true},
		{"http://h/a", "http://h/a", false},
		{"http://h/a", "http://h/a/index.html", false},
		{"http://h/a", "http://h/b/", false},
		{"http://h/a", "http://h/a/b/", false},
		{"http://h/a", "http://h/", false},
		{"http://h/a", "http://h/a/?C=N", false},
		{"http://h/a", "https://h/a/", false},
		{"http://h/a", "http://other/a/", false},
		{"http://h:8080/a", "http://h/a/", false},
	} {
		u, err := url.Parse(c.final)
		if err != nil {
			t.Fatal(err)
		}
		if got := isDirRedirect(c.link, u); got != c.want {
			t.Errorf("isDirRedirect(%q, %q) = %v, want %v", c.link, c.final, got, c.want)
		}
	}
}
