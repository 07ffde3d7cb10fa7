package download_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/haul/haul/download"
	"github.com/haul/haul/download/downloadtest"
	"github.com/haul/haul/download/input"
	"github.com/haul/haul/internal/testutil"
	"github.com/haul/haul/sink"
)

// interrupt runs the engine over url until at least n body bytes arrived, then
// cancels it, as Ctrl-C would. The server must stall after those bytes.
func (h *harness) interrupt(url string, n int64) {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	oc, wait := h.start(ctx, download.Options{}, url)
	testutil.WaitFor(h.t, fmt.Sprintf("%d body bytes", n), func() bool { return oc.eng.Stats().Bytes.Load() >= n })
	cancel()
	if oc = wait(); oc.err != context.Canceled {
		h.t.Fatalf("interrupted Run returned %v, want context.Canceled", oc.err)
	}
}

// plantPart writes a staging file as an interrupted run would have left it.
func (h *harness) plantPart(name, origin string, body []byte, resume string) {
	h.t.Helper()
	p := filepath.Join(h.dir, filepath.FromSlash(name)) + sink.PartSuffix
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(p, body, 0o644); err != nil {
		h.t.Fatal(err)
	}
	for k, v := range map[string]string{sink.OriginAttr: origin, "user.haul.resume": resume} {
		if v != "" {
			if err := unix.Setxattr(p, k, []byte(v), 0); err != nil {
				h.t.Fatal(err)
			}
		}
	}
}

func TestResumeAcrossRuns(t *testing.T) {
	const size, cut = 300_000, 100_000
	body := testutil.Payload(7, size)
	newBody := testutil.Payload(8, size)
	lastMod := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := []struct {
		name      string
		opts      []downloadtest.FileOption
		want      []byte
		wantRange bool // the second run asks for the rest only
	}{
		{"StrongETag", nil, body, true},
		{"LastModifiedOnly", []downloadtest.FileOption{downloadtest.NoValidator(), downloadtest.LastModified(lastMod)}, body, true},
		// Resuming needs a validator: without one the file restarts from zero.
		{"NoValidator", []downloadtest.FileOption{downloadtest.NoValidator()}, body, false},
		// A Last-Modified not a second older than Date is weak (the file may
		// change again within that second): no resume on it.
		{"LastModifiedNotOlderThanDate", []downloadtest.FileOption{downloadtest.NoValidator(),
			downloadtest.LastModified(time.Now().Add(time.Hour))}, body, false},
		// The content changed between runs: If-Range fails, the server sends it all.
		{"ChangedETag", []downloadtest.FileOption{downloadtest.ChangeAfter(1, newBody, "v2")}, newBody, true},
		// A server that ignores Range answers 200: a clean restart, not a splice.
		{"IgnoresRange", []downloadtest.FileOption{downloadtest.IgnoreRange()}, body, true},
		// Changed, and If-Range ignored: the 206 of the new body carries the new
		// ETag (or Last-Modified), which must not be appended to the old bytes.
		{"ChangedIgnoresIfRange", []downloadtest.FileOption{downloadtest.ChangeAfter(1, newBody, "v2"),
			downloadtest.IgnoreIfRange()}, newBody, true},
		{"ChangedLastModifiedIgnoresIfRange", []downloadtest.FileOption{downloadtest.NoValidator(),
			downloadtest.LastModified(lastMod), downloadtest.ChangeAfter(1, newBody, ""), downloadtest.IgnoreIfRange()},
			newBody, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := downloadtest.New(t)
			opts := append([]downloadtest.FileOption{downloadtest.Stall(cut, time.Minute, 1)}, tc.opts...)
			url := s.Add("/f.bin", body, opts...)
			h := newHarness(t)
			h.interrupt(url, cut)
			name := s.Host() // tree layout: HOST_PORT/f.bin
			name = strings.ReplaceAll(name, ":", "_") + "/f.bin"
			sent := s.BodyBytes()

			oc := h.run(download.Options{}, url)
			if r := oc.get(url); r.Status != download.StatusOK {
				t.Fatalf("second run: %s %v", r.Status, r.Err)
			}
			h.checkFile(name, tc.want)
			h.checkNoPartFiles()
			ranges := s.RangeRequests("/f.bin")
			again := s.BodyBytes() - sent
			if tc.wantRange {
				if len(ranges) != 1 || !strings.HasPrefix(ranges[0], "bytes=") {
					t.Fatalf("Range requests %q, want one", ranges)
				}
				if tc.name == "StrongETag" || tc.name == "LastModifiedOnly" {
					if again > size-cut {
						t.Errorf("re-run fetched %d bytes, want at most the missing %d", again, size-cut)
					}
				}
			} else if len(ranges) != 0 {
				t.Fatalf("Range requests %q without a validator", ranges)
			}
		})
	}
}

