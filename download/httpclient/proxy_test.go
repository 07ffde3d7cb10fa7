package httpclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/haul/haul/download/internal/dns"
	"github.com/haul/haul/download/internal/retry"
	"github.com/haul/haul/internal/realserver"
	"github.com/haul/haul/internal/testutil"
)

// env is a getenv over a map.
func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// The proxy of each request, from --proxy and the environment as curl reads
// them: per scheme, ALL_PROXY as the fallback of both, NO_PROXY over both
// (and over --proxy), --proxy over the environment, --proxy "" for none.
func TestProxiesForURL(t *testing.T) {
	const (
		a = "http://a.proxy:3128"
		b = "http://b.proxy:3128"
		s = "socks5://s.proxy:1080"
	)
	flag := func(v string) *string { return &v }
	for _, tc := range []struct {
		name string
		env  map[string]string
		flag *string
		want map[string]string // request URL: its proxy, "" for none
	}{
		{"Nothing", nil, nil, map[string]string{"http://example.com/": "", "https://example.com/": ""}},
		{"HTTPProxyForHTTPOnly", map[string]string{"http_proxy": a}, nil,
			map[string]string{"http://example.com/": a, "https://example.com/": ""}},
		{"UpperCaseHTTPProxy", map[string]string{"HTTP_PROXY": a}, nil,
			map[string]string{"http://example.com/": a, "https://example.com/": ""}},
		{"UpperCaseHTTPProxyIgnoredInCGI", map[string]string{"HTTP_PROXY": a, "REQUEST_METHOD": "GET"}, nil,
			map[string]string{"http://example.com/": ""}},
		{"LowerCaseWins", map[string]string{"https_proxy": a, "HTTPS_PROXY": b, "http_proxy": a, "HTTP_PROXY": b}, nil,
			map[string]string{"https://example.com/": a, "http://example.com/": a}},
		{"AllProxyForBoth", map[string]string{"ALL_PROXY": s}, nil,
			map[string]string{"http://example.com/": s, "https://example.com/": s}},
		{"LowerCaseAllProxyWins", map[string]string{"ALL_PROXY": a, "all_proxy": b}, nil,
			map[string]string{"http://example.com/": b}},
		{"AllProxyOnlyWhereNoOwn", map[string]string{"https_proxy": a, "ALL_PROXY": b}, nil,
			map[string]string{"https://example.com/": a, "http://example.com/": b}},
		{"EmptyIsUnset", map[string]string{"https_proxy": "", "ALL_PROXY": b}, nil,
			map[string]string{"https://example.com/": b}},
		{"SchemeLessIsHTTP", map[string]string{"ALL_PROXY": "a.proxy:3128"}, nil,
			map[string]string{"https://example.com/": a}},
		{"SOCKSPortDefault", map[string]string{"ALL_PROXY": "socks5h://user:pw@s.proxy"}, nil,
			map[string]string{"https://example.com/": "socks5h://user:pw@s.proxy:1080"}},
		{"NoProxyDomains", map[string]string{"ALL_PROXY": a, "NO_PROXY": "example.com, .example.org,*.example.net,Example.EDU"}, nil,
			map[string]string{
				"http://example.com/": "", "https://www.example.com:8443/": "", "http://www.example.com./": "",
				"http://notexample.com/": a, "http://example.com.evil/": a,
				"http://example.org/": "", "http://a.b.example.org/": "",
				"http://x.example.net/": "", "http://www.example.edu/": "",
			}},
		{"NoProxyPorts", map[string]string{"ALL_PROXY": a, "NO_PROXY": "example.com:8080,10.0.0.1:443,[fd00::1]:80"}, nil,
			map[string]string{
				"http://example.com:8080/": "", "http://example.com/": a,
				"https://10.0.0.1/": "", "http://10.0.0.1/": a,
				"http://[fd00::1]/": "", "https://[fd00::1]/": a,
			}},
		{"NoProxyAddresses", map[string]string{"ALL_PROXY": a, "NO_PROXY": "10.0.0.0/8,192.168.1.7,fd00::/8"}, nil,
			map[string]string{
				"http://10.1.2.3/": "", "http://11.0.0.1/": a, "http://192.168.1.7:81/": "", "http://192.168.1.8/": a,
				"http://[fd12::1]/": "", "http://[fe80::1]/": a,
				"http://10.example/": a, // a name is not an address
			}},
		{"NoProxyStar", map[string]string{"ALL_PROXY": a, "NO_PROXY": "*"}, nil,
			map[string]string{"http://example.com/": "", "https://10.0.0.1/": ""}},
		{"LowerCaseNoProxyWins", map[string]string{"ALL_PROXY": a, "no_proxy": "example.org", "NO_PROXY": "example.com"}, nil,
			map[string]string{"http://example.com/": a, "http://example.org/": ""}},
		{"EnvironmentSparesLoopback", map[string]string{"ALL_PROXY": a}, nil,
			map[string]string{"http://localhost:8080/": "", "http://127.0.0.1/": "", "https://127.1.2.3/": "", "http://[::1]/": "",
				"http://example.com/": a}},
		{"FlagWinsOverEnvironment", map[string]string{"http_proxy": a, "HTTPS_PROXY": a, "ALL_PROXY": a}, flag(s),
			map[string]string{"http://example.com/": s, "https://example.com/": s}},
		{"FlagTakesLoopback", nil, flag(s),
			map[string]string{"http://localhost/": s, "https://127.0.0.1:8443/": s, "http://[::1]/": s}},
		{"NoProxyAppliesToFlag", map[string]string{"NO_PROXY": "example.com,127.0.0.1"}, flag(s),
			map[string]string{"http://example.com/": "", "https://127.0.0.1/": "", "http://example.org/": s}},
		{"EmptyFlagIsNone", map[string]string{"http_proxy": a, "HTTPS_PROXY": a, "ALL_PROXY": a}, flag(""),
			map[string]string{"http://example.com/": "", "https://example.com/": ""}},
		{"FlagSkipsABadEnvironment", map[string]string{"ALL_PROXY": "ftp://x"}, flag(s),
			map[string]string{"http://example.com/": s}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ReadProxies(tc.flag, env(tc.env))
			if err != nil {
				t.Fatal(err)
			}
			for raw, want := range tc.want {
				u, err := url.Parse(raw)
				if err != nil {
					t.Fatal(err)
				}
				got := ""
				if pu := p.For(u); pu != nil {
					got = pu.String()
				}
				if got != want {
					t.Errorf("%s: proxy %q, want %q", raw, got, want)
				}
			}
		})
	}
}

