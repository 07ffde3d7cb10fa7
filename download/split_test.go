package download_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/haul/haul/download"
	"github.com/haul/haul/download/httpclient"
	"github.com/haul/haul/download/input"
	"github.com/haul/haul/internal/testutil"
	"github.com/haul/haul/sink"
)

// splitServer serves one file with http.ServeContent (real ranges, If-Range),
// counting requests, the ranged ones in flight, and the body bytes written.
// A lie, if set, may answer a ranged request itself.
// pieceHead answers a ranged request's head as a 206 of the range asked,
// moved by shift bytes (a lie when not 0), of a file of size bytes, and
// returns the range asked (END inclusive).
func (s *splitServer) pieceHead(w http.ResponseWriter, r *http.Request, shift, size int) (a, b int) {
	fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-%d", &a, &b)
	w.Header().Set("ETag", s.etag)
	w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", a+shift, b+shift, size))
	w.Header().Set("Content-Length", strconv.Itoa(b-a+1))
	w.WriteHeader(http.StatusPartialContent)
	return a, b
}

type splitServer struct {
	t *testing.T
	*httptest.Server

	mu          sync.Mutex
	data        []byte
	etag        string
	lastMod     time.Time
	reqs        []string // each request's Range header ("" for none)
	conns       []string // each request's protocol and client address
	redirects   []string // requests for /r (redirected to /f.bin): their Range
	inflight    int      // requests being answered
	maxInflight int
	served      int64
	// barrier, if > 0, holds every response after its first bytes until
	// that many requests are in flight at once, or barrierWait passed (by
	// default until the test's time runs out: it then fails on maxInflight,
	// it does not hang).
	barrier     int
	barrierWait time.Duration
	released    chan struct{}
	release     sync.Once
	// holdPlain holds a plain response after its first bytes until a ranged
	// request arrived (or the client gave up on it): on loopback the first
	// response could otherwise end before any piece is asked for.
	holdPlain bool
	// stallPlain: a plain response stops after its first bytes, until the
	// client gives up on it.
	stallPlain bool
	ranging    chan struct{}
	rangeOnce  sync.Once
	// lie answers a ranged request instead of ServeContent when it returns
	// true; n counts the ranged requests so far (1 for the first).
	lie func(s *splitServer, w http.ResponseWriter, r *http.Request, n int) bool
	// change, if set, replaces the content when the first ranged request
	// arrives (before it is answered).
	change []byte
	// rate, if > 0, paces every response to about that many bytes a second,
	// as a link that caps each connection.
	rate int
}

func newSplitServer(t *testing.T, data []byte) *splitServer {
	s := &splitServer{t: t, data: data, etag: `"v1"`, lastMod: time.Now().Add(-time.Hour).Truncate(time.Second),
		released: make(chan struct{}), ranging: make(chan struct{})}
	s.Server = httptest.NewServer(s)
	t.Cleanup(s.Close)
	return s
}

