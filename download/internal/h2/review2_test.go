package h2

// Second review (of 69e508d, 41f8b00): reproducers. Those named Finding fail
// on 41f8b00; the Control ones pass and document what held up.

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// The second review of h2 (of 41f8b00, the first review's fixes): each test
// names its finding; all hold since the fixes that followed.

// Finding R2-1: a draining connection leaves host.conns at once, so it no
// longer counts against MaxConnsPerHost, and nothing else bounds them: a
// server that sends GOAWAY(last = the stream it serves) on every connection
// (keepalive_requests 1, or any server shedding connections) while its
// responses are slow gets one connection per request in flight. With
// MaxConnsPerHost 1 and 16 requests, 16 connections are open to the host at
// once.
func TestReview2DrainingConnsExceedCap(t *testing.T) {
	const inFlight = 16
	release := make(chan struct{})
	var live, peak atomic.Int32
	srv := newRvServer(t, nil, func(i int, sc *srvConn) {
		n := live.Add(1)
		defer live.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		id := sc.readHeaders()
		if id == 0 {
			return
		}
		sc.headers(id, false, 200, "content-length", "2")
		sc.data(id, false, []byte("o"))
		sc.goAway(id) // serves this one, refuses the rest
		go sc.readFrames(nil)
		select {
		case <-release:
		case <-time.After(10 * time.Second):
		}
		sc.data(id, true, []byte("k"))
		time.Sleep(50 * time.Millisecond)
	})
	c := reviewClient(Options{Streams: 8, MaxConnsPerHost: 1})
	defer c.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var heads sync.WaitGroup
	var done sync.WaitGroup
	var fails atomic.Int32
	for range inFlight {
		heads.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			resp, err := rvGet(ctx, c, srv.url("/slow"))
			heads.Done()
			if err != nil {
				fails.Add(1)
				return
			}
			defer resp.Body.Close()
			if b, err := io.ReadAll(resp.Body); err != nil || string(b) != "ok" {
				fails.Add(1)
			}
		}()
	}
	// With the cap, at most 2 connections serve (one a host, one going
	// away): the rest wait for them, so the server lets go after a while.
	time.Sleep(300 * time.Millisecond)
	p := peak.Load()
	close(release)
	heads.Wait()
	done.Wait()
	t.Logf("MaxConnsPerHost 1, %d requests in flight: %d connections accepted, %d open at once, %d failed",
		inFlight, srv.accepted(), p, fails.Load())
	if p > 2 {
		t.Fatalf("%d connections open at once to a host with MaxConnsPerHost 1", p)
	}
	if fails.Load() > 0 {
		t.Fatalf("%d of %d failed", fails.Load(), inFlight)
	}
}

