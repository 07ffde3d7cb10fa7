package download_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/haul/haul/download"
	"github.com/haul/haul/download/downloadtest"
	"github.com/haul/haul/download/httpclient"
	"github.com/haul/haul/download/naming"
	"github.com/haul/haul/internal/testutil"
)

func TestEngineManyFiles(t *testing.T) {
	// The happy path at some volume: 50 files of assorted sizes (empty, under one
	// chunk, several chunks) all arrive byte-identical and are counted.
	t.Parallel()
	s := downloadtest.New(t)
	h := newSyncHarness(t)
	bodies := map[string][]byte{}
	var lines []string
	var total int64
	for i := range 50 {
		b := testutil.Payload(uint64(i), (i*7919)%300_000)
		u := s.Add(fmt.Sprintf("/many/f%02d.bin", i), b)
		bodies[u] = b
		lines = append(lines, u)
		total += int64(len(b))
	}
	oc := h.run(download.Options{Jobs: 8}, lines...)
	for u, b := range bodies {
		r := oc.get(u)
		if r.Status != download.StatusOK || r.Err != nil {
			t.Errorf("%s: status %s err %v", u, r.Status, r.Err)
			continue
		}
		if r.Size != int64(len(b)) || r.Attempts != 1 || r.HTTPStatus != 200 {
			t.Errorf("%s: size %d attempts %d http %d", u, r.Size, r.Attempts, r.HTTPStatus)
		}
		h.checkFile(r.Name, b)
	}
	st := oc.eng.Stats()
	if st.OK.Load() != 50 || st.Failed.Load() != 0 || st.Skipped.Load() != 0 || st.Queued.Load() != 50 {
		t.Errorf("stats ok=%d failed=%d skipped=%d queued=%d", st.OK.Load(), st.Failed.Load(),
			st.Skipped.Load(), st.Queued.Load())
	}
	if st.Bytes.Load() != total || !st.InputDone.Load() || st.InFlight.Load() != 0 {
		t.Errorf("stats bytes=%d (want %d) inputDone=%v inFlight=%d", st.Bytes.Load(), total,
			st.InputDone.Load(), st.InFlight.Load())
	}
	if n := s.TotalRequests(); n != 50 {
		t.Errorf("server saw %d requests, want 50", n)
	}
	h.checkNoPartFiles()
}

func TestEngineStatus(t *testing.T) {
	t.Parallel()
	body := testutil.Payload(1, 20_000)
	tests := []struct {
		name     string
		opts     []downloadtest.FileOption
		retries  int
		ok       bool
		attempts int
		code     int // StatusError code when failing
	}{
		// A transient 503 whose Retry-After pauses the host, then the file.
		{"503 with Retry-After then ok", []downloadtest.FileOption{
			downloadtest.Status(503, 1), downloadtest.RetryAfter("1")}, 2, true, 2, 0},
		// 429 without Retry-After: plain backoff.
		{"429 twice then ok", []downloadtest.FileOption{downloadtest.Status(429, 2)}, 2, true, 3, 0},
		{"408 then ok", []downloadtest.FileOption{downloadtest.Status(408, 1)}, 1, true, 2, 0},
		// 5xx forever: Retries+1 attempts, then the last status is the error.
		{"500 exhausts retries", []downloadtest.FileOption{
			downloadtest.Status(500, downloadtest.Always)}, 3, false, 4, 500},
		{"502 with no retries", []downloadtest.FileOption{
			downloadtest.Status(502, downloadtest.Always)}, 0, false, 1, 502},
		// Client errors other than 408/429 are permanent: one request only.
		{"404 fails at once", []downloadtest.FileOption{
			downloadtest.Status(404, downloadtest.Always)}, 5, false, 1, 404},
		{"403 fails at once", []downloadtest.FileOption{
			downloadtest.Status(403, downloadtest.Always)}, 5, false, 1, 403},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := downloadtest.New(t)
			h := newHarness(t)
			u := s.Add("/f.bin", body, tc.opts...)
			oc := h.run(download.Options{Retries: tc.retries}, u)
			r := oc.get(u)
			if r.Attempts != tc.attempts || s.Requests("/f.bin") != tc.attempts {
				t.Errorf("attempts %d, requests %d, want %d", r.Attempts, s.Requests("/f.bin"), tc.attempts)
			}
			if tc.ok {
				if r.Status != download.StatusOK || r.Err != nil || r.HTTPStatus != 200 {
					t.Fatalf("status %s http %d err %v", r.Status, r.HTTPStatus, r.Err)
				}
				h.checkFile(r.Name, body)
				return
			}
			if r.Status != download.StatusFailed || statusCode(r.Err) != tc.code || r.HTTPStatus != tc.code {
				t.Errorf("status %s http %d err %v, want failed with %d", r.Status, r.HTTPStatus, r.Err, tc.code)
			}
			if r.Err != nil && !strings.Contains(r.Err.Error(), u) {
				t.Errorf("error %q does not name the URL", r.Err)
			}
			h.checkAbsent(r.Name)
			if st := oc.eng.Stats(); st.Failed.Load() != 1 || st.OK.Load() != 0 {
				t.Errorf("stats failed=%d ok=%d", st.Failed.Load(), st.OK.Load())
			}
		})
	}
}