// A proxy URL that is malformed, has another scheme or no host, or whose
// SOCKS5 credentials RFC 1929 cannot carry, is an error naming where it came
// from, without its password.
func TestReadProxiesErrors(t *testing.T) {
	flag := func(v string) *string { return &v }
	for _, tc := range []struct {
		name string
		env  map[string]string
		flag *string
		want string
	}{
		{"FlagScheme", nil, flag("ftp://p.example:21"), `--proxy "ftp://p.example:21": unsupported proxy scheme "ftp"`},
		{"FlagNoHost", nil, flag("socks5://"), `--proxy "socks5://": no host`},
		{"FlagMalformed", nil, flag("http://u:secret@[::1"), "--proxy: not a proxy URL: missing ']' in host"},
		{"FlagPort", nil, flag("socks5h://p.example:70000"), `--proxy "socks5h://p.example:70000": port 70000 out of range`},
		{"FlagSOCKSUser", nil, flag("socks5://:secret@p.example"), `--proxy "socks5://:xxxxx@p.example": a SOCKS5 user name is 1 to 255 bytes`},
		{"AllProxy", map[string]string{"ALL_PROXY": "gopher://p.example"}, nil, `ALL_PROXY in the environment "gopher://p.example": unsupported proxy scheme "gopher"`},
		{"HTTPSProxy", map[string]string{"https_proxy": "http://:3128"}, nil, `https_proxy in the environment "http://:3128": no host`},
		{"HTTPProxy", map[string]string{"http_proxy": "http://a b"}, nil, "http_proxy in the environment: not a proxy URL: invalid character"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadProxies(tc.flag, env(tc.env))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one with %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("the error shows the password: %v", err)
			}
		})
	}
}

// socksOrigin is the origin of the SOCKS5 tests: three files served on
// 127.0.0.1 and, where the machine has ::1, on [::1] at the same port (the
// proxy, given "localhost", connects to the first address the system's
// resolver gives, which may be either), over TLS with HTTP/2 (a certificate
// for localhost and 127.0.0.1) if asked. It logs the protocol of each
// request and counts the connections it accepted.
type socksOrigin struct {
	port   string
	scheme string
	files  map[string][]byte
	recorder
	conns atomic.Int32
}

