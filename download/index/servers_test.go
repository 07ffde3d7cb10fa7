package index

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"unicode/utf8"

	"github.com/haul/haul/download/httpclient"
	"github.com/haul/haul/internal/realserver"
)

// The real-server tests serve one awkward tree with each server's own
// directory listing (started by package realserver, stopped when the test
// ends), walk it, and fetch every file found. A server whose program is
// missing is skipped, naming it (under CI it fails).
//
// go test -run TestServers -update rewrites testdata/*.html (each server's
// listing of the tree's top) and the FuzzLinks seed corpus from them.

var update = flag.Bool("update", false, "rewrite testdata/*.html and testdata/fuzz/FuzzLinks from the real servers")

// longName is a name of 240 bytes: near the 255 that filesystems allow.
var longName = strings.Repeat("L", 236) + ".bin"

// treeFiles are the files of the served tree, slash-separated below its top.
// withindex/ holds an index.html, which python and Go's FileServer serve in
// place of the listing (the others are configured not to).
var treeFiles = []string{
	"100%.txt",
	"a file with spaces.txt",
	"hash#tag.txt",
	"what?.txt",
	"ünïcødé-日本.txt",
	"tom&jerry.txt",
	"quote'sq.txt",
	"plus+semi;eq=.txt",
	"2024-01-02T10:00:00.log", // a ':' that is no scheme
	"x:y.txt",                 // a ':' that would be one, written bare
	longName,
	"movie.mkv.part",
	"dq\"uote.txt",
	"back\\slash.txt",
	"lt<gt>.txt",
	"new\nline.txt",
	"tab\there.txt",
	"latin1-caf\xe9.txt", // not UTF-8
	"d1/one.txt",
	"d1/d 2/d3/deep.txt",
	"withindex/index.html",
	"withindex/sibling.txt",
}

// The tree also has an empty directory, and link/, a symbolic link to a
// directory outside it, which a server may follow (its files are then below
// the start, under link/) or not.
var (
	treeDirs     = []string{"empty"}
	outsideFiles = []string{"o2/inner.txt", "outside.txt"} // sorted
)

// indexHTML is withindex/index.html: where it is served as the listing, its
// links are the directory's: a sibling, and links that must be dropped.
const indexHTML = `<html><body><p>not a listing</p><a href="sibling.txt">sibling</a>
<a href="../">up</a> <a href="?C=N;O=D">sort</a> <a href="/">top</a></body></html>
`

