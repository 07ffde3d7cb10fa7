package dns

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/haul/haul/download/internal/dns/dnstest"
	"github.com/haul/haul/internal/testutil"
)

// systemSetup is a system configuration in files of the test's own, naming
// server s, with the hosts file hosts.
type systemSetup struct {
	files  systemFiles
	env    map[string]string
	goAsks atomic.Int32 // lookups that reached Go's resolver (the stand-in)
}

func newSystemSetup(t *testing.T, s *dnstest.Server, resolvConf, nsswitch, hosts string) *systemSetup {
	t.Helper()
	dir := t.TempDir()
	ss := &systemSetup{env: map[string]string{}}
	ss.files = systemFiles{
		resolvConf: filepath.Join(dir, "resolv.conf"), nsswitchConf: filepath.Join(dir, "nsswitch.conf"),
		hosts: filepath.Join(dir, "hosts"), port: s.Addr.Port(),
		hostname: func() (string, error) { return "box", nil },
		getenv:   func(k string) string { return ss.env[k] },
	}
	write(t, ss.files.resolvConf, resolvConf)
	write(t, ss.files.nsswitchConf, nsswitch)
	write(t, ss.files.hosts, hosts)
	return ss
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// resolver is a Resolver over the setup, for A records, whose Go resolver is
// a stand-in that counts its lookups and answers 198.51.100.1.
func (ss *systemSetup) resolver() *Resolver {
	return New(Options{Network: "ip4", files: &ss.files, system: func(ctx context.Context, network, host string) ([]netip.Addr, error) {
		ss.goAsks.Add(1)
		return []netip.Addr{netip.MustParseAddr("198.51.100.1")}, nil
	}})
}

func lookupIn(t *testing.T, r *Resolver, host string) (Answer, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Patience(t))
	defer cancel()
	return r.Lookup(ctx, host)
}

const plainNSSwitch = "passwd: files\nhosts:   files dns # the usual\nnetworks: files\n"

// With a plain configuration, a name with a dot is asked of resolv.conf's
// server by haul's client (one A query, the TTL told), not of Go's resolver;
// the hosts file still answers first.
func TestSystemServerAskedDirectly(t *testing.T) {
	s := dnstest.Start(t, answers(map[string][]dnsmessage.Resource{
		"a.example.test.": {dnstest.A("a.example.test", 300, "192.0.2.7")},
	}))
	ss := newSystemSetup(t, s, "# made by hand\nnameserver 127.0.0.1\noptions edns0 timeout:1\n", plainNSSwitch,
		"127.0.0.1 localhost\n192.0.2.99 pinned.example.test\n")
	r := ss.resolver()
	a, err := lookupIn(t, r, "a.example.test")
	wantAddrs(t, a, err, "192.0.2.7")
	if a.TTL != 300*time.Second {
		t.Errorf("TTL %v, want 5m0s", a.TTL)
	}
	a, err = lookupIn(t, r, "pinned.example.test")
	wantAddrs(t, a, err, "192.0.2.99")
	if n, all := s.Count("a.example.test", dnsmessage.TypeA), len(s.Queries()); n != 1 || all != 1 {
		t.Errorf("%d A queries of %d, want 1 of 1", n, all)
	}
	if n := ss.goAsks.Load(); n != 0 {
		t.Errorf("Go's resolver asked %d times, want 0", n)
	}
}

