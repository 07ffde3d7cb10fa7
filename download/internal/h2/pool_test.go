package h2

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"math/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/net/http2"

	"github.com/haul/haul/download/internal/h1"
	"github.com/haul/haul/internal/testutil"
)

// concurrency counts the handlers running at once, in all and per
// connection. With gate > 0, the first gate handlers wait until gate of them
// run at once: the client has that many requests in flight, or the test
// never ends.
type concurrency struct {
	mu            sync.Mutex
	now, most     int
	perConn       map[string]int
	mostOnOneConn int
	gate, started int
	open          chan struct{}
}

func (cc *concurrency) handler() http.Handler {
	cc.perConn = map[string]int{}
	cc.open = make(chan struct{})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cc.mu.Lock()
		cc.now++
		cc.most = max(cc.most, cc.now)
		cc.perConn[r.RemoteAddr]++
		cc.mostOnOneConn = max(cc.mostOnOneConn, cc.perConn[r.RemoteAddr])
		cc.started++
		if cc.started == cc.gate {
			close(cc.open)
		}
		gated := cc.gate > 0
		cc.mu.Unlock()
		if gated {
			<-cc.open
		}
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

// Many concurrent GETs to net/http's HTTP/2 server: every body is its own,
// the connections stay within MaxConnsPerHost and the streams on each within
// Streams, and all of them carry requests at once.
func TestManyRequestsWithinConnAndStreamCaps(t *testing.T) {
	t.Parallel()
	cc := &concurrency{gate: 24} // 3 connections of 8 streams
	srv, c, conns := tlsServer(t, cc.handler(), false, 0, Options{Streams: 8, MaxConnsPerHost: 3})
	var wg sync.WaitGroup
	errs := make(chan error, 300)
	for i := range 300 {
		wg.Go(func() {
			path := fmt.Sprintf("/f%d", i)
			status, body, err := get(context.Background(), c, srv.URL+path)
			if err == nil && (status != 200 || !bytes.Equal(body, content(path))) {
				err = fmt.Errorf("%s: status %d, %d bytes, want 200 and its own %d", path, status, len(body), len(content(path)))
			}
			if err != nil {
				errs <- err
			}
		})
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
	if cc.most < 24 {
		t.Errorf("at most %d requests in flight: the 3 connections never carried them together", cc.most)
	}
}

// A server whose SETTINGS_MAX_CONCURRENT_STREAMS is below Streams wins: all
// requests succeed, no more than its limit on a connection.
func TestServerStreamLimitWins(t *testing.T) {
	t.Parallel()
	cc := &concurrency{gate: 4} // 2 connections of 2 streams
	srv, c, conns := tlsServer(t, cc.handler(), false, 2, Options{Streams: 16, MaxConnsPerHost: 2})
	var wg sync.WaitGroup
	var failed atomic.Int32
	for i := range 60 {
		wg.Go(func() {
			path := fmt.Sprintf("/g%d", i)
			if _, body, err := get(context.Background(), c, srv.URL+path); err != nil || !bytes.Equal(body, content(path)) {
				t.Log(path, err)
				failed.Add(1)
			}
		})
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

// Idle connections past MaxIdle are closed, least recently used first.
func TestIdleConnsPastMaxIdleClosedOldestFirst(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		srvs := map[string]*testServer{}
		var order []*testServer
		for _, host := range []string{"a.test", "b.test", "c.test"} {
			srv := newTestServer(t, nil, func(i int, sc *serverConn) {
				for r := range sc.requests() {
					sc.respond(r, []byte("x"))
				}
			})
			srv.host = host
			srvs[host+":443"] = srv
			order = append(order, srv)
		}
		c := order[0].client(Options{MaxIdle: 2, DialContext: func(ctx context.Context, n, addr string) (net.Conn, error) {
			return srvs[addr].dial(ctx, n, addr)
		}})
		for _, srv := range order {
			if _, _, err := get(context.Background(), c, srv.url("/x")); err != nil {
				t.Fatal(err)
			}
		}
		c.mu.Lock()
		n := c.idle.Len()
		oldest := c.idle.Front().Value
		c.mu.Unlock()
		if n != 2 || oldest == nil || oldest.h.key != "b.test:443" {
			t.Errorf("%d idle, want 2, the oldest to the second server", n)
		}
		if !order[0].conns[0].closedByClient() {
			t.Error("the least recently used connection is still open")
		}
	})
}

// SETTINGS_MAX_CONCURRENT_STREAMS 0 (allowed, "until it is raised") does not
// leave requests waiting for their context on a connection that takes no
// stream: the request gets an answer (here a refusal) before its deadline.
func TestMaxStreamsZeroDoesNotStallRequests(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		srv := newTestServer(t, []http2.Setting{{ID: http2.SettingMaxConcurrentStreams, Val: 0}}, func(i int, sc *serverConn) {
			sc.readFrames(func(f http2.Frame) {
				if h, ok := f.(*http2.MetaHeadersFrame); ok {
					sc.rst(h.StreamID, http2.ErrCodeRefusedStream)
				}
			})
		})
		c := srv.client(Options{})
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		start := time.Now()
		_, err := getResp(ctx, c, srv.url("/zero"))
		t.Logf("err after %v on %d connections: %v", time.Since(start), srv.accepted(), err)
		if err == nil || ctx.Err() != nil {
			t.Fatalf("request waited for its whole context on a connection that takes no stream (%v)", err)
		}
	})
}