// newSplitServerH2 is newSplitServer over HTTPS with HTTP/2, and a client
// that trusts it.
func newSplitServerH2(t *testing.T, data []byte) (*splitServer, httpclient.Client) {
	s := &splitServer{t: t, data: data, etag: `"v1"`, lastMod: time.Now().Add(-time.Hour).Truncate(time.Second),
		released: make(chan struct{}), ranging: make(chan struct{})}
	s.Server = httptest.NewUnstartedServer(s)
	s.EnableHTTP2 = true
	s.StartTLS()
	t.Cleanup(s.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
	if err := os.WriteFile(ca, pemBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := httpclient.New(httpclient.Options{Jobs: 4, CACert: ca})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return s, c
}

func (s *splitServer) url() string { return s.URL + "/f.bin" }

type countWriter struct {
	http.ResponseWriter
	s     *splitServer
	first bool
	plain bool // the request has no Range
	ctx   context.Context
}

func (w *countWriter) Write(p []byte) (int, error) {
	if w.s.rate > 0 {
		return w.paced(p)
	}
	n, err := w.ResponseWriter.Write(p)
	w.s.mu.Lock()
	w.s.served += int64(n)
	w.s.mu.Unlock()
	if !w.first {
		w.first = true
		if f, ok := w.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		if w.s.stallPlain && w.plain {
			<-w.ctx.Done()
		}
		if w.s.holdPlain && w.plain {
			select {
			case <-w.s.ranging:
			case <-w.ctx.Done():
			case <-time.After(testutil.Patience(w.s.t)):
			}
		}
		if w.s.barrier > 0 {
			select {
			case <-w.s.released:
			case <-w.ctx.Done():
			case <-time.After(cmp.Or(w.s.barrierWait, testutil.Patience(w.s.t))):
			}
		}
	}
	return n, err
}

// paced writes p at the server's rate.
func (w *countWriter) paced(p []byte) (int, error) {
	return testutil.WritePaced(w.ResponseWriter, p, w.s.rate, func(m int) {
		w.s.mu.Lock()
		w.s.served += int64(m)
		w.s.mu.Unlock()
	})
}

func (s *splitServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/r" {
		s.mu.Lock()
		s.redirects = append(s.redirects, r.Header.Get("Range"))
		s.mu.Unlock()
		http.Redirect(w, r, "/f.bin", http.StatusFound)
		return
	}
	rng := r.Header.Get("Range")
	s.mu.Lock()
	s.reqs = append(s.reqs, rng)
	s.conns = append(s.conns, r.Proto+" "+r.RemoteAddr)
	n := 0
	for _, q := range s.reqs {
		if q != "" {
			n++
		}
	}
	if rng != "" {
		s.rangeOnce.Do(func() { close(s.ranging) })
	}
	if rng != "" && n == 1 && s.change != nil {
		s.data, s.etag, s.lastMod = s.change, `"v2"`, s.lastMod.Add(time.Minute)
	}
	s.inflight++
	s.maxInflight = max(s.maxInflight, s.inflight)
	if s.barrier > 0 && s.inflight == s.barrier {
		s.release.Do(func() { close(s.released) })
	}
	data, etag, lm := s.data, s.etag, s.lastMod
	lie := s.lie
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.inflight--
		s.mu.Unlock()
	}()
	cw := &countWriter{ResponseWriter: w, s: s, plain: rng == "", ctx: r.Context()}
	if rng != "" && lie != nil && lie(s, cw, r, n) {
		return
	}
	w.Header().Set("ETag", etag)
	http.ServeContent(cw, r, "f.bin", lm, bytes.NewReader(data))
}

func (s *splitServer) ranged() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, q := range s.reqs {
		if q != "" {
			out = append(out, q)
		}
	}
	return out
}

// splitOpts: pieces of at least 64 KiB, every file hashed, split at once
// (a loopback server is faster than SplitBelow).
func splitOpts(n int) download.Options {
	return download.Options{Split: n, MinSplitSize: 64 << 10, HashAll: true, SplitBelow: -1}
}

// A file of 1 MiB over 4 connections at once: the server sees 4 requests in
// flight together (a barrier holds each until then), 3 of them ranged with
// If-Range; the file and its hash are right, and no byte was fetched twice.
func TestSplitParallel(t *testing.T) {
	data := payload(1, 1<<20)
	s := newSplitServer(t, data)
	s.barrier = 4
	h := newHarness(t)
	r := h.run(splitOpts(4), s.url()).get(s.url())
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	h.checkFile(r.Name, data)
	if r.SHA256 != testutil.SHA256Hex(data) {
		t.Errorf("sha256 %s, want %s", r.SHA256, testutil.SHA256Hex(data))
	}
	if s.maxInflight < 4 {
		t.Errorf("%d requests in flight at most, want 4 (ranged: %q)", s.maxInflight, s.ranged())
	}
	if rs := s.ranged(); len(rs) < 3 {
		t.Errorf("ranged requests %q, want at least 3", rs)
	}
	for _, q := range s.ranged() {
		if !strings.HasPrefix(q, "bytes=") || strings.HasSuffix(q, "-") {
			t.Errorf("piece asked %q, want a closed range", q)
		}
	}
	// Each piece's connection stops at its end; the first one's response was
	// open-ended, and may have been written past its end into the socket.
	if st := h.eng(t); st != nil {
		t.Log(st)
	}
	h.checkNoPartFiles()
}

// eng is a hook for debugging output; nil.
func (h *harness) eng(*testing.T) any { return nil }

