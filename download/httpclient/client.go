package httpclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/haul/haul/download/internal/dns"
	"github.com/haul/haul/download/internal/h1"
	"github.com/haul/haul/download/internal/h2"
	"github.com/haul/haul/download/internal/retry"
)

// Options configures New.
type Options struct {
	Jobs    int // concurrent downloads; sizes the idle pool
	PerHost int // cap on connections to one host, 0 for none
	// Streams caps the requests in flight on one HTTP/2 connection
	// (--streams, default 32; the server's SETTINGS_MAX_CONCURRENT_STREAMS
	// wins when lower). A host's HTTP/2 requests go on as few connections as
	// carry them, at most min(Jobs, PerHost) per host: as many as HTTP/1.1
	// would open.
	Streams        int
	ConnectTimeout time.Duration // TCP connect and TLS handshake
	Timeout        time.Duration // waiting for response headers
	CACert         string        // extra PEM bundle to trust, "" for none
	Insecure       bool          // skip TLS verification
	// HTTP11 sends https requests over HTTP/1.1 even where the server offers
	// HTTP/2 (--http1.1), through h1.
	HTTP11 bool
	// NetHTTP sends every request through net/http's Transport, HTTP/2 and
	// all, rather than h1 and h2 (--http-client net/http, for comparisons).
	NetHTTP bool
	// Netrc gives Basic credentials per host (--netrc): a request without
	// its own Authorization (or user:password@ in its URL) gets those of its
	// host. Redirect hops get none: credentials are never sent on to the
	// host a redirect names (and the policy strips them off the first origin).
	Netrc *Netrc
	// Jar sends and keeps cookies (--cookies), on every request and redirect
	// hop, whichever client makes it.
	Jar http.CookieJar
	// DNSServers are the name servers host names are looked up with, in
	// order (--dns-server); none: the system's resolver. The hosts file
	// applies either way.
	DNSServers []netip.AddrPort
	// DNSConcurrency caps the lookups in flight (--dns-concurrency); 0 is
	// 64.
	DNSConcurrency int

	// Proxies picks the proxy of each request (--proxy and the environment,
	// ReadProxies); nil means ReadProxies(nil, os.Getenv): the environment's.
	Proxies *Proxies

	// proxy, when set, picks the proxy for a URL instead of Proxies (nil for
	// none). Tests set it: the environment's never proxies loopback.
	proxy func(*url.URL) (*url.URL, error)
	// lookup resolves a host name; nil means package dns's, as the fields
	// above say. Tests count with it.
	lookup func(ctx context.Context, host string) (dns.Answer, error)
	// hostsFile is the hosts file read with DNSServers; "" is /etc/hosts.
	hostsFile string
	// now is the DNS cache's clock; nil is time.Now.
	now func() time.Time
}

