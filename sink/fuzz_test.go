package sink

import (
	"reflect"
	"testing"
)

// FuzzResumeState: parseResumeState never panics on a damaged xattr value,
// and what it accepts is consistent (what adopt trusts: sorted, disjoint
// ranges within the length, durable at the last one's end) and survives a
// round trip through String, which is what a checkpoint writes back.
func FuzzResumeState(f *testing.F) {
	for _, s := range []string{
		"v1 1048576 1048576 4194304 \"abc\"",
		"v1 10 5 -1 Mon, 02 Jan 2006 15:04:05 GMT",
		"v2 100 0-10,20-30,90-100 \"etag\"",
		"v2 100 - W/\"x\"",
		"v2 100 10-20 Mon, 02 Jan 2006 15:04:05 GMT",
		"v2 100 20-30,10-15 \"e\"",
		"v2 100 0-10,10-20 \"e\"",
		"v2 -1 0-10 \"e\"",
		"v3 1 2 3 x",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rs, ok := parseResumeState(s)
		if !ok {
			return
		}
		if rs.validator == "" {
			t.Fatalf("%q: accepted without a validator", s)
		}
		if rs.ranges != nil {
			prev := int64(-1)
			for _, r := range rs.ranges {
				if r.Start <= prev || r.Start >= r.End || r.End > rs.total {
					t.Fatalf("%q: ranges %v not sorted, disjoint and within %d", s, rs.ranges, rs.total)
				}
				prev = r.End
			}
			if len(rs.ranges) > 0 && rs.durable != prev {
				t.Fatalf("%q: durable %d, last range ends at %d", s, rs.durable, prev)
			}
			if len(rs.ranges) > 0 && rs.ranges[0].Start == 0 && rs.plain != rs.ranges[0].End {
				t.Fatalf("%q: plain %d, the range from 0 ends at %d", s, rs.plain, rs.ranges[0].End)
			}
			for _, r := range rs.rest() {
				if r.Start == 0 {
					t.Fatalf("%q: rest() holds the range from 0", s)
				}
			}
		} else if rs.durable < 0 || rs.plain < 0 || rs.total < -1 {
			t.Fatalf("%q: negative offsets accepted: %+v", s, rs)
		}
		again, ok := parseResumeState(rs.String())
		if !ok || !reflect.DeepEqual(again, rs) {
			t.Fatalf("%q: round trip %q gave %+v (ok %v), want %+v", s, rs.String(), again, ok, rs)
		}
	})
}
