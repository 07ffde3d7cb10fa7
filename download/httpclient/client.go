package httpclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpproxy"

	"github.com/haul/haul/download/internal/h1"
	"github.com/haul/haul/download/internal/h2"
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
	Streams int
	// OnHTTP2, if set, is called with a URL's host (host[:port], as in
	// the URL) when a connection to it turns out to speak HTTP/2, as its
	// first request is sent: the engine then counts the host's entries as
	// streams without waiting a round trip for a response.
	OnHTTP2        func(host string)
	ConnectTimeout time.Duration // TCP connect and TLS handshake
	Timeout        time.Duration // waiting for response headers
	CACert         string        // extra PEM bundle to trust, "" for none
	Insecure       bool          // skip TLS verification
	// HTTP11 sends https requests over HTTP/1.1 even where the server offers
	// HTTP/2 (--http1.1), through the lean client.
	HTTP11 bool
	// Netrc gives Basic credentials per host (--netrc): a request without
	// its own Authorization (or user:password@ in its URL) gets those of its
	// host. Redirect hops get none: credentials are never sent on to the
	// host a redirect names (and the policy strips them off the first origin).
	Netrc *Netrc
	// Jar sends and keeps cookies (--cookies). With a jar every request goes
	// through net/http, which applies it to every redirect hop.
	Jar http.CookieJar

	// proxy picks the proxy for a URL, nil for none; nil means from the
	// environment. Tests set it: the environment's never proxies loopback.
	proxy func(*url.URL) (*url.URL, error)
	// lookup resolves a host name; nil means Go's resolver. Tests count with it.
	lookup func(ctx context.Context, host string) ([]netip.Addr, error)
}