func TestResumePlantedPartial(t *testing.T) {
	body := testutil.Payload(9, 50_000)
	t.Run("CompleteAnswers416", func(t *testing.T) {
		// Every byte is already here: the server answers 416 and haul just finishes.
		s := downloadtest.New(t)
		url := s.Add("/a", body, downloadtest.ETag("e1"))
		h := newHarness(t)
		h.plantPart("x/a", url, body, fmt.Sprintf("v1 %d %d %d \"e1\"", len(body), len(body), len(body)))
		oc := h.run(download.Options{}, url+" out=x/a sha256="+testutil.SHA256Hex(body))
		if r := oc.get(url); r.Status != download.StatusOK || r.SHA256 != testutil.SHA256Hex(body) {
			t.Fatalf("got %s %v sha %s", r.Status, r.Err, r.SHA256)
		}
		h.checkFile("x/a", body)
		if s.BodyBytes() > 1000 { // the 416's short error text, not the file
			t.Errorf("server sent %d body bytes for a complete partial", s.BodyBytes())
		}
	})
	t.Run("LongerThanServed416", func(t *testing.T) {
		// The kept bytes outrun the file (its length was never known): the 416
		// restarts the file instead of failing it on every run.
		s := downloadtest.New(t)
		url := s.Add("/c", body, downloadtest.ETag("e1"))
		h := newHarness(t)
		long := append(append([]byte{}, body...), body[:10_000]...)
		h.plantPart("x/c", url, long, fmt.Sprintf("v1 %d %d -1 \"e1\"", len(long), len(long)))
		oc := h.run(download.Options{}, url+" out=x/c")
		if r := oc.get(url); r.Status != download.StatusOK {
			t.Fatalf("got %s %v", r.Status, r.Err)
		}
		h.checkFile("x/c", body)
		if rs := s.RangeRequests("/c"); len(rs) != 1 || s.Requests("/c") != 2 {
			t.Errorf("Range requests %q of %d requests, want the one Range then one whole GET", rs, s.Requests("/c"))
		}
	})
	t.Run("DurableTailOnly", func(t *testing.T) {
		// After a power loss the file may be longer than what was made durable:
		// only the durable prefix is trusted, and it is covered by the hash.
		s := downloadtest.New(t)
		url := s.Add("/b", body, downloadtest.ETag("e1"))
		h := newHarness(t)
		junk := append(append([]byte{}, body[:20_000]...), make([]byte, 10_000)...)
		h.plantPart("x/b", url, junk, fmt.Sprintf("v1 20000 20000 %d \"e1\"", len(body)))
		oc := h.run(download.Options{}, url+" out=x/b sha256="+testutil.SHA256Hex(body))
		if r := oc.get(url); r.Status != download.StatusOK {
			t.Fatalf("got %s %v", r.Status, r.Err)
		}
		h.checkFile("x/b", body)
		if got := s.RangeRequests("/b"); len(got) != 1 || got[0] != "bytes=20000-" {
			t.Errorf("Range requests %q, want [bytes=20000-]", got)
		}
	})
	t.Run("OtherOrigin", func(t *testing.T) {
		// A staging file another URL left behind is never continued.
		s := downloadtest.New(t)
		url := s.Add("/c", body, downloadtest.ETag("e1"))
		h := newHarness(t)
		h.plantPart("x/c", "http://elsewhere/c", body[:20_000], "v1 20000 20000 50000 \"e1\"")
		h.run(download.Options{}, url+" out=x/c")
		h.checkFile("x/c", body)
		if got := s.RangeRequests("/c"); len(got) != 0 {
			t.Errorf("Range requests %q for another URL's partial", got)
		}
	})
	t.Run("Force", func(t *testing.T) {
		s := downloadtest.New(t)
		url := s.Add("/d", body, downloadtest.ETag("e1"))
		h := newHarness(t)
		h.plantPart("x/d", url, body[:20_000], "v1 20000 20000 50000 \"e1\"")
		h.run(download.Options{Force: true}, url+" out=x/d")
		h.checkFile("x/d", body)
		if got := s.RangeRequests("/d"); len(got) != 0 {
			t.Errorf("--force resumed: Range requests %q", got)
		}
	})
}

