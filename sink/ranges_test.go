package sink

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// The v2 resume record round-trips; damaged values are refused (the file
// starts over); v1 values still parse as before.
func TestResumeStateRanges(t *testing.T) {
	rs := resumeState{total: 100, validator: `"e t"`, ranges: []Range{{0, 10}, {20, 30}, {90, 100}}}
	got, ok := parseResumeState(rs.String())
	if !ok || got.total != 100 || got.validator != `"e t"` || !reflect.DeepEqual(got.ranges, rs.ranges) ||
		got.plain != 10 || got.durable != 100 {
		t.Fatalf("round trip of %q: %+v %v", rs.String(), got, ok)
	}
	if r := got.rest(); !reflect.DeepEqual(r, []Range{{20, 30}, {90, 100}}) {
		t.Fatalf("rest = %v", r)
	}
	lm := "Mon, 02 Jan 2006 15:04:05 GMT"
	none := resumeState{total: 5, validator: lm, ranges: []Range{}}
	if got, ok := parseResumeState(none.String()); !ok || len(got.ranges) != 0 || got.ranges == nil || got.validator != lm {
		t.Fatalf("no ranges: %q → %+v %v", none.String(), got, ok)
	}
	if got, ok := parseResumeState("v1 7 7 9 " + lm); !ok || got.ranges != nil || got.durable != 7 || got.validator != lm {
		t.Fatalf("v1: %+v %v", got, ok)
	}
	for _, bad := range []string{
		"v2 100 0-10,5-20 \"e\"",  // overlapping
		"v2 100 0-10,10-20 \"e\"", // touching: never written so
		"v2 100 20-30,0-10 \"e\"", // unsorted
		"v2 100 0-101 \"e\"",      // past the length
		"v2 100 5-5 \"e\"",        // empty
		"v2 0 - \"e\"",            // no length
		"v2 100 0-10",             // no validator
		"v2 100 0-x \"e\"",
		"v2 -1 0-10 \"e\"",
	} {
		if got, ok := parseResumeState(bad); ok {
			t.Errorf("%q accepted: %+v", bad, got)
		}
	}
}

// A file written in pieces, aborted, is reopened with its ranges: in order up
// to the end of the range from 0, the others in Done, the bytes there.
func TestRangesAbortResume(t *testing.T) {
	s, dir := newSink(t, FileOptions{})
	data := bytes.Repeat([]byte("0123456789"), 10)
	w, err := s.Create("h/f", "http://h/f")
	if err != nil {
		t.Fatal(err)
	}
	w.SetValidator(`"v"`, 100)
	rw := w.(RangeWriter)
	rw.WriteAt(data[:30], 0)
	rw.WriteAt(data[60:80], 60)
	rw.SetRanges([]Range{{0, 30}, {60, 80}})
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	w, err = s.Create("h/f", "http://h/f")
	if err != nil {
		t.Fatal(err)
	}
	p := w.Partial()
	if p.Offset != 30 || p.Total != 100 || p.Validator != `"v"` || !reflect.DeepEqual(p.Done, []Range{{60, 80}}) {
		t.Fatalf("Partial = %+v", p)
	}
	if sp, err := s.Staged("h/f", "http://h/f"); err != nil || !reflect.DeepEqual(sp, p) {
		t.Fatalf("Staged = %+v %v", sp, err)
	}
	// Fill the gaps, the in-order part with Write.
	rw = w.(RangeWriter)
	rw.WriteAt(data[80:], 80)
	if _, err := w.Write(data[30:60]); err != nil {
		t.Fatal(err)
	}
	rw.SetRanges([]Range{{0, 100}})
	if err := rw.EndRanges(100); err != nil {
		t.Fatal(err)
	}
	if err := commit(t, w); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(dir, "h/f"))
	if !bytes.Equal(got, data) {
		t.Fatalf("got %q", got)
	}
	buf := make([]byte, 256)
	if _, err := unix.Getxattr(filepath.Join(dir, "h/f"), resumeAttr, buf); err == nil {
		t.Errorf("the final file keeps its resume record")
	}
}

