package download_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/haul/haul/download"
	"github.com/haul/haul/download/downloadtest"
	"github.com/haul/haul/download/httpclient"
	"github.com/haul/haul/download/input"
	"github.com/haul/haul/sink"
)

// harness is one output directory with its sink and a shared client, against
// which runs of the Engine are made. Each run gets a new Engine (one per Run).
type harness struct {
	t      *testing.T
	dir    string
	sink   *sink.File
	client httpclient.Client
}

// newHarness uses a NoSync sink: tests care about what is written, not about
// power loss, and every syncfs flushes the whole filesystem. newSyncHarness
// exercises the default sink (group commit).
func newHarness(t *testing.T) *harness {
	return newHarnessDir(t, t.TempDir(), sink.FileOptions{NoSync: true})
}

// fetchOne serves body at /f.bin with opts on a new server, runs the engine on
// that one URL (plus fields, e.g. " sha256=…") in a new harness, and returns
// them with the entry's result.
func fetchOne(t *testing.T, body []byte, o download.Options, fields string, opts ...downloadtest.FileOption) (*downloadtest.Server, *harness, *download.Result) {
	t.Helper()
	s := downloadtest.New(t)
	h := newHarness(t)
	u := s.Add("/f.bin", body, opts...)
	return s, h, h.run(o, u+fields).get(u)
}

// stopRun cancels a run started with harness.start and checks that Run returns
// promptly, with context.Canceled.
func stopRun(t *testing.T, cancel func(), wait func() *outcome) {
	t.Helper()
	t0 := time.Now()
	cancel()
	oc := wait()
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("Run took %v to return after cancel", d)
	}
	if !errors.Is(oc.err, context.Canceled) {
		t.Errorf("Run returned %v, want context.Canceled", oc.err)
	}
}

func newSyncHarness(t *testing.T) *harness {
	return newHarnessDir(t, t.TempDir(), sink.FileOptions{})
}