// New returns the one HTTP client a run shares: keep-alive connections pooled
// across entries and hosts (idle pool sized to the concurrency), HTTP/2 where the
// server offers it, proxies (Options.Proxies, else the environment's), no
// transparent decompression (bodies are stored exactly as served), and at most
// 10 redirects, to http(s) only.
//
// It is one http.Client, which owns the redirect policy (checkRedirect) and
// the cookie jar, over a router (an http.RoundTripper) that sends each
// exchange, a first request or a redirect's hop alike, to the client that
// makes it: plain http:// (and, with HTTP11, https:// too) to h1, a lean
// HTTP/1.1 client that costs about half the CPU of net/http per request,
// which is what bounds haul on small files; https:// to h2, a lean HTTP/2
// client (ALPN h2 or http/1.1: a server that picks HTTP/1.1 has its
// connection and the host's requests handed to h1); pieces of a split file
// over https to h1 (WithPiece); a request through an HTTP proxy, or one
// neither lean client makes, to net/http's Transport. With NetHTTP every
// request goes to net/http's Transport. A request through a SOCKS5 proxy is
// routed the same way, to an h1, h2 and Transport of that proxy's, which dial
// through it: HTTP/2 and keep-alive work through the proxy as without it.
//
// An error of the environment's proxy settings (ReadProxies) is New's.
//
// The netrc's credentials go on the first request of a chain only; the
// policy keeps them (and any given) to that request's origin.
func New(o Options) (Client, error) {
	tlsConf := &tls.Config{InsecureSkipVerify: o.Insecure}
	if o.CACert != "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		pem, err := os.ReadFile(o.CACert)
		if err != nil {
			return nil, fmt.Errorf("--cacert: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--cacert %s: no PEM certificates found", o.CACert)
		}
		tlsConf.RootCAs = pool
	}
	jobs := max(o.Jobs, 1)
	// Host names are looked up once per run (bounded, failures kept briefly):
	// every client dials through the same cache, to the origin or to a proxy.
	res := newResolver(o)
	// TCP keep-alive probes after 30 s idle, their interval and count the
	// system's: two socket options a connection, not four (a list over a
	// million hosts dials a million times).
	dialer := &net.Dialer{Timeout: o.ConnectTimeout,
		KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: 30 * time.Second, Interval: -1, Count: -1}}
	dial := res.dialer(dialer)
	proxy := o.proxy
	if proxy == nil {
		ps := o.Proxies
		if ps == nil {
			var err error
			if ps, err = ReadProxies(nil, os.Getenv); err != nil {
				return nil, err
			}
		}
		if !ps.none() {
			proxy = func(u *url.URL) (*url.URL, error) { return ps.For(u), nil }
		}
	}
	tr := &http.Transport{
		DialContext:           dial,
		TLSClientConfig:       tlsConf,
		TLSHandshakeTimeout:   o.ConnectTimeout,
		ForceAttemptHTTP2:     true,
		DisableCompression:    true,
		MaxIdleConns:          maxIdle(jobs),
		MaxIdleConnsPerHost:   jobs,
		MaxConnsPerHost:       o.PerHost,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: o.Timeout,
		ExpectContinueTimeout: time.Second,
		ReadBufferSize:        64 << 10,
		// As h1: a response head over 1 MiB is refused (net/http allows 10 MB,
		// per stream, so 16 streams of junk headers could take 160 MB).
		MaxResponseHeaderBytes: 1 << 20,
		WriteBufferSize:        16 << 10,
		HTTP2: &http.HTTP2Config{
			// Not StrictMaxConcurrentRequests: with it, requests queued on a
			// connection at the server's limit of streams stall (Go 1.26:
			// some are never sent when streams end). A server whose limit is
			// below --streams makes net/http open another connection on the
			// transport instead. (Learning the limit from that connection
			// was tried: a GOAWAY, as nginx sends after 1,000 requests, looks
			// the same, and would lower it each time.)
			// Windows big enough that one stream fills a fast link (a 64 KiB window,
			// as in wget2, loses 80% of a 2 GiB transfer over HTTP/2 here), small
			// enough that readers slower than the network (the disk) do not make
			// the server push much into memory: 4 MiB per stream and per
			// connection, so at most 16 MiB over the 4 connections. (32 MiB per
			// connection gave 51-64 MiB peak RSS on 200 x 1 MiB at -j 64, 4 MiB
			// gives 40-44, with the 2 GiB single stream as fast.)
			MaxReceiveBufferPerStream:     4 << 20,
			MaxReceiveBufferPerConnection: 4 << 20,
		},
	}
	if o.HTTP11 {
		// --http1.1 holds where net/http carries https too (through a proxy's
		// CONNECT tunnel, with NetHTTP): HTTP/1 only, offered as such in
		// ALPN, as h1 and curl --http1.1 do. Protocols overrides ForceAttemptHTTP2.
		tr.Protocols = new(http.Protocols)
		tr.Protocols.SetHTTP1(true)
		tr.TLSClientConfig = tlsConf.Clone()
		tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
	}
	// Every client's idle connections together, direct and through SOCKS5
	// proxies alike: within the run's descriptor budget.
	idle := h1.NewIdleLimit(maxIdle(jobs))
	// newLane builds the clients of one way out: h1 and h2 (none with
	// NetHTTP) and std, over dial.
	newLane := func(std *http.Transport, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *lane {
		l := &lane{std: std}
		if o.NetHTTP {
			return l
		}
		one := h1.New(h1.Options{
			DialContext:         dial,
			TLSConfig:           tlsConf,
			TLSHandshakeTimeout: o.ConnectTimeout,
			MaxIdlePerHost:      jobs,
			MaxIdle:             maxIdle(jobs),
			IdleLimit:           idle,
			MaxConnsPerHost:     o.PerHost,
		})
		l.h1 = one
		if !o.HTTP11 {
			// A host's HTTP/2 requests go on as few connections as carry
			// them with --streams each, at most as many as HTTP/1.1 would
			// open: min(jobs, per-host).
			conns := jobs
			if o.PerHost > 0 {
				conns = min(conns, o.PerHost)
			}
			streams := o.Streams
			if streams <= 0 {
				streams = 32
			}
			l.h2 = h2.New(h2.Options{
				DialContext:         dial,
				TLSConfig:           tlsConf,
				TLSHandshakeTimeout: o.ConnectTimeout,
				Streams:             streams,
				MaxConnsPerHost:     conns,
				MaxIdle:             maxIdle(jobs),
				IdleLimit:           idle,
				WriteTimeout:        o.Timeout,
				// A connection silent for 15s is sent a PING; one that does not
				// answer within the connect timeout is closed and its streams fail.
				ReadIdleTimeout: 15 * time.Second, PingTimeout: o.ConnectTimeout,
				HTTP1: one, // servers that choose HTTP/1.1 in ALPN
			})
		}
		return l
	}
	r := &router{proxy: proxy}
	if proxy != nil {
		// Direct requests and those through an HTTP proxy, which net/http's
		// Transport makes (SOCKS5 ones have lanes of their own).
		tr.Proxy = func(r *http.Request) (*url.URL, error) { return proxy(r.URL) }
		// A SOCKS5 lane's Transport dials through the proxy itself rather
		// than being given the proxy: Go 1.26's Transport takes socks5://
		// as socks5h:// (the proxy resolves, where haul should), and would
		// look the proxy's name up outside the run's DNS cache.
		r.socksLane = func(p *url.URL) (*lane, error) {
			dial, err := socksDialer(p, res, dialer)
			if err != nil {
				return nil, err
			}
			std := tr.Clone()
			std.Proxy, std.DialContext = nil, dial
			return newLane(std, dial), nil
		}
	}
	r.lane = *newLane(tr, dial)
	var rt http.RoundTripper = r
	if o.NetHTTP && proxy == nil {
		rt = tr
	}
	return &client{
		hc:    &http.Client{Transport: rt, CheckRedirect: checkRedirect, Jar: o.Jar},
		netrc: o.Netrc,
		jar:   o.Jar,
	}, nil
}

