package h2

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// content is the body served for a path: distinct per path, of a length
// that varies with it (0 to about 100 KiB), so mixed-up streams show.
func content(path string) []byte {
	sum := sha256.Sum256([]byte(path))
	n := int(sum[0])<<9 | int(sum[1])
	var b bytes.Buffer
	for b.Len() < n {
		b.Write(sum[:])
		sum = sha256.Sum256(sum[:])
	}
	return b.Bytes()[:n]
}

// concurrency counts the handlers running at once, in all and per connection.
type concurrency struct {
	mu            sync.Mutex
	now, most     int
	perConn       map[string]int
	mostOnOneConn int
	sleep         time.Duration
}

func (cc *concurrency) handler() http.Handler {
	cc.perConn = map[string]int{}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cc.mu.Lock()
		cc.now++
		cc.most = max(cc.most, cc.now)
		cc.perConn[r.RemoteAddr]++
		cc.mostOnOneConn = max(cc.mostOnOneConn, cc.perConn[r.RemoteAddr])
		cc.mu.Unlock()
		time.Sleep(cc.sleep)
		cc.mu.Lock()
		cc.now--
		cc.perConn[r.RemoteAddr]--
		cc.mu.Unlock()
		if r.Proto != "HTTP/2.0" {
			http.Error(w, "not HTTP/2", 500)
			return
		}
		b := content(r.URL.Path)
		w.Header().Set("Content-Length", fmt.Sprint(len(b)))
		w.Write(b)
	})
}

// Many concurrent GETs to a real HTTP/2 server (net/http's): every body is
// its own, the connections stay within MaxConnsPerHost and the streams on
// each within Streams.
func TestManyRequests(t *testing.T) {
	t.Parallel()
	cc := &concurrency{sleep: time.Millisecond}
	srv, c, conns := tlsServer(t, cc.handler(), false, 0, Options{Streams: 8, MaxConnsPerHost: 3})
	var wg sync.WaitGroup
	errs := make(chan error, 300)
	for i := range 300 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			path := fmt.Sprintf("/f%d", i)
			status, body, err := get(context.Background(), c, srv.URL+path)
			if err == nil && (status != 200 || !bytes.Equal(body, content(path))) {
				err = fmt.Errorf("%s: status %d, %d bytes, want 200 and its own %d", path, status, len(body), len(content(path)))
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d connections, %d in flight at most, %d on one connection", conns.Load(), cc.most, cc.mostOnOneConn)
	if n := conns.Load(); n > 3 {
		t.Errorf("%d connections, want at most 3", n)
	}
	if cc.mostOnOneConn > 8 {
		t.Errorf("%d streams on one connection, want at most 8", cc.mostOnOneConn)
	}
	if cc.most < 9 {
		t.Errorf("at most %d requests in flight: more than one connection never carried them", cc.most)
	}
}

// A server whose SETTINGS_MAX_CONCURRENT_STREAMS is below Streams wins: all
// requests succeed, no more than its limit on a connection.
func TestServerStreamLimit(t *testing.T) {
	t.Parallel()
	cc := &concurrency{sleep: 2 * time.Millisecond}
	srv, c, conns := tlsServer(t, cc.handler(), false, 2, Options{Streams: 16, MaxConnsPerHost: 2})
	var wg sync.WaitGroup
	var failed atomic.Int32
	for i := range 60 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			path := fmt.Sprintf("/g%d", i)
			if _, body, err := get(context.Background(), c, srv.URL+path); err != nil || !bytes.Equal(body, content(path)) {
				t.Log(path, err)
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Errorf("%d of 60 failed", failed.Load())
	}
	if n := conns.Load(); n > 2 {
		t.Errorf("%d connections, want at most 2", n)
	}
	// net/http's server refuses streams over its limit before the client
	// has its SETTINGS; once they are known, a connection carries 2.
	if cc.mostOnOneConn > 2 {
		t.Errorf("%d handlers at once on one connection, want at most 2", cc.mostOnOneConn)
	}
}

// A server that picks HTTP/1.1 in ALPN: the connection handed to HTTP1's
// Adopt, each request to HTTP1's RoundTrip, and the host remembered (no
// second connection); without HTTP1, ErrNotOffered.
func TestNotOffered(t *testing.T) {
	t.Parallel()
	one := &http1Stub{t: t}
	srv, c, conns := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), true, 0,
		Options{HTTP1: one})
	for range 3 {
		_, _, err := get(context.Background(), c, srv.URL+"/x")
		if !errors.Is(err, errHTTP1Stub) {
			t.Fatalf("err %v, want HTTP1's", err)
		}
	}
	if one.adopted.Load() != 1 || one.sent.Load() != 3 || conns.Load() != 1 {
		t.Errorf("%d connections handed over, %d requests, %d connections made; want 1, 3 and 1",
			one.adopted.Load(), one.sent.Load(), conns.Load())
	}
	srv, c, _ = tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), true, 0, Options{})
	if _, _, err := get(context.Background(), c, srv.URL+"/x"); !errors.Is(err, ErrNotOffered) || !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("err %v, want ErrNotOffered", err)
	}
}

