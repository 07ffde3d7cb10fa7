package dns

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/haul/haul/download/internal/dns/dnstest"
	"github.com/haul/haul/internal/testutil"
)

// answers is a handler giving each name in a its records, NXDOMAIN for any
// other name, and nothing (NODATA) for a type the name has no record of.
func answers(a map[string][]dnsmessage.Resource) dnstest.Handler {
	return func(q dnstest.Query) dnstest.Reply {
		recs, ok := a[q.Name]
		if !ok {
			return dnstest.Reply{RCode: dnsmessage.RCodeNameError}
		}
		var out []dnsmessage.Resource
		for _, r := range recs {
			if r.Header.Type == q.Type || r.Header.Type == dnsmessage.TypeCNAME {
				out = append(out, r)
			}
		}
		return dnstest.Reply{Answers: out}
	}
}

// lookup looks host up with servers, A records only, within the test's
// patience.
func lookup(t *testing.T, host string, servers ...*dnstest.Server) (Answer, error) {
	t.Helper()
	return lookupWith(t, Options{Network: "ip4"}, host, servers...)
}

func lookupWith(t *testing.T, o Options, host string, servers ...*dnstest.Server) (Answer, error) {
	t.Helper()
	for _, s := range servers {
		o.Servers = append(o.Servers, s.Addr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Patience(t))
	defer cancel()
	return New(o).Lookup(ctx, host)
}

func wantAddrs(t *testing.T, a Answer, err error, want ...string) {
	t.Helper()
	if err != nil {
		t.Fatalf("lookup: %v", err)
	}
	var got []string
	for _, ip := range a.Addrs {
		got = append(got, ip.String())
	}
	if !slices.Equal(got, want) {
		t.Fatalf("addresses %v, want %v", got, want)
	}
}

func TestAnswerWithItsTTL(t *testing.T) {
	s := dnstest.Start(t, answers(map[string][]dnsmessage.Resource{
		"a.test.": {dnstest.A("a.test", 300, "192.0.2.1"), dnstest.A("a.test", 120, "192.0.2.2")},
	}))
	a, err := lookup(t, "A.Test", s) // any case
	wantAddrs(t, a, err, "192.0.2.1", "192.0.2.2")
	if a.TTL != 120*time.Second {
		t.Errorf("TTL %v, want the least of the records', 2m0s", a.TTL)
	}
	if n := len(s.Queries()); n != 1 {
		t.Errorf("%d queries, want 1", n)
	}
}

// An answer truncated over UDP (the TC bit) is asked again over TCP, of the
// same server.
func TestTruncatedAnswerAskedOverTCP(t *testing.T) {
	s := dnstest.Start(t, func(q dnstest.Query) dnstest.Reply {
		return dnstest.Reply{Truncate: true, Answers: []dnsmessage.Resource{dnstest.A(q.Name, 60, "192.0.2.7")}}
	})
	a, err := lookup(t, "big.test", s)
	wantAddrs(t, a, err, "192.0.2.7")
	qs := s.Queries()
	if len(qs) != 2 || qs[0].TCP || !qs[1].TCP {
		t.Errorf("queries %+v, want one over UDP then one over TCP", qs)
	}
}

// A server that never answers gives way to the next one once its share of
// the lookup's time is spent; one that is not there (refused), at once.
func TestServerThatDoesNotAnswerGivesWayToNext(t *testing.T) {
	ok := dnstest.Start(t, answers(map[string][]dnsmessage.Resource{"x.test.": {dnstest.A("x.test", 60, "192.0.2.9")}}))
	t.Run("silent", func(t *testing.T) {
		silent := dnstest.Start(t, func(dnstest.Query) dnstest.Reply { return dnstest.Reply{Drop: true} })
		// Two servers asked twice each: 2s each, the silent one's spent
		// before the next is asked.
		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
		defer cancel()
		a, err := New(Options{Network: "ip4", Servers: []netip.AddrPort{silent.Addr, ok.Addr}}).Lookup(ctx, "x.test")
		wantAddrs(t, a, err, "192.0.2.9")
		if n := silent.Count("x.test", dnsmessage.TypeA); n < 1 {
			t.Errorf("the silent server was asked %d times, want at least once (first)", n)
		}
	})
	t.Run("refused", func(t *testing.T) {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		gone := netip.MustParseAddrPort(pc.LocalAddr().String())
		pc.Close() // nothing listens there now: the kernel refuses
		ctx, cancel := context.WithTimeout(context.Background(), testutil.Patience(t))
		defer cancel()
		a, err := New(Options{Network: "ip4", Servers: []netip.AddrPort{gone, ok.Addr}}).Lookup(ctx, "x.test")
		wantAddrs(t, a, err, "192.0.2.9")
	})
}

// SERVFAIL and REFUSED give way to the next server; when every server
// fails, the error is temporary, not "not found" (the engine retries it).
func TestServerFailureGivesWayToNext(t *testing.T) {
	for _, rc := range []dnsmessage.RCode{dnsmessage.RCodeServerFailure, dnsmessage.RCodeRefused} {
		t.Run(rcodeName(rc), func(t *testing.T) {
			bad := dnstest.Start(t, func(dnstest.Query) dnstest.Reply { return dnstest.Reply{RCode: rc} })
			good := dnstest.Start(t, answers(map[string][]dnsmessage.Resource{"y.test.": {dnstest.A("y.test", 60, "192.0.2.10")}}))
			a, err := lookup(t, "y.test", bad, good)
			wantAddrs(t, a, err, "192.0.2.10")
			if n := bad.Count("y.test", dnsmessage.TypeA); n != 1 {
				t.Errorf("the failing server was asked %d times, want once", n)
			}
			_, err = lookup(t, "y.test", bad)
			var de *net.DNSError
			if !errors.As(err, &de) || de.IsNotFound || !de.IsTemporary || !strings.Contains(err.Error(), rcodeName(rc)) {
				t.Errorf("every server answering %s: %v, want a temporary *net.DNSError naming it", rcodeName(rc), err)
			}
			if n := bad.Count("y.test", dnsmessage.TypeA); n != 1+rounds {
				t.Errorf("the one failing server was asked %d times for a lookup, want %d (each server %d times)", n-1, rounds, rounds)
			}
		})
	}
}

// NXDOMAIN is final: the next server is not asked, and the error says not
// found (the engine does not retry it). So is a name without an address of
// the type asked (NODATA).
func TestNameErrorIsFinal(t *testing.T) {
	first := dnstest.Start(t, answers(map[string][]dnsmessage.Resource{"v6only.test.": {dnstest.AAAA("v6only.test", 60, "2001:db8::1")}}))
	second := dnstest.Start(t, answers(map[string][]dnsmessage.Resource{"gone.test.": {dnstest.A("gone.test", 60, "192.0.2.11")}}))
	for _, name := range []string{"gone.test", "v6only.test"} {
		_, err := lookup(t, name, first, second)
		var de *net.DNSError
		if !errors.As(err, &de) || !de.IsNotFound || de.Name != name {
			t.Errorf("%s: %v, want a *net.DNSError with IsNotFound naming it", name, err)
		}
		if n := second.Count(name, dnsmessage.TypeA); n != 0 {
			t.Errorf("%s: the second server was asked %d times after an answer", name, n)
		}
	}
}

// A referral (no record, neither authoritative nor recursive) gives way to
// the next server: a stub resolver cannot follow it.
func TestReferralGivesWayToNext(t *testing.T) {
	referral := dnstest.Start(t, func(dnstest.Query) dnstest.Reply { return dnstest.Reply{NotRecursive: true} })
	good := dnstest.Start(t, answers(map[string][]dnsmessage.Resource{"r.test.": {dnstest.A("r.test", 60, "192.0.2.12")}}))
	a, err := lookup(t, "r.test", referral, good)
	wantAddrs(t, a, err, "192.0.2.12")
}

// CNAMEs are followed: within one answer, and by asking for the name where
// an answer's chain ends without an address. The TTL is the least on the
// way.
func TestCNAMEChainFollowed(t *testing.T) {
	s := dnstest.Start(t, answers(map[string][]dnsmessage.Resource{
		"www.test.": {dnstest.CNAME("www.test", 600, "cdn.test"), dnstest.CNAME("cdn.test", 90, "Edge.test"),
			dnstest.A("edge.test", 300, "192.0.2.20"), dnstest.A("other.test", 5, "192.0.2.99")},
		"split.test.": {dnstest.CNAME("split.test", 40, "far.test")},
		"far.test.":   {dnstest.A("far.test", 500, "192.0.2.21")},
		"loop.test.":  {dnstest.CNAME("loop.test", 60, "loop2.test"), dnstest.CNAME("loop2.test", 60, "loop.test")},
		"loop2.test.": {dnstest.CNAME("loop2.test", 60, "loop.test"), dnstest.CNAME("loop.test", 60, "loop2.test")},
	}))
	a, err := lookup(t, "www.test", s)
	wantAddrs(t, a, err, "192.0.2.20")
	if a.TTL != 90*time.Second {
		t.Errorf("TTL %v, want 1m30s (the least on the chain)", a.TTL)
	}
	a, err = lookup(t, "split.test", s)
	wantAddrs(t, a, err, "192.0.2.21")
	if a.TTL != 40*time.Second {
		t.Errorf("TTL %v, want 40s", a.TTL)
	}
	if n := s.Count("far.test", dnsmessage.TypeA); n != 1 {
		t.Errorf("the end of the chain asked %d times, want once", n)
	}
	_, err = lookup(t, "loop.test", s)
	var de *net.DNSError
	if !errors.As(err, &de) || !de.IsNotFound {
		t.Errorf("a CNAME loop: %v, want a final *net.DNSError", err)
	}
}

// A datagram with another ID, or the right ID for another question, is not
// the answer: it is ignored and the answer awaited.
func TestMismatchedAnswersIgnored(t *testing.T) {
	s := dnstest.Start(t, func(q dnstest.Query) dnstest.Reply {
		return dnstest.Reply{Decoys: true, Answers: []dnsmessage.Resource{dnstest.A(q.Name, 60, "192.0.2.30")}}
	})
	a, err := lookup(t, "decoyed.test", s)
	wantAddrs(t, a, err, "192.0.2.30")
}

// Without a global IPv6 address one query per name, for A; with one, A and
// AAAA, the addresses interleaved, IPv6 first, the TTL the lesser.
func TestAddressFamilies(t *testing.T) {
	s := dnstest.Start(t, answers(map[string][]dnsmessage.Resource{
		"dual.test.": {dnstest.A("dual.test", 60, "192.0.2.40"), dnstest.A("dual.test", 60, "192.0.2.41"),
			dnstest.AAAA("dual.test", 30, "2001:db8::40")},
		"v4.test.": {dnstest.A("v4.test", 60, "192.0.2.42")},
	}))
	a, err := lookupWith(t, Options{Network: "ip4"}, "dual.test", s)
	wantAddrs(t, a, err, "192.0.2.40", "192.0.2.41")
	if n, n6 := s.Count("dual.test", dnsmessage.TypeA), s.Count("dual.test", dnsmessage.TypeAAAA); n != 1 || n6 != 0 {
		t.Errorf("ip4: %d A and %d AAAA queries, want 1 and 0", n, n6)
	}
	a, err = lookupWith(t, Options{Network: "ip"}, "dual.test", s)
	wantAddrs(t, a, err, "2001:db8::40", "192.0.2.40", "192.0.2.41")
	if a.TTL != 30*time.Second {
		t.Errorf("TTL %v, want 30s", a.TTL)
	}
	if n, n6 := s.Count("dual.test", dnsmessage.TypeA), s.Count("dual.test", dnsmessage.TypeAAAA); n != 2 || n6 != 1 {
		t.Errorf("ip: %d A and %d AAAA queries in all, want 2 and 1", n, n6)
	}
	a, err = lookupWith(t, Options{Network: "ip"}, "v4.test", s) // no AAAA: the A records
	wantAddrs(t, a, err, "192.0.2.42")
}

// Go's resolver, asked for "ip4", sends A queries only: the lookup without
// --dns-server costs one query per name too.
func TestGoResolverAsksForAOnly(t *testing.T) {
	s := dnstest.Start(t, answers(map[string][]dnsmessage.Resource{"go.test.": {dnstest.A("go.test", 60, "192.0.2.50")}}))
	gr := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, s.Addr.String())
	}}
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Patience(t))
	defer cancel()
	a, err := New(Options{Network: "ip4", system: gr.LookupNetIP}).Lookup(ctx, "go.test.")
	wantAddrs(t, a, err, "192.0.2.50")
	if a.TTL >= 0 {
		t.Errorf("TTL %v from Go's resolver, which tells none: want < 0", a.TTL)
	}
	if n, all := s.Count("go.test", dnsmessage.TypeA), len(s.Queries()); n != 1 || all != 1 {
		t.Errorf("%d A queries of %d, want 1 of 1", n, all)
	}
}