// Where the configuration is not plain, or the name is one the search
// domains come first for, Go's resolver looks it up, and the server is not
// asked by haul's client.
func TestSystemLeftToGoResolver(t *testing.T) {
	for _, c := range []struct {
		name, resolv, nsswitch, host string
		env                          map[string]string
	}{
		{name: "nsswitch with mdns", resolv: "nameserver 127.0.0.1\n",
			nsswitch: "hosts: files mdns4_minimal [NOTFOUND=return] dns\n", host: "a.example.test"},
		{name: "nsswitch with an action", resolv: "nameserver 127.0.0.1\n",
			nsswitch: "hosts: files [NOTFOUND=return] dns\n", host: "a.example.test"},
		{name: "nsswitch without hosts", resolv: "nameserver 127.0.0.1\n", nsswitch: "passwd: files\n", host: "a.example.test"},
		{name: "use-vc", resolv: "nameserver 127.0.0.1\noptions use-vc\n", nsswitch: plainNSSwitch, host: "a.example.test"},
		{name: "sortlist", resolv: "nameserver 127.0.0.1\nsortlist 130.155.160.0/255.255.240.0\n", nsswitch: plainNSSwitch,
			host: "a.example.test"},
		{name: "no name server", resolv: "search example.test\n", nsswitch: plainNSSwitch, host: "a.example.test"},
		{name: "RES_OPTIONS", resolv: "nameserver 127.0.0.1\n", nsswitch: plainNSSwitch, host: "a.example.test",
			env: map[string]string{"RES_OPTIONS": "ndots:3"}},
		{name: "GODEBUG netdns", resolv: "nameserver 127.0.0.1\n", nsswitch: plainNSSwitch, host: "a.example.test",
			env: map[string]string{"GODEBUG": "netdns=cgo"}},
		{name: "single label", resolv: "nameserver 127.0.0.1\n", nsswitch: plainNSSwitch, host: "intranet"},
		{name: "fewer dots than ndots", resolv: "nameserver 127.0.0.1\noptions ndots:3\n", nsswitch: plainNSSwitch,
			host: "a.example.test"},
		{name: "onion", resolv: "nameserver 127.0.0.1\n", nsswitch: plainNSSwitch, host: "abc.onion"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := dnstest.Start(t, answers(nil))
			ss := newSystemSetup(t, s, c.resolv, c.nsswitch, "")
			for k, v := range c.env {
				ss.env[k] = v
			}
			a, err := lookupIn(t, ss.resolver(), c.host)
			wantAddrs(t, a, err, "198.51.100.1")
			if n := ss.goAsks.Load(); n != 1 {
				t.Errorf("Go's resolver asked %d times, want 1", n)
			}
			if qs := s.Queries(); len(qs) != 0 {
				t.Errorf("the server was asked %+v", qs)
			}
		})
	}
}

// A name with ndots dots, or an absolute one, is asked as it is.
func TestSystemNdots(t *testing.T) {
	s := dnstest.Start(t, answers(map[string][]dnsmessage.Resource{
		"a.b.c.": {dnstest.A("a.b.c", 60, "192.0.2.1")},
		"a.b.":   {dnstest.A("a.b", 60, "192.0.2.2")},
	}))
	ss := newSystemSetup(t, s, "nameserver 127.0.0.1\noptions ndots:2\n", plainNSSwitch, "")
	r := ss.resolver()
	a, err := lookupIn(t, r, "a.b.c")
	wantAddrs(t, a, err, "192.0.2.1")
	a, err = lookupIn(t, r, "a.b.")
	wantAddrs(t, a, err, "192.0.2.2")
	a, err = lookupIn(t, r, "a.b") // one dot of two: the search domains first
	wantAddrs(t, a, err, "198.51.100.1")
	if n := ss.goAsks.Load(); n != 1 {
		t.Errorf("Go's resolver asked %d times, want 1 (for a.b)", n)
	}
}

// A name that does not exist as it is: without a search list that is the
// answer; with one (resolv.conf's, or the host name's domain), Go's resolver
// goes on with the search domains.
func TestSystemNotFoundAndSearchList(t *testing.T) {
	for _, c := range []struct {
		name, resolv, hostname string
		goAsks                 int32
	}{
		{name: "no search list", resolv: "nameserver 127.0.0.1\n", hostname: "box", goAsks: 0},
		{name: "search", resolv: "nameserver 127.0.0.1\nsearch corp.test\n", hostname: "box", goAsks: 1},
		{name: "domain", resolv: "domain corp.test\nnameserver 127.0.0.1\n", hostname: "box", goAsks: 1},
		{name: "the last of search and domain wins", resolv: "domain corp.test\nsearch\nnameserver 127.0.0.1\n",
			hostname: "box", goAsks: 0},
		{name: "a domain line without a domain is ignored", resolv: "search corp.test\ndomain\nnameserver 127.0.0.1\n",
			hostname: "box", goAsks: 1},
		{name: "the root is no search domain", resolv: "search .\nnameserver 127.0.0.1\n", hostname: "box", goAsks: 0},
		{name: "the host name's domain", resolv: "nameserver 127.0.0.1\n", hostname: "box.corp.test", goAsks: 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := dnstest.Start(t, answers(nil))
			ss := newSystemSetup(t, s, c.resolv, plainNSSwitch, "")
			ss.files.hostname = func() (string, error) { return c.hostname, nil }
			a, err := lookupIn(t, ss.resolver(), "gone.example.test")
			if n := ss.goAsks.Load(); n != c.goAsks {
				t.Errorf("Go's resolver asked %d times, want %d", n, c.goAsks)
			}
			if n := s.Count("gone.example.test", dnsmessage.TypeA); n != 1 {
				t.Errorf("%d A queries of the name as it is, want 1", n)
			}
			if c.goAsks > 0 {
				wantAddrs(t, a, err, "198.51.100.1")
				return
			}
			var de *net.DNSError
			if !errors.As(err, &de) || !de.IsNotFound {
				t.Fatalf("lookup: %v, want a not-found *net.DNSError", err)
			}
		})
	}
}

