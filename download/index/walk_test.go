package index

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/haul/haul/download/input"
	"github.com/haul/haul/internal/testutil"
)

// fast are options that keep retries quick.
func fast(o Options) Options {
	if o.Backoff == 0 {
		o.Backoff = time.Millisecond
	}
	return o
}

// walkAll runs a walk to its end and returns the entries and the errors
// (each *DirError, in order); any other error fails the test.
func walkAll(t *testing.T, w *Walker) ([]input.Entry, []*DirError) {
	t.Helper()
	defer w.Close()
	var es []input.Entry
	var des []*DirError
	for {
		e, err := w.Next()
		if err == io.EOF {
			return es, des
		}
		var de *DirError
		if errors.As(err, &de) {
			des = append(des, de)
			continue
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		es = append(es, e)
	}
}

func urls(es []input.Entry) []string {
	var s []string
	for _, e := range es {
		s = append(s, e.URL)
	}
	return s
}

// listing writes an nginx-like index page of names (a trailing "/" for a
// directory), with nginx's parent link.
func listing(w http.ResponseWriter, names ...string) {
	w.Header().Set("Content-Type", "text/html")
	fmt.Fprint(w, "<html><body><pre><a href=\"../\">../</a>\n")
	for _, n := range names {
		fmt.Fprintf(w, "<a href=\"%s\">%s</a>   01-Jan-2026 00:00   1\n", n, n)
	}
	fmt.Fprint(w, "</pre></body></html>\n")
}

// tree serves directories given as path → names, 404 elsewhere, and counts
// requests per path.
type tree struct {
	mu   sync.Mutex
	dirs map[string][]string
	hits map[string]int
	// hook, when set, may answer a request itself (true) before the tree.
	hook func(w http.ResponseWriter, r *http.Request, hit int) bool
}

func (tr *tree) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tr.mu.Lock()
	if tr.hits == nil {
		tr.hits = map[string]int{}
	}
	tr.hits[r.URL.Path]++
	hit := tr.hits[r.URL.Path]
	names, ok := tr.dirs[r.URL.Path]
	tr.mu.Unlock()
	if tr.hook != nil && tr.hook(w, r, hit) {
		return
	}
	if !ok {
		http.NotFound(w, r)
		return
	}
	listing(w, names...)
}

func (tr *tree) hit(path string) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.hits[path]
}

func TestWalkTree(t *testing.T) {
	tr := &tree{dirs: map[string][]string{
		"/pub/":            {"a.iso", "b.txt", "sub/", "empty/"},
		"/pub/sub/":        {"c.iso", "deeper/"},
		"/pub/sub/deeper/": {"d.txt"},
		"/pub/empty/":      nil,
	}}
	s := httptest.NewServer(tr)
	defer s.Close()
	es, des := walkAll(t, NewSource(context.Background(), s.Client(), []string{s.URL + "/pub/"}, fast(Options{})))
	want := []string{s.URL + "/pub/a.iso", s.URL + "/pub/b.txt", s.URL + "/pub/sub/c.iso", s.URL + "/pub/sub/deeper/d.txt"}
	if got := urls(es); !slices.Equal(got, want) || len(des) != 0 {
		t.Errorf("got %q, %v\nwant %q (breadth first, in page order)", got, des, want)
	}
	for _, e := range es {
		if e.Line != 1 || e.Size != -1 || e.Out != "" || e.SHA256 != "" {
			t.Errorf("%+v: want Line 1, Size -1, no Out or SHA256", e)
		}
	}
	// The parent link, /, was never asked for; each directory once.
	for p, n := range tr.hits {
		if n != 1 || !strings.HasPrefix(p, "/pub/") {
			t.Errorf("%s asked %d times", p, n)
		}
	}
}