// New returns the one HTTP client a run shares: keep-alive connections pooled
// across entries and hosts (idle pool sized to the concurrency), HTTP/2 where the
// server offers it, proxies from the environment, no transparent decompression (bodies
// are stored exactly as served), and at most 10 redirects, to http(s) only.
//
// Plain http:// requests (and, with HTTP11, https:// too) go through h1, a lean
// HTTP/1.1 client that costs about half the CPU of net/http per request, which
// is what bounds haul on small files. https:// goes through h2, a lean HTTP/2
// client (ALPN h2 or http/1.1: a server that picks HTTP/1.1 gets its
// connection and the host's requests handed to h1). net/http makes every
// request that goes through a proxy or needs the cookie jar (neither lean
// client implements them). Each hop of a redirect chain is routed as a first
// request for its URL would be: a client stops at a redirect to a URL another
// one routes, and the chain goes on there.
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
	// both clients dial through the same cache.
	dial := newResolver(o.lookup).dialer(&net.Dialer{Timeout: o.ConnectTimeout, KeepAlive: 30 * time.Second})
	proxy := o.proxy
	if proxy == nil {
		// What http.ProxyFromEnvironment does, as a function of the URL, so the
		// routing below asks the very question the transport does.
		proxy = httpproxy.FromEnvironment().ProxyFunc()
	}
	tr := &http.Transport{
		Proxy:                 func(r *http.Request) (*url.URL, error) { return proxy(r.URL) },
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
		// CONNECT tunnel, with HAUL_NETHTTP): HTTP/1 only, offered as such in
		// ALPN, as h1 and curl --http1.1 do. Protocols overrides ForceAttemptHTTP2.
		tr.Protocols = new(http.Protocols)
		tr.Protocols.SetHTTP1(true)
		tr.TLSClientConfig = tlsConf.Clone()
		tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
	}
	if os.Getenv("HAUL_NETHTTP") != "" { // for comparisons: net/http for everything
		return &http.Client{Transport: tr, CheckRedirect: checkRedirect}, nil
	}
	streams := o.Streams
	if streams <= 0 {
		streams = 32
	}
	c := &client{proxy: proxy, http11: o.HTTP11, netrc: o.Netrc, jar: o.Jar, streams: streams, onHTTP2: o.OnHTTP2,
		hosts: map[string]*tlsHost{}, seed: maphash.MakeSeed()}
	c.std = &http.Client{Transport: tr, CheckRedirect: c.checkRedirect, Jar: o.Jar}
	// net/http keeps one HTTP/2 connection per host and transport (and, with
	// MaxConnsPerHost 1 below, dials no other while it is usable): the
	// transports are the connections a host may have, min(jobs, per-host) as
	// over HTTP/1.1, and sendTLS puts a host's requests on as few of them as
	// carry them with --streams each. (One connection is read by one
	// goroutine: 10,000 small files over TLS took 1.2-1.5 s on one
	// connection, 0.9-1.1 s on four.) An unused transport costs a few maps.
	conns := jobs
	if o.PerHost > 0 {
		conns = min(conns, o.PerHost)
	}
	c.tls = []*http.Client{c.std}
	if conns > 1 {
		// Each of a host's transports holds one connection to it (sendTLS),
		// so each dials one at a time: without a cap, net/http dials a
		// connection for every request that finds the host's HTTP/2
		// connection unable to take it (at a server's stream limit below
		// --streams, or after its GOAWAY), and keeps those beyond the first
		// open, unused, until IdleConnTimeout: nginx with
		// http2_max_concurrent_streams 4 got 295 connections at once from
		// -j 4, 756 from -j 64. (A connection that cannot take a request
		// leaves the transport's count as it is dropped from the pool, so
		// the next dial is not held up by one still finishing its streams.)
		c.tls = c.tls[:0]
		for len(c.tls) < conns {
			t := tr.Clone()
			t.MaxConnsPerHost = 1
			c.tls = append(c.tls, &http.Client{Transport: t, CheckRedirect: c.checkRedirect, Jar: o.Jar})
		}
	}
	// Pieces of a split file (WithPiece) over https go over HTTP/1.1, one
	// request per connection: each gets its own TCP and TLS connection, also
	// where the server speaks HTTP/2 (whose streams would share one window).
	pt := tr.Clone()
	pt.Protocols = new(http.Protocols)
	pt.Protocols.SetHTTP1(true)
	pt.TLSClientConfig = tlsConf.Clone()
	pt.TLSClientConfig.NextProtos = []string{"http/1.1"}
	c.piece = &http.Client{Transport: pt, CheckRedirect: c.checkRedirect, Jar: o.Jar}
	if !o.HTTP11 && os.Getenv("HAUL_NETHTTP2") == "" {
		// https to servers that speak HTTP/2 goes through h2, on as few
		// connections per host as carry its requests with --streams each
		// (at most conns); a server that picks HTTP/1.1 in ALPN sends the
		// host's requests to the transports above (sendTLS).
		c.lean2 = h2.New(h2.Options{
			DialContext:         dial,
			TLSConfig:           tlsConf,
			TLSHandshakeTimeout: o.ConnectTimeout,
			Streams:             streams,
			MaxConnsPerHost:     conns,
			MaxIdle:             maxIdle(jobs),
			CheckRedirect:       c.checkRedirect,
			OnHTTP2:             o.OnHTTP2,
			WriteTimeout:        o.Timeout,
			// A connection silent for 15s is sent a PING; one that does not
			// answer within the connect timeout is closed and its streams fail.
			ReadIdleTimeout: 15 * time.Second, PingTimeout: o.ConnectTimeout,
			OnHTTP1: func(host string, tc *tls.Conn) {
				if a, ok := c.lean.(interface{ Adopt(string, *tls.Conn) }); ok {
					a.Adopt(host, tc)
				} else {
					tc.Close()
				}
			},
		})
	}
	c.lean = h1.New(h1.Options{
		DialContext:         dial,
		TLSConfig:           tlsConf,
		TLSHandshakeTimeout: o.ConnectTimeout,
		MaxIdlePerHost:      jobs,
		MaxIdle:             maxIdle(jobs),
		MaxConnsPerHost:     o.PerHost,
		CheckRedirect:       c.checkRedirect,
	})
	return c, nil
}

// maxIdle is how many idle connections are kept across hosts, the least
// recently used closed first: enough for one per host of a list spread over a
// few hundred hosts (2 x jobs, below the number of hosts, closed each
// connection before its host came round again: 2,000 files over 50 hosts
// opened 1,268 connections at -j 16), and bounded, since an idle h1
// connection keeps its 68 KiB of buffers (256 of them: 17 MiB).
func maxIdle(jobs int) int { return max(2*jobs, 256) }

// Client is the HTTP client New returns. *http.Client satisfies it.
type Client interface {
	Do(*http.Request) (*http.Response, error)
	CloseIdleConnections()
}

