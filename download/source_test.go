package download_test

import (
	"errors"
	"io"
	"sync"
	"testing"

	"github.com/haul/haul/download"
	"github.com/haul/haul/download/downloadtest"
	"github.com/haul/haul/download/index"
	"github.com/haul/haul/internal/testutil"
)

// A directory of -r that could not be listed is one the engine reports.
var _ download.SourceError = (*index.DirError)(nil)

// listSource yields its items in order: an Entry, or an error for Next to
// return.
type listSource struct{ items []any }

func (s *listSource) Next() (download.Entry, error) {
	if len(s.items) == 0 {
		return download.Entry{}, io.EOF
	}
	it := s.items[0]
	s.items = s.items[1:]
	if err, ok := it.(error); ok {
		return download.Entry{}, err
	}
	return it.(download.Entry), nil
}

// An item of a Source that yields no entries is a failed entry of its own,
// with its URL, line and HTTP status, and the list goes on past it; Names
// passes over it.
func TestEngineSourceErrorIsFailedEntry(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	h := newHarness(t)
	u := s.Add("/after", testutil.Payload(60, 100))
	dir := s.URL + "/dir/"
	cause := errors.New("listing refused")
	items := func() *listSource {
		return &listSource{items: []any{
			&index.DirError{URL: dir, Line: 3, Status: 403, Err: cause},
			download.Entry{URL: u, Size: -1, Line: 4},
		}}
	}
	var mu sync.Mutex
	var results []*download.Result
	eng := download.New(h.client, h.sink, fastOptions(download.Options{Jobs: 1,
		OnResult: func(r *download.Result) {
			mu.Lock()
			results = append(results, r)
			mu.Unlock()
		}}))
	var names []string
	if err := eng.Names(items(), func(n string) { names = append(names, n) }); err != nil {
		t.Fatalf("Names: %v", err)
	}
	if len(names) != 1 {
		t.Errorf("Names gave %q, want the one entry's name", names)
	}
	if err := eng.Run(t.Context(), items()); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(results) != 2 {
		t.Fatalf("%d results, want 2", len(results))
	}
	var failed, ok *download.Result
	for _, r := range results {
		if r.Entry.URL == dir {
			failed = r
		} else {
			ok = r
		}
	}
	if failed == nil || ok == nil {
		t.Fatalf("results for %v and %v, want the directory and the entry", results[0].Entry.URL, results[1].Entry.URL)
	}
	if failed.Status != download.StatusFailed || failed.Entry.Line != 3 || failed.HTTPStatus != 403 || !errors.Is(failed.Err, cause) {
		t.Errorf("directory: status %s line %d HTTP %d err %v; want failed, 3, 403, the cause", failed.Status, failed.Entry.Line, failed.HTTPStatus, failed.Err)
	}
	if ok.Status != download.StatusOK {
		t.Errorf("entry after it: %s %v", ok.Status, ok.Err)
	}
	if st := eng.Stats(); st.Failed.Load() != 1 || st.Queued.Load() != 2 {
		t.Errorf("stats: %d failed, %d queued; want 1 and 2", st.Failed.Load(), st.Queued.Load())
	}
}