// Another process holds the staging file: the engine waits for it, and when that
// process has finished the file, skips the entry without a request.
func TestResumeLockedByAnotherProcess(t *testing.T) {
	body := testutil.Payload(10, 1000)
	s := downloadtest.New(t)
	url := s.Add("/l", body)
	h := newHarness(t)
	h.plantPart("x/l", url, nil, "")
	part := filepath.Join(h.dir, "x", "l"+sink.PartSuffix)
	// flock locks belong to open file descriptions: this one stands for the
	// other process.
	f, err := os.OpenFile(part, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	alive := testutil.TrackGoroutines(t)
	oc, wait := h.start(context.Background(), download.Options{}, url+" out=x/l")
	testutil.WaitFor(t, "the entry to wait for the lock", func() bool {
		for _, g := range alive() {
			if strings.Contains(g, "(*entry).openStaging") && strings.Contains(g, "retry.Sleep") {
				return true
			}
		}
		return false
	})
	if oc.eng.Stats().OK.Load()+oc.eng.Stats().Failed.Load() != 0 || s.Requests("/l") != 0 {
		t.Fatal("the engine did not wait for the lock")
	}
	// The other process finishes: writes the file, renames it, lets go.
	f.Write(body)
	unix.Fsetxattr(int(f.Fd()), sink.OriginAttr, []byte(url), 0)
	os.Rename(part, filepath.Join(h.dir, "x", "l"))
	f.Close()
	oc = wait()
	if r := oc.get(url); r.Status != download.StatusSkipped {
		t.Fatalf("got %s %v, want skipped", r.Status, r.Err)
	}
	if s.Requests("/l") != 0 {
		t.Errorf("%d requests, want 0", s.Requests("/l"))
	}
	h.checkFile("x/l", body)
}

// A server that answers a resume with ranges short of the end, with an unknown
// total ("bytes A-B/*"), is asked for the rest until the announced length is
// there: never a truncated file taken as complete.
func TestResumeShortRanges(t *testing.T) {
	body := testutil.Payload(31, 200_000)
	s := downloadtest.New(t)
	var first atomic.Bool
	url := s.Handle("/p.bin", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"p1"`)
		rng := r.Header.Get("Range")
		if rng == "" {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.Write(body[:len(body)/2])
			if !first.Swap(true) {
				panic(http.ErrAbortHandler) // the connection drops halfway
			}
			w.Write(body[len(body)/2:])
			return
		}
		from, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(rng, "bytes="), "-"))
		to := min(from+30_000, len(body))
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/*", from, to-1))
		w.Header().Set("Content-Length", strconv.Itoa(to-from))
		w.WriteHeader(http.StatusPartialContent)
		w.Write(body[from:to])
	}))
	h := newHarness(t)
	oc := h.run(download.Options{}, url+" out=p")
	if r := oc.get(url); r.Status != download.StatusOK || r.Size != int64(len(body)) {
		t.Fatalf("%s %v, size %d", r.Status, r.Err, r.Size)
	}
	h.checkFile("p", body)
	if n := len(s.RangeRequests("/p.bin")); n != 4 { // 100,000 bytes left in pieces of 30,000
		t.Errorf("%d Range requests, want 4", n)
	}
}

// A 200 that carries a partial Content-Range (a server answering a resume's
// Range so) is not the whole file: the file starts over without Range instead of
// being committed as that part.
func TestResume200WithContentRange(t *testing.T) {
	t.Parallel()
	body := testutil.Payload(31, 20000)
	var n atomic.Int32
	s := downloadtest.New(t)
	url := s.Handle("/f", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"v1"`)
		switch {
		case n.Add(1) == 1: // the first answer drops half-way
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.Write(body[:len(body)/2])
			panic(http.ErrAbortHandler)
		case r.Header.Get("Range") != "":
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", len(body)/2, len(body)-1, len(body)))
			w.Write(body[len(body)/2:]) // with 200 OK
		default:
			w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-%d/%d", len(body)-1, len(body))) // whole: harmless
			w.Write(body)
		}
	}))
	h := newHarness(t)
	oc := h.run(download.Options{}, url+" out=f")
	if r := oc.get(url); r.Status != download.StatusOK {
		t.Fatalf("%s %v", r.Status, r.Err)
	}
	h.checkFile("f", body)
	if got := n.Load(); got != 3 {
		t.Errorf("%d requests, want 3 (drop, 200 with a part, whole file)", got)
	}
}

