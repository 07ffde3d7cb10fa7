package h2

import (
	"context"
	"errors"
	"io"
	"os"
	"testing"
	"testing/synctest"
	"time"
)

const (
	testReadIdle = 10 * time.Second
	testPingWait = 5 * time.Second
)

// pingScript starts a request on a client with the health check on, and
// answers its head: the body is open, the connection silent from now.
func pingScript(t *testing.T) (*testServer, *Client, *serverConn, *asyncRoundTrip) {
	srv := newTestServer(t, nil, nil)
	c := srv.client(Options{ReadIdleTimeout: testReadIdle, PingTimeout: testPingWait})
	rt := startRoundTrip(t, context.Background(), c, srv.url("/slow"))
	sc := srv.accept()
	r := sc.wantHeaders()
	sc.headers(r.id, false, 200)
	sc.data(r.id, false, []byte("12345"))
	rt.response()
	return srv, c, sc, rt
}

// A server that stops answering is sent a PING once the connection has read
// nothing for ReadIdleTimeout, and loses the connection PingTimeout later:
// the body fails with a timeout, and the next request goes to a new
// connection.
func TestSilentServerPingedThenConnectionClosed(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		srv, c, sc, rt := pingScript(t)
		body := rt.response().Body
		type result struct {
			body []byte
			err  error
		}
		read := make(chan result, 1)
		go func() {
			b, err := io.ReadAll(body)
			read <- result{b, err}
		}()

		time.Sleep(testReadIdle - time.Nanosecond)
		sc.wantIdle()
		time.Sleep(time.Nanosecond)
		sc.wantPing()

		time.Sleep(testPingWait - time.Nanosecond)
		if sc.closedByClient() {
			t.Fatal("connection closed before PingTimeout")
		}
		time.Sleep(time.Nanosecond)
		if !sc.closedByClient() {
			t.Fatal("connection still open PingTimeout after an unanswered PING")
		}
		if r := <-read; string(r.body) != "12345" || !errors.Is(r.err, os.ErrDeadlineExceeded) || !contains(r.err, "PING") {
			t.Errorf("body %q, %v; want 12345 and a PING timeout", r.body, r.err)
		}

		rt2 := startRoundTrip(t, context.Background(), c, srv.url("/next"))
		sc2 := srv.accept()
		r := sc2.wantHeaders()
		sc2.reply(r.id, "next")
		rt2.wantBody("next")
	})
}

// A server that answers the PING keeps the connection: the next PING comes
// ReadIdleTimeout after the answer, and the body completes.
func TestAnsweredPingKeepsConnection(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		srv, _, sc, rt := pingScript(t)
		time.Sleep(testReadIdle - time.Nanosecond)
		for range 3 {
			time.Sleep(time.Nanosecond)
			data := sc.wantPing()
			time.Sleep(testPingWait - time.Second)
			sc.ping(true, data)
			time.Sleep(testReadIdle - time.Nanosecond)
			if sc.closedByClient() {
				t.Fatal("connection closed though its PING was answered")
			}
			sc.wantIdle()
		}
		sc.data(1, true, []byte("67890"))
		rt.wantBody("1234567890")
		if n := srv.accepted(); n != 1 {
			t.Errorf("%d connections, want 1", n)
		}
	})
}

// A connection that keeps reading frames, each sooner than ReadIdleTimeout
// after the last, sends no PING.
func TestActiveConnectionSendsNoPing(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		_, _, sc, rt := pingScript(t)
		body := rt.response().Body
		got := make(chan string, 1)
		go func() {
			b, err := io.ReadAll(body)
			if err != nil {
				b = append(b, err.Error()...)
			}
			got <- string(b)
		}()
		for range 12 { // a minute, a frame every 5s
			time.Sleep(testReadIdle / 2)
			sc.wantIdle()
			sc.data(1, false, []byte("."))
		}
		sc.data(1, true, nil)
		if b := <-got; b != "12345............" {
			t.Errorf("body %q", b)
		}
	})
}

// With ReadIdleTimeout 0 (the default) no PING is ever sent.
func TestNoPingByDefault(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		srv := newTestServer(t, nil, nil)
		c := srv.client(Options{})
		rt := startRoundTrip(t, context.Background(), c, srv.url("/x"))
		sc := srv.accept()
		r := sc.wantHeaders()
		sc.headers(r.id, false, 200)
		rt.response()
		time.Sleep(time.Hour)
		sc.wantIdle()
		if sc.closedByClient() {
			t.Fatal("connection closed")
		}
		sc.data(r.id, true, []byte("x"))
		rt.wantBody("x")
	})
}

// A connection without streams is checked too: kept idle in the pool, its
// server silent, it leaves the pool once its PING goes unanswered, and the
// next request opens another rather than waiting on a dead one.
func TestIdleConnLostToPingLeavesPool(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		srv := newTestServer(t, nil, nil)
		c := srv.client(Options{ReadIdleTimeout: testReadIdle, PingTimeout: testPingWait})
		rt := startRoundTrip(t, context.Background(), c, srv.url("/a"))
		sc := srv.accept()
		r := sc.wantHeaders()
		sc.headers(r.id, true, 204)
		rt.response()
		synctest.Wait()
		c.mu.Lock()
		idle := c.idle.Len()
		c.mu.Unlock()
		if idle != 1 {
			t.Fatalf("%d idle connections, want 1", idle)
		}

		time.Sleep(testReadIdle)
		sc.wantPing()
		time.Sleep(testPingWait)
		if !sc.closedByClient() {
			t.Fatal("idle connection still open PingTimeout after an unanswered PING")
		}
		c.mu.Lock()
		idle = c.idle.Len()
		c.mu.Unlock()
		if idle != 0 {
			t.Errorf("%d idle connections after the loss, want 0", idle)
		}
		rt = startRoundTrip(t, context.Background(), c, srv.url("/b"))
		sc2 := srv.accept()
		r = sc2.wantHeaders()
		sc2.headers(r.id, true, 204)
		if resp := rt.response(); resp.StatusCode != 204 {
			t.Errorf("%s, want 204", resp.Status)
		}
		sc.wantIdle() // nothing more on the lost connection
	})
}
