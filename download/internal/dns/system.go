package dns

import (
	"bufio"
	"errors"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Without --dns-server, a name is asked of the name servers of
// /etc/resolv.conf by this package's client where the system's configuration
// is the plain one that Go's resolver would follow to the letter: its hosts
// come from the hosts file, then DNS ("hosts: files dns" in
// /etc/nsswitch.conf), and resolv.conf sets nothing the client does not do
// the same way. The name is then asked as it is, as glibc and Go's resolver
// ask a name with at least ndots dots first; only a name with fewer, or one
// that finds no address where search domains could still find one, is left
// to Go's resolver, which tries the search domains. Go's resolver, for all
// its behaviour, costs about 70% more CPU a name and tells no TTL.

// systemFiles are where the system's configuration is read from.
type systemFiles struct {
	resolvConf, nsswitchConf, hosts string
	// port is the name servers' port: 53, but a test's server listens on
	// another.
	port uint16
	// hostname is os.Hostname; its domain is the search list where
	// resolv.conf gives none.
	hostname func() (string, error)
	getenv   func(string) string
}

var defaultSystemFiles = systemFiles{
	resolvConf: "/etc/resolv.conf", nsswitchConf: "/etc/nsswitch.conf", hosts: "/etc/hosts",
	port: 53, hostname: os.Hostname, getenv: os.Getenv,
}

// systemConf is what the system's configuration says of a lookup: the
// resolv.conf read, no servers in it where the configuration is not plain
// (then every name goes to Go's resolver), and search set where the host's
// name gives a search list too (a name asked as it is that finds no address
// is then asked again of Go's resolver, which goes on with the search
// domains).
type systemConf struct {
	resolvConf
	hosts *Hosts
}

// direct reports whether host is asked as it is of c.servers.
func (c *systemConf) direct(host string) bool {
	if len(c.servers) == 0 || !validName(host) {
		return false
	}
	key := hostKey(host)
	dots := strings.Count(key, ".")
	if dots == 0 || key == "onion" || strings.HasSuffix(key, ".onion") {
		// A single label: the search domains come first, or it is
		// not a DNS name at all; .onion is never asked (RFC 7686), as
		// Go's resolver does not.
		return false
	}
	return absolute(host) || dots >= c.ndots
}

// absolute reports whether host ends in a dot: it is asked as it is, and
// never with a search domain.
func absolute(host string) bool { return strings.HasSuffix(host, ".") }

// maxNameservers is how many resolv.conf name servers are asked, as glibc's
// MAXNS.
const maxNameservers = 3

// resolvConf is what the client takes from resolv.conf(5).
type resolvConf struct {
	servers []netip.AddrPort
	ndots   int
	search  bool // a search list is given
	// plain is false where the file sets what the client would not follow
	// (see parseResolvConf).
	plain bool
}

// parseResolvConf reads resolv.conf(5): the name servers (on port), ndots,
// and whether a search list is given. It is not plain where it sets what the
// client would not follow: queries over TCP only (use-vc), A and AAAA asked
// one after the other (single-request, single-request-reopen: a network
// that drops one of two queries sent at once from the same socket), a sort
// list, the obsolete inet6, or an option it does not know.
func parseResolvConf(r io.Reader, port uint16) (resolvConf, error) {
	c := resolvConf{ndots: 1, plain: true}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "nameserver":
			if len(f) < 2 || len(c.servers) == maxNameservers {
				continue
			}
			if a, err := netip.ParseAddr(f[1]); err == nil {
				c.servers = append(c.servers, netip.AddrPortFrom(a.Unmap(), port))
			}
		case "domain":
			// The last of search and domain wins (resolv.conf(5)); a
			// domain line without a domain is ignored, as glibc and Go's
			// resolver ignore it.
			if len(f) > 1 {
				c.search = true
			}
		case "search":
			// The root is no search domain (Go's resolver drops it).
			c.search = slices.ContainsFunc(f[1:], func(d string) bool { return d != "." })
		case "sortlist":
			c.plain = false
		case "options":
			for _, o := range f[1:] {
				name, val, _ := strings.Cut(o, ":")
				switch name {
				case "ndots":
					if n, err := strconv.Atoi(val); err == nil && n >= 0 {
						c.ndots = min(n, 15)
					}
				case "timeout", "attempts", "rotate", "edns0", "trust-ad", "no-reload",
					"no-check-names", "no-tld-query", "debug":
					// Timing, transport details and what a name with a
					// dot never meets: the client's own do.
				default:
					c.plain = false
				}
			}
		}
	}
	return c, sc.Err()
}

