package main

import (
	"math"
	"strings"
)

// machineLimit is the shortest wall time this machine's measured limits (limits.sh medians) allow
// for workload w: the larger of files ÷ the file rate and bytes ÷ the byte rate. The file rate is
// the lower of the server's best request rate over the workload's protocol ((d) plain, (f) TLS)
// and the best rate of creating small files ((c)); the byte rate is the lower of the best loopback
// rate over that protocol ((a) plain, (e) TLS; one stream for a single file) and the page cache's
// write rate ((b), cache). A bound that was not measured is left out; 0 when none was.
func machineLimit(w string, wl workload, ls []limit) float64 {
	tls := strings.HasSuffix(w, "-tls")
	req, create, loop, cache := 0.0, 0.0, 0.0, 0.0
	for _, l := range ls {
		lb := l.label
		switch {
		case !tls && strings.HasPrefix(lb, "(d)"), tls && strings.HasPrefix(lb, "(f)"):
			req = math.Max(req, l.median)
		case strings.HasPrefix(lb, "(c)"):
			create = math.Max(create, l.median)
		case !tls && strings.HasPrefix(lb, "(a)"), tls && strings.HasPrefix(lb, "(e)"):
			if wl.files > 1 || strings.HasSuffix(lb, " x1") {
				loop = math.Max(loop, l.median)
			}
		case strings.HasPrefix(lb, "(b)") && strings.Contains(lb, "cache"):
			cache = l.median
		}
	}
	low := func(a, b float64) float64 { // the lower of two rates, ignoring one not measured
		if a <= 0 || b > 0 && b < a {
			return b
		}
		return a
	}
	secs := 0.0
	if r := low(req, create); r > 0 {
		secs = wl.files / r
	}
	if r := low(loop, cache); r > 0 {
		secs = math.Max(secs, wl.bytes/(r*1e6))
	}
	return secs
}