// Entries of the list that are not directories pass as they are, in order,
// bad lines included; roots are walked where they stand.
func TestExpandPassesEntries(t *testing.T) {
	tr := &tree{dirs: map[string][]string{"/d/": {"x", "y"}, "/": {"top"}}}
	s := httptest.NewServer(tr)
	defer s.Close()
	sc := input.NewScanner(strings.NewReader(strings.Join([]string{
		s.URL + "/file.bin sha256=" + strings.Repeat("0", 64) + " size=3",
		"ftp://bad/",
		s.URL + "/d/#frag",
		s.URL + "/q?x=1/", // a query that ends in "/" is no directory
		s.URL,             // the top: an empty path is "/"
	}, "\n")))
	w := Expand(context.Background(), s.Client(), sc, fast(Options{}))
	defer w.Close()
	var got []string
	for {
		e, err := w.Next()
		if err == io.EOF {
			break
		}
		var le *input.LineError
		if errors.As(err, &le) {
			got = append(got, fmt.Sprintf("bad line %d", le.Line))
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%d %s %s %d", e.Line, strings.TrimPrefix(e.URL, s.URL), e.SHA256, e.Size))
	}
	want := []string{"1 /file.bin " + strings.Repeat("0", 64) + " 3", "bad line 2", "3 /d/x  -1", "3 /d/y  -1",
		"4 /q?x=1/  -1", "5 /top  -1"}
	if !slices.Equal(got, want) {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	if _, err := w.Next(); err != io.EOF {
		t.Errorf("Next after the end: %v, want io.EOF", err)
	}
}

func TestIsIndex(t *testing.T) {
	for u, want := range map[string]bool{
		"http://h/":       true,
		"http://h":        true,
		"http://h/d/":     true,
		"http://h/d/#x":   true,
		"http://h/d/?C=M": true,
		"http://h/d":      false,
		"http://h/d?x=/":  false,
		"http://h/d#/":    false,
		"h/d/":            false,
	} {
		if got := IsIndex(u); got != want {
			t.Errorf("IsIndex(%q) = %v", u, got)
		}
	}
}

func TestWalkFilter(t *testing.T) {
	tr := &tree{dirs: map[string][]string{
		"/":      {"a.iso", "a.iso.sig", "b.txt", "isos/", "README"},
		"/isos/": {"c.iso", "c.txt"},
	}}
	s := httptest.NewServer(tr)
	defer s.Close()
	f, err := NewFilter("iso,txt", "b.*")
	if err != nil {
		t.Fatal(err)
	}
	es, _ := walkAll(t, NewSource(context.Background(), s.Client(), []string{s.URL + "/"}, fast(Options{Filter: f})))
	want := []string{s.URL + "/a.iso", s.URL + "/isos/c.iso", s.URL + "/isos/c.txt"}
	if got := urls(es); !slices.Equal(got, want) {
		t.Errorf("got %q, want %q (directories walked whatever their names)", got, want)
	}
}

func TestFilter(t *testing.T) {
	for _, c := range []struct {
		accept, reject string
		name           string
		want           bool
	}{
		{"", "", "anything", true},
		{"iso", "", "a.iso", true},
		{"iso", "", "bigiso", true}, // a suffix, as wget's
		{"iso", "", "a.iso.sig", false},
		{".iso", "", "a.iso", true},
		{"*.iso", "", "a.iso", true},
		{"*.iso", "", "a.iso.sig", false},
		{"iso, txt", "", "b.txt", true},
		{"iso,,txt", "", "b.txt", true},
		{"a?.txt", "", "ab.txt", true},
		{"[ab].txt", "", "c.txt", false},
		{"ISO", "", "a.iso", false}, // case matters, as in wget without --ignore-case
		{"", "txt", "b.txt", false},
		{"", "txt", "a.iso", true},
		{"*", "*.part", "movie.mkv.part", false}, // reject wins
		{"iso", "debian-*", "debian-12.iso", false},
		{"*.iso", "", "a b.iso", true},
		{"*", "", ".hidden", true}, // fnmatch without FNM_PERIOD, as wget
	} {
		f, err := NewFilter(c.accept, c.reject)
		if err != nil {
			t.Fatal(err)
		}
		if got := f.Match(c.name); got != c.want {
			t.Errorf("-A %q -R %q: Match(%q) = %v", c.accept, c.reject, c.name, got)
		}
	}
	if _, err := NewFilter("a,[b", ""); err == nil || !strings.Contains(err.Error(), "--accept") {
		t.Errorf("a bad pattern: %v", err)
	}
	if _, err := NewFilter("", "x["); err == nil || !strings.Contains(err.Error(), "--reject") {
		t.Errorf("a bad pattern: %v", err)
	}
	if !(*Filter)(nil).Match("x") {
		t.Error("a nil Filter must keep everything")
	}
}

// The frontier keeps FIFO order across memory and its file, and the file
// starts over once read back.
func TestFrontierSpill(t *testing.T) {
	q := newFrontier(4, t.TempDir())
	defer q.close()
	next, want := 0, 0
	push := func(n int) {
		for range n {
			if err := q.push(item{url: "http://h/" + strconv.Itoa(next) + " sp/", depth: next % 7}); err != nil {
				t.Fatal(err)
			}
			next++
		}
	}
	pop := func(n int) {
		for range n {
			it, ok, err := q.pop()
			if err != nil || !ok {
				t.Fatalf("pop %d: %v %v", want, ok, err)
			}
			if w := (item{url: "http://h/" + strconv.Itoa(want) + " sp/", depth: want % 7}); it != w {
				t.Fatalf("pop: %+v, want %+v", it, w)
			}
			want++
		}
	}
	push(3)
	pop(1)
	push(10) // spills
	pop(5)
	push(7)
	pop(q.len())
	if _, ok, _ := q.pop(); ok || q.spilled == 0 {
		t.Fatalf("ok %v, spilled %d", ok, q.spilled)
	}
	if q.wOff != 0 || q.rOff != 0 {
		t.Errorf("the file was not started over: %d %d", q.rOff, q.wOff)
	}
	push(1000)
	pop(500)
	push(1000)
	pop(q.len())
	if want != next {
		t.Errorf("popped %d of %d", want, next)
	}
}

// synth serves a synthetic tree, generated on the fly: / lists dirs
// directories, each of which lists files files. pages counts the pages
// begun.
type synth struct {
	dirs, files int
	pages       atomic.Int64
}

func (s *synth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.pages.Add(1)
	w.Header().Set("Content-Type", "text/html")
	bw := bufio.NewWriterSize(w, 32<<10)
	fmt.Fprintf(bw, "<html><head><title>Index of %s</title></head><body><pre><a href=\"../\">../</a>\n", r.URL.Path)
	if r.URL.Path == "/" {
		for i := range s.dirs {
			fmt.Fprintf(bw, "<a href=\"d%d/\">d%d/</a>                 01-Jan-2026 00:00       -\n", i, i)
		}
	} else {
		for j := range s.files {
			fmt.Fprintf(bw, "<a href=\"f%d.bin\">f%d.bin</a>           01-Jan-2026 00:00    1234\n", j, j)
		}
	}
	fmt.Fprint(bw, "</pre></body></html>\n")
	bw.Flush()
}

// A tree of a million files is walked in a few MiB: the live heap stays flat
// from the first entries to the last, the waiting directories spill to disk,
// and the first entry arrives when two of 201 pages have been asked for.
func TestWalkHugeTreeBoundedMemory(t *testing.T) {
	syn := &synth{dirs: 200, files: 5000}
	if raceEnabled || testing.Short() {
		syn.dirs, syn.files = 50, 2000 // -race is ten times slower
	}
	s := httptest.NewServer(syn)
	defer s.Close()
	w := NewSource(context.Background(), s.Client(), []string{s.URL + "/"}, fast(Options{QueueLen: 16}))
	defer w.Close()
	total := syn.dirs * syn.files
	var ms runtime.MemStats
	var first, peak uint64
	sample := func() uint64 {
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse
	}
	base := sample()
	d, f := 0, 0
	for n := 0; ; n++ {
		e, err := w.Next()
		if err == io.EOF {
			if n != total {
				t.Fatalf("%d entries, want %d", n, total)
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			if p := syn.pages.Load(); p > 2 {
				t.Errorf("the first entry came after %d pages were asked for, want 2 (streamed)", p)
			}
		}
		// Checked in order, not in a set: the test holds nothing either.
		if want := fmt.Sprintf("%s/d%d/f%d.bin", s.URL, d, f); e.URL != want {
			t.Fatalf("entry %d: %s, want %s", n, e.URL, want)
		}
		if f++; f == syn.files {
			d, f = d+1, 0
		}
		if n%(total/10) == total/20 {
			h := sample()
			if first == 0 {
				first = h
			}
			peak = max(peak, h)
		}
	}
	t.Logf("heap in use: %.1f MiB before, %.1f MiB at the first sample, %.1f MiB at most; %d directories spilled",
		float64(base)/(1<<20), float64(first)/(1<<20), float64(peak)/(1<<20), w.front.spilled)
	if peak > 8<<20 {
		t.Errorf("heap in use reached %.1f MiB walking %d files, want under 8", float64(peak)/(1<<20), total)
	}
	if peak > first+(1<<20) {
		t.Errorf("heap in use grew from %.1f to %.1f MiB while walking", float64(first)/(1<<20), float64(peak)/(1<<20))
	}
	if w.front.spilled < syn.dirs-16 {
		t.Errorf("%d directories spilled, want %d (QueueLen 16)", w.front.spilled, syn.dirs-16)
	}
}

// A page's entries are given as it arrives: the server sends the second
// half of the page only once the first entry has come out.
func TestWalkStreamsWithinPage(t *testing.T) {
	got := make(chan struct{})
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			return // a file, as the walker's HEAD finds
		}
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, `<a href="first">first</a>`)
		w.(http.Flusher).Flush()
		select {
		case <-got:
		case <-time.After(testutil.Patience(t)):
			t.Error("the first entry did not come out before the page ended")
		}
		fmt.Fprint(w, `<a href="second">second</a>`)
	}))
	defer s.Close()
	w := NewSource(context.Background(), s.Client(), []string{s.URL + "/"}, fast(Options{}))
	defer w.Close()
	e, err := w.Next()
	if err != nil || e.URL != s.URL+"/first" {
		t.Fatalf("%+v %v", e, err)
	}
	close(got)
	e, err = w.Next()
	if err != nil || e.URL != s.URL+"/second" {
		t.Fatalf("%+v %v", e, err)
	}
	if _, err := w.Next(); err != io.EOF {
		t.Fatal(err)
	}
}

