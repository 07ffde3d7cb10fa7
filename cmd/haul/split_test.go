package main

// Split downloads (--split) killed with SIGKILL at random moments, then run
// again: every file at a final name is right, every time, and the re-run
// fetches only what the staging files did not record as durable.

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/haul/haul/internal/testutil"
)

// pacedServer serves files with http.ServeContent (ranges, If-Range, ETag),
// each connection paced to about rate bytes per second, and counts the body
// bytes written and the requests.
type pacedServer struct {
	*httptest.Server
	files  map[string][]byte
	rate   int
	served atomic.Int64
	mu     sync.Mutex
	reqs   []string // "PATH RANGE"
}

func newPacedServer(t *testing.T, files map[string][]byte, rate int) *pacedServer {
	s := &pacedServer{files: files, rate: rate}
	s.Server = httptest.NewServer(s)
	t.Cleanup(s.Close)
	return s
}

func (s *pacedServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	data, ok := s.files[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	s.mu.Lock()
	s.reqs = append(s.reqs, r.URL.Path+" "+r.Header.Get("Range"))
	s.mu.Unlock()
	w.Header().Set("ETag", fmt.Sprintf(`"%x"`, len(data)))
	http.ServeContent(&pacedWriter{ResponseWriter: w, s: s}, r, "", time.Time{}, bytes.NewReader(data))
}

func (s *pacedServer) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.reqs...)
}

type pacedWriter struct {
	http.ResponseWriter
	s *pacedServer
}

// Write sends p at the rate.
func (w *pacedWriter) Write(p []byte) (int, error) {
	return testutil.WritePaced(w.ResponseWriter, p, w.s.rate, func(m int) { w.s.served.Add(int64(m)) })
}

// durable returns the byte ranges [start, end) of the staging file part that
// its resume record says are durable (none without a file or a record).
func durable(t *testing.T, part string) [][2]int64 {
	buf := make([]byte, 4096)
	n, err := unix.Getxattr(part, "user.haul.resume", buf)
	if err != nil {
		return nil
	}
	f := strings.Fields(string(buf[:n]))
	switch {
	case len(f) >= 4 && f[0] == "v1":
		v, _ := strconv.ParseInt(f[2], 10, 64)
		if v == 0 {
			return nil
		}
		return [][2]int64{{0, v}}
	case len(f) >= 4 && f[0] == "v2":
		if f[2] == "-" {
			return nil
		}
		var have [][2]int64
		for _, r := range strings.Split(f[2], ",") {
			var a, b int64
			fmt.Sscanf(r, "%d-%d", &a, &b)
			have = append(have, [2]int64{a, b})
		}
		return have
	}
	t.Fatalf("%s: resume record %q", part, buf[:n])
	return nil
}

// asksDurable reports whether a request for rng (a Range header's value, ""
// for the whole body) asks for a byte of have: its first byte, or any byte
// when the range has an end. (An open range may run over durable bytes: its
// reader stops where they begin.)
func asksDurable(rng string, have [][2]int64) bool {
	start, end := int64(0), int64(-1)
	if rng != "" {
		if _, err := fmt.Sscanf(rng, "bytes=%d-%d", &start, &end); err != nil {
			end = -1
		}
	}
	for _, r := range have {
		if start >= r[0] && start < r[1] || end >= 0 && start < r[1] && end >= r[0] {
			return true
		}
	}
	return false
}

func TestSplitKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("50 rounds of kill -9")
	}
	const (
		rounds = 50
		size   = 1 << 20
		nfiles = 3
	)
	files := map[string][]byte{}
	var urls []string
	for i := range nfiles {
		p := fmt.Sprintf("/f%d.bin", i)
		files[p] = testutil.Payload(uint64(10+i), size)
	}
	s := newPacedServer(t, files, 1<<20) // about 0.25 s per file over 4 connections
	for i := range nfiles {
		urls = append(urls, fmt.Sprintf("%s/f%d.bin", s.URL, i))
	}
	list := writeList(t, urls...)
	host := strings.Replace(strings.TrimPrefix(s.URL, "http://"), ":", "_", 1)
	// Checkpoints every 64 KiB: a kill then loses little, and the bound on
	// the re-run below is tight.
	args := func(dir string) []string {
		return []string{"-q", "-d", dir, "-i", list, "--split", "4", "--min-split-size", "64K", "--retries", "2", "--checkpoint", "64K"}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	split, resumed := 0, 0
	var allMissing, allAgain int64
	for round := range rounds {
		dir := t.TempDir()
		before := len(s.requests())
		ctx, cancel := haulContext(t)
		h := spawnHaul(t, ctx, cancel, args(dir)...)
		cmd, exited, done := h.cmd, h.exited, h.ended
		// Killed mid-transfer by what the server saw, not after a random
		// time (on a loaded machine haul may not have sent a request by
		// then): once the round's first piece was asked for (the file is
		// split) and then a random 384 KiB to 1.9 MiB more of the 3 MiB were
		// sent.
		waitFor(t, func() bool { return done() || pieceAsked(s.requests()[before:]) })
		from, extra := s.served.Load(), int64(384<<10+rng.IntN(7)*256<<10)
		waitFor(t, func() bool { return done() || s.served.Load()-from >= extra })
		cmd.Process.Signal(unix.SIGKILL)
		<-exited
		cancel()
		if pieceAsked(s.requests()[before:]) {
			split++
		}
		// Whatever is at a final name is right.
		missing := int64(0)
		kept := map[string][][2]int64{}
		for p, data := range files {
			final := filepath.Join(dir, host, strings.TrimPrefix(p, "/"))
			if got, err := os.ReadFile(final); err == nil {
				if !bytes.Equal(got, data) {
					t.Fatalf("round %d: %s at its final name differs from the served file", round, final)
				}
				continue
			}
			kept[p] = durable(t, final+".part")
			have := int64(0)
			for _, r := range kept[p] {
				have += r[1] - r[0]
			}
			if have > 0 {
				resumed++
			}
			missing += int64(len(data)) - have
		}
		sent := s.served.Load()
		reqs := len(s.requests())
		r := runHaul(t, nil, args(dir)...)
		wantCode(t, r, exitOK)
		want := map[string][]byte{}
		for p, data := range files {
			want[host+p] = data
		}
		checkFiles(t, dir, want)
		again := s.served.Load() - sent
		allMissing, allAgain = allMissing+missing, allAgain+again
		// No request of the re-run asks for a byte the staging files
		// recorded as durable. (What it fetched in bytes is no bound: a
		// piece that stops when another takes half of its range leaves
		// what the server already sent in the socket's buffers, as much as
		// the server sent while haul waited for a CPU.)
		for _, req := range s.requests()[reqs:] {
			p, rng, _ := strings.Cut(req, " ")
			if asksDurable(rng, kept[p]) {
				t.Errorf("round %d: the re-run asked for %s %q, which was durable: %v", round, p, rng, kept[p])
			}
		}
	}
	t.Logf("%d rounds: %d split before the kill, %d files resumed from a record; re-runs fetched %d bytes, %d were missing",
		rounds, split, resumed, allAgain, allMissing)
	if split < rounds/2 || resumed < rounds/2 {
		t.Errorf("only %d rounds split and %d files resumed: the kills did not land mid-transfer", split, resumed)
	}
}

// pieceAsked reports whether one of the requests (path and Range) asked for
// a piece of a split file: a closed range.
func pieceAsked(reqs []string) bool {
	for _, q := range reqs {
		if strings.Contains(q, "bytes=") && !strings.HasSuffix(q, "-") {
			return true
		}
	}
	return false
}

// --split, --min-split-size and --checkpoint are checked.
func TestSplitFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--split", "0"},
		{"--min-split-size", "1"},
		{"--min-split-size", "lots"},
		{"--checkpoint", "1K"},
		{"--checkpoint", "-4M"},
	} {
		r := runHaul(t, nil, append(args, "-d", t.TempDir(), "http://127.0.0.1:1/x")...)
		wantCode(t, r, exitUsage)
	}
}