// Finding R2-2: SETTINGS_MAX_CONCURRENT_STREAMS 0, which RFC 9113 §5.1.2
// expects for "short durations", now fails every request to the host at once
// (errNoStreams), also those already waiting for room, though the server
// raises it again 200 ms later. It also stops get from dialing another
// connection where MaxConnsPerHost allows one.
func TestReview2MaxStreamsZeroBriefly(t *testing.T) {
	zeroed := make(chan struct{})
	var zeroOnce sync.Once // the second connection (which this test wants) zeroes its own limit too
	srv := newRvServer(t, nil, func(i int, sc *srvConn) {
		var once sync.Once
		sc.readFrames(func(f http2.Frame) {
			h, ok := f.(*http2.MetaHeadersFrame)
			if !ok {
				return
			}
			sc.headers(h.StreamID, false, 200, "content-length", "2")
			sc.data(h.StreamID, true, []byte("ok"))
			once.Do(func() {
				go func() {
					time.Sleep(20 * time.Millisecond)
					sc.wmu.Lock()
					sc.fr.WriteSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 0})
					sc.wmu.Unlock()
					zeroOnce.Do(func() { close(zeroed) })
					time.Sleep(200 * time.Millisecond)
					sc.wmu.Lock()
					sc.fr.WriteSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 100})
					sc.wmu.Unlock()
				}()
			})
		})
	})
	c := reviewClient(Options{MaxConnsPerHost: 2})
	defer c.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := rvGet(ctx, c, srv.url("/warm"))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	<-zeroed
	time.Sleep(50 * time.Millisecond) // the client has read the SETTINGS 0
	start := time.Now()
	resp, err = rvGet(ctx, c, srv.url("/during"))
	if err != nil {
		t.Fatalf("request while the server's limit is 0 for 200 ms: %v after %v (connections: %d)",
			err, time.Since(start).Round(time.Millisecond), srv.accepted())
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// Finding R2-3 (minor): REFUSED_STREAM's progress is cn.served, sticky for
// the connection's life: once one response came, every later refusal is
// "progress", sent again at once on the same connection (it stays in
// host.conns with room), 64 times, then 8 more with backoff: 73 sends of one
// request, the first 65 within a few milliseconds.
func TestReview2RefusedProgressSticky(t *testing.T) {
	var sends atomic.Int32
	srv := newRvServer(t, nil, func(i int, sc *srvConn) {
		first := true
		sc.readFrames(func(f http2.Frame) {
			h, ok := f.(*http2.MetaHeadersFrame)
			if !ok {
				return
			}
			if first {
				first = false
				sc.headers(h.StreamID, false, 200, "content-length", "2")
				sc.data(h.StreamID, true, []byte("ok"))
				return
			}
			sends.Add(1)
			sc.rst(h.StreamID, http2.ErrCodeRefusedStream)
		})
	})
	c := reviewClient(Options{})
	defer c.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := rvGet(ctx, c, srv.url("/warm"))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	start := time.Now()
	_, err = rvGet(ctx, c, srv.url("/refused"))
	t.Logf("sends of one refused request: %d on %d connection(s) in %v: %v",
		sends.Load(), srv.accepted(), time.Since(start).Round(time.Millisecond), err)
	if n := sends.Load(); n > maxRefused+1 {
		t.Fatalf("one request refused by a connection that serves nothing more was sent %d times", n)
	}
}

// Control R2-C1: a server that sends GOAWAY(0) on every new connection, before
// any request: the request fails after a bounded number of connections (the
// uncounted errNotSent path, GOAWAY read before the HEADERS are queued, could
// loop; it does not in practice, but see FINDINGS).
func TestReview2GoAwayZeroEveryConn(t *testing.T) {
	srv := newRvServer(t, nil, func(i int, sc *srvConn) {
		sc.goAway(0)
		sc.readFrames(nil)
	})
	c := reviewClient(Options{})
	defer c.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err := rvGet(ctx, c, srv.url("/x"))
	t.Logf("connections: %d in %v: %v", srv.accepted(), time.Since(start).Round(time.Millisecond), err)
	if err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want a refusal error, got %v", err)
	}
	if n := srv.accepted(); n > 4*(maxRefused+1) {
		t.Fatalf("%d connections for one request", n)
	}
}