// A consumer that stops pulling for a while does not hold the page's
// connection: the body is read to its end regardless.
func TestWalkReadsPageWhileConsumerWaits(t *testing.T) {
	done := make(chan struct{})
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			return // a file, as the walker's HEAD finds
		}
		defer close(done)
		w.Header().Set("Content-Type", "text/html")
		// 10 MB: more than loopback's socket buffers hold (a few MiB).
		for i := range 400000 {
			fmt.Fprintf(w, "<a href=\"f%d\">f%d</a>\n", i, i)
		}
	}))
	defer s.Close()
	w := NewSource(context.Background(), s.Client(), []string{s.URL + "/"}, fast(Options{}))
	defer w.Close()
	if _, err := w.Next(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(testutil.Patience(t)):
		t.Fatal("the server could not send the page while the consumer waited")
	}
}

// Roots given to NewSource are checked as lines of a list.
func TestNewSourceChecksRoots(t *testing.T) {
	s := httptest.NewServer(&tree{dirs: map[string][]string{"/": {"f"}}})
	defer s.Close()
	w := NewSource(context.Background(), s.Client(), []string{"ftp://h/", "", s.URL + "/"}, fast(Options{}))
	defer w.Close()
	_, err := w.Next()
	var le *input.LineError
	if !errors.As(err, &le) || le.Line != 1 {
		t.Fatalf("ftp://: %v, want a LineError for line 1", err)
	}
	e, err := w.Next()
	if err != nil || e.URL != s.URL+"/f" || e.Line != 3 {
		t.Fatalf("%+v, %v", e, err)
	}
}