func TestEngineHostPause(t *testing.T) {
	// A 429 with Retry-After: 5 backs off the whole host: another entry of
	// that host, and its retry, wait too, while an entry on another host
	// keeps going. One worker: /b and /x are taken only once /a's 429 was
	// handled (and /a set aside), whatever the machine's load.
	t.Parallel()
	busy := downloadtest.New(t)
	other := downloadtest.New(t)
	h := newHarness(t)
	a := busy.Add("/a", testutil.Payload(2, 1000), downloadtest.Status(429, 1), downloadtest.RetryAfter("5"))
	b := busy.Add("/b", testutil.Payload(3, 1000), downloadtest.Status(500, 1))
	x := other.Add("/x", testutil.Payload(4, 1000), downloadtest.Status(500, 1))
	oc := h.run(download.Options{Jobs: 1, Retries: 2}, a, b, x)
	for _, u := range []string{a, b, x} {
		if r := oc.get(u); r.Status != download.StatusOK || r.Attempts != 2 {
			t.Errorf("%s: status %s attempts %d err %v", u, r.Status, r.Attempts, r.Err)
		}
	}
	t429 := busy.Log("/a")[0].Time
	for _, req := range append(busy.Log("/a")[1:], busy.Log("/b")...) {
		if d := req.Time.Sub(t429); d < 4950*time.Millisecond {
			t.Errorf("%s asked %v after the 429, want >= 5s (Retry-After)", req.Path, d)
		}
	}
	// x and its retry came while busy was paused: before the busy host's
	// first request after the pause.
	xlog, alog := other.Log("/x"), busy.Log("/a")
	if !xlog[1].Time.Before(alog[len(alog)-1].Time) {
		t.Errorf("the other host's retry came %v after the 429, after the pause's end: it was held up", xlog[1].Time.Sub(t429))
	}
}

// Entries waiting for a paused host do not hold up the pool: with two workers,
// one retrying the 429 and the other finding the host paused for its next
// entries, the other host's entries still run at once.
func TestEngineHostPauseParks(t *testing.T) {
	t.Parallel()
	busy, other := downloadtest.New(t), downloadtest.New(t)
	h := newHarness(t)
	var bs []string
	for i := range 4 {
		bs = append(bs, other.Add(fmt.Sprintf("/b%d", i), testutil.Payload(uint64(45+i), 1000), downloadtest.Delay(50*time.Millisecond)))
	}
	// b0 keeps the second worker busy until the 429 has paused busy.
	lines := []string{busy.Add("/first", testutil.Payload(40, 1000), downloadtest.Status(429, 1), downloadtest.RetryAfter("5")), bs[0]}
	for i := range 3 {
		lines = append(lines, busy.Add(fmt.Sprintf("/a%d", i), testutil.Payload(uint64(41+i), 1000)))
	}
	lines = append(lines, bs[1:]...)
	oc := h.run(download.Options{Jobs: 2, Retries: 1}, lines...)
	for _, u := range lines {
		if r := oc.get(u); r.Status != download.StatusOK {
			t.Errorf("%s: %s %v", u, r.Status, r.Err)
		}
	}
	flog := busy.Log("/first")
	t429, resumed := flog[0].Time, flog[len(flog)-1].Time
	for i := range 4 {
		if b := other.Log(fmt.Sprintf("/b%d", i))[0].Time; !b.Before(resumed) {
			t.Errorf("/b%d started %v after the other host's 429, once its pause was over: held up by it", i, b.Sub(t429))
		}
	}
	for i := range 3 { // (one sent before the 429 arrived may go at once)
		if d := busy.Log(fmt.Sprintf("/a%d", i))[0].Time.Sub(t429); d > 0 && d < 4900*time.Millisecond {
			t.Errorf("/a%d requested %v after the 429, inside its 5s pause", i, d)
		}
	}
}

