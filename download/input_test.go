package download_test

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/haul/haul/download"
	"github.com/haul/haul/download/downloadtest"
	"github.com/haul/haul/internal/testutil"
	"github.com/haul/haul/sink"
)

func TestEngineDuplicates(t *testing.T) {
	t.Parallel()
	body := testutil.Payload(9, 30_000)
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
			other := testutil.Payload(10, 1234)
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
		u2 := s.Add("/two", testutil.Payload(11, 99))
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
			theirs := testutil.Payload(12, 777)
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
			lines = append(lines, s.Add(fmt.Sprintf("/r%d", i), testutil.Payload(uint64(20+i), 5000)))
		}
		withSum := s.Add("/sum", body)
		lines = append(lines, withSum+" sha256="+testutil.SHA256Hex(body)+fmt.Sprintf(" size=%d", len(body)))
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
		if r.SHA256 != testutil.SHA256Hex(body) || r.Size != int64(len(body)) {
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
		for _, fields := range []string{fmt.Sprintf("size=%d", len(body)), "sha256=" + testutil.SHA256Hex(body)} {
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

// fnvShard is --shard's documented function, written out independently of the
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
		u := s.Add(fmt.Sprintf("/s%02d", i), testutil.Payload(uint64(40+i), 100))
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
	u := s.Add("/ok", testutil.Payload(50, 10))
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

// A collision with a URL in flight names that URL without its password.
func TestEngineCollisionMessageRedacted(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	first := strings.Replace(s.URL, "://", "://alice:s3cret@", 1) + "/x?a=1"
	second := s.URL + "/x%3Fa=1" // the same name in the tree layout
	var ocp atomic.Pointer[outcome]
	// The first is in flight until the second has its result.
	s.Handle("/x", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for oc := ocp.Load(); oc == nil || len(oc.all(second)) == 0; oc = ocp.Load() {
			select {
			case <-r.Context().Done():
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
		w.Write(testutil.Payload(3, 1000))
	}))
	// The filler keeps the second worker busy until the first has claimed
	// the name (its request came).
	filler := s.Handle("/filler", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for s.Requests("/x") == 0 {
			select {
			case <-r.Context().Done():
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
		w.Write(testutil.Payload(5, 100))
	}))
	h := newHarness(t)
	oc, wait := h.start(context.Background(), download.Options{Jobs: 2}, first, filler, second)
	ocp.Store(oc)
	if wait(); oc.err != nil {
		t.Fatalf("Run: %v", oc.err)
	}
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
	good := s.Add("/good", testutil.Payload(4, 1000))
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
	h.checkFile("g", testutil.Payload(4, 1000))
}

// A failure remembered for a URL is replayed only onto lines that would fail
// the same way: a later line of the URL with other checks (the right sha256=,
// another size=) is fetched and can succeed.
func TestEngineDuplicateFailureNotReplayedOnOtherChecks(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	body := testutil.Payload(6, 2000)
	u := s.Add("/f", body)
	wrong := strings.Repeat("0", 64)
	h := newHarness(t)
	oc := h.run(download.Options{Jobs: 1},
		u+" sha256="+wrong,                    // fails its check
		u+" sha256="+wrong,                    // the same question: replayed, no request
		u+" size=5",                           // another question: asked
		u+" sha256="+testutil.SHA256Hex(body), // the right answer
		u+" sha256="+testutil.SHA256Hex(body), // done: skipped from disk
	)
	rs := oc.all(u)
	if len(rs) != 5 {
		t.Fatalf("%d results, want 5", len(rs))
	}
	want := []download.Status{download.StatusFailed, download.StatusFailed, download.StatusFailed,
		download.StatusOK, download.StatusSkipped}
	for i, r := range rs {
		if r.Status != want[i] {
			t.Errorf("line %d (%s): %s %v, want %s", r.Entry.Line, r.Entry.URL, r.Status, r.Err, want[i])
		}
	}
	if !errors.Is(rs[0].Err, download.ErrBadChecksum) || !errors.Is(rs[2].Err, download.ErrBadLength) {
		t.Errorf("errors: %v; %v", rs[0].Err, rs[2].Err)
	}
	if got := s.Requests("/f"); got != 3 {
		t.Errorf("%d requests, want 3 (the replayed line and the skipped one ask nothing)", got)
	}
	h.checkFile(rs[3].Name, body)
}
