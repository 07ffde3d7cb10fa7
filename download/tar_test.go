package download_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/haul/haul/download"
	"github.com/haul/haul/download/downloadtest"
	"github.com/haul/haul/download/input"
	"github.com/haul/haul/download/naming"
	"github.com/haul/haul/sink"
)

// runTar runs the engine over lines into tar files in dir (a sink opened
// for the run and finished after it, as haul --tar does).
func runTar(h *harness, dir string, o download.Options, lines ...string) *outcome {
	h.t.Helper()
	s, err := sink.NewTar(dir, sink.TarOptions{NoSync: true})
	if err != nil {
		h.t.Fatal(err)
	}
	oc := &outcome{t: h.t}
	o = fastOptions(o)
	o.Tar = true
	o.OnResult = func(r *download.Result) {
		oc.mu.Lock()
		oc.results = append(oc.results, r)
		oc.mu.Unlock()
	}
	oc.eng = download.New(h.client, s, o)
	oc.err = oc.eng.Run(context.Background(), input.NewScanner(strings.NewReader(strings.Join(lines, "\n"))))
	if err := s.Close(oc.err == nil); err != nil {
		h.t.Fatal(err)
	}
	return oc
}

// A sample already in a tar is skipped without a request; another URL
// under its key is a collision, and a stored sample that fails the list's
// size= fails its entry (a finished tar is never rewritten), without a
// request either.
func TestEngineTarSkipsStoredSamples(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	h := newHarness(t)
	dir := t.TempDir()
	a, b := payload(1, 3000), payload(2, 5000)
	ua, ub := s.Add("/a.jpg", a), s.Add("/b.png", b)
	oc := runTar(h, dir, download.Options{}, ua+" key=a", ub)
	for _, u := range []string{ua, ub} {
		if r := oc.get(u); r.Status != download.StatusOK || r.Tar != "00000.tar" {
			t.Fatalf("%s: %s in %q: %v", u, r.Status, r.Tar, r.Err)
		}
	}
	if r := oc.get(ub); r.Sample != "000000001" || r.Member != "000000001.png" {
		t.Errorf("%s stored as %s (%s)", ub, r.Member, r.Sample)
	}

	oc = runTar(h, dir, download.Options{}, ua+" key=a", ub)
	for _, u := range []string{ua, ub} {
		if r := oc.get(u); r.Status != download.StatusSkipped || r.Tar != "00000.tar" || r.Size == 0 {
			t.Errorf("re-run: %s: %s in %q, %d bytes: %v", u, r.Status, r.Tar, r.Size, r.Err)
		}
	}
	if n := s.Requests("/a.jpg") + s.Requests("/b.png"); n != 2 {
		t.Errorf("%d requests in all, want 2 (none on the re-run)", n)
	}

	uc := s.Add("/c.jpg", payload(3, 10))
	oc = runTar(h, dir, download.Options{}, uc+" key=a", ub+" size=4999")
	if r := oc.get(uc); r.Status != download.StatusFailed || !errors.Is(r.Err, download.ErrCollision) {
		t.Errorf("another URL under a stored key: %s, %v", r.Status, r.Err)
	}
	if r := oc.get(ub); r.Status != download.StatusFailed || !errors.Is(r.Err, download.ErrStoredDiffers) || !strings.Contains(r.Err.Error(), "00000.tar") {
		t.Errorf("a stored sample failing size=: %s, %v", r.Status, r.Err)
	}
	if n := s.Requests("/c.jpg") + s.Requests("/b.png"); n != 1 {
		t.Errorf("%d requests for the collision and the stored sample, want only b's first", n)
	}
}

// --checksums names a sample's hash by the path --layout tree would give
// it: a body that fails it is not stored, one that passes carries it.
func TestEngineTarChecksumsByTreePath(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	h := newHarness(t)
	good, bad := payload(4, 2000), payload(5, 2000)
	ug, ub := s.Add("/d/good.bin", good), s.Add("/d/bad.bin", bad)
	sum := sha256.Sum256(good)
	sums := map[string]string{}
	for u, v := range map[string]string{ug: hex.EncodeToString(sum[:]), ub: strings.Repeat("0", 64)} {
		name, err := naming.LayoutTree.Name(u)
		if err != nil {
			t.Fatal(err)
		}
		sums[name] = v
	}
	oc := runTar(h, t.TempDir(), download.Options{Checksums: mapChecksums(sums)}, ug, ub)
	if r := oc.get(ug); r.Status != download.StatusOK || r.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("%s: %s, sha256 %q: %v", ug, r.Status, r.SHA256, r.Err)
	}
	if r := oc.get(ub); r.Status != download.StatusFailed || !errors.Is(r.Err, download.ErrBadChecksum) || r.Tar != "" {
		t.Errorf("%s: %s in %q: %v", ub, r.Status, r.Tar, r.Err)
	}
}

type mapChecksums map[string]string

func (m mapChecksums) Lookup(p string) (string, error) { return m[p], nil }

// heldTar is a Tar sink whose commits end only at a Flush, as those of a
// sink that makes samples durable in batches of its own timing do (a tar
// in a bucket stores its last samples seconds after they stop coming).
type heldTar struct {
	*sink.Tar
	mu   sync.Mutex
	held []func()
}

type sampleWriter interface {
	sink.Writer
	sink.SampleWriter
}

type heldWriter struct {
	sampleWriter
	h *heldTar
}

func (h *heldTar) Create(name, origin string) (sink.Writer, error) {
	w, err := h.Tar.Create(name, origin)
	if err != nil {
		return nil, err
	}
	return &heldWriter{w.(sampleWriter), h}, nil
}

func (w *heldWriter) Commit(done func(error)) {
	w.sampleWriter.Commit(func(err error) {
		w.h.mu.Lock()
		defer w.h.mu.Unlock()
		w.h.held = append(w.h.held, func() { done(err) })
	})
}

func (h *heldTar) Flush() {
	h.Tar.Flush()
	h.mu.Lock()
	held := h.held
	h.held = nil
	h.mu.Unlock()
	for _, f := range held {
		f()
	}
}

// The same URL listed twice under one key waits for the first line's
// sample to be durable, and has the sink make it durable then, rather than
// wait for the sink to do so on its own: the run ends, the first line
// stored, the second skipped.
func TestEngineTarDuplicateLineFlushesTheSampleItWaitsFor(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	h := newHarness(t)
	ts, err := sink.NewTar(t.TempDir(), sink.TarOptions{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	held := &heldTar{Tar: ts}
	u := s.Add("/a.jpg", payload(1, 3000))
	var mu sync.Mutex
	var results []*download.Result
	o := fastOptions(download.Options{Jobs: 2})
	o.Tar = true
	o.OnResult = func(r *download.Result) {
		mu.Lock()
		results = append(results, r)
		mu.Unlock()
	}
	eng := download.New(h.client, held, o)
	if err := eng.Run(context.Background(), input.NewScanner(strings.NewReader(u+" key=a\n"+u+" key=a"))); err != nil {
		t.Fatal(err)
	}
	if err := ts.Close(true); err != nil {
		t.Fatal(err)
	}
	statuses := map[download.Status]int{}
	for _, r := range results {
		statuses[r.Status]++
	}
	if len(results) != 2 || statuses[download.StatusOK] != 1 || statuses[download.StatusSkipped] != 1 {
		t.Errorf("results %v, want one ok and one skipped", statuses)
	}
	if n := s.Requests("/a.jpg"); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
}
