package h1

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/haul/haul/internal/ilist"
)

const (
	readBufSize  = 16 << 10 // a small file's head and body in one read; reads of a body at least this big bypass the buffer
	writeBufSize = 4 << 10
	idleTimeout  = 90 * time.Second // an idle connection older than this is closed, not used
)

// hostKey names a pool: the scheme, and the host as the URL spells it.
type hostKey struct {
	https bool
	host  string
}

// hostPool is the state shared by the requests to one scheme and host:port.
// Its fields are guarded by Client.mu, except sem.
type hostPool struct {
	key   hostKey
	idle  []*conn       // most recently used last
	users int           // requests between acquire and finish
	sem   chan struct{} // a slot per request in flight, nil without MaxConnsPerHost
	tls   *tls.Config   // this host's clone of Client.tls, made on first dial
}

// conn is one connection with its buffers. Between requests it sits in its
// pool's idle list and the Client's LRU list, without buffers (see attach).
type conn struct {
	nc        net.Conn
	br        *bufio.Reader        // nil while idle
	bw        *bufio.Writer        // nil while idle
	head      []byte               // scratch for response heads
	tls       *tls.ConnectionState // nil for http
	reused    bool                 // it served a response before
	raw       syscall.RawConn      // the socket, for quiet (nil: not a socket, or no peek on this OS)
	peek      func(fd uintptr) bool
	peekQuiet bool
	idleAt    time.Time
	pool      *hostPool // not dropped while one of its connections is idle or in use
	c         *Client
	lru       ilist.Elem[*conn] // in Client.lru while idle
	place     IdlePlace         // in Options.IdleLimit while idle
}

// The buffers of connections in use. An idle connection holds none (it has
// nothing buffered: one with bytes left over is closed, not kept), so that
// idle connections cost no memory beyond the socket, and a list over many
// hosts, a connection each, reuses the same few buffers rather than
// allocating and zeroing 20 KiB per host.
var (
	readBufs  = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufSize) }}
	writeBufs = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, writeBufSize) }}
)

// attach gives cn its buffers, for a request.
func (cn *conn) attach() {
	cn.br = readBufs.Get().(*bufio.Reader)
	cn.br.Reset(cn.nc)
	cn.bw = writeBufs.Get().(*bufio.Writer)
	cn.bw.Reset(cn.nc)
}

// detach gives cn's buffers back, once its request is done and nothing is
// left in them. Only a connection going idle gives them back: one being
// closed may have a body's Read still under way on another goroutine.
func (cn *conn) detach() {
	cn.br.Reset(nil)
	readBufs.Put(cn.br)
	cn.bw.Reset(nil)
	writeBufs.Put(cn.bw)
	cn.br, cn.bw = nil, nil
}

// quiet reports whether nothing arrived on cn while it was idle. A server sends
// nothing between responses: bytes there (a stray response, a CRLF) would be
// read as the answer to the next request, and an end of stream means the server
// closed the connection. It costs one non-blocking peek at the socket and, over
// TLS, one read that cannot wait.
func (cn *conn) quiet() bool {
	if cn.raw != nil {
		cn.peekQuiet = false
		if cn.raw.Read(cn.peek) != nil || !cn.peekQuiet {
			return false
		}
	}
	return cn.tls == nil || cn.tlsQuiet()
}

// tlsQuiet reports whether crypto/tls holds nothing for cn. It reads ahead of
// the record it returns, so stray bytes that came in the same TCP segment as a
// response wait in its buffer, out of sight of the peek at the socket. A read
// whose deadline has passed decrypts the records held there and returns their
// data (or io.EOF after a close_notify), else fails with a timeout before
// touching the socket; tls treats a timeout as temporary and stays usable.
func (cn *conn) tlsQuiet() bool {
	if cn.nc.SetReadDeadline(time.Unix(1, 0)) != nil {
		return false
	}
	_, err := cn.br.Peek(1)
	return errors.Is(err, os.ErrDeadlineExceeded) && cn.nc.SetReadDeadline(time.Time{}) == nil
}