func TestEngineResume(t *testing.T) {
	t.Parallel()
	const size = 300_000
	body := testutil.Payload(6, size)
	changed := testutil.Payload(7, 250_000)
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

func TestEngineResumeAcrossRuns(t *testing.T) {
	// A run is interrupted after 100 000 bytes; the next run over the same
	// directory resumes the staging file with Range + If-Range when that is safe
	// (SPEC "Resume"), and starts over when it is not. The validator cases are in
	// resume_test.go (TestResumeAcrossRuns); these are the other ones.
	t.Parallel()
	const size, cut = 300_000, 100_000
	body := testutil.Payload(60, size)
	changed := testutil.Payload(61, 200_000)
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
		{name: "resumes and verifies sha256=", line: func(u string) string { return u + " sha256=" + testutil.SHA256Hex(body) },
			want: body, ranges: []string{"bytes=100000-"}},
		// Replaced on the server (new ETag) between the runs: If-Range fails.
		{name: "replaced on the server restarts", line: func(u string) string { return u + " sha256=" + testutil.SHA256Hex(changed) },
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
	body := testutil.Payload(62, 100_000)
	u := s.Add("/shared", body, downloadtest.Stall(10_000, 400*time.Millisecond, 1))
	oc1, wait1 := h1.start(context.Background(), download.Options{}, u)
	testutil.WaitFor(t, "the first run's body", func() bool { return oc1.eng.Stats().Bytes.Load() >= 10_000 })
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
	body := testutil.Payload(61, 100_000)
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

func TestEngineNeverSplice(t *testing.T) {
	t.Parallel()
	body := testutil.Payload(72, 100_000)
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

// A partial file whose recorded validator cannot be sent back in If-Range (a
// control byte: kept by an older haul, or damaged) is started over, not
// retried as a network failure on every run.
func TestResumeUnsendableValidatorStartsOver(t *testing.T) {
	t.Parallel()
	body := testutil.Payload(12, 50_000)
	s := downloadtest.New(t)
	url := s.Add("/v", body)
	h := newHarness(t)
	h.plantPart("x/v", url, body[:20_000], "v1 20000 20000 50000 \"e\x01\"")
	oc := h.run(download.Options{Retries: 1}, url+" out=x/v")
	if r := oc.get(url); r.Status != download.StatusOK {
		t.Fatalf("got %s %v", r.Status, r.Err)
	}
	h.checkFile("x/v", body)
	for _, rq := range s.Log("/v") {
		if rq.Range != "" {
			t.Errorf("a request asked Range %q with a validator it cannot send", rq.Range)
		}
	}
}