// newHarnessDir opens its own sink on dir: two harnesses on one dir behave like
// two haul processes sharing it (the staging file locks are per open file).
func newHarnessDir(t *testing.T, dir string, so sink.FileOptions) *harness {
	t.Helper()
	s, err := sink.NewFile(dir, so)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	c, err := httpclient.New(httpclient.Options{Jobs: 8, ConnectTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return &harness{t: t, dir: dir, sink: s, client: c}
}

// outcome is what one Run produced.
type outcome struct {
	t       *testing.T
	eng     *download.Engine
	err     error
	mu      sync.Mutex
	results []*download.Result // in the order OnResult saw them
}

// fastOptions fills in what keeps tests quick and hang-free: short backoff, a
// stall timeout that ends a broken test in seconds, and a User-Agent.
func fastOptions(o download.Options) download.Options {
	if o.Jobs == 0 {
		o.Jobs = 4
	}
	if o.RetryBase == 0 {
		o.RetryBase = 10 * time.Millisecond
	}
	if o.RetryMax == 0 {
		o.RetryMax = 50 * time.Millisecond
	}
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Header == nil {
		// Non-nil on purpose: see TestEngineNilHeaderResume.
		o.Header = http.Header{"User-Agent": {"haul-test"}}
	}
	return o
}

// start begins a run over lines (one input line each) and returns a function
// that waits for it.
func (h *harness) start(ctx context.Context, o download.Options, lines ...string) (*outcome, func() *outcome) {
	oc := &outcome{t: h.t}
	o = fastOptions(o)
	o.OnResult = func(r *download.Result) {
		oc.mu.Lock()
		oc.results = append(oc.results, r)
		oc.mu.Unlock()
	}
	oc.eng = download.New(h.client, h.sink, o)
	done := make(chan struct{})
	go func() {
		defer close(done)
		oc.err = oc.eng.Run(ctx, input.NewScanner(strings.NewReader(strings.Join(lines, "\n"))))
	}()
	return oc, func() *outcome {
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			h.t.Fatal("Run did not return within 20s")
		}
		return oc
	}
}

// run runs the engine over lines to the end and fails the test if Run errs.
func (h *harness) run(o download.Options, lines ...string) *outcome {
	h.t.Helper()
	_, wait := h.start(context.Background(), o, lines...)
	oc := wait()
	if oc.err != nil {
		h.t.Fatalf("Run: %v", oc.err)
	}
	return oc
}

// all returns the results for url.
func (oc *outcome) all(url string) []*download.Result {
	oc.mu.Lock()
	defer oc.mu.Unlock()
	var out []*download.Result
	for _, r := range oc.results {
		if r.Entry.URL == url {
			out = append(out, r)
		}
	}
	return out
}

// get returns the one result for url.
func (oc *outcome) get(url string) *download.Result {
	oc.t.Helper()
	rs := oc.all(url)
	if len(rs) != 1 {
		oc.t.Fatalf("%d results for %s, want 1", len(rs), url)
	}
	return rs[0]
}

// read returns the final file name (relative to the dir).
func (h *harness) read(name string) []byte {
	h.t.Helper()
	b, err := os.ReadFile(filepath.Join(h.dir, filepath.FromSlash(name)))
	if err != nil {
		h.t.Fatalf("reading final file: %v", err)
	}
	return b
}

// checkFile asserts that the final file name holds exactly want.
func (h *harness) checkFile(name string, want []byte) {
	h.t.Helper()
	if got := h.read(name); !bytes.Equal(got, want) {
		h.t.Errorf("%s: %d bytes differ from the %d served", name, len(got), len(want))
	}
}

// checkAbsent asserts that neither the final file nor its staging file exists.
func (h *harness) checkAbsent(name string) {
	h.t.Helper()
	if name == "" {
		h.t.Fatal("result has no name")
	}
	for _, n := range []string{name, name + sink.PartSuffix} {
		if _, err := os.Lstat(filepath.Join(h.dir, filepath.FromSlash(n))); !errors.Is(err, fs.ErrNotExist) {
			h.t.Errorf("%s exists (err %v), want nothing", n, err)
		}
	}
}

// files returns every regular file under the dir (slash-separated, relative).
func (h *harness) files() []string {
	h.t.Helper()
	var out []string
	err := filepath.WalkDir(h.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(h.dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return out
}

// checkNoPartFiles asserts that no staging file is left behind.
func (h *harness) checkNoPartFiles() {
	h.t.Helper()
	for _, f := range h.files() {
		if strings.HasSuffix(f, sink.PartSuffix) {
			h.t.Errorf("staging file %s left behind", f)
		}
	}
}

// payload returns n deterministic pseudo-random bytes.
func payload(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, uint64(n)))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func statusCode(err error) int {
	var se *download.StatusError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}

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
		b := payload(uint64(i), (i*7919)%300_000)
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
	body := payload(1, 20_000)
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
	// A 429 with Retry-After: 1 backs off the whole host: the retry of another
	// entry on that host waits too, while an entry on another host keeps going.
	t.Parallel()
	busy := downloadtest.New(t)
	other := downloadtest.New(t)
	h := newHarness(t)
	slow := downloadtest.Delay(150 * time.Millisecond)
	a := busy.Add("/a", payload(2, 1000), downloadtest.Status(429, 1), downloadtest.RetryAfter("1"))
	b := busy.Add("/b", payload(3, 1000), downloadtest.Status(500, 1), slow)
	x := other.Add("/x", payload(4, 1000), downloadtest.Status(500, 1), slow)
	oc := h.run(download.Options{Jobs: 3, Retries: 2}, a, b, x)
	for _, u := range []string{a, b, x} {
		if r := oc.get(u); r.Status != download.StatusOK || r.Attempts != 2 {
			t.Errorf("%s: status %s attempts %d err %v", u, r.Status, r.Attempts, r.Err)
		}
	}
	t429 := busy.Log("/a")[0].Time
	for _, path := range []string{"/a", "/b"} {
		log := busy.Log(path)
		if d := log[len(log)-1].Time.Sub(t429); d < 950*time.Millisecond {
			t.Errorf("%s retried %v after the 429, want >= 1s (Retry-After)", path, d)
		}
	}
	// x's retry came while busy was paused.
	xlog := other.Log("/x")
	if d := xlog[1].Time.Sub(t429); d > 800*time.Millisecond {
		t.Errorf("the other host's retry came %v after the 429: it was held up", d)
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
		bs = append(bs, other.Add(fmt.Sprintf("/b%d", i), payload(uint64(45+i), 1000), downloadtest.Delay(50*time.Millisecond)))
	}
	// b0 keeps the second worker busy until the 429 has paused busy.
	lines := []string{busy.Add("/first", payload(40, 1000), downloadtest.Status(429, 1), downloadtest.RetryAfter("2")), bs[0]}
	for i := range 3 {
		lines = append(lines, busy.Add(fmt.Sprintf("/a%d", i), payload(uint64(41+i), 1000)))
	}
	lines = append(lines, bs[1:]...)
	oc := h.run(download.Options{Jobs: 2, Retries: 1}, lines...)
	for _, u := range lines {
		if r := oc.get(u); r.Status != download.StatusOK {
			t.Errorf("%s: %s %v", u, r.Status, r.Err)
		}
	}
	t429 := busy.Log("/first")[0].Time
	for i := range 4 {
		if d := other.Log(fmt.Sprintf("/b%d", i))[0].Time.Sub(t429); d > time.Second {
			t.Errorf("/b%d started %v after the other host's 429: held up by its pause", i, d)
		}
	}
	for i := range 3 { // (one sent before the 429 arrived may go at once)
		if d := busy.Log(fmt.Sprintf("/a%d", i))[0].Time.Sub(t429); d > 0 && d < 1900*time.Millisecond {
			t.Errorf("/a%d requested %v after the 429, inside its 2s pause", i, d)
		}
	}
}

// A 503 with Retry-After pauses the host even when its entry has no retry left.
func TestEngineHostPauseLastAttempt(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	h := newHarness(t)
	busy := s.Add("/busy", nil, downloadtest.Status(503, downloadtest.Always), downloadtest.RetryAfter("1"))
	next := s.Add("/next", payload(50, 100))
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
	// The delay keeps /a1 in flight until the second worker has asked for /a2:
	// both get their 429 on a first attempt, in their retry loops.
	slow := downloadtest.Delay(200 * time.Millisecond)
	a1 := busy.Add("/a1", payload(60, 1000), downloadtest.Status(429, 1), downloadtest.RetryAfter("2"), slow)
	// Two 429s with --retries 1: it fails on its second attempt, unless parking
	// had reset its count (a third attempt would get the file).
	a2 := busy.Add("/a2", payload(61, 1000), downloadtest.Status(429, 2), downloadtest.RetryAfter("2"), slow)
	lines := []string{a1, a2}
	for i := range 3 {
		lines = append(lines, other.Add(fmt.Sprintf("/b%d", i), payload(uint64(62+i), 1000)))
	}
	oc := h.run(download.Options{Jobs: 2, Retries: 1}, lines...)

	a1log, a2log := busy.Log("/a1"), busy.Log("/a2")
	if len(a1log) == 0 || len(a2log) == 0 || a1log[0].Status != 429 || a2log[0].Status != 429 ||
		a2log[0].Time.Sub(a1log[0].Time) > 150*time.Millisecond {
		t.Fatalf("both /a1 and /a2 should have had a first attempt answered 429 together: %+v %+v", a1log, a2log)
	}
	if r := oc.get(a1); r.Status != download.StatusOK || r.Attempts != 2 || len(a1log) != 2 {
		t.Errorf("/a1: status %s attempts %d requests %d err %v, want ok after 2", r.Status, r.Attempts, len(a1log), r.Err)
	} else {
		h.checkFile(r.Name, payload(60, 1000))
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
	body := payload(70, 5000)
	a := dropThenBusy(busy, "/a", body, "1")
	b := other.Add("/b", payload(71, 1000))
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

// Ctrl-C while an entry is parked in its retry loop: Run returns at once, the
// entry is reported once, as interrupted, and its bytes stay for the next run.
func TestEngineHostPauseParkedInterrupt(t *testing.T) {
	t.Parallel()
	busy, other := downloadtest.New(t), downloadtest.New(t)
	h := newHarness(t)
	body := payload(80, 5000)
	a := dropThenBusy(busy, "/a", body, "60")
	b := other.Add("/b", payload(81, 1000))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	oc, wait := h.start(ctx, download.Options{Jobs: 1, Retries: 2}, a, b)
	// With one worker, /b is done only once /a is out of its way.
	deadline := time.Now().Add(5 * time.Second)
	for len(oc.all(b)) == 0 {
		if time.Now().After(deadline) {
			cancel()
			wait()
			t.Fatalf("/b not done 5s after the start: held up by the other host's pause (requests to /a: %d)", busy.Requests("/a"))
		}
		time.Sleep(5 * time.Millisecond)
	}
	stopRun(t, cancel, wait)
	r := oc.get(a) // exactly one result
	if r.Status != download.StatusFailed || !errors.Is(r.Err, download.ErrInterrupted) || r.Attempts != 2 {
		t.Errorf("/a: status %s attempts %d err %v, want interrupted after 2", r.Status, r.Attempts, r.Err)
	}
	if st := oc.eng.Stats(); st.InFlight.Load() != 0 {
		t.Errorf("%d in flight after Run", st.InFlight.Load())
	}
	// The next run resumes the 1000 bytes kept.
	oc2 := h.run(download.Options{}, a)
	if r := oc2.get(a); r.Status != download.StatusOK {
		t.Fatalf("second run: %s %v", r.Status, r.Err)
	}
	h.checkFile(r.Name, body)
	if alog := busy.Log("/a"); alog[len(alog)-1].Range != "bytes=1000-" {
		t.Errorf("second run asked Range %q, want bytes=1000-", alog[len(alog)-1].Range)
	}
}

func TestEngineStall(t *testing.T) {
	t.Parallel()
	body := payload(5, 300_000)
	const timeout = 200 * time.Millisecond
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
		// Five hops of 120 ms each: the chain takes longer than the timeout,
		// no hop does.
		t.Parallel()
		s := downloadtest.New(t)
		h := newHarness(t)
		next := s.Add("/end", body, downloadtest.Delay(120*time.Millisecond))
		for i := range 4 {
			next = s.Add(fmt.Sprintf("/hop%d", i), nil, downloadtest.Redirect(next, downloadtest.Always), downloadtest.Delay(120*time.Millisecond))
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

func TestEngineResume(t *testing.T) {
	t.Parallel()
	const size = 300_000
	body := payload(6, size)
	changed := payload(7, 250_000)
	lastMod := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		opts    []downloadtest.FileOption
		retries int
		want    []byte   // final content; nil: the entry fails
		ranges  []string // Range headers the server must have seen
		ifRange string   // If-Range of the ranged request, "" to not check
		sent    int64    // body bytes the server sent in all (0: don't check)
	}{
		// Dropped after 100 000 bytes, strong ETag: resume, not restart.
		{name: "drop resumes with ETag",
			opts: []downloadtest.FileOption{downloadtest.DropAfter(100_000, 1), downloadtest.ETag(`"v1"`)},
			want: body, ranges: []string{"bytes=100000-"}, ifRange: `"v1"`, sent: size},
		// Only Last-Modified: it guards the resume instead.
		{name: "drop resumes with Last-Modified",
			opts: []downloadtest.FileOption{downloadtest.DropAfter(100_000, 1),
				downloadtest.NoValidator(), downloadtest.LastModified(lastMod)},
			want: body, ranges: []string{"bytes=100000-"}, ifRange: lastMod.Format(http.TimeFormat), sent: size},
		// Dropped twice at different points: two resumes, still one file.
		{name: "drop twice resumes twice",
			opts: []downloadtest.FileOption{downloadtest.DropAfter(100_000, 2)},
			want: body, ranges: []string{"bytes=100000-", "bytes=200000-"}, sent: size},
		// No validator: appending would risk a spliced file, so start over.
		{name: "drop without validator restarts",
			opts: []downloadtest.FileOption{downloadtest.DropAfter(100_000, 1), downloadtest.NoValidator()},
			want: body, ranges: nil, sent: size + 100_000},
		// A weak ETag cannot be used in If-Range: start over.
		{name: "drop with weak ETag restarts",
			opts: []downloadtest.FileOption{downloadtest.DropAfter(100_000, 1), downloadtest.ETag(`W/"w"`)},
			want: body, ranges: nil, sent: size + 100_000},
		// The server ignores Range and answers 200 with the whole body: clean restart.
		{name: "server ignores Range",
			opts: []downloadtest.FileOption{downloadtest.DropAfter(100_000, 1), downloadtest.IgnoreRange()},
			want: body, ranges: []string{"bytes=100000-"}, sent: size + 100_000},
		// The file changed between attempts: If-Range fails, the new body is stored whole.
		{name: "changed ETag restarts with new content",
			opts: []downloadtest.FileOption{downloadtest.DropAfter(100_000, 1),
				downloadtest.ChangeAfter(1, changed, `"v2"`)},
			want: changed, ranges: []string{"bytes=100000-"}, sent: 100_000 + int64(len(changed))},
		// Every answer is cut short after 64 KiB, but each resumes further on; an
		// attempt that brought bytes does not count against --retries.
		{name: "every body short but progressing",
			opts: []downloadtest.FileOption{downloadtest.ShortBody(65536, downloadtest.Always)},
			want: body, ranges: []string{"bytes=65536-", "bytes=131072-", "bytes=196608-", "bytes=262144-"},
			sent: size},
		// Body shorter than Content-Length once, ETag present: resumed.
		{name: "short body resumes",
			opts: []downloadtest.FileOption{downloadtest.ShortBody(1000, 1)},
			want: body, ranges: []string{"bytes=1000-"}, sent: size},
		// Short every time and no validator: no progress after the first attempt.
		{name: "short body without validator fails",
			opts: []downloadtest.FileOption{downloadtest.ShortBody(1000, downloadtest.Always),
				downloadtest.NoValidator()},
			retries: 1, want: nil},
		// Dropped before the first byte: no progress, so it counts as a failure.
		{name: "drop at 0 bytes counts against retries",
			opts:    []downloadtest.FileOption{downloadtest.DropAfter(0, 2)},
			retries: 1, want: nil},
		{name: "drop at 0 bytes then ok",
			opts:    []downloadtest.FileOption{downloadtest.DropAfter(0, 2)},
			retries: 2, want: body, ranges: nil, sent: size},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, h, r := fetchOne(t, body, download.Options{Retries: tc.retries}, "", tc.opts...)
			if tc.want == nil {
				if r.Status != download.StatusFailed {
					t.Fatalf("status %s, want failed", r.Status)
				}
				h.checkAbsent(r.Name)
				return
			}
			if r.Status != download.StatusOK || r.Err != nil {
				t.Fatalf("status %s attempts %d err %v", r.Status, r.Attempts, r.Err)
			}
			h.checkFile(r.Name, tc.want)
			if r.Size != int64(len(tc.want)) {
				t.Errorf("Result.Size %d, want %d", r.Size, len(tc.want))
			}
			if got := s.RangeRequests("/f.bin"); strings.Join(got, ",") != strings.Join(tc.ranges, ",") {
				t.Errorf("Range requests %q, want %q", got, tc.ranges)
			}
			if tc.ifRange != "" {
				for _, req := range s.Log("/f.bin") {
					if req.Range != "" && req.IfRange != tc.ifRange {
						t.Errorf("If-Range %q, want %q", req.IfRange, tc.ifRange)
					}
				}
			}
			if tc.sent != 0 && s.BodyBytes() != tc.sent {
				t.Errorf("server sent %d body bytes, want %d", s.BodyBytes(), tc.sent)
			}
			h.checkNoPartFiles()
		})
	}
}

func TestEngineVerify(t *testing.T) {
	t.Parallel()
	body := payload(8, 50_000)
	sum := sha256Hex(body)
	wrongSum := sha256Hex([]byte("something else"))
	tests := []struct {
		name    string
		fields  string // after the URL on the line
		opts    []downloadtest.FileOption
		hashAll bool
		wantErr error // nil: ok
		wantSum string
	}{
		{"size= too big", fmt.Sprintf("size=%d", len(body)+1), nil, false, download.ErrBadLength, ""},
		{"size= too small", fmt.Sprintf("size=%d", len(body)-1), nil, false, download.ErrBadLength, ""},
		// Without Content-Length the mismatch shows only at the end of the body.
		{"size= mismatch without Content-Length", fmt.Sprintf("size=%d", len(body)+1),
			[]downloadtest.FileOption{downloadtest.NoContentLength()}, false, download.ErrBadLength, ""},
		{"size= too small without Content-Length", fmt.Sprintf("size=%d", len(body)-1),
			[]downloadtest.FileOption{downloadtest.NoContentLength()}, false, download.ErrBadLength, ""},
		{"size= matches", fmt.Sprintf("size=%d", len(body)), nil, false, nil, ""},
		{"sha256= mismatch", "sha256=" + wrongSum, nil, false, download.ErrBadChecksum, ""},
		{"sha256= matches", "sha256=" + sum, nil, false, nil, sum},
		{"sha256= uppercase matches", "sha256=" + strings.ToUpper(sum), nil, false, nil, sum},
		{"sha256= after a resume", "sha256=" + sum,
			[]downloadtest.FileOption{downloadtest.DropAfter(20_000, 1)}, false, nil, sum},
		{"sha256= after a restart", "sha256=" + sum,
			[]downloadtest.FileOption{downloadtest.DropAfter(20_000, 1), downloadtest.IgnoreRange()}, false, nil, sum},
		{"HashAll computes the sum", "", nil, true, nil, sum},
		{"no hash unless asked", "", nil, false, nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, h, r := fetchOne(t, body, download.Options{HashAll: tc.hashAll, Retries: 2}, " "+tc.fields, tc.opts...)
			if tc.wantErr != nil {
				if r.Status != download.StatusFailed || !errors.Is(r.Err, tc.wantErr) {
					t.Fatalf("status %s err %v, want %v", r.Status, r.Err, tc.wantErr)
				}
				if r.Attempts != 1 {
					t.Errorf("attempts %d: a verification failure is not retried", r.Attempts)
				}
				h.checkAbsent(r.Name)
				h.checkNoPartFiles()
				return
			}
			if r.Status != download.StatusOK || r.Err != nil {
				t.Fatalf("status %s err %v", r.Status, r.Err)
			}
			if r.SHA256 != tc.wantSum {
				t.Errorf("Result.SHA256 %q, want %q", r.SHA256, tc.wantSum)
			}
			h.checkFile(r.Name, body)
		})
	}
}

// size= bounds a body without a length as it arrives: an endless one fails at
// once instead of filling the disk.
func TestEngineSizeBoundsEndlessBody(t *testing.T) {
	t.Parallel()
	var sent atomic.Int64
	s := downloadtest.New(t)
	u := s.Handle("/endless", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 32<<10)
		for sent.Load() < 256<<20 { // bounded, so that a regression fails instead of hanging
			n, err := w.Write(chunk)
			sent.Add(int64(n))
			if err != nil {
				return
			}
		}
	}))
	h := newHarness(t)
	r := h.run(download.Options{}, u+" out=e size=1000").get(u)
	if r.Status != download.StatusFailed || !errors.Is(r.Err, download.ErrBadLength) {
		t.Fatalf("status %s err %v, want a length mismatch", r.Status, r.Err)
	}
	if got := sent.Load(); got > 32<<20 {
		t.Errorf("the server sent %d MiB before haul gave up on a size=1000 entry", got>>20)
	}
	h.checkAbsent("e")
	h.checkNoPartFiles()
}