var errHTTP1Stub = errors.New("sent over HTTP/1.1")

// http1Stub is the HTTP1 of TestNotOffered: it closes the connections it is
// handed and fails the requests.
type http1Stub struct {
	t             *testing.T
	adopted, sent atomic.Int32
}

func (h *http1Stub) Adopt(host string, tc *tls.Conn) {
	h.adopted.Add(1)
	if tc.ConnectionState().NegotiatedProtocol == "h2" {
		h.t.Error("handed an h2 connection")
	}
	tc.Close()
}

func (h *http1Stub) RoundTrip(*http.Request) (*http.Response, error) {
	h.sent.Add(1)
	return nil, errHTTP1Stub
}

// A body shorter or longer than its Content-Length fails, never ends in
// io.EOF; without a Content-Length, END_STREAM ends the body.
func TestContentLength(t *testing.T) {
	t.Parallel()
	rs := newRawServer(t, nil, func(sc *serverConn) {
		for {
			r, ok := sc.next()
			if !ok {
				return
			}
			switch r.path {
			case "/short":
				sc.headers(r.id, false, ":status", "200", "content-length", "10")
				sc.data(r.id, []byte("12345"), true)
			case "/long":
				sc.headers(r.id, false, ":status", "200", "content-length", "5")
				sc.data(r.id, []byte("1234567890"), true)
			case "/none":
				sc.headers(r.id, false, ":status", "200")
				sc.data(r.id, []byte("12345"), false)
				sc.data(r.id, []byte("67890"), true)
			case "/empty-end":
				sc.headers(r.id, true, ":status", "200", "content-length", "3")
			case "/two":
				sc.headers(r.id, false, ":status", "200", "content-length", "5", "content-length", "6")
				sc.data(r.id, []byte("12345"), true)
			case "/304":
				sc.headers(r.id, true, ":status", "304", "content-length", "100")
			}
		}
	})
	c := rawClient(t, rs, Options{})
	for _, tc := range []struct {
		path, body string
		ok         bool
	}{
		{"/short", "", false}, {"/long", "", false}, {"/none", "1234567890", true},
		{"/empty-end", "", false}, {"/two", "", false}, {"/304", "", true},
	} {
		_, body, err := get(context.Background(), c, rs.url(tc.path))
		if tc.ok != (err == nil) || tc.ok && string(body) != tc.body {
			t.Errorf("%s: %q, %v; want ok %v", tc.path, body, err, tc.ok)
		}
	}
	// The connection served them all: stream errors do not end it.
	if n := rs.conns.Load(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

// Interim responses are skipped, trailers end the body, padding is not body.
func TestInterimTrailersPadding(t *testing.T) {
	t.Parallel()
	rs := newRawServer(t, nil, func(sc *serverConn) {
		r, ok := sc.next()
		if !ok {
			return
		}
		sc.headers(r.id, false, ":status", "103", "link", "</a>; rel=preload")
		sc.headers(r.id, false, ":status", "200", "content-length", "8")
		sc.write(func(fr *http2.Framer) error {
			return fr.WriteDataPadded(r.id, false, []byte("abcd"), make([]byte, 100))
		})
		sc.data(r.id, []byte("efgh"), false)
		sc.headers(r.id, true, "x-checksum", "1")
		sc.next()
	})
	c := rawClient(t, rs, Options{})
	status, body, err := get(context.Background(), c, rs.url("/x"))
	if err != nil || status != 200 || string(body) != "abcdefgh" {
		t.Errorf("%d %q %v, want 200 abcdefgh", status, body, err)
	}
}

// A stream refused (REFUSED_STREAM) or left out by a GOAWAY is sent again,
// on another connection for the GOAWAY.
func TestRefusedAndGoAwayRetried(t *testing.T) {
	t.Parallel()
	var first atomic.Bool
	rs := newRawServer(t, nil, func(sc *serverConn) {
		if first.CompareAndSwap(false, true) {
			r, ok := sc.next()
			if !ok {
				return
			}
			sc.write(func(fr *http2.Framer) error { return fr.WriteRSTStream(r.id, http2.ErrCodeRefusedStream) })
			r, ok = sc.next()
			if !ok {
				return
			}
			sc.write(func(fr *http2.Framer) error { return fr.WriteGoAway(r.id-2, http2.ErrCodeNo, nil) })
			time.Sleep(50 * time.Millisecond)
			return
		}
		for {
			r, ok := sc.next()
			if !ok {
				return
			}
			sc.respond(r, content(r.path))
		}
	})
	c := rawClient(t, rs, Options{MaxConnsPerHost: 1})
	_, body, err := get(context.Background(), c, rs.url("/r"))
	if err != nil || !bytes.Equal(body, content("/r")) {
		t.Fatalf("%d bytes, %v", len(body), err)
	}
	if n := rs.conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2 (the second after the GOAWAY)", n)
	}
}

// The server cannot send past the windows given: a stream that does fails
// (the memory a slow reader lets pile up is bounded), the connection goes on.
func TestStreamWindowEnforced(t *testing.T) {
	t.Parallel()
	rs := newRawServer(t, nil, func(sc *serverConn) {
		for {
			r, ok := sc.next()
			if !ok {
				return
			}
			if r.path == "/flood" {
				sc.headers(r.id, false, ":status", "200")
				sc.data(r.id, make([]byte, 100<<10), true) // window is 64 KiB
				continue
			}
			sc.respond(r, []byte("after"))
		}
	})
	c := rawClient(t, rs, Options{StreamWindow: 64 << 10, ConnWindow: 1 << 20})
	req, _ := http.NewRequest(http.MethodGet, rs.url("/flood"), nil)
	resp, err := c.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // nothing read: the server fills the window
	_, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !contains(err, "flow-control") {
		t.Errorf("read %v, want a flow-control error", err)
	}
	if _, body, err := get(context.Background(), c, rs.url("/after")); err != nil || string(body) != "after" {
		t.Errorf("after: %v", err)
	}
}

// The connection's window is given back as bodies are read, and for the
// bytes of bodies closed unread: a connection carries far more than its
// window.
func TestConnWindowGivenBack(t *testing.T) {
	t.Parallel()
	big := bytes.Repeat([]byte("0123456789abcdef"), 16<<10) // 256 KiB
	rs := newRawServer(t, nil, func(sc *serverConn) {
		for {
			r, ok := sc.next()
			if !ok {
				return
			}
			sc.respond(r, big)
		}
	})
	c := rawClient(t, rs, Options{StreamWindow: 128 << 10, ConnWindow: 128 << 10, MaxConnsPerHost: 1, Streams: 2})
	for i := range 20 { // 5 MiB through a 128 KiB window
		req, _ := http.NewRequest(http.MethodGet, rs.url("/b"), nil)
		resp, err := c.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			body, err := io.ReadAll(resp.Body)
			if err != nil || !bytes.Equal(body, big) {
				t.Fatalf("%d: %d bytes, %v", i, len(body), err)
			}
		} else {
			time.Sleep(5 * time.Millisecond)
		}
		resp.Body.Close()
	}
	if n := rs.conns.Load(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

// Closing a body early resets its stream and gives its slot back: with one
// stream and one connection, the next request goes through.
func TestCloseEarlyResets(t *testing.T) {
	t.Parallel()
	gotRST := make(chan http2.ErrCode, 1)
	rs := newRawServer(t, nil, func(sc *serverConn) {
		r, ok := sc.next()
		if !ok {
			return
		}
		sc.headers(r.id, false, ":status", "200", "content-length", "1000000")
		sc.data(r.id, make([]byte, 1000), false)
		select {
		case code := <-sc.rsts:
			gotRST <- code
		case <-time.After(5 * time.Second):
		}
		r, ok = sc.next()
		if ok {
			sc.respond(r, []byte("next"))
		}
		sc.next()
	})
	c := rawClient(t, rs, Options{MaxConnsPerHost: 1, Streams: 1})
	req, _ := http.NewRequest(http.MethodGet, rs.url("/big"), nil)
	resp, err := c.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadFull(resp.Body, make([]byte, 10))
	resp.Body.Close()
	if _, err := resp.Body.Read(make([]byte, 1)); err == nil {
		t.Error("Read after Close succeeded")
	}
	if code := <-gotRST; code != http2.ErrCodeCancel {
		t.Errorf("server got RST_STREAM %v, want CANCEL", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, body, err := get(ctx, c, rs.url("/next")); err != nil || string(body) != "next" {
		t.Errorf("next: %q %v", body, err)
	}
}

// A request whose context ends while it waits for its head, or for its
// body, returns at once with the context's error and frees its slot.
func TestCanceled(t *testing.T) {
	t.Parallel()
	rs := newRawServer(t, nil, func(sc *serverConn) {
		for {
			r, ok := sc.next()
			if !ok {
				return
			}
			switch r.path {
			case "/stall-head":
			case "/stall-body":
				sc.headers(r.id, false, ":status", "200")
			default:
				sc.respond(r, []byte("ok"))
			}
		}
	})
	c := rawClient(t, rs, Options{MaxConnsPerHost: 1, Streams: 1})
	for _, path := range []string{"/stall-head", "/stall-body"} {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		_, _, err := get(ctx, c, rs.url(path))
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: %v, want the deadline", path, err)
		}
		ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
		_, body, err := get(ctx, c, rs.url("/ok"))
		cancel()
		if err != nil || string(body) != "ok" {
			t.Errorf("after %s: %q %v", path, body, err)
		}
	}
}

// A host that refuses connections fails its waiting requests together, off
// one dial each connection.
func TestDeadHost(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var dials atomic.Int32
	c := New(Options{MaxConnsPerHost: 2, Streams: 8, DialContext: func(ctx context.Context, n, a string) (net.Conn, error) {
		dials.Add(1)
		time.Sleep(20 * time.Millisecond)
		var d net.Dialer
		return d.DialContext(ctx, n, a)
	}})
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := get(context.Background(), c, "https://"+addr+"/x"); err == nil {
				t.Error("no error from a dead host")
			}
		}()
	}
	wg.Wait()
	if n := dials.Load(); n > 2 {
		t.Errorf("%d dials for 16 requests, want 2 (8 streams each)", n)
	}
}

// A connection the server closes between requests is noticed and replaced:
// the request after it succeeds; and CloseIdleConnections leaves no reader.
func TestServerClosesIdle(t *testing.T) {
	t.Parallel()
	rs := newRawServer(t, nil, func(sc *serverConn) {
		r, ok := sc.next()
		if ok {
			sc.respond(r, []byte("one"))
		}
		time.Sleep(20 * time.Millisecond)
	})
	c := rawClient(t, rs, Options{})
	for i := range 3 {
		if _, body, err := get(context.Background(), c, rs.url("/x")); err != nil || string(body) != "one" {
			t.Fatalf("%d: %q %v", i, body, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.CloseIdleConnections()
	deadline := time.Now().Add(2 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		if !strings.Contains(stacks, "(*conn).readLoop") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a connection's reader is left after CloseIdleConnections")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Idle connections past MaxIdle are closed, least recently used first.
func TestMaxIdle(t *testing.T) {
	t.Parallel()
	var srvs []*rawServer
	for range 3 {
		srvs = append(srvs, newRawServer(t, nil, func(sc *serverConn) {
			for {
				r, ok := sc.next()
				if !ok {
					return
				}
				sc.respond(r, []byte("x"))
			}
		}))
	}
	c := New(Options{MaxIdle: 2})
	c.plain = true
	t.Cleanup(c.CloseIdleConnections)
	for _, rs := range srvs {
		if _, _, err := get(context.Background(), c, rs.url("/x")); err != nil {
			t.Fatal(err)
		}
	}
	c.mu.Lock()
	n := c.idle.n
	oldest := c.idle.head
	c.mu.Unlock()
	if n != 2 || oldest == nil || oldest.h.key != srvs[1].ln.Addr().String() {
		t.Errorf("%d idle, want 2, the oldest to the second server", n)
	}
}

// Requests HTTP/2 cannot carry, or this client does not make.
func TestUnsupported(t *testing.T) {
	t.Parallel()
	c := New(Options{})
	for _, tc := range []struct {
		method, url string
	}{
		{http.MethodPost, "https://127.0.0.1:1/"},
		{http.MethodGet, "http://127.0.0.1:1/"},
		{http.MethodGet, "https://bücher.example/"},
	} {
		req, _ := http.NewRequest(tc.method, tc.url, nil)
		if _, err := c.RoundTrip(req); !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("%s %s: %v, want ErrUnsupported", tc.method, tc.url, err)
		}
	}
}