func newSOCKSOrigin(t *testing.T, tls bool, cert testutil.Cert) *socksOrigin {
	t.Helper()
	o := &socksOrigin{scheme: "http", files: map[string][]byte{}}
	for i, n := range []int{1, 100 << 10, 3 << 20} {
		o.files[fmt.Sprintf("/f%d", i)] = testutil.Payload(uint64(i+1), n)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			o.add(r.Proto + " " + r.URL.Path)
			b, ok := o.files[r.URL.Path]
			if !ok {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Length", strconv.Itoa(len(b)))
			w.Write(b)
		}),
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				o.conns.Add(1)
			}
		},
	}
	if tls {
		o.scheme = "https"
		srv.TLSConfig = cert.ServerConfig()
		srv.TLSConfig.NextProtos = []string{"h2", "http/1.1"}
	}
	var wg sync.WaitGroup
	for _, l := range listenLoopbacks(t) {
		o.port = fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
		wg.Go(func() {
			if tls {
				srv.ServeTLS(l, "", "")
			} else {
				srv.Serve(l)
			}
		})
	}
	t.Cleanup(func() {
		srv.Close()
		wg.Wait()
	})
	return o
}

// listenLoopbacks listens on a port of 127.0.0.1 and, where the machine has
// an IPv6 loopback, on the same port of ::1.
func listenLoopbacks(t *testing.T) []net.Listener {
	t.Helper()
	for {
		l4, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l6, err := net.Listen("tcp", net.JoinHostPort("::1", fmt.Sprint(l4.Addr().(*net.TCPAddr).Port)))
		switch {
		case err == nil:
			return []net.Listener{l4, l6}
		case errors.Is(err, syscall.EADDRINUSE):
			l4.Close() // taken on ::1: another port
		default:
			return []net.Listener{l4} // no IPv6 loopback
		}
	}
}

// url is the URL of a file of o named by host.
func (o *socksOrigin) url(host, path string) string {
	return o.scheme + "://" + net.JoinHostPort(host, o.port) + path
}

// fetchAll gets every file of o by host, in turn, and checks each byte and
// the protocol it came over.
func (o *socksOrigin) fetchAll(t *testing.T, c Client, host string) {
	t.Helper()
	for _, path := range []string{"/f0", "/f1", "/f2"} {
		resp, body, err := get(t, c, context.Background(), o.url(host, path))
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if want := map[string]string{"http": "HTTP/1.1", "https": "HTTP/2.0"}[o.scheme]; resp.Proto != want {
			t.Errorf("%s came over %s, want %s", path, resp.Proto, want)
		}
		if body != string(o.files[path]) {
			t.Errorf("%s: %d bytes differ from the %d served", path, len(body), len(o.files[path]))
		}
	}
}

// lookups is a resolver for the tests that knows some names (all at
// 127.0.0.1) and logs every name it is asked.
type lookups struct {
	known map[string]bool
	recorder
}

func (l *lookups) lookup(_ context.Context, host string) (dns.Answer, error) {
	l.add(host)
	if l.known[host] {
		return dns.Answer{Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, TTL: -1}, nil
	}
	return dns.Answer{}, &net.DNSError{Err: "not known to the test", Name: host, IsNotFound: true}
}

