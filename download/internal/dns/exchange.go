package dns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

const (
	// rounds is how many times each server is asked before a lookup fails,
	// as resolv.conf's default "attempts:2": a query or its answer lost
	// over UDP is asked again, of the next server first.
	rounds = 2
	// maxHops bounds the CNAMEs followed from one name (Go's resolver and
	// glibc follow about as many).
	maxHops = 8
	// ednsSize is the UDP payload size offered (EDNS0): the size DNS Flag
	// Day 2020 settled on, below common MTUs, so that answers are not
	// fragmented; a bigger one comes truncated and is asked again over TCP.
	ednsSize = 1232
	// noDeadline is the time of one try when the lookup's context has no
	// deadline (the dialer always gives one: --connect-timeout).
	noDeadline = 5 * time.Second
)

// bufs are the buffers UDP answers are read into: one per query in flight.
var bufs = sync.Pool{New: func() any { b := make([]byte, ednsSize); return &b }}

// errMismatch is a datagram that is not the answer to the query asked (its
// ID, question or sender differ, or it is no DNS message): a late answer to
// an earlier query, or a forgery. It is ignored and the wait goes on.
var errMismatch = errors.New("not the answer to the query")

// query looks up host's records of type qtype with servers, following
// CNAMEs, each name on the way asked of the servers where the answer leaves
// the chain unfinished.
func (r *Resolver) query(ctx context.Context, servers []netip.AddrPort, host string, qtype dnsmessage.Type) (Answer, error) {
	name := fqdn(host)
	ttl := uint32(math.MaxUint32)
	for range maxHops {
		n, err := dnsmessage.NewName(name)
		if err != nil {
			return Answer{}, notFound(host, "")
		}
		rep, server, err := r.exchange(ctx, servers, host, &dnsmessage.Question{Name: n, Type: qtype, Class: dnsmessage.ClassINET})
		if err != nil {
			return Answer{}, err
		}
		if rep.rcode == dnsmessage.RCodeNameError {
			return Answer{}, notFound(host, server)
		}
		ttl = min(ttl, rep.ttl)
		if len(rep.addrs) > 0 {
			return Answer{Addrs: rep.addrs, TTL: time.Duration(ttl) * time.Second}, nil
		}
		if rep.next == "" {
			return Answer{}, notFound(host, server) // the name has no record of that type
		}
		name = rep.next
	}
	return Answer{}, &net.DNSError{Err: "too many CNAMEs", Name: host, IsNotFound: true}
}