// An absolute name is only ever asked as it is (the search domains are not
// tried for it): one that does not exist is not asked again of Go's
// resolver, even with a search list.
func TestSystemAbsoluteNameNotFoundWithSearchList(t *testing.T) {
	s := dnstest.Start(t, answers(nil))
	ss := newSystemSetup(t, s, "nameserver 127.0.0.1\nsearch corp.test\n", plainNSSwitch, "")
	_, err := lookupIn(t, ss.resolver(), "gone.example.test.")
	var de *net.DNSError
	if !errors.As(err, &de) || !de.IsNotFound {
		t.Fatalf("lookup: %v, want a not-found *net.DNSError", err)
	}
	if n := ss.goAsks.Load(); n != 0 {
		t.Errorf("Go's resolver asked %d times, want 0", n)
	}
}

// The configuration is read again when a file changes, at most every
// rereadEvery.
func TestSystemReadAgainWhenChanged(t *testing.T) {
	ss, sys, now := clockedSystem(t)
	servers := func() []string { return serverAddrs(sys.current()) }
	if got := servers(); !slices.Equal(got, []string{"127.0.0.1"}) {
		t.Fatalf("servers %v, want [127.0.0.1]", got)
	}
	write(t, ss.files.resolvConf, "nameserver 127.0.0.2\nnameserver ::1\n")
	*now = now.Add(rereadEvery - time.Millisecond)
	if got := servers(); !slices.Equal(got, []string{"127.0.0.1"}) {
		t.Errorf("servers %v before rereadEvery passed, want [127.0.0.1]", got)
	}
	*now = now.Add(time.Millisecond)
	if got := servers(); !slices.Equal(got, []string{"127.0.0.2", "::1"}) {
		t.Errorf("servers %v after the change, want [127.0.0.2 ::1]", got)
	}
	write(t, ss.files.nsswitchConf, "hosts: files myhostname dns\n")
	*now = now.Add(rereadEvery)
	if got := servers(); len(got) != 0 {
		t.Errorf("servers %v with nsswitch not plain, want none", got)
	}
}

// A clock set back (the wall clock stepped by NTP or by hand) does not put
// off the next look at the files until it has caught up again.
func TestSystemReadAgainAfterClockSetBack(t *testing.T) {
	ss, sys, now := clockedSystem(t)
	write(t, ss.files.resolvConf, "nameserver 127.0.0.2\nnameserver ::1\n")
	*now = now.Add(-time.Hour)
	if got := serverAddrs(sys.current()); !slices.Equal(got, []string{"127.0.0.2", "::1"}) {
		t.Errorf("servers %v after the clock was set back, want [127.0.0.2 ::1]", got)
	}
}

// clockedSystem is a plain configuration naming 127.0.0.1, read on a clock
// the test moves through now.
func clockedSystem(t *testing.T) (*systemSetup, *system, *time.Time) {
	t.Helper()
	ss := newSystemSetup(t, dnstest.Start(t, answers(nil)), "nameserver 127.0.0.1\n", plainNSSwitch, "")
	now := time.Unix(1000, 0)
	return ss, newSystem(ss.files, func() time.Time { return now }), &now
}

// serverAddrs is the addresses of c's servers.
func serverAddrs(c *systemConf) []string {
	var out []string
	for _, a := range c.servers {
		out = append(out, a.Addr().String())
	}
	return out
}