// newSOCKSClient returns a client through proxy (--proxy's value, with the
// environment's NO_PROXY given as noProxy) that trusts cert and resolves
// with l.
func newSOCKSClient(t *testing.T, o Options, proxy string, cert testutil.Cert, l *lookups, noProxy ...string) Client {
	t.Helper()
	ps, err := ReadProxies(&proxy, env(map[string]string{"NO_PROXY": strings.Join(noProxy, ",")}))
	if err != nil {
		t.Fatal(err)
	}
	o.Proxies, o.lookup = ps, l.lookup
	o.CACert = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(o.CACert, cert.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	o.ConnectTimeout = testutil.Patience(t)
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// Requests go through a real SOCKS5 server (microsocks), over h1 (http://)
// and h2 (https://, HTTP/2 through the proxy), on one connection through it
// for all the files of a host: with socks5:// haul looks the name up (a name
// only haul's resolver knows works; one only the proxy's knows does not),
// with socks5h:// it gives the proxy the name (localhost, which haul's
// resolver here does not know).
func TestSOCKS5(t *testing.T) {
	cert := testutil.SelfSigned(t)
	proxy := realserver.StartSOCKS(t, realserver.SOCKSOptions{})
	for _, tc := range []struct {
		name      string
		scheme    string // of the proxy
		tls       bool
		host      string          // in the URLs
		known     map[string]bool // by haul's resolver
		wantAsked []string        // of haul's resolver
	}{
		{"Socks5ResolvesInHaul", "socks5", false, "origin.invalid.", map[string]bool{"origin.invalid.": true}, []string{"origin.invalid."}},
		{"Socks5HTTP2", "socks5", true, "localhost", map[string]bool{"localhost": true}, []string{"localhost"}},
		{"Socks5hGivesTheProxyTheName", "socks5h", false, "localhost", nil, nil},
		{"Socks5hHTTP2", "socks5h", true, "localhost", nil, nil},
		{"Socks5Address", "socks5", false, "127.0.0.1", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := newSOCKSOrigin(t, tc.tls, cert)
			l := &lookups{known: tc.known}
			c := newSOCKSClient(t, Options{Jobs: 4}, proxy.URL(tc.scheme, "", ""), cert, l)
			before := proxy.Connections()
			o.fetchAll(t, c, tc.host)
			if n := proxy.Connections() - before; n != 1 {
				t.Errorf("the proxy made %d connections, want 1 (all three files on it)\n%s", n, proxy.Log())
			}
			if n := o.conns.Load(); n != 1 {
				t.Errorf("the origin took %d connections, want 1", n)
			}
			if got := l.get(); !eq(got, tc.wantAsked) {
				t.Errorf("haul looked up %q, want %q", got, tc.wantAsked)
			}
		})
	}
	// socks5:// never hands the proxy a name: one haul cannot resolve fails,
	// though the proxy could have.
	t.Run("Socks5FailsWhereHaulCannotResolve", func(t *testing.T) {
		o := newSOCKSOrigin(t, false, cert)
		l := &lookups{}
		c := newSOCKSClient(t, Options{Jobs: 4}, proxy.URL("socks5", "", ""), cert, l)
		before := proxy.Connections()
		_, _, err := get(t, c, context.Background(), o.url("localhost", "/f0"))
		var dnsErr *net.DNSError
		if !errors.As(err, &dnsErr) || dnsErr.Err != "not known to the test" {
			t.Errorf("error %v, want the lookup's", err)
		}
		if got := l.get(); !eq(got, []string{"localhost"}) {
			t.Errorf("haul looked up %q, want localhost", got)
		}
		if n := proxy.Connections() - before; n != 0 || o.conns.Load() != 0 {
			t.Errorf("%d connections through the proxy, %d at the origin; want none", n, o.conns.Load())
		}
	})
}

// What the lean clients leave to net/http's Transport (a HEAD here; every
// request with NetHTTP) goes through the SOCKS5 proxy too, with the same
// meaning of socks5:// and socks5h://, HTTP/2 included (Go's Transport alone
// would treat socks5:// as socks5h://).
func TestSOCKS5ThroughNetHTTP(t *testing.T) {
	cert := testutil.SelfSigned(t)
	proxy := realserver.StartSOCKS(t, realserver.SOCKSOptions{})
	for _, scheme := range []string{"socks5", "socks5h"} {
		t.Run(scheme, func(t *testing.T) {
			t.Run("NetHTTP", func(t *testing.T) {
				o := newSOCKSOrigin(t, true, cert)
				l := &lookups{known: map[string]bool{"localhost": true}}
				c := newSOCKSClient(t, Options{Jobs: 4, NetHTTP: true}, proxy.URL(scheme, "", ""), cert, l)
				before := proxy.Connections()
				o.fetchAll(t, c, "localhost")
				if n := proxy.Connections() - before; n != 1 || o.conns.Load() != 1 {
					t.Errorf("%d connections through the proxy, %d at the origin; want 1", n, o.conns.Load())
				}
				if asked := len(l.get()) > 0; asked != (scheme == "socks5") {
					t.Errorf("haul looked up %q with %s", l.get(), scheme)
				}
			})
			t.Run("Head", func(t *testing.T) {
				o := newSOCKSOrigin(t, false, cert)
				l := &lookups{known: map[string]bool{"localhost": true}}
				c := newSOCKSClient(t, Options{Jobs: 4}, proxy.URL(scheme, "", ""), cert, l)
				before := proxy.Connections()
				ctx, cancel := context.WithTimeout(context.Background(), testutil.Patience(t))
				defer cancel()
				req, err := http.NewRequestWithContext(ctx, http.MethodHead, o.url("localhost", "/f2"), nil)
				if err != nil {
					t.Fatal(err)
				}
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != 200 || resp.ContentLength != int64(len(o.files["/f2"])) {
					t.Errorf("HEAD: %d, length %d", resp.StatusCode, resp.ContentLength)
				}
				if got := o.get(); !eq(got, []string{"HTTP/1.1 /f2"}) {
					t.Errorf("origin saw %q", got)
				}
				if n := proxy.Connections() - before; n != 1 {
					t.Errorf("%d connections through the proxy, want 1", n)
				}
				if asked := len(l.get()) > 0; asked != (scheme == "socks5") {
					t.Errorf("haul looked up %q with %s", l.get(), scheme)
				}
			})
		})
	}
}

// A proxy that asks for a user name and password (RFC 1929) lets through
// only a client that gives the right ones (a refused login is not worth
// another attempt), and the requests stop with the proxy: they went through
// it.
func TestSOCKS5Login(t *testing.T) {
	cert := testutil.SelfSigned(t)
	proxy := realserver.StartSOCKS(t, realserver.SOCKSOptions{User: "alice", Password: "s3cret"})
	o := newSOCKSOrigin(t, true, cert)
	for _, tc := range []struct{ name, user, password string }{
		{"None", "", ""},
		{"WrongPassword", "alice", "guess"},
		{"WrongUser", "bob", "s3cret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newSOCKSClient(t, Options{Jobs: 4}, proxy.URL("socks5h", tc.user, tc.password), cert, &lookups{})
			_, _, err := get(t, c, context.Background(), o.url("127.0.0.1", "/f0"))
			if err == nil {
				t.Fatal("the proxy let the request through")
			}
			if retry.Retryable(err) {
				t.Errorf("a refused login is retryable: %v", err)
			}
			if tc.password != "" && strings.Contains(err.Error(), tc.password) {
				t.Errorf("the error shows the password: %v", err)
			}
		})
	}
	if n := o.conns.Load(); n != 0 {
		t.Fatalf("the origin took %d connections from clients the proxy refused", n)
	}
	c := newSOCKSClient(t, Options{Jobs: 4}, proxy.URL("socks5h", "alice", "s3cret"), cert, &lookups{})
	o.fetchAll(t, c, "127.0.0.1")
	proxy.Stop()
	c.CloseIdleConnections()
	if _, _, err := get(t, c, context.Background(), o.url("127.0.0.1", "/f0")); err == nil || !retry.Retryable(err) {
		t.Errorf("with the proxy stopped: error %v, want one worth another attempt", err)
	}
}

