package h2

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/net/http2"
)

// A stream refused (REFUSED_STREAM) is sent again; one left out by a GOAWAY
// is sent again on another connection.
func TestRefusedAndGoAwayStreamsSentAgain(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		srv := newTestServer(t, nil, nil)
		c := srv.client(Options{MaxConnsPerHost: 1})
		rt := startRoundTrip(t, context.Background(), c, srv.url("/r"))
		sc := srv.accept()
		r := sc.wantHeaders()
		sc.rst(r.id, http2.ErrCodeRefusedStream)
		r = sc.wantHeaders() // sent again, on the same connection
		sc.goAway(r.id - 2)
		if !sc.closedByClient() {
			t.Error("the connection is still open after a GOAWAY with no stream of it left")
		}
		sc2 := srv.accept()
		r = sc2.wantHeaders()
		sc2.reply(r.id, "ok")
		rt.wantBody("ok")
		srv.wantNoConn()
	})
}

// A stream reserved before a GOAWAY is read, and written after it, is never
// sent above the GOAWAY's last stream id (the server would ignore it, and
// the request wait for its context): it is refused at once, to be sent
// again elsewhere.
func TestNoStreamOpenedAfterGoAway(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		srv := newTestServer(t, nil, nil)
		c := srv.client(Options{})
		rt := startRoundTrip(t, context.Background(), c, srv.url("/long"))
		sc := srv.accept()
		r := sc.wantHeaders()
		u, _ := url.Parse(srv.url("/second"))
		cn, _, err := c.get(context.Background(), hostKey(u), u) // the reservation a request holds until its HEADERS are written
		if err != nil {
			t.Fatal(err)
		}
		sc.goAway(r.id)
		sc.headers(r.id, false, 200)
		sc.data(r.id, false, []byte("partial"))
		synctest.Wait()
		c.mu.Lock()
		draining := cn.draining
		c.mu.Unlock()
		if !draining {
			t.Fatal("GOAWAY not seen")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		req, _ := newRequest(ctx, srv.url("/second"))
		resp, err := cn.roundTrip(ctx, req)
		if resp != nil {
			resp.Body.Close()
		}
		var rerr retryable
		if !errors.As(err, &rerr) && !errors.Is(err, errNotSent) {
			t.Fatalf("stream sent after GOAWAY(last=1): %v, want a retryable refusal or not sent", err)
		}
		sc.wantIdle() // no HEADERS
		sc.data(r.id, true, []byte(" rest"))
		rt.wantBody("partial rest")
	})
}

// A connection going away (GOAWAY) with a long stream still open does not
// count against MaxConnsPerHost: the next request opens another at once.
func TestDrainingConnDoesNotBlockHost(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		srv := newTestServer(t, nil, nil)
		c := srv.client(Options{MaxConnsPerHost: 1})
		rt := startRoundTrip(t, context.Background(), c, srv.url("/long"))
		sc := srv.accept()
		r := sc.wantHeaders()
		sc.headers(r.id, false, 200)
		sc.data(r.id, false, []byte("partial"))
		sc.goAway(r.id)
		resp := rt.response()
		io.ReadFull(resp.Body, make([]byte, 7))

		rt2 := startRoundTrip(t, context.Background(), c, srv.url("/short"))
		sc2 := srv.accept()
		r2 := sc2.wantHeaders()
		sc2.reply(r2.id, "ok")
		rt2.wantBody("ok")
		sc.data(r.id, true, []byte(" rest"))
		if b, err := io.ReadAll(resp.Body); err != nil || string(b) != " rest" {
			t.Errorf("the draining stream: %q, %v", b, err)
		}
		if !sc.closedByClient() {
			t.Error("the drained connection is still open after its last stream")
		}
	})
}

// Connections going away are bounded too: a server that sends GOAWAY(last =
// the stream it serves) on every connection while its responses are slow
// gets at most 2 connections open at once with MaxConnsPerHost 1 (one
// taking requests, one going away), not one per request in flight.
func TestDrainingConnsBoundedPerHost(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const inFlight = 16
		release := make(chan struct{})
		var live, peak atomic.Int32
		srv := newTestServer(t, nil, func(i int, sc *serverConn) {
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
			<-release
			sc.data(id, true, []byte("k"))
		})
		c := srv.client(Options{Streams: 8, MaxConnsPerHost: 1})
		var done sync.WaitGroup
		var fails atomic.Int32
		for range inFlight {
			done.Go(func() {
				_, b, err := get(context.Background(), c, srv.url("/slow"))
				if err != nil || string(b) != "ok" {
					fails.Add(1)
				}
			})
		}
		synctest.Wait() // every request is waiting for room or for its body
		p := peak.Load()
		close(release)
		done.Wait()
		t.Logf("MaxConnsPerHost 1, %d requests in flight: %d connections accepted, %d open at once, %d failed",
			inFlight, srv.accepted(), p, fails.Load())
		if p > 2 {
			t.Fatalf("%d connections open at once to a host with MaxConnsPerHost 1", p)
		}
		if fails.Load() > 0 {
			t.Fatalf("%d of %d failed", fails.Load(), inFlight)
		}
	})
}

