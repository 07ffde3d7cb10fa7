package download

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

// A host's cap, lowered by 429s and 503s and grown back by successes, as
// TCP's window: halved per answer (in connections, rounding down, never
// below one), one connection back per 20 successes in a row, any other
// status starting the run over, up to --per-host (or -j).
func TestHostCapHalvesAndRegrows(t *testing.T) {
	for _, tc := range []struct {
		name                   string
		perHost, jobs, streams int
		want                   []int64 // the cap in connections after each 429
	}{
		{"per-host 8", 8, 16, 1, []int64{4, 2, 1, 1}},
		{"per-host 5", 5, 16, 1, []int64{2, 1, 1}},
		{"no per-host: -j", 0, 6, 1, []int64{3, 1, 1}},
		{"streams: whole connections", 4, 16, 32, []int64{2, 1, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hs := newHosts(tc.perHost, 8, tc.streams)
			hs.setPolite(0, tc.jobs)
			s := int64(tc.streams)
			top := hs.ceiling() / s
			hs.mu.Lock()
			h := hs.getLocked("h:80")
			hs.mu.Unlock()
			conns := func() int64 {
				hs.mu.Lock()
				defer hs.mu.Unlock()
				c := hs.capLocked(h)
				if c == 0 {
					return top
				}
				if c%s != 0 {
					t.Fatalf("cap %d streams is not a whole number of connections of %d", c, s)
				}
				return c / s
			}
			for i, want := range tc.want {
				code := 429
				if i%2 == 1 {
					code = 503
				}
				hs.answered(h, code)
				if got := conns(); got != want {
					t.Fatalf("after %d throttling answers: cap %d connections, want %d", i+1, got, want)
				}
			}
			// 19 successes, a 404, then 19 more: the run started over.
			for range regrowAfter - 1 {
				hs.answered(h, 200)
			}
			hs.answered(h, 404)
			for range regrowAfter - 1 {
				hs.answered(h, 200)
			}
			if got := conns(); got != 1 {
				t.Fatalf("38 successes with a 404 between them grew the cap to %d", got)
			}
			hs.answered(h, 500)
			for want := int64(2); want <= top; want++ {
				for i := range regrowAfter {
					if got := conns(); got != want-1 {
						t.Fatalf("after %d more successes: cap %d, want %d", i, got, want-1)
					}
					code := 200
					if i%3 == 0 {
						code = 304
					}
					hs.answered(h, code)
				}
				if got := conns(); got != want {
					t.Fatalf("after 20 successes in a row: cap %d, want %d", got, want)
				}
			}
			for range 3 * regrowAfter {
				hs.answered(h, 200)
			}
			if got := conns(); got != top {
				t.Errorf("the cap grew past its ceiling: %d, want %d", got, top)
			}
		})
	}
}

// An entry that waits for a slot of a throttled host wakes when the cap
// grows back.
func TestHostCapRegrowWakesWaiter(t *testing.T) {
	hs := newHosts(2, 8, 1)
	hs.setPolite(0, 2)
	release, ok := hs.tryConn("h:80")
	if !ok {
		t.Fatal("no slot free on a new host")
	}
	hs.mu.Lock()
	st := hs.m["h:80"]
	hs.mu.Unlock()
	hs.answered(st, 429) // cap 1, taken
	woke := false
	if hs.waitFor("h:80", 1, func() bool { woke = true; return true }) {
		t.Fatal("a slot is free at cap 1 with one taken")
	}
	for range regrowAfter {
		hs.answered(st, 200)
	}
	if !woke {
		t.Error("the waiter did not wake when the cap grew back")
	}
	release()
}

// pace spaces a host's requests one interval apart, whoever sends them, and
// rateTurn gives the entries that ask turns one interval apart in the order
// asked (which they are set aside until), while another host keeps its own
// rate. Fake time: the intervals are exact.
func TestHostsRateTurnsAndPace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hs := newHosts(0, 8, 1)
		hs.setPolite(4, 4) // 250 ms apart
		const every = 250 * time.Millisecond
		for i := range 4 {
			if d := hs.rateTurn("a:80"); d != time.Duration(i)*every {
				t.Errorf("turn %d is %v from now, want %v", i, d, time.Duration(i)*every)
			}
		}
		if d := hs.rateTurn("b:80"); d != 0 {
			t.Errorf("another host's first turn is %v from now, want now", d)
		}
		hs.mu.Lock()
		a := hs.getLocked("a:80")
		hs.mu.Unlock()
		start := time.Now()
		for i := range 4 {
			if err := hs.pace(context.Background(), a); err != nil {
				t.Fatal(err)
			}
			if got, want := time.Since(start), time.Duration(i)*every; (got - want).Abs() > time.Microsecond {
				t.Errorf("request %d went at %v, want %v", i, got, want)
			}
		}
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			time.Sleep(every / 2)
			cancel()
		}()
		if err := hs.pace(ctx, a); err == nil {
			t.Error("pace did not end with its context")
		}
	})
}