// exchange asks q of the servers in turn, rounds times each, until one gives
// an answer (addresses, a CNAME, none, or NXDOMAIN); a server that does not
// answer within its share of the time left, that answers SERVFAIL, REFUSED or
// another error, or that is not recursive (a referral), gives its turn to the
// next. It returns the answer and who gave it.
func (r *Resolver) exchange(ctx context.Context, servers []netip.AddrPort, host string, q *dnsmessage.Question) (reply, string, error) {
	tries := rounds * len(servers)
	var last error
	timeouts := 0
	for i := range tries {
		server := servers[i%len(servers)]
		wait := noDeadline
		if dl, ok := ctx.Deadline(); ok {
			wait = time.Until(dl) / time.Duration(tries-i)
		}
		tctx, cancel := context.WithTimeout(ctx, wait)
		rep, err := r.ask(tctx, server, q)
		cancel()
		if err == nil {
			switch {
			case rep.rcode == dnsmessage.RCodeNameError:
				return rep, server.String(), nil
			case rep.rcode != dnsmessage.RCodeSuccess:
				err = fmt.Errorf("server answered %v", rcodeName(rep.rcode))
			case rep.lame:
				err = errors.New("server is not recursive (a referral, no answer)")
			default:
				return rep, server.String(), nil
			}
		}
		if ctx.Err() != nil {
			return reply{}, "", &net.DNSError{Err: ctx.Err().Error(), Name: host, Server: server.String(),
				IsTimeout: errors.Is(ctx.Err(), context.DeadlineExceeded), IsTemporary: true, UnwrapErr: ctx.Err()}
		}
		if isTimeout(err) {
			timeouts++
		}
		last = fmt.Errorf("%s: %w", server, err)
	}
	return reply{}, "", &net.DNSError{Err: last.Error(), Name: host, IsTimeout: timeouts == tries, IsTemporary: true}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// rcodeName is c as dig and the RFCs write it.
func rcodeName(c dnsmessage.RCode) string {
	switch c {
	case dnsmessage.RCodeFormatError:
		return "FORMERR"
	case dnsmessage.RCodeServerFailure:
		return "SERVFAIL"
	case dnsmessage.RCodeNotImplemented:
		return "NOTIMP"
	case dnsmessage.RCodeRefused:
		return "REFUSED"
	}
	return fmt.Sprintf("RCODE %d", c)
}

// ask puts q to server over UDP, and over TCP when the answer comes
// truncated, with a new random ID.
func (r *Resolver) ask(ctx context.Context, server netip.AddrPort, q *dnsmessage.Question) (reply, error) {
	id := uint16(rand.Uint32())
	msg, err := newQuery(id, q)
	if err != nil {
		return reply{}, err
	}
	rep, truncated, err := r.askUDP(ctx, server, id, q, msg)
	if err != nil || !truncated {
		return rep, err
	}
	return askTCP(ctx, server, id, q, msg)
}

// newQuery is the message asking q, recursion desired, offering ednsSize.
func newQuery(id uint16, q *dnsmessage.Question) ([]byte, error) {
	b := dnsmessage.NewBuilder(make([]byte, 0, 64), dnsmessage.Header{ID: id, RecursionDesired: true})
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if err := b.Question(*q); err != nil {
		return nil, err
	}
	if err := b.StartAdditionals(); err != nil {
		return nil, err
	}
	var opt dnsmessage.ResourceHeader
	if err := opt.SetEDNS0(ednsSize, dnsmessage.RCodeSuccess, false); err != nil {
		return nil, err
	}
	if err := b.OPTResource(opt, dnsmessage.OPTResource{}); err != nil {
		return nil, err
	}
	return b.Finish()
}

// deadlines makes c's reads and writes end at ctx's deadline, or at once
// when ctx is done; the returned function stops watching ctx.
func deadlines(ctx context.Context, c net.Conn) (stop func() bool) {
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	return context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
}

// askUDP sends msg to server over the socket its queries in flight share
// (udpMux), or over one of its own where the same ID and question are
// already in flight there, and waits for its answer.
func (r *Resolver) askUDP(ctx context.Context, server netip.AddrPort, id uint16, q *dnsmessage.Question, msg []byte) (reply, bool, error) {
	k := keyFor(id, q)
	in, err := r.udp.get(server).exchange(ctx, k, msg)
	if errors.Is(err, errBusy) {
		return askUDPAlone(ctx, server, id, q, msg)
	}
	if err != nil {
		return reply{}, false, err
	}
	rep, truncated, err := parseReply(in, id, q)
	if errors.Is(err, errMismatch) {
		// The mux matched its ID and question: what is left to differ
		// (its class) makes it no answer.
		return reply{}, false, errors.New("answer does not match the query")
	}
	return rep, truncated, err
}

// askUDPAlone sends msg to server from a socket of its own (connected: the
// kernel drops datagrams from anyone else, and a server that is not there is
// a refusal at once, not a timeout) and waits for its answer, ignoring any
// datagram that is not (errMismatch).
func askUDPAlone(ctx context.Context, server netip.AddrPort, id uint16, q *dnsmessage.Question, msg []byte) (reply, bool, error) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(server))
	if err != nil {
		return reply{}, false, err
	}
	defer c.Close()
	defer deadlines(ctx, c)()
	if _, err := c.Write(msg); err != nil {
		return reply{}, false, err
	}
	bp := bufs.Get().(*[]byte)
	defer bufs.Put(bp)
	for {
		n, from, err := c.ReadFromUDPAddrPort(*bp)
		if err != nil {
			return reply{}, false, err
		}
		if from.Port() != server.Port() || from.Addr().Unmap().WithZone("") != server.Addr().Unmap().WithZone("") {
			continue
		}
		rep, truncated, err := parseReply((*bp)[:n], id, q)
		if errors.Is(err, errMismatch) {
			continue
		}
		return rep, truncated, err
	}
}

// askTCP sends msg to server over a TCP connection of its own (RFC 1035,
// section 4.2.2: each message after its length in two bytes) and reads the
// answer.
func askTCP(ctx context.Context, server netip.AddrPort, id uint16, q *dnsmessage.Question, msg []byte) (reply, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", server.String())
	if err != nil {
		return reply{}, err
	}
	defer c.Close()
	defer deadlines(ctx, c)()
	out := make([]byte, 2+len(msg))
	binary.BigEndian.PutUint16(out, uint16(len(msg)))
	copy(out[2:], msg)
	if _, err := c.Write(out); err != nil {
		return reply{}, err
	}
	var l [2]byte
	if _, err := io.ReadFull(c, l[:]); err != nil {
		return reply{}, err
	}
	in := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(c, in); err != nil {
		return reply{}, err
	}
	rep, _, err := parseReply(in, id, q)
	if errors.Is(err, errMismatch) {
		// The connection is the query's own: a server that answers
		// something else is broken.
		return reply{}, errors.New("answer over TCP does not match the query")
	}
	return rep, err
}

// reply is what a server answered to one question.
type reply struct {
	rcode dnsmessage.RCode
	// addrs are the addresses of the name asked, or of the name its CNAMEs
	// lead to in the same answer.
	addrs []netip.Addr
	// ttl is the least TTL of the records that led to addrs (or to next).
	ttl uint32
	// next is where the CNAMEs of the answer lead without an address of
	// the type asked: the name to ask next. "" if none.
	next string
	// lame is an answer with no record, from a server neither authoritative
	// nor recursive: a referral, which a stub resolver cannot follow.
	lame bool
}

// record is an answer record kept by parseReply: an address or a CNAME.
type record struct {
	owner string // lower case, with its trailing dot
	addr  netip.Addr
	cname string // lower case, with its trailing dot
	ttl   uint32
}