// Small files, --split 1, and servers without ranges or strong validators
// are fetched over one connection.
func TestSplitNotWhen(t *testing.T) {
	for _, tc := range []struct {
		name string
		size int
		o    download.Options
		hdr  func(http.Header)
	}{
		{"below twice the minimum", 128<<10 - 1, splitOpts(4), nil},
		{"--split 1", 1 << 20, splitOpts(1), nil},
		{"no Accept-Ranges", 1 << 20, splitOpts(4), func(h http.Header) { h.Del("Accept-Ranges") }},
		{"weak ETag only", 1 << 20, splitOpts(4), func(h http.Header) { h.Set("ETag", `W/"x"`); h.Del("Last-Modified") }},
		// No slot for a second connection: the first response streams on.
		{"--per-host 1", 1 << 20, func() download.Options { o := splitOpts(4); o.PerHost = 1; return o }(), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := payload(2, tc.size)
			s := newSplitServer(t, data)
			if tc.hdr != nil {
				inner := s.Config.Handler
				s.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					inner.ServeHTTP(&hdrWriter{ResponseWriter: w, fix: tc.hdr}, r)
				})
			}
			h := newHarness(t)
			r := h.run(tc.o, s.url()).get(s.url())
			if r.Err != nil {
				t.Fatal(r.Err)
			}
			h.checkFile(r.Name, data)
			if rs := s.ranged(); len(rs) != 0 {
				t.Errorf("ranged requests %q, want none", rs)
			}
		})
	}
}

// A file is split only where its first connection runs slower than
// SplitBelow: over a connection paced to 2 MiB/s it is, without being told
// to split at once; over one faster than SplitBelow it goes on in order.
func TestSplitOnlySlowLinks(t *testing.T) {
	const size = 2 << 20
	for _, tc := range []struct {
		name      string
		rate      int   // the server's pace per connection (0: loopback)
		below     int64 // SplitBelow
		wantSplit bool
	}{
		{"a capped connection is split", 2 << 20, 0, true},
		// 1 byte a second: no read of a loopback connection is that slow.
		{"a fast connection is not", 0, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := payload(12, size)
			s := newSplitServer(t, data)
			s.rate = tc.rate
			h := newHarness(t)
			o := splitOpts(4)
			o.SplitBelow = tc.below
			oc := h.run(o, s.url())
			r := oc.get(s.url())
			if r.Err != nil {
				t.Fatal(r.Err)
			}
			h.checkFile(r.Name, data)
			if r.SHA256 != testutil.SHA256Hex(data) {
				t.Errorf("sha256 %s, want %s", r.SHA256, testutil.SHA256Hex(data))
			}
			rs := s.ranged()
			if tc.wantSplit && len(rs) < 3 {
				t.Errorf("ranged requests %q, want 3 pieces besides the first", rs)
			}
			if !tc.wantSplit && len(rs) != 0 {
				t.Errorf("ranged requests %q, want none", rs)
			}
			if got := oc.eng.Stats().Bytes.Load(); got != size {
				t.Errorf("Stats.Bytes %d, want %d (every byte counted once)", got, size)
			}
		})
	}
}

// hdrWriter edits the response head before it is written.
type hdrWriter struct {
	http.ResponseWriter
	fix  func(http.Header)
	done bool
}

