package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"
)

// politeFlags are the flags that spare the servers: a rate per host and
// robots.txt.
func politeFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "per-host-rate", Value: "0",
			Usage: "at most `RATE` requests a second to one host, its connections, split pieces and retries together: 2, 0.5, 2/s, 30/m or 100/h (0: no limit)"},
		&cli.BoolFlag{Name: "robots",
			Usage: "obey each host's robots.txt for the User-Agent's product token: the entries it disallows are left out (status excluded), its Crawl-delay slows the host"},
	}
}

// politeOptions are what those flags say.
type politeOptions struct {
	perHostRate float64 // requests a second (0: no limit)
	robots      bool
}

func parsePolite(c *cli.Context, o *options) error {
	var err error
	if o.polite.perHostRate, err = parsePerHostRate(c.String("per-host-rate")); err != nil {
		return err
	}
	o.polite.robots = c.Bool("robots")
	return nil
}

// parsePerHostRate parses --per-host-rate: a number of requests, a second
// unless "/s", "/m" or "/h" says a second, a minute or an hour; it returns
// requests a second (0: no limit).
func parsePerHostRate(s string) (float64, error) {
	bad := fmt.Errorf("--per-host-rate %q: want requests a second, such as 2, 0.5, 2/s, 30/m or 100/h (0: no limit)", s)
	num, unit, _ := strings.Cut(strings.TrimSpace(s), "/")
	per := 1.0
	switch strings.TrimSpace(unit) {
	case "", "s":
		if unit == "" && strings.Contains(s, "/") {
			return 0, bad
		}
	case "m":
		per = 60
	case "h":
		per = 3600
	default:
		return 0, bad
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
		return 0, bad
	}
	return v / per, nil
}
