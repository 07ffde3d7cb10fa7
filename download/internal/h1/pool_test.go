package h1

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/haul/haul/internal/testutil"
)

func TestTLS(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "secure "+r.Proto)
	}))
	srv.EnableHTTP2 = true // the client must still get HTTP/1.1
	srv.StartTLS()
	defer srv.Close()
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	c := newClient(t, Options{TLSConfig: &tls.Config{RootCAs: roots}, TLSHandshakeTimeout: testutil.Patience(t)})
	resp, body := mustGet(t, c, srv.URL)
	if body != "secure HTTP/1.1" || resp.TLS == nil || resp.TLS.NegotiatedProtocol == "h2" {
		t.Fatalf("body %q, TLS %v", body, resp.TLS)
	}
	if resp.TLS.ServerName != "127.0.0.1" && resp.TLS.ServerName != "" {
		t.Errorf("ServerName %q", resp.TLS.ServerName)
	}
	// A new connection resumes the session.
	c.CloseIdleConnections()
	resp, _ = mustGet(t, c, srv.URL)
	if !resp.TLS.DidResume {
		t.Errorf("second connection did not resume the TLS session")
	}
}

func TestTLSUnknownAuthority(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	c := newClient(t, Options{TLSConfig: &tls.Config{RootCAs: x509.NewCertPool()}})
	_, _, err := get(t, c, srv.URL)
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	if !errors.As(err, &cv) || !errors.As(err, &ua) {
		t.Fatalf("error %v (%T), want a certificate verification error", err, err)
	}
}

func TestTLSHandshakeTimeout(t *testing.T) {
	// A plain TCP server that never answers the ClientHello.
	srv := newRawServer(t, func(c net.Conn, br *bufio.Reader) { io.Copy(io.Discard, br); c.Close() })
	c := newClient(t, Options{TLSConfig: &tls.Config{}, TLSHandshakeTimeout: 50 * time.Millisecond})
	_, _, err := get(t, c, strings.Replace(srv.url("/"), "http:", "https:", 1))
	if err == nil || !strings.Contains(err.Error(), "TLS handshake timeout") {
		t.Fatalf("error %v, want a TLS handshake timeout", err)
	}
}