func TestWalkDirErrors(t *testing.T) {
	tr := &tree{dirs: map[string][]string{
		"/":        {"a", "gone/", "broken/", "ok/", "forbidden/"},
		"/ok/":     {"b"},
		"/broken/": {"never"},
	}}
	tr.hook = func(w http.ResponseWriter, r *http.Request, hit int) bool {
		switch r.URL.Path {
		case "/broken/":
			http.Error(w, "down", http.StatusInternalServerError)
			return true
		case "/forbidden/":
			http.Error(w, "no", http.StatusForbidden)
			return true
		}
		return false
	}
	s := httptest.NewServer(tr)
	defer s.Close()
	es, des := walkAll(t, NewSource(context.Background(), s.Client(), []string{s.URL + "/"}, fast(Options{Retries: 2})))
	if got, want := urls(es), []string{s.URL + "/a", s.URL + "/ok/b"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q: the walk goes on past failed directories", got, want)
	}
	var got []string
	for _, de := range des {
		got = append(got, fmt.Sprintf("%s %d %d", strings.TrimPrefix(de.URL, s.URL), de.Status, de.Line))
		if !strings.Contains(de.Error(), de.URL) || !strings.Contains(de.Error(), strconv.Itoa(de.Status)) {
			t.Errorf("%q: want the URL and the status in it", de.Error())
		}
	}
	if want := []string{"/gone/ 404 1", "/broken/ 500 1", "/forbidden/ 403 1"}; !slices.Equal(got, want) {
		t.Errorf("errors %q, want %q", got, want)
	}
	if n := tr.hit("/broken/"); n != 3 {
		t.Errorf("a 500 was asked %d times, want 3 (Retries 2)", n)
	}
	if n := tr.hit("/forbidden/") + tr.hit("/gone/"); n != 2 {
		t.Errorf("403 and 404 asked %d times, want once each", n)
	}
}