// A 503 with Retry-After pauses the host even when its entry has no retry left.
func TestEngineHostPauseLastAttempt(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	h := newHarness(t)
	busy := s.Add("/busy", nil, downloadtest.Status(503, downloadtest.Always), downloadtest.RetryAfter("1"))
	next := s.Add("/next", testutil.Payload(50, 100))
	oc := h.run(download.Options{Jobs: 1, Retries: 0}, busy, next)
	if r := oc.get(busy); r.Status != download.StatusFailed {
		t.Errorf("/busy: %s, want failed", r.Status)
	}
	if r := oc.get(next); r.Status != download.StatusOK {
		t.Errorf("/next: %s %v", r.Status, r.Err)
	}
	if d := s.Log("/next")[0].Time.Sub(s.Log("/busy")[0].Time); d < 950*time.Millisecond {
		t.Errorf("/next asked %v after the host's 503 with Retry-After: 1", d)
	}
}

// index returns the position of url's result in the order OnResult saw them
// (-1 if none).
func (oc *outcome) index(url string) int {
	oc.mu.Lock()
	defer oc.mu.Unlock()
	for i, r := range oc.results {
		if r.Entry.URL == url {
			return i
		}
	}
	return -1
}

// An entry whose attempt gets a 429 is set aside for the pause, like an entry
// not yet started, instead of holding its worker: with both workers on the
// paused host, the other host's entries run at once. The parked entries come
// back when the pause ends and go on with their retry count as it was.
func TestEngineHostPauseParksRetries(t *testing.T) {
	t.Parallel()
	busy, other := downloadtest.New(t), downloadtest.New(t)
	h := newHarness(t)
	// /a1 is in flight until the second worker has asked for /a2: both get
	// their 429 on a first attempt, in their retry loops.
	slow := downloadtest.Delay(200 * time.Millisecond)
	var a1hits atomic.Int32
	a1 := busy.Handle("/a1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a1hits.Add(1) > 1 {
			w.Write(testutil.Payload(60, 1000))
			return
		}
		for busy.Requests("/a2") == 0 {
			select {
			case <-r.Context().Done():
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
		w.Header().Set("Retry-After", "2")
		http.Error(w, "busy", http.StatusTooManyRequests)
	}))
	// Two 429s with --retries 1: it fails on its second attempt, unless parking
	// had reset its count (a third attempt would get the file).
	a2 := busy.Add("/a2", testutil.Payload(61, 1000), downloadtest.Status(429, 2), downloadtest.RetryAfter("2"), slow)
	lines := []string{a1, a2}
	for i := range 3 {
		lines = append(lines, other.Add(fmt.Sprintf("/b%d", i), testutil.Payload(uint64(62+i), 1000)))
	}
	oc := h.run(download.Options{Jobs: 2, Retries: 1}, lines...)

	a1log, a2log := busy.Log("/a1"), busy.Log("/a2")
	if len(a1log) == 0 || len(a2log) == 0 || a1log[0].Status != 429 || a2log[0].Status != 429 {
		t.Fatalf("both /a1 and /a2 should have had a first attempt answered 429 together: %+v %+v", a1log, a2log)
	}
	if r := oc.get(a1); r.Status != download.StatusOK || r.Attempts != 2 || len(a1log) != 2 {
		t.Errorf("/a1: status %s attempts %d requests %d err %v, want ok after 2", r.Status, r.Attempts, len(a1log), r.Err)
	} else {
		h.checkFile(r.Name, testutil.Payload(60, 1000))
	}
	if r := oc.get(a2); r.Status != download.StatusFailed || statusCode(r.Err) != 429 || r.Attempts != 2 || len(a2log) != 2 {
		t.Errorf("/a2: status %s attempts %d requests %d err %v, want failed with 429 after 2 (--retries 1)",
			r.Status, r.Attempts, len(a2log), r.Err)
	}
	// The other host's entries were all asked for and finished while the busy
	// host was paused, before either of its entries was tried again.
	firstRetry := a1log[len(a1log)-1].Time
	if t2 := a2log[len(a2log)-1].Time; t2.Before(firstRetry) {
		firstRetry = t2
	}
	for _, u := range lines[2:] {
		r := oc.get(u)
		if r.Status != download.StatusOK {
			t.Errorf("%s: %s %v", u, r.Status, r.Err)
		}
		path := strings.TrimPrefix(u, other.URL)
		if log := other.Log(path); len(log) != 1 {
			t.Errorf("%s: requested %d times, want 1", path, len(log))
		} else if !log[0].Time.Before(firstRetry) {
			t.Errorf("%s: requested %v after the busy host's first retry: held up by its pause",
				path, log[0].Time.Sub(firstRetry))
		}
		if i := oc.index(u); i > oc.index(a1) || i > oc.index(a2) {
			t.Errorf("%s finished after the paused host's entries (results %d, %d, %d)", path, i, oc.index(a1), oc.index(a2))
		}
	}
	// The retries waited for the Retry-After.
	for _, log := range [][]downloadtest.Request{a1log, a2log} {
		if d := log[1].Time.Sub(log[0].Time); d < 1900*time.Millisecond {
			t.Errorf("%s retried %v after its 429, want >= 2s (Retry-After)", log[0].Path, d)
		}
	}
	if st := oc.eng.Stats(); st.InFlight.Load() != 0 || st.OK.Load() != 4 || st.Failed.Load() != 1 {
		t.Errorf("stats in flight %d ok %d failed %d", st.InFlight.Load(), st.OK.Load(), st.Failed.Load())
	}
	h.checkNoPartFiles()
}