// client sends each request through the lean HTTP/1.1 or HTTP/2 client, or net/http.
type client struct {
	lean    Client         // an *h1.Client but in tests
	lean2   Client         // an *h2.Client for https to HTTP/2 servers; nil with --http1.1
	std     *http.Client   // for http:// through a proxy, or that h1 cannot make
	tls     []*http.Client // for https://, chosen by sendTLS; tls[0] == std if it is the only one
	piece   *http.Client   // for https:// pieces of a split file (WithPiece)
	seed    maphash.Seed   // picks a host's first transport
	streams int            // requests in flight per HTTP/2 connection
	onHTTP2 func(host string)
	mu      sync.Mutex
	hosts   map[string]*tlsHost // https hosts' requests in flight (sendTLS)
	sweepAt int                 // len(hosts) at which idle ones are forgotten
	proxy   func(*url.URL) (*url.URL, error)
	http11  bool
	netrc   *Netrc
	jar     http.CookieJar
}

func (c *client) Do(req *http.Request) (*http.Response, error) {
	if c.jar != nil {
		// net/http adds the jar's cookies to the request's Header in place,
		// and the engine shares one Header among all its requests: each
		// request's cookies went to every later one, on every host.
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
	for {
		resp, err := c.send(req)
		if err != nil || resp.StatusCode < 300 || resp.StatusCode > 399 {
			return resp, err
		}
		// A 3xx: perhaps a redirect the client stopped at because the other one
		// routes its target (checkRedirect). The chain goes on here, under the
		// same policy, counted from its first request.
		via := chain(resp.Request)
		next, loc, err := h1.Redirect(via, resp)
		if err != nil || next == nil || !c.crossRoute(resp.Request.URL, next.URL) {
			return resp, nil // the response that ends the chain
		}
		if err := checkRedirect(next, via); err != nil {
			h1.Discard(resp)
			return resp, &url.Error{Op: "Get", URL: loc, Err: err}
		}
		h1.Discard(resp)
		req = next
	}
}

// send makes req through the client that routes it, which follows the
// redirects on the same route.
func (c *client) send(req *http.Request) (*http.Response, error) {
	if c.viaLean(req.URL) {
		resp, err := c.lean.Do(req)
		if !errors.Is(err, errors.ErrUnsupported) {
			return resp, err
		}
	}
	if req.URL.Scheme == "https" {
		if isPiece(req.Context()) {
			return c.piece.Do(req)
		}
		if c.viaH2(req.URL) {
			resp, err := c.lean2.Do(req)
			if !errors.Is(err, errors.ErrUnsupported) {
				return resp, err
			}
			// The server does not speak HTTP/2 (h2.ErrNotOffered; h2
			// handed its connection to h1), also on a redirect's hop:
			// the request, from its first URL, goes over HTTP/1.1
			// through h1, or net/http for what h1 cannot make.
			resp, err = c.lean.Do(req)
			if !errors.Is(err, errors.ErrUnsupported) {
				return resp, err
			}
		}
		return c.sendTLS(req)
	}
	return c.std.Do(req)
}

// tlsHost is what sendTLS knows of a host: its requests in flight on each
// transport, and which transports reach it over HTTP/2.
type tlsHost struct {
	n  []int32 // requests in flight, per transport
	h2 []bool  // the transport's connection to the host speaks HTTP/2
	// probing is the requests in flight on a transport whose protocol is
	// not known yet (each opens a connection); waiting those waiting for
	// room. Once the host speaks HTTP/2, a new connection is opened only for
	// each streams requests waiting: a host has ceil(in flight/streams).
	probing, waiting int
	total            int // sum of n
	// wait is closed (and cleared) when a request ends or a transport turns
	// out to speak HTTP/2, for the requests waiting for room; nil when none
	// waits.
	wait chan struct{}
}

// maxTLSHosts bounds the idle hosts sendTLS remembers (which of their
// transports speak HTTP/2): past it, idle ones are forgotten.
const maxTLSHosts = 4096

// sendTLS sends req through one of the TLS transports, each with at most one
// connection to a host (net/http's HTTP/2 pool, MaxConnsPerHost 1; over
// HTTP/1.1 it has one request in flight there, so one connection).
// Starting from the host's own transport (so that a list over many hosts
// spreads), a request goes to the first transport whose HTTP/2 connection has
// fewer than streams requests in flight, else to the first with none in
// flight whose protocol is not known (it opens a connection, or reuses an
// HTTP/1.1 one; over HTTP/2, one per streams requests waiting), else waits
// for room. So a host's HTTP/2 requests are on
// ceil(in flight/streams) connections, at most one per transport: no more
// than its requests would need over HTTP/1.1 (but for a server whose limit
// of streams is below streams: see New). A transport is known to speak
// HTTP/2 from the connection its first request got (ALPN), before the
// response, so a server slow to answer does not hold others back.
func (c *client) sendTLS(req *http.Request) (*http.Response, error) {
	if len(c.tls) == 1 {
		return c.tls[0].Do(req)
	}
	host := req.URL.Host
	i, probe, err := c.pick(req.Context(), host)
	if err != nil {
		return nil, err
	}
	// learnt: the probe's transport told its protocol (or the request
	// ended first): it no longer counts as probing.
	var learnt atomic.Bool
	if probe {
		// At GotConn, as the request is sent: for HTTP/2 the connection is
		// in net/http's pool then, so the requests that follow share it (at
		// the TLS handshake, before, they would each dial one). The first
		// connection only: a redirect's next hop (net/http follows it under
		// the same context) may be another host's.
		trace := &httptrace.ClientTrace{GotConn: func(ci httptrace.GotConnInfo) {
			if tc, ok := ci.Conn.(*tls.Conn); ok && learnt.CompareAndSwap(false, true) {
				c.learn(host, i, tc.ConnectionState().NegotiatedProtocol == "h2")
			}
		}}
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
	}
	done := func() {
		c.mu.Lock()
		st := c.hosts[host]
		st.n[i]--
		st.total--
		if probe && learnt.CompareAndSwap(false, true) {
			st.probing--
		}
		st.wake()
		c.mu.Unlock()
	}
	resp, err := c.tls[i].Do(req)
	if err != nil {
		done()
		return resp, err
	}
	resp.Body = &doneBody{ReadCloser: resp.Body, done: done}
	return resp, nil
}

// pick chooses the transport for a request to host (see sendTLS), waiting
// while none has room, and counts the request in flight there. probe says
// the transport's protocol is not known yet.
func (c *client) pick(ctx context.Context, host string) (i int, probe bool, err error) {
	own := int(uint32(maphash.String(c.seed, host)) % uint32(len(c.tls))) // no allocation per request
	waited := false
	for {
		c.mu.Lock()
		st := c.hosts[host]
		if waited {
			st.waiting-- // a host with one waiting is never swept
			waited = false
		}
		if st == nil {
			if len(c.hosts) >= max(maxTLSHosts, c.sweepAt) {
				for k, h := range c.hosts {
					if h.total == 0 && h.waiting == 0 {
						delete(c.hosts, k)
					}
				}
				c.sweepAt = 2 * len(c.hosts)
			}
			st = &tlsHost{n: make([]int32, len(c.tls)), h2: make([]bool, len(c.tls))}
			c.hosts[host] = st
		}
		i = -1
		streams := int32(c.streams)
		anyH2 := false
		for k := range len(c.tls) {
			j := (own + k) % len(c.tls)
			anyH2 = anyH2 || st.h2[j]
			if st.h2[j] && st.n[j] < streams {
				i = j
				break
			}
		}
		// Another connection: over HTTP/1.1, or to a host not known yet,
		// one per request (each transport carries one: the engine keeps
		// those to -j); over HTTP/2 one per streams requests waiting. (The
		// first request to a new host alone, then the others sharing its
		// connection, cost a handshake more: 2,000 small files over 41 ms
		// went from 0.48 to 0.56-0.68 s.)
		canProbe := true
		if anyH2 {
			canProbe = st.probing == 0 || st.waiting >= st.probing*c.streams
		}
		if i < 0 && canProbe {
			for k := range len(c.tls) {
				j := (own + k) % len(c.tls)
				if !st.h2[j] && st.n[j] == 0 {
					i, probe = j, true
					break
				}
			}
		}
		if i >= 0 {
			st.n[i]++
			st.total++
			if probe {
				st.probing++
			}
			c.mu.Unlock()
			return i, probe, nil
		}
		if st.wait == nil {
			st.wait = make(chan struct{})
		}
		wait := st.wait
		st.waiting++
		waited = true
		c.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			c.mu.Lock()
			st.waiting--
			c.mu.Unlock()
			return 0, false, ctx.Err()
		}
	}
}

