// Package h1 is a lean HTTP/1.1 client for haul's hot path: GET requests over
// pooled keep-alive connections, with one goroutine per request (the caller's)
// and none per connection.
//
// It exists for CPU time. On 10,000 small (4 KiB) files from a local nginx,
// net/http's client costs about 30 µs of CPU per request: each request is handed
// from the caller to the connection's writeLoop and the response back from its
// readLoop over channels, and the response head goes through textproto's generic
// reader. A client that writes the request and parses the response on the
// caller's goroutine costs 10-15 µs, which is what lets haul beat curl on small
// files.
//
// Client is an http.RoundTripper: one exchange per RoundTrip, under an
// http.Client that follows redirects and keeps cookies. It does less than
// net/http's Transport: only GET without a body, no proxies, no HTTP/2, no
// transparent decompression. Requests it cannot make (another method, a
// request body, a host that needs IDNA) fail with an error wrapping
// errors.ErrUnsupported, so a caller can send those through net/http instead.
package h1

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"sync"
	"time"
)

// Options configures New. The zero value is usable for http:// URLs.
type Options struct {
	// DialContext opens TCP connections and should carry the connect timeout.
	// Nil means a net.Dialer with a 30s timeout and 30s TCP keep-alive.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// TLSConfig is the base configuration for https. Each host gets a clone with
	// ServerName set to the host (unless set) and NextProtos ["http/1.1"]; when the
	// base has no ClientSessionCache, all hosts share one, so reconnects resume
	// sessions. Nil means https URLs fail.
	TLSConfig *tls.Config
	// TLSHandshakeTimeout bounds each handshake; 0 means only the request's
	// context does.
	TLSHandshakeTimeout time.Duration
	// MaxIdlePerHost is how many idle keep-alive connections are kept per
	// scheme and host:port: 0 means 2 (as in net/http), negative means none.
	MaxIdlePerHost int
	// MaxIdle caps the idle connections kept across all hosts, the least recently
	// used closed first, so a list spanning thousands of hosts does not run out
	// of file descriptors: 0 means 100.
	MaxIdle int
	// IdleLimit, if not nil, bounds the idle connections of this client and
	// of the others that share it, all together (see IdleLimit), besides
	// MaxIdle.
	IdleLimit *IdleLimit
	// MaxConnsPerHost caps the connections to one scheme and host:port, idle
	// ones included: 0 means no cap. RoundTrip waits for a free slot or for the end of
	// the request's context.
	MaxConnsPerHost int
}

// Client is a lean HTTP/1.1 client for GET requests: one goroutine per request,
// no background goroutines per connection, keep-alive connections pooled per
// host. It is safe for concurrent use; like http.Client, one should be shared.
type Client struct {
	o    Options
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
	tls  *tls.Config // base for each host's clone, nil without https

	mu    sync.Mutex
	hosts map[hostKey]*hostPool // only hosts with requests in flight or idle connections
	lru   connList              // every idle connection, least recently used first
}

// New returns a Client configured by o.
func New(o Options) *Client {
	if o.MaxIdlePerHost == 0 {
		o.MaxIdlePerHost = 2
	}
	if o.MaxIdle == 0 {
		o.MaxIdle = 100
	}
	c := &Client{o: o, dial: o.DialContext, hosts: make(map[hostKey]*hostPool), lru: connList{limit: o.IdleLimit}}
	if c.dial == nil {
		c.dial = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	if o.TLSConfig != nil {
		c.tls = o.TLSConfig.Clone()
		c.tls.NextProtos = []string{"http/1.1"}
		if c.tls.ClientSessionCache == nil {
			c.tls.ClientSessionCache = tls.NewLRUClientSessionCache(256)
		}
	}
	return c
}

// RoundTrip makes one GET exchange and returns its response, as an
// http.RoundTripper: it follows no redirect and keeps no cookies (an
// http.Client above it does both), a response is not an error whatever its
// status, and the caller must close the body. Requests it cannot make
// (another method, a request body, a host that needs IDNA) fail with an error
// wrapping errors.ErrUnsupported before any connection is made.
//
// An httptrace.ClientTrace in the request's context is told GetConn (the
// host:port) and GotConn (the connection, a *tls.Conn over https), as
// net/http's Transport tells it.
//
// Read and Close of one body must not be called concurrently; cancel the
// request's context to abort a blocked Read.
func (c *Client) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := Refuse(req, "h1"); err != nil {
		return nil, err
	}
	return c.roundTrip(req)
}

