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
	"github.com/haul/haul/sink"
)

// interrupt runs the engine over url until at least n body bytes arrived, then
// cancels it, as Ctrl-C would. The server must stall after those bytes.
func (h *harness) interrupt(url string, n int64) {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	oc, wait := h.start(ctx, download.Options{}, url)
	deadline := time.Now().Add(10 * time.Second)
	for oc.eng.Stats().Bytes.Load() < n {
		if time.Now().After(deadline) {
			h.t.Fatalf("only %d of %d bytes arrived", oc.eng.Stats().Bytes.Load(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
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
	body := payload(7, size)
	newBody := payload(8, size)
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
	body := payload(9, 50_000)
	t.Run("CompleteAnswers416", func(t *testing.T) {
		// Every byte is already here: the server answers 416 and haul just finishes.
		s := downloadtest.New(t)
		url := s.Add("/a", body, downloadtest.ETag("e1"))
		h := newHarness(t)
		h.plantPart("x/a", url, body, fmt.Sprintf("v1 %d %d %d \"e1\"", len(body), len(body), len(body)))
		oc := h.run(download.Options{}, url+" out=x/a sha256="+sha256Hex(body))
		if r := oc.get(url); r.Status != download.StatusOK || r.SHA256 != sha256Hex(body) {
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
		oc := h.run(download.Options{}, url+" out=x/b sha256="+sha256Hex(body))
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
	body := payload(10, 1000)
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
	oc, wait := h.start(context.Background(), download.Options{}, url+" out=x/l")
	time.Sleep(400 * time.Millisecond)
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
	body := payload(31, 200_000)
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
	body := payload(31, 20000)
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
