package httpclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/idna"
	"golang.org/x/net/proxy"

	"github.com/haul/haul/download/internal/retry"
)

// Proxies says which proxy each request of a run goes through: --proxy, or
// the environment's variables, read as curl reads them (ReadProxies).
// The zero value (and nil) sends everything direct.
type Proxies struct {
	http, https *url.URL // per scheme of the request, nil: direct
	noProxy     noProxy
	// loopback: requests to localhost and loopback addresses may go through
	// the proxy (one given with --proxy); the environment's never take them.
	loopback bool
}

// ReadProxies returns the proxies of a run. With flag nil (no --proxy) they
// are the environment's, looked up with getenv as curl does: http_proxy for
// http:// (HTTP_PROXY too, as net/http reads it, but not in a CGI program,
// where REQUEST_METHOD is set and a request's "Proxy:" header would become
// HTTP_PROXY), https_proxy or HTTPS_PROXY for https://, and all_proxy or
// ALL_PROXY for either when its own is not set; a lower-case name wins over
// its upper-case one, and an empty value is no value. A request to localhost
// or a loopback address never goes through the environment's proxies (as in
// every Go program: a proxy set for a whole session is not meant for local
// servers).
//
// A non-nil flag is --proxy: the proxy of every request, whatever the
// environment says, "" for none.
//
// no_proxy (or NO_PROXY) applies to both, as curl's does to its --proxy: a
// comma-separated list of host names, each matching itself and its
// subdomains ("example.com" and ".example.com" match example.com and
// www.example.com), IP addresses and CIDR prefixes (matching literal
// addresses in URLs), any of them with ":PORT" to match that port only, and
// "*" for every host.
//
// A proxy is a URL: http://, https:// (both through net/http's Transport:
// an absolute-form request for http, a CONNECT tunnel for https),
// socks5:// (haul resolves the host name, through the run's DNS cache, and
// gives the proxy an address) or socks5h:// (the proxy is given the name),
// with USER:PASSWORD@ for the proxy's authentication (Basic for http(s)://,
// RFC 1929 username/password for SOCKS5); HOST[:PORT] without a scheme is
// http://. A SOCKS5 proxy without a port is on 1080, an http:// one on 80.
// A malformed URL, another scheme or a missing host is an error naming
// --proxy or the variable.
func ReadProxies(flag *string, getenv func(string) string) (*Proxies, error) {
	p := &Proxies{noProxy: parseNoProxy(firstEnv(getenv, "no_proxy", "NO_PROXY"))}
	if flag != nil {
		u, err := parseProxy("--proxy", *flag)
		if err != nil {
			return nil, err
		}
		p.http, p.https, p.loopback = u, u, true
		return p, nil
	}
	httpNames := []string{"http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"}
	if getenv("REQUEST_METHOD") != "" {
		httpNames = []string{"http_proxy", "all_proxy", "ALL_PROXY"}
	}
	var err error
	if p.http, err = proxyFromEnv(getenv, httpNames...); err != nil {
		return nil, err
	}
	if p.https, err = proxyFromEnv(getenv, "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"); err != nil {
		return nil, err
	}
	return p, nil
}

// firstEnv returns the first of names that is set and not empty, "" if none.
func firstEnv(getenv func(string) string, names ...string) string {
	_, v := firstEnvName(getenv, names...)
	return v
}

func firstEnvName(getenv func(string) string, names ...string) (name, value string) {
	for _, n := range names {
		if v := getenv(n); v != "" {
			return n, v
		}
	}
	return "", ""
}

// proxyFromEnv parses the first of names that is set, nil if none is.
func proxyFromEnv(getenv func(string) string, names ...string) (*url.URL, error) {
	name, v := firstEnvName(getenv, names...)
	if name == "" {
		return nil, nil
	}
	return parseProxy(name+" in the environment", v)
}