func (w *hdrWriter) WriteHeader(code int) {
	if !w.done {
		w.done = true
		w.fix(w.Header())
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *hdrWriter) Write(p []byte) (int, error) {
	if !w.done {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(p)
}

func (w *hdrWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Servers that lie or change under the pieces: the file ends up exactly what
// the server serves at the end, never spliced, fetched again over one
// connection where a piece did not match.
func TestSplitLyingServers(t *testing.T) {
	const size = 1 << 20
	for _, tc := range []struct {
		name string
		// setup configures the server; want is what it serves at the end.
		setup   func(s *splitServer) (want []byte)
		restart bool // the file must start over (a plain GET after the pieces)
	}{
		{"content changes mid-download (new ETag, If-Range honoured: 200)", func(s *splitServer) []byte {
			s.change = payload(9, size)
			return s.change
		}, true},
		{"ignores If-Range: the new content as 206", func(s *splitServer) []byte {
			s.change = payload(9, size)
			s.lie = func(s *splitServer, w http.ResponseWriter, r *http.Request, n int) bool {
				r.Header.Del("If-Range")
				return false
			}
			return s.change
		}, true},
		{"lies in Content-Range", func(s *splitServer) []byte {
			s.lie = func(s *splitServer, w http.ResponseWriter, r *http.Request, n int) bool {
				a, b := s.pieceHead(w, r, 1, size)
				w.Write(s.data[a+1 : min(b+2, size)])
				w.Write(make([]byte, max(0, b+2-size)))
				return true
			}
			return s.data
		}, true},
		{"answers a range with 200", func(s *splitServer) []byte {
			s.lie = func(s *splitServer, w http.ResponseWriter, r *http.Request, n int) bool {
				r.Header.Del("Range")
				return false
			}
			return s.data
		}, true},
		{"another total length under the same ETag", func(s *splitServer) []byte {
			longer := append(bytes.Clone(s.data), payload(3, 4096)...)
			s.lie = func(s *splitServer, w http.ResponseWriter, r *http.Request, n int) bool {
				w.Header().Set("ETag", s.etag)
				http.ServeContent(w, r, "f.bin", s.lastMod, bytes.NewReader(longer))
				return true
			}
			return s.data
		}, true},
		{"a Content-Encoding on a piece", func(s *splitServer) []byte {
			s.lie = func(s *splitServer, w http.ResponseWriter, r *http.Request, n int) bool {
				w.Header().Set("ETag", s.etag)
				w.Header().Set("Content-Encoding", "gzip")
				http.ServeContent(w, r, "f.bin", s.lastMod, bytes.NewReader(s.data))
				return true
			}
			return s.data
		}, true},
		{"drops a piece's connection mid-body", func(s *splitServer) []byte {
			s.lie = func(s *splitServer, w http.ResponseWriter, r *http.Request, n int) bool {
				if n != 1 {
					return false
				}
				a, b := s.pieceHead(w, r, 0, size)
				w.Write(s.data[a : a+(b-a)/2])
				w.(*countWriter).ResponseWriter.(http.Flusher).Flush()
				panic(http.ErrAbortHandler) // the connection is cut
			}
			return s.data
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSplitServer(t, payload(1, size))
			s.holdPlain = true
			want := tc.setup(s)
			h := newHarness(t)
			o := splitOpts(4)
			if !tc.restart {
				// Two pieces, and none stolen from (no rest is ever twice
				// 300K): the dropped one is asked again by its connection.
				o.Split, o.MinSplitSize = 2, 300<<10
			}
			r := h.run(o, s.url()).get(s.url())
			if r.Err != nil {
				t.Fatalf("%v (requests %q)", r.Err, s.reqs)
			}
			h.checkFile(r.Name, want)
			if r.SHA256 != testutil.SHA256Hex(want) {
				t.Errorf("sha256 %s, want %s", r.SHA256, testutil.SHA256Hex(want))
			}
			s.mu.Lock()
			reqs := slicesClone(s.reqs)
			s.mu.Unlock()
			plain := 0
			for _, q := range reqs {
				if q == "" {
					plain++
				}
			}
			if tc.restart && plain != 2 {
				t.Errorf("%d plain requests, want 2 (the first, and the start over): %q", plain, reqs)
			}
			if !tc.restart {
				if plain != 1 {
					t.Errorf("%d plain requests, want 1: %q", plain, reqs)
				}
				// The dropped piece was asked again from where it got to.
				var a, b int
				fmt.Sscanf(s.ranged()[0], "bytes=%d-%d", &a, &b)
				again := fmt.Sprintf("bytes=%d-%d", a+(b-a)/2, b)
				found := false
				for _, q := range s.ranged() {
					found = found || q == again
				}
				if !found {
					t.Errorf("no request %q after the drop: %q", again, s.ranged())
				}
			}
			h.checkNoPartFiles()
		})
	}
}

func slicesClone(s []string) []string { return append([]string(nil), s...) }

// recorded reads the ranges a staging file's v2 record lists as durable.
func recorded(t *testing.T, part string) (ranges [][2]int64, total int64) {
	t.Helper()
	buf := make([]byte, 4096)
	n, err := unix.Getxattr(part, "user.haul.resume", buf)
	if err != nil {
		t.Fatalf("%s: no resume record: %v", part, err)
	}
	f := strings.SplitN(string(buf[:n]), " ", 4)
	if len(f) != 4 || f[0] != "v2" {
		t.Fatalf("resume record %q, want v2", buf[:n])
	}
	total, _ = strconv.ParseInt(f[1], 10, 64)
	if f[2] == "-" {
		return nil, total
	}
	for _, p := range strings.Split(f[2], ",") {
		var a, b int64
		fmt.Sscanf(p, "%d-%d", &a, &b)
		ranges = append(ranges, [2]int64{a, b})
	}
	return ranges, total
}

// A split download interrupted (as by Ctrl-C) keeps the ranges written; the
// next run asks only for the missing ones, and the file is right.
func TestSplitResume(t *testing.T) {
	const size = 4 << 20
	data := payload(4, size)
	s := newSplitServer(t, data)
	h := newHarness(t)
	o := splitOpts(4)
	o.LimitRate = 2 << 20 // the interruption lands mid-transfer
	ctx, cancel := context.WithCancel(context.Background())
	oc, wait := h.start(ctx, o, s.url())
	testutil.WaitFor(t, "a third of the file", func() bool { return oc.eng.Stats().Bytes.Load() >= size/3 })
	cancel()
	wait()
	if got := len(s.ranged()); got < 3 {
		t.Fatalf("%d ranged requests before the interruption, want 3: not split", got)
	}
	parts, _ := filepath.Glob(filepath.Join(h.dir, "*", "f.bin"+sink.PartSuffix))
	if len(parts) != 1 {
		t.Fatalf("staging files %q", parts)
	}
	kept, total := recorded(t, parts[0])
	if total != size || len(kept) == 0 {
		t.Fatalf("recorded %v of %d", kept, total)
	}
	have := int64(0)
	for _, k := range kept {
		have += k[1] - k[0]
	}
	t.Logf("kept %v (%d of %d bytes)", kept, have, size)
	if p := h.run(download.Options{DryRun: true}, s.url()).get(s.url()); p.Plan != "resume" {
		t.Errorf("--dry-run plans %q (%s), want resume", p.Plan, p.Reason)
	}
	before := len(s.reqs)

	r := h.run(splitOpts(4), s.url()).get(s.url())
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	h.checkFile(r.Name, data)
	if r.SHA256 != testutil.SHA256Hex(data) {
		t.Errorf("sha256 %s, want %s", r.SHA256, testutil.SHA256Hex(data))
	}
	// Every request of the second run starts at a byte not kept, and every
	// closed range lies within the bytes not kept.
	inKept := func(x int64) bool {
		for _, k := range kept {
			if x >= k[0] && x < k[1] {
				return true
			}
		}
		return false
	}
	s.mu.Lock()
	second := slicesClone(s.reqs[before:])
	s.mu.Unlock()
	for _, q := range second {
		var a, b int64
		if q == "" {
			t.Errorf("the second run asked for the whole file")
			continue
		}
		if n, _ := fmt.Sscanf(q, "bytes=%d-%d", &a, &b); n == 2 {
			for x := a; x <= b; x += 4096 {
				if inKept(x) {
					t.Errorf("%s asks again for byte %d, kept", q, x)
					break
				}
			}
		} else if inKept(a) {
			t.Errorf("%s starts in a kept range", q)
		}
	}
	t.Logf("second run: %q", second)
}

// Over HTTPS to an HTTP/2 server, the first request is an HTTP/2 stream and
// every piece has a TCP and TLS connection of its own (HTTP/1.1), all in
// flight at once.
func TestSplitHTTP2Connections(t *testing.T) {
	data := payload(5, 1<<20)
	s, c := newSplitServerH2(t, data)
	s.barrier = 4
	h := newHarness(t)
	h.client = c
	r := h.run(splitOpts(4), s.url()).get(s.url())
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	h.checkFile(r.Name, data)
	if s.maxInflight < 4 {
		t.Errorf("%d requests in flight at most, want 4", s.maxInflight)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	for i, q := range s.reqs {
		proto, addr, _ := strings.Cut(s.conns[i], " ")
		switch {
		case q == "" && proto != "HTTP/2.0":
			t.Errorf("first request over %s, want HTTP/2.0", proto)
		case q != "" && proto != "HTTP/1.1":
			t.Errorf("piece %s over %s, want HTTP/1.1 (a connection of its own)", q, proto)
		}
		seen[addr] = true
	}
	if len(seen) < 4 {
		t.Errorf("%d connections for %d requests %q, want at least 4", len(seen), len(s.reqs), s.conns)
	}
}

// --per-host caps a split file's connections too: with --per-host 2 the file
// gets one piece besides the first, and never more than 2 requests are open
// at once (counted at the client, from Do to the body's Close: the server may
// still be writing into a connection the client closed).
func TestSplitPerHost(t *testing.T) {
	data := payload(6, 1<<20)
	s := newSplitServer(t, data)
	// Each response waits a while for a third request in flight: a third
	// connection, if made, would be open with the others.
	s.barrier, s.barrierWait = 3, 200*time.Millisecond
	h := newHarness(t)
	cc := &countingClient{Client: h.client}
	h.client = cc
	o := splitOpts(4)
	o.PerHost = 2
	r := h.run(o, s.url()).get(s.url())
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	h.checkFile(r.Name, data)
	if m := cc.max.Load(); m != 2 {
		t.Errorf("%d requests open at once, want 2 (--per-host 2)", m)
	}
	if len(s.ranged()) == 0 {
		t.Errorf("not split at all: the free slot was not used")
	}
}

// countingClient counts the requests open, from Do to the body's Close.
type countingClient struct {
	httpclient.Client
	open, max atomic.Int32
}

func (c *countingClient) Do(req *http.Request) (*http.Response, error) {
	n := c.open.Add(1)
	for m := c.max.Load(); n > m && !c.max.CompareAndSwap(m, n); m = c.max.Load() {
	}
	resp, err := c.Client.Do(req)
	if err != nil {
		c.open.Add(-1)
		return nil, err
	}
	resp.Body = &closeCounter{ReadCloser: resp.Body, c: c}
	return resp, nil
}

type closeCounter struct {
	io.ReadCloser
	c    *countingClient
	once sync.Once
}

func (b *closeCounter) Close() error {
	b.once.Do(func() { b.c.open.Add(-1) })
	return b.ReadCloser.Close()
}

// --compress never splits (its encoder needs the bytes in order): one
// request, and the stored file decodes to the body.
func TestSplitNotCompressed(t *testing.T) {
	data := payload(7, 1<<20)
	s := newSplitServer(t, data)
	h := newHarness(t)
	cs, err := sink.NewCompressed(h.sink, "zstd", 0)
	if err != nil {
		t.Fatal(err)
	}
	o := fastOptions(splitOpts(4))
	eng := download.New(h.client, cs, o)
	if err := eng.Run(context.Background(), input.NewScanner(strings.NewReader(s.url()))); err != nil {
		t.Fatal(err)
	}
	if len(s.reqs) != 1 || s.reqs[0] != "" {
		t.Errorf("requests %q, want one plain GET", s.reqs)
	}
	if eng.Stats().Bytes.Load() != int64(len(data)) {
		t.Errorf("%d bytes counted, want %d", eng.Stats().Bytes.Load(), len(data))
	}
}

// A file behind a redirect to the same origin: the pieces ask for where it
// led, without the hop.
func TestSplitRedirect(t *testing.T) {
	data := payload(8, 1<<20)
	s := newSplitServer(t, data)
	s.holdPlain = true
	h := newHarness(t)
	u := s.URL + "/r"
	r := h.run(splitOpts(4), u).get(u)
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	h.checkFile(r.Name, data)
	if len(s.ranged()) == 0 {
		t.Fatalf("not split: %q", s.reqs)
	}
	if len(s.redirects) != 1 {
		t.Errorf("requests for the redirecting URL: %q, want the first only", s.redirects)
	}
}

// --timeout applies to each piece: a piece that stalls, or the first
// response stalling after its first bytes, is asked again from where it got
// to, while the others go on; the file is right, fetched once.
func TestSplitStalls(t *testing.T) {
	const size = 1 << 20
	for _, tc := range []struct {
		name  string
		setup func(s *splitServer)
	}{
		{"a piece stalls", func(s *splitServer) {
			s.holdPlain = true
			s.lie = func(s *splitServer, w http.ResponseWriter, r *http.Request, n int) bool {
				if n != 1 {
					return false
				}
				a, _ := s.pieceHead(w, r, 0, size)
				w.Write(s.data[a : a+1000])
				<-r.Context().Done() // until the client gives up
				return true
			}
		}},
		{"the first response stalls", func(s *splitServer) { s.stallPlain = true }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := payload(11, size)
			s := newSplitServer(t, data)
			tc.setup(s)
			h := newHarness(t)
			o := splitOpts(2)
			o.MinSplitSize = 300 << 10  // two pieces, no steals
			o.Timeout = 5 * time.Second // a stall, not a loaded machine
			oc := h.run(o, s.url())
			r := oc.get(s.url())
			if r.Err != nil {
				t.Fatalf("%v (requests %q)", r.Err, s.reqs)
			}
			h.checkFile(r.Name, data)
			s.mu.Lock()
			reqs := slicesClone(s.reqs)
			s.mu.Unlock()
			if len(reqs) != 3 || reqs[0] != "" {
				t.Errorf("requests %q, want the first, a piece, and the stalled one again", reqs)
			}
			if r.Attempts != 1 {
				t.Errorf("%d attempts: a piece's stall is the piece's", r.Attempts)
			}
			if got := oc.eng.Stats().Bytes.Load(); got != size {
				t.Errorf("Stats.Bytes %d, want %d (every piece counted, none twice)", got, size)
			}
		})
	}
}
