package httpclient

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/haul/haul/internal/testutil"
)

// recorder is a log that handlers on other goroutines append to.
type recorder struct {
	mu  sync.Mutex
	log []string
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	r.log = append(r.log, s)
	r.mu.Unlock()
}

func (r *recorder) reset() {
	r.mu.Lock()
	r.log = nil
	r.mu.Unlock()
}

func (r *recorder) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.log)
}

// fakeProxy is an HTTP proxy on loopback, as squid or tinyproxy: it forwards
// absolute-form requests and opens CONNECT tunnels, and logs each one
// ("GET http://host:port/path", "CONNECT host:port").
type fakeProxy struct {
	*httptest.Server
	recorder
}

func newFakeProxy(t *testing.T) *fakeProxy {
	t.Helper()
	return newFakeProxyOver(t, false)
}

// newFakeProxyOver starts a fakeProxy, over TLS (an https:// proxy, with
// httptest's certificate) if tls.
func newFakeProxyOver(t *testing.T, tls bool) *fakeProxy {
	t.Helper()
	p := &fakeProxy{}
	fwd := &http.Transport{} // no Proxy: straight to the origin
	var mu sync.Mutex
	var tunnels []net.Conn
	var wg sync.WaitGroup
	p.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodConnect {
			p.add("CONNECT " + r.Host)
			up, err := net.Dial("tcp", r.Host)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			down, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				up.Close()
				return
			}
			mu.Lock()
			tunnels = append(tunnels, up, down)
			mu.Unlock()
			io.WriteString(down, "HTTP/1.1 200 Connection established\r\n\r\n")
			wg.Add(1)
			go func() {
				defer wg.Done()
				io.Copy(up, brw) // what the client sent after the CONNECT, buffered or not
				up.Close()
			}()
			io.Copy(down, up)
			down.Close()
			return
		}
		if !r.URL.IsAbs() {
			http.Error(w, "not a proxy request: "+r.RequestURI, http.StatusBadRequest)
			return
		}
		p.add(r.Method + " " + r.URL.String())
		out := r.Clone(r.Context())
		out.RequestURI = ""
		resp, err := fwd.RoundTrip(out)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, vv := range resp.Header {
			w.Header()[k] = vv
		}
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	}))
	if tls {
		p.StartTLS()
	} else {
		p.Start()
	}
	t.Cleanup(func() {
		p.Close()
		mu.Lock()
		for _, c := range tunnels {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
		fwd.CloseIdleConnections()
	})
	return p
}

// backend is an origin server that logs the protocol and target of each request
// ("HTTP/2.0 /path") and serves them with h.
type backend struct {
	*httptest.Server
	recorder
}

// newBackend starts a plain http server, or an https one offering HTTP/2 and
// HTTP/1.1 (ALPN).
func newBackend(t *testing.T, https bool, h http.HandlerFunc) *backend {
	t.Helper()
	b := &backend{}
	b.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.add(r.Proto + " " + r.URL.RequestURI())
		h(w, r)
	}))
	if https {
		b.EnableHTTP2 = true
		b.StartTLS()
	} else {
		b.Start()
	}
	t.Cleanup(b.Close)
	return b
}