// parseReply reads the answer msg to the query of id and q. It reports
// errMismatch for a message that is not that answer (no response, another ID
// or question), truncated for one that has the TC bit (to be asked over TCP),
// and another error for an answer it cannot read.
func parseReply(msg []byte, id uint16, q *dnsmessage.Question) (rep reply, truncated bool, err error) {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil || !h.Response || h.ID != id || h.OpCode != 0 {
		return reply{}, false, errMismatch
	}
	got, err := p.Question()
	if err != nil || got.Type != q.Type || got.Class != q.Class || !equalName(got.Name, q.Name) {
		return reply{}, false, errMismatch
	}
	if err := p.SkipQuestion(); !errors.Is(err, dnsmessage.ErrSectionDone) {
		return reply{}, false, errMismatch // one question asked, one echoed
	}
	if h.Truncated {
		return reply{}, true, nil
	}
	rep.rcode = h.RCode
	if h.RCode != dnsmessage.RCodeSuccess {
		return rep, false, nil
	}
	var recs []record
	for {
		rh, err := p.AnswerHeader()
		if errors.Is(err, dnsmessage.ErrSectionDone) {
			break
		}
		if err != nil {
			return reply{}, false, fmt.Errorf("unreadable answer: %w", err)
		}
		rec := record{owner: lowerName(rh.Name), ttl: rh.TTL}
		switch {
		case rh.Class != dnsmessage.ClassINET:
			err = p.SkipAnswer()
		case rh.Type == dnsmessage.TypeCNAME:
			var c dnsmessage.CNAMEResource
			if c, err = p.CNAMEResource(); err == nil {
				rec.cname = lowerName(c.CNAME)
				recs = append(recs, rec)
			}
		case rh.Type == q.Type && q.Type == dnsmessage.TypeA:
			var a dnsmessage.AResource
			if a, err = p.AResource(); err == nil {
				rec.addr = netip.AddrFrom4(a.A)
				recs = append(recs, rec)
			}
		case rh.Type == q.Type && q.Type == dnsmessage.TypeAAAA:
			var a dnsmessage.AAAAResource
			if a, err = p.AAAAResource(); err == nil {
				rec.addr = netip.AddrFrom16(a.AAAA)
				recs = append(recs, rec)
			}
		default:
			err = p.SkipAnswer()
		}
		if err != nil {
			return reply{}, false, fmt.Errorf("unreadable answer: %w", err)
		}
	}
	if len(recs) == 0 && !h.Authoritative && !h.RecursionAvailable {
		// No record, and a server that neither holds the zone nor
		// recursed: a referral (lame), unless the authority section has
		// the zone's SOA (a forwarder saying the name has no such record).
		rep.lame = true
		for {
			ah, err := p.AuthorityHeader()
			if err != nil {
				break
			}
			if ah.Type == dnsmessage.TypeSOA {
				rep.lame = false
				break
			}
			if p.SkipAuthority() != nil {
				break
			}
		}
		if rep.lame {
			return rep, false, nil
		}
	}
	follow(&rep, recs, lowerName(q.Name))
	return rep, false, nil
}

// follow fills rep from the records of an answer to a question for name:
// name's addresses, or those of the name its CNAMEs lead to, or else where
// they lead (rep.next), with the least TTL on the way.
func follow(rep *reply, recs []record, name string) {
	start := name
	ttl := uint32(math.MaxUint32)
	for range maxHops {
		least := uint32(math.MaxUint32)
		for _, rec := range recs {
			if rec.owner == name && rec.addr.IsValid() && !slices.Contains(rep.addrs, rec.addr) {
				rep.addrs = append(rep.addrs, rec.addr)
				least = min(least, rec.ttl)
			}
		}
		if len(rep.addrs) > 0 {
			rep.ttl = min(ttl, least)
			return
		}
		next := ""
		for _, rec := range recs {
			if rec.owner == name && rec.cname != "" {
				next = rec.cname
				ttl = min(ttl, rec.ttl)
				break
			}
		}
		if next == "" {
			break
		}
		name = next
	}
	if name != start {
		rep.next = name
	}
	rep.ttl = ttl
}

// equalName compares two names as DNS does: ASCII letters in any case.
func equalName(a, b dnsmessage.Name) bool {
	if a.Length != b.Length {
		return false
	}
	for i := range int(a.Length) {
		if lower(a.Data[i]) != lower(b.Data[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// lowerName is n in ASCII lower case, with its trailing dot.
func lowerName(n dnsmessage.Name) string {
	b := []byte(n.String())
	for i, c := range b {
		b[i] = lower(c)
	}
	return string(b)
}

// fqdn is host in ASCII lower case, with a trailing dot: the name as asked.
func fqdn(host string) string {
	b := make([]byte, 0, len(host)+1)
	for i := 0; i < len(host); i++ {
		b = append(b, lower(host[i]))
	}
	if len(b) == 0 || b[len(b)-1] != '.' {
		b = append(b, '.')
	}
	return string(b)
}