func TestConcurrentUse(t *testing.T) {
	srv, conns := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := len(r.URL.Path) * 100
		if r.URL.Query().Has("chunked") {
			w.(http.Flusher).Flush()
		}
		io.WriteString(w, strings.Repeat(r.URL.Path[1:2], n))
	}))
	c := newClient(t, Options{MaxIdlePerHost: 16})
	var wg sync.WaitGroup
	var failed atomic.Int32
	for g := range 16 {
		wg.Go(func() {
			for i := range 200 / 16 {
				path := fmt.Sprintf("/%c%s", 'a'+g, strings.Repeat("x", i*10))
				q := ""
				if i%2 == 1 {
					q = "?chunked"
				}
				req, _ := http.NewRequest(http.MethodGet, srv.URL+path+q, nil)
				resp, err := c.RoundTrip(req)
				if err != nil {
					t.Error(err)
					failed.Add(1)
					return
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || len(b) != len(path)*100 || b[0] != byte('a'+g) {
					t.Errorf("%s: %d bytes, %v", path, len(b), err)
				}
			}
		})
	}
	wg.Wait()
	if got := conns.Load(); got > 16 {
		t.Errorf("%d connections for 16 goroutines", got)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.hosts[hostKey{host: strings.TrimPrefix(srv.URL, "http://")}]; p == nil || p.users != 0 {
		t.Errorf("pool after the requests: %+v", p)
	}
}

func TestMaxConnsPerHost(t *testing.T) {
	var active, peak atomic.Int32
	srv, conns := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := active.Add(1)
		defer active.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(5 * time.Millisecond) // widens the overlap: more requests wait for a slot (the cap holds either way)
		io.WriteString(w, "ok")
	}))
	c := newClient(t, Options{MaxConnsPerHost: 2, MaxIdlePerHost: 1})
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
			resp, err := c.RoundTrip(req)
			if err != nil {
				t.Error(err)
				return
			}
			io.ReadAll(resp.Body)
			resp.Body.Close()
		})
	}
	wg.Wait()
	// MaxIdlePerHost 1 closes one of the two connections after each burst, so
	// a few more than 2 may be dialled, but never more than 2 at once.
	if peak.Load() > 2 {
		t.Errorf("%d requests at once, cap 2", peak.Load())
	}
	t.Logf("%d connections", conns.Load())

	// A request waiting for a slot gives up when its context ends.
	held, err := c.RoundTrip(mustRequest(t, context.Background(), srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	held2, err := c.RoundTrip(mustRequest(t, context.Background(), srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.RoundTrip(mustRequest(t, ctx, srv.URL)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiting for a slot: %v", err)
	}
	held.Body.Close()
	held2.Body.Close()
	mustGet(t, c, srv.URL)
}

func mustRequest(t *testing.T, ctx context.Context, rawURL string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestIdleLimits(t *testing.T) {
	var servers []*httptest.Server
	for range 3 {
		srv, _ := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
		servers = append(servers, srv)
	}
	c := newClient(t, Options{MaxIdle: 2, MaxIdlePerHost: 1})
	// Two concurrent requests to one host leave one idle connection there.
	a, _ := c.RoundTrip(mustRequest(t, context.Background(), servers[0].URL))
	b, _ := c.RoundTrip(mustRequest(t, context.Background(), servers[0].URL))
	io.ReadAll(a.Body)
	io.ReadAll(b.Body)
	a.Body.Close()
	b.Body.Close()
	if c.lru.Len() != 1 {
		t.Errorf("%d idle connections, want 1 (MaxIdlePerHost)", c.lru.Len())
	}
	mustGet(t, c, servers[1].URL)
	mustGet(t, c, servers[2].URL)
	c.mu.Lock()
	idle, hosts := c.lru.Len(), len(c.hosts)
	_, first := c.hosts[hostKey{host: strings.TrimPrefix(servers[0].URL, "http://")}]
	c.mu.Unlock()
	if idle != 2 || hosts != 2 || first {
		t.Errorf("%d idle connections over %d hosts (first host kept: %v), want 2 over 2 without the first", idle, hosts, first)
	}
	c.CloseIdleConnections()
	if c.lru.Len() != 0 || len(c.hosts) != 0 {
		t.Errorf("after CloseIdleConnections: %d idle, %d hosts", c.lru.Len(), len(c.hosts))
	}
}

func TestIdleTimeout(t *testing.T) {
	srv, conns := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	c := newClient(t, Options{})
	mustGet(t, c, srv.URL)
	c.mu.Lock()
	c.lru.Front().Value.idleAt = time.Now().Add(-idleTimeout - time.Second)
	c.mu.Unlock()
	mustGet(t, c, srv.URL)
	if got := conns.Load(); got != 2 {
		t.Errorf("%d connections, want 2: an expired idle connection was used", got)
	}
}

// TestIdleUnsolicitedBytesTLS is TestIdleUnsolicitedBytes over TLS, with the
// stray bytes sent in the same TCP write as the response: crypto/tls reads
// them with it, so they wait in its buffer, where a peek at the socket does
// not see them.
func TestIdleUnsolicitedBytesTLS(t *testing.T) {
	cert := testutil.SelfSigned(t)
	srvConfig := cert.ServerConfig()
	for name, extra := range map[string]string{
		"Response": "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL",
		"CRLF":     "\r\n",
		"Close":    "", // a close_notify
	} {
		t.Run(name, func(t *testing.T) {
			srv := newRawServer(t, func(c net.Conn, _ *bufio.Reader) {
				cc := &corkedConn{Conn: c}
				tc := tls.Server(cc, srvConfig)
				defer tc.Close()
				br := bufio.NewReader(tc)
				for readRequest(br) != "" {
					cc.corked = true // two TLS records, one TCP write
					io.WriteString(tc, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
					if extra == "" {
						tc.CloseWrite()
					} else {
						io.WriteString(tc, extra)
					}
					if cc.flush() != nil {
						return
					}
				}
			})
			c := newClient(t, Options{TLSConfig: cert.ClientConfig()})
			u := strings.Replace(srv.url("/"), "http:", "https:", 1)
			mustGet(t, c, u)
			if _, body := mustGet(t, c, u); body != "ok" {
				t.Errorf("second response %q, want ok", body)
			}
			if got := srv.conns.Load(); got != 2 {
				t.Errorf("%d connections, want 2", got)
			}
		})
	}
}

// TestIdleTLSConnReused checks that the look into crypto/tls's buffer leaves a
// quiet connection usable: no deadline left on it, nothing lost.
func TestIdleTLSConnReused(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.URL.Path)
	}))
	var conns atomic.Int32
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	defer srv.Close()
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	c := newClient(t, Options{TLSConfig: &tls.Config{RootCAs: roots}})
	for i := range 20 {
		path := fmt.Sprintf("/%d", i)
		if _, body := mustGet(t, c, srv.URL+path); body != path {
			t.Fatalf("request %d: body %q", i, body)
		}
	}
	if got := conns.Load(); got != 1 {
		t.Errorf("%d connections, want 1", got)
	}
}

// corkedConn holds what is written while corked and sends it in one write on
// flush.
type corkedConn struct {
	net.Conn
	corked bool
	buf    []byte
}

func (c *corkedConn) Write(p []byte) (int, error) {
	if c.corked {
		c.buf = append(c.buf, p...)
		return len(p), nil
	}
	return c.Conn.Write(p)
}

func (c *corkedConn) flush() error {
	c.corked = false
	c.Conn.SetWriteDeadline(time.Time{}) // tls.Conn.CloseWrite sets one to fail later writes
	_, err := c.Conn.Write(c.buf)
	c.buf = c.buf[:0]
	return err
}

// Over many hosts (real servers on loopback, a port each), the idle
// connections stay within MaxIdle in all and MaxIdlePerHost on each host, the
// least recently used closed first (the servers see the others close), the
// table of hosts holds only those with idle connections, and an idle
// connection holds no buffers.
func TestIdlePoolBoundedOverManyHosts(t *testing.T) {
	const hosts, maxIdle, perHost = 60, 8, 2
	var open atomic.Int32 // connections the servers have open
	var urls []string
	for range hosts {
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
		srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
			switch st {
			case http.StateNew:
				open.Add(1)
			case http.StateClosed, http.StateHijacked:
				open.Add(-1)
			}
		}
		srv.Start()
		t.Cleanup(srv.Close)
		urls = append(urls, srv.URL)
	}
	c := newClient(t, Options{MaxIdle: maxIdle, MaxIdlePerHost: perHost})
	for i, u := range urls {
		// Three at once: three connections to the host, perHost of them kept.
		var resps []*http.Response
		for range 3 {
			resp, err := c.RoundTrip(mustRequest(t, context.Background(), u))
			if err != nil {
				t.Fatal(err)
			}
			resps = append(resps, resp)
		}
		for _, resp := range resps {
			if b, err := io.ReadAll(resp.Body); err != nil || string(b) != "ok" {
				t.Fatalf("%s: %q, %v", u, b, err)
			}
			resp.Body.Close()
		}
		c.mu.Lock()
		idle, tracked := c.lru.Len(), len(c.hosts)
		per := map[*hostPool]int{}
		buffered := 0
		for e := c.lru.Front(); e != nil; e = e.Next() {
			cn := e.Value
			per[cn.pool]++
			if cn.br != nil || cn.bw != nil {
				buffered++
			}
		}
		c.mu.Unlock()
		if idle > maxIdle || tracked > maxIdle || idle != min(perHost*(i+1), maxIdle) {
			t.Fatalf("after %d hosts: %d idle connections over %d hosts, want %d at most %d", i+1, idle, tracked, min(perHost*(i+1), maxIdle), maxIdle)
		}
		for p, n := range per {
			if n > perHost {
				t.Fatalf("%d idle connections to %s, want at most %d", n, p.key.host, perHost)
			}
		}
		if buffered > 0 {
			t.Fatalf("%d idle connections hold their buffers", buffered)
		}
	}
	// The idle connections are those of the most recent hosts.
	want := map[string]bool{}
	for _, u := range urls[hosts-maxIdle/perHost:] {
		want[strings.TrimPrefix(u, "http://")] = true
	}
	c.mu.Lock()
	for e := c.lru.Front(); e != nil; e = e.Next() {
		cn := e.Value
		if !want[cn.pool.key.host] {
			t.Errorf("an idle connection to %s, not one of the %d most recent hosts", cn.pool.key.host, maxIdle/perHost)
		}
	}
	c.mu.Unlock()
	testutil.WaitFor(t, "the servers to see every connection but the idle ones closed", func() bool { return open.Load() == maxIdle })
	// A kept connection serves the next request to its host, buffers and all.
	before := open.Load()
	if _, body := mustGet(t, c, urls[hosts-1]); body != "ok" {
		t.Fatalf("body %q", body)
	}
	if open.Load() != before {
		t.Error("a request to a host with idle connections opened another")
	}
}