// dropThenBusy serves body (ETag "v1", ranges honoured) at path: the first
// request gets its first 1000 bytes and a dropped connection, the second a 503
// with Retry-After: retryAfter, later ones the file.
func dropThenBusy(s *downloadtest.Server, path string, body []byte, retryAfter string) string {
	var hits atomic.Int32
	return s.Handle(path, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch hits.Add(1) {
		case 1:
			w.Header().Set("ETag", `"v1"`)
			w.Header().Set("Content-Length", fmt.Sprint(len(body)))
			w.WriteHeader(http.StatusOK)
			w.Write(body[:1000])
			http.NewResponseController(w).Flush()
			panic(http.ErrAbortHandler)
		case 2:
			w.Header().Set("Retry-After", retryAfter)
			http.Error(w, "busy", http.StatusServiceUnavailable)
		default:
			w.Header().Set("ETag", `"v1"`)
			http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
		}
	}))
}

// An entry parked in its retry loop keeps the bytes it had: it resumes them
// with a Range request when its host's pause ends.
func TestEngineHostPauseParksProgress(t *testing.T) {
	t.Parallel()
	busy, other := downloadtest.New(t), downloadtest.New(t)
	h := newHarness(t)
	body := testutil.Payload(70, 5000)
	a := dropThenBusy(busy, "/a", body, "1")
	b := other.Add("/b", testutil.Payload(71, 1000))
	oc := h.run(download.Options{Jobs: 1, Retries: 2}, a, b)
	r := oc.get(a)
	if r.Status != download.StatusOK || r.Attempts != 3 {
		t.Fatalf("/a: status %s attempts %d err %v, want ok after 3", r.Status, r.Attempts, r.Err)
	}
	h.checkFile(r.Name, body)
	alog := busy.Log("/a")
	if len(alog) != 3 || alog[2].Range != "bytes=1000-" || alog[2].IfRange != `"v1"` {
		t.Fatalf("/a: requests %+v, want 3, the last with Range bytes=1000- and If-Range \"v1\"", alog)
	}
	if rb := oc.get(b); rb.Status != download.StatusOK {
		t.Errorf("/b: %s %v", rb.Status, rb.Err)
	}
	// The one worker went on with /b during the pause.
	if blog := other.Log("/b"); len(blog) != 1 || !blog[0].Time.Before(alog[len(alog)-1].Time) || oc.index(b) > oc.index(a) {
		t.Errorf("/b was held up by the other host's pause: %d requests, result %d (/a's %d)", len(blog), oc.index(b), oc.index(a))
	}
	if n := oc.eng.Stats().Bytes.Load(); n != int64(len(body))+1000 {
		t.Errorf("%d body bytes received, want %d (the kept 1000 not fetched again)", n, len(body)+1000)
	}
	h.checkNoPartFiles()
}

