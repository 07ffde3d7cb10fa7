// Package h2 is a lean HTTP/2 client for haul's hot path: GET requests over
// https, many in flight on each connection, built on golang.org/x/net/http2's
// Framer and hpack.
//
// It exists for CPU time, as h1 does for HTTP/1.1. net/http's HTTP/2 client
// gives every request a goroutine of its own that writes its HEADERS and
// flushes them in a TLS record and a write(2) of their own, hands the response
// over channels, and adds every :path to the HPACK table (evicting an entry
// each time). On 10,000 small files over HTTPS the write alone was 15% of
// haul's CPU. Here a request is written on the caller's goroutine into a
// buffer the connection flushes for all the requests that came meanwhile (one
// record, one write(2) for several HEADERS), one goroutine per connection
// reads the frames and hands each stream's DATA to its body, and values that
// change with every request are sent as literals, never indexed.
//
// Client is an http.RoundTripper: one exchange per RoundTrip, under an
// http.Client that follows redirects and keeps cookies. It does less than
// net/http's Transport: only GET without a body, only https (ALPN "h2"; a
// server that picks HTTP/1.1 gets its connection and the request handed to
// Options.HTTP1), no proxies, no transparent decompression, no server push
// (disabled in SETTINGS). Requests it cannot make
// fail with an error wrapping errors.ErrUnsupported.
//
// Health: with Options.ReadIdleTimeout set, a connection that has read
// nothing for that long is sent a PING, and closed if no answer comes within
// Options.PingTimeout, so a connection the network lost without a word (no
// FIN, no RST) fails its streams in bounded time.
//
// Integrity: a response's body is exactly the DATA of its stream, checked
// against its Content-Length (more or fewer bytes fail the body); the server
// cannot send past the flow-control windows this client gives (4 MiB per
// stream and per connection by default), which bounds the memory a connection
// holds; a stream the server refuses (REFUSED_STREAM, or above the last stream
// of a GOAWAY) is sent again on another connection, as RFC 9113 allows.
package h2

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/haul/haul/download/internal/h1"
	"github.com/haul/haul/download/internal/retry"
	"github.com/haul/haul/internal/ilist"
)

// Options configures New.
type Options struct {
	// DialContext opens TCP connections and should carry the connect timeout.
	// Nil means a net.Dialer with a 30s timeout.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// TLSConfig is the base configuration: each host gets a clone with
	// ServerName set to the host (unless set) and NextProtos ["h2",
	// "http/1.1"]; without a ClientSessionCache all hosts share one. Nil
	// means an empty configuration.
	TLSConfig *tls.Config
	// TLSHandshakeTimeout bounds each handshake; 0 means 30s.
	TLSHandshakeTimeout time.Duration
	// Streams is how many requests one connection has in flight at most (fewer
	// where the server's SETTINGS_MAX_CONCURRENT_STREAMS says so): 0 means 32.
	Streams int
	// MaxConnsPerHost caps the connections to one host: 0 means 1. A request
	// that finds every connection full, and no room for another, waits.
	MaxConnsPerHost int
	// MaxIdle caps the connections without a request in flight kept across
	// all hosts, the least recently used closed first: 0 means 100.
	MaxIdle int
	// IdleLimit, if not nil, bounds the idle connections of this client and
	// of the others that share it (the HTTP1 client's), all together, besides
	// MaxIdle.
	IdleLimit *h1.IdleLimit
	// HTTP1, if set, makes the requests to hosts whose server chose
	// HTTP/1.1 in ALPN, and takes the connection (handshake done) that
	// learnt it, so that learning it costs no connection. Nil means those
	// requests fail with ErrNotOffered and the connection is closed.
	HTTP1 HTTP1
	// WriteTimeout bounds one write to a connection: a server that reads
	// nothing for this long loses the connection. 0 means 30s.
	WriteTimeout time.Duration
	// MaxHeaderBytes bounds a response's header list (as HPACK counts it): 0
	// means 1 MiB.
	MaxHeaderBytes int
	// StreamWindow and ConnWindow are the flow-control windows given to the
	// server, per stream and per connection: 0 means 4 MiB each. They bound
	// what a connection holds that its readers have not read yet.
	StreamWindow, ConnWindow int
	// ReadIdleTimeout, if not 0, is how long a connection may read no frame
	// before it is sent a PING. A server that does not answer it within
	// PingTimeout loses the connection: its streams fail (with an error
	// wrapping os.ErrDeadlineExceeded), requests not yet written on it are
	// sent on another. It also covers connections without streams, which
	// are then known dead before a request is given one. 0 means no PING,
	// as in x/net/http2's Transport.
	ReadIdleTimeout time.Duration
	// PingTimeout bounds the wait for a PING's answer: 0 means 15s.
	PingTimeout time.Duration
}

