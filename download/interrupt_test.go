package download_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/haul/haul/download"
	"github.com/haul/haul/download/downloadtest"
	"github.com/haul/haul/internal/testutil"
	"github.com/haul/haul/sink"
)

// Ctrl-C while an entry is parked in its retry loop: Run returns at once, the
// entry is reported once, as interrupted, and its bytes stay for the next run.
func TestEngineHostPauseParkedInterrupt(t *testing.T) {
	t.Parallel()
	busy, other := downloadtest.New(t), downloadtest.New(t)
	h := newHarness(t)
	body := testutil.Payload(80, 5000)
	a := dropThenBusy(busy, "/a", body, "60")
	b := other.Add("/b", testutil.Payload(81, 1000))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	oc, wait := h.start(ctx, download.Options{Jobs: 1, Retries: 2}, a, b)
	// With one worker, /b is done only once /a is out of its way (parked for
	// its host's pause of a minute).
	testutil.WaitFor(t, "/b, held up by the other host's pause", func() bool { return len(oc.all(b)) > 0 })
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

func TestEngineCancel(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries int // > Jobs: the feeder is blocked too; < Jobs: the whole list is in flight
	}{
		{"long list", 40},
		{"whole list in flight", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			alive := testutil.TrackGoroutines(t)
			t.Run("run", func(t *testing.T) {
				// Every body stalls after 1000 bytes until the client goes away.
				s := downloadtest.New(t)
				h := newHarness(t)
				var lines []string
				for i := range tc.entries {
					lines = append(lines, s.Add(fmt.Sprintf("/c%d", i), testutil.Payload(uint64(i), 50_000),
						downloadtest.Stall(1000, time.Hour, downloadtest.Always)))
				}
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				const jobs = 4
				oc, wait := h.start(ctx, download.Options{Jobs: jobs, Timeout: time.Minute}, lines...)
				testutil.WaitFor(t, "a stalled body on every job", func() bool {
					return s.TotalRequests() >= min(jobs, tc.entries) && oc.eng.Stats().Bytes.Load() >= int64(min(jobs, tc.entries))*1000
				})
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
			// The server and the client's connections are closed now: every
			// goroutine the run started ends (those of tests running beside
			// it are not counted).
			testutil.Until(t, func() error {
				if left := alive(); len(left) > 0 {
					return fmt.Errorf("%d goroutines of the run left:\n%s", len(left), strings.Join(left, "\n\n"))
				}
				return nil
			})
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
	testutil.WaitFor(t, fmt.Sprintf("%d bytes of body", after), func() bool { return oc.eng.Stats().Bytes.Load() >= after })
	cancel()
	wait()
	if !errors.Is(oc.err, context.Canceled) {
		// Whole list in flight: see TestEngineCancel.
		t.Logf("interrupted Run returned %v", oc.err)
	}
}

// Ctrl-C reports every entry that was read from the list, also those no worker
// had taken yet (waiting in the channel, or set aside before they started
// because their host was paused): a manifest filtered to failures must hold
// them, as must the summary when the whole list had been read.
func TestEngineCancelReportsEntriesNotStarted(t *testing.T) {
	t.Parallel()
	t.Run("waiting for a worker", func(t *testing.T) {
		t.Parallel()
		s := downloadtest.New(t)
		h := newHarness(t)
		var lines []string
		for i := range 3 {
			lines = append(lines, s.Add(fmt.Sprintf("/w%d", i), testutil.Payload(uint64(i), 50_000),
				downloadtest.Stall(1000, time.Hour, downloadtest.Always)))
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		// One worker, on the first; the second waits in the channel, the third
		// in the list's reader (which then reads to the end).
		oc, wait := h.start(ctx, download.Options{Jobs: 1, Timeout: time.Minute}, lines...)
		testutil.WaitFor(t, "the first body", func() bool { return oc.eng.Stats().Bytes.Load() >= 1000 })
		stopRun(t, cancel, wait)
		for _, u := range lines {
			r := oc.get(u) // exactly one result each
			if r.Status != download.StatusFailed || !errors.Is(r.Err, download.ErrInterrupted) {
				t.Errorf("%s: status %s err %v, want interrupted", u, r.Status, r.Err)
			}
		}
		if st := oc.eng.Stats(); st.InFlight.Load() != 0 || st.Failed.Load() != 3 {
			t.Errorf("after Run: %d in flight, %d failed; want 0 and 3", st.InFlight.Load(), st.Failed.Load())
		}
	})
	t.Run("set aside for the host's pause", func(t *testing.T) {
		t.Parallel()
		busy, other := downloadtest.New(t), downloadtest.New(t)
		h := newHarness(t)
		a := busy.Add("/a", testutil.Payload(90, 100), downloadtest.Status(503, downloadtest.Always), downloadtest.RetryAfter("60"))
		b := busy.Add("/b", testutil.Payload(91, 100))
		c := busy.Add("/c", testutil.Payload(92, 100))
		d := other.Add("/d", testutil.Payload(93, 100))
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		oc, wait := h.start(ctx, download.Options{Jobs: 1, Retries: 3}, a, b, c, d)
		testutil.WaitFor(t, "/d, held up by the other host's pause", func() bool { return len(oc.all(d)) > 0 })
		stopRun(t, cancel, wait)
		if n := busy.Requests("/b") + busy.Requests("/c"); n != 0 {
			t.Errorf("%d requests to /b and /c during the host's pause", n)
		}
		for _, u := range []string{a, b, c} {
			r := oc.get(u)
			if r.Status != download.StatusFailed || !errors.Is(r.Err, download.ErrInterrupted) {
				t.Errorf("%s: status %s err %v, want interrupted", u, r.Status, r.Err)
			}
		}
	})
}

// slowSource is a list read from a pipe whose writer is slow: its second
// line (an entry, or second when set) comes only once release is closed;
// asked is closed when it is asked for.
type slowSource struct {
	base    string
	n       int
	second  error
	asked   chan struct{}
	release chan struct{}
}

func (s *slowSource) Next() (download.Entry, error) {
	s.n++
	switch s.n {
	case 1:
	case 2:
		close(s.asked)
		<-s.release
		if s.second != nil {
			return download.Entry{}, s.second
		}
	default:
		return download.Entry{}, io.EOF
	}
	return download.Entry{URL: fmt.Sprintf("%s/x%d", s.base, s.n), Size: -1, Line: s.n}, nil
}

// failedDir is an item of a list that yields no entries.
type failedDir struct{ url string }

func (d failedDir) Error() string { return "listing " + d.url + " failed" }
func (d failedDir) SourceFailure() (string, int, int, error) {
	return d.url, 2, 500, errors.New("listing failed")
}

// OnResult is never called after Run returns, even when the list's reader
// (which Ctrl-C cannot interrupt) reads another line afterwards, be it an
// entry, a bad line or an item that failed: the caller has closed its
// manifest and printed its summary by then.
func TestEngineNoResultAfterRun(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		second func(base string) error
	}{
		{"entry", func(string) error { return nil }},
		{"bad line", func(string) error { return &download.LineError{Line: 2, Reason: "bad"} }},
		{"failed item", func(base string) error { return failedDir{base + "/dir/"} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			alive := testutil.TrackGoroutines(t)
			s := downloadtest.New(t)
			started := make(chan struct{})
			s.Handle("/x1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				close(started)
				<-r.Context().Done()
			}))
			h := newHarness(t)
			var runDone, late atomic.Bool
			src := &slowSource{base: s.URL, second: tc.second(s.URL), asked: make(chan struct{}), release: make(chan struct{})}
			ctx, cancel := context.WithCancel(context.Background())
			eng := download.New(h.client, h.sink, fastOptions(download.Options{Jobs: 2, OnResult: func(r *download.Result) {
				if runDone.Load() {
					late.Store(true)
				}
			}}))
			go func() {
				// Ctrl-C while line 1 is in flight and the reader waits for line 2.
				<-started
				<-src.asked
				cancel()
			}()
			if err := eng.Run(ctx, src); !errors.Is(err, context.Canceled) {
				t.Errorf("Run: %v", err)
			}
			runDone.Store(true)
			queued := eng.Stats().Queued.Load()
			close(src.release)
			testutil.WaitFor(t, "the list's reader to end", func() bool {
				for _, g := range alive() {
					if strings.Contains(g, "(*Engine).feed") {
						return false
					}
				}
				return true
			})
			if late.Load() || eng.Stats().Queued.Load() != queued {
				t.Errorf("a result came after Run returned (queued %d, then %d)", queued, eng.Stats().Queued.Load())
			}
		})
	}
}