// nsswitchPlain reports whether nsswitch.conf(5) gives hosts from the
// hosts file, then DNS, and nothing else ("hosts: files dns"); a file that
// names no hosts source does not.
func nsswitchPlain(r io.Reader) (bool, error) {
	seen := false
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		db, srcs, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(db) != "hosts" {
			continue
		}
		if !slices.Equal(strings.Fields(srcs), []string{"files", "dns"}) {
			return false, nil
		}
		seen = true
	}
	return seen, sc.Err()
}

// readSystemConf reads the configuration f names; a part that cannot be read,
// or that is not plain, leaves it without servers.
func readSystemConf(f systemFiles) *systemConf {
	c := &systemConf{}
	for _, v := range []string{"LOCALDOMAIN", "RES_OPTIONS"} {
		if f.getenv(v) != "" {
			return c // glibc and Go's resolver read these as resolv.conf lines
		}
	}
	if strings.Contains(f.getenv("GODEBUG"), "netdns=") {
		return c // the user chose a resolver of Go's
	}
	plain, err := parseFile(f.nsswitchConf, nsswitchPlain)
	if err != nil || !plain {
		return c
	}
	rc, err := parseFile(f.resolvConf, func(r io.Reader) (resolvConf, error) { return parseResolvConf(r, f.port) })
	if err != nil || !rc.plain || len(rc.servers) == 0 {
		return c
	}
	if !rc.search {
		// Without search or domain, the local domain is the host name's
		// part after its first dot, as for glibc and Go's resolver.
		if h, err := f.hostname(); err == nil {
			_, dom, _ := strings.Cut(h, ".")
			rc.search = dom != ""
		}
	}
	hosts, err := ReadHostsFile(f.hosts)
	if err != nil {
		return c
	}
	return &systemConf{resolvConf: rc, hosts: hosts}
}

// rereadEvery is how often the files are looked at again for a change (Go's
// resolver looks as often): a run of hours follows a new resolv.conf (a
// network that changed) or hosts file.
const rereadEvery = 5 * time.Second

// system is the system's configuration, read again when its files change.
type system struct {
	files systemFiles
	now   func() time.Time

	conf atomic.Pointer[systemConf]
	next atomic.Int64 // when to look at the files again, in Unix nanoseconds

	mu    sync.Mutex // one look at a time
	stamp [3]fileStamp
}

// fileStamp tells whether a file changed: its size and time (as Go's
// resolver tells).
type fileStamp struct {
	size    int64
	mtime   int64
	missing bool
}

func stampOf(path string) fileStamp {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fileStamp{missing: true}
	}
	if err != nil {
		return fileStamp{mtime: -1}
	}
	return fileStamp{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
}

func newSystem(f systemFiles, now func() time.Time) *system {
	s := &system{files: f, now: now}
	s.stamp = s.stamps()
	s.conf.Store(readSystemConf(f))
	s.next.Store(now().Add(rereadEvery).UnixNano())
	return s
}

func (s *system) stamps() [3]fileStamp {
	return [3]fileStamp{stampOf(s.files.resolvConf), stampOf(s.files.nsswitchConf), stampOf(s.files.hosts)}
}

// current is the configuration, read again first if rereadEvery has passed
// (or the clock was set back since the last look) and a file changed since it
// was read.
func (s *system) current() *systemConf {
	now := s.now()
	next := s.next.Load()
	due := now.UnixNano() >= next || now.UnixNano() < next-int64(rereadEvery)
	if due && s.mu.TryLock() {
		if s.next.Load() == next {
			if st := s.stamps(); st != s.stamp {
				s.stamp = st
				s.conf.Store(readSystemConf(s.files))
			}
			s.next.Store(now.Add(rereadEvery).UnixNano())
		}
		s.mu.Unlock()
	}
	return s.conf.Load()
}