// goAwayAfterK serves k requests a connection and sends GOAWAY with the
// k-th (nginx keepalive_requests, many CDNs), closing once it is answered.
func goAwayAfterK(k int) func(i int, sc *serverConn) {
	return func(i int, sc *serverConn) {
		served := 0
		var wg sync.WaitGroup
		sc.readFrames(func(f http2.Frame) {
			h, ok := f.(*http2.MetaHeadersFrame)
			if !ok || served >= k {
				return
			}
			served++
			if served == k {
				sc.goAway(h.StreamID)
			}
			wg.Go(func() {
				time.Sleep(5 * time.Millisecond) // the response takes a while: the client's burst comes meanwhile
				sc.reply(h.StreamID, "ok")
			})
			if served == k {
				wg.Wait()
				sc.nc.Close()
			}
		})
		wg.Wait()
	}
}

// A server that serves k requests a connection, k below Streams, refuses
// most of each new connection's burst with its GOAWAY: that is no error,
// every request succeeds.
func TestGoAwayAfterKRequestsAllSucceed(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		srv := newTestServer(t, nil, goAwayAfterK(7))
		c := srv.client(Options{Streams: 32, MaxConnsPerHost: 4})
		var wg sync.WaitGroup
		var mu sync.Mutex
		var fails []error
		for range 200 {
			wg.Go(func() {
				if _, _, err := get(context.Background(), c, srv.url("/f")); err != nil {
					mu.Lock()
					fails = append(fails, err)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if len(fails) > 0 {
			t.Fatalf("%d of 200 requests failed (connections: %d), first: %v", len(fails), srv.accepted(), fails[0])
		}
	})
}

// A server that sends GOAWAY(0) on every new connection, before any
// request: the request fails, after a bounded number of connections.
func TestGoAwayZeroOnEveryConnFailsBounded(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		srv := newTestServer(t, nil, func(i int, sc *serverConn) {
			sc.goAway(0)
			sc.readFrames(nil)
		})
		c := srv.client(Options{})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := getResp(ctx, c, srv.url("/x"))
		t.Logf("connections: %d: %v", srv.accepted(), err)
		if err == nil || errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("want a refusal error, got %v", err)
		}
		if n := srv.accepted(); n > 4*(maxRefused+1) {
			t.Fatalf("%d connections for one request", n)
		}
	})
}

// Refusals (REFUSED_STREAM) by a connection that served a response before
// but serves nothing since are bounded: the request is not sent again and
// again at once (its first response made every later refusal look like
// progress).
func TestRefusalsAfterServedResponseBounded(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var sends atomic.Int32
		srv := newTestServer(t, nil, func(i int, sc *serverConn) {
			first := true
			sc.readFrames(func(f http2.Frame) {
				h, ok := f.(*http2.MetaHeadersFrame)
				if !ok {
					return
				}
				if first {
					first = false
					sc.reply(h.StreamID, "ok")
					return
				}
				sends.Add(1)
				sc.rst(h.StreamID, http2.ErrCodeRefusedStream)
			})
		})
		c := srv.client(Options{})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, _, err := get(ctx, c, srv.url("/warm")); err != nil {
			t.Fatal(err)
		}
		_, err := getResp(ctx, c, srv.url("/refused"))
		t.Logf("sends of one refused request: %d on %d connection(s): %v", sends.Load(), srv.accepted(), err)
		if n := sends.Load(); n > maxRefused+1 {
			t.Fatalf("one request refused by a connection that serves nothing more was sent %d times", n)
		}
	})
}

// A server whose stream limit is below Streams refuses the burst a new
// connection sends before its SETTINGS are read; sent again (also onto
// other new connections, refused the same way), every request succeeds.
func TestLowStreamLimitRefusalsSentAgainToSuccess(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const maxStreams = 2
		srv := newTestServer(t, []http2.Setting{{ID: http2.SettingMaxConcurrentStreams, Val: maxStreams}},
			func(i int, sc *serverConn) {
				var mu sync.Mutex
				open := 0
				var wg sync.WaitGroup
				sc.readFrames(func(f http2.Frame) {
					h, ok := f.(*http2.MetaHeadersFrame)
					if !ok {
						return
					}
					mu.Lock()
					if open >= maxStreams {
						mu.Unlock()
						sc.rst(h.StreamID, http2.ErrCodeRefusedStream)
						return
					}
					open++
					mu.Unlock()
					wg.Go(func() {
						time.Sleep(20 * time.Millisecond) // the response takes a while
						sc.headers(h.StreamID, false, 200, "content-length", "2")
						mu.Lock()
						open--
						mu.Unlock()
						sc.data(h.StreamID, true, []byte("ok"))
					})
				})
				wg.Wait()
			})
		c := srv.client(Options{Streams: 32, MaxConnsPerHost: 16})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		var mu sync.Mutex
		var fails []error
		for range 256 {
			wg.Go(func() {
				if _, b, err := get(ctx, c, srv.url("/f")); err != nil || !bytes.Equal(b, []byte("ok")) {
					mu.Lock()
					fails = append(fails, err)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if len(fails) > 0 {
			t.Fatalf("%d of 256 requests failed (connections: %d), first: %v", len(fails), srv.accepted(), fails[0])
		}
	})
}
