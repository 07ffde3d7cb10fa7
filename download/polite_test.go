package download_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/haul/haul/download"
	"github.com/haul/haul/download/downloadtest"
	"github.com/haul/haul/download/input"
	"github.com/haul/haul/internal/testutil"
)

// sentHeader carries the time a request was handed to the client
// (stamped), so that the server measures the rate from what the client did,
// not from when a new connection's request got through accept and a
// goroutine under load (which delays one request and not the next).
const sentHeader = "X-Test-Sent"

// stamped is the harness's client, setting sentHeader on every request as it
// is sent (once the host's rate let it go).
type stamped struct{ download.HTTPClient }

func (c stamped) Do(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set(sentHeader, strconv.FormatInt(time.Now().UnixNano(), 10))
	return c.HTTPClient.Do(req)
}

// sendTimes returns when each request s received was sent (stamped), in
// order.
func sendTimes(t *testing.T, s *downloadtest.Server) []time.Time {
	t.Helper()
	var ts []time.Time
	for _, r := range s.Log("") {
		n, err := strconv.ParseInt(r.Header.Get(sentHeader), 10, 64)
		if err != nil {
			t.Fatalf("%s: no %s header: %v", r.Path, sentHeader, err)
		}
		ts = append(ts, time.Unix(0, n))
	}
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	return ts
}

// checkSpaced fails the test unless the requests s received were sent as a
// token bucket of one token per every with a burst of one lets them, the
// bucket full at start (before the run): the i-th (from 0) at least i
// intervals after start (less tolerance, for the clock's rounding). The
// stamps are taken after the bucket let each request go, and a goroutine
// under load may take its stamp late: a late stamp never makes a request
// look early against start, whereas against another request's stamp (the
// first one's, late) it could.
func checkSpaced(t *testing.T, s *downloadtest.Server, start time.Time, every, tolerance time.Duration) {
	t.Helper()
	ts := sendTimes(t, s)
	for i := 1; i < len(ts); i++ {
		if since, want := ts[i].Sub(start), time.Duration(i)*every; since < want-tolerance {
			t.Errorf("request %d was sent %v after the run started, want at least %v (%d intervals)", i+1, since, want, i)
		}
	}
}

// runStamped runs the engine over lines as harness.run does, through the
// stamped client.
func runStamped(h *harness, o download.Options, lines ...string) *outcome {
	h.t.Helper()
	oc := &outcome{t: h.t}
	o = fastOptions(o)
	o.OnResult = func(r *download.Result) {
		oc.mu.Lock()
		oc.results = append(oc.results, r)
		oc.mu.Unlock()
	}
	oc.eng = download.New(stamped{h.client}, h.sink, o)
	oc.start = time.Now()
	if err := oc.eng.Run(context.Background(), input.NewScanner(strings.NewReader(strings.Join(lines, "\n")))); err != nil {
		h.t.Fatalf("Run: %v", err)
	}
	return oc
}