// A root that fails is a *DirError with its line; the next line goes on.
func TestWalkRootFails(t *testing.T) {
	tr := &tree{dirs: map[string][]string{"/ok/": {"f"}}}
	s := httptest.NewServer(tr)
	defer s.Close()
	es, des := walkAll(t, NewSource(context.Background(), s.Client(), []string{s.URL + "/missing/", s.URL + "/ok/"}, fast(Options{})))
	if len(des) != 1 || des[0].URL != s.URL+"/missing/" || des[0].Line != 1 || des[0].Status != 404 {
		t.Errorf("errors %+v", des)
	}
	if len(es) != 1 || es[0].URL != s.URL+"/ok/f" || es[0].Line != 2 {
		t.Errorf("entries %+v", es)
	}
}

// 503 and 429 are retried, Retry-After honoured; a connection closed
// before the headers too.
func TestWalkRetries(t *testing.T) {
	t.Parallel() // it waits a second for Retry-After
	tr := &tree{dirs: map[string][]string{"/": {"a/", "b/", "c/"}, "/a/": {"fa"}, "/b/": {"fb"}, "/c/": {"fc"}}}
	var asked [2]time.Time
	tr.hook = func(w http.ResponseWriter, r *http.Request, hit int) bool {
		switch {
		case r.URL.Path == "/a/" && hit == 1:
			w.Header().Set("Retry-After", "1")
			asked[0] = time.Now()
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return true
		case r.URL.Path == "/a/" && hit == 2:
			asked[1] = time.Now()
		case r.URL.Path == "/b/" && hit <= 2:
			http.Error(w, "slow down", http.StatusTooManyRequests)
			return true
		case r.URL.Path == "/c/" && hit == 1:
			c, _, _ := w.(http.Hijacker).Hijack()
			c.Close()
			return true
		}
		return false
	}
	s := httptest.NewServer(tr)
	defer s.Close()
	es, des := walkAll(t, NewSource(context.Background(), s.Client(), []string{s.URL + "/"}, fast(Options{})))
	if got, want := urls(es), []string{s.URL + "/a/fa", s.URL + "/b/fb", s.URL + "/c/fc"}; !slices.Equal(got, want) || len(des) > 0 {
		t.Errorf("got %q %v, want %q", got, des, want)
	}
	if d := asked[1].Sub(asked[0]); d < time.Second {
		t.Errorf("asked again %v after Retry-After: 1", d)
	}
}

// A host name that does not exist (NXDOMAIN) is asked once: no attempt
// will find it. A resolver that timed out is asked again.
func TestWalkNameNotFoundNotRetried(t *testing.T) {
	for _, tc := range []struct {
		name  string
		err   net.DNSError
		tries int
	}{
		{"NXDOMAIN", net.DNSError{Err: "no such host", IsNotFound: true}, 1},
		{"resolver timeout", net.DNSError{Err: "i/o timeout", IsTimeout: true}, 1 + DefaultRetries},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var dials atomic.Int32
			client := &http.Client{Transport: &http.Transport{
				DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
					dials.Add(1)
					err := tc.err
					err.Name = addr
					return nil, &err
				},
			}}
			es, des := walkAll(t, NewSource(context.Background(), client, []string{"http://nowhere.invalid/"}, fast(Options{})))
			if len(es) != 0 || len(des) != 1 {
				t.Fatalf("entries %v, errors %v: want one error", es, des)
			}
			var de *net.DNSError
			if !errors.As(des[0], &de) {
				t.Errorf("error %v: not the resolver's", des[0])
			}
			if got := int(dials.Load()); got != tc.tries {
				t.Errorf("%d attempts, want %d", got, tc.tries)
			}
		})
	}
}