// expire makes every blocked or later I/O on cn fail at once. It is what a
// request's context does to its connection when it ends.
func (cn *conn) expire() { cn.nc.SetDeadline(time.Unix(1, 0)) }

// acquire registers a request with its host's pool and, under MaxConnsPerHost,
// waits for a slot. Each successful acquire is matched by one finish.
//
// Counting requests, not connections, keeps the connections to a host within
// the cap: a request dials only when its pool has no idle connection, that is
// when every other connection is held by one of the other requests in flight,
// of which there are at most cap-1.
func (c *Client) acquire(ctx context.Context, k hostKey) (*hostPool, error) {
	c.mu.Lock()
	p := c.hosts[k]
	if p == nil {
		p = &hostPool{key: k}
		if c.o.MaxConnsPerHost > 0 {
			p.sem = make(chan struct{}, c.o.MaxConnsPerHost)
		}
		c.hosts[k] = p
	}
	p.users++
	c.mu.Unlock()
	if p.sem != nil {
		select {
		case p.sem <- struct{}{}:
		case <-ctx.Done():
			c.mu.Lock()
			c.dropUserLocked(p)
			c.mu.Unlock()
			return nil, Canceled(ctx)
		}
	}
	return p, nil
}

// idleLocked puts cn, a connection of p, in the idle lists as the most
// recently used, and appends to closing what that pushes out of them: the
// oldest of p's past MaxIdlePerHost, and the client's oldest (at most two:
// the list grows by one) past MaxIdle or idle for longer than idleTimeout.
// evict is the connection the shared IdleLimit says to close, nil if none.
func (c *Client) idleLocked(p *hostPool, cn *conn, closing []*conn) (_ []*conn, evict Evicter) {
	now := time.Now()
	cn.idleAt = now
	p.idle = append(p.idle, cn)
	evict = c.lru.pushBack(cn)
	if len(p.idle) > c.o.MaxIdlePerHost {
		closing = append(closing, c.removeIdleLocked(p, p.idle[0]))
	}
	for n := 0; n < 2 && c.lru.Len() > 0 && (c.lru.Len() > c.o.MaxIdle || now.Sub(c.lru.Front().Value.idleAt) > idleTimeout); n++ {
		old := c.lru.Front().Value
		closing = append(closing, c.removeIdleLocked(old.pool, old))
	}
	return closing, evict
}

// finish ends a request's use of p: cn goes back to the idle list when keep is
// true, else it is closed; then the request's slot is given back.
func (c *Client) finish(p *hostPool, cn *conn, keep bool) {
	var victims [4]*conn
	closing := victims[:0]
	if cn != nil && (!keep || c.o.MaxIdlePerHost < 0 || cn.br.Buffered() > 0 || cn.bw.Buffered() > 0) {
		closing = append(closing, cn) // Buffered: the server sent more than the response
		cn = nil
	}
	if cn != nil {
		cn.detach()
	}
	var evict Evicter
	c.mu.Lock()
	if cn != nil {
		cn.reused = true
		closing, evict = c.idleLocked(p, cn, closing)
	}
	c.dropUserLocked(p)
	c.mu.Unlock()
	if p.sem != nil {
		<-p.sem
	}
	for _, v := range closing {
		v.nc.Close()
	}
	if evict != nil {
		evict.EvictIdle()
	}
}

// EvictIdle closes cn if it is still idle (see IdleLimit).
func (cn *conn) EvictIdle() {
	c := cn.c
	c.mu.Lock()
	if cn.lru.List() == nil {
		c.mu.Unlock()
		return
	}
	c.removeIdleLocked(cn.pool, cn)
	c.mu.Unlock()
	cn.nc.Close()
}

func (c *Client) dropUserLocked(p *hostPool) {
	p.users--
	c.dropUnusedLocked(p)
}