// SETTINGS_MAX_CONCURRENT_STREAMS 0 for a short while (RFC 9113 expects it
// "for short durations") fails no request: one made meanwhile goes to
// another connection (MaxConnsPerHost allows one) or waits for the limit to
// be raised.
func TestMaxStreamsZeroBrieflyFailsNoRequest(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		zeroed := make(chan struct{})
		var zeroOnce sync.Once // the second connection zeroes its own limit too
		srv := newTestServer(t, nil, func(i int, sc *serverConn) {
			var once sync.Once
			var wg sync.WaitGroup
			sc.readFrames(func(f http2.Frame) {
				h, ok := f.(*http2.MetaHeadersFrame)
				if !ok {
					return
				}
				sc.reply(h.StreamID, "ok")
				once.Do(func() {
					wg.Go(func() {
						time.Sleep(20 * time.Millisecond)
						sc.settings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 0})
						zeroOnce.Do(func() { close(zeroed) })
						time.Sleep(200 * time.Millisecond)
						sc.settings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 100})
					})
				})
			})
			wg.Wait()
		})
		c := srv.client(Options{MaxConnsPerHost: 2})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, _, err := get(ctx, c, srv.url("/warm")); err != nil {
			t.Fatal(err)
		}
		<-zeroed
		synctest.Wait() // the client has read the SETTINGS 0
		if _, _, err := get(ctx, c, srv.url("/during")); err != nil {
			t.Fatalf("request while the server's limit is 0 for 200 ms: %v (connections: %d)", err, srv.accepted())
		}
	})
}

// countingDialer wraps the dialed connections to count those not closed.
type countingDialer struct {
	mu   sync.Mutex
	next func(ctx context.Context, network, addr string) (net.Conn, error)
	open map[*trackedConn]bool
	n    int
}

type trackedConn struct {
	net.Conn
	d    *countingDialer
	once sync.Once
}

func (tc *trackedConn) Close() error {
	tc.once.Do(func() {
		tc.d.mu.Lock()
		delete(tc.d.open, tc)
		tc.d.mu.Unlock()
	})
	return tc.Conn.Close()
}

func (d *countingDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	nc, err := d.next(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: nc, d: d}
	d.mu.Lock()
	d.open[tc] = true
	d.n++
	d.mu.Unlock()
	return tc, nil
}

func (d *countingDialer) openConns() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.open)
}