// --per-host-rate spaces the requests to one host, whatever sends them: the
// entries on their several workers, a retry after a 503, and the pieces of a
// split file on connections of their own.
func TestPerHostRateSpacesRequests(t *testing.T) {
	t.Parallel()
	const rate, tolerance = 20, 2 * time.Millisecond
	every := time.Second / rate
	s := downloadtest.New(t)
	h := newHarness(t)
	var urls []string
	for i := range 7 {
		urls = append(urls, s.Add(fmt.Sprintf("/f%d", i), payload(uint64(i), 1000)))
	}
	// The 503 comes only once the big file's pieces were asked for: it
	// lowers the host's cap, which would leave them no connection.
	var asked atomic.Int32
	retriedBody := payload(10, 1000)
	retried := s.Handle("/retried", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if asked.Add(1) > 1 {
			w.Write(retriedBody)
			return
		}
		for len(s.RangeRequests("/big")) == 0 {
			select {
			case <-r.Context().Done():
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	big := payload(11, 512<<10)
	split := s.Add("/big", big)
	o := download.Options{Jobs: 4, PerHostRate: rate, Retries: 2, Split: 4, MinSplitSize: 64 << 10, SplitBelow: -1}
	oc := runStamped(h, o, append(append([]string{split}, urls...), retried)...)
	for _, u := range append(urls, retried, split) {
		if r := oc.get(u); r.Status != download.StatusOK {
			t.Fatalf("%s: %s %v", u, r.Status, r.Err)
		}
	}
	if n := s.Requests("/retried"); n != 2 {
		t.Errorf("/retried got %d requests, want 2 (a 503, then the file)", n)
	}
	if n := len(s.RangeRequests("/big")); n < 2 {
		t.Errorf("/big got %d range requests, want the pieces of a split", n)
	}
	h.checkFile(oc.get(split).Name, big)
	checkSpaced(t, s, oc.start, every, tolerance)
}

// A host's rate holds only that host back: with one worker, the entries that
// wait for their turn are set aside, and the other hosts' entries behind them
// in the list are fetched meanwhile.
func TestPerHostRateLeavesOtherHostsAlone(t *testing.T) {
	t.Parallel()
	slow := downloadtest.New(t)
	h := newHarness(t)
	var lines []string
	for i := range 3 {
		lines = append(lines, slow.Add(fmt.Sprintf("/s%d", i), payload(uint64(i), 100)))
	}
	var others []string
	for i := range 3 {
		s := downloadtest.New(t)
		others = append(others, s.Add("/o", payload(uint64(10+i), 100)))
	}
	lines = append(lines, others...)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// One request an hour: the first host's second entry has its turn long
	// after the test's end.
	oc, wait := h.start(ctx, download.Options{Jobs: 1, PerHostRate: 1.0 / 3600}, lines...)
	testutil.WaitFor(t, "the other hosts' entries to finish", func() bool {
		for _, u := range others {
			if len(oc.all(u)) == 0 {
				return false
			}
		}
		return true
	})
	for _, u := range others {
		if r := oc.get(u); r.Status != download.StatusOK {
			t.Errorf("%s: %s %v", u, r.Status, r.Err)
		}
	}
	if n := slow.TotalRequests(); n != 1 {
		t.Errorf("the host limited to one request an hour got %d", n)
	}
	stopRun(t, cancel, wait)
}

// A host that answers 429 has its cap halved for each 429 (to one connection
// at least), then grown back by one for every 20 successful responses in a
// row. The server counts how many requests it has in flight when each one
// arrives, by phase: while it throttles, then after 0-19, 20-39, 40-59 and
// 60+ successes. In phases 1 to 3 it holds each request until as many as the
// phase allows are in flight, so that the cap's growth shows. A request is
// out of the count once its answer is decided, before it is written: the
// client's slot is held longer than that, so the server never counts more
// than the client has in flight.
func TestThrottledHostCapHalvedAndRegrown(t *testing.T) {
	t.Parallel()
	const (
		perHost   = 4
		throttled = 6 // 429s: 4 -> 2 -> 1 -> 1 ...
		// Fewer than the entries that may wait aside (64): with more, an
		// entry that got a 429 retries on its worker, in the connection it
		// holds, and no longer takes one under the lowered cap.
		files = 62
	)
	var (
		mu        sync.Mutex
		cond      = sync.NewCond(&mu)
		inFlight  int
		answered  int                   // 429s answered
		successes int                   // 200s answered
		most      = map[int]int{}       // phase -> most in flight seen at an arrival
		full      = map[int]int{}       // k -> arrivals that found k or more in flight
		done      = make(chan struct{}) // the test is over: nothing waits any more
	)
	t.Cleanup(func() { close(done) })
	go func() {
		<-done
		mu.Lock()
		cond.Broadcast()
		mu.Unlock()
	}()
	body := []byte("x")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		inFlight++
		for k := 1; k <= inFlight; k++ {
			full[k]++
		}
		cond.Broadcast()
		phase := 0 // throttling
		if answered >= throttled {
			phase = min(1+successes/20, 4)
		}
		most[phase] = max(most[phase], inFlight)
		throttle := phase == 0
		if throttle {
			answered++
		}
		// Held until an arrival (this one or a later one) finds phase
		// requests in flight: that one may be answered and gone before
		// the held ones wake.
		for f0 := full[phase]; phase >= 1 && phase <= 3 && inFlight < phase && full[phase] == f0 && !isDone(done); {
			cond.Wait()
		}
		// Counted before the answer is written: the client cannot have
		// counted a success the server has not, nor sent its next request
		// before this one is out of the count.
		if !throttle {
			successes++
		}
		inFlight--
		mu.Unlock()
		if throttle {
			w.Header().Set("Retry-After", "0")
			http.Error(w, "slow down", http.StatusTooManyRequests)
		} else {
			w.Write(body)
		}
	}))
	t.Cleanup(srv.Close)
	h := newHarness(t)
	var urls []string
	for i := range files {
		urls = append(urls, fmt.Sprintf("%s/f%d", srv.URL, i))
	}
	oc := h.run(download.Options{Jobs: perHost, PerHost: perHost, Retries: 10}, urls...)
	for _, u := range urls {
		if r := oc.get(u); r.Status != download.StatusOK {
			t.Fatalf("%s: %s %v", u, r.Status, r.Err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if most[0] > perHost {
		t.Errorf("%d requests in flight while the host throttled, want at most --per-host %d", most[0], perHost)
	}
	for phase := 1; phase <= 3; phase++ {
		if most[phase] != phase {
			t.Errorf("after %d successes: at most %d requests in flight, want %d", 20*(phase-1), most[phase], phase)
		}
	}
	if most[4] > perHost {
		t.Errorf("after 60 successes: %d requests in flight, want at most --per-host %d", most[4], perHost)
	}
}

func isDone(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// robotsServer serves robots.txt (status and body) and counts its requests.
func robotsServer(t *testing.T, status int, robots string) *downloadtest.Server {
	s := downloadtest.New(t)
	s.Handle("/robots.txt", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if status != http.StatusOK {
			http.Error(w, "no", status)
			return
		}
		w.Write([]byte(robots))
	}))
	return s
}

// --robots: what robots.txt answers decides which entries are fetched.
func TestRobots(t *testing.T) {
	t.Parallel()
	const rules = "User-agent: *\nDisallow: /private\n\n" +
		"User-agent: Haul-Test\nDisallow: /mine\nAllow: /mine/open\n"
	for _, tc := range []struct {
		name    string
		status  int
		robots  string
		agent   string
		fetched []string // paths fetched; the others are excluded (or fail: failed)
		failed  bool
	}{
		{name: "404 allows all", status: 404, fetched: []string{"/a", "/private/x", "/mine/x", "/mine/open/y"}},
		{name: "403 allows all", status: 403, fetched: []string{"/a", "/private/x", "/mine/x", "/mine/open/y"}},
		{name: "500 fetches nothing", status: 500, failed: true},
		{name: "429 fetches nothing", status: 429, failed: true},
		{name: "own group", status: 200, robots: rules, agent: "haul-test/1.0 (+https://example.com)",
			fetched: []string{"/a", "/private/x", "/mine/open/y"}},
		{name: "star group", status: 200, robots: rules, agent: "other/2",
			fetched: []string{"/a", "/mine/x", "/mine/open/y"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := robotsServer(t, tc.status, tc.robots)
			all := []string{"/a", "/private/x", "/mine/x", "/mine/open/y"}
			var urls []string
			for _, p := range all {
				urls = append(urls, s.Add(p, []byte(p)))
			}
			o := download.Options{Robots: true, Retries: 1}
			if tc.agent != "" {
				o.Header = http.Header{"User-Agent": {tc.agent}}
			}
			h := newHarness(t)
			oc := h.run(o, urls...)
			for i, p := range all {
				r := oc.get(urls[i])
				switch {
				case tc.failed:
					if r.Status != download.StatusFailed || !strings.Contains(fmt.Sprint(r.Err), "robots.txt") {
						t.Errorf("%s: %s %v, want failed for its robots.txt", p, r.Status, r.Err)
					}
				case slices.Contains(tc.fetched, p):
					if r.Status != download.StatusOK {
						t.Errorf("%s: %s %v, want ok", p, r.Status, r.Err)
					}
				default:
					if r.Status != download.StatusExcluded || !strings.Contains(fmt.Sprint(r.Err), "Disallow") {
						t.Errorf("%s: %s %v, want excluded by a Disallow rule", p, r.Status, r.Err)
					}
				}
				if want := slices.Contains(tc.fetched, p) && !tc.failed; (s.Requests(p) > 0) != want {
					t.Errorf("%s: %d requests, want fetched %v", p, s.Requests(p), want)
				}
			}
			want := 1
			if tc.failed {
				want = 2 // retried once
			}
			if n := s.Requests("/robots.txt"); n != want {
				t.Errorf("robots.txt asked %d times, want %d", n, want)
			}
			if st := oc.eng.Stats(); st.Excluded.Load() != int64(len(all)-len(tc.fetched)) && !tc.failed {
				t.Errorf("%d counted excluded, want %d", st.Excluded.Load(), len(all)-len(tc.fetched))
			}
		})
	}
}

// However many entries of a host and workers there are, its robots.txt is
// asked once (per run), and each of several hosts is asked its own.
func TestRobotsAskedOncePerHost(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	var servers []*downloadtest.Server
	var urls []string
	for range 3 {
		s := robotsServer(t, 200, "User-agent: *\nDisallow: /no\n")
		servers = append(servers, s)
		for i := range 20 {
			urls = append(urls, s.Add(fmt.Sprintf("/f%d", i), []byte("x")))
		}
	}
	// Interleaved: every worker starts on a host whose robots.txt is
	// being fetched.
	slices.SortFunc(urls, func(a, b string) int {
		return strings.Compare(a[strings.LastIndex(a, "/"):], b[strings.LastIndex(b, "/"):])
	})
	oc := h.run(download.Options{Jobs: 16, Robots: true}, urls...)
	for _, u := range urls {
		if r := oc.get(u); r.Status != download.StatusOK {
			t.Errorf("%s: %s %v", u, r.Status, r.Err)
		}
	}
	for _, s := range servers {
		if n := s.Requests("/robots.txt"); n != 1 {
			t.Errorf("%s: robots.txt asked %d times, want 1", s.URL, n)
		}
	}
}

// A Crawl-delay for haul spaces the host's requests, robots.txt's own
// included, where --per-host-rate allows more (or sets nothing).
func TestRobotsCrawlDelay(t *testing.T) {
	t.Parallel()
	for _, rate := range []float64{0, 100} {
		t.Run(fmt.Sprintf("rate %v", rate), func(t *testing.T) {
			t.Parallel()
			s := robotsServer(t, 200, "User-agent: *\nCrawl-delay: 0.1\nDisallow: /no\n")
			var urls []string
			for i := range 5 {
				urls = append(urls, s.Add(fmt.Sprintf("/f%d", i), []byte("x")))
			}
			h := newHarness(t)
			oc := runStamped(h, download.Options{Jobs: 4, Robots: true, PerHostRate: rate}, urls...)
			for _, u := range urls {
				if r := oc.get(u); r.Status != download.StatusOK {
					t.Errorf("%s: %s %v", u, r.Status, r.Err)
				}
			}
			checkSpaced(t, s, oc.start, 100*time.Millisecond, 2*time.Millisecond)
		})
	}
}

// A Crawl-delay above --per-host-rate's interval does not speed the host up.
func TestRobotsCrawlDelayDoesNotRaiseRate(t *testing.T) {
	t.Parallel()
	s := robotsServer(t, 200, "User-agent: *\nCrawl-delay: 0.01\n")
	var urls []string
	for i := range 4 {
		urls = append(urls, s.Add(fmt.Sprintf("/f%d", i), []byte("x")))
	}
	h := newHarness(t)
	oc := runStamped(h, download.Options{Jobs: 4, Robots: true, PerHostRate: 10}, urls...)
	checkSpaced(t, s, oc.start, 100*time.Millisecond, 2*time.Millisecond)
}