// A damaged v2 record, or one whose file is shorter than its ranges, starts
// the file over.
func TestRangesDamaged(t *testing.T) {
	for _, val := range []string{"v2 100 0-10,5-20 \"v\"", "v2 100 0-10,60-100 \"v\""} {
		s, dir := newSink(t, FileOptions{})
		w, _ := s.Create("f", "http://h/f")
		w.SetValidator(`"v"`, 100)
		w.(RangeWriter).WriteAt(make([]byte, 80), 0)
		w.(RangeWriter).SetRanges([]Range{{0, 80}})
		w.Abort()
		part := filepath.Join(dir, "f"+PartSuffix)
		// The aborted file's own record resumes it: the damage alone must
		// start it over.
		buf := make([]byte, 256)
		if n, err := unix.Getxattr(part, resumeAttr, buf); err != nil || !strings.HasPrefix(string(buf[:n]), "v2 100 0-80 ") {
			t.Fatalf("the aborted file's record is %q (%v), want v2 100 0-80", buf[:max(n, 0)], err)
		}
		if err := unix.Setxattr(part, resumeAttr, []byte(val), 0); err != nil {
			t.Fatalf("writing the damaged record: %v (the test needs user xattrs in TMPDIR)", err)
		}
		w, err := s.Create("f", "http://h/f")
		if err != nil {
			t.Fatal(err)
		}
		if p := w.Partial(); p.Offset != 0 || p.Done != nil {
			t.Errorf("%s: kept %+v", val, p)
		}
		w.Discard()
	}
}

// A checkpoint in ranged mode records the ranges given (after the flush).
func TestRangesCheckpoint(t *testing.T) {
	s, dir := newSink(t, FileOptions{Checkpoint: 10})
	w, _ := s.Create("f", "http://h/f")
	defer w.Discard()
	w.SetValidator(`"v"`, 100)
	rw := w.(RangeWriter)
	rw.WriteAt(make([]byte, 20), 50)
	rw.SetRanges([]Range{{50, 70}})
	w.(*fileWriter).cp.Wait()
	buf := make([]byte, 256)
	n, err := unix.Getxattr(filepath.Join(dir, "f"+PartSuffix), resumeAttr, buf)
	if err != nil {
		t.Fatalf("reading the record: %v (the test needs user xattrs in TMPDIR)", err)
	}
	if got := string(buf[:n]); !strings.HasPrefix(got, "v2 100 50-70 ") {
		t.Fatalf("recorded %q", got)
	}
}

// A compressed staging file never resumes from a record of pieces (its
// bytes are frames, not the body's ranges): it starts over.
func TestRangesCompressedStartsOver(t *testing.T) {
	f, dir := newSink(t, FileOptions{})
	c, err := NewCompressed(f, "zstd", 0)
	if err != nil {
		t.Fatal(err)
	}
	w, err := c.Create("f", "http://h/f")
	if err != nil {
		t.Fatal(err)
	}
	w.SetValidator(`"v"`, 1000)
	w.Write(bytes.Repeat([]byte("x"), 1000))
	w.Abort()
	part := filepath.Join(dir, "f.zst"+PartSuffix)
	st, err := os.Stat(part)
	if err != nil {
		t.Fatalf("the aborted file kept nothing to resume from: %v", err)
	}
	val := fmt.Sprintf("v2 1000 0-%d \"v\"", min(st.Size(), 10))
	if err := unix.Setxattr(part, resumeAttr, []byte(val), 0); err != nil {
		t.Fatalf("writing the record of pieces: %v (the test needs user xattrs in TMPDIR)", err)
	}
	w, err = c.Create("f", "http://h/f")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Discard()
	if p := w.Partial(); p.Offset != 0 || p.Done != nil {
		t.Fatalf("resumed %+v from %q", p, val)
	}
}

// A file written in pieces, reopened and aborted with nothing written (the
// next run's requests all failed: the host was down), keeps its record: the
// ranges past the one from 0 are not dropped, and a file with none from 0 is
// not removed.
func TestRangesAbortUntouched(t *testing.T) {
	for _, ranges := range [][]Range{{{0, 30}, {60, 80}}, {{60, 80}}} {
		s, _ := newSink(t, FileOptions{})
		data := bytes.Repeat([]byte("0123456789"), 10)
		w, err := s.Create("h/f", "http://h/f")
		if err != nil {
			t.Fatal(err)
		}
		w.SetValidator(`"v"`, 100)
		rw := w.(RangeWriter)
		for _, r := range ranges {
			rw.WriteAt(data[r.Start:r.End], r.Start)
		}
		rw.SetRanges(ranges)
		if err := w.Abort(); err != nil {
			t.Fatal(err)
		}
		want := Partial{Validator: `"v"`, Total: 100}
		if ranges[0].Start == 0 {
			want.Offset, want.Done = ranges[0].End, ranges[1:]
		} else {
			want.Done = ranges
		}
		for i := range 2 {
			w, err = s.Create("h/f", "http://h/f")
			if err != nil {
				t.Fatal(err)
			}
			if p := w.Partial(); !reflect.DeepEqual(p, want) {
				t.Fatalf("%v, reopened %d: Partial = %+v, want %+v", ranges, i, p, want)
			}
			if err := w.Abort(); err != nil {
				t.Fatal(err)
			}
		}
		w, _ = s.Create("h/f", "http://h/f")
		w.Discard()
	}
}