// maxIdle is how many idle connections are kept across hosts, HTTP/1.1 and
// HTTP/2 together, the least recently used closed first: enough for one per
// host of a list spread over some dozens of hosts (2 x jobs, below the number
// of hosts, closed each connection before its host came round again: 2,000
// files over 50 hosts opened 1,268 connections at -j 16), and bounded by
// the descriptors a run may hold, 8 x jobs + 256 in all (see cmd/haul's
// sinkBudget for the rest).
func maxIdle(jobs int) int { return 2*jobs + 64 }

// Client is the HTTP client New returns. *http.Client satisfies it.
type Client interface {
	Do(*http.Request) (*http.Response, error)
	CloseIdleConnections()
}

// client is the one http.Client of a run, with the credentials of --netrc
// for the first request of each chain.
type client struct {
	hc    *http.Client
	netrc *Netrc
	jar   http.CookieJar
}

func (c *client) Do(req *http.Request) (*http.Response, error) {
	if c.jar != nil {
		// http.Client adds the jar's cookies to the first request's Header
		// in place, and the engine shares one Header among all its
		// requests: each request's cookies would go to every later one, on
		// every host.
		req = req.Clone(req.Context())
	}
	if c.netrc != nil && req.URL.User == nil && req.Header.Get("Authorization") == "" {
		if login, password, ok := c.netrc.Lookup(req.URL.Hostname()); ok {
			if c.jar == nil {
				req = req.Clone(req.Context()) // the caller's headers are shared
			}
			req.SetBasicAuth(login, password)
		}
	}
	return c.hc.Do(req)
}