// A page cut short is fetched again and its links already given are passed
// over: nothing twice, nothing missed.
func TestWalkPageCutShort(t *testing.T) {
	var page strings.Builder
	for i := range 300 {
		fmt.Fprintf(&page, "<a href=\"f%d\">f%d</a>\n", i, i)
	}
	body := page.String()
	tr := &tree{}
	tr.hook = func(w http.ResponseWriter, r *http.Request, hit int) bool {
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		if hit <= 2 {
			// Cut at a different place each time, once in a tag.
			w.Write([]byte(body[:len(body)*hit/3+5]))
			w.(http.Flusher).Flush()
			c, _, _ := w.(http.Hijacker).Hijack()
			c.Close()
			return true
		}
		io.WriteString(w, body)
		return true
	}
	s := httptest.NewServer(tr)
	defer s.Close()
	es, des := walkAll(t, NewSource(context.Background(), s.Client(), []string{s.URL + "/"}, fast(Options{})))
	if len(des) != 0 || len(es) != 300 {
		t.Fatalf("%d entries, %v; want 300", len(es), des)
	}
	for i, e := range es {
		if want := fmt.Sprintf("%s/f%d", s.URL, i); e.URL != want {
			t.Fatalf("entry %d: %s, want %s", i, e.URL, want)
		}
	}
	if n := tr.hit("/"); n != 3 {
		t.Errorf("asked %d times, want 3", n)
	}
}

// A server that sends nothing, before or within the page, is given up on
// after Timeout, and asked again.
func TestWalkStall(t *testing.T) {
	tr := &tree{dirs: map[string][]string{"/": {"a/", "b/", "c/"}, "/a/": {"fa"}, "/b/": {"fb"}, "/c/": {"fc"}}}
	tr.hook = func(w http.ResponseWriter, r *http.Request, hit int) bool {
		if hit > 1 {
			return false
		}
		switch r.URL.Path {
		case "/a/": // no headers
			<-r.Context().Done() // the client gave up
			return true
		case "/b/": // headers, then nothing
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte("<html>"))
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			return true
		case "/c/": // no Content-Type, and too little to sniff
			w.Header()["Content-Type"] = nil
			w.Write([]byte("<a"))
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			return true
		}
		return false
	}
	s := httptest.NewServer(tr)
	defer s.Close()
	// Pages that stall are given up after the timeout and asked again (a
	// walk that waited on them would never end).
	es, des := walkAll(t, NewSource(context.Background(), s.Client(), []string{s.URL + "/"}, fast(Options{Timeout: time.Second})))
	if got, want := urls(es), []string{s.URL + "/a/fa", s.URL + "/b/fb", s.URL + "/c/fc"}; !slices.Equal(got, want) || len(des) > 0 {
		t.Errorf("got %q %v, want %q", got, des, want)
	}
	// And one that always stalls fails with ErrStalled.
	s2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer s2.Close()
	_, des = walkAll(t, NewSource(context.Background(), s2.Client(), []string{s2.URL + "/"}, fast(Options{Timeout: 50 * time.Millisecond, Retries: 1})))
	if len(des) != 1 || !errors.Is(des[0], ErrStalled) {
		t.Errorf("errors %v, want one ErrStalled", des)
	}
}