// A connection through a SOCKS5 proxy and a direct one to the same host are
// pooled apart: a request that goes direct never gets a connection through
// the proxy, nor the reverse, and each reuses its own.
func TestSOCKS5PooledApartFromDirect(t *testing.T) {
	cert := testutil.SelfSigned(t)
	proxy := realserver.StartSOCKS(t, realserver.SOCKSOptions{})
	for _, tls := range []bool{false, true} {
		t.Run(map[bool]string{false: "H1", true: "H2"}[tls], func(t *testing.T) {
			o := newSOCKSOrigin(t, tls, cert)
			pu, _ := url.Parse(proxy.URL("socks5", "", ""))
			var via atomic.Bool
			c := newSOCKSClient(t, Options{Jobs: 4, proxy: func(*url.URL) (*url.URL, error) {
				if via.Load() {
					return pu, nil
				}
				return nil, nil
			}}, "", cert, &lookups{})
			before := proxy.Connections()
			for i, step := range []struct {
				via               bool
				wantProxy, wantAt int // connections through the proxy, at the origin, so far
			}{
				{false, 0, 1}, {true, 1, 2}, {false, 1, 2}, {true, 1, 2}, {false, 1, 2},
			} {
				via.Store(step.via)
				if _, body, err := get(t, c, context.Background(), o.url("127.0.0.1", "/f1")); err != nil || body != string(o.files["/f1"]) {
					t.Fatalf("request %d: %d bytes, error %v", i, len(body), err)
				}
				if n, at := proxy.Connections()-before, int(o.conns.Load()); n != step.wantProxy || at != step.wantAt {
					t.Fatalf("after request %d (through the proxy: %v): %d connections through the proxy, %d at the origin; want %d, %d",
						i, step.via, n, at, step.wantProxy, step.wantAt)
				}
			}
		})
	}
}