func TestEngineStall(t *testing.T) {
	t.Parallel()
	body := testutil.Payload(5, 300_000)
	// Three seconds: far above any gap of a transfer on a loaded machine
	// (a hop of the redirect chain below takes 150 ms), far below the
	// stalls, which last an hour.
	const timeout = 3 * time.Second
	t.Run("stall fails with ErrStalled", func(t *testing.T) {
		// The server sends headers, then nothing: every attempt stalls.
		t.Parallel()
		s := downloadtest.New(t)
		h := newHarness(t)
		u := s.Add("/f", body, downloadtest.Stall(0, time.Hour, downloadtest.Always))
		oc := h.run(download.Options{Timeout: timeout, Retries: 1}, u)
		r := oc.get(u)
		if r.Status != download.StatusFailed || !errors.Is(r.Err, download.ErrStalled) || r.Attempts != 2 {
			t.Errorf("status %s attempts %d err %v, want ErrStalled after 2", r.Status, r.Attempts, r.Err)
		}
		h.checkAbsent(r.Name)
	})
	t.Run("stall before headers fails with ErrStalled", func(t *testing.T) {
		t.Parallel()
		s := downloadtest.New(t)
		h := newHarness(t)
		u := s.Add("/f", body, downloadtest.Delay(time.Hour))
		oc := h.run(download.Options{Timeout: timeout}, u)
		r := oc.get(u)
		if r.Status != download.StatusFailed || !errors.Is(r.Err, download.ErrStalled) || r.Attempts != 1 {
			t.Errorf("status %s attempts %d err %v, want ErrStalled", r.Status, r.Attempts, r.Err)
		}
	})
	t.Run("slow redirect hops are not a stall", func(t *testing.T) {
		// Eight requests (seven redirects) of 150 ms each: the chain takes
		// longer than the timeout, no hop comes near it.
		t.Parallel()
		s := downloadtest.New(t)
		h := newHarness(t)
		next := s.Add("/end", body, downloadtest.Delay(150*time.Millisecond))
		for i := range 7 {
			next = s.Add(fmt.Sprintf("/hop%d", i), nil, downloadtest.Redirect(next, downloadtest.Always), downloadtest.Delay(150*time.Millisecond))
		}
		r := h.run(download.Options{Timeout: timeout, Retries: 0}, next).get(next)
		if r.Status != download.StatusOK {
			t.Fatalf("status %s err %v", r.Status, r.Err)
		}
	})
	t.Run("stall mid-body resumes", func(t *testing.T) {
		// 100 000 bytes, then silence: the retry asks for the rest.
		t.Parallel()
		s := downloadtest.New(t)
		h := newHarness(t)
		u := s.Add("/f", body, downloadtest.Stall(100_000, time.Hour, 1))
		oc := h.run(download.Options{Timeout: timeout}, u)
		r := oc.get(u)
		if r.Status != download.StatusOK || r.Attempts != 2 {
			t.Fatalf("status %s attempts %d err %v", r.Status, r.Attempts, r.Err)
		}
		if got := s.RangeRequests("/f"); len(got) != 1 || got[0] != "bytes=100000-" {
			t.Errorf("Range requests %q, want [bytes=100000-]", got)
		}
		h.checkFile(r.Name, body)
	})
}

func TestEngineRedirects(t *testing.T) {
	t.Parallel()
	body := testutil.Payload(12, 10_000)
	s := downloadtest.New(t)
	s.Add("/target", body)
	// chain(n) returns a URL that redirects n times before reaching /target.
	chain := func(prefix string, n int) string {
		next := "/target"
		for i := n; i >= 1; i-- {
			p := fmt.Sprintf("/%s%d", prefix, i)
			s.Add(p, nil, downloadtest.Redirect(next, downloadtest.Always))
			next = p
		}
		return s.URL + next
	}
	tests := []struct {
		name string
		url  string
		ok   bool
	}{
		{"one redirect", chain("one", 1), true},
		{"redirect to another host", s.Add("/away", nil,
			downloadtest.Redirect(downloadtest.New(t).Add("/x", body), downloadtest.Always)), true},
		{"10 redirects", chain("ten", 10), true},
		{"11 redirects", chain("eleven", 11), false},
		{"redirect loop", s.Add("/loop", nil, downloadtest.Redirect("/loop", downloadtest.Always)), false},
		{"redirect to ftp", s.Add("/ftp", nil, downloadtest.Redirect("ftp://127.0.0.1/f", downloadtest.Always)), false},
		{"redirect to file", s.Add("/file", nil, downloadtest.Redirect("file:///etc/passwd", downloadtest.Always)), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			oc := h.run(download.Options{Retries: 2}, tc.url)
			r := oc.get(tc.url)
			if !tc.ok {
				if r.Status != download.StatusFailed {
					t.Fatalf("status %s, want failed", r.Status)
				}
				h.checkAbsent(r.Name)
				if r.Attempts != 1 {
					t.Errorf("attempts %d: a redirect that is refused will be refused again, want 1 (err %v)", r.Attempts, r.Err)
				}
				return
			}
			if r.Status != download.StatusOK {
				t.Fatalf("status %s err %v", r.Status, r.Err)
			}
			h.checkFile(r.Name, body)
			// Named after the URL in the list, not the one redirected to.
			if !strings.HasSuffix(r.Name, tc.url[strings.LastIndex(tc.url, "/"):]) {
				t.Errorf("saved as %s, want the listed URL's name", r.Name)
			}
		})
	}
}