// What is not HTML is a file: a root given as its own entry, line and all; a
// subdirectory as a file entry. No Content-Type: the body is sniffed.
func TestWalkNotHTML(t *testing.T) {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/file/":
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Write(make([]byte, 100<<10))
		case "/dir/":
			w.Header()["Content-Type"] = nil // no sniffing by net/http
			io.WriteString(w, `<!DOCTYPE html><a href="sub/">sub</a><a href="json/">j</a><a href="f">f</a>`)
		case "/dir/sub/":
			w.Header()["Content-Type"] = nil
			w.Write([]byte("\x00\x01binary"))
		case "/dir/json/":
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `[]`)
		}
	}))
	defer s.Close()
	sc := input.NewScanner(strings.NewReader(s.URL + "/file/ size=102400\n" + s.URL + "/dir/\n"))
	w := Expand(context.Background(), s.Client(), sc, fast(Options{}))
	es, des := walkAll(t, w)
	want := []input.Entry{
		{URL: s.URL + "/file/", Size: 100 << 10, Line: 1},
		{URL: s.URL + "/dir/f", Size: -1, Line: 2},
		{URL: s.URL + "/dir/sub/", Size: -1, Line: 2},
		{URL: s.URL + "/dir/json/", Size: -1, Line: 2},
	}
	if !slices.Equal(es, want) || len(des) > 0 {
		t.Errorf("got  %+v %v\nwant %+v", es, des, want)
	}
}

func TestWalkRedirects(t *testing.T) {
	other := httptest.NewServer(&tree{dirs: map[string][]string{"/mirror/": {"m"}}})
	defer other.Close()
	tr := &tree{dirs: map[string][]string{
		"/new/":            {"f", "up/", "sideways/", "down/"},
		"/new/x/":          {"g"},
		"/new/down/inner/": {"h"},
		"/a/":              {"should-not-be-given"},
	}}
	tr.hook = func(w http.ResponseWriter, r *http.Request, hit int) bool {
		to := map[string]string{
			"/old/":          "/new/",            // the root moved: walked there
			"/a/b/":          "/a/",              // above the root: refused
			"/new/up/":       "/new/",            // to its parent: refused (a loop)
			"/new/sideways/": "/new/x/",          // to a sibling: walked there
			"/new/down/":     "/new/down/inner/", // below itself
			"/away/":         other.URL + "/mirror/",
		}[r.URL.Path]
		if to == "" {
			return false
		}
		http.Redirect(w, r, to, http.StatusMovedPermanently)
		return true
	}
	s := httptest.NewServer(tr)
	defer s.Close()
	es, des := walkAll(t, NewSource(context.Background(), s.Client(),
		[]string{s.URL + "/old/", s.URL + "/a/b/", s.URL + "/away/"}, fast(Options{})))
	want := []string{s.URL + "/new/f", s.URL + "/new/x/g", s.URL + "/new/down/inner/h", other.URL + "/mirror/m"}
	if got := urls(es); !slices.Equal(got, want) {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	var got []string
	for _, de := range des {
		if !errors.Is(de, ErrOutside) {
			t.Errorf("%v: want ErrOutside", de)
		}
		got = append(got, fmt.Sprintf("%d %s", de.Line, strings.TrimPrefix(de.URL, s.URL)))
	}
	if want := []string{"1 /new/up/", "2 /a/b/"}; !slices.Equal(got, want) {
		t.Errorf("errors %q, want %q", got, want)
	}
}

// A server that follows a symbolic link to a directory above lists the tree
// again at every level: MaxDepth ends it, with an error naming the URL.
func TestWalkTooDeep(t *testing.T) {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		listing(w, "loop/", "f")
	}))
	defer s.Close()
	es, des := walkAll(t, NewSource(context.Background(), s.Client(), []string{s.URL + "/top/"}, fast(Options{MaxDepth: 3})))
	want := []string{s.URL + "/top/f", s.URL + "/top/loop/f", s.URL + "/top/loop/loop/f", s.URL + "/top/loop/loop/loop/f"}
	if got := urls(es); !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if len(des) != 1 || !errors.Is(des[0], ErrTooDeep) || des[0].URL != s.URL+"/top/loop/loop/loop/loop/" {
		t.Errorf("errors %v", des)
	}
}

func TestWalkPageTooLarge(t *testing.T) {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		for i := range 1000 {
			fmt.Fprintf(w, "<a href=\"f%d\">f%d</a>\n", i, i)
		}
	}))
	defer s.Close()
	es, des := walkAll(t, NewSource(context.Background(), s.Client(), []string{s.URL + "/"}, fast(Options{MaxPage: 1000})))
	if len(es) == 0 || len(es) > 60 || len(des) != 1 || !errors.Is(des[0], ErrPageTooLarge) {
		t.Errorf("%d entries, %v; want the first few, then ErrPageTooLarge", len(es), des)
	}
}