// HTTP1 is the HTTP/1.1 client h2 hands a request to when the server does
// not speak HTTP/2 (h1.Client is one).
type HTTP1 interface {
	// RoundTrip makes one exchange over HTTP/1.1.
	RoundTrip(*http.Request) (*http.Response, error)
	// Adopt takes tc, a connection to host (host:port as the URL spells it)
	// whose server chose HTTP/1.1, as an idle connection of its own.
	Adopt(host string, tc *tls.Conn)
}

// ErrNotOffered is the error (wrapping errors.ErrUnsupported) of a request to
// a host whose server did not choose HTTP/2 in ALPN, without Options.HTTP1.
// The host is remembered (a few thousand of them), so later requests to it
// go to HTTP1 (or fail) at once, without a connection.
var ErrNotOffered = fmt.Errorf("h2: server does not offer HTTP/2: %w", errors.ErrUnsupported)

const (
	idleTimeout = 90 * time.Second // an idle connection older than this is closed, not used
	maxNoH2     = 4096             // hosts remembered as not speaking HTTP/2
	// maxRetries bounds the sends again of a request on a connection that
	// died before its response (likely closed while idle). A request the
	// server refused unprocessed (REFUSED_STREAM, above a GOAWAY's last
	// stream) is sent again up to maxProgress times where that connection
	// served others: a server that takes k requests a connection (nginx
	// keepalive_requests) refuses most of a new connection's burst of
	// Streams, which is no error. Refusals by a connection that served
	// nothing count against maxRefused, each after a longer wait
	// (refusedBackoff): a server refusing everything fails its requests.
	maxRetries  = 4
	maxProgress = 64
	maxRefused  = 8
	maxUnsent   = 64 // requests not written (their connection failed or went away meanwhile)
)

// refusedBackoff is the wait before the n-th send again of a request
// refused by a connection that served nothing: none for the first, then
// 10 ms doubling to 500 ms.
var refusedBackoff = retry.Backoff{Base: 10 * time.Millisecond, Max: 500 * time.Millisecond, Free: 1}

// Client is a lean HTTP/2 client for GET requests. It is safe for concurrent
// use; one should be shared.
type Client struct {
	o    Options
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
	tls  *tls.Config

	mu    sync.Mutex
	hosts map[string]*host    // hosts with connections, dials or requests waiting
	noH2  map[string]struct{} // hosts whose server picked HTTP/1.1
	idle  connList            // connections with no stream, least recently used first

	plain   bool           // tests: HTTP/2 over the dialed connection, without TLS (prior knowledge)
	readers sync.WaitGroup // the connections' reader goroutines (tests wait for them to end)
}

// host is the state of the connections to one host:port. Guarded by Client.mu.
type host struct {
	key   string
	conns []*conn
	dials []*dial
	// wait is closed (and cleared) when a stream ends, a connection goes or
	// a dial ends, for the requests waiting for room; nil when none waits.
	wait     chan struct{}
	waiting  int
	draining int // connections going away with streams still open
	tls      *tls.Config
}

// dial is a connection being opened; the requests that wait for it share its
// result (a dead host fails them all at once, not one timeout after another).
type dial struct {
	done    chan struct{}
	err     error
	cn      *conn // the connection, once done without err
	waiters int   // requests counting on a stream of it (each reserved one at the end)
}

