package main

import (
	"fmt"
	"os"
	"path/filepath"

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
		&cli.StringFlag{Name: "proxy", Usage: "send requests through the proxy at `URL`: http://, https://, socks5:// (haul resolves host names) or socks5h:// (the proxy does), USER:PASSWORD@ for its login; instead of http_proxy, HTTPS_PROXY and ALL_PROXY, with NO_PROXY still applying (\"\": none)"},
	}
}

func parseNetwork(c *cli.Context, o *options) error {
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
