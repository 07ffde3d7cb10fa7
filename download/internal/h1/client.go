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
// It does less than net/http: only GET without a body, no proxies, no HTTP/2,
// no cookies, no transparent decompression. Requests it cannot make (another
// method, a request body, a host that needs IDNA) fail with an error wrapping
// errors.ErrUnsupported, so a caller can send those through net/http instead.
package h1

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
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
	// MaxConnsPerHost caps the connections to one scheme and host:port, idle
	// ones included: 0 means no cap. Do waits for a free slot or for the end of
	// the request's context.
	MaxConnsPerHost int
	// CheckRedirect has the contract of http.Client.CheckRedirect: it sees each
	// redirect before it is followed, and its error (http.ErrUseLastResponse
	// aside) ends Do. Nil means stop after 10 redirects.
	CheckRedirect func(req *http.Request, via []*http.Request) error
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
	c := &Client{o: o, dial: o.DialContext, hosts: make(map[hostKey]*hostPool)}
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

// Do sends a GET request and returns its response, following redirects as
// http.Client does. As with http.Client, a response is not an error whatever its
// status, the caller must close the body, errors are *url.Error, and a failing
// CheckRedirect returns both the last response (body closed) and the error.
//
// Read and Close of one body must not be called concurrently; cancel the
// request's context to abort a blocked Read.
func (c *Client) Do(req *http.Request) (*http.Response, error) {
	return Get(req, "h1", c.roundTrip, c.o.CheckRedirect)
}

// Get is the Do of a lean client whose roundTrip makes one GET without
// following redirects (h1's, h2's): it refuses what neither makes (another
// method, a request body), follows redirects as http.Client does under check
// (nil: stop after 10), and wraps errors as *url.Error, prefixed by name.
func Get(req *http.Request, name string, roundTrip func(*http.Request) (*http.Response, error),
	check func(req *http.Request, via []*http.Request) error) (*http.Response, error) {
	if req.URL == nil {
		return nil, &url.Error{Op: "Get", Err: fmt.Errorf("%s: nil Request.URL", name)}
	}
	if req.Method != "" && req.Method != http.MethodGet {
		return nil, URLError(req.URL, fmt.Errorf("%s: method %s: %w", name, req.Method, errors.ErrUnsupported))
	}
	if req.Body != nil && req.Body != http.NoBody {
		req.Body.Close()
		return nil, URLError(req.URL, fmt.Errorf("%s: request body: %w", name, errors.ErrUnsupported))
	}
	var via []*http.Request
	for {
		resp, err := roundTrip(req)
		if err != nil {
			return nil, URLError(req.URL, err)
		}
		via = append(via, req)
		next, loc, err := Redirect(via, resp)
		if err != nil {
			resp.Body.Close()
			return nil, URLError(req.URL, err)
		}
		if next == nil {
			return resp, nil
		}
		if check != nil {
			err = check(next, via)
		} else if len(via) >= 10 {
			err = errors.New("stopped after 10 redirects")
		}
		if err == http.ErrUseLastResponse {
			return resp, nil
		}
		Discard(resp)
		if err != nil {
			return resp, &url.Error{Op: "Get", URL: loc, Err: err}
		}
		req = next
	}
}

// Redirect returns the request that follows resp, the response to the last of
// via (the requests of the chain so far, in order), built as net/http builds it:
// the first request's headers, less the credentials once a hop has left its
// domain, plus a Referer unless going from https to http. It returns a nil
// request when resp is not a redirect to follow (not 301, 302, 303, 307 or 308,
// or without a Location), and the Location, for errors. A client that hands a
// chain on to another continues it with Redirect, so the policy is the same
// whichever client makes each hop.
func Redirect(via []*http.Request, resp *http.Response) (next *http.Request, loc string, err error) {
	switch resp.StatusCode {
	case 301, 302, 303, 307, 308:
	default:
		return nil, "", nil
	}
	loc = resp.Header.Get("Location")
	if loc == "" {
		return nil, "", nil // a 3xx without Location is a response like any other
	}
	last := via[len(via)-1]
	u, err := last.URL.Parse(loc)
	if err != nil {
		return nil, loc, fmt.Errorf("failed to parse Location header %q: %v", loc, err)
	}
	return redirected(via, resp, u, loc), loc, nil
}