// The hosts file answers first: its names are never asked of a server.
func TestHostsFileAnswersFirst(t *testing.T) {
	s := dnstest.Start(t, answers(nil))
	h, err := ParseHosts(strings.NewReader("127.0.0.1 local.test\n::1 local.test v6.test\n"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := lookupWith(t, Options{Network: "ip4", Hosts: h}, "LOCAL.test.", s)
	wantAddrs(t, a, err, "127.0.0.1")
	a, err = lookupWith(t, Options{Network: "ip4", Hosts: h}, "v6.test", s)
	wantAddrs(t, a, err, "::1")
	a, err = lookupWith(t, Options{Network: "ip", Hosts: h}, "local.test", s)
	wantAddrs(t, a, err, "127.0.0.1", "::1")
	if qs := s.Queries(); len(qs) != 0 {
		t.Errorf("the server was asked %+v", qs)
	}
}

// At most Concurrency lookups are in flight, with servers and with Go's
// resolver alike; the cap is reached, not merely respected.
func TestConcurrencyCap(t *testing.T) {
	const limit, names = 4, 20
	// held counts the queries the server holds; the test releases them one
	// at a time once limit are held.
	arrived, release := make(chan struct{}, names), make(chan struct{})
	hold := func() {
		arrived <- struct{}{}
		<-release
	}
	drive := func(t *testing.T, r *Resolver) {
		var wg sync.WaitGroup
		ctx, cancel := context.WithTimeout(context.Background(), testutil.Patience(t))
		defer cancel()
		for i := range names {
			wg.Go(func() {
				if _, err := r.Lookup(ctx, "n"+string(rune('a'+i))+".test"); err != nil {
					t.Error(err)
				}
			})
		}
		held, released := 0, 0
		for released < names {
			for held < min(limit, names-released) {
				<-arrived
				held++
			}
			release <- struct{}{}
			held--
			released++
		}
		wg.Wait()
	}
	t.Run("servers", func(t *testing.T) {
		s := dnstest.Start(t, func(q dnstest.Query) dnstest.Reply {
			hold()
			return dnstest.Reply{Answers: []dnsmessage.Resource{dnstest.A(q.Name, 60, "192.0.2.60")}}
		})
		drive(t, New(Options{Network: "ip4", Servers: []netip.AddrPort{s.Addr}, Concurrency: limit}))
		if m := s.MaxInFlight(); m != limit {
			t.Errorf("%d queries at once at the server, want %d", m, limit)
		}
	})
	t.Run("Go's resolver", func(t *testing.T) {
		var mu sync.Mutex
		inFlight, most := 0, 0
		system := func(ctx context.Context, network, host string) ([]netip.Addr, error) {
			mu.Lock()
			inFlight++
			most = max(most, inFlight)
			mu.Unlock()
			hold()
			mu.Lock()
			inFlight--
			mu.Unlock()
			return []netip.Addr{netip.MustParseAddr("192.0.2.61")}, nil
		}
		drive(t, New(Options{Network: "ip4", Concurrency: limit, system: system}))
		if most != limit {
			t.Errorf("%d lookups at once, want %d", most, limit)
		}
	})
}

func TestValidName(t *testing.T) {
	long := strings.Repeat("a", 63)
	for name, want := range map[string]bool{
		"a.test": true, "a.test.": true, long + ".test": true, long + "a.test": false,
		"": false, ".": false, "a..test": false, ".a": false,
		strings.Repeat(long+".", 3) + strings.Repeat("b", 61): true,
		strings.Repeat(long+".", 3) + strings.Repeat("b", 62): false,
	} {
		if got := validName(name); got != want {
			t.Errorf("validName(%q) = %v, want %v", name, got, want)
		}
	}
	_, err := lookup(t, "a..test", dnstest.Start(t, answers(nil)))
	var de *net.DNSError
	if !errors.As(err, &de) || !de.IsNotFound {
		t.Errorf("an invalid name: %v, want not found", err)
	}
}

func TestHasGlobalIPv6(t *testing.T) {
	nets := func(cidrs ...string) []net.Addr {
		var out []net.Addr
		for _, c := range cidrs {
			ip, n, err := net.ParseCIDR(c)
			if err != nil {
				t.Fatal(err)
			}
			n.IP = ip
			out = append(out, n)
		}
		return out
	}
	for _, c := range []struct {
		addrs []string
		want  bool
	}{
		{[]string{"127.0.0.1/8", "::1/128"}, false},
		{[]string{"10.0.0.2/24", "fe80::1/64", "::1/128"}, false},
		{[]string{"::ffff:10.0.0.2/120"}, false}, // IPv4, written as IPv6
		{[]string{"10.0.0.2/24", "2001:db8::2/64"}, true},
		{[]string{"fd00::2/64"}, true}, // unique local: glibc counts it too
	} {
		if got := hasGlobalIPv6(nets(c.addrs...)); got != c.want {
			t.Errorf("%v: %v, want %v", c.addrs, got, c.want)
		}
	}
}