func TestEngineDuplicates(t *testing.T) {
	t.Parallel()
	body := payload(9, 30_000)
	t.Run("same URL twice is fetched once", func(t *testing.T) {
		t.Parallel()
		// With the sync sink the first copy's result (and its claim on the name)
		// comes from the group committer, after the worker moved on.
		for _, sync := range []bool{false, true} {
			for _, jobs := range []int{1, 4} {
				s := downloadtest.New(t)
				h := newHarness(t)
				if sync {
					h = newSyncHarness(t)
				}
				u := s.Add("/f", body, downloadtest.Delay(20*time.Millisecond))
				oc := h.run(download.Options{Jobs: jobs}, u, u)
				rs := oc.all(u)
				if len(rs) != 2 || s.Requests("/f") != 1 {
					t.Fatalf("sync=%v jobs=%d: %d results, %d requests; want 2 results, 1 request",
						sync, jobs, len(rs), s.Requests("/f"))
				}
				st := map[download.Status]int{rs[0].Status: 1}
				st[rs[1].Status]++
				if st[download.StatusOK] != 1 || st[download.StatusSkipped] != 1 {
					t.Errorf("sync=%v jobs=%d: statuses %s and %s, want ok and skipped", sync, jobs, rs[0].Status, rs[1].Status)
				}
				h.checkFile(rs[0].Name, body)
			}
		}
	})
	t.Run("two URLs with one out= collide", func(t *testing.T) {
		// In list order (one job), then concurrently: exactly one wins, the other
		// fails with ErrCollision, the winner's file is intact.
		t.Parallel()
		for _, jobs := range []int{1, 4} {
			s := downloadtest.New(t)
			h := newHarness(t)
			other := payload(10, 1234)
			u1 := s.Add("/one", body, downloadtest.Delay(20*time.Millisecond))
			u2 := s.Add("/two", other, downloadtest.Delay(20*time.Millisecond))
			oc := h.run(download.Options{Jobs: jobs}, u1+" out=same.bin", u2+" out=same.bin")
			r1, r2 := oc.get(u1), oc.get(u2)
			winner, loser, want := r1, r2, body
			if jobs > 1 && r2.Status == download.StatusOK {
				winner, loser, want = r2, r1, other
			}
			if winner.Status != download.StatusOK || loser.Status != download.StatusFailed ||
				!errors.Is(loser.Err, download.ErrCollision) {
				t.Fatalf("jobs=%d: %s %v / %s %v, want ok / ErrCollision", jobs, r1.Status, r1.Err, r2.Status, r2.Err)
			}
			h.checkFile("same.bin", want)
			h.checkNoPartFiles()
		}
	})
	t.Run("collision with a file of an earlier run", func(t *testing.T) {
		t.Parallel()
		s := downloadtest.New(t)
		h := newHarness(t)
		u1 := s.Add("/one", body)
		u2 := s.Add("/two", payload(11, 99))
		h.run(download.Options{}, u1+" out=x")
		oc := h.run(download.Options{}, u2+" out=x")
		if r := oc.get(u2); r.Status != download.StatusFailed || !errors.Is(r.Err, download.ErrCollision) {
			t.Errorf("status %s err %v, want ErrCollision", r.Status, r.Err)
		}
		if n := s.Requests("/two"); n != 0 {
			t.Errorf("%d requests for the colliding URL, want 0", n)
		}
		h.checkFile("x", body)
	})
	t.Run("URLs differing only in their fragment are one resource", func(t *testing.T) {
		t.Parallel()
		s := downloadtest.New(t)
		h := newHarness(t)
		u := s.Add("/frag", body)
		for _, jobs := range []int{1, 2} {
			oc := h.run(download.Options{Jobs: jobs, Force: jobs == 2}, u+"#one", u+"#two")
			if st := oc.eng.Stats(); st.OK.Load()+st.Skipped.Load() != 2 || st.Failed.Load() != 0 {
				t.Errorf("jobs=%d: ok %d skipped %d failed %d", jobs, st.OK.Load(), st.Skipped.Load(), st.Failed.Load())
			}
			if r := oc.get(u + "#two"); r.Entry.URL != u+"#two" {
				t.Errorf("the URL is not kept as written: %q", r.Entry.URL)
			}
		}
		h.checkFile(strings.ReplaceAll(s.Host(), ":", "_")+"/frag", body)
	})
	t.Run("collision with a file that appears during the download", func(t *testing.T) {
		// Another process writes a different URL's file at the name after this
		// run found it free: that file is kept, this entry collides.
		t.Parallel()
		for _, noSync := range []bool{true, false} {
			s := downloadtest.New(t)
			h := newHarness(t)
			if !noSync {
				h = newSyncHarness(t)
			}
			theirs := payload(12, 777)
			u := s.Handle("/late", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				p := filepath.Join(h.dir, "x")
				if err := os.WriteFile(p, theirs, 0o644); err != nil {
					t.Error(err)
				}
				if err := unix.Setxattr(p, sink.OriginAttr, []byte("http://elsewhere/x"), 0); err != nil {
					t.Error(err)
				}
				w.Write(body)
			}))
			oc := h.run(download.Options{}, u+" out=x")
			if r := oc.get(u); r.Status != download.StatusFailed || !errors.Is(r.Err, download.ErrCollision) ||
				!strings.Contains(r.Err.Error(), "http://elsewhere/x") {
				t.Errorf("sync=%v: status %s err %v, want ErrCollision naming the other URL", !noSync, r.Status, r.Err)
			}
			h.checkFile("x", theirs)
			h.checkNoPartFiles()
		}
	})
	t.Run("re-run skips, Force re-downloads", func(t *testing.T) {
		t.Parallel()
		s := downloadtest.New(t)
		h := newHarness(t)
		var lines []string
		for i := range 5 {
			lines = append(lines, s.Add(fmt.Sprintf("/r%d", i), payload(uint64(20+i), 5000)))
		}
		withSum := s.Add("/sum", body)
		lines = append(lines, withSum+" sha256="+sha256Hex(body)+fmt.Sprintf(" size=%d", len(body)))
		h.run(download.Options{}, lines...)
		before := s.TotalRequests()

		oc := h.run(download.Options{}, lines...)
		if n := s.TotalRequests() - before; n != 0 {
			t.Errorf("re-run sent %d requests, want 0", n)
		}
		if st := oc.eng.Stats(); st.Skipped.Load() != 6 || st.OK.Load() != 0 {
			t.Errorf("re-run: skipped %d ok %d, want 6 and 0", st.Skipped.Load(), st.OK.Load())
		}
		r := oc.get(withSum)
		if r.SHA256 != sha256Hex(body) || r.Size != int64(len(body)) {
			t.Errorf("skipped entry: sha256 %q size %d, want the checked sum and size", r.SHA256, r.Size)
		}

		// Force: files written before this run are fetched again, even one
		// with a modification time in the future; files this run wrote (a URL
		// listed twice) are not. A run's sink tags what it writes.
		future := time.Now().Add(time.Hour)
		os.Chtimes(filepath.Join(h.dir, r.Name), future, future)
		before = s.TotalRequests()
		forced := newHarnessDir(t, h.dir, sink.FileOptions{NoSync: true, RunTag: "run-2"})
		oc = forced.run(download.Options{Force: true, RunTag: "run-2", Jobs: 1}, append(lines, lines[0])...)
		if n := s.TotalRequests() - before; n != 6 {
			t.Errorf("Force sent %d requests, want 6", n)
		}
		if st := oc.eng.Stats(); st.OK.Load() != 6 || st.Skipped.Load() != 1 {
			t.Errorf("Force: ok %d skipped %d, want 6 and 1 (the repeated line)", st.OK.Load(), st.Skipped.Load())
		}
	})
	t.Run("damaged file is fetched again", func(t *testing.T) {
		// The final file no longer matches size=/sha256=: not skipped.
		t.Parallel()
		s := downloadtest.New(t)
		h := newHarness(t)
		u := s.Add("/f", body)
		for _, fields := range []string{fmt.Sprintf("size=%d", len(body)), "sha256=" + sha256Hex(body)} {
			r := h.run(download.Options{}, u+" "+fields).get(u)
			p := filepath.Join(h.dir, filepath.FromSlash(r.Name))
			b := h.read(r.Name)
			if err := os.WriteFile(p, b[:len(b)-1], 0o644); err != nil {
				t.Fatal(err)
			}
			before := s.Requests("/f")
			r = h.run(download.Options{}, u+" "+fields).get(u)
			if r.Status != download.StatusOK || s.Requests("/f") != before+1 {
				t.Errorf("%s: status %s, %d new requests; want ok, 1", fields, r.Status, s.Requests("/f")-before)
			}
			h.checkFile(r.Name, body)
		}
	})
}