func TestParseResolvConf(t *testing.T) {
	for _, c := range []struct {
		in      string
		servers []string
		ndots   int
		search  bool
		plain   bool
	}{
		{in: "", ndots: 1, plain: true},
		{in: "nameserver 10.0.0.1\nnameserver 2001:db8::53\nnameserver ::ffff:10.0.0.3\nnameserver 10.0.0.4\n",
			servers: []string{"10.0.0.1:53", "[2001:db8::53]:53", "10.0.0.3:53"}, ndots: 1, plain: true},
		{in: "nameserver fe80::1%eth0\nnameserver not-an-address\nnameserver\n", servers: []string{"[fe80::1%eth0]:53"},
			ndots: 1, plain: true},
		{in: "; comment\n# comment\nnameserver 10.0.0.1 # trailing\n", servers: []string{"10.0.0.1:53"}, ndots: 1, plain: true},
		{in: "options ndots:5 rotate attempts:3\nsearch a.test b.test\n", ndots: 5, search: true, plain: true},
		{in: "options ndots:99\n", ndots: 15, plain: true},
		{in: "options ndots:-1 ndots:x\n", ndots: 1, plain: true},
		{in: "options inet6\n", ndots: 1, plain: false},
		{in: "options no-aaaa\n", ndots: 1, plain: false},
		{in: "options single-request\n", ndots: 1, plain: false},
		{in: "options edns0\noptions single-request-reopen\n", ndots: 1, plain: false},
		{in: "search a.test\ndomain\n", ndots: 1, search: true, plain: true},
		{in: "domain a.test\nsearch\n", ndots: 1, search: false, plain: true},
		{in: "search . .\n", ndots: 1, search: false, plain: true},
		{in: "search . a.test\n", ndots: 1, search: true, plain: true},
	} {
		rc, err := parseResolvConf(strings.NewReader(c.in), 53)
		if err != nil {
			t.Fatalf("%q: %v", c.in, err)
		}
		var got []string
		for _, s := range rc.servers {
			got = append(got, s.String())
		}
		if !slices.Equal(got, c.servers) || rc.ndots != c.ndots || rc.search != c.search || rc.plain != c.plain {
			t.Errorf("%q: servers %v ndots %d search %v plain %v, want %v %d %v %v", c.in, got, rc.ndots, rc.search,
				rc.plain, c.servers, c.ndots, c.search, c.plain)
		}
	}
}

func TestNSSwitchPlain(t *testing.T) {
	for in, want := range map[string]bool{
		"hosts: files dns\n":                         true,
		"hosts:files dns\npasswd: compat\n":          true,
		"hosts:\tfiles\tdns\t# comment\n":            true,
		"hosts: dns files\n":                         false,
		"hosts: files dns\nhosts: files resolve\n":   false,
		"hosts: files resolve [!UNAVAIL=return] dns": false,
		"":                     false,
		"# hosts: files dns\n": false,
	} {
		got, err := nsswitchPlain(strings.NewReader(in))
		if err != nil || got != want {
			t.Errorf("%q: %v, %v; want %v", in, got, err, want)
		}
	}
}

func FuzzParseResolvConf(f *testing.F) {
	for _, s := range []string{"nameserver 10.0.0.1\n", "options ndots:3 use-vc\nsearch a b\n", "nameserver fe80::1%lo\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		rc, err := parseResolvConf(strings.NewReader(in), 53)
		if err != nil {
			return
		}
		if len(rc.servers) > maxNameservers || rc.ndots < 0 || rc.ndots > 15 {
			t.Fatalf("%q: %d servers, ndots %d", in, len(rc.servers), rc.ndots)
		}
		for _, s := range rc.servers {
			if !s.Addr().IsValid() || s.Port() != 53 || s.Addr().Is4In6() {
				t.Fatalf("%q: server %v", in, s)
			}
		}
	})
}

func FuzzNSSwitchPlain(f *testing.F) {
	for _, s := range []string{"hosts: files dns\n", "hosts: files [NOTFOUND=return] dns\n", "passwd: files\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		plain, err := nsswitchPlain(strings.NewReader(in))
		if err == nil && plain && !strings.Contains(in, "files") {
			t.Fatalf("%q: plain without a files source", in)
		}
	})
}