// Discard closes the body of a redirect about to be followed. As net/http, it
// reads a little first so that a small body leaves the connection reusable.
func Discard(resp *http.Response) {
	if resp.ContentLength == -1 || resp.ContentLength <= 2<<10 {
		io.CopyN(io.Discard, resp.Body, 2<<10)
	}
	resp.Body.Close()
}

// redirected builds the request that follows resp to u (see Redirect).
func redirected(via []*http.Request, resp *http.Response, u *url.URL, loc string) *http.Request {
	first, last := via[0], via[len(via)-1]
	// Sensitive headers are dropped for good once a hop has left the first
	// domain, as net/http does: it is decided over the whole chain, which
	// may have started in another client.
	strip := offDomain(u, first.URL)
	for _, r := range via[1:] {
		strip = strip || offDomain(r.URL, first.URL)
	}
	next := &http.Request{Method: http.MethodGet, URL: u, Header: make(http.Header, len(first.Header)+1),
		Response: resp, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
	if last.Host != "" && last.Host != last.URL.Host {
		// A custom Host stays on a relative redirect (net/http issue 22233).
		if lu, _ := url.Parse(loc); lu != nil && !lu.IsAbs() {
			next.Host = last.Host
		}
	}
	for k, vv := range first.Header {
		switch http.CanonicalHeaderKey(k) {
		case "Authorization", "Www-Authenticate", "Cookie", "Cookie2", "Proxy-Authorization", "Proxy-Authenticate":
			if strip {
				continue
			}
		}
		next.Header[k] = vv
	}
	if ref := referer(last.URL, u, next.Header.Get("Referer")); ref != "" {
		next.Header.Set("Referer", ref)
	}
	return next.WithContext(first.Context())
}

func referer(from, to *url.URL, explicit string) string {
	if from.Scheme == "https" && to.Scheme == "http" {
		return ""
	}
	if explicit != "" {
		return explicit
	}
	if from.User != nil {
		u := *from
		u.User = nil
		return u.String()
	}
	return from.String()
}

// offDomain reports whether u is on neither the host of first nor its domain.
func offDomain(u, first *url.URL) bool {
	return u.Host != first.Host && !isDomainOrSubdomain(u.Hostname(), first.Hostname())
}

// isDomainOrSubdomain reports whether sub is parent or a subdomain of it.
func isDomainOrSubdomain(sub, parent string) bool {
	sub, parent = strings.ToLower(sub), strings.ToLower(parent)
	if sub == parent {
		return true
	}
	if strings.ContainsAny(sub, ":%") { // an IPv6 address, never a subdomain
		return false
	}
	return strings.HasSuffix(sub, parent) && sub[len(sub)-len(parent)-1] == '.'
}

// URLError wraps err as net/http does, with the URL's password masked.
func URLError(u *url.URL, err error) error {
	s := u.String()
	if _, ok := u.User.Password(); ok {
		s = strings.Replace(s, u.User.String()+"@", u.User.Username()+":***@", 1)
	}
	return &url.Error{Op: "Get", URL: s, Err: err}
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
	p, err := c.acquire(ctx, hostKey{https: u.Scheme == "https", host: u.Host})
	if err != nil {
		return nil, err
	}
	for fresh := false; ; fresh = true {
		var cn *conn
		if !fresh {
			cn = c.takeIdle(p)
		}
		if cn == nil {
			if cn, err = c.dialConn(ctx, p, u); err != nil {
				c.finish(p, nil, false)
				return nil, ctxErr(ctx, err)
			}
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
