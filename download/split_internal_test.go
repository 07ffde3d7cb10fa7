package download

import (
	"reflect"
	"testing"

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
		got := planPieces(tc.gaps, tc.conns, tc.min)
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
