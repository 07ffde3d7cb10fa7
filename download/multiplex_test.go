package download_test

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/haul/haul/download"
	"github.com/haul/haul/download/httpclient"
	"github.com/haul/haul/download/naming"
	"github.com/haul/haul/internal/testutil"
)

// barrier is a handler that holds requests until k are in flight at once
// (then lets every request through). With firsts, the first request of each
// connection is answered at once: those sent before the engine knows that
// the host speaks HTTP/2 take a whole job each until they end, and each
// opens a connection of its own. It records the most requests in
// flight, in all and on one connection, and the connections opened. A request
// waits at most wait: timedOut says one did (k was never reached). A barrier
// that k must pass waits testutil.Patience: a loaded machine may be slow to
// get there.
type barrier struct {
	k      int
	firsts bool
	wait   time.Duration
	body   []byte

	mu          sync.Mutex
	conn        map[string]bool // connections seen
	inflight    int
	maxInflight int
	perConn     map[string]int
	maxPerConn  int
	release     chan struct{}
	released    bool
	timedOut    atomic.Bool
	conns       atomic.Int64
}

func newBarrier(k int, firsts bool, wait time.Duration) *barrier {
	return &barrier{k: k, firsts: firsts, wait: wait, body: testutil.Payload(9, 4096), perConn: map[string]int{},
		conn: map[string]bool{}, release: make(chan struct{})}
}

func (b *barrier) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	hold := !b.firsts || b.conn[r.RemoteAddr]
	b.conn[r.RemoteAddr] = true
	b.inflight++
	b.perConn[r.RemoteAddr]++
	b.maxInflight = max(b.maxInflight, b.inflight)
	b.maxPerConn = max(b.maxPerConn, b.perConn[r.RemoteAddr])
	if b.inflight >= b.k && !b.released {
		b.released = true
		close(b.release)
	}
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		b.inflight--
		b.perConn[r.RemoteAddr]--
		b.mu.Unlock()
	}()
	if hold {
		select {
		case <-b.release:
		case <-time.After(b.wait):
			b.timedOut.Store(true)
		}
	}
	w.Write(b.body)
}

func (b *barrier) counts() (maxInflight, maxPerConn int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.maxInflight, b.maxPerConn
}

// tlsServer starts an HTTPS server on addr ("" for 127.0.0.1:0) with handler,
// over HTTP/2 if h2 (with the server's stream limit maxStreams, 0: Go's),
// counting the connections it accepts in b.conns.
func tlsServer(t *testing.T, b *barrier, h2 bool, maxStreams int) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(b)
	srv.EnableHTTP2 = h2
	if !h2 {
		srv.Config.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
	}
	if maxStreams > 0 {
		srv.Config.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: maxStreams}
	}
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			b.conns.Add(1)
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// multiplexRun runs the list of n files of srv through the engine and the
// client made with jobs, perHost and streams, and checks every file came.
func multiplexRun(t *testing.T, urls []string, o download.Options, http11 bool) {
	t.Helper()
	multiplexRunWith(t, urls, o, httpclient.Options{HTTP11: http11})
}

// multiplexRunWith is multiplexRun with the client's options co (Jobs,
// PerHost and Streams from o).
func multiplexRunWith(t *testing.T, urls []string, o download.Options, co httpclient.Options) {
	t.Helper()
	h := newHarness(t)
	co.Jobs, co.PerHost, co.Streams = o.Jobs, o.PerHost, o.Streams
	co.Insecure, co.ConnectTimeout = true, patientTimeout
	c, err := httpclient.New(co)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	h.client = c
	o.Layout = naming.LayoutHash
	oc := h.run(o, urls...)
	if st := oc.eng.Stats(); st.OK.Load() != int64(len(urls)) {
		for _, r := range oc.results {
			if r.Err != nil {
				t.Log(r.Entry.URL, r.Err)
				break
			}
		}
		t.Fatalf("%d ok of %d", st.OK.Load(), len(urls))
	}
}

func fileURLs(base string, n int) []string {
	var urls []string
	for i := range n {
		urls = append(urls, fmt.Sprintf("%s/f%d", base, i))
	}
	return urls
}