// New returns a Client configured by o.
func New(o Options) *Client {
	if o.Streams <= 0 {
		o.Streams = 32
	}
	if o.MaxConnsPerHost <= 0 {
		o.MaxConnsPerHost = 1
	}
	if o.MaxIdle <= 0 {
		o.MaxIdle = 100
	}
	if o.TLSHandshakeTimeout <= 0 {
		o.TLSHandshakeTimeout = 30 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 30 * time.Second
	}
	if o.MaxHeaderBytes <= 0 {
		o.MaxHeaderBytes = 1 << 20
	}
	if o.StreamWindow <= 0 {
		o.StreamWindow = 4 << 20
	}
	if o.ConnWindow <= 0 {
		o.ConnWindow = 4 << 20
	}
	if o.PingTimeout <= 0 {
		o.PingTimeout = 15 * time.Second
	}
	o.StreamWindow = min(o.StreamWindow, 1<<31-1)
	o.ConnWindow = min(max(o.ConnWindow, 65535), 1<<31-1)
	c := &Client{o: o, dial: o.DialContext, hosts: map[string]*host{}, noH2: map[string]struct{}{}, idle: connList{limit: o.IdleLimit}}
	if c.dial == nil {
		c.dial = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	if o.TLSConfig != nil {
		c.tls = o.TLSConfig.Clone()
	} else {
		c.tls = &tls.Config{}
	}
	c.tls.NextProtos = []string{"h2", "http/1.1"}
	if c.tls.ClientSessionCache == nil {
		c.tls.ClientSessionCache = tls.NewLRUClientSessionCache(256)
	}
	return c
}

// RoundTrip makes one GET exchange and returns its response, as an
// http.RoundTripper: it follows no redirect and keeps no cookies, a response
// is not an error whatever its status, and the caller must close the body. A
// request the server refuses unprocessed is sent again on another
// connection. A request to a host whose server does not speak HTTP/2 goes to
// Options.HTTP1 (without it, fails with ErrNotOffered).
//
// An httptrace.ClientTrace in the request's context is told GetConn (the
// host:port) and GotConn (the connection, a *tls.Conn, before the request is
// sent on it), as net/http's Transport tells it.
func (c *Client) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := h1.Refuse(req, "h2"); err != nil {
		return nil, err
	}
	resp, err := c.roundTrip(req)
	if errors.Is(err, ErrNotOffered) && c.o.HTTP1 != nil {
		return c.o.HTTP1.RoundTrip(req)
	}
	return resp, err
}

// roundTrip makes one request, sending it again (on another connection)
// while the server refuses it unprocessed.
func (c *Client) roundTrip(req *http.Request) (*http.Response, error) {
	u := req.URL
	if u.Scheme != "https" {
		return nil, fmt.Errorf("h2: scheme %q: %w", u.Scheme, errors.ErrUnsupported)
	}
	if u.Host == "" {
		return nil, errors.New("http: no Host in request URL")
	}
	for i := 0; i < len(u.Host); i++ {
		if u.Host[i] >= 0x80 {
			return nil, fmt.Errorf("h2: non-ASCII host %q: %w", u.Host, errors.ErrUnsupported)
		}
	}
	ctx := req.Context()
	key := hostKey(u)
	trace := httptrace.ContextClientTrace(ctx)
	if trace != nil && trace.GetConn != nil {
		trace.GetConn(key)
	}
	tries, progress, refused, unsent := 0, 0, 0, 0
	for {
		if ctx.Err() != nil {
			return nil, h1.Canceled(ctx)
		}
		cn, reused, err := c.get(ctx, key, u)
		if err != nil {
			return nil, err
		}
		if trace != nil && trace.GotConn != nil {
			trace.GotConn(httptrace.GotConnInfo{Conn: cn.nc, Reused: reused})
		}
		resp, err := cn.roundTrip(ctx, req)
		if err == nil {
			return resp, nil
		}
		var r retryable
		switch {
		case errors.Is(err, errNotSent) && unsent < maxUnsent:
			// Not written: not a try (the connection left the pool).
			unsent++
		case errors.As(err, &r) && r.refused && r.progress && progress < maxProgress:
			progress++
		case errors.As(err, &r) && r.refused && refused < maxRefused:
			refused++
			if retry.Sleep(ctx, refusedBackoff.Delay(refused)) != nil {
				return nil, h1.Canceled(ctx)
			}
		case errors.As(err, &r) && !r.refused && tries < maxRetries:
			tries++
		default:
			return nil, err
		}
	}
}

