// Package dns looks host names up for the run's dialer: in the hosts file
// first, then with the name servers given (--dns-server), in order, over UDP
// and over TCP when an answer is truncated, or else with those of
// /etc/resolv.conf where the system's configuration is plain (system.go) and
// with Go's resolver for the rest. On a
// machine without a global IPv6 address it asks for A records only, as
// getaddrinfo's AI_ADDRCONFIG does, so that a host name costs one query, not
// two; where there is one, A and AAAA at once. At most Options.Concurrency
// lookups are in flight, so that a list over a million hosts never floods a
// resolver.
//
// The client is written here, over golang.org/x/net/dns/dnsmessage (which
// builds and parses the messages: the part that is easy to get wrong), rather
// than taken from a library such as github.com/miekg/dns. haul asks one kind
// of question, A or AAAA, of a recursive resolver; that is a few hundred
// lines, where miekg/dns is a module of its own, most of it servers, zones
// and DNSSEC. Go's net.Resolver can be pointed at other servers only through
// its Dial hook, and then it still applies /etc/resolv.conf's search domains
// and timeouts, asks for AAAA wherever the network is "ip", and tells no TTL:
// it stays the lookup without --dns-server, asked for "ip4" where the machine
// has no global IPv6 address.
package dns

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/sync/semaphore"
)

// DefaultConcurrency is the cap on lookups in flight when Options gives none.
const DefaultConcurrency = 64

// Options configures New.
type Options struct {
	// Servers are the name servers asked, in order: the next one when one
	// does not answer in its share of the lookup's time, or answers
	// SERVFAIL or REFUSED. None: the system's configuration (system.go).
	Servers []netip.AddrPort
	// Concurrency caps the lookups in flight: one per host name, its A and
	// AAAA queries and the names its CNAMEs lead to included. 0 or less:
	// DefaultConcurrency.
	Concurrency int
	// Network is which addresses are asked for: "ip4" (A records) or "ip"
	// (A and AAAA). "": as AI_ADDRCONFIG decides, "ip" where the machine has
	// a global IPv6 address (HasGlobalIPv6, asked once, here), else "ip4".
	Network string
	// Hosts answers first: a name it holds is never asked of a server. Nil:
	// none.
	Hosts *Hosts

	// system is Go's resolver, the lookup without Servers; tests replace
	// it (and then no system configuration is read).
	system func(ctx context.Context, network, host string) ([]netip.Addr, error)
	// files is where the system's configuration is read; nil is the
	// machine's (defaultSystemFiles).
	files *systemFiles
}

// Answer is the addresses of a host name and how long they may be kept.
type Answer struct {
	Addrs []netip.Addr
	// TTL is the least time to live of the records that led to Addrs
	// (CNAMEs included); negative where the source does not say (Go's
	// resolver, the hosts file).
	TTL time.Duration
}

// Resolver looks host names up. It is safe for concurrent use; it caches
// nothing (the caller does, with the TTL).
type Resolver struct {
	servers []netip.AddrPort
	network string
	hosts   *Hosts
	sem     *semaphore.Weighted
	udp     udpMuxes // the UDP sockets queries share, a server's at a time
	system  func(ctx context.Context, network, host string) ([]netip.Addr, error)
	// sys is the system's configuration, without Servers: where it is
	// plain, names are asked of its servers by this client (system.go).
	sys *system
}

// New returns a Resolver; it reads the machine's interfaces when o.Network
// is "".
func New(o Options) *Resolver {
	r := &Resolver{servers: o.Servers, network: o.Network, hosts: o.Hosts, system: o.system}
	if r.network == "" {
		r.network = "ip4"
		if HasGlobalIPv6() {
			r.network = "ip"
		}
	}
	n := o.Concurrency
	if n <= 0 {
		n = DefaultConcurrency
	}
	r.sem = semaphore.NewWeighted(int64(n))
	if len(r.servers) == 0 && (r.system == nil || o.files != nil) {
		f := defaultSystemFiles
		if o.files != nil {
			f = *o.files
		}
		r.sys = newSystem(f, time.Now)
	}
	if r.system == nil {
		// Go's resolver where the system's configuration lets it answer
		// (it gives way to the C library's otherwise, which Dial does not
		// change), its UDP queries sharing sockets as those to Servers do.
		r.system = (&net.Resolver{Dial: r.udp.dial}).LookupNetIP
	}
	return r
}