// Credentials (-H Authorization, Cookie) follow a redirect only within the
// first URL's origin: not to another port of the same host, as curl does.
func TestEngineRedirectCredentials(t *testing.T) {
	t.Parallel()
	body := testutil.Payload(13, 1000)
	s, other := downloadtest.New(t), downloadtest.New(t)
	s.Add("/here", body)
	s.Add("/same", nil, downloadtest.Redirect("/here", downloadtest.Always))
	s.Add("/away", nil, downloadtest.Redirect(other.Add("/there", body), downloadtest.Always))
	hdr := http.Header{"Authorization": {"Bearer secret"}, "Cookie": {"c=1"}, "X-Other": {"kept"}}
	h := newHarness(t)
	oc := h.run(download.Options{Header: hdr}, s.URL+"/same", s.URL+"/away")
	for _, u := range []string{s.URL + "/same", s.URL + "/away"} {
		if r := oc.get(u); r.Status != download.StatusOK {
			t.Fatalf("%s: %s %v", u, r.Status, r.Err)
		}
	}
	if got := s.Log("/here")[0].Header; got.Get("Authorization") != "Bearer secret" || got.Get("Cookie") != "c=1" {
		t.Errorf("same-origin redirect lost the credentials: %v", got)
	}
	got := other.Log("/there")[0].Header
	if got.Get("Authorization") != "" || got.Get("Cookie") != "" {
		t.Errorf("credentials sent to another port after a redirect: %v", got)
	}
	if got.Get("X-Other") != "kept" {
		t.Errorf("other -H headers dropped on the redirect: %v", got)
	}
	// The URL redirected from (its query may hold a token) is not sent as Referer.
	if ref := got.Get("Referer") + s.Log("/here")[0].Header.Get("Referer"); ref != "" {
		t.Errorf("Referer %q sent after a redirect; only one given with -H may be", ref)
	}
}

func TestEnginePerHost(t *testing.T) {
	t.Parallel()
	for _, perHost := range []int{1, 2} {
		t.Run(fmt.Sprintf("PerHost=%d", perHost), func(t *testing.T) {
			t.Parallel()
			busy := downloadtest.New(t)
			other := downloadtest.New(t)
			h := newHarness(t)
			var lines []string
			for i := range 8 {
				d := downloadtest.Delay(30 * time.Millisecond)
				lines = append(lines, busy.Add(fmt.Sprintf("/b%d", i), testutil.Payload(uint64(i), 1000), d),
					other.Add(fmt.Sprintf("/o%d", i), testutil.Payload(uint64(i), 1000), d))
			}
			oc := h.run(download.Options{Jobs: 8, PerHost: perHost}, lines...)
			if st := oc.eng.Stats(); st.OK.Load() != 16 {
				t.Fatalf("ok %d, want 16", st.OK.Load())
			}
			for _, s := range []*downloadtest.Server{busy, other} {
				if m := s.MaxInFlight(); m > perHost {
					t.Errorf("%d concurrent requests to one host, cap %d", m, perHost)
				}
			}
		})
	}
	t.Run("no cap", func(t *testing.T) {
		// The control: without a cap the same list does reach one host in parallel.
		t.Parallel()
		s := downloadtest.New(t)
		h := newHarness(t)
		var lines []string
		for i := range 8 {
			lines = append(lines, s.Add(fmt.Sprintf("/b%d", i), testutil.Payload(uint64(i), 1000),
				downloadtest.Delay(50*time.Millisecond)))
		}
		h.run(download.Options{Jobs: 4}, lines...)
		if m := s.MaxInFlight(); m < 2 || m > 4 {
			t.Errorf("max concurrent requests %d, want 2..4 (Jobs=4)", m)
		}
	})
}

func TestEngineLimitRate(t *testing.T) {
	// Correctness only: no timing assertions. 4 × 64 KiB at 2 MB/s.
	t.Parallel()
	s := downloadtest.New(t)
	h := newHarness(t)
	var lines []string
	bodies := map[string][]byte{}
	for i := range 4 {
		b := testutil.Payload(uint64(30+i), 64<<10)
		u := s.Add(fmt.Sprintf("/l%d", i), b, downloadtest.DropAfter(10_000, 1))
		lines = append(lines, u+" sha256="+testutil.SHA256Hex(b))
		bodies[u] = b
	}
	oc := h.run(download.Options{LimitRate: 2 << 20}, lines...)
	for u, b := range bodies {
		r := oc.get(u)
		if r.Status != download.StatusOK {
			t.Fatalf("%s: status %s err %v", u, r.Status, r.Err)
		}
		h.checkFile(r.Name, b)
	}
}

