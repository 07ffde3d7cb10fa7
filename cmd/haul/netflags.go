package main

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/haul/haul/download/httpclient"
)

// networkFlags are the flags for networks beyond loopback: hosts that are
// down, credentials, cookies and proxies.
func networkFlags() []cli.Flag {
	return []cli.Flag{
		&cli.IntFlag{Name: "host-fail-limit", Value: 8,
			Usage: "after `N` attempts in a row to one host without a response (refused, reset, DNS, timeouts), fail its other entries at once (0: never)"},
		&cli.BoolFlag{Name: "netrc", Usage: "Basic credentials per host from ~/.netrc ($NETRC), as curl --netrc; never sent on to another host"},
		&cli.StringFlag{Name: "netrc-file", TakesFile: true, Usage: "like --netrc, from `FILE`"},
		&cli.StringFlag{Name: "cookies", TakesFile: true, Usage: "send the cookies of a Netscape cookies.txt `FILE` (as curl -b, wget --load-cookies)"},
		&cli.StringSliceFlag{Name: "dns-server", Usage: "look host names up with the name server at `IP[:PORT]` ([IPv6]:PORT; port 53 by default) instead of the system's; repeatable: the next is asked when one does not answer; /etc/hosts still applies"},
		&cli.IntFlag{Name: "dns-concurrency", Value: 64, Usage: "at most `N` DNS lookups in flight"},
		&cli.StringFlag{Name: "proxy", Usage: "send requests through the proxy at `URL`: http://, https://, socks5:// (haul resolves host names) or socks5h:// (the proxy does), USER:PASSWORD@ for its login; instead of http_proxy, HTTPS_PROXY and ALL_PROXY, with NO_PROXY still applying (\"\": none)"},
	}
}

// dnsOptions are the values of --dns-server and --dns-concurrency.
type dnsOptions struct {
	servers     []netip.AddrPort
	concurrency int
}

func parseDNS(c *cli.Context, o *options) error {
	for _, s := range c.StringSlice("dns-server") {
		a, err := parseDNSServer(s)
		if err != nil {
			return err
		}
		o.dns.servers = append(o.dns.servers, a)
	}
	if o.dns.concurrency = c.Int("dns-concurrency"); o.dns.concurrency <= 0 {
		return fmt.Errorf("--dns-concurrency must be >= 1")
	}
	return nil
}

// parseDNSServer parses a --dns-server value: IP, IP:PORT, [IPv6] or
// [IPv6]:PORT, port 53 where none is given. A name is refused: looking it up
// would need a resolver.
func parseDNSServer(s string) (netip.AddrPort, error) {
	bad := fmt.Errorf("--dns-server %q: want an IP address, IP:PORT or [IPv6]:PORT", s)
	if a, err := netip.ParseAddrPort(s); err == nil {
		if a.Port() == 0 {
			return netip.AddrPort{}, bad
		}
		return netip.AddrPortFrom(a.Addr().Unmap(), a.Port()), nil
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		s = s[1 : len(s)-1]
		if a, err := netip.ParseAddr(s); err != nil || !a.Is6() {
			return netip.AddrPort{}, bad
		}
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.AddrPort{}, bad
	}
	return netip.AddrPortFrom(a.Unmap(), 53), nil
}

func parseNetwork(c *cli.Context, o *options) error {
	if err := parseDNS(c, o); err != nil {
		return err
	}
	o.hostFailLimit = c.Int("host-fail-limit")
	if o.hostFailLimit < 0 {
		return fmt.Errorf("--host-fail-limit must be >= 0 (0: never give up on a host)")
	}
	if o.hostFailLimit == 0 {
		o.hostFailLimit = -1 // download.Options: < 0 is never, 0 the default
	}
	name := c.String("netrc-file")
	if name == "" && c.Bool("netrc") {
		if name = os.Getenv("NETRC"); name == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return fmt.Errorf("--netrc: %w", err)
			}
			name = filepath.Join(home, ".netrc")
		}
	}
	if name != "" {
		f, err := os.Open(name)
		if err != nil {
			return fmt.Errorf("--netrc: %w", err)
		}
		defer f.Close()
		if o.netrc, err = httpclient.ParseNetrc(f); err != nil {
			return fmt.Errorf("--netrc %s: %w", name, err)
		}
	}
	// --proxy "" is set (no proxy at all), unlike no --proxy (the environment's).
	var proxy *string
	if c.IsSet("proxy") {
		proxy = new(c.String("proxy"))
	}
	var err error
	if o.proxies, err = httpclient.ReadProxies(proxy, os.Getenv); err != nil {
		return err
	}
	if name := c.String("cookies"); name != "" {
		f, err := os.Open(name)
		if err != nil {
			return fmt.Errorf("--cookies: %w", err)
		}
		defer f.Close()
		if o.jar, err = httpclient.LoadCookies(f); err != nil {
			return fmt.Errorf("--cookies %s: %w", name, err)
		}
	}
	return nil
}
