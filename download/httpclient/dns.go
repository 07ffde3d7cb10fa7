package httpclient

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"

	"github.com/haul/haul/download/internal/dns"
)

// A run looks each host name up once, or once per TTL: a list over
// thousands of hosts would otherwise send a lookup per connection (Go's
// resolver caches nothing).
const (
	dnsCacheSize = 16 << 10 // names kept, the least recently used dropped first
	// An answer is kept as long as its TTL says, within these bounds. The
	// floor: resolvers give local names a TTL of 0 (dnsmasq's --address,
	// names from its hosts files) and some CDNs a few seconds, which would
	// cost a query per connection where a run's connections to a host come
	// seconds apart; within half a minute a host that moves is still
	// followed. The ceiling: a run of hours looks again, and an answer that
	// tells no TTL (Go's resolver, the hosts file) is kept that long.
	dnsMinKeep  = 30 * time.Second
	dnsMaxKeep  = 30 * time.Minute
	dnsFailKeep = 10 * time.Second // how long a failure is: a flaky resolver gets another chance
)

// resolver caches lookups for dialer, bounded, with failures cached briefly.
// Concurrent lookups of one name share one query. (golang-lru's expirable LRU
// would expire entries itself, but with a goroutine per cache that never
// ends: an answer's age is checked when it is read instead.)
type resolver struct {
	lookup  func(ctx context.Context, host string) (dns.Answer, error)
	cache   *lru.Cache[string, answer]
	flights singleflight.Group
	now     func() time.Time // time.Now; tests move it
}

// answer is a cached lookup: its addresses or its error, until when.
type answer struct {
	addrs []netip.Addr
	err   error
	until time.Time
}

// newResolver is the resolver of o: the lookups of package dns, with
// o.DNSServers (and the hosts file, read once) or with the system's
// configuration (its servers where it is plain, else Go's resolver), at most
// o.DNSConcurrency in flight, for A records only where the machine has no
// global IPv6 address; o.lookup instead where a test gives one.
func newResolver(o Options) *resolver {
	lookup := o.lookup
	if lookup == nil {
		var hosts *dns.Hosts
		if len(o.DNSServers) > 0 {
			// Go's resolver reads the hosts file itself; haul's client
			// reads it once. One it cannot read holds nothing, as for
			// the C library.
			hosts, _ = dns.ReadHostsFile(cmp.Or(o.hostsFile, "/etc/hosts"))
		}
		lookup = dns.New(dns.Options{Servers: o.DNSServers, Concurrency: o.DNSConcurrency, Hosts: hosts}).Lookup
	}
	cache, err := lru.New[string, answer](dnsCacheSize)
	if err != nil {
		panic(err) // only for a size <= 0
	}
	r := &resolver{lookup: lookup, cache: cache, now: o.now}
	if r.now == nil {
		r.now = time.Now
	}
	return r
}

// keep is how long an answer with ttl is kept (ttl < 0: it tells none).
func keep(ttl time.Duration) time.Duration {
	if ttl < 0 {
		return dnsMaxKeep
	}
	return min(max(ttl, dnsMinKeep), dnsMaxKeep)
}

// addrs returns host's addresses, from the cache or one lookup, bounded by
// limit and by ctx (a caller that gives up, Ctrl-C, does not wait for it).
func (r *resolver) addrs(ctx context.Context, host string, limit time.Duration) ([]netip.Addr, error) {
	if a, ok := r.cache.Get(host); ok && r.now().Before(a.until) {
		return a.addrs, a.err
	}
	ch := r.flights.DoChan(host, func() (any, error) {
		// A flight that ended between the look into the cache above and
		// this one's start has stored its answer: take it, not ask again.
		if a, ok := r.cache.Get(host); ok && r.now().Before(a.until) {
			return a.addrs, a.err
		}
		// Not the caller's context: one caller giving up must not fail the
		// others sharing the query; limit (--connect-timeout) bounds it.
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), limit)
		defer cancel()
		a, err := r.lookup(lctx, host)
		if err == nil && len(a.Addrs) == 0 {
			err = &net.DNSError{Err: "no addresses", Name: host, IsNotFound: true}
		}
		if err != nil {
			r.cache.Add(host, answer{err: err, until: r.now().Add(dnsFailKeep)})
			return nil, err
		}
		r.cache.Add(host, answer{addrs: a.Addrs, until: r.now().Add(keep(a.TTL))})
		return a.Addrs, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.([]netip.Addr), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// dialer dials through the resolver's cache: each address in turn, as
// net.Dialer does, the time left shared among those not yet tried.
func (r *resolver) dialer(d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		if _, err := netip.ParseAddr(host); err == nil {
			return d.DialContext(ctx, network, addr) // a literal: nothing to look up
		}
		if d.Timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d.Timeout)
			defer cancel()
		}
		limit := d.Timeout
		if limit <= 0 {
			limit = 30 * time.Second
		}
		ips, err := r.addrs(ctx, host, limit)
		if err != nil {
			return nil, &net.OpError{Op: "dial", Net: network, Err: err}
		}
		var first error
		for i, ip := range ips {
			actx := ctx
			if dl, ok := ctx.Deadline(); ok && i < len(ips)-1 {
				// The last address has what is left, ctx's own.
				left := time.Until(dl) / time.Duration(len(ips)-i)
				var cancel context.CancelFunc
				actx, cancel = context.WithTimeout(ctx, max(left, 2*time.Second))
				defer cancel()
			}
			c, err := d.DialContext(actx, network, net.JoinHostPort(ip.String(), port))
			if err == nil {
				return c, nil
			}
			if first == nil {
				first = err
			}
			if ctx.Err() != nil {
				break
			}
		}
		if first == nil {
			first = errors.New("no address")
		}
		return nil, fmt.Errorf("%s: %w", host, first)
	}
}