// A Crawl-delay lowers a host's rate, never raises it, and the fetch of the
// robots.txt counts as its last request.
func TestHostsCrawlDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hs := newHosts(0, 8, 1)
		hs.setPolite(0, 4)
		hs.mu.Lock()
		a, b := hs.getLocked("a:80"), hs.getLocked("b:80")
		hs.mu.Unlock()
		hs.crawlDelay(a, 2*time.Second)
		start := time.Now()
		for i := range 3 {
			if err := hs.pace(context.Background(), a); err != nil {
				t.Fatal(err)
			}
			if got, want := time.Since(start), time.Duration(i+1)*2*time.Second; (got - want).Abs() > time.Microsecond {
				t.Errorf("request %d after the robots.txt went at %v, want %v", i, got, want)
			}
		}
		start = time.Now()
		for range 3 {
			hs.pace(context.Background(), b)
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("a host without a Crawl-delay waited %v", d)
		}

		hs = newHosts(0, 8, 1)
		hs.setPolite(10, 4)
		hs.mu.Lock()
		c := hs.getLocked("c:80")
		hs.mu.Unlock()
		hs.crawlDelay(c, 10*time.Millisecond) // faster than --per-host-rate: ignored
		start = time.Now()
		for range 3 {
			hs.pace(context.Background(), c)
		}
		if got, want := time.Since(start), 200*time.Millisecond; (got - want).Abs() > time.Microsecond {
			t.Errorf("3 requests at --per-host-rate 10 with a shorter Crawl-delay took %v, want %v", got, want)
		}
	})
}

// RFC 9309's matching, case by case.
func TestRobotsMatching(t *testing.T) {
	for _, tc := range []struct {
		name    string
		robots  string
		token   string
		allowed []string
		denied  []string
	}{
		{"longest match wins", "User-agent: *\nDisallow: /a\nAllow: /a/b\nDisallow: /a/b/c\n", "haul",
			[]string{"/a/b", "/a/bx", "/b"}, []string{"/a", "/ax", "/a/b/c", "/a/b/cd"}},
		{"allow wins at equal length, whatever the order", "User-agent: *\nDisallow: /p\nAllow: /p\nDisallow: /q*\nAllow: /q$\n", "haul",
			[]string{"/p", "/px"}, []string{"/qx"}},
		{"allow wins at equal length, allow first", "User-agent: *\nAllow: /p\nDisallow: /p\n", "haul",
			[]string{"/p"}, nil},
		{"star matches any run", "User-agent: *\nDisallow: /*.gif\nDisallow: /x/*/y\n", "haul",
			[]string{"/gif", "/x/y"}, []string{"/a.gif", "/a/b.gif?q=1", "/x/a/y", "/x/a/b/yz"}},
		{"dollar anchors the end, not the start", "User-agent: *\nDisallow: /*.php$\nDisallow: /fish$\n", "haul",
			[]string{"/a.php?x", "/a.phps", "/dir/fish", "/fishy"}, []string{"/a.php", "/b/c.php", "/fish"}},
		{"agent names match case-insensitively", "User-agent: HAUL\nDisallow: /h\n\nUser-agent: *\nDisallow: /s\n", "haul",
			[]string{"/s"}, []string{"/h"}},
		{"agent names are not prefixes", "User-agent: hau\nDisallow: /h\n\nUser-agent: haulx\nDisallow: /x\n", "haul",
			[]string{"/h", "/x"}, nil},
		{"agent line with a version", "User-agent: haul/1.0\nDisallow: /v\n", "haul",
			nil, []string{"/v"}},
		{"groups of one agent merge", "User-agent: haul\nDisallow: /a\n\nUser-agent: *\nDisallow: /s\n\nUser-agent: haul\nDisallow: /b\n", "haul",
			[]string{"/s"}, []string{"/a", "/b"}},
		{"own group, even empty, beats star", "User-agent: haul\nDisallow:\n\nUser-agent: *\nDisallow: /\n", "haul",
			[]string{"/", "/a"}, nil},
		{"several agents in one group", "User-agent: other\nUser-agent: haul\nDisallow: /g\n", "haul",
			nil, []string{"/g"}},
		{"lines it cannot read are passed over", "Disallow: /before\nUser-agent: *\nCrawl-delay: soon\nnonsense\nDisallow: /d # why\n", "haul",
			[]string{"/before"}, []string{"/d"}},
		{"percent-escapes compared decoded", "User-agent: *\nDisallow: /%7Ejoe\nDisallow: /a%2fb\nDisallow: /caf\u00e9\n", "haul",
			[]string{"/a/b"}, []string{"/~joe/x", "/a%2Fb", "/caf%C3%A9"}},
		{"robots.txt itself is allowed", "User-agent: *\nDisallow: /\n", "haul",
			[]string{"/robots.txt"}, []string{"/", "/x"}},
		{"no token: star only", "User-agent: haul\nDisallow: /h\n\nUser-agent: *\nDisallow: /s\n", "",
			[]string{"/h"}, []string{"/s"}},
		{"CRLF and a byte order mark", "\xef\xbb\xbfUser-agent: *\r\nDisallow: /crlf\r\n", "haul",
			nil, []string{"/crlf"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := parseRobots([]byte(tc.robots), tc.token, "http://h/robots.txt")
			for _, p := range tc.allowed {
				if rule, ok := r.disallows(p); ok {
					t.Errorf("%s disallowed (%s), want allowed", p, rule)
				}
			}
			for _, p := range tc.denied {
				if _, ok := r.disallows(p); !ok {
					t.Errorf("%s allowed, want disallowed", p)
				}
			}
		})
	}
}

func TestRobotsCrawlDelayParsed(t *testing.T) {
	r := parseRobots([]byte("User-agent: *\nCrawl-delay: 1.5\nDisallow: /x\n"), "haul", "u")
	if r.delay != 1500*time.Millisecond {
		t.Errorf("Crawl-delay 1.5 read as %v", r.delay)
	}
}

func TestProductToken(t *testing.T) {
	for ua, want := range map[string]string{
		"haul/1.2.3":                 "haul",
		"foo/1.0":                    "foo",
		"foo":                        "foo",
		"Mozilla/5.0 (X11; Linux)":   "Mozilla",
		"  bot (+https://x.example)": "bot",
		"":                           "",
	} {
		if got := productToken(ua); got != want {
			t.Errorf("productToken(%q) = %q, want %q", ua, got, want)
		}
	}
}