// Lookup returns host's addresses. A name that does not exist, or has no
// address of the kind asked for, is a *net.DNSError with IsNotFound (final:
// another attempt gets the same answer); a server that failed or did not
// answer is one with IsTemporary or IsTimeout.
func (r *Resolver) Lookup(ctx context.Context, host string) (Answer, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return Answer{Addrs: []netip.Addr{a}, TTL: -1}, nil
	}
	hosts := r.hosts
	var sys *systemConf
	if r.sys != nil {
		sys = r.sys.current()
		hosts = sys.hosts
	}
	if addrs := hosts.Lookup(host, r.network); len(addrs) > 0 {
		return Answer{Addrs: addrs, TTL: -1}, nil
	}
	if err := r.sem.Acquire(ctx, 1); err != nil {
		return Answer{}, &net.DNSError{Err: "waiting for a lookup slot: " + err.Error(), Name: host,
			IsTimeout: errors.Is(err, context.DeadlineExceeded), IsTemporary: true, UnwrapErr: err}
	}
	defer r.sem.Release(1)
	if len(r.servers) == 0 {
		if sys != nil && sys.direct(host) {
			a, err := r.lookupAt(ctx, sys.servers, host)
			if err == nil || !sys.search || absolute(host) {
				return a, err
			}
			// The search domains may still find it (not an absolute
			// name's): Go's resolver tries them (after the name as it
			// is, again).
		}
		addrs, err := r.system(ctx, r.network, host)
		return Answer{Addrs: addrs, TTL: -1}, err
	}
	if !validName(host) {
		// As Go's resolver: a name no server can hold does not exist.
		return Answer{}, notFound(host, "")
	}
	return r.lookupAt(ctx, r.servers, host)
}

// lookupAt asks servers for host's addresses of r.network.
func (r *Resolver) lookupAt(ctx context.Context, servers []netip.AddrPort, host string) (Answer, error) {
	if r.network == "ip4" {
		return r.query(ctx, servers, host, dnsmessage.TypeA)
	}
	var v6 Answer
	var err6 error
	done := make(chan struct{})
	go func() {
		defer close(done)
		v6, err6 = r.query(ctx, servers, host, dnsmessage.TypeAAAA)
	}()
	v4, err4 := r.query(ctx, servers, host, dnsmessage.TypeA)
	<-done
	return merge(v4, err4, v6, err6)
}

// merge is the answer of a lookup that asked for A and AAAA: every address,
// the families interleaved, IPv6 first (RFC 8305, section 4: a dial that
// fails on one family tries the other next), kept as long as the shorter
// TTL. One family's addresses are an answer even if the other's query
// failed; none is a failure, temporary unless both said the name has none.
func merge(v4 Answer, err4 error, v6 Answer, err6 error) (Answer, error) {
	switch {
	case err4 == nil && err6 == nil:
		a := Answer{TTL: min(v4.TTL, v6.TTL), Addrs: make([]netip.Addr, 0, len(v4.Addrs)+len(v6.Addrs))}
		for i := range max(len(v4.Addrs), len(v6.Addrs)) {
			if i < len(v6.Addrs) {
				a.Addrs = append(a.Addrs, v6.Addrs[i])
			}
			if i < len(v4.Addrs) {
				a.Addrs = append(a.Addrs, v4.Addrs[i])
			}
		}
		return a, nil
	case err4 == nil:
		return v4, nil
	case err6 == nil:
		return v6, nil
	}
	var de *net.DNSError
	if errors.As(err4, &de) && de.IsNotFound {
		return Answer{}, err6 // not found too, or the failure to say
	}
	return Answer{}, err4
}

// notFound is the error for a name that does not exist or has no address of
// the kind asked for; the engine does not retry it.
func notFound(host, server string) error {
	return &net.DNSError{Err: "no such host", Name: host, Server: server, IsNotFound: true}
}

// validName reports whether host can be asked of a name server: at most 253
// bytes, in labels of 1 to 63 bytes (a trailing dot allowed).
func validName(host string) bool {
	if len(host) > 0 && host[len(host)-1] == '.' {
		host = host[:len(host)-1]
	}
	if host == "" || len(host) > 253 {
		return false
	}
	label := 0
	for i := 0; i < len(host); i++ {
		if host[i] == '.' {
			if label == 0 {
				return false
			}
			label = 0
			continue
		}
		if label++; label > 63 {
			return false
		}
	}
	return label > 0
}
