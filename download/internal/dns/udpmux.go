package dns

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// perSocket is how many queries one UDP socket carries before the next query
// opens another. A socket of its own per query costs about ten system calls
// (socket, connect, getsockname, getpeername, the poller's two, close) where
// sending and receiving take two: on a list of distinct hosts that was a
// fifth of haul's CPU. A source port that changes every perSocket queries,
// with a random ID each, still leaves an off-path forger little to aim at
// (c-ares reuses its sockets likewise, bounded by udp_max_queries).
const perSocket = 128

// udpMuxes holds a udpMux per name server, made at its first query.
type udpMuxes struct {
	mu sync.Mutex
	m  map[netip.AddrPort]*udpMux
}

func (ms *udpMuxes) get(server netip.AddrPort) *udpMux {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	m := ms.m[server]
	if m == nil {
		if ms.m == nil {
			ms.m = make(map[netip.AddrPort]*udpMux)
		}
		m = &udpMux{server: server}
		ms.m[server] = m
	}
	return m
}

// udpMux sends the queries in flight to one server over one connected UDP
// socket (the kernel drops datagrams from anyone else, and a server that is
// not there is a refusal, not a timeout) and hands each answer to the query
// of its ID and question. A socket is closed as soon as no query waits on
// it, so that an idle run holds none (and a lookup at a time costs what a
// socket of its own did); it takes no new query after perSocket.
type udpMux struct {
	server netip.AddrPort
	mu     sync.Mutex
	cur    *udpSock // the socket new queries go to; nil: the next opens one
}

// udpSock is one socket of a udpMux and the queries waiting on it.
type udpSock struct {
	c       *net.UDPConn
	sent    int                    // queries registered, under the mux's mu
	waiting map[qkey]chan datagram // under the mux's mu
	closed  bool                   // under the mux's mu
}

// qkey is what ties an answer to its query: the ID and the question.
type qkey struct {
	id    uint16
	qtype dnsmessage.Type
	class dnsmessage.Class
	name  string // lower case
}

// errBusy is a query whose ID and question are those of another in flight on
// the socket: its answer could not be told apart, so it goes alone.
var errBusy = errors.New("the same query is in flight")

// register makes k a query waiting on the mux's socket, opening one where
// there is none or the current one has carried perSocket; the caller sends
// the query on the socket returned and then calls done.
func (m *udpMux) register(k qkey) (*udpSock, chan datagram, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.cur
	if s == nil || s.sent >= perSocket {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(m.server))
		if err != nil {
			return nil, nil, err
		}
		s = &udpSock{c: c, waiting: make(map[qkey]chan datagram)}
		m.cur = s
		go m.read(s)
	}
	if _, ok := s.waiting[k]; ok {
		return nil, nil, errBusy
	}
	ch := make(chan datagram, 1)
	s.waiting[k] = ch
	s.sent++
	return s, ch, nil
}

// done ends the wait of k on s, closing s when nothing else waits on it.
func (m *udpMux) done(s *udpSock, k qkey) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(s.waiting, k)
	if len(s.waiting) == 0 && !s.closed {
		s.closed = true
		s.c.Close()
		if m.cur == s {
			m.cur = nil
		}
	}
}

// read hands the answers arriving on s to their queries until s is closed.
// A datagram that answers no query waiting (a late answer to one given up,
// a forgery) is dropped. An error reading (ICMP port unreachable: nothing
// listens at the server's port) is given to every query waiting.
func (m *udpMux) read(s *udpSock) {
	bp := bufs.Get().(*[]byte)
	defer bufs.Put(bp)
	buf := *bp
	for {
		n, err := s.c.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			m.mu.Lock()
			closed := s.closed
			for _, ch := range s.waiting {
				select {
				case ch <- datagram{err: err}:
				default:
				}
			}
			m.mu.Unlock()
			if closed {
				return
			}
			continue
		}
		k, ok := keyOf(buf[:n], true)
		if !ok {
			continue
		}
		m.mu.Lock()
		ch := s.waiting[k]
		m.mu.Unlock()
		if ch != nil {
			select {
			case ch <- datagram{msg: bytes.Clone(buf[:n])}:
			default: // it has one already: a duplicate
			}
		}
	}
}

// keyOf is the key of the message msg: a response when response is true, a
// query otherwise; ok is false for anything else.
func keyOf(msg []byte, response bool) (k qkey, ok bool) {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil || h.Response != response {
		return qkey{}, false
	}
	q, err := p.Question()
	if err != nil {
		return qkey{}, false
	}
	return keyFor(h.ID, &q), true
}

