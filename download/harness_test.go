package download_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/haul/haul/download"
	"github.com/haul/haul/download/downloadtest"
	"github.com/haul/haul/download/httpclient"
	"github.com/haul/haul/download/input"
	"github.com/haul/haul/internal/testutil"
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
// context.Canceled. That it returns at once is checked by what its callers
// wait on: stalls of an hour, pauses of a minute, which a Run that did not
// stop would wait out (and report other than as interrupted).
func stopRun(t *testing.T, cancel func(), wait func() *outcome) {
	t.Helper()
	cancel()
	oc := wait()
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
	c, err := httpclient.New(httpclient.Options{Jobs: 8, ConnectTimeout: patientTimeout})
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
	start   time.Time          // when the run started (runStamped)
}

// patientTimeout is the tests' --timeout and --connect-timeout unless they
// set their own: what a loaded machine with the race detector never reaches
// between two reads of a working transfer, short enough that a broken test
// still ends.
const patientTimeout = 30 * time.Second

// fastOptions fills in what keeps tests quick and hang-free: short backoff, a
// stall timeout that ends a broken test (patientTimeout), and a User-Agent.
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
		o.Timeout = patientTimeout
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
		h.t.Helper()
		testutil.WaitFor(h.t, "Run to return", func() bool {
			select {
			case <-done:
				return true
			default:
				return false
			}
		})
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

// payload is testutil.Payload under the name split_test.go uses.
func payload(seed uint64, n int) []byte { return testutil.Payload(seed, n) }

func statusCode(err error) int {
	var se *download.StatusError
	if errors.As(err, &se) {
		return se.Code
	}
	return 0
}