// A rate limit that holds bytes back for longer than --timeout is not a stall:
// 32 KiB at 4 KiB/s comes in two 16 KiB chunks 4 s apart, with a 2 s
// timeout. (The server sends all at once: only the limiter holds bytes back,
// and 2 s leaves a loaded machine room between reads. TestPacedBody* check
// the same to the nanosecond under synctest.)
func TestEngineLimitRateSlowerThanTimeout(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	h := newHarness(t)
	b := testutil.Payload(35, 32<<10)
	u := s.Add("/slow", b)
	r := h.run(download.Options{LimitRate: 4 << 10, Timeout: 2 * time.Second, Retries: 0}, u).get(u)
	if r.Status != download.StatusOK || r.Attempts != 1 {
		t.Fatalf("status %s attempts %d err %v, want ok at the first attempt", r.Status, r.Attempts, r.Err)
	}
	h.checkFile(r.Name, b)
}

func TestEngineTLS(t *testing.T) {
	t.Parallel()
	body := testutil.Payload(70, 200_000)
	t.Run("HTTP/2 with --cacert, resumed after a reset stream", func(t *testing.T) {
		t.Parallel()
		s := downloadtest.New(t, downloadtest.HTTP2())
		u := s.Add("/f", body, downloadtest.DropAfter(50_000, 1))
		h := newHarness(t)
		c, err := httpclient.New(httpclient.Options{Jobs: 2, CACert: s.CAFile(t)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.CloseIdleConnections)
		h.client = c
		r := h.run(download.Options{}, u).get(u)
		if r.Status != download.StatusOK {
			t.Fatalf("status %s err %v", r.Status, r.Err)
		}
		h.checkFile(r.Name, body)
		log := s.Log("/f")
		if len(log) != 2 || log[0].Proto != "HTTP/2.0" || log[0].Range != "" || log[1].Range != "bytes=50000-" {
			t.Errorf("requests %+v, want a full GET then a ranged one", log)
		}
	})
	t.Run("untrusted certificate fails", func(t *testing.T) {
		t.Parallel()
		s := downloadtest.New(t, downloadtest.TLS())
		u := s.Add("/f", body)
		h := newHarness(t) // system roots only
		r := h.run(download.Options{Retries: 2}, u).get(u)
		if r.Status != download.StatusFailed || s.TotalRequests() != 0 {
			t.Fatalf("status %s err %v, %d requests; want failed before any request", r.Status, r.Err, s.TotalRequests())
		}
		h.checkAbsent(r.Name)
		if r.Attempts != 1 {
			t.Errorf("attempts %d: a certificate that does not verify is not retried", r.Attempts)
		}
	})
}

// A host that refuses connections stops costing time: after HostFailLimit
// attempts in a row without a response its remaining entries fail at once
// (ErrHostDown, no request), and the live host's entries never wait behind the
// dead host's backoff (an hour here: the run ends only if no worker sleeps
// through it and no entry waits it out).
func TestEngineHostDown(t *testing.T) {
	t.Parallel()
	dead := "http://" + testutil.RefusedAddr(t) // connection refused
	live := downloadtest.New(t)
	var lines, liveURLs []string
	for i := range 200 {
		lines = append(lines, fmt.Sprintf("%s/d%d", dead, i))
		if i%40 == 0 {
			u := live.Add(fmt.Sprintf("/l%d", i), testutil.Payload(uint64(i), 1000))
			lines, liveURLs = append(lines, u), append(liveURLs, u)
		}
	}
	h := newHarness(t)
	oc := h.run(download.Options{Jobs: 2, Retries: 5, RetryBase: time.Hour, RetryMax: time.Hour}, lines...)
	for _, u := range liveURLs {
		if r := oc.get(u); r.Status != download.StatusOK {
			t.Errorf("%s: %s %v", u, r.Status, r.Err)
		}
	}
	attempts := 0
	for i := range 200 {
		r := oc.get(fmt.Sprintf("%s/d%d", dead, i))
		attempts += r.Attempts
		if r.Status != download.StatusFailed || !errors.Is(r.Err, download.ErrHostDown) {
			t.Errorf("dead entry %d: %s %v, want host down", i, r.Status, r.Err)
		}
	}
	if i := oc.get(dead + "/d199"); !strings.Contains(i.Err.Error(), "connection refused") {
		t.Errorf("the reason is not given: %v", i.Err)
	}
	// 8 misses make it down; entries already in their attempt when it went
	// down add at most one each.
	if attempts > 8+2 {
		t.Errorf("%d attempts to the dead host, want at most 10", attempts)
	}
}

// --host-fail-limit below 0: a host is never given up on; each entry spends
// its own retries.
func TestEngineHostFailLimitOff(t *testing.T) {
	t.Parallel()
	dead := "http://" + testutil.RefusedAddr(t) // connection refused
	var lines []string
	for i := range 5 {
		lines = append(lines, fmt.Sprintf("%s/d%d", dead, i))
	}
	h := newHarness(t)
	oc := h.run(download.Options{Jobs: 1, Retries: 2, HostFailLimit: -1}, lines...)
	for _, u := range lines {
		r := oc.get(u)
		if r.Status != download.StatusFailed || errors.Is(r.Err, download.ErrHostDown) || r.Attempts != 3 {
			t.Errorf("%s: %s after %d attempts: %v; want its own 3 attempts", u, r.Status, r.Attempts, r.Err)
		}
	}
}

// With --per-host, entries for a host whose slots are all taken wait set
// aside, not on a worker: a host that never answers does not hold the
// workers that the other hosts' entries need.
func TestEnginePerHostSlowHostDoesNotHoldWorkers(t *testing.T) {
	t.Parallel()
	// The slow host answers nothing until every entry of the live host has
	// its result: if its entries held the workers the live host needs, the
	// run would wait on itself until the stall timeout ended them first.
	released := make(chan struct{})
	slow, live := downloadtest.New(t), downloadtest.New(t)
	var lines, slowURLs, liveURLs []string
	for i := range 6 {
		u := slow.Handle(fmt.Sprintf("/s%d", i), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-released:
				panic(http.ErrAbortHandler) // no response: the attempt fails
			case <-r.Context().Done():
			}
		}))
		lines, slowURLs = append(lines, u), append(slowURLs, u)
	}
	for i := range 6 {
		u := live.Add(fmt.Sprintf("/l%d", i), testutil.Payload(uint64(50+i), 1000))
		lines, liveURLs = append(lines, u), append(liveURLs, u)
	}
	h := newHarness(t)
	oc, wait := h.start(context.Background(), download.Options{Jobs: 3, PerHost: 1, Retries: 0, HostFailLimit: -1}, lines...)
	ended := make(chan struct{})
	defer close(ended)
	go func() {
		defer close(released)
		for _, u := range liveURLs {
			for len(oc.all(u)) == 0 {
				select {
				case <-ended:
					return
				case <-time.After(5 * time.Millisecond):
				}
			}
		}
	}()
	if oc = wait(); oc.err != nil {
		t.Fatalf("Run: %v", oc.err)
	}
	firstSlow := len(oc.results)
	for _, u := range slowURLs {
		firstSlow = min(firstSlow, oc.index(u))
	}
	for _, u := range liveURLs {
		if r := oc.get(u); r.Status != download.StatusOK {
			t.Errorf("%s: %s %v", u, r.Status, r.Err)
		}
		if i := oc.index(u); i > firstSlow {
			t.Errorf("%s finished after the first entry of the host that never answers (%d > %d): it waited behind it", u, i, firstSlow)
		}
	}
	// (The server's count of requests in flight cannot check --per-host here:
	// a request the client gave up on ends on the server only once it sees
	// the connection closed, after the next one started. TestEnginePerHost
	// checks the cap.)
}