func TestEngineRedirects(t *testing.T) {
	t.Parallel()
	body := payload(12, 10_000)
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
	body := payload(13, 1000)
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
				lines = append(lines, busy.Add(fmt.Sprintf("/b%d", i), payload(uint64(i), 1000), d),
					other.Add(fmt.Sprintf("/o%d", i), payload(uint64(i), 1000), d))
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
			lines = append(lines, s.Add(fmt.Sprintf("/b%d", i), payload(uint64(i), 1000),
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
		b := payload(uint64(30+i), 64<<10)
		u := s.Add(fmt.Sprintf("/l%d", i), b, downloadtest.DropAfter(10_000, 1))
		lines = append(lines, u+" sha256="+sha256Hex(b))
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
// 48 KiB at 32 KiB/s comes in 16 KiB chunks 500 ms apart, with a 250 ms timeout.
func TestEngineLimitRateSlowerThanTimeout(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	h := newHarness(t)
	b := payload(35, 48<<10)
	u := s.Add("/slow", b)
	r := h.run(download.Options{LimitRate: 32 << 10, Timeout: 250 * time.Millisecond, Retries: 0}, u).get(u)
	if r.Status != download.StatusOK || r.Attempts != 1 {
		t.Fatalf("status %s attempts %d err %v, want ok at the first attempt", r.Status, r.Attempts, r.Err)
	}
	h.checkFile(r.Name, b)
}

// fnvShard is the spec's sharding function, written out independently of the
// engine: FNV-1a 64-bit of the URL as written, modulo n.
func fnvShard(url string, n int) int {
	h := fnv.New64a()
	h.Write([]byte(url))
	return int(h.Sum64() % uint64(n))
}

func TestShardOf(t *testing.T) {
	t.Parallel()
	// Fixed forever: any two versions of haul must split a list the same way.
	golden := []struct {
		url  string
		n    int
		want int
	}{
		{"http://example.com/a", 3, 0},                                 // FNV-1a 0x7fadbd6e96a526b0
		{"https://example.org/file.bin", 16, 12},                       // 0x8469a0e6a8de63cc
		{"http://127.0.0.1:8080/x?y=1", 7, 0},                          // 0x499b1b2d119082c3
		{"https://cdn.example.net/data/part-00042.parquet", 1000, 958}, // 0x8a65efc23f3832de
	}
	for _, g := range golden {
		if got := download.ShardOf(g.url, g.n); got != g.want {
			t.Errorf("ShardOf(%q, %d) = %d, want %d", g.url, g.n, got, g.want)
		}
	}
	for i := range 1000 {
		u := fmt.Sprintf("https://h%d.example/p/%d?q=%d", i%7, i, i*i)
		for _, n := range []int{1, 2, 3, 10, 1 << 20} {
			if got, want := download.ShardOf(u, n), fnvShard(u, n); got != want {
				t.Fatalf("ShardOf(%q, %d) = %d, want %d", u, n, got, want)
			}
		}
	}
}

func TestEngineShards(t *testing.T) {
	// Shards 0..2 of 3 over one list and one directory: every URL is fetched
	// exactly once, by the shard FNV-1a puts it in; bad lines are reported by
	// every shard.
	t.Parallel()
	s := downloadtest.New(t)
	h := newHarness(t)
	lines := []string{"not a url"}
	var urls []string
	for i := range 30 {
		u := s.Add(fmt.Sprintf("/s%02d", i), payload(uint64(40+i), 100))
		urls = append(urls, u)
		lines = append(lines, u)
	}
	count := make([]int, 3)
	for _, u := range urls {
		count[fnvShard(u, 3)]++
	}
	for k := range 3 {
		oc := h.run(download.Options{ShardK: k, ShardN: 3}, lines...)
		st := oc.eng.Stats()
		if st.OK.Load() != int64(count[k]) || st.Invalid.Load() != 1 || st.Queued.Load() != int64(count[k]) {
			t.Errorf("shard %d: ok %d invalid %d queued %d, want %d, 1, %d", k, st.OK.Load(),
				st.Invalid.Load(), st.Queued.Load(), count[k], count[k])
		}
		for _, u := range urls {
			if n := len(oc.all(u)); (n == 1) != (fnvShard(u, 3) == k) || n > 1 {
				t.Errorf("shard %d: %d results for %s (in shard %d)", k, n, u, fnvShard(u, 3))
			}
		}
	}
	for _, u := range urls {
		if n := s.Requests(u[len(s.URL):]); n != 1 {
			t.Errorf("%s requested %d times over the shards, want 1", u, n)
		}
	}
	if n := len(h.files()); n != 30 {
		t.Errorf("%d files in the shared directory, want 30", n)
	}
}

func TestEngineInvalidLines(t *testing.T) {
	// Bad lines are results with their line number; the rest of the list runs.
	t.Parallel()
	s := downloadtest.New(t)
	h := newHarness(t)
	u := s.Add("/ok", payload(50, 10))
	oc := h.run(download.Options{}, "ftp://x/y", "# comment", "", u, u+" bogus=1")
	var invalid []int
	for _, r := range oc.results {
		if r.Status == download.StatusInvalid {
			var le *download.LineError
			if !errors.As(r.Err, &le) {
				t.Errorf("invalid result with error %v, want *LineError", r.Err)
			}
			invalid = append(invalid, r.Entry.Line)
		}
	}
	if fmt.Sprint(invalid) != "[1 5]" {
		t.Errorf("invalid lines %v, want [1 5]", invalid)
	}
	if r := oc.get(u); r.Status != download.StatusOK {
		t.Errorf("good line: %s %v", r.Status, r.Err)
	}
}

// Cancellation tests are not parallel so that the goroutine count means something.

func TestEngineCancel(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries int // > Jobs: the feeder is blocked too; < Jobs: the whole list is in flight
	}{
		{"long list", 40},
		{"whole list in flight", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := runtime.NumGoroutine()
			t.Run("run", func(t *testing.T) {
				// Every body stalls after 1000 bytes until the client goes away.
				s := downloadtest.New(t)
				h := newHarness(t)
				var lines []string
				for i := range tc.entries {
					lines = append(lines, s.Add(fmt.Sprintf("/c%d", i), payload(uint64(i), 50_000),
						downloadtest.Stall(1000, time.Hour, downloadtest.Always)))
				}
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				const jobs = 4
				oc, wait := h.start(ctx, download.Options{Jobs: jobs, Timeout: time.Minute}, lines...)
				deadline := time.Now().Add(5 * time.Second)
				for s.TotalRequests() < min(jobs, tc.entries) || oc.eng.Stats().Bytes.Load() < int64(min(jobs, tc.entries))*1000 {
					if time.Now().After(deadline) {
						t.Fatalf("only %d requests started", s.TotalRequests())
					}
					time.Sleep(5 * time.Millisecond)
				}
				stopRun(t, cancel, wait)
				oc.mu.Lock()
				for _, r := range oc.results {
					if r.Status != download.StatusFailed || !errors.Is(r.Err, download.ErrInterrupted) {
						t.Errorf("%s: status %s err %v, want interrupted", r.Entry.URL, r.Status, r.Err)
					}
				}
				oc.mu.Unlock()
				for _, f := range h.files() {
					if !strings.HasSuffix(f, sink.PartSuffix) {
						t.Errorf("final file %s after cancel", f)
					}
				}
			})
			// The server and the client's connections are closed now.
			deadline := time.Now().Add(3 * time.Second)
			for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if n := runtime.NumGoroutine(); n > base {
				buf := make([]byte, 1<<16)
				t.Errorf("%d goroutines after the run, %d before:\n%s", n, base, buf[:runtime.Stack(buf, true)])
			}
		})
	}
}

// cancelAfter runs line until `after` body bytes have arrived (the server must
// stall there), then cancels the run, as Ctrl-C does.
func cancelAfter(t *testing.T, h *harness, line string, after int64) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	oc, wait := h.start(ctx, download.Options{Timeout: time.Minute}, line)
	deadline := time.Now().Add(5 * time.Second)
	for oc.eng.Stats().Bytes.Load() < after {
		if time.Now().After(deadline) {
			t.Fatalf("only %d bytes arrived", oc.eng.Stats().Bytes.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	wait()
	if !errors.Is(oc.err, context.Canceled) {
		// Whole list in flight: see TestEngineCancel.
		t.Logf("interrupted Run returned %v", oc.err)
	}
}

func TestEngineResumeAcrossRuns(t *testing.T) {
	// A run is interrupted after 100 000 bytes; the next run over the same
	// directory resumes the staging file with Range + If-Range when that is safe
	// (SPEC "Resume"), and starts over when it is not. The validator cases are in
	// resume_test.go (TestResumeAcrossRuns); these are the other ones.
	t.Parallel()
	const size, cut = 300_000, 100_000
	body := payload(60, size)
	changed := payload(61, 200_000)
	tests := []struct {
		name   string
		sync   bool                         // default sink instead of NoSync
		second func(s *downloadtest.Server) // changes the server between the runs
		line   func(u string) string        // the second run's line
		force  bool
		want   []byte
		ranges []string // Range headers of the second run
	}{
		{name: "resumes with the sync sink", sync: true, want: body, ranges: []string{"bytes=100000-"}},
		// The kept prefix is hashed from disk so sha256= covers the whole file.
		{name: "resumes and verifies sha256=", line: func(u string) string { return u + " sha256=" + sha256Hex(body) },
			want: body, ranges: []string{"bytes=100000-"}},
		// Replaced on the server (new ETag) between the runs: If-Range fails.
		{name: "replaced on the server restarts", line: func(u string) string { return u + " sha256=" + sha256Hex(changed) },
			second: func(s *downloadtest.Server) { s.Add("/big", changed) },
			want:   changed, ranges: []string{"bytes=100000-"}},
		{name: "Force restarts", force: true, want: body, ranges: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := downloadtest.New(t)
			h := newHarness(t)
			if tc.sync {
				h = newSyncHarness(t)
			}
			u := s.Add("/big", body, downloadtest.Stall(cut, time.Hour, 1))
			cancelAfter(t, h, u, cut)
			if fs := h.files(); len(fs) != 1 || !strings.HasSuffix(fs[0], sink.PartSuffix) {
				t.Fatalf("after the interrupted run: files %q, want one staging file", fs)
			}
			if tc.second != nil {
				tc.second(s)
			}
			before := len(s.RangeRequests("/big"))
			line := u
			if tc.line != nil {
				line = tc.line(u)
			}
			r := h.run(download.Options{Force: tc.force}, line).get(u)
			if r.Status != download.StatusOK {
				t.Fatalf("status %s err %v", r.Status, r.Err)
			}
			h.checkFile(r.Name, tc.want)
			if got := s.RangeRequests("/big")[before:]; strings.Join(got, ",") != strings.Join(tc.ranges, ",") {
				t.Errorf("second run's Range requests %q, want %q", got, tc.ranges)
			}
			h.checkNoPartFiles()
		})
	}
	t.Run("another URL's staging file is not spliced", func(t *testing.T) {
		// Same out=, different URL: the kept bytes belong to another file.
		t.Parallel()
		s := downloadtest.New(t)
		h := newHarness(t)
		u1 := s.Add("/one", body, downloadtest.Stall(cut, time.Hour, 1))
		u2 := s.Add("/two", changed)
		cancelAfter(t, h, u1+" out=x.bin", cut)
		r := h.run(download.Options{}, u2+" out=x.bin").get(u2)
		if r.Status != download.StatusOK {
			t.Fatalf("status %s err %v", r.Status, r.Err)
		}
		h.checkFile("x.bin", changed)
		if got := s.RangeRequests("/two"); len(got) != 0 {
			t.Errorf("Range requests %q for the other URL, want none", got)
		}
	})
}

func TestEngineTwoRunsOneDir(t *testing.T) {
	// Two engines with their own sinks on one directory act like two haul
	// processes: the second waits for the staging file the first has locked,
	// then finds the file done and skips it, without a request of its own.
	t.Parallel()
	s := downloadtest.New(t)
	dir := t.TempDir()
	h1 := newHarnessDir(t, dir, sink.FileOptions{NoSync: true})
	h2 := newHarnessDir(t, dir, sink.FileOptions{NoSync: true})
	body := payload(62, 100_000)
	u := s.Add("/shared", body, downloadtest.Stall(10_000, 400*time.Millisecond, 1))
	oc1, wait1 := h1.start(context.Background(), download.Options{}, u)
	deadline := time.Now().Add(5 * time.Second)
	for oc1.eng.Stats().Bytes.Load() < 10_000 {
		if time.Now().After(deadline) {
			t.Fatal("first run did not start")
		}
		time.Sleep(5 * time.Millisecond)
	}
	oc2 := h2.run(download.Options{}, u)
	wait1()
	if r := oc1.get(u); r.Status != download.StatusOK {
		t.Fatalf("first run: %s %v", r.Status, r.Err)
	}
	if r := oc2.get(u); r.Status != download.StatusSkipped {
		t.Errorf("second run: %s %v, want skipped", r.Status, r.Err)
	}
	if n := s.Requests("/shared"); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
	h1.checkFile(oc1.get(u).Name, body)
}

func TestEngineNilHeaderResume(t *testing.T) {
	// Options.Header is optional (zero values are defaults), so a resume must not
	// need it.
	t.Parallel()
	s := downloadtest.New(t)
	h := newHarness(t)
	body := payload(61, 100_000)
	u := s.Add("/f", body, downloadtest.DropAfter(1000, 1))
	var got atomic.Pointer[download.Result]
	eng := download.New(h.client, h.sink, download.Options{RetryBase: time.Millisecond,
		OnResult: func(r *download.Result) { got.Store(r) }})
	if err := eng.Run(context.Background(), input.NewScanner(strings.NewReader(u))); err != nil {
		t.Fatal(err)
	}
	if r := got.Load(); r == nil || r.Status != download.StatusOK {
		t.Fatalf("result %+v", r)
	}
	h.checkFile(got.Load().Name, body)
}

func TestEngineTLS(t *testing.T) {
	t.Parallel()
	body := payload(70, 200_000)
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

func TestEngineStoredAsServed(t *testing.T) {
	// Content-Encoding: gzip is stored as the gzip bytes the server published,
	// and the client does not ask for compression.
	t.Parallel()
	gz := payload(71, 5000) // stands for gzip data: it must not be touched
	s := downloadtest.New(t)
	u := s.Add("/f.gz", gz, downloadtest.Header("Content-Encoding", "gzip"))
	h := newHarness(t)
	r := h.run(download.Options{}, u).get(u)
	if r.Status != download.StatusOK {
		t.Fatalf("status %s err %v", r.Status, r.Err)
	}
	h.checkFile(r.Name, gz)
	req := s.Log("/f.gz")[0]
	if ae := req.Header.Get("Accept-Encoding"); ae != "" {
		t.Errorf("Accept-Encoding %q sent, want none", ae)
	}
	if ua := req.Header.Get("User-Agent"); ua != "haul-test" {
		t.Errorf("User-Agent %q, want the Options.Header one", ua)
	}
}

func TestEngineNeverSplice(t *testing.T) {
	t.Parallel()
	body := payload(72, 100_000)
	t.Run("206 at the wrong offset", func(t *testing.T) {
		// The first answer dies after 1000 bytes; the ranged retry gets a 206
		// that starts at 0, not 1000: that must not be appended. The entry
		// starts over and arrives intact.
		t.Parallel()
		s := downloadtest.New(t)
		var n atomic.Int32
		u := s.Handle("/f", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("ETag", `"e"`)
			switch n.Add(1) {
			case 1:
				w.Header().Set("Content-Length", fmt.Sprint(len(body)))
				w.Write(body[:1000])
				http.NewResponseController(w).Flush()
				panic(http.ErrAbortHandler)
			case 2:
				w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-%d/%d", len(body)-1, len(body)))
				w.WriteHeader(http.StatusPartialContent)
				w.Write(body)
			default:
				w.Write(body)
			}
		}))
		h := newHarness(t)
		r := h.run(download.Options{Retries: 2}, u).get(u)
		if r.Status != download.StatusOK {
			t.Fatalf("status %s err %v", r.Status, r.Err)
		}
		h.checkFile(r.Name, body)
		if log := s.Log("/f"); len(log) != 3 || log[2].Range != "" {
			t.Errorf("%d requests (last Range %q), want 3 ending in a full GET", len(log), log[len(log)-1].Range)
		}
	})
	t.Run("redirected file resumes at its target", func(t *testing.T) {
		t.Parallel()
		s := downloadtest.New(t)
		s.Add("/to", body, downloadtest.DropAfter(30_000, 1))
		u := s.Add("/from", nil, downloadtest.Redirect("/to", downloadtest.Always))
		h := newHarness(t)
		r := h.run(download.Options{}, u).get(u)
		if r.Status != download.StatusOK {
			t.Fatalf("status %s err %v", r.Status, r.Err)
		}
		h.checkFile(r.Name, body)
		if got := s.RangeRequests("/to"); len(got) != 1 || got[0] != "bytes=30000-" {
			t.Errorf("Range requests at the target %q, want [bytes=30000-]", got)
		}
	})
	t.Run("chunked body dropped restarts", func(t *testing.T) {
		// No Content-Length and no Range support: the retry starts over.
		t.Parallel()
		s := downloadtest.New(t)
		u := s.Add("/f", body, downloadtest.NoContentLength(), downloadtest.DropAfter(40_000, 1))
		h := newHarness(t)
		r := h.run(download.Options{}, u).get(u)
		if r.Status != download.StatusOK || r.Attempts != 2 {
			t.Fatalf("status %s attempts %d err %v", r.Status, r.Attempts, r.Err)
		}
		h.checkFile(r.Name, body)
	})
}

// A collision with a URL in flight names that URL without its password.
func TestEngineCollisionMessageRedacted(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	s.Add("/x", payload(3, 1000), downloadtest.Delay(300*time.Millisecond))
	first := strings.Replace(s.URL, "://", "://alice:s3cret@", 1) + "/x?a=1"
	second := s.URL + "/x%3Fa=1" // the same name in the tree layout
	// The filler keeps the second worker busy while the first claims the name.
	filler := s.Add("/filler", payload(5, 100), downloadtest.Delay(100*time.Millisecond))
	h := newHarness(t)
	oc := h.run(download.Options{Jobs: 2}, first, filler, second)
	r := oc.get(second)
	if !errors.Is(r.Err, download.ErrCollision) {
		t.Fatalf("second: %s %v, want a collision", r.Status, r.Err)
	}
	if strings.Contains(r.Err.Error(), "s3cret") {
		t.Errorf("the collision message shows the password: %v", r.Err)
	}
}

// The same failing URL listed many times is fetched for one entry only: the
// others fail at once with its error, instead of each going through its retries
// while holding a worker.
func TestEngineDuplicateFailuresFetchedOnce(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	bad := s.Add("/bad", nil, downloadtest.Status(500, downloadtest.Always))
	good := s.Add("/good", payload(4, 1000))
	lines := []string{bad, bad, bad, good + " out=g", bad, bad, bad}
	h := newHarness(t)
	oc := h.run(download.Options{Jobs: 2, Retries: 2}, lines...)
	failed := 0
	for _, r := range oc.results {
		if r.Entry.URL == bad {
			var se *download.StatusError
			if r.Status != download.StatusFailed || !errors.As(r.Err, &se) || se.Code != 500 {
				t.Errorf("%s: %s %v, want the 500", r.Entry.URL, r.Status, r.Err)
			}
			failed++
		}
	}
	if failed != 6 {
		t.Errorf("%d results for the bad URL, want 6", failed)
	}
	if got := s.Requests("/bad"); got != 3 {
		t.Errorf("%d requests for the bad URL, want 3 (one entry's attempts)", got)
	}
	h.checkFile("g", payload(4, 1000))
}
