package download

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/haul/haul/download/internal/retry"
	"github.com/haul/haul/sink"
)

func TestSplitPlanPieces(t *testing.T) {
	const M = 1 << 20
	for _, tc := range []struct {
		gaps     []sink.Range
		conns    int
		min      int64
		want     []sink.Range
		wantSize int64 // every piece but a gap's last is this big, if > 0
	}{
		// 256 MiB over 16 connections at 16 MiB: 16 pieces of 16 MiB.
		{gaps: []sink.Range{rg(0, 256*M)}, conns: 16, min: 16 * M, wantSize: 16 * M},
		// Over 4: 4 of 64 MiB.
		{gaps: []sink.Range{rg(0, 256*M)}, conns: 4, min: 16 * M, wantSize: 64 * M},
		// 40 MiB over 4 at 16 MiB: 2 pieces, none under 16 MiB.
		{gaps: []sink.Range{rg(0, 40*M)}, conns: 4, min: 16 * M, want: []sink.Range{rg(0, 20*M), rg(20*M, 40*M)}},
		// A length that is not a multiple of the connections: still one piece
		// per connection (it was one fewer, the last connection then halving
		// the first piece: two of a quarter, two of an eighth).
		{gaps: []sink.Range{rg(0, 28241649)}, conns: 4, min: 4 * M,
			want: []sink.Range{rg(0, 7060412), rg(7060412, 14120824), rg(14120824, 21181236), rg(21181236, 28241649)}},
		{gaps: []sink.Range{rg(0, 256*M+1)}, conns: 16, min: 16 * M, wantSize: 16 * M},
		// Gaps of a resume: each cut on its own, a small one whole.
		{gaps: []sink.Range{rg(10, 20), rg(100, 300)}, conns: 4, min: 50,
			want: []sink.Range{rg(10, 20), rg(100, 166), rg(166, 232), rg(232, 300)}},
	} {
		got := planPieces(tc.gaps, tc.conns, tc.min, 0)
		if tc.want != nil && !reflect.DeepEqual(got, tc.want) {
			t.Errorf("planPieces(%v, %d, %d) = %v, want %v", tc.gaps, tc.conns, tc.min, got, tc.want)
		}
		if tc.wantSize > 0 {
			if len(got) != int(tc.gaps[0].End/tc.wantSize) {
				t.Errorf("planPieces(%v, %d, %d): %d pieces", tc.gaps, tc.conns, tc.min, len(got))
			}
			for _, r := range got {
				if r.End-r.Start != tc.wantSize && r.End != tc.gaps[0].End {
					t.Errorf("piece %v, want %d bytes", r, tc.wantSize)
				}
			}
		}
	}
}

func TestSplitMergeRange(t *testing.T) {
	set := mergeRange(nil, sink.Range{Start: 50, End: 60}, sink.Range{Start: 0, End: 10}, sink.Range{Start: 10, End: 20},
		sink.Range{Start: 55, End: 70}, sink.Range{Start: 30, End: 40})
	want := []sink.Range{rg(0, 20), rg(30, 40), rg(50, 70)}
	if !reflect.DeepEqual(set, want) {
		t.Fatalf("merged %v, want %v", set, want)
	}
}

func rg(start, end int64) sink.Range { return sink.Range{Start: start, End: end} }

// memRanges is a sink.RangeWriter in memory.
type memRanges struct {
	mu     sync.Mutex
	data   []byte
	ranges []sink.Range // the last SetRanges
	ended  int64        // EndRanges' prefix, -1 before
}

func (m *memRanges) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return copy(m.data[off:], p), nil
}

func (m *memRanges) ReadAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return copy(p, m.data[off:]), nil
}

func (m *memRanges) SetRanges(done []sink.Range) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ranges = slices.Clone(done)
}

func (m *memRanges) EndRanges(prefix int64) error {
	m.ended = prefix
	return nil
}

