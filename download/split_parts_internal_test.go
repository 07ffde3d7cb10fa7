package download

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"reflect"
	"testing"

	"github.com/haul/haul/sink"
)

func TestSplitPlanPiecesAtPartBoundaries(t *testing.T) {
	const M = 1 << 20
	for _, tc := range []struct {
		gaps  []sink.Range
		conns int
		min   int64
		align int64
		want  []sink.Range
	}{
		// 40 MiB over 4 at 8 MiB parts: 10 MiB cuts move to 8, 24 (20
		// rounds up) and 32.
		{gaps: []sink.Range{rg(0, 40*M)}, conns: 4, min: 4 * M, align: 8 * M,
			want: []sink.Range{rg(0, 8*M), rg(8*M, 24*M), rg(24*M, 32*M), rg(32*M, 40*M)}},
		// The first response's piece starts inside a part (bytes written in
		// order before): the cuts after it are at boundaries (three pieces
		// of at least 16 MiB, cut near 23.3 and 43.7 MiB).
		{gaps: []sink.Range{rg(3*M, 64*M+5)}, conns: 4, min: 16 * M, align: 8 * M,
			want: []sink.Range{rg(3*M, 24*M), rg(24*M, 40*M), rg(40*M, 64*M+5)}},
		// Two cuts that round to the same boundary make one piece.
		{gaps: []sink.Range{rg(0, 12*M)}, conns: 3, min: 1 * M, align: 8 * M,
			want: []sink.Range{rg(0, 8*M), rg(8*M, 12*M)}},
		// A resume's gaps are whole parts: their cuts stay inside them.
		{gaps: []sink.Range{rg(8*M, 16*M), rg(32*M, 64*M)}, conns: 4, min: 4 * M, align: 8 * M,
			want: []sink.Range{rg(8*M, 16*M), rg(32*M, 40*M), rg(40*M, 56*M), rg(56*M, 64*M)}},
		// A gap within one part: one piece.
		{gaps: []sink.Range{rg(1*M, 7*M)}, conns: 4, min: 1 * M, align: 8 * M, want: []sink.Range{rg(1*M, 7*M)}},
	} {
		got := planPieces(tc.gaps, tc.conns, tc.min, tc.align)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("planPieces(%v, %d, %d, %d) = %v, want %v", tc.gaps, tc.conns, tc.min, tc.align, got, tc.want)
		}
	}
}

func TestSplitStealsAtPartBoundaries(t *testing.T) {
	const M = 1 << 20
	s := &split{minSplit: 2 * M, align: 8 * M}
	victim := &piece{start: 0, next: 5 * M, done: 5 * M, end: 40 * M}
	s.active = []*piece{victim}
	// Half of what is left ends at 22.5 MiB: the steal begins at 16.
	if p := s.take(); p == nil || p.start != 16*M || p.end != 40*M || victim.end != 16*M {
		t.Fatalf("steal %+v, victim %+v; want [16 MiB, 40 MiB) and the victim up to 16 MiB", p, victim)
	}
	// A piece inside one part is halved inside it (its buffer is taken).
	inside := &piece{start: 40 * M, next: 41 * M, done: 41 * M, end: 47 * M}
	s.active = []*piece{inside}
	if p := s.take(); p == nil || p.start != 44*M {
		t.Fatalf("steal %+v from a piece inside a part, want it from 44 MiB", p)
	}
	// One that crosses a boundary near its end is cut there.
	s.active = []*piece{{start: 40 * M, next: 45 * M, done: 45 * M, end: 49 * M}}
	s.minSplit = 1 * M
	if p := s.take(); p == nil || p.start != 48*M {
		t.Fatalf("steal %+v, want one from 48 MiB", p)
	}
}

// partWriter is a sink.Writer in memory whose body is stored in parts
// (partWriter) and cannot be read back unless readable.
type partsWriter struct {
	memRanges
	part     int64
	readable bool
}

func (p *partsWriter) PartSize() int64 { return p.part }

func (p *partsWriter) WriteAtContext(_ context.Context, b []byte, off int64) (int, error) {
	return p.WriteAt(b, off)
}

func (p *partsWriter) ReadAt(b []byte, off int64) (int, error) {
	if p.readable {
		return p.memRanges.ReadAt(b, off)
	}
	return 0, sink.ErrNoPrefix
}

func (p *partsWriter) Write(b []byte) (int, error)       { return len(b), nil }
func (p *partsWriter) Partial() sink.Partial             { return sink.Partial{} }
func (p *partsWriter) Prefix() io.Reader                 { return bytes.NewReader(nil) }
func (p *partsWriter) SetValidator(string, int64)        {}
func (p *partsWriter) SetCacheValidators(string, string) {}
func (p *partsWriter) Commit(done func(error))           { done(nil) }
func (p *partsWriter) Abort() error                      { return nil }
func (p *partsWriter) Discard() error                    { return nil }
func (p *partsWriter) Restart() error                    { return nil }
func (p *partsWriter) Replace()                          {}

var (
	_ sink.Writer      = (*partsWriter)(nil)
	_ sink.RangeWriter = (*partsWriter)(nil)
	_ partWriter       = (*partsWriter)(nil)
)

// A body to hash is not split into a writer that cannot read it back: it
// is fetched in order.
func TestSplitNotForAHashIntoAWriterThatCannotReadBack(t *testing.T) {
	d := &transferDeps{split: 4, minSplit: 1 << 10}
	resp := &http.Response{StatusCode: http.StatusOK, ContentLength: 1 << 20, Header: http.Header{"Accept-Ranges": {"bytes"}}}
	hash := newAsyncHash(newBuffers(4<<10, 2))
	defer hash.close()
	for _, tc := range []struct {
		readable, hash bool
		want           int
	}{
		{readable: false, hash: false, want: 4},
		{readable: false, hash: true, want: 0},
		{readable: true, hash: true, want: 4},
	} {
		w := &partsWriter{memRanges: memRanges{data: make([]byte, 1<<20)}, part: 8 << 20, readable: tc.readable}
		tr := &transfer{d: d, w: w, total: 1 << 20, validator: `"v"`}
		if tc.hash {
			tr.hash = hash
		}
		if got := tr.splitConns(resp); got != tc.want {
			t.Errorf("readable %v, hash %v: splitConns = %d, want %d", tc.readable, tc.hash, got, tc.want)
		}
	}
}