// checkPool verifies the pool's invariants once no request is in flight:
// every idle connection is in its host's conns, live and without streams,
// and every connection in a host's conns is neither dead nor draining.
func checkPool(t *testing.T, c *Client) (conns int) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	inHost := map[*conn]bool{}
	for key, h := range c.hosts {
		if h.key != key {
			t.Errorf("host %q under key %q", h.key, key)
		}
		for _, cn := range h.conns {
			if cn.dead || cn.draining {
				t.Errorf("%s: connection in host.conns is dead=%v draining=%v", key, cn.dead, cn.draining)
			}
			if cn.h != h {
				t.Errorf("%s: connection's host is another", key)
			}
			if cn.active != 0 {
				t.Errorf("%s: connection has active %d with no request in flight", key, cn.active)
			}
			inHost[cn] = true
		}
		if len(h.dials) != 0 || h.waiting != 0 {
			t.Errorf("%s: %d dials, %d waiting", key, len(h.dials), h.waiting)
		}
	}
	n := 0
	for e := c.idle.Front(); e != nil; e = e.Next() {
		cn := e.Value
		n++
		if cn.lru.List() == nil || !inHost[cn] || cn.active != 0 {
			t.Errorf("idle connection: in the list=%v inHost=%v active=%d dead=%v draining=%v",
				cn.lru.List() != nil, inHost[cn], cn.active, cn.dead, cn.draining)
		}
	}
	if n != c.idle.Len() || n != len(inHost) {
		t.Errorf("idle list has %d (n=%d), hosts hold %d", n, c.idle.Len(), len(inHost))
	}
	return len(inHost)
}

// GOAWAY after k requests, cancellations, early closes and stream errors:
// afterwards no reservation is left (every connection's active is 0), the
// idle list and host.conns agree, and every draining connection was closed
// (the dialed connections still open are those in the pool).
func TestPoolInvariantsHoldUnderChurn(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const k = 3
		srv := newTestServer(t, nil, func(i int, sc *serverConn) {
			var mu sync.Mutex
			served := 0
			var wg sync.WaitGroup
			sc.readFrames(func(f http2.Frame) {
				h, ok := f.(*http2.MetaHeadersFrame)
				if !ok {
					return
				}
				mu.Lock()
				if served >= k {
					mu.Unlock()
					return
				}
				served++
				n := served
				mu.Unlock()
				id := h.StreamID
				if n == k {
					sc.goAway(id)
				}
				wg.Go(func() {
					time.Sleep(time.Duration(id%7) * time.Millisecond)
					switch id % 11 {
					case 3:
						sc.rst(id, http2.ErrCodeRefusedStream)
						return
					case 5:
						sc.headers(id, false, 200, "content-length", "4")
						sc.data(id, false, []byte("ab"))
						sc.rst(id, http2.ErrCodeInternal)
						return
					}
					sc.headers(id, false, 200, "content-length", "4")
					sc.data(id, false, []byte("ab"))
					time.Sleep(time.Millisecond)
					sc.data(id, true, []byte("cd"))
				})
			})
			wg.Wait()
		})
		d := &countingDialer{next: srv.dial, open: map[*trackedConn]bool{}}
		c := srv.client(Options{Streams: 8, MaxConnsPerHost: 2, DialContext: d.dial})
		var wg sync.WaitGroup
		var bad atomic.Int32
		for i := range 300 {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				if i%13 == 0 {
					ctx, cancel = context.WithTimeout(context.Background(), time.Duration(i%5)*time.Millisecond)
				}
				defer cancel()
				resp, err := getResp(ctx, c, srv.url("/s"))
				if err != nil {
					return
				}
				defer resp.Body.Close()
				if i%7 == 0 {
					return // closed unread
				}
				b, err := io.ReadAll(resp.Body)
				if err == nil && string(b) != "abcd" {
					bad.Add(1)
				}
			})
		}
		wg.Wait()
		synctest.Wait() // draining connections closed, their readers done
		c.CloseIdleConnections()
		// One request on a fresh connection (id 1 is served): it stays idle.
		if _, _, err := get(context.Background(), c, srv.url("/last")); err != nil {
			t.Errorf("last request: %v", err)
		}
		synctest.Wait()
		if bad.Load() > 0 {
			t.Errorf("%d bodies ended in io.EOF with wrong bytes", bad.Load())
		}
		pooled := checkPool(t, c)
		open := d.openConns()
		t.Logf("dialed %d, open %d, pooled %d", d.n, open, pooled)
		if open > pooled {
			t.Errorf("%d dialed connections open, %d in the pool: draining connections not closed", open, pooled)
		}
	})
}

// waitReaders waits until c's connection readers have all ended, after
// CloseIdleConnections with no request in flight (the client's own count,
// not the process's goroutines: other tests' connections do not matter).
func waitReaders(t *testing.T, c *Client) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		c.readers.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(time.Minute): // the readers end within microseconds of their connections' close
		t.Fatal("reader goroutines left after CloseIdleConnections")
	}
}