// keyFor is the key of the query of id and q, and of its answer.
func keyFor(id uint16, q *dnsmessage.Question) qkey {
	return qkey{id: id, qtype: q.Type, class: q.Class, name: lowerName(q.Name)}
}

// datagram is an answer handed to a query, or the error that ends its wait.
type datagram struct {
	msg []byte
	err error
}

// exchange sends the query msg, of key k, to the mux's server and returns the
// datagram that answers it, waiting no longer than ctx allows. It reports
// errBusy where another query of the same ID and question is in flight.
func (m *udpMux) exchange(ctx context.Context, k qkey, msg []byte) ([]byte, error) {
	s, ch, err := m.register(k)
	if err != nil {
		return nil, err
	}
	defer m.done(s, k)
	if _, err := s.c.Write(msg); err != nil {
		return nil, err
	}
	select {
	case r := <-ch:
		return r.msg, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// dial is the Dial of a net.Resolver (Go's resolver, used without
// --dns-server) that sends its UDP queries through the muxes: a connection
// that carries one query and its answer. TCP is dialed as usual.
func (ms *udpMuxes) dial(ctx context.Context, network, address string) (net.Conn, error) {
	if network != "udp" && network != "udp4" && network != "udp6" {
		var d net.Dialer
		return d.DialContext(ctx, network, address)
	}
	server, err := netip.ParseAddrPort(address)
	if err != nil { // Go's resolver gives addresses only; anything else as usual
		var d net.Dialer
		return d.DialContext(ctx, network, address)
	}
	return &muxConn{m: ms.get(server), ctx: ctx}, nil
}

// muxConn is one exchange of Go's resolver through a udpMux: Write sends the
// query, Read returns its answer. It is a net.PacketConn so that the
// resolver treats it as UDP (one message per read).
type muxConn struct {
	m   *udpMux
	ctx context.Context

	mu       sync.Mutex
	deadline time.Time
	s        *udpSock // the socket the query went out on; nil before Write
	k        qkey
	ch       chan datagram
	alone    *net.UDPConn // the query's own socket, where it could not share (errBusy)
}

func (c *muxConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.s != nil || c.alone != nil {
		return 0, errors.New("dns: one query per connection")
	}
	k, ok := keyOf(b, false)
	var err error
	if ok {
		c.s, c.ch, err = c.m.register(k)
	}
	if !ok || errors.Is(err, errBusy) {
		c.alone, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(c.m.server))
		if err != nil {
			return 0, err
		}
		if !c.deadline.IsZero() {
			c.alone.SetDeadline(c.deadline)
		}
		return c.alone.Write(b)
	}
	if err != nil {
		return 0, err
	}
	c.k = k
	n, err := c.s.c.Write(b)
	if err != nil {
		c.m.done(c.s, k)
		c.s = nil
	}
	return n, err
}

func (c *muxConn) Read(b []byte) (int, error) {
	c.mu.Lock()
	s, ch, alone, deadline := c.s, c.ch, c.alone, c.deadline
	c.mu.Unlock()
	if alone != nil {
		return alone.Read(b)
	}
	if s == nil {
		return 0, errors.New("dns: read before a query was sent")
	}
	var timeout <-chan time.Time
	if !deadline.IsZero() {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		timeout = t.C
	}
	select {
	case r := <-ch:
		if r.err != nil {
			return 0, r.err
		}
		return copy(b, r.msg), nil
	case <-timeout:
		return 0, os.ErrDeadlineExceeded
	case <-c.ctx.Done():
		return 0, c.ctx.Err()
	}
}

func (c *muxConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.s != nil {
		c.m.done(c.s, c.k)
		c.s = nil
	}
	if c.alone != nil {
		return c.alone.Close()
	}
	return nil
}

func (c *muxConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, err := c.Read(b)
	return n, c.RemoteAddr(), err
}

func (c *muxConn) WriteTo(b []byte, _ net.Addr) (int, error) { return c.Write(b) }

func (c *muxConn) LocalAddr() net.Addr { return &net.UDPAddr{} }

func (c *muxConn) RemoteAddr() net.Addr { return net.UDPAddrFromAddrPort(c.m.server) }

func (c *muxConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	if c.alone != nil {
		return c.alone.SetDeadline(t)
	}
	return nil
}

func (c *muxConn) SetReadDeadline(t time.Time) error { return c.SetDeadline(t) }

func (c *muxConn) SetWriteDeadline(time.Time) error { return nil }