// dropUnusedLocked forgets p when no request and no idle connection needs it,
// so the table holds only the hosts in use, whatever the number of hosts seen.
func (c *Client) dropUnusedLocked(p *hostPool) {
	if p.users == 0 && len(p.idle) == 0 && c.hosts[p.key] == p {
		delete(c.hosts, p.key)
	}
}

// removeIdleLocked takes cn out of p's idle list and the LRU list and returns it.
func (c *Client) removeIdleLocked(p *hostPool, cn *conn) *conn {
	for i, ic := range p.idle {
		if ic == cn {
			p.idle = append(p.idle[:i], p.idle[i+1:]...)
			break
		}
	}
	c.lru.remove(cn)
	c.dropUnusedLocked(p)
	return cn
}

// takeIdle returns p's most recently used idle connection, or nil. When that
// one has been idle too long, so have all the others: they are all closed.
func (c *Client) takeIdle(p *hostPool) *conn {
	c.mu.Lock()
	n := len(p.idle)
	if n == 0 {
		c.mu.Unlock()
		return nil
	}
	cn := p.idle[n-1]
	if time.Since(cn.idleAt) <= idleTimeout {
		p.idle = p.idle[:n-1]
		c.lru.remove(cn)
		c.mu.Unlock()
		cn.attach()
		if !cn.quiet() {
			cn.nc.Close()
			cn.detach() // nobody else has it
			return c.takeIdle(p)
		}
		return cn
	}
	stale := p.idle
	p.idle = nil
	for _, ic := range stale {
		c.lru.remove(ic)
	}
	c.mu.Unlock()
	for _, ic := range stale {
		ic.nc.Close()
	}
	return nil
}

// CloseIdleConnections closes every idle connection. Connections in use are
// not affected.
func (c *Client) CloseIdleConnections() {
	c.mu.Lock()
	var all []*conn
	for k, p := range c.hosts {
		all = append(all, p.idle...)
		p.idle = nil
		if p.users == 0 {
			delete(c.hosts, k)
		}
	}
	for c.lru.Len() > 0 {
		c.lru.remove(c.lru.Front().Value)
	}
	c.mu.Unlock()
	for _, cn := range all {
		cn.nc.Close()
	}
}

// dialConn opens a new connection for p: TCP, then TLS for https.
func (c *Client) dialConn(ctx context.Context, p *hostPool, u *url.URL) (*conn, error) {
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "80"
		if p.key.https {
			port = "443"
		}
	}
	nc, err := c.dial(ctx, "tcp", net.JoinHostPort(host, port))
	if err != nil {
		return nil, err
	}
	cn := &conn{nc: nc, pool: p, c: c}
	cn.lru.Value = cn
	cn.setRaw(nc)
	if p.key.https {
		c.mu.Lock()
		if p.tls == nil {
			p.tls = c.tls.Clone()
			if p.tls.ServerName == "" {
				p.tls.ServerName = host
			}
		}
		cfg := p.tls
		c.mu.Unlock()
		tc := tls.Client(nc, cfg)
		if err := c.handshake(ctx, tc); err != nil {
			nc.Close()
			return nil, err
		}
		st := tc.ConnectionState()
		cn.nc, cn.tls = tc, &st
	}
	cn.attach()
	return cn, nil
}

func (c *Client) handshake(ctx context.Context, tc *tls.Conn) error {
	if c.o.TLSHandshakeTimeout <= 0 {
		return tc.HandshakeContext(ctx)
	}
	hctx, cancel := context.WithTimeout(ctx, c.o.TLSHandshakeTimeout)
	defer cancel()
	err := tc.HandshakeContext(hctx)
	if err != nil && ctx.Err() == nil && hctx.Err() != nil {
		return fmt.Errorf("h1: TLS handshake timeout after %s: %w", c.o.TLSHandshakeTimeout, hctx.Err())
	}
	return err
}