func (c *client) CloseIdleConnections() { c.hc.CloseIdleConnections() }

// router is the http.RoundTripper under the client: each exchange (a first
// request or a redirect's hop) goes to the client that makes it, on the way
// out its proxy sets: direct or through an HTTP proxy (the embedded lane),
// or through a SOCKS5 proxy (a lane of its own for each).
//
// A way out is a function of a request's scheme, host and port (Proxies.For),
// fixed for the run, and each lane has its own pools: a connection through a
// SOCKS5 proxy is never taken for a direct one to the same host, nor the
// reverse, and net/http's Transport keys its connections by proxy.
type router struct {
	proxy func(*url.URL) (*url.URL, error) // nil: everything direct
	lane
	// socksLane builds the lane of a SOCKS5 proxy, the first time a
	// request goes through it; nil without proxies.
	socksLane func(*url.URL) (*lane, error)
	mu        sync.Mutex
	socks     map[string]*lane // by proxy URL
}

// lane is the clients of one way out.
type lane struct {
	std *http.Transport // what h1 and h2 refuse, and every request with NetHTTP
	// h1 (an *h1.Client but in tests) makes http://, and https:// with
	// --http1.1 or for a piece; h2 (an *h2.Client, nil with --http1.1)
	// https://, handing the hosts that speak HTTP/1.1 to its h1. Both nil
	// with NetHTTP.
	h1, h2 http.RoundTripper
}

// RoundTrip makes one exchange: through net/http when the request goes
// through an HTTP proxy (or a proxy setting is in error: net/http reports
// it); else on its lane, direct or through its SOCKS5 proxy.
func (r *router) RoundTrip(req *http.Request) (*http.Response, error) {
	l := &r.lane
	if r.proxy != nil {
		p, err := r.proxy(req.URL)
		switch {
		case err != nil || p != nil && !isSOCKS(p):
			return r.std.RoundTrip(req)
		case p != nil:
			if l, err = r.socksFor(p); err != nil {
				if req.Body != nil {
					req.Body.Close()
				}
				return nil, err
			}
		}
	}
	return l.roundTrip(req)
}

// socksFor returns the lane of the SOCKS5 proxy p.
func (r *router) socksFor(p *url.URL) (*lane, error) {
	key := p.String()
	r.mu.Lock()
	defer r.mu.Unlock()
	if l := r.socks[key]; l != nil {
		return l, nil
	}
	l, err := r.socksLane(p)
	if err != nil {
		return nil, err
	}
	if r.socks == nil {
		r.socks = map[string]*lane{}
	}
	r.socks[key] = l
	return l, nil
}

// roundTrip makes one exchange through net/http when it is one that neither
// lean client makes (or with NetHTTP); else over h2 for https (h1 for a piece
// of a split file, or with --http1.1), h1 for http.
func (l *lane) roundTrip(req *http.Request) (*http.Response, error) {
	if l.h1 == nil || !lean(req) {
		return l.std.RoundTrip(req)
	}
	var resp *http.Response
	var err error
	if req.URL.Scheme == "https" && l.h2 != nil && !isPiece(req.Context()) {
		resp, err = l.h2.RoundTrip(req)
	} else {
		resp, err = l.h1.RoundTrip(req)
	}
	if errors.Is(err, errors.ErrUnsupported) {
		// Refused before any byte was sent (a host that needs IDNA).
		return l.std.RoundTrip(req)
	}
	return resp, err
}