// Finding R2-4: a write that fails (here WriteTimeout, the server reading
// nothing) sets werr and closes the connection, but the connection stays in
// host.conns, with room, until its reader ends and calls lost. Closing a
// tls.Conn first writes close_notify with a 5 s deadline; the send buffer is
// full (that is why the write timed out), so Close blocks 5 s, and the reader,
// waiting on a socket not yet closed, sees nothing. Meanwhile every request
// to the host gets this connection from get, fails in send with errNotSent
// (werr), which roundTrip retries without counting: a busy loop at a full
// core per request, for 5 s.
func TestReview2WriteErrorSpin(t *testing.T) {
	stop := make(chan struct{})
	defer close(stop)
	srv := newRvServer(t, nil, func(i int, sc *srvConn) {
		id := sc.readHeaders()
		sc.headers(id, false, 200, "content-length", "2")
		sc.data(id, true, []byte("ok"))
		<-stop // reads nothing more: the client's writes fill the buffers
	})
	c := reviewClient(Options{WriteTimeout: 300 * time.Millisecond})
	defer c.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := rvGet(ctx, c, srv.url("/warm"))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	c.mu.Lock()
	cn := c.hosts[hostKey(resp.Request.URL)].conns[0]
	c.mu.Unlock()
	// Big request headers to fill the socket buffers.
	big := make([]byte, 4<<20)
	for i := range big {
		big[i] = 'a'
	}
	pad := string(big)
	for range 6 {
		go func() {
			req, _ := rvNewReq(ctx, srv.url("/big"))
			req.Header.Set("X-Pad", pad)
			if resp, err := c.RoundTrip(req); err == nil {
				resp.Body.Close()
			}
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		cn.wmu.Lock()
		werr := cn.werr
		cn.wmu.Unlock()
		if werr != nil {
			t.Logf("write failed: %v", werr)
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the write never failed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The fix: the connection leaves the pool as its write fails (before its
	// close, which may wait on the stuck socket), so no request gets it and
	// spins on errNotSent; what is left is capped (maxUnsent).
	c.mu.Lock()
	h := c.hosts[hostKey(resp.Request.URL)]
	inPool := h != nil && slices.Contains(h.conns, cn)
	dead := cn.dead
	c.mu.Unlock()
	if inPool || !dead {
		t.Fatalf("the connection whose write failed is still in the pool (dead %v)", dead)
	}
}

// countingDialer wraps the dialed connections to count those not closed.
type countingDialer struct {
	mu   sync.Mutex
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
	var nd net.Dialer
	nc, err := nd.DialContext(ctx, network, addr)
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
	for cn := c.idle.head; cn != nil; cn = cn.next {
		n++
		if !cn.inIdle || !inHost[cn] || cn.active != 0 {
			t.Errorf("idle connection: inIdle=%v inHost=%v active=%d dead=%v draining=%v",
				cn.inIdle, inHost[cn], cn.active, cn.dead, cn.draining)
		}
	}
	if n != c.idle.n || n != len(inHost) {
		t.Errorf("idle list has %d (n=%d), hosts hold %d", n, c.idle.n, len(inHost))
	}
	return len(inHost)
}

// Control R2-C2: GOAWAY after k requests, cancellations, early closes and
// stream errors: afterwards no reservation is left (every connection's active
// is 0), the idle list and host.conns agree, and every draining connection
// was closed (the dialed connections still open are those in the pool).
func TestReview2PoolInvariantsStress(t *testing.T) {
	const k = 3
	srv := newRvServer(t, nil, func(i int, sc *srvConn) {
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
			wg.Add(1)
			go func() {
				defer wg.Done()
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
			}()
		})
		wg.Wait()
	})
	d := &countingDialer{open: map[*trackedConn]bool{}}
	c := reviewClient(Options{Streams: 8, MaxConnsPerHost: 2, DialContext: d.dial})
	defer c.CloseIdleConnections()
	var wg sync.WaitGroup
	var bad atomic.Int32
	for i := range 300 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			if i%13 == 0 {
				ctx, cancel = context.WithTimeout(context.Background(), time.Duration(i%5)*time.Millisecond)
			}
			defer cancel()
			resp, err := rvGet(ctx, c, srv.url("/s"))
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
		}()
	}
	wg.Wait()
	time.Sleep(200 * time.Millisecond)
	c.CloseIdleConnections()
	// One request on a fresh connection (id 1 is served): it stays idle.
	if resp, err := rvGet(context.Background(), c, srv.url("/last")); err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	time.Sleep(50 * time.Millisecond)
	if bad.Load() > 0 {
		t.Errorf("%d bodies ended in io.EOF with wrong bytes", bad.Load())
	}
	pooled := checkPool(t, c)
	open := d.openConns()
	t.Logf("dialed %d, open %d, pooled %d", d.n, open, pooled)
	if open > pooled {
		t.Errorf("%d dialed connections open, %d in the pool: draining connections not closed", open, pooled)
	}
}

// Control R2-C3: a server that closes every connection right after its
// SETTINGS: the request fails after a few connections (the errNotSent path,
// broken before the HEADERS are queued, is not counted but rare).
func TestReview2CloseAfterSettingsEveryConn(t *testing.T) {
	srv := newRvServer(t, nil, func(i int, sc *srvConn) {})
	c := reviewClient(Options{})
	defer c.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err := rvGet(ctx, c, srv.url("/x"))
	t.Logf("connections: %d in %v: %v", srv.accepted(), time.Since(start).Round(time.Millisecond), err)
	if err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want an error, got %v", err)
	}
	if n := srv.accepted(); n > 10 {
		t.Fatalf("%d connections for one request", n)
	}
}