// parseProxy parses a proxy URL given by name (a flag or a variable): nil
// for "". It keeps the scheme (lower case), the credentials and the host,
// with the port a SOCKS5 proxy is on when it names none.
func parseProxy(name, s string) (*url.URL, error) {
	if s == "" {
		return nil, nil
	}
	raw := s
	if !strings.Contains(s, "://") {
		raw = "http://" + s // HOST[:PORT], as curl and net/http take it
	}
	u, err := url.Parse(raw)
	if err != nil {
		// Not url.Error's text: it repeats the URL, password and all.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("%s: not a proxy URL: %v", name, err)
	}
	shown := s // in errors, without its password
	if _, ok := u.User.Password(); ok {
		shown = u.Redacted()
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s %q: %s", name, shown, fmt.Sprintf(format, args...))
	}
	switch u.Scheme {
	case "http", "https", "socks5", "socks5h":
	default:
		return nil, bad("unsupported proxy scheme %q (http, https, socks5 or socks5h)", u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, bad("no host in the proxy URL")
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return nil, bad("port %s out of range", port)
		}
	}
	out := &url.URL{Scheme: u.Scheme, User: u.User, Host: u.Host}
	if isSOCKS(out) {
		if u.Port() == "" {
			out.Host = net.JoinHostPort(u.Hostname(), "1080")
		}
		if u.User != nil {
			// RFC 1929: a user name of 1 to 255 bytes, a password of 0 to 255.
			pw, _ := u.User.Password()
			if n := len(u.User.Username()); n == 0 || n > 255 || len(pw) > 255 {
				return nil, bad("a SOCKS5 user name is 1 to 255 bytes and a password at most 255")
			}
		}
	}
	return out, nil
}

func isSOCKS(p *url.URL) bool { return p.Scheme == "socks5" || p.Scheme == "socks5h" }

// For returns the proxy that a request for u goes through, nil for none.
func (p *Proxies) For(u *url.URL) *url.URL {
	if p == nil {
		return nil
	}
	var pu *url.URL
	switch u.Scheme {
	case "http":
		pu = p.http
	case "https":
		pu = p.https
	}
	if pu == nil {
		return nil
	}
	host := u.Hostname()
	if !p.loopback && isLoopback(host) {
		return nil
	}
	if p.noProxy.match(u.Scheme, host, u.Port()) {
		return nil
	}
	return pu
}

// none reports whether p sends every request direct.
func (p *Proxies) none() bool { return p == nil || p.http == nil && p.https == nil }

// isLoopback reports whether host (as url.URL.Hostname gives it) is
// localhost or a loopback address.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// noProxy is a parsed no_proxy list.
type noProxy struct {
	all     bool
	entries []noProxyEntry
}

// noProxyEntry is one host of a no_proxy list: an address prefix or a domain
// (lower case, ASCII, without leading or trailing dots), on any port or one.
type noProxyEntry struct {
	prefix netip.Prefix // valid for an address or a CIDR
	domain string
	port   string
}

// parseNoProxy parses a no_proxy list, skipping what it cannot read (as
// curl and net/http do: a list is a best effort).
func parseNoProxy(s string) noProxy {
	var np noProxy
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		if f == "*" {
			return noProxy{all: true}
		}
		var e noProxyEntry
		if pre, err := netip.ParsePrefix(f); err == nil {
			e.prefix = pre.Masked()
			np.entries = append(np.entries, e)
			continue
		}
		host := f
		if h, port, err := net.SplitHostPort(f); err == nil && h != "" {
			host, e.port = h, port
		}
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
		if a, err := netip.ParseAddr(host); err == nil {
			a = a.Unmap().WithZone("")
			e.prefix = netip.PrefixFrom(a, a.BitLen())
			np.entries = append(np.entries, e)
			continue
		}
		host = strings.TrimPrefix(host, "*")
		if e.domain = asciiHost(strings.Trim(host, ".")); e.domain != "" {
			np.entries = append(np.entries, e)
		}
	}
	return np
}

// asciiHost is a host name in lower case, its IDNA (punycode) form if it is
// not ASCII.
func asciiHost(h string) string {
	for i := 0; i < len(h); i++ {
		if h[i] >= 0x80 {
			if a, err := idna.Lookup.ToASCII(h); err == nil {
				return a
			}
			break
		}
	}
	return strings.ToLower(h)
}