// connList is the list of idle connections, oldest first. They are counted
// in limit (Options.IdleLimit, may be nil) too.
type connList struct {
	ilist.List[*conn]
	limit *IdleLimit
}

// pushBack adds cn as the most recently used, and returns the connection
// limit says to close (see IdleLimit.Add), or nil.
func (l *connList) pushBack(cn *conn) Evicter {
	l.PushBack(&cn.lru)
	return l.limit.Add(&cn.place, cn)
}

func (l *connList) remove(cn *conn) {
	l.limit.Remove(&cn.place)
	l.Remove(&cn.lru)
}

// Adopt takes tc, a connection to host (host:port as a URL spells it, over
// https) whose handshake is done and whose server chose HTTP/1.1 in ALPN, into
// the idle pool, as if this client had dialed it: the next request to the host
// uses it. h2 hands over the connections it opened to servers that do not
// speak HTTP/2, so that learning it costs no connection.
func (c *Client) Adopt(host string, tc *tls.Conn) {
	st := tc.ConnectionState()
	cn := &conn{nc: tc, tls: &st, c: c} // idle: no buffers until a request takes it
	cn.lru.Value = cn
	cn.setRaw(tc.NetConn())
	k := hostKey{https: true, host: host}
	c.mu.Lock()
	p := c.hosts[k]
	if p == nil {
		p = &hostPool{key: k}
		if c.o.MaxConnsPerHost > 0 {
			p.sem = make(chan struct{}, c.o.MaxConnsPerHost)
		}
		c.hosts[k] = p
	}
	cn.pool = p
	closing, evict := c.idleLocked(p, cn, nil)
	c.mu.Unlock()
	for _, v := range closing {
		v.nc.Close()
	}
	if evict != nil {
		evict.EvictIdle()
	}
}

// IdleLimit bounds the idle connections of the clients that share it (the
// h1 and h2 clients of one run), all together, the least recently used
// closed first whichever client holds it: so that the idle sockets of a run
// stay within a descriptor budget whatever mix of protocols its hosts speak,
// while either client may use all of it. Each client keeps its own MaxIdle
// besides. It is safe for concurrent use.
type IdleLimit struct {
	mu   sync.Mutex
	max  int
	idle ilist.List[Evicter] // least recently used first
}

// NewIdleLimit returns an IdleLimit of n connections (at least 1).
func NewIdleLimit(n int) *IdleLimit { return &IdleLimit{max: max(n, 1)} }

// Evicter is an idle connection that an IdleLimit may close.
type Evicter interface {
	// EvictIdle closes the connection if it is still idle, taking it out of
	// its client's pool (a request may have taken it meanwhile: then it does
	// nothing). It is called with no lock of the IdleLimit held.
	EvictIdle()
}

// IdlePlace is a connection's place in an IdleLimit, kept in the connection.
type IdlePlace struct{ el ilist.Elem[Evicter] }

// Add records an idle connection (p its place, cn itself) as the most
// recently used, and returns the one to close (the least recently used) if
// that makes one too many, else nil: the caller calls its EvictIdle once it
// holds no lock of its own. A nil IdleLimit bounds nothing.
func (l *IdleLimit) Add(p *IdlePlace, cn Evicter) Evicter {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	p.el.Value = cn
	l.idle.PushBack(&p.el) // to the recent end if it was in already
	if l.idle.Len() <= l.max {
		return nil
	}
	old := l.idle.Front()
	l.idle.Remove(old)
	return old.Value
}

// Remove forgets a connection that is no longer idle (taken, or closed). It
// does nothing if the connection is not there.
func (l *IdleLimit) Remove(p *IdlePlace) {
	if l == nil {
		return
	}
	l.mu.Lock()
	l.idle.Remove(&p.el)
	l.mu.Unlock()
}

// Len returns how many idle connections the IdleLimit counts.
func (l *IdleLimit) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.idle.Len()
}
