package bucket

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/haul/haul/internal/s3test"
	"github.com/haul/haul/internal/testutil"
	"github.com/haul/haul/sink"
)

// rangeWriter creates name's writer for a body of total bytes and enters
// ranged mode.
func rangeWriter(t *testing.T, s *Sink, name string, total int64) *writer {
	t.Helper()
	w, err := s.Create(name, "http://h/"+name)
	if err != nil {
		t.Fatal(err)
	}
	w.SetValidator(`"v1"`, total)
	rw, ok := w.(*writer)
	if !ok {
		t.Fatalf("Create returned a %T", w)
	}
	var _ sink.RangeWriter = rw
	rw.SetRanges(nil)
	return rw
}

// writePieces writes pieces of body concurrently, each in chunks of step
// bytes from its start, and returns the first error.
func writePieces(w *writer, body []byte, pieces []sink.Range, step int64) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(pieces))
	for _, p := range pieces {
		wg.Go(func() {
			for off := p.Start; off < p.End; off += step {
				end := min(off+step, p.End)
				if _, err := w.WriteAt(body[off:end], off); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func TestPiecesWrittenOutOfOrderLandAsOneObject(t *testing.T) {
	srv, s := open(t, "")
	body := testutil.Payload(30, 37<<20+5) // 5 parts of 8 MiB, the last short
	w := rangeWriter(t, s, "p.bin", int64(len(body)))
	if got := w.PartSize(); got != 8<<20 {
		t.Fatalf("PartSize %d, want 8 MiB", got)
	}
	// Pieces that meet inside parts, as pieces stolen from do.
	pieces := []sink.Range{{Start: 0, End: 3 << 20}, {Start: 3 << 20, End: 20 << 20}, {Start: 20 << 20, End: int64(len(body))}}
	if err := writePieces(w, body, pieces, 1<<20+7); err != nil {
		t.Fatal(err)
	}
	if _, err := w.ReadAt(make([]byte, 1), 0); !errors.Is(err, sink.ErrNoPrefix) {
		t.Errorf("ReadAt: %v, want sink.ErrNoPrefix", err)
	}
	if err := w.EndRanges(int64(len(body))); err != nil {
		t.Fatal(err)
	}
	commit(t, w)
	if got := srv.Get(t, "data", "p.bin"); !bytes.Equal(got, body) {
		t.Errorf("object: %d bytes, not the body", len(got))
	}
	srv.CheckDone(t, "data", RecordDir)
}

func TestOnePartBodyInPiecesIsOnePut(t *testing.T) {
	srv, s := open(t, "")
	body := testutil.Payload(31, 3<<20)
	w := rangeWriter(t, s, "one.bin", int64(len(body)))
	if err := writePieces(w, body, []sink.Range{{Start: 0, End: 1 << 20}, {Start: 1 << 20, End: 3 << 20}}, 64<<10); err != nil {
		t.Fatal(err)
	}
	if err := w.EndRanges(int64(len(body))); err != nil {
		t.Fatal(err)
	}
	commit(t, w)
	if got := srv.Get(t, "data", "one.bin"); !bytes.Equal(got, body) {
		t.Errorf("object: %d bytes, not the body", len(got))
	}
	oi, err := s.core.StatObject(context.Background(), "data", "one.bin", minio.StatObjectOptions{})
	if err != nil || oi.Metadata.Get("X-Amz-Meta-Haul-Sha256") != testutil.SHA256Hex(body) {
		t.Errorf("sha256 metadata %q (%v): want the one PUT's", oi.Metadata.Get("X-Amz-Meta-Haul-Sha256"), err)
	}
}

func TestPiecesBeginInOrderAndEndInOrder(t *testing.T) {
	srv, s := open(t, "")
	body := testutil.Payload(32, 30<<20)
	w, err := s.Create("m.bin", "http://h/m.bin")
	if err != nil {
		t.Fatal(err)
	}
	w.SetValidator(`"v1"`, int64(len(body)))
	// 11 MiB in order (part 1 uploading, 3 MiB of part 2 read), then
	// pieces, then in order again from the first byte missing.
	if _, err := w.Write(body[:11<<20]); err != nil {
		t.Fatal(err)
	}
	rw := w.(*writer)
	rw.SetRanges([]sink.Range{{Start: 0, End: 11 << 20}})
	if err := writePieces(rw, body, []sink.Range{{Start: 11 << 20, End: 13 << 20}, {Start: 24 << 20, End: 26 << 20}}, 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := rw.EndRanges(13 << 20); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(body[13<<20:]); err != nil {
		t.Fatal(err)
	}
	commit(t, w)
	if got := srv.Get(t, "data", "m.bin"); !bytes.Equal(got, body) {
		t.Errorf("object: %d bytes, not the body", len(got))
	}
	srv.CheckDone(t, "data", RecordDir)
}

func TestPartsStoredOutOfOrderAreResumedAsRanges(t *testing.T) {
	srv, s := open(t, "r")
	body := testutil.Payload(33, 40<<20+3) // 6 parts
	w := rangeWriter(t, s, "x.bin", int64(len(body)))
	// Parts 1, 3, 4 and 6 whole; part 2 half; part 5 not begun.
	pieces := []sink.Range{{Start: 0, End: 12 << 20}, {Start: 16 << 20, End: 32 << 20}, {Start: 40 << 20, End: int64(len(body))}}
	if err := writePieces(w, body, pieces, 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	s2 := reopen(t, srv, "r")
	want := sink.Partial{Offset: 8 << 20, Validator: `"v1"`, Total: int64(len(body)),
		Done: []sink.Range{{Start: 16 << 20, End: 32 << 20}, {Start: 40 << 20, End: int64(len(body))}}}
	if p, err := s2.Staged("x.bin", "http://h/x.bin"); err != nil || !equalPartial(p, want) {
		t.Fatalf("Staged = %+v, %v; want %+v", p, err, want)
	}
	w2, err := s2.Create("x.bin", "http://h/x.bin")
	if err != nil {
		t.Fatal(err)
	}
	if p := w2.Partial(); !equalPartial(p, want) {
		t.Fatalf("Partial = %+v, want %+v", p, want)
	}
	rw := w2.(*writer)
	rw.SetRanges(nil)
	if err := writePieces(rw, body, []sink.Range{{Start: 8 << 20, End: 16 << 20}, {Start: 32 << 20, End: 40 << 20}}, 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := rw.EndRanges(int64(len(body))); err != nil {
		t.Fatal(err)
	}
	commit(t, w2)
	if got := srv.Get(t, "data", "r/x.bin"); !bytes.Equal(got, body) {
		t.Errorf("object: %d bytes, not the body", len(got))
	}
	srv.CheckDone(t, "data", "r/"+RecordDir)
}

func equalPartial(a, b sink.Partial) bool {
	return a.Offset == b.Offset && a.Validator == b.Validator && a.Total == b.Total && slices.Equal(a.Done, b.Done)
}

func TestManyPiecesHoldNoMoreThanTheMemoryBudget(t *testing.T) {
	srv := s3test.Start(t)
	srv.Bucket(t, "data")
	const budget = 8 << 20 // one part
	s, err := Open(context.Background(), Options{Bucket: "data", Endpoint: srv.Endpoint, Memory: budget,
		Creds: credentials.NewStaticV4(srv.Access, srv.Secret, "")})
	if err != nil {
		t.Fatal(err)
	}
	body := testutil.Payload(34, 48<<20) // 6 parts
	w := rangeWriter(t, s, "many.bin", int64(len(body)))
	// 24 pieces of 2 MiB, four in each part, written in a random order.
	var pieces []sink.Range
	for off := int64(0); off < int64(len(body)); off += 2 << 20 {
		pieces = append(pieces, sink.Range{Start: off, End: off + 2<<20})
	}
	rand.Shuffle(len(pieces), func(i, j int) { pieces[i], pieces[j] = pieces[j], pieces[i] })
	if err := writePieces(w, body, pieces, 256<<10); err != nil {
		t.Fatal(err)
	}
	if err := w.EndRanges(int64(len(body))); err != nil {
		t.Fatal(err)
	}
	if peak := s.peak.Load(); peak > budget || peak == 0 {
		t.Errorf("the pieces held %d bytes at most, want at most the budget of %d", peak, budget)
	}
	commit(t, w)
	if got := srv.Get(t, "data", "many.bin"); !bytes.Equal(got, body) {
		t.Errorf("object: %d bytes, not the body", len(got))
	}
	if !s.mem.TryAcquire(budget) {
		t.Errorf("the writer did not give all of the memory budget back")
	}
}

func TestAPieceWaitingForMemoryStopsWithItsContext(t *testing.T) {
	srv := s3test.Start(t)
	srv.Bucket(t, "data")
	s, err := Open(context.Background(), Options{Bucket: "data", Endpoint: srv.Endpoint, Memory: 8 << 20,
		Creds: credentials.NewStaticV4(srv.Access, srv.Secret, "")})
	if err != nil {
		t.Fatal(err)
	}
	body := testutil.Payload(35, 24<<20)
	w := rangeWriter(t, s, "wait.bin", int64(len(body)))
	// Part 1 half written holds the whole budget; part 2 must wait.
	if _, err := w.WriteAt(body[:4<<20], 0); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := w.WriteAtContext(ctx, body[8<<20:9<<20], 8<<20)
		done <- err
	}()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("WriteAtContext: %v, want context.Canceled", err)
	}
	if err := w.Discard(); err != nil {
		t.Fatal(err)
	}
	if !s.mem.TryAcquire(8 << 20) {
		t.Errorf("the writer did not give all of the memory budget back")
	}
}

func TestPartBuffersAreUsedAgainWithinTheBudget(t *testing.T) {
	s := &Sink{memSize: 16 << 20}
	a := s.takeBuf(8 << 20)
	s.giveBuf(a)
	if b := s.takeBuf(8<<20 - 5); &b[0] != &a[0] || len(b) != 8<<20-5 {
		t.Errorf("a buffer given back was not used again for a part that fits it")
	}
	s.giveBuf(a)
	s.giveBuf(make([]byte, 8<<20))
	s.giveBuf(make([]byte, 8<<20)) // past the budget: dropped
	s.giveBuf(make([]byte, 1<<20)) // smaller than a part: dropped
	if len(s.free) != 2 || s.freeBytes != 16<<20 {
		t.Errorf("free list of %d buffers, %d bytes; want 2 of 8 MiB (the budget)", len(s.free), s.freeBytes)
	}
	if b := s.takeBuf(9 << 20); len(b) != 9<<20 || len(s.free) != 2 {
		t.Errorf("a part bigger than every free buffer: got %d bytes, %d left free", len(b), len(s.free))
	}
}