// match reports whether a request to host and port (as url.URL gives them:
// "" for the scheme's default) is in the list: a domain entry matches the
// name and its subdomains, an address entry literal addresses in it.
func (np noProxy) match(scheme, host, port string) bool {
	if np.all {
		return true
	}
	if len(np.entries) == 0 {
		return false
	}
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[scheme]
	}
	a, err := netip.ParseAddr(host)
	isAddr := err == nil
	if isAddr {
		a = a.Unmap().WithZone("")
	} else {
		host = asciiHost(strings.TrimSuffix(host, "."))
	}
	for _, e := range np.entries {
		if e.port != "" && e.port != port {
			continue
		}
		if isAddr && e.prefix.IsValid() && e.prefix.Contains(a) {
			return true
		}
		if !isAddr && e.domain != "" && (host == e.domain ||
			len(host) > len(e.domain) && strings.HasSuffix(host, e.domain) && host[len(host)-len(e.domain)-1] == '.') {
			return true
		}
	}
	return false
}

// handshaker is what x/net/proxy's SOCKS5 dialer is besides a Dialer: the
// negotiation over a connection to the proxy dialed by the caller.
type handshaker interface {
	DialWithConn(ctx context.Context, c net.Conn, network, address string) (net.Addr, error)
}

// socksDialer returns the dial function of the connections through the
// SOCKS5 proxy p: h1, h2 and net/http's Transport dial through it alike. The
// connection to the proxy goes through the run's DNS cache (res) like any
// other; with socks5h:// the proxy is given the host name to connect to,
// with socks5:// haul looks the name up (through res) and gives the proxy
// each address in turn, as it would dial them. d's timeout bounds the whole:
// the connection to the proxy, its answers, every address tried.
//
// The connection returned is the TCP connection to the proxy itself, the
// negotiation done (x/net/proxy's DialWithConn), not a wrapper: h1 peeks at
// its socket before reusing it.
func socksDialer(p *url.URL, res *resolver, d *net.Dialer) (func(ctx context.Context, network, addr string) (net.Conn, error), error) {
	var auth *proxy.Auth
	if p.User != nil {
		pw, _ := p.User.Password()
		auth = &proxy.Auth{User: p.User.Username(), Password: pw}
	}
	sd, err := proxy.SOCKS5("tcp", p.Host, auth, nil)
	if err != nil {
		return nil, err
	}
	hs, ok := sd.(handshaker)
	if !ok {
		return nil, fmt.Errorf("proxy %s: x/net/proxy's SOCKS5 dialer has no DialWithConn", p.Redacted())
	}
	toProxy := res.dialer(d)
	remote := p.Scheme == "socks5h"
	limit := d.Timeout
	if limit <= 0 {
		limit = 30 * time.Second
	}
	name := p.Redacted()
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if d.Timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d.Timeout)
			defer cancel()
		}
		targets := []string{addr}
		if !remote {
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			if _, err := netip.ParseAddr(host); err != nil {
				ips, err := res.addrs(ctx, host, limit)
				if err != nil {
					return nil, &net.OpError{Op: "dial", Net: network, Err: err}
				}
				targets = targets[:0]
				for _, ip := range ips {
					targets = append(targets, net.JoinHostPort(ip.String(), port))
				}
			}
		}
		var first error
		for _, t := range targets {
			c, err := toProxy(ctx, "tcp", p.Host)
			if err != nil {
				// The proxy itself is out of reach: no other address helps.
				return nil, fmt.Errorf("proxy %s: %w", name, err)
			}
			if _, err := hs.DialWithConn(ctx, c, "tcp", t); err != nil {
				c.Close()
				err = fmt.Errorf("proxy %s: %w", name, err)
				if strings.Contains(err.Error(), "authentication") {
					// The proxy refused the login (x/net's "no acceptable
					// authentication methods", "username/password
					// authentication failed"): it will refuse it again.
					return nil, retry.Final(err)
				}
				if first == nil {
					first = err
				}
				if ctx.Err() != nil {
					break
				}
				continue
			}
			return c, nil
		}
		return nil, first
	}, nil
}