// Against net/http's HTTP/2 server, many concurrent requests, bodies read
// whole, closed early, contexts canceled at random: every whole body
// matches; afterwards no stream is reserved and CloseIdleConnections leaves
// no reader goroutine.
func TestMixedRequestsAgainstNetHTTPServer(t *testing.T) {
	blob := make([]byte, 3<<20)
	rand.New(rand.NewSource(1)).Read(blob)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		off, _ := strconv.Atoi(r.URL.Query().Get("off"))
		w.Header().Set("Content-Length", strconv.Itoa(n))
		if r.URL.Query().Get("slow") != "" {
			for i := 0; i < n; i += 1000 {
				w.Write(blob[off+i : off+min(i+1000, n)])
				w.(http.Flusher).Flush()
			}
			return
		}
		w.Write(blob[off : off+n])
	})
	srv, c, _ := tlsServer(t, h, false, 0, Options{Streams: 16, MaxConnsPerHost: 3, StreamWindow: 256 << 10, ConnWindow: 512 << 10})
	var wg sync.WaitGroup
	for w := range 48 {
		wg.Go(func() {
			rng := rand.New(rand.NewSource(int64(w)))
			for range 60 {
				n := rng.Intn(300 << 10)
				off := rng.Intn(len(blob) - n)
				u := fmt.Sprintf("%s/?n=%d&off=%d", srv.URL, n, off)
				if rng.Intn(8) == 0 {
					u += "&slow=1"
				}
				ctx, cancel := context.WithCancel(context.Background())
				mode := rng.Intn(10)
				if mode == 0 {
					time.AfterFunc(time.Duration(rng.Intn(3000))*time.Microsecond, cancel)
				}
				resp, err := getResp(ctx, c, u)
				if err != nil {
					cancel()
					if mode != 0 {
						t.Errorf("%s: %v", u, err)
					}
					continue
				}
				if mode == 1 {
					io.CopyN(io.Discard, resp.Body, int64(rng.Intn(n+1)))
					resp.Body.Close()
					cancel()
					continue
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				cancel()
				if err != nil {
					if mode != 0 {
						t.Errorf("%s: read: %v", u, err)
					}
					continue
				}
				if !bytes.Equal(b, blob[off:off+n]) {
					t.Errorf("%s: body of %d bytes differs (sha %x)", u, len(b), sha256.Sum256(b))
				}
			}
		})
	}
	wg.Wait()
	// Every stream gave its slot back before its caller returned.
	c.mu.Lock()
	for k, h := range c.hosts {
		for _, cn := range h.conns {
			if cn.active != 0 {
				t.Errorf("host %s: conn with %d streams reserved after all requests ended", k, cn.active)
			}
		}
	}
	c.mu.Unlock()
	c.CloseIdleConnections()
	waitReaders(t, c)
}