func serveOK(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok "+r.URL.Path) }

// leanLog is h1, logging the URL of each request the router gives it.
type leanLog struct {
	http.RoundTripper
	recorder
}

func (l *leanLog) RoundTrip(req *http.Request) (*http.Response, error) {
	l.add(req.URL.String())
	return l.RoundTripper.RoundTrip(req)
}

func (l *leanLog) CloseIdleConnections() {
	l.RoundTripper.(interface{ CloseIdleConnections() }).CloseIdleConnections()
}

// newTestClient returns a client that sends the schemes in proxied through p,
// trusts the httptest certificate, and logs what the router gives h1.
func newTestClient(t *testing.T, o Options, p *fakeProxy, proxied ...string) (*client, *leanLog) {
	t.Helper()
	if p != nil {
		pu, _ := url.Parse(p.URL)
		o.proxy = func(u *url.URL) (*url.URL, error) {
			if slices.Contains(proxied, u.Scheme) {
				return pu, nil
			}
			return nil, nil
		}
	} else {
		o.Proxies = &Proxies{} // none: the environment's are not read
	}
	o.CACert = testCA(t)
	o.ConnectTimeout = testutil.Patience(t)
	hc, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	c := hc.(*client)
	ll := &leanLog{}
	if r, ok := c.hc.Transport.(*router); ok && r.h1 != nil {
		ll.RoundTripper = r.h1
		r.h1 = ll
	}
	t.Cleanup(c.CloseIdleConnections)
	return c, ll
}

// testCA writes the certificate of httptest's TLS servers (the same for all)
// to a PEM file.
func testCA(t *testing.T) string {
	t.Helper()
	s := httptest.NewTLSServer(http.NotFoundHandler())
	defer s.Close()
	f := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// get does a GET with the given header fields ("Name: value") and returns the
// response with its body read.
func get(t *testing.T, c Client, ctx context.Context, rawURL string, fields ...string) (*http.Response, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, testutil.Patience(t))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fields {
		k, v, _ := strings.Cut(f, ": ")
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return resp, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

func eq(a, b []string) bool { return slices.Equal(a, b) || len(a)+len(b) == 0 }

// TestRoutes checks that a request of each scheme goes where it should: direct
// or through the proxy set for its scheme, over HTTP/2 where net/http would use
// it, through h1 where it can.
func TestRoutes(t *testing.T) {
	plain := newBackend(t, false, serveOK)
	secure := newBackend(t, true, serveOK)
	plainHost, secureHost := plain.Listener.Addr().String(), secure.Listener.Addr().String()
	for _, tc := range []struct {
		name      string
		url       string
		http11    bool
		proxied   []string // schemes sent through the proxy
		wantProxy []string // what the proxy saw
		wantLean  bool     // whether h1 was given the request
		wantProto string   // the protocol the origin saw
	}{
		{"HTTPDirect", plain.URL + "/f", false, nil, nil, true, "HTTP/1.1"},
		{"HTTPDirectHTTPSProxied", plain.URL + "/f", false, []string{"https"}, nil, true, "HTTP/1.1"},
		{"HTTPViaProxy", plain.URL + "/f", false, []string{"http"}, []string{"GET http://" + plainHost + "/f"}, false, "HTTP/1.1"},
		{"HTTPViaProxyHTTP11", plain.URL + "/f", true, []string{"http"}, []string{"GET http://" + plainHost + "/f"}, false, "HTTP/1.1"},
		{"HTTPSDirectH2", secure.URL + "/f", false, nil, nil, false, "HTTP/2.0"},
		{"HTTPSDirectH2HTTPProxied", secure.URL + "/f", false, []string{"http"}, nil, false, "HTTP/2.0"},
		{"HTTPSDirectHTTP11", secure.URL + "/f", true, nil, nil, true, "HTTP/1.1"},
		{"HTTPSViaProxyH2", secure.URL + "/f", false, []string{"https"}, []string{"CONNECT " + secureHost}, false, "HTTP/2.0"},
		// --http1.1 holds inside the tunnel too.
		{"HTTPSViaProxyHTTP11", secure.URL + "/f", true, []string{"https"}, []string{"CONNECT " + secureHost}, false, "HTTP/1.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newFakeProxy(t)
			c, ll := newTestClient(t, Options{Jobs: 4, HTTP11: tc.http11}, p, tc.proxied...)
			b := plain
			if strings.HasPrefix(tc.url, "https:") {
				b = secure
			}
			b.reset()
			resp, body, err := get(t, c, context.Background(), tc.url)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 200 || body != "ok /f" {
				t.Errorf("got %d %q", resp.StatusCode, body)
			}
			if got := p.get(); !eq(got, tc.wantProxy) {
				t.Errorf("proxy saw %q, want %q", got, tc.wantProxy)
			}
			if got := len(ll.get()) > 0; got != tc.wantLean {
				t.Errorf("through h1: %v, want %v", got, tc.wantLean)
			}
			if got, want := b.get(), []string{tc.wantProto + " /f"}; !eq(got, want) {
				t.Errorf("origin saw %q, want %q", got, want)
			}
		})
	}
}

// redirector serves /to/N with a 302 to other() + "/N" and anything else with
// serveOK.
func redirector(other func() string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if n, ok := strings.CutPrefix(r.URL.Path, "/to/"); ok {
			http.Redirect(w, r, other()+"/"+n, http.StatusFound)
			return
		}
		serveOK(w, r)
	}
}

// TestRedirectHTTPToHTTPS checks that the https hop of a chain started on
// http:// is routed as an https request: through the https proxy when one is
// set, over HTTP/2, not followed by h1 with its own TLS.
func TestRedirectHTTPToHTTPS(t *testing.T) {
	secure := newBackend(t, true, serveOK)
	plain := newBackend(t, false, redirector(func() string { return secure.URL }))
	for _, tc := range []struct {
		name      string
		proxied   []string
		wantProxy []string
	}{
		{"Direct", nil, nil},
		{"ViaProxy", []string{"https"}, []string{"CONNECT " + secure.Listener.Addr().String()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plain.reset()
			secure.reset()
			p := newFakeProxy(t)
			c, ll := newTestClient(t, Options{Jobs: 4}, p, tc.proxied...)
			_, body, err := get(t, c, context.Background(), plain.URL+"/to/f")
			if err != nil || body != "ok /f" {
				t.Fatalf("body %q, error %v", body, err)
			}
			if got, want := ll.get(), []string{plain.URL + "/to/f"}; !eq(got, want) {
				t.Errorf("h1 was given %q, want %q", got, want)
			}
			if got := p.get(); !eq(got, tc.wantProxy) {
				t.Errorf("proxy saw %q, want %q", got, tc.wantProxy)
			}
			if got, want := secure.get(), []string{"HTTP/2.0 /f"}; !eq(got, want) {
				t.Errorf("https origin saw %q, want %q", got, want)
			}
		})
	}
}

// TestRedirectHTTPSToHTTPViaProxy is the mirror case: with --http1.1, h1 makes
// the https request, and the http hop must go through the http proxy.
func TestRedirectHTTPSToHTTPViaProxy(t *testing.T) {
	plain := newBackend(t, false, serveOK)
	secure := newBackend(t, true, redirector(func() string { return plain.URL }))
	p := newFakeProxy(t)
	c, ll := newTestClient(t, Options{Jobs: 4, HTTP11: true}, p, "http")
	_, body, err := get(t, c, context.Background(), secure.URL+"/to/f")
	if err != nil || body != "ok /f" {
		t.Fatalf("body %q, error %v", body, err)
	}
	if got, want := ll.get(), []string{secure.URL + "/to/f"}; !eq(got, want) {
		t.Errorf("h1 was given %q, want %q", got, want)
	}
	if got, want := secure.get(), []string{"HTTP/1.1 /to/f"}; !eq(got, want) {
		t.Errorf("https origin saw %q, want %q", got, want)
	}
	if got, want := p.get(), []string{"GET " + plain.URL + "/f"}; !eq(got, want) {
		t.Errorf("proxy saw %q, want %q", got, want)
	}
}

// TestRedirectPolicyAcrossClients checks the redirect policy on a chain that
// changes client at each hop (h1 for http, h2 for https): credentials go
// only to the first origin, a Referer given is sent on but not from https to http,
// and each hop restarts the stall timer.
func TestRedirectPolicyAcrossClients(t *testing.T) {
	var seen recorder // path, Authorization, Cookie, Referer
	var plain, secure *backend
	h := func(w http.ResponseWriter, r *http.Request) {
		seen.add(fmt.Sprintf("%s auth=%q cookie=%q ref=%q", r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("Cookie"), r.Header.Get("Referer")))
		switch r.URL.Path {
		case "/start":
			http.Redirect(w, r, secure.URL+"/mid", http.StatusMovedPermanently)
		case "/mid":
			http.Redirect(w, r, "/last", http.StatusSeeOther)
		case "/last":
			http.Redirect(w, r, plain.URL+"/end", http.StatusTemporaryRedirect)
		default:
			serveOK(w, r)
		}
	}
	plain, secure = newBackend(t, false, h), newBackend(t, true, h)
	c, ll := newTestClient(t, Options{Jobs: 4}, nil)
	hops := 0
	ctx := WithHop(context.Background(), func() { hops++ })
	resp, body, err := get(t, c, ctx, plain.URL+"/start", "Authorization: Bearer t", "Cookie: a=b", "Referer: https://ref.example/")
	if err != nil || body != "ok /end" {
		t.Fatalf("body %q, error %v", body, err)
	}
	if resp.Request.URL.String() != plain.URL+"/end" {
		t.Errorf("final request %v", resp.Request.URL)
	}
	want := []string{
		`/start auth="Bearer t" cookie="a=b" ref="https://ref.example/"`,
		`/mid auth="" cookie="" ref="https://ref.example/"`,
		`/last auth="" cookie="" ref="https://ref.example/"`,
		// The first origin again: its credentials are its own (as with one
		// client, h1 or net/http); no Referer from https to http.
		`/end auth="Bearer t" cookie="a=b" ref=""`,
	}
	if got := seen.get(); !eq(got, want) {
		t.Errorf("requests:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if hops != 3 {
		t.Errorf("%d hops, want 3", hops)
	}
	if got, want := ll.get(), []string{plain.URL + "/start", plain.URL + "/end"}; !eq(got, want) {
		t.Errorf("h1 was given %q, want %q", got, want)
	}
	if got, want := secure.get(), []string{"HTTP/2.0 /mid", "HTTP/2.0 /last"}; !eq(got, want) {
		t.Errorf("https origin saw %q, want %q", got, want)
	}
}

// TestRedirectLimitAcrossClients checks that redirects are counted over the
// whole chain, not per client: 10 are followed, the 11th fails.
func TestRedirectLimitAcrossClients(t *testing.T) {
	var plain, secure *backend
	// /to/N redirects to the other server's /to/N-1, /to/0 answers.
	h := func(other **backend) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			n := 0
			fmt.Sscanf(r.URL.Path, "/to/%d", &n)
			if n == 0 {
				serveOK(w, r)
				return
			}
			http.Redirect(w, r, fmt.Sprintf("%s/to/%d", (*other).URL, n-1), http.StatusFound)
		}
	}
	plain, secure = newBackend(t, false, h(&secure)), newBackend(t, true, h(&plain))
	c, _ := newTestClient(t, Options{Jobs: 4}, nil)
	_, body, err := get(t, c, context.Background(), plain.URL+"/to/10")
	if err != nil || body != "ok /to/0" {
		t.Errorf("10 redirects: body %q, error %v", body, err)
	}
	if got := secure.get(); len(got) != 5 || got[0] != "HTTP/2.0 /to/9" {
		t.Errorf("https origin saw %q", got)
	}
	plain.reset()
	secure.reset()
	resp, _, err := get(t, c, context.Background(), plain.URL+"/to/11")
	var ue *url.Error
	if !errors.Is(err, ErrTooManyRedirects) || !errors.As(err, &ue) || resp == nil || resp.StatusCode != http.StatusFound {
		t.Errorf("11 redirects: response %v, error %v", resp, err)
	}
	if n := len(plain.get()) + len(secure.get()); n != 11 {
		t.Errorf("%d requests made, want 11", n)
	}
}

