package download_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/haul/haul/download"
	"github.com/haul/haul/download/downloadtest"
	"github.com/haul/haul/internal/testutil"
	"github.com/haul/haul/sink"
)

// inode returns the final file's inode and modification time.
func (h *harness) inode(name string) (uint64, time.Time) {
	h.t.Helper()
	fi, err := os.Stat(filepath.Join(h.dir, filepath.FromSlash(name)))
	if err != nil {
		h.t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino, fi.ModTime()
}

// --update asks with the ETag recorded when haul wrote the file: a 304 leaves
// it as it is (same inode, same modification time: not rewritten), a changed
// file is replaced.
func TestUpdateETag(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	v1, v2 := testutil.Payload(30, 70_000), testutil.Payload(31, 90_000)
	// Three runs see v1 (the download, two questions); then the file changes.
	u := s.Add("/f", v1, downloadtest.ETag("e1"), downloadtest.ChangeAfter(3, v2, "e2"))
	h := newHarness(t)
	r := h.run(download.Options{Update: true}, u).get(u)
	if r.Status != download.StatusOK {
		t.Fatalf("first run: %s %v", r.Status, r.Err)
	}
	ino, mt := h.inode(r.Name)
	h.clockPast(mt) // a rewrite would show in the modification time
	for i := range 2 {
		r = h.run(download.Options{Update: true}, u).get(u)
		if r.Status != download.StatusUnchanged || r.Size != int64(len(v1)) {
			t.Fatalf("run %d over an unchanged file: %s size %d %v", i+2, r.Status, r.Size, r.Err)
		}
		if ino2, mt2 := h.inode(r.Name); ino2 != ino || !mt2.Equal(mt) {
			t.Errorf("an unchanged file was rewritten (inode %d→%d, mtime %v→%v)", ino, ino2, mt, mt2)
		}
	}
	log := s.Log("/f")
	if got := log[len(log)-1].Header.Get("If-None-Match"); got != `"e1"` {
		t.Errorf("asked If-None-Match %q, want the recorded \"e1\"", got)
	}
	r = h.run(download.Options{Update: true}, u).get(u)
	if r.Status != download.StatusOK {
		t.Fatalf("run over a changed file: %s %v", r.Status, r.Err)
	}
	h.checkFile(r.Name, v2)
	h.checkNoPartFiles()
	// Without --update the file is skipped without a request.
	n := s.Requests("/f")
	if r := h.run(download.Options{}, u).get(u); r.Status != download.StatusSkipped || s.Requests("/f") != n {
		t.Errorf("without --update: %s after %d requests", r.Status, s.Requests("/f")-n)
	}
}

// A server that gives no ETag is asked with the Last-Modified it gave; a file
// haul did not write, with its modification time (as wget -N).
func TestUpdateLastModified(t *testing.T) {
	t.Parallel()
	mod := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	body := testutil.Payload(32, 5000)
	s := downloadtest.New(t)
	u := s.Add("/f", body, downloadtest.NoValidator(), downloadtest.LastModified(mod))
	h := newHarness(t)
	r := h.run(download.Options{}, u).get(u)
	if r.Status != download.StatusOK {
		t.Fatal(r.Status, r.Err)
	}
	if r := h.run(download.Options{Update: true}, u).get(u); r.Status != download.StatusUnchanged {
		t.Fatalf("--update: %s %v", r.Status, r.Err)
	}
	log := s.Log("/f")
	if got := log[len(log)-1].Header.Get("If-Modified-Since"); got != mod.Format(http1Time) {
		t.Errorf("asked If-Modified-Since %q, want the recorded %q", got, mod.Format(http1Time))
	}

	t.Run("a file haul did not write", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			mtime  time.Time
			status download.Status
		}{
			{"newer than the server's", mod.Add(time.Hour), download.StatusUnchanged},
			{"older than the server's", mod.Add(-time.Hour), download.StatusOK},
		} {
			// There before the run, as another tool's file is.
			dir := t.TempDir()
			p := filepath.Join(dir, "theirs")
			if err := os.WriteFile(p, []byte("another tool's bytes"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(p, tc.mtime, tc.mtime); err != nil {
				t.Fatal(err)
			}
			h := newHarnessDir(t, dir, sink.FileOptions{NoSync: true})
			r := h.run(download.Options{Update: true}, u+" out=theirs").get(u)
			if r.Status != tc.status {
				t.Errorf("%s: %s %v, want %s", tc.name, r.Status, r.Err, tc.status)
			}
			log := s.Log("/f")
			if got := log[len(log)-1].Header.Get("If-Modified-Since"); got != tc.mtime.Format(http1Time) {
				t.Errorf("%s: asked If-Modified-Since %q, want the file's mtime", tc.name, got)
			}
			if tc.status == download.StatusOK {
				h.checkFile("theirs", body)
			}
		}
	})
}

const http1Time = "Mon, 02 Jan 2006 15:04:05 GMT"

// A line whose sha256= the file on disk matches pins the content: --update
// asks nothing. One that does not match fetches the file.
func TestUpdatePinnedBySHA256(t *testing.T) {
	t.Parallel()
	body := testutil.Payload(33, 4000)
	s := downloadtest.New(t)
	u := s.Add("/f", body)
	h := newHarness(t)
	h.run(download.Options{}, u)
	n := s.Requests("/f")
	r := h.run(download.Options{Update: true}, u+" sha256="+testutil.SHA256Hex(body)).get(u)
	if r.Status != download.StatusSkipped || s.Requests("/f") != n {
		t.Errorf("pinned: %s after %d requests, want skipped without one", r.Status, s.Requests("/f")-n)
	}
}

// An update interrupted mid-body leaves the old file whole and readable under
// its name, and the new one resumable: the next --update resumes it (a Range,
// no conditional question) and replaces the old file only once it is whole.
func TestUpdateInterrupted(t *testing.T) {
	t.Parallel()
	v1, v2 := testutil.Payload(34, 50_000), testutil.Payload(35, 400_000)
	s := downloadtest.New(t)
	// The first run gets v1; from the second request on v2, stalling after
	// 300 kB once.
	u := s.Add("/f", v1, downloadtest.ETag("e1"), downloadtest.ChangeAfter(1, v2, "e2"),
		downloadtest.Stall(300_000, time.Hour, 2)) // one firing per request: the first (v1) spends one
	h := newSyncHarness(t) // checkpoints: the bytes of v2 are kept durable
	r := h.run(download.Options{}, u).get(u)
	if r.Status != download.StatusOK {
		t.Fatal(r.Status, r.Err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	oc, wait := h.start(ctx, download.Options{Update: true, Timeout: time.Minute}, u)
	testutil.WaitFor(t, "the new body", func() bool { return oc.eng.Stats().Bytes.Load() >= 300_000 })
	h.checkFile(r.Name, v1) // readable, whole, the old one, while the new one arrives
	cancel()
	wait()
	if r := oc.get(u); !errors.Is(r.Err, download.ErrInterrupted) {
		t.Fatalf("interrupted update: %s %v", r.Status, r.Err)
	}
	h.checkFile(r.Name, v1)
	parts := 0
	for _, f := range h.files() {
		if strings.HasSuffix(f, ".part") {
			parts++
		}
	}
	if parts != 1 {
		t.Fatalf("files after the interruption: %v, want the old file and one .part", h.files())
	}
	r = h.run(download.Options{Update: true}, u).get(u)
	if r.Status != download.StatusOK {
		t.Fatalf("resumed update: %s %v", r.Status, r.Err)
	}
	h.checkFile(r.Name, v2)
	h.checkNoPartFiles()
	log := s.Log("/f")
	last := log[len(log)-1]
	if last.Range == "" || last.Header.Get("If-None-Match") != "" {
		t.Errorf("the resumed update asked Range %q If-None-Match %q: want a resume of the new body",
			last.Range, last.Header.Get("If-None-Match"))
	}
}

// --dry-run asks nothing and writes nothing: each entry is skipped, or planned
// with what a run would do and why.
func TestDryRun(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	done, small, big, fresh := testutil.Payload(40, 1000), testutil.Payload(41, 1000), testutil.Payload(42, 500_000), testutil.Payload(43, 10)
	uDone := s.Add("/done", done)
	uSmall := s.Add("/small", small)
	uBig := s.Add("/big", big, downloadtest.Stall(200_000, time.Hour, 1))
	uFresh := s.Add("/fresh", fresh)
	h := newSyncHarness(t)
	h.run(download.Options{}, uDone, uSmall)
	cancelAfter(t, h, uBig, 200_000) // a partial with a checkpoint
	before := h.files()
	n := s.TotalRequests()
	oc := h.run(download.Options{DryRun: true},
		uDone,            // done
		uSmall+" size=5", // on disk, another size
		uSmall+" out=x sha256="+testutil.SHA256Hex(small), // missing under that name
		uBig,   // partial
		uFresh, // missing
		uDone+" sha256="+strings.Repeat("0", 64)) // the hash differs
	if s.TotalRequests() != n {
		t.Errorf("--dry-run made %d requests", s.TotalRequests()-n)
	}
	if after := h.files(); strings.Join(after, "\n") != strings.Join(before, "\n") {
		t.Errorf("--dry-run changed the directory:\n%v\n%v", before, after)
	}
	want := map[string]string{ // URL+fields → plan: reason prefix
		uDone:              "",
		uSmall + " size=5": "replace: size differs: 1000 on disk, size= says 5",
		uSmall + " out=x sha256=" + testutil.SHA256Hex(small): "fetch: missing",
		uBig:   "resume: partial at byte ",
		uFresh: "fetch: missing",
		uDone + " sha256=" + strings.Repeat("0", 64): "replace: sha256 differs",
	}
	if len(oc.results) != len(want) {
		t.Fatalf("%d results, want %d", len(oc.results), len(want))
	}
	for _, r := range oc.results {
		key := r.Entry.URL
		switch {
		case r.Entry.Out != "":
			key += " out=" + r.Entry.Out + " sha256=" + r.Entry.SHA256
		case r.Entry.Size >= 0:
			key += " size=5"
		case r.Entry.SHA256 != "":
			key += " sha256=" + r.Entry.SHA256
		}
		w, ok := want[key]
		if !ok {
			t.Errorf("unexpected result for %s", key)
			continue
		}
		if w == "" {
			if r.Status != download.StatusSkipped {
				t.Errorf("%s: %s %s: %s, want skipped", key, r.Status, r.Plan, r.Reason)
			}
			continue
		}
		if got := r.Plan + ": " + r.Reason; r.Status != download.StatusPlanned || !strings.HasPrefix(got, w) {
			t.Errorf("%s: %s %q, want planned %q", key, r.Status, got, w)
		}
	}
	if st := oc.eng.Stats(); st.Planned.Load() != 5 || st.Skipped.Load() != 1 {
		t.Errorf("stats: %d planned, %d skipped", st.Planned.Load(), st.Skipped.Load())
	}
	// With --update, a file on disk is a question for the server.
	oc = h.run(download.Options{DryRun: true, Update: true}, uDone)
	if r := oc.get(uDone); r.Plan != "check" || !strings.Contains(r.Reason, "If-None-Match") {
		t.Errorf("--dry-run --update: %s %q", r.Plan, r.Reason)
	}
}

// --update over a file changed on disk since haul wrote it (truncated,
// rewritten in place by another tool): its recorded ETag describes what haul
// wrote, so the file is fetched again without asking, not kept on a 304.
func TestUpdateFileChangedOnDisk(t *testing.T) {
	t.Parallel()
	body := testutil.Payload(36, 100_000) // over 64 KiB: its length at the commit is recorded
	s := downloadtest.New(t)
	u := s.Add("/f", body)
	h := newHarness(t)
	r := h.run(download.Options{}, u).get(u)
	p := filepath.Join(h.dir, filepath.FromSlash(r.Name))
	if err := os.WriteFile(p, []byte("garbage"), 0o644); err != nil { // same inode, xattrs kept
		t.Fatal(err)
	}
	oc := h.run(download.Options{Update: true, DryRun: true}, u)
	if r := oc.get(u); r.Plan != "replace" || !strings.Contains(r.Reason, "changed on disk") {
		t.Errorf("--dry-run -N: %s %q", r.Plan, r.Reason)
	}
	if r := h.run(download.Options{Update: true}, u).get(u); r.Status != download.StatusOK {
		t.Fatalf("-N: %s %v", r.Status, r.Err)
	}
	h.checkFile(r.Name, body)
	log := s.Log("/f")
	if inm := log[len(log)-1].Header.Get("If-None-Match"); inm != "" {
		t.Errorf("asked If-None-Match %q about a file changed on disk", inm)
	}
}

// An entry set aside for its host's pause decides again from the disk when it
// comes back: a file removed meanwhile is fetched, not asked about (and so
// never reported unchanged while nothing is at its name).
func TestUpdateDecidesAgainAfterPause(t *testing.T) {
	t.Parallel()
	body := testutil.Payload(37, 5000)
	s := downloadtest.New(t)
	var n atomic.Int32
	var final string
	u := s.Handle("/f", http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		switch n.Add(1) {
		case 1:
			w.Header().Set("ETag", `"e1"`)
			w.Write(body)
		case 2: // -N's question: busy, and the file goes meanwhile
			os.Remove(final)
			w.Header().Set("Retry-After", "1")
			http.Error(w, "busy", http.StatusServiceUnavailable)
		default:
			if req.Header.Get("If-None-Match") != "" {
				w.WriteHeader(http.StatusNotModified) // true of what haul wrote, not of the disk
				return
			}
			w.Header().Set("ETag", `"e1"`)
			w.Write(body)
		}
	}))
	h := newHarness(t)
	r := h.run(download.Options{}, u).get(u)
	final = filepath.Join(h.dir, filepath.FromSlash(r.Name))
	r = h.run(download.Options{Update: true, Retries: 2}, u).get(u)
	if r.Status != download.StatusOK {
		t.Fatalf("-N after the file went during the pause: %s %v", r.Status, r.Err)
	}
	h.checkFile(r.Name, body)
}

// A small file (no attribute beyond its origin) rewritten in place by another
// tool is fetched again by --update, not kept on a 304 to If-Modified-Since:
// its modification time is no longer the Last-Modified haul set.
func TestUpdateSmallFileChangedOnDisk(t *testing.T) {
	t.Parallel()
	body := testutil.Payload(38, 1000)
	s := downloadtest.New(t)
	u := s.Add("/f", body, downloadtest.LastModified(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)))
	h := newHarness(t)
	r := h.run(download.Options{}, u).get(u)
	if r := h.run(download.Options{Update: true}, u).get(u); r.Status != download.StatusUnchanged {
		t.Fatalf("-N over the untouched file: %s %v", r.Status, r.Err)
	}
	if err := os.WriteFile(filepath.Join(h.dir, filepath.FromSlash(r.Name)), []byte("another tool"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := h.run(download.Options{Update: true}, u).get(u); r.Status != download.StatusOK {
		t.Fatalf("-N over the rewritten file: %s %v", r.Status, r.Err)
	}
	h.checkFile(r.Name, body)
}

// clockPast waits until a file written now in the harness's directory gets a
// modification time after mt: from then on a rewrite shows.
func (h *harness) clockPast(mt time.Time) {
	h.t.Helper()
	probe := filepath.Join(h.dir, ".clock")
	defer os.Remove(probe)
	testutil.WaitFor(h.t, "the filesystem's clock to pass "+mt.String(), func() bool {
		if err := os.WriteFile(probe, nil, 0o644); err != nil {
			h.t.Fatal(err)
		}
		fi, err := os.Stat(probe)
		return err == nil && fi.ModTime().After(mt)
	})
}