// Refuse returns the error of a request that a lean client (name: "h1",
// "h2") does not make, having closed its body as a RoundTripper must: one
// without a URL, another method than GET, a request body (wrapping
// errors.ErrUnsupported, so that a caller can send it another way). It
// returns nil for a request the client makes.
func Refuse(req *http.Request, name string) error {
	var err error
	switch {
	case req.URL == nil:
		err = errors.New(name + ": nil Request.URL")
	case req.Method != "" && req.Method != http.MethodGet:
		err = fmt.Errorf("%s: method %s: %w", name, req.Method, errors.ErrUnsupported)
	case req.Body != nil && req.Body != http.NoBody:
		err = fmt.Errorf("%s: request body: %w", name, errors.ErrUnsupported)
	default:
		return nil
	}
	if req.Body != nil {
		req.Body.Close()
	}
	return err
}

// roundTrip makes one request without following redirects.
func (c *Client) roundTrip(req *http.Request) (*http.Response, error) {
	u := req.URL
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("unsupported protocol scheme %q", u.Scheme)
	}
	if u.Host == "" {
		return nil, errors.New("http: no Host in request URL")
	}
	if u.Scheme == "https" && c.tls == nil {
		return nil, errors.New("h1: https URL but no TLSConfig")
	}
	for i := 0; i < len(u.Host); i++ {
		if u.Host[i] >= 0x80 {
			return nil, fmt.Errorf("h1: non-ASCII host %q: %w", u.Host, errors.ErrUnsupported)
		}
	}
	ctx := req.Context()
	if ctx.Err() != nil {
		return nil, Canceled(ctx)
	}
	trace := httptrace.ContextClientTrace(ctx)
	if trace != nil && trace.GetConn != nil {
		trace.GetConn(hostPort(u))
	}
	p, err := c.acquire(ctx, hostKey{https: u.Scheme == "https", host: u.Host})
	if err != nil {
		return nil, err
	}
	for fresh := false; ; fresh = true {
		var cn *conn
		if !fresh {
			cn = c.takeIdle(p)
		}
		idle := cn != nil
		if cn == nil {
			if cn, err = c.dialConn(ctx, p, u); err != nil {
				c.finish(p, nil, false)
				return nil, ctxErr(ctx, err)
			}
		}
		if trace != nil && trace.GotConn != nil {
			info := httptrace.GotConnInfo{Conn: cn.nc, Reused: cn.reused, WasIdle: idle}
			if idle {
				info.IdleTime = time.Since(cn.idleAt)
			}
			trace.GotConn(info)
		}
		resp, stale, err := c.exchange(ctx, p, cn, req)
		if err == nil {
			return resp, nil
		}
		// A reused connection that fails before the first response byte was most
		// likely closed by the server while idle: GET is idempotent, so try once
		// more on a new connection, as net/http does.
		if !stale || fresh || ctx.Err() != nil {
			c.finish(p, nil, false)
			return nil, ctxErr(ctx, err)
		}
	}
}

// hostPort is u's host:port, the scheme's default port when it names none.
func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	if u.Scheme == "https" {
		return net.JoinHostPort(u.Hostname(), "443")
	}
	return net.JoinHostPort(u.Hostname(), "80")
}

// Canceled is the error of an operation cut short by the end of ctx: it is
// (wraps) ctx.Err() and, when different, context.Cause(ctx).
func Canceled(ctx context.Context) error {
	err := ctx.Err()
	if cause := context.Cause(ctx); cause != nil && cause != err {
		return fmt.Errorf("%w: %w", err, cause)
	}
	return err
}

// ctxErr returns err, or the context's error when ctx ended meanwhile: a
// connection poked by the context fails with a deadline error that would hide
// the reason.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return Canceled(ctx)
	}
	return err
}