// Over HTTPS, a list spread over many hosts opens about one connection per
// host, as over HTTP/1.1, while many requests in flight to one host known to
// speak HTTP/2 are spread over ceil(in flight/streams) connections: 16 at
// --streams 4 on 2 to 4, never more.
func TestTLSConnectionsPerHost(t *testing.T) {
	var conns sync.Map // server URL -> *atomic.Int32
	// gate, once opened for a server, holds its responses until more
	// requests are in flight at once than one connection carries (--streams
	// 4): a second connection is then needed.
	type gate struct {
		on       atomic.Bool
		inflight atomic.Int32
		open     chan struct{}
		once     sync.Once
	}
	newServer := func(g *gate) *httptest.Server {
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if g != nil && g.on.Load() {
				if g.inflight.Add(1) > 4 {
					g.once.Do(func() { close(g.open) })
				}
				select {
				case <-g.open:
				case <-r.Context().Done():
				case <-time.After(testutil.Patience(t)):
				}
				g.inflight.Add(-1)
			} else {
				time.Sleep(5 * time.Millisecond) // widens the overlap of requests to many hosts
			}
			io.WriteString(w, "x")
		}))
		srv.EnableHTTP2 = true
		var n atomic.Int32
		srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				n.Add(1)
			}
		}
		srv.StartTLS()
		conns.Store(srv.URL, &n)
		return srv
	}
	c, err := New(Options{Jobs: 16, Streams: 4, ConnectTimeout: testutil.Patience(t), Insecure: true,
		proxy: func(*url.URL) (*url.URL, error) { return nil, nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	fetch := func(urls []string) {
		var wg sync.WaitGroup
		ch := make(chan string)
		for range 16 {
			wg.Go(func() {
				for u := range ch {
					resp, err := getURL(c, u)
					if err != nil {
						t.Error(err)
						continue
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		}
		for _, u := range urls {
			ch <- u
		}
		close(ch)
		wg.Wait()
	}
	var servers []*httptest.Server
	var urls []string
	for range 20 {
		s := newServer(nil)
		defer s.Close()
		servers = append(servers, s)
	}
	for i := range 400 {
		urls = append(urls, fmt.Sprintf("%s/f%d", servers[i%len(servers)].URL, i))
	}
	fetch(urls)
	total := int32(0)
	for _, s := range servers {
		n, _ := conns.Load(s.URL)
		total += n.(*atomic.Int32).Load()
	}
	if total > 2*int32(len(servers)) {
		t.Errorf("%d connections for %d hosts, want about one per host", total, len(servers))
	}
	g := &gate{open: make(chan struct{})}
	one := newServer(g)
	defer one.Close()
	// Known to speak HTTP/2 first: before that, concurrent requests each
	// open a connection, as over HTTP/1.1 (the engine keeps those to -j).
	fetch([]string{one.URL + "/warm"})
	g.on.Store(true)
	urls = urls[:0]
	for i := range 400 {
		urls = append(urls, fmt.Sprintf("%s/f%d", one.URL, i))
	}
	fetch(urls)
	if n, _ := conns.Load(one.URL); n.(*atomic.Int32).Load() < 2 || n.(*atomic.Int32).Load() > 4 {
		t.Errorf("%d connections for 16 requests in flight to one host at --streams 4, want 2 to 4", n.(*atomic.Int32).Load())
	}
}