// net/http's own HTTP/2 server (as in Caddy) with MaxConcurrentStreams below
// Streams: the burst sent before its SETTINGS is refused (REFUSED_STREAM,
// before the ACK) or reset as a PROTOCOL_ERROR (a stream over the limit
// after the ACK); both are sent again, and every request succeeds.
func TestNetHTTPServerLowStreamLimitAllSucceed(t *testing.T) {
	t.Parallel()
	cc := &concurrency{gate: 8} // 2 connections of 4 streams at once
	srv, c, _ := tlsServer(t, cc.handler(), false, 4, Options{Streams: 32, MaxConnsPerHost: 8})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var fails []error
	for i := range 400 {
		wg.Go(func() {
			path := fmt.Sprintf("/x%d", i)
			if _, b, err := get(context.Background(), c, srv.URL+path); err != nil || !bytes.Equal(b, content(path)) {
				mu.Lock()
				fails = append(fails, fmt.Errorf("%s: %d bytes, %w", path, len(b), err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(fails) > 0 {
		kinds := map[string]int{}
		for _, e := range fails {
			kinds[e.Error()[strings.LastIndex(e.Error(), ": ")+2:]]++
		}
		t.Fatalf("%d of 400 requests failed: %v", len(fails), kinds)
	}
}

// Over many hosts (real HTTP/2 servers on loopback, a port each), the idle
// connections stay within MaxIdle, the least recently used closed first (the
// servers see the others close), and the table of hosts holds only those
// with connections.
func TestIdleConnsBoundedOverManyHosts(t *testing.T) {
	const hosts, maxIdle = 30, 5
	var open atomic.Int32 // connections the servers have open
	pool := x509.NewCertPool()
	var urls []string
	for range hosts {
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.Proto) }))
		srv.EnableHTTP2 = true
		srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				open.Add(1)
			case http.StateClosed, http.StateHijacked:
				open.Add(-1)
			}
		}
		srv.Config.ErrorLog = log.New(io.Discard, "", 0)
		srv.StartTLS()
		t.Cleanup(srv.Close)
		pool.AddCert(srv.Certificate())
		urls = append(urls, srv.URL)
	}
	c := New(Options{MaxIdle: maxIdle, MaxConnsPerHost: 2, TLSConfig: &tls.Config{RootCAs: pool}})
	t.Cleanup(c.CloseIdleConnections)
	for i, u := range urls {
		_, body, err := get(context.Background(), c, u+"/")
		if err != nil || string(body) != "HTTP/2.0" {
			t.Fatalf("%s: %q, %v", u, body, err)
		}
		c.mu.Lock()
		idle, tracked := c.idle.Len(), len(c.hosts)
		c.mu.Unlock()
		if idle != min(i+1, maxIdle) || tracked != idle {
			t.Fatalf("after %d hosts: %d idle connections, %d hosts kept, want %d", i+1, idle, tracked, min(i+1, maxIdle))
		}
	}
	want := map[string]bool{}
	for _, u := range urls[hosts-maxIdle:] {
		want[strings.TrimPrefix(u, "https://")] = true
	}
	c.mu.Lock()
	for e := c.idle.Front(); e != nil; e = e.Next() {
		cn := e.Value
		if !want[cn.h.key] {
			t.Errorf("an idle connection to %s, not one of the %d most recent hosts", cn.h.key, maxIdle)
		}
	}
	c.mu.Unlock()
	testutil.WaitFor(t, "the servers to see every connection but the idle ones closed", func() bool { return open.Load() == maxIdle })
}

// One IdleLimit shared with the HTTP/1.1 client bounds the idle connections
// of both together, over hosts of either kind, the least recently used
// closed first whichever client holds it: only the connections to the last
// hosts stay open at the servers.
func TestIdleLimitSharedWithHTTP1(t *testing.T) {
	const hosts, limit = 20, 4
	opens := make([]atomic.Int32, hosts)
	pool := x509.NewCertPool()
	var urls []string
	for i := range hosts {
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.Proto) }))
		srv.EnableHTTP2 = i%2 == 0 // the odd ones speak HTTP/1.1 only
		srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				opens[i].Add(1)
			case http.StateClosed, http.StateHijacked:
				opens[i].Add(-1)
			}
		}
		srv.Config.ErrorLog = log.New(io.Discard, "", 0)
		srv.StartTLS()
		t.Cleanup(srv.Close)
		pool.AddCert(srv.Certificate())
		urls = append(urls, srv.URL)
	}
	idle := h1.NewIdleLimit(limit)
	conf := &tls.Config{RootCAs: pool}
	one := h1.New(h1.Options{TLSConfig: conf, IdleLimit: idle, MaxIdle: 100, MaxIdlePerHost: 2})
	t.Cleanup(one.CloseIdleConnections)
	c := New(Options{TLSConfig: conf, IdleLimit: idle, MaxIdle: 100, HTTP1: one})
	t.Cleanup(c.CloseIdleConnections)
	for i, u := range urls {
		want := "HTTP/2.0"
		if i%2 == 1 {
			want = "HTTP/1.1"
		}
		_, body, err := get(context.Background(), c, u+"/")
		if err != nil || string(body) != want {
			t.Fatalf("%s: %q, %v; want %q", u, body, err, want)
		}
		if n := idle.Len(); n != min(i+1, limit) {
			t.Fatalf("after %d hosts: %d idle connections counted, want %d", i+1, n, min(i+1, limit))
		}
	}
	testutil.Until(t, func() error {
		for i := range opens {
			want := int32(0)
			if i >= hosts-limit {
				want = 1
			}
			if n := opens[i].Load(); n != want {
				return fmt.Errorf("server %d has %d connections open, want %d", i, n, want)
			}
		}
		return nil
	})
}