// learn records whether transport i reaches host over HTTP/2.
func (c *client) learn(host string, i int, h2 bool) {
	c.mu.Lock()
	if st := c.hosts[host]; st != nil {
		st.h2[i] = h2
		st.probing--
		st.wake()
	}
	c.mu.Unlock()
	if h2 && c.onHTTP2 != nil {
		c.onHTTP2(host)
	}
}

// wake lets the requests waiting for room look again (under c.mu).
func (st *tlsHost) wake() {
	if st.wait != nil {
		close(st.wait)
		st.wait = nil
	}
}

// doneBody calls done once, when the body is closed: the request is over.
type doneBody struct {
	io.ReadCloser
	once sync.Once
	done func()
}

func (b *doneBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.done)
	return err
}

func (c *client) CloseIdleConnections() {
	c.lean.CloseIdleConnections()
	if c.lean2 != nil {
		c.lean2.CloseIdleConnections()
	}
	c.std.CloseIdleConnections() // not in tls when there are several
	for _, t := range c.tls {
		t.CloseIdleConnections()
	}
	c.piece.CloseIdleConnections()
}

// viaLean reports whether a request for u goes through the lean client: http://
// (and https:// with HTTP11) that net/http would send without a proxy. Those
// with a proxy (or a proxy setting in error) go through net/http, which
// implements proxies and reports the error.
func (c *client) viaLean(u *url.URL) bool {
	if c.jar != nil || u.Scheme != "http" && !(u.Scheme == "https" && c.http11) {
		return false // h1 keeps no cookies
	}
	p, err := c.proxy(u)
	return p == nil && err == nil
}