// lean reports whether req is one the lean clients may make: a GET without
// a body, of an http(s) URL.
func lean(req *http.Request) bool {
	u := req.URL
	return (u.Scheme == "http" || u.Scheme == "https") && (req.Method == "" || req.Method == http.MethodGet) &&
		(req.Body == nil || req.Body == http.NoBody)
}

func (r *router) CloseIdleConnections() {
	r.lane.closeIdle()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range r.socks {
		l.closeIdle()
	}
}

func (l *lane) closeIdle() {
	for _, rt := range []http.RoundTripper{l.h1, l.h2, l.std} {
		if c, ok := rt.(interface{ CloseIdleConnections() }); ok {
			c.CloseIdleConnections()
		}
	}
}

// checkRedirect is the redirect policy of the client: at most 10, to http(s)
// only, each hop told to the request's hop function (WithHop).
// http.Client has built req as it does (the first request's headers, less
// credentials once a hop left the first host's domain, a Referer unless from
// https to http); the policy is stricter on both.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > 10 {
		return ErrTooManyRedirects
	}
	if hop, ok := req.Context().Value(hopKey{}).(func()); ok {
		hop()
	}
	if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
		return fmt.Errorf("%w: %s", ErrBadRedirect, req.URL.Redacted())
	}
	// Credentials given for the first URL go no further than its origin, as
	// with curl: http.Client keeps them for subdomains and for another
	// scheme or port of the same host.
	if first := via[0].URL; req.URL.Scheme != first.Scheme || !strings.EqualFold(hostPort(req.URL), hostPort(first)) {
		for _, k := range []string{"Authorization", "Cookie", "Cookie2"} {
			req.Header.Del(k)
		}
	}
	// No Referer but one given with -H (as with curl and wget): http.Client
	// would send the URL redirected from, query and all, which may be a
	// presigned URL's token, to whatever host the redirect names.
	if ref := via[0].Header.Get("Referer"); ref != "" && !(via[len(via)-1].URL.Scheme == "https" && req.URL.Scheme == "http") {
		req.Header.Set("Referer", ref)
	} else {
		req.Header.Del("Referer")
	}
	return nil
}

// hopKey is the request context key of the function that tells the transfer a
// redirect was received (it restarts the stall timer).
type hopKey struct{}

// WithHop returns a context whose requests call hop at every redirect they
// follow: each hop is progress (the engine's stall timer restarts on it).
func WithHop(ctx context.Context, hop func()) context.Context {
	return context.WithValue(ctx, hopKey{}, hop)
}

// pieceKey marks the request of a piece of a split file.
type pieceKey struct{}

// WithPiece returns a context whose requests are pieces of a file fetched over
// several connections: each goes on a connection of its own, through h1
// (one connection per request in flight), over TLS too, not multiplexed on
// an HTTP/2 connection whose streams would share one window.
func WithPiece(ctx context.Context) context.Context {
	return context.WithValue(ctx, pieceKey{}, true)
}

func isPiece(ctx context.Context) bool { return ctx.Value(pieceKey{}) != nil }

// Errors of the redirect policy; another attempt cannot fix either (they are
// marked retry.Final).
var (
	ErrTooManyRedirects = retry.Final(errors.New("stopped after 10 redirects"))
	ErrBadRedirect      = retry.Final(errors.New("redirect to a non-http(s) URL"))
)

// hostPort is u's host with its port, the scheme's default when none is given.
func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	return net.JoinHostPort(u.Hostname(), port)
}
