package h2

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/net/http2"
)

// Closing a body early resets its stream (CANCEL) and gives its slot back:
// with one stream and one connection, the next request goes through; a Read
// after Close fails.
func TestClosingBodyEarlyResetsStreamAndFreesSlot(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		srv := newTestServer(t, nil, nil)
		c := srv.client(Options{MaxConnsPerHost: 1, Streams: 1})
		rt := startRoundTrip(t, context.Background(), c, srv.url("/big"))
		sc := srv.accept()
		r := sc.wantHeaders()
		sc.headers(r.id, false, 200, "content-length", "1000000")
		sc.data(r.id, false, make([]byte, 1000))
		resp := rt.response()
		io.ReadFull(resp.Body, make([]byte, 10))
		resp.Body.Close()
		if _, err := resp.Body.Read(make([]byte, 1)); err == nil {
			t.Error("Read after Close succeeded")
		}
		sc.wantRST(r.id, http2.ErrCodeCancel)

		rt = startRoundTrip(t, context.Background(), c, srv.url("/next"))
		r = sc.wantHeaders()
		sc.reply(r.id, "next")
		rt.wantBody("next")
		srv.wantNoConn()
	})
}

// A request whose context ends while it waits for its head, or for its
// body, returns at once with the context's error and frees its slot.
func TestCanceledRequestReturnsAndFreesSlot(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		srv := newTestServer(t, nil, func(i int, sc *serverConn) {
			for r := range sc.requests() {
				switch r.path {
				case "/stall-head":
				case "/stall-body":
					sc.headers(r.id, false, 200)
				default:
					sc.respond(r, []byte("ok"))
				}
			}
		})
		c := srv.client(Options{MaxConnsPerHost: 1, Streams: 1})
		for _, path := range []string{"/stall-head", "/stall-body"} {
			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			_, _, err := get(ctx, c, srv.url(path))
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("%s: %v, want the deadline", path, err)
			}
			if d := time.Since(start); d != 100*time.Millisecond {
				t.Errorf("%s: returned after %v, want at its deadline (100ms)", path, d)
			}
			_, body, err := get(context.Background(), c, srv.url("/ok"))
			if err != nil || string(body) != "ok" {
				t.Errorf("after %s: %q %v", path, body, err)
			}
		}
	})
}

// Close wakes a Read blocked on the same body (as net/http's does).
func TestCloseWakesBlockedRead(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		srv := newTestServer(t, nil, nil)
		c := srv.client(Options{})
		rt := startRoundTrip(t, context.Background(), c, srv.url("/stall"))
		sc := srv.accept()
		r := sc.wantHeaders()
		sc.headers(r.id, false, 200)
		resp := rt.response()
		done := make(chan error, 1)
		go func() {
			_, err := resp.Body.Read(make([]byte, 10))
			done <- err
		}()
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("Read returned %v before any data or Close", err)
		default:
		}
		resp.Body.Close()
		synctest.Wait()
		select {
		case err := <-done:
			t.Logf("Read returned %v after Close", err)
		default:
			t.Fatal("Read still blocked after Close")
		}
	})
}

// A connection the server closes after each response is noticed and
// replaced: the request after it succeeds on a new connection. After
// CloseIdleConnections no reader goroutine of the client is left.
func TestConnClosedByServerReplacedAndReadersEnd(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		srv := newTestServer(t, nil, func(i int, sc *serverConn) {
			for r := range sc.requests() {
				sc.respond(r, []byte("one"))
				if i < 3 {
					return // closes the connection
				}
			}
		})
		c := srv.client(Options{})
		for i := range 5 {
			if _, body, err := get(context.Background(), c, srv.url("/x")); err != nil || string(body) != "one" {
				t.Fatalf("%d: %q %v", i, body, err)
			}
			synctest.Wait() // the client has read the close, if any
		}
		if n := srv.accepted(); n != 4 {
			t.Errorf("%d connections, want 4 (3 closed by the server, 1 kept)", n)
		}
		c.CloseIdleConnections()
		wantNoReaders(t, c)
	})
}

// A write that fails (WriteTimeout: the server reads nothing) takes the
// connection out of the pool at once, before its close (TLS's close_notify
// waits on the same stuck socket), so no request gets it and spins on it.
func TestFailedWriteTakesConnOutOfPool(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		stop := make(chan struct{})
		srv := newTestServer(t, nil, func(i int, sc *serverConn) {
			id := sc.readHeaders()
			sc.reply(id, "ok")
			<-stop // reads nothing more: the client's writes fill the buffers
		})
		defer close(stop)
		srv.tls, srv.limit = true, 256<<10
		c := srv.client(Options{WriteTimeout: 300 * time.Millisecond})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		resp, err := getResp(ctx, c, srv.url("/warm"))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()

		c.mu.Lock()
		cn := c.hosts[hostKey(resp.Request.URL)].conns[0]
		c.mu.Unlock()
		pad := strings.Repeat("a", 1<<20) // request headers that fill the socket buffers
		for range 6 {
			go func() {
				req, _ := newRequest(ctx, srv.url("/big"))
				req.Header.Set("X-Pad", pad)
				if resp, err := roundTrip(c, req); err == nil {
					resp.Body.Close()
				}
			}()
		}
		time.Sleep(400 * time.Millisecond) // past WriteTimeout
		cn.wmu.Lock()
		werr := cn.werr
		cn.wmu.Unlock()
		if werr == nil {
			t.Fatal("the write never failed")
		}
		t.Logf("write failed: %v", werr)
		c.mu.Lock()
		h := c.hosts[hostKey(resp.Request.URL)]
		inPool := h != nil && slices.Contains(h.conns, cn)
		dead := cn.dead
		c.mu.Unlock()
		if inPool || !dead {
			t.Fatalf("the connection whose write failed is still in the pool (dead %v)", dead)
		}
	})
}

// A server that closes every connection right after its SETTINGS: the
// request fails after a few connections, not at its context's end.
func TestServerClosingEveryConnFailsRequest(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		srv := newTestServer(t, nil, func(i int, sc *serverConn) {})
		c := srv.client(Options{})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := getResp(ctx, c, srv.url("/x"))
		t.Logf("connections: %d: %v", srv.accepted(), err)
		if err == nil || errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("want an error, got %v", err)
		}
		if n := srv.accepted(); n > 10 {
			t.Fatalf("%d connections for one request", n)
		}
	})
}

// A host that refuses connections fails its waiting requests together, off
// one dial each connection.
func TestDeadHostFailsWaitersOffOneDial(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		srv := newTestServer(t, nil, nil)
		srv.broken = true
		var dials atomic.Int32
		c := srv.client(Options{MaxConnsPerHost: 2, Streams: 8, DialContext: func(ctx context.Context, n, a string) (conn net.Conn, err error) {
			dials.Add(1)
			time.Sleep(20 * time.Millisecond) // the dial takes a while: the requests pile on it
			return srv.dial(ctx, n, a)
		}})
		var fails atomic.Int32
		done := make(chan struct{})
		for range 16 {
			go func() {
				defer func() { done <- struct{}{} }()
				if _, _, err := get(context.Background(), c, srv.url("/x")); err != nil {
					fails.Add(1)
				}
			}()
		}
		for range 16 {
			<-done
		}
		if n := fails.Load(); n != 16 {
			t.Errorf("%d of 16 requests to a dead host failed", n)
		}
		if n := dials.Load(); n > 2 {
			t.Errorf("%d dials for 16 requests, want 2 (8 streams each)", n)
		}
	})
}