// Links to other hosts and above the start are never asked for.
func TestWalkStaysBelowStart(t *testing.T) {
	other := httptest.NewServer(&tree{})
	defer other.Close()
	tr := &tree{dirs: map[string][]string{
		"/d/":     {"../", "/", "/x/", other.URL + "/d/", "?C=N;O=D", "sub/", "/d/abs/"},
		"/d/sub/": {"f"}, "/d/abs/": {"g"},
	}}
	s := httptest.NewServer(tr)
	defer s.Close()
	es, _ := walkAll(t, NewSource(context.Background(), s.Client(), []string{s.URL + "/d/"}, fast(Options{})))
	if got, want := urls(es), []string{s.URL + "/d/sub/f", s.URL + "/d/abs/g"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	other.Config.Handler.(*tree).mu.Lock()
	defer other.Config.Handler.(*tree).mu.Unlock()
	if len(other.Config.Handler.(*tree).hits) != 0 || len(tr.hits) != 3 {
		t.Errorf("asked %v here and %v there", tr.hits, other.Config.Handler.(*tree).hits)
	}
}

// Index requests carry the options' headers, and ask for HTML.
func TestWalkHeaders(t *testing.T) {
	var ua, accept string
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ua, accept = r.UserAgent(), r.Header.Get("Accept")
		listing(w)
	}))
	defer s.Close()
	h := http.Header{"User-Agent": {"haul/test"}, "Accept": {"application/json"}}
	walkAll(t, NewSource(context.Background(), s.Client(), []string{s.URL + "/"}, fast(Options{Header: h})))
	if ua != "haul/test" || !strings.HasPrefix(accept, "text/html") {
		t.Errorf("User-Agent %q, Accept %q", ua, accept)
	}
}

// Close stops a walk in the middle of a page, and cancelling its context
// does too; the page's goroutine ends.
func TestWalkCloseAndCancel(t *testing.T) {
	syn := &synth{dirs: 3, files: 100000}
	s := httptest.NewServer(syn)
	defer s.Close()
	alive := testutil.TrackGoroutines(t)
	w := NewSource(context.Background(), s.Client(), []string{s.URL + "/"}, fast(Options{}))
	for range 10 {
		if _, err := w.Next(); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	if _, err := w.Next(); err == nil || err == io.EOF {
		t.Errorf("Next after Close: %v", err)
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	w = NewSource(ctx, s.Client(), []string{s.URL + "/"}, fast(Options{}))
	defer w.Close()
	if _, err := w.Next(); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	cancel(boom)
	if _, err := w.Next(); !errors.Is(err, boom) {
		t.Errorf("Next after cancel: %v, want the cause", err)
	}
	s.CloseClientConnections()
	// The walks' requests and connections end as their goroutines notice:
	// wait for that, for as long as the test may run (a leak fails it there,
	// with the stacks), never for a fixed time. Only the goroutines this test
	// started count, not those of another test or of the server.
	testutil.Until(t, func() error {
		if left := alive(); len(left) > 0 {
			return fmt.Errorf("%d goroutines of the walks left:\n%s", len(left), strings.Join(left, "\n\n"))
		}
		return nil
	})
}

// Close may come while another goroutine is in Next (the engine's feed
// reads on a goroutine of its own).
func TestWalkCloseDuringNext(t *testing.T) {
	pr, pw := io.Pipe()
	defer pw.Close()
	reading := make(chan struct{})
	src := &signalReader{r: pr, first: reading}
	w := Expand(context.Background(), http.DefaultClient, input.NewScanner(src), Options{})
	done := make(chan error, 1)
	go func() { _, err := w.Next(); done <- err }()
	<-reading // Next is in the source's Read, which blocks until the pipe has bytes
	w.Close() // Close must not wait for it
	pw.Close()
	if err := <-done; err != io.EOF && !errors.Is(err, errClosed) {
		t.Errorf("Next: %v", err)
	}
}

// signalReader closes first when its first Read begins.
type signalReader struct {
	r     io.Reader
	first chan struct{}
	once  sync.Once
}

func (s *signalReader) Read(p []byte) (int, error) {
	s.once.Do(func() { close(s.first) })
	return s.r.Read(p)
}