// splitOver is a split of data over a fetch that serves its ranges from
// memory through fail, which may fail a request (by its number, from 1).
func splitOver(data []byte, w *memRanges, fail func(n int, start, end int64) error) (*split, *transferDeps, *atomic.Int32) {
	var stored atomic.Int64
	d := &transferDeps{timeout: time.Minute, bytes: &stored, bufs: newBuffers(4<<10, 8)}
	var calls atomic.Int32
	s := &split{rw: w, minSplit: 16 << 10, retries: 2, backoff: retry.Backoff{Base: time.Second, Max: time.Minute},
		bufs: d.bufs,
		fetch: func(ctx context.Context, start, end int64) (*pacedBody, error) {
			if err := fail(int(calls.Add(1)), start, end); err != nil {
				return nil, err
			}
			x, err := d.newExchange(ctx, "http://127.0.0.1:1/f", true)
			if err != nil {
				return nil, err
			}
			return x.body(bytes.NewReader(data[start:end]), nil), nil
		}}
	return s, d, &calls
}

// A split is a type of its own: over a range writer and a fetch function, it
// fetches the gaps in pieces, asks a piece again after a retryable failure
// (Retry-After, then the backoff), counts every stored byte once, and hands
// back the ranges written.
func TestSplitRunOverFetch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		data := make([]byte, 256<<10)
		for i := range data {
			data[i] = byte(i * 7)
		}
		w := &memRanges{data: make([]byte, len(data)), ended: -1}
		copy(w.data[:1000], data) // written before: [0, 1000)
		s, d, calls := splitOver(data, w, func(n int, start, end int64) error {
			if n == 1 {
				return &StatusError{Code: http.StatusServiceUnavailable, RetryAfter: 7 * time.Second}
			}
			return nil
		})
		first, err := d.newExchange(context.Background(), "http://127.0.0.1:1/f", false)
		if err != nil {
			t.Fatal(err)
		}
		total := int64(len(data))
		gaps := []sink.Range{rg(1000, total)}
		start := time.Now()
		done, err := s.run(context.Background(), first.body(bytes.NewReader(data[1000:]), nil), []sink.Range{rg(0, 1000)}, gaps, 4)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(done, []sink.Range{rg(0, total)}) || !bytes.Equal(w.data, data) {
			t.Fatalf("ranges %v, file right: %v", done, bytes.Equal(w.data, data))
		}
		if got := d.bytes.Load(); got != total-1000 {
			t.Errorf("%d bytes counted, want %d", got, total-1000)
		}
		if calls.Load() < 4 {
			t.Errorf("%d fetches: want the 3 pieces besides the first, one of them twice", calls.Load())
		}
		if waited := time.Since(start); waited < 7*time.Second {
			t.Errorf("the piece answered 503 was asked again after %v, not its Retry-After", waited)
		}
		if !slices.Equal(w.ranges, done) {
			t.Errorf("the writer's last ranges %v, want %v", w.ranges, done)
		}
	})
}

// A piece whose response is not of the file stops every piece; the ranges
// written are handed back, and the error says why.
func TestSplitRunSplice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		data := make([]byte, 256<<10)
		w := &memRanges{data: make([]byte, len(data)), ended: -1}
		s, d, _ := splitOver(data, w, func(n int, start, end int64) error {
			if start >= 128<<10 {
				return fmt.Errorf("%w: validator %q, the file's is %q", errSplice, "b", "a")
			}
			return nil
		})
		first, err := d.newExchange(context.Background(), "http://127.0.0.1:1/f", false)
		if err != nil {
			t.Fatal(err)
		}
		// The first response sends 10 bytes, then nothing until it is ended.
		body := first.body(&blockingReader{ctx: first.ctx, r: bytes.NewReader(data[:10])}, nil)
		total := int64(len(data))
		done, err := s.run(context.Background(), body, nil, []sink.Range{rg(0, total)}, 4)
		if !errors.Is(err, errSplice) {
			t.Fatalf("error %v, want errSplice", err)
		}
		if len(done) == 0 || done[0] != rg(0, 10) {
			t.Errorf("ranges %v: the first response's 10 bytes are not kept", done)
		}
		for _, r := range done {
			if r.End > 128<<10 && r.Start >= 128<<10 {
				t.Errorf("a range %v written from a response not of the file", r)
			}
		}
	})
}