// Over HTTP/2, -j 2 --streams 8 keeps 16 files in flight (more than -j), on
// at most 2 connections, at most 8 on each.
func TestEngineHTTP2Multiplexes(t *testing.T) {
	t.Parallel()
	b := newBarrier(16, true, testutil.Patience(t))
	srv := tlsServer(t, b, true, 0)
	multiplexRun(t, fileURLs(srv.URL, 40), download.Options{Jobs: 2, Streams: 8}, false)
	most, perConn := b.counts()
	t.Logf("%d in flight at most, %d on one connection, %d connections", most, perConn, b.conns.Load())
	if b.timedOut.Load() {
		t.Errorf("16 requests were never in flight at once (at most %d) over HTTP/2 at -j 2 --streams 8", most)
	}
	if n := b.conns.Load(); n > 2 {
		t.Errorf("%d connections, want at most 2 (-j 2)", n)
	}
	if perConn > 8 || most > 16 {
		t.Errorf("%d requests in flight on one connection, %d in all; want at most 8 (--streams) and 16", perConn, most)
	}
}

// The engine learns that a host speaks HTTP/2 as the first connection to it
// is made, before any response, through either client: at -j 2 --streams 8,
// a server that answers nothing until 16 requests are in flight gets them.
// (Learnt from a response, the first 2 requests would hold a whole job each
// until the server gave up waiting.)
func TestEngineHTTP2LearnedAtConnection(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		netHTTP bool
	}{{"haul", false}, {"net/http", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newBarrier(16, false, 15*time.Second)
			srv := tlsServer(t, b, true, 0)
			multiplexRunWith(t, fileURLs(srv.URL, 32), download.Options{Jobs: 2, Streams: 8}, httpclient.Options{NetHTTP: tc.netHTTP})
			if most, _ := b.counts(); b.timedOut.Load() {
				t.Errorf("16 requests were never in flight at once (at most %d) while none was answered", most)
			}
		})
	}
}

// Without HTTP/2 (a server that offers only HTTP/1.1, or --http1.1, which
// sets Streams to 1), -j still bounds the files in flight.
func TestEngineHTTP1JobsBoundFiles(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		h2      bool
		http11  bool
		streams int
	}{
		{"server without HTTP/2", false, false, 8},
		{"--http1.1", true, true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// k 3 is never reached when -j 2 holds: each request waits 100 ms
			// for it, so that requests overlap.
			b := newBarrier(3, false, 100*time.Millisecond)
			srv := tlsServer(t, b, tc.h2, 0)
			multiplexRun(t, fileURLs(srv.URL, 10), download.Options{Jobs: 2, Streams: tc.streams}, tc.http11)
			most, _ := b.counts()
			if most > 2 {
				t.Errorf("%d requests in flight at once, want at most 2 (-j 2 over HTTP/1.1)", most)
			}
			if n := b.conns.Load(); n > 2 {
				t.Errorf("%d connections, want at most 2", n)
			}
		})
	}
}

// --per-host over HTTP/2 caps connections to the host, and its requests in
// flight at per-host*streams.
func TestEngineHTTP2PerHost(t *testing.T) {
	t.Parallel()
	b := newBarrier(8, true, testutil.Patience(t))
	srv := tlsServer(t, b, true, 0)
	multiplexRun(t, fileURLs(srv.URL, 30), download.Options{Jobs: 8, PerHost: 2, Streams: 4}, false)
	most, perConn := b.counts()
	t.Logf("%d in flight at most, %d on one connection, %d connections", most, perConn, b.conns.Load())
	if b.timedOut.Load() {
		t.Errorf("8 requests were never in flight at once (at most %d) at --per-host 2 --streams 4", most)
	}
	if most > 8 || perConn > 4 {
		t.Errorf("%d requests in flight, %d on one connection; want at most 8 (--per-host 2 x --streams 4) and 4", most, perConn)
	}
	if n := b.conns.Load(); n > 2 {
		t.Errorf("%d connections, want at most 2 (--per-host 2)", n)
	}
}

