// Package dnstest is a DNS server for tests: UDP and TCP on one port of
// 127.0.0.1, answering each question as a handler says (records, an error
// code, a truncated answer, no answer, decoys before the answer), recording
// every query and how many were in flight at once. Only tests import it.
package dnstest

import (
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// Query is a question the server was asked.
type Query struct {
	Name string // lower case, with its trailing dot
	Type dnsmessage.Type
	TCP  bool
	From netip.AddrPort // the address it came from
}

// Reply is how the server answers a query.
type Reply struct {
	RCode   dnsmessage.RCode
	Answers []dnsmessage.Resource
	// Truncate answers over UDP with the TC bit and no record (the records
	// go over TCP).
	Truncate bool
	// Drop answers nothing.
	Drop bool
	// Decoys sends, over UDP, two datagrams before the answer: one with
	// another ID, one with the right ID for another name, each giving
	// 192.0.2.66 for the name.
	Decoys bool
	// NotRecursive clears the RA bit.
	NotRecursive bool
}

// Handler answers q. It may block: each query is answered on a goroutine
// of its own.
type Handler func(q Query) Reply

// Server is a running server, closed when its test ends.
type Server struct {
	Addr    netip.AddrPort // 127.0.0.1 and the port of both sockets
	handler Handler
	udp     *net.UDPConn
	tcp     *net.TCPListener

	mu      sync.Mutex
	queries []Query

	inFlight, maxInFlight atomic.Int64
}

// Start starts a server answering with h.
func Start(t testing.TB, h Handler) *Server {
	t.Helper()
	s := &Server{handler: h}
	for try := 0; ; try++ {
		udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		port := udp.LocalAddr().(*net.UDPAddr).Port
		tcp, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
		if err != nil {
			udp.Close()
			if try < 20 {
				continue // the TCP port is taken: another pair
			}
			t.Fatal(err)
		}
		s.udp, s.tcp = udp, tcp
		s.Addr = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
		break
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.serveUDP() }()
	go func() { defer wg.Done(); s.serveTCP() }()
	t.Cleanup(func() {
		s.udp.Close()
		s.tcp.Close()
		wg.Wait()
	})
	return s
}

// Queries returns the queries received so far, in order.
func (s *Server) Queries() []Query {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Query(nil), s.queries...)
}

// Count is how many queries for name (any case, with or without its
// trailing dot) of type typ were received, over UDP and TCP.
func (s *Server) Count(name string, typ dnsmessage.Type) int {
	name = strings.ToLower(strings.TrimSuffix(name, ".")) + "."
	n := 0
	for _, q := range s.Queries() {
		if q.Name == name && q.Type == typ {
			n++
		}
	}
	return n
}

// MaxInFlight is the most queries that were at once received and not yet
// answered (an answer counts as given just before it is sent).
func (s *Server) MaxInFlight() int { return int(s.maxInFlight.Load()) }

func (s *Server) serveUDP() {
	for {
		buf := make([]byte, 1500)
		n, from, err := s.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		go func() {
			out := s.answer(buf[:n], false, from)
			for _, m := range out {
				s.udp.WriteToUDPAddrPort(m, from)
			}
		}()
	}
}

func (s *Server) serveTCP() {
	for {
		c, err := s.tcp.Accept()
		if err != nil {
			return
		}
		from := c.RemoteAddr().(*net.TCPAddr).AddrPort()
		go func() {
			defer c.Close()
			for {
				var l [2]byte
				if _, err := io.ReadFull(c, l[:]); err != nil {
					return
				}
				msg := make([]byte, binary.BigEndian.Uint16(l[:]))
				if _, err := io.ReadFull(c, msg); err != nil {
					return
				}
				for _, m := range s.answer(msg, true, from) {
					out := binary.BigEndian.AppendUint16(nil, uint16(len(m)))
					if _, err := c.Write(append(out, m...)); err != nil {
						return
					}
				}
			}
		}()
	}
}

// answer returns the messages to send for the query msg, in order.
func (s *Server) answer(msg []byte, tcp bool, from netip.AddrPort) [][]byte {
	var m dnsmessage.Message
	if err := m.Unpack(msg); err != nil || len(m.Questions) != 1 {
		return nil
	}
	q := m.Questions[0]
	query := Query{Name: strings.ToLower(q.Name.String()), Type: q.Type, TCP: tcp, From: from}
	s.mu.Lock()
	s.queries = append(s.queries, query)
	s.mu.Unlock()
	n := s.inFlight.Add(1)
	for {
		most := s.maxInFlight.Load()
		if n <= most || s.maxInFlight.CompareAndSwap(most, n) {
			break
		}
	}
	r := s.handler(query)
	s.inFlight.Add(-1)
	if r.Drop {
		return nil
	}
	h := dnsmessage.Header{ID: m.Header.ID, Response: true, RecursionDesired: m.Header.RecursionDesired,
		RecursionAvailable: !r.NotRecursive, RCode: r.RCode}
	answers := r.Answers
	if r.Truncate && !tcp {
		h.Truncated, answers = true, nil
	}
	var out [][]byte
	if r.Decoys && !tcp {
		decoy := A(q.Name.String(), 300, "192.0.2.66")
		wrongID := h
		wrongID.ID++
		out = append(out, pack(wrongID, q, []dnsmessage.Resource{decoy}))
		other := q
		other.Name = dnsmessage.MustNewName("decoy." + q.Name.String())
		out = append(out, pack(h, other, []dnsmessage.Resource{decoy}))
	}
	return append(out, pack(h, q, answers))
}

func pack(h dnsmessage.Header, q dnsmessage.Question, answers []dnsmessage.Resource) []byte {
	m := dnsmessage.Message{Header: h, Questions: []dnsmessage.Question{q}, Answers: answers}
	b, err := m.Pack()
	if err != nil {
		panic(err) // a test's own records: a bug of the test
	}
	return b
}

// A is an A record of name (with or without its trailing dot).
func A(name string, ttl uint32, ip string) dnsmessage.Resource {
	return dnsmessage.Resource{Header: header(name, dnsmessage.TypeA, ttl),
		Body: &dnsmessage.AResource{A: netip.MustParseAddr(ip).As4()}}
}

// AAAA is an AAAA record of name.
func AAAA(name string, ttl uint32, ip string) dnsmessage.Resource {
	return dnsmessage.Resource{Header: header(name, dnsmessage.TypeAAAA, ttl),
		Body: &dnsmessage.AAAAResource{AAAA: netip.MustParseAddr(ip).As16()}}
}

// CNAME is a CNAME record of name, pointing to target.
func CNAME(name string, ttl uint32, target string) dnsmessage.Resource {
	return dnsmessage.Resource{Header: header(name, dnsmessage.TypeCNAME, ttl),
		Body: &dnsmessage.CNAMEResource{CNAME: dnsmessage.MustNewName(dot(target))}}
}

func header(name string, typ dnsmessage.Type, ttl uint32) dnsmessage.ResourceHeader {
	return dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(dot(name)), Type: typ, Class: dnsmessage.ClassINET, TTL: ttl}
}

func dot(name string) string {
	if strings.HasSuffix(name, ".") {
		return name
	}
	return name + "."
}