// Idle connections are kept per recently used host: 2,000 files spread over
// 50 hosts at -j 16 open about one connection per host, not one per file
// (the idle pool was capped at 2 x jobs across all hosts, below the number of
// hosts, so each connection was closed before its host came round again).
func TestEngineConnectionsKeptPerHost(t *testing.T) {
	t.Parallel()
	const hosts, files = 50, 2000
	var conns atomic.Int64
	var urls []string
	servers := make([]*httptest.Server, hosts)
	for i := range servers {
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte("x"))
		}))
		srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		}
		srv.Start()
		defer srv.Close()
		servers[i] = srv
	}
	for i := range files {
		urls = append(urls, fmt.Sprintf("%s/f%d", servers[i%hosts].URL, i))
	}
	h := newHarness(t)
	c, err := httpclient.New(httpclient.Options{Jobs: 16, ConnectTimeout: patientTimeout})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	h.client = c
	oc := h.run(download.Options{Jobs: 16, Layout: naming.LayoutHash}, urls...)
	if st := oc.eng.Stats(); st.OK.Load() != files {
		t.Fatalf("%d ok of %d", st.OK.Load(), files)
	}
	t.Logf("%d connections", conns.Load())
	if n := conns.Load(); n > 2*hosts {
		t.Errorf("%d connections for %d files over %d hosts, want at most %d", n, files, hosts, 2*hosts)
	}
}