// viaH2 reports whether h2 makes a request for u: https without a proxy or a
// cookie jar (h2 keeps none either), unless --http1.1.
func (c *client) viaH2(u *url.URL) bool {
	if c.lean2 == nil || c.jar != nil || u.Scheme != "https" {
		return false
	}
	p, err := c.proxy(u)
	return p == nil && err == nil
}

// route names the client that makes a request for u: h1, h2 or net/http.
func (c *client) route(u *url.URL) int {
	switch {
	case c.viaLean(u):
		return 1
	case c.viaH2(u):
		return 2
	}
	return 0
}

// crossRoute reports whether a redirect from one URL to the other changes
// between h1 and net/http (which routes each hop itself: proxy, HTTP/2). A
// non-http(s) target is not: the client that got it refuses it.
func (c *client) crossRoute(from, to *url.URL) bool {
	return (to.Scheme == "http" || to.Scheme == "https") && c.route(from) != c.route(to)
}

// checkRedirect is the CheckRedirect of the clients behind Do: it stops at a
// redirect the other client routes, returning it for Do to follow, and applies
// the policy over the whole chain, which may have started in the other client.
func (c *client) checkRedirect(req *http.Request, via []*http.Request) error {
	last := via[len(via)-1]
	if c.crossRoute(last.URL, req.URL) {
		return http.ErrUseLastResponse
	}
	return checkRedirect(req, chain(last))
}

// chain returns the requests of the redirect chain that ends with last, first
// first: a request made to follow a redirect has it as its Response (net/http,
// h1 and Do set it), whichever client made the one before.
func chain(last *http.Request) []*http.Request {
	via := []*http.Request{last}
	for r := last; r.Response != nil && r.Response.Request != nil; r = r.Response.Request {
		via = append(via, r.Response.Request)
	}
	slices.Reverse(via)
	return via
}

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
	// with curl: net/http (and h1, which follows it) keep them for subdomains
	// and for another scheme or port of the same host.
	if first := via[0].URL; req.URL.Scheme != first.Scheme || !strings.EqualFold(hostPort(req.URL), hostPort(first)) {
		for _, k := range []string{"Authorization", "Cookie", "Cookie2"} {
			req.Header.Del(k)
		}
	}
	// No Referer but one given with -H (as with curl and wget): net/http and h1
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
// several connections: each goes on a connection of its own. Plain http://
// does already (h1 uses one connection per request in flight); https:// goes
// over HTTP/1.1 for it, not multiplexed on HTTP/2.
func WithPiece(ctx context.Context) context.Context {
	return context.WithValue(ctx, pieceKey{}, true)
}

func isPiece(ctx context.Context) bool { return ctx.Value(pieceKey{}) != nil }

// Errors of the redirect policy; another attempt cannot fix either.
var (
	ErrTooManyRedirects = errors.New("stopped after 10 redirects")
	ErrBadRedirect      = errors.New("redirect to a non-http(s) URL")
)

// hostPort is u's host with its port, the scheme's default when none is given.
func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	return net.JoinHostPort(u.Hostname(), port)
}