// A server whose SETTINGS_MAX_CONCURRENT_STREAMS is below --streams wins:
// nothing fails, no connection carries more, and the host gets no more
// connections than -j. (net/http's client, before h2, opened another
// connection when one was full: 5-6 here.)
func TestEngineHTTP2ServerStreamLimit(t *testing.T) {
	t.Parallel()
	b := newBarrier(8, true, testutil.Patience(t)) // 8 in flight: 2 connections of 4 at least
	srv := tlsServer(t, b, true, 4)
	multiplexRun(t, fileURLs(srv.URL, 40), download.Options{Jobs: 2, Streams: 8}, false)
	most, perConn := b.counts()
	t.Logf("%d in flight at most, %d on one connection, %d connections", most, perConn, b.conns.Load())
	if b.timedOut.Load() {
		t.Errorf("8 requests were never in flight at once (at most %d)", most)
	}
	if perConn > 4 {
		t.Errorf("%d requests in flight on one connection, the server allows 4", perConn)
	}
	if n := b.conns.Load(); n > 2 {
		t.Errorf("%d connections, want at most 2 (-j 2)", n)
	}
}

// A list over many HTTP/2 hosts opens no more connections to each than
// HTTP/1.1 would (-j), however many streams are in flight.
func TestEngineHTTP2ManyHosts(t *testing.T) {
	t.Parallel()
	const hosts, files = 6, 50
	var urls []string
	bs := make([]*barrier, hosts)
	for i := range bs {
		// No hold: the many hosts' requests just flow.
		bs[i] = newBarrier(1<<30, true, 0)
		srv := tlsServer(t, bs[i], true, 0)
		urls = append(urls, fileURLs(srv.URL, files)...)
	}
	// Interleaved, as a list over many hosts usually is.
	var list []string
	for j := range files {
		for i := range hosts {
			list = append(list, urls[i*files+j])
		}
	}
	multiplexRun(t, list, download.Options{Jobs: 3, Streams: 4}, false)
	for i, b := range bs {
		_, perConn := b.counts()
		if n := b.conns.Load(); n > 3 || perConn > 4 {
			t.Errorf("host %d: %d connections, %d requests on one; want at most 3 (-j 3) and 4 (--streams)", i, n, perConn)
		}
	}
}

// MaxStreams caps the files in flight over HTTP/2 below -j x --streams (but
// for the first entries, sent before the host is known, up to -j more).
func TestEngineHTTP2MaxStreams(t *testing.T) {
	t.Parallel()
	// k 7 is never reached when the cap holds: each request waits 100 ms
	// for it, so that requests overlap.
	b := newBarrier(7, true, 100*time.Millisecond)
	srv := tlsServer(t, b, true, 0)
	multiplexRun(t, fileURLs(srv.URL, 30), download.Options{Jobs: 2, Streams: 8, MaxStreams: 4}, false)
	most, _ := b.counts()
	t.Logf("%d in flight at most", most)
	if most > 4+2 {
		t.Errorf("%d requests in flight at once, want at most 6 (MaxStreams 4, -j 2)", most)
	}
}

// A server whose stream limit is below --streams gets no storm of
// connections: no more than -j. (net/http dialed one for
// every request that found the connection full and kept the extra ones open,
// unused, for IdleConnTimeout: nginx at http2_max_concurrent_streams 4 had
// 295 connections open at once from -j 4.)
func TestEngineHTTP2ServerStreamLimitDials(t *testing.T) {
	t.Parallel()
	var open, most atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond) // requests overlap, connections fill
		w.Write(testutil.Payload(9, 512))
	}))
	srv.EnableHTTP2 = true
	srv.Config.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: 2}
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			n := open.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	multiplexRun(t, fileURLs(srv.URL, 300), download.Options{Jobs: 4, Streams: 32}, false)
	t.Logf("%d connections open at most", most.Load())
	// h2 holds a host to -j connections whatever the server's limit (net/http
	// needed up to 64 here: 4 transports x 32 requests over streams of 2); a
	// storm opens one per waiting request.
	if n := most.Load(); n > 4 {
		t.Errorf("%d connections open at once at -j 4, server limit of 2 streams; want at most 4", n)
	}
}