// makeTree creates the tree under a directory every server can read
// (Apache's children run as www-data), removed when t ends, and returns the
// served directory, www.
func makeTree(t *testing.T) string {
	base := realserver.TempDir(t)
	www := filepath.Join(base, "www")
	write := func(root, rel, body string) {
		p := filepath.Join(root, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range treeFiles {
		body := "file " + f + "\n"
		if f == "withindex/index.html" {
			body = indexHTML
		}
		write(www, f, body)
	}
	for _, d := range treeDirs {
		if err := os.MkdirAll(filepath.Join(www, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	outside := filepath.Join(base, "outside")
	for _, f := range outsideFiles {
		write(outside, f, "outside "+f+"\n")
	}
	if err := os.Symlink(outside, filepath.Join(www, "link")); err != nil {
		t.Fatal(err)
	}
	return www
}

// server is one listing format.
type server struct {
	name   string
	kind   realserver.Kind // "" for Go's http.FileServer, in this process
	config string          // added to the server's configuration
	// servesIndex: serves a directory's index.html in place of its listing.
	servesIndex bool
	// symlinkAsFile: the listing writes link/ without its "/" (Go's FileServer
	// asks fs.DirEntry.IsDir, false for a symbolic link), and links its
	// parent nowhere: link is taken for a file, and its request is
	// redirected to link/, a listing.
	symlinkAsFile bool
	// bare: the listing writes every directory without its "/" (h2o's).
	bare bool
	// surrogates: a name that is not UTF-8 is written, and served only, with
	// Python's surrogate escapes: byte E9 as U+DCE9, %ED%B3%A9.
	surrogates bool
	// unserved are files the server lists but will not serve: the walk must
	// find them, and their bytes are not checked.
	unserved []string
}

var servers = []server{
	{name: "nginx", kind: realserver.Nginx},
	{name: "apache", kind: realserver.Apache}, // mod_autoindex's plain list
	// IndexOptions FancyIndexing: a <pre>.
	{name: "apache-fancy", kind: realserver.Apache, config: "IndexOptions FancyIndexing"},
	// Debian's autoindex.conf: FancyIndexing HTMLTable.
	{name: "apache-table", kind: realserver.Apache, config: `IndexOptions FancyIndexing VersionSort HTMLTable NameWidth=* DescriptionWidth=* Charset=UTF-8
AddIconByType (TXT,/icons/text.gif) text/*
AddIcon /icons/back.gif ..
AddIcon /icons/folder.gif ^^DIRECTORY^^
AddIcon /icons/blank.gif ^^BLANKICON^^
DefaultIcon /icons/unknown.gif
IndexIgnore .??* *~ *# RCS CVS *,v *,t`},
	// A name with a control character is listed, and refused (400).
	{name: "lighttpd", kind: realserver.Lighttpd, unserved: []string{"new\nline.txt", "tab\there.txt"}},
	{name: "caddy", kind: realserver.Caddy},
	{name: "h2o", kind: realserver.H2O, bare: true},
	{name: "python", kind: realserver.Python, servesIndex: true, surrogates: true},
	// A name that is not UTF-8 is listed, and refused (404: filepath.Localize).
	{name: "gofileserver", servesIndex: true, symlinkAsFile: true, unserved: []string{"latin1-caf\xe9.txt"}},
}

// start starts s serving www until t ends and returns its base URL (no
// trailing slash), or skips t.
func start(t *testing.T, s server, www string) string {
	if s.kind == "" {
		srv := httptest.NewServer(http.FileServer(http.Dir(www)))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	return realserver.Start(t, s.kind, realserver.Options{Dir: www, Listing: true, Config: s.config}).URL
}

// wantFiles maps each URL a walk of s from start (a directory below the top,
// "" or ending in "/") must find, but those under link/, to its file below
// the top; "" for a directory its listing writes as a file (symlinkAsFile).
func wantFiles(s server, base, start string) map[string]string {
	want := map[string]string{}
	for _, f := range treeFiles {
		if !strings.HasPrefix(f, start) || s.servesIndex && f == "withindex/index.html" {
			continue
		}
		u := f
		if s.surrogates {
			u = surrogateEscape(f)
		}
		want[base+"/"+escapePath(u)] = f
	}
	if s.symlinkAsFile && start == "" {
		want[base+"/link"] = ""
	}
	return want
}

// surrogateEscape writes each byte of s that is not UTF-8 as Python's
// surrogateescape and surrogatepass do: byte b as U+DC00+b, in UTF-8.
func surrogateEscape(s string) string {
	var b []byte
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			r = 0xDC00 + rune(s[i])
			b = append(b, byte(0xE0|r>>12), byte(0x80|r>>6&0x3F), byte(0x80|r&0x3F))
		} else {
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return string(b)
}

func escapePath(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i] = escapeSegment(s)
	}
	return strings.Join(segs, "/")
}

func TestServers(t *testing.T) {
	client, err := httpclient.New(httpclient.Options{Jobs: 4})
	if err != nil {
		t.Fatal(err)
	}
	www := makeTree(t)
	for _, s := range servers {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel() // most of a start is waiting
			base := start(t, s, www)
			if *update {
				capture(t, s, base)
			}
			for _, start := range []string{"", "d1/"} {
				t.Run("/"+start, func(t *testing.T) {
					checkWalk(t, client, s, base, start, www)
				})
			}
		})
	}
}

// countHEAD counts the HEAD requests of a walk: the links asked about.
type countHEAD struct {
	HTTPClient
	n atomic.Int64
}

func (c *countHEAD) Do(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodHead {
		c.n.Add(1)
	}
	return c.HTTPClient.Do(req)
}

// checkWalk walks s's tree from start and fetches every file found: each
// must be a file of the tree, its own bytes, never a listing.
func checkWalk(t *testing.T, client HTTPClient, s server, base, start, www string) {
	cc := &countHEAD{HTTPClient: client}
	w := NewSource(context.Background(), cc, []string{base + "/" + escapePath(start)}, Options{})
	defer w.Close()
	got := map[string]bool{}
	var linked []string
	for {
		e, err := w.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		if e.Line != 1 || e.Out != "" || e.Size != -1 || e.SHA256 != "" {
			t.Errorf("entry %+v: want Line 1, no out=, size= or sha256=", e)
		}
		if got[e.URL] {
			t.Errorf("%s given twice", e.URL)
		}
		got[e.URL] = true
		if rest, ok := strings.CutPrefix(e.URL, base+"/link/"); ok {
			linked = append(linked, rest)
			delete(got, e.URL)
			checkBody(t, client, e.URL, filepath.Join(www, "link", filepath.FromSlash(unescape(rest))))
		}
	}
	want := wantFiles(s, base, start)
	for u := range got {
		if _, ok := want[u]; !ok {
			t.Errorf("found %s, not a file of the tree below /%s", u, start)
		}
	}
	for u, f := range want {
		switch {
		case !got[u]:
			t.Errorf("missed %s", u)
		case f != "" && !slices.Contains(s.unserved, f):
			checkBody(t, client, u, filepath.Join(www, filepath.FromSlash(f)))
		}
	}
	// Through link/, all of the outside directory or nothing, whichever
	// the server does with symbolic links.
	slices.Sort(linked)
	if len(linked) > 0 && !slices.Equal(linked, outsideFiles) {
		t.Errorf("through link/: %q, want %q or nothing", linked, outsideFiles)
	}
	if start == "" {
		t.Logf("%s: %d files, %d through the symbolic link, %d links asked about (HEAD)",
			s.name, len(got), len(linked), cc.n.Load())
	}
}

// checkBody fetches u, which must be the file at path: its bytes, at u
// itself (a directory's request is redirected to its listing).
func checkBody(t *testing.T, client HTTPClient, u, path string) {
	t.Helper()
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Errorf("%s: %v", u, err)
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK || resp.Request.URL.String() != u || !bytes.Equal(body, want) {
		t.Errorf("%s: %s from %s, %d bytes (%v), want the %d of %s", u, resp.Status, resp.Request.URL, len(body), err, len(want), path)
	}
}

// capture writes s's listing of the tree's top as testdata/NAME.html and as a
// seed of FuzzLinks.
func capture(t *testing.T, s server, base string) {
	req, _ := http.NewRequest(http.MethodGet, base+"/", nil)
	req.Header.Set("Accept", "text/html")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	page, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("testdata", s.name+".html"), page, 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzLinks")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	seed := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", page)
	if err := os.WriteFile(filepath.Join(dir, s.name), []byte(seed), 0o644); err != nil {
		t.Fatal(err)
	}
}
