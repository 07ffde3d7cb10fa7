package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

// networkFlags are the flags for networks beyond loopback: hosts that are
// down.
func networkFlags() []cli.Flag {
	return []cli.Flag{
		&cli.IntFlag{Name: "host-fail-limit", Value: 8,
			Usage: "after `N` attempts in a row to one host without a response (refused, reset, DNS, timeouts), fail its other entries at once (0: never)"},
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
	return nil
}
