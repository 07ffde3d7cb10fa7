package httpclient

import (
	"context"
	"encoding/pem"
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
	"testing"
	"time"
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
	p := &fakeProxy{}
	fwd := &http.Transport{} // no Proxy: straight to the origin
	var mu sync.Mutex
	var tunnels []net.Conn
	var wg sync.WaitGroup
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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

// leanLog is the lean client, logging the URL of each request given to it.
type leanLog struct {
	Client
	recorder
}

func (l *leanLog) Do(req *http.Request) (*http.Response, error) {
	l.add(req.URL.String())
	return l.Client.Do(req)
}

// newTestClient returns a client that sends the schemes in proxied through p,
// trusts the httptest certificate, and logs what it gives the lean client.
func newTestClient(t *testing.T, o Options, p *fakeProxy, proxied ...string) (*client, *leanLog) {
	t.Helper()
	t.Setenv("HAUL_NETHTTP", "")
	var pu *url.URL
	if p != nil {
		pu, _ = url.Parse(p.URL)
	}
	o.proxy = func(u *url.URL) (*url.URL, error) {
		if pu != nil && slices.Contains(proxied, u.Scheme) {
			return pu, nil
		}
		return nil, nil
	}
	o.CACert = testCA(t)
	o.ConnectTimeout = 5 * time.Second
	hc, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	c := hc.(*client)
	ll := &leanLog{Client: c.lean}
	c.lean = ll
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
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
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
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newFakeProxy(t)
			c, ll := newTestClient(t, Options{Jobs: 4, HTTP11: tc.http11}, p, tc.proxied...)
			b := plain
			if strings.HasPrefix(tc.url, "https:") {
				b = secure
			}
			b.mu.Lock()
			b.log = nil
			b.mu.Unlock()
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