// hostKey is the pool's name for u's host: host:port, lower case, the port
// 443 when the URL gives none (as the engine's urlid.HostKey), so that two
// spellings of a host share its connections and its cap.
func hostKey(u *url.URL) string {
	k := u.Host
	if u.Port() == "" {
		k = net.JoinHostPort(u.Hostname(), "443")
	}
	for i := 0; i < len(k) && k[i] != '%'; i++ { // an IPv6 zone keeps its case
		if 'A' <= k[i] && k[i] <= 'Z' {
			if j := strings.IndexByte(k, '%'); j >= 0 {
				return strings.ToLower(k[:j]) + k[j:]
			}
			return strings.ToLower(k)
		}
	}
	return k
}

// get returns a connection to u's host with a stream reserved for the
// caller: the first with room (reused), else one being opened that has room,
// else a new one (while the host has fewer than MaxConnsPerHost), else it
// waits.
func (c *Client) get(ctx context.Context, key string, u *url.URL) (cn *conn, reused bool, err error) {
	c.mu.Lock()
	for {
		if _, ok := c.noH2[key]; ok {
			c.mu.Unlock()
			return nil, false, ErrNotOffered
		}
		h := c.hosts[key]
		if h == nil {
			h = &host{key: key}
			c.hosts[key] = h
		}
		var stale []*conn
		var found *conn
		for _, cn := range h.conns {
			if cn.active == 0 && time.Since(cn.idleAt) > idleTimeout {
				stale = append(stale, cn)
				continue
			}
			if cn.canTake(c.o.Streams) {
				found = cn
				break
			}
		}
		for _, cn := range stale {
			cn.dead = true
			c.dropLocked(cn)
			go cn.close()
		}
		if found != nil {
			if found.active == 0 {
				c.idle.remove(found)
			}
			found.active++
			c.mu.Unlock()
			return found, true, nil
		}
		var d *dial
		for _, x := range h.dials {
			if x.waiters < c.o.Streams {
				d = x
				break
			}
		}
		// Connections going away do not count against MaxConnsPerHost (their
		// last streams may take long), but those still open are bounded: at
		// most as many again.
		n := len(h.conns) + len(h.dials)
		if d == nil && n < c.o.MaxConnsPerHost && n+h.draining < 2*c.o.MaxConnsPerHost {
			d = &dial{done: make(chan struct{})}
			h.dials = append(h.dials, d)
			go c.open(h, d, u)
		}
		if d != nil {
			d.waiters++
			c.mu.Unlock()
			select {
			case <-d.done:
			case <-ctx.Done():
				c.mu.Lock()
				select {
				case <-d.done: // too late: open reserved this request's stream
					c.mu.Unlock()
					if d.err == nil {
						c.release(d.cn)
					}
					return nil, false, h1.Canceled(ctx)
				default:
				}
				d.waiters--
				c.forgetLocked(h)
				c.mu.Unlock()
				return nil, false, h1.Canceled(ctx)
			}
			if d.err != nil {
				return nil, false, d.err
			}
			return d.cn, false, nil // its stream reserved by open
		}
		if h.wait == nil {
			h.wait = make(chan struct{})
		}
		wait := h.wait
		h.waiting++
		c.mu.Unlock()
		select {
		case <-wait:
			c.mu.Lock()
			h.waiting--
		case <-ctx.Done():
			c.mu.Lock()
			h.waiting--
			c.forgetLocked(h)
			c.mu.Unlock()
			return nil, false, h1.Canceled(ctx)
		}
	}
}