// The proxy's own name is looked up through the run's resolver, once.
func TestSOCKS5ProxyNameResolvedOnce(t *testing.T) {
	cert := testutil.SelfSigned(t)
	proxy := realserver.StartSOCKS(t, realserver.SOCKSOptions{})
	o := newSOCKSOrigin(t, false, cert)
	l := &lookups{known: map[string]bool{"socks.invalid.": true}}
	c := newSOCKSClient(t, Options{Jobs: 4}, "socks5h://socks.invalid.:"+fmt.Sprint(proxy.Port), cert, l)
	o.fetchAll(t, c, "127.0.0.1")
	c.CloseIdleConnections()
	o.fetchAll(t, c, "127.0.0.1")
	if got := l.get(); !slices.Equal(got, []string{"socks.invalid."}) {
		t.Errorf("haul looked up %q, want the proxy's name once", got)
	}
	if n := o.conns.Load(); n != 2 {
		t.Errorf("the origin took %d connections, want 2", n)
	}
}

// An http:// or https:// proxy given with --proxy takes every request, to
// loopback origins too, through net/http: plain http in absolute form, https
// in a CONNECT tunnel with HTTP/2 inside; NO_PROXY sends a host around it.
func TestHTTPProxyFromFlag(t *testing.T) {
	plain := newBackend(t, false, serveOK)
	secure := newBackend(t, true, serveOK)
	for _, overTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "HTTPProxy", true: "HTTPSProxy"}[overTLS], func(t *testing.T) {
			p := newFakeProxyOver(t, overTLS)
			ps, err := ReadProxies(&p.URL, env(map[string]string{"NO_PROXY": "localhost"}))
			if err != nil {
				t.Fatal(err)
			}
			c, err := New(Options{Jobs: 4, Proxies: ps, CACert: testCA(t), ConnectTimeout: testutil.Patience(t)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(c.CloseIdleConnections)
			plain.reset()
			secure.reset()
			around := strings.Replace(plain.URL, "127.0.0.1", "localhost", 1) + "/around"
			for _, u := range []string{plain.URL + "/f", secure.URL + "/f", around} {
				if _, body, err := get(t, c, context.Background(), u); err != nil || !strings.HasPrefix(body, "ok /") {
					t.Fatalf("%s: body %q, error %v", u, body, err)
				}
			}
			if got, want := p.get(), []string{"GET " + plain.URL + "/f", "CONNECT " + secure.Listener.Addr().String()}; !eq(got, want) {
				t.Errorf("proxy saw %q, want %q", got, want)
			}
			if got, want := secure.get(), []string{"HTTP/2.0 /f"}; !eq(got, want) {
				t.Errorf("https origin saw %q, want %q", got, want)
			}
			if got, want := plain.get(), []string{"HTTP/1.1 /f", "HTTP/1.1 /around"}; !eq(got, want) {
				t.Errorf("http origin saw %q, want %q", got, want)
			}
		})
	}
}

// Each hop of a redirect takes its own way out: from an origin that NO_PROXY
// sends direct to one through the SOCKS5 proxy, over HTTP/2 there.
func TestSOCKS5RedirectHop(t *testing.T) {
	cert := testutil.SelfSigned(t)
	proxy := realserver.StartSOCKS(t, realserver.SOCKSOptions{})
	o := newSOCKSOrigin(t, true, cert)
	first := newBackend(t, false, redirector(func() string { return o.url("localhost", "") }))
	c := newSOCKSClient(t, Options{Jobs: 4}, proxy.URL("socks5h", "", ""), cert, &lookups{}, "127.0.0.1")
	before := proxy.Connections()
	resp, body, err := get(t, c, context.Background(), first.URL+"/to/f2")
	if err != nil || body != string(o.files["/f2"]) || resp.Proto != "HTTP/2.0" {
		t.Fatalf("%d bytes over %v, error %v", len(body), resp, err)
	}
	if got, want := first.get(), []string{"HTTP/1.1 /to/f2"}; !eq(got, want) {
		t.Errorf("first origin saw %q, want %q", got, want)
	}
	if got, want := o.get(), []string{"HTTP/2.0 /f2"}; !eq(got, want) {
		t.Errorf("second origin saw %q, want %q", got, want)
	}
	if n := proxy.Connections() - before; n != 1 {
		t.Errorf("the proxy made %d connections, want 1 (the second origin's)", n)
	}
}
