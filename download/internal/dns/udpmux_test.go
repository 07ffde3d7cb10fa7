package dns

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/haul/haul/download/internal/dns/dnstest"
	"github.com/haul/haul/internal/testutil"
)

// heldUntil is a handler that holds every query until n have arrived, then
// answers each name nI.test with 10.0.I/256.I%256.
func heldUntil(n int) dnstest.Handler {
	var mu sync.Mutex
	arrived := 0
	all := make(chan struct{})
	return func(q dnstest.Query) dnstest.Reply {
		mu.Lock()
		if arrived++; arrived == n {
			close(all)
		}
		mu.Unlock()
		<-all
		var i int
		if _, err := fmt.Sscanf(q.Name, "n%d.test.", &i); err != nil {
			return dnstest.Reply{RCode: dnsmessage.RCodeNameError}
		}
		return dnstest.Reply{Answers: []dnsmessage.Resource{dnstest.A(q.Name, 60, addrOf(i))}}
	}
}

func addrOf(i int) string { return fmt.Sprintf("10.0.%d.%d", i/256, i%256) }

// Queries in flight at once share a socket, perSocket queries to a socket:
// every answer still reaches its own query, and once none waits no socket is
// left open. So for the servers given and for Go's resolver alike.
func TestQueriesInFlightShareSockets(t *testing.T) {
	// Two sockets' worth, few enough that the queries all fit in the test
	// server's receive buffer (about 830 bytes a datagram of 212,992): held
	// by its handler, they are all read however late its reader runs.
	const names = perSocket + 32
	for _, through := range []string{"servers", "Go's resolver"} {
		t.Run(through, func(t *testing.T) {
			s := dnstest.Start(t, heldUntil(names))
			o := Options{Network: "ip4", Concurrency: names}
			var r *Resolver
			if through == "servers" {
				o.Servers = []netip.AddrPort{s.Addr}
				r = New(o)
			} else {
				// Go's resolver dials the servers of resolv.conf; here
				// the test's, through the same hook.
				var hook func(ctx context.Context, network, address string) (net.Conn, error)
				gr := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
					return hook(ctx, network, s.Addr.String())
				}}
				o.system = gr.LookupNetIP
				r = New(o)
				hook = r.udp.dial
			}
			ctx, cancel := context.WithTimeout(context.Background(), testutil.Patience(t))
			defer cancel()
			var wg sync.WaitGroup
			for i := range names {
				wg.Go(func() {
					a, err := r.Lookup(ctx, fmt.Sprintf("n%d.test", i))
					if err != nil {
						t.Error(err)
						return
					}
					if len(a.Addrs) != 1 || a.Addrs[0].String() != addrOf(i) {
						t.Errorf("n%d.test: %v, want %s", i, a.Addrs, addrOf(i))
					}
				})
			}
			wg.Wait()
			// Held until all have arrived, the queries are all in flight at
			// once: ceil(names/perSocket) sockets. A query asked again (Go's
			// resolver does after resolv.conf's timeout, were the machine
			// that slow) may open one more each.
			ports := map[netip.AddrPort]int{}
			queries := s.Queries()
			for _, q := range queries {
				ports[q.From]++
			}
			if len(queries) < names {
				t.Errorf("%d queries for %d names", len(queries), names)
			}
			for from, n := range ports {
				if n > perSocket {
					t.Errorf("%d queries from %v, want at most %d", n, from, perSocket)
				}
			}
			if want := (names+perSocket-1)/perSocket + len(queries) - names; len(ports) > want {
				t.Errorf("%d sockets for %d queries (%d names) in flight at once, want at most %d", len(ports), len(queries), names, want)
			}
			m := r.udp.get(s.Addr)
			m.mu.Lock()
			defer m.mu.Unlock()
			if m.cur != nil {
				t.Error("a socket left open with no query waiting")
			}
		})
	}
}

// Two queries of the same ID and question at once cannot share a socket
// (their answers could not be told apart): the second goes alone, and both
// are answered.
func TestSameQueryInFlightTwiceGoesAlone(t *testing.T) {
	s := dnstest.Start(t, heldUntil(2))
	var ms udpMuxes
	q := &dnsmessage.Question{Name: dnsmessage.MustNewName("n7.test."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}
	msg, err := newQuery(4242, q)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Patience(t))
	defer cancel()
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			c, err := ms.dial(ctx, "udp", s.Addr.String())
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			if _, err := c.Write(msg); err != nil {
				t.Error(err)
				return
			}
			buf := make([]byte, 1232)
			n, err := c.Read(buf)
			if err != nil {
				t.Error(err)
				return
			}
			rep, _, err := parseReply(buf[:n], 4242, q)
			if err != nil || len(rep.addrs) != 1 || rep.addrs[0].String() != addrOf(7) {
				t.Errorf("answer %+v, %v; want %s", rep, err, addrOf(7))
			}
		})
	}
	wg.Wait()
	ports := map[netip.AddrPort]bool{}
	for _, q := range s.Queries() {
		ports[q.From] = true
	}
	if len(ports) != 2 {
		t.Errorf("the two queries came from %d sockets, want 2", len(ports))
	}
}