// open dials a connection for h, on a context of its own (the requests
// waiting for it may give up; the connection is kept for the next ones).
func (c *Client) open(h *host, d *dial, u *url.URL) {
	ctx, cancel := context.WithTimeout(context.Background(), c.o.TLSHandshakeTimeout+30*time.Second)
	defer cancel()
	cn, err := c.connect(ctx, h, u)
	var evict h1.Evicter
	c.mu.Lock()
	if err == nil {
		h.conns = append(h.conns, cn)
		cn.idleAt = time.Now()
		// A stream for each request waiting on the dial, before any other
		// request sees the connection (which could take them and make the
		// waiters open another: 5 connections for 16 requests at 4 streams).
		d.cn = cn
		cn.active = d.waiters
		if cn.active == 0 {
			evict = c.idle.pushBack(cn)
		}
	} else if errors.Is(err, ErrNotOffered) {
		if len(c.noH2) >= maxNoH2 {
			clear(c.noH2)
		}
		c.noH2[h.key] = struct{}{}
	}
	d.err = err
	for i, x := range h.dials {
		if x == d {
			h.dials = append(h.dials[:i], h.dials[i+1:]...)
			break
		}
	}
	close(d.done)
	h.wake()
	if err == nil {
		c.trimIdleLocked()
	} else {
		c.forgetLocked(h)
	}
	c.mu.Unlock()
	if err == nil {
		c.readers.Go(cn.readLoop)
	}
	if evict != nil {
		evict.EvictIdle()
	}
}

// connect dials, shakes hands and sends the client preface.
func (c *Client) connect(ctx context.Context, h *host, u *url.URL) (*conn, error) {
	nc, err := c.dial(ctx, "tcp", h.key)
	if err != nil {
		return nil, err
	}
	if c.plain {
		cn := newConn(c, h, nc)
		if err := cn.start(); err != nil {
			nc.Close()
			return nil, err
		}
		return cn, nil
	}
	c.mu.Lock()
	if h.tls == nil {
		h.tls = c.tls.Clone()
		if h.tls.ServerName == "" {
			h.tls.ServerName = u.Hostname()
		}
	}
	conf := h.tls
	c.mu.Unlock()
	tc := tls.Client(nc, conf)
	hctx, cancel := context.WithTimeout(ctx, c.o.TLSHandshakeTimeout)
	err = tc.HandshakeContext(hctx)
	cancel()
	if err != nil {
		nc.Close()
		if hctx.Err() == context.DeadlineExceeded {
			return nil, errors.New("net/http: TLS handshake timeout")
		}
		return nil, err
	}
	if tc.ConnectionState().NegotiatedProtocol != "h2" {
		if c.o.HTTP1 != nil {
			c.o.HTTP1.Adopt(u.Host, tc) // h1 names hosts as the URL does
		} else {
			tc.Close()
		}
		return nil, ErrNotOffered
	}
	cn := newConn(c, h, tc)
	if err := cn.start(); err != nil {
		tc.Close()
		return nil, err
	}
	return cn, nil
}

// release ends a stream's hold on cn (its stream closed on the wire).
func (c *Client) release(cn *conn) {
	var evict h1.Evicter
	c.mu.Lock()
	cn.active--
	closeIt := false
	if cn.active == 0 {
		if cn.draining || cn.dead {
			closeIt = !cn.dead
			cn.dead = true
			c.dropLocked(cn)
			c.undrainLocked(cn)
		} else {
			cn.idleAt = time.Now()
			evict = c.idle.pushBack(cn)
			c.trimIdleLocked()
		}
	}
	cn.h.wake()
	c.mu.Unlock()
	if closeIt {
		cn.close()
	}
	if evict != nil {
		evict.EvictIdle()
	}
}

// EvictIdle closes cn if it still has no stream (see h1.IdleLimit).
func (cn *conn) EvictIdle() {
	c := cn.c
	c.mu.Lock()
	if cn.lru.List() == nil || cn.active != 0 || cn.dead {
		c.mu.Unlock()
		return
	}
	cn.dead = true
	c.dropLocked(cn)
	c.mu.Unlock()
	cn.close()
}

// trimIdleLocked closes the least recently used idle connections past MaxIdle.
func (c *Client) trimIdleLocked() {
	for c.idle.Len() > c.o.MaxIdle {
		cn := c.idle.Front().Value
		cn.dead = true
		c.dropLocked(cn)
		go cn.close()
	}
}

// dropLocked takes cn out of its host's connections and the idle list, if
// there: no request gets it again. It may be called more than once.
func (c *Client) dropLocked(cn *conn) {
	c.idle.remove(cn) // if there
	h := cn.h
	for i, x := range h.conns {
		if x == cn {
			h.conns = append(h.conns[:i], h.conns[i+1:]...)
			break
		}
	}
	h.wake()
	c.forgetLocked(h)
}

// forgetLocked drops h from the map once nothing refers to it.
func (c *Client) forgetLocked(h *host) {
	if len(h.conns) == 0 && len(h.dials) == 0 && h.waiting == 0 && h.draining == 0 && c.hosts[h.key] == h {
		delete(c.hosts, h.key)
	}
}

// lost is called by cn's reader when the connection has ended.
func (c *Client) lost(cn *conn) {
	c.mu.Lock()
	cn.dead = true
	c.dropLocked(cn)
	c.undrainLocked(cn)
	c.mu.Unlock()
}

// undrainLocked stops counting cn among its host's draining connections.
func (c *Client) undrainLocked(cn *conn) {
	if cn.counted {
		cn.counted = false
		cn.h.draining--
		cn.h.wake()
		c.forgetLocked(cn.h)
	}
}

// drain marks cn as taking no new streams (GOAWAY, stream ids used up). It
// leaves its host's connections at once, so it no longer counts against
// MaxConnsPerHost (its streams may take long to end), and is closed once its
// last stream ends.
func (c *Client) drain(cn *conn) {
	c.mu.Lock()
	closeIt := false
	if !cn.draining && !cn.dead {
		cn.draining = true
		c.dropLocked(cn)
		if cn.active == 0 {
			cn.dead, closeIt = true, true
		} else {
			cn.counted = true
			cn.h.draining++
		}
	}
	c.mu.Unlock()
	if closeIt {
		cn.close()
	}
}

// setMaxStreams records the server's SETTINGS_MAX_CONCURRENT_STREAMS.
// A connection whose server allows no streams (0, which RFC 9113 lets a
// server send for a while) goes away as after a GOAWAY: the requests waiting
// open another (a server refusing everything fails them, see maxRefused).
func (c *Client) setMaxStreams(cn *conn, n uint32) {
	c.mu.Lock()
	cn.peerMax = n
	cn.h.wake()
	c.mu.Unlock()
	if n == 0 {
		c.drain(cn)
	}
}

// lowerMaxStreams records a stream limit the writer met before the reader
// told the pool (it only lowers: the reader's own update may be newer).
func (c *Client) lowerMaxStreams(cn *conn, n uint32) {
	c.mu.Lock()
	if n < cn.peerMax {
		cn.peerMax = n
	}
	c.mu.Unlock()
}

// CloseIdleConnections closes the connections with no stream in flight.
func (c *Client) CloseIdleConnections() {
	c.mu.Lock()
	var idle []*conn
	for c.idle.Len() > 0 {
		cn := c.idle.Front().Value
		cn.dead = true
		c.dropLocked(cn)
		idle = append(idle, cn)
	}
	c.mu.Unlock()
	for _, cn := range idle {
		cn.close()
	}
}

func (h *host) wake() {
	if h.wait != nil {
		close(h.wait)
		h.wait = nil
	}
}

// connList is the list of idle connections, least recently used first. They
// are counted in limit (Options.IdleLimit, may be nil) too.
type connList struct {
	ilist.List[*conn]
	limit *h1.IdleLimit
}

// pushBack adds cn as the most recently used, and returns the connection
// limit says to close (see h1.IdleLimit.Add), or nil.
func (l *connList) pushBack(cn *conn) h1.Evicter {
	l.PushBack(&cn.lru)
	return l.limit.Add(&cn.place, cn)
}

// remove takes cn out of the list, if it is there.
func (l *connList) remove(cn *conn) {
	l.Remove(&cn.lru)
	l.limit.Remove(&cn.place)
}
