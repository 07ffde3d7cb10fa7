package bucket

import (
	"bytes"
	"context"
	"fmt"
	"slices"

	"github.com/minio/minio-go/v7"

	"github.com/haul/haul/sink"
)

// A body fetched in pieces (--split) is written with WriteAt, between
// SetRanges and EndRanges: each part of the upload (part n holds the bytes
// [(n-1)*size, n*size) of the body, size = partSize(total, 1)) is filled in a
// buffer of its own, by whichever pieces write its bytes, and uploaded as soon
// as all of them are there, while the pieces go on: the parts of a body in
// pieces are uploaded in parallel. Every buffer is taken from the sink's
// memory budget, and a piece that needs one waits for its share, so memory
// stays bounded whatever the number of pieces.
//
// Why the split cuts its pieces at part boundaries (PartSize): a piece that
// waits for a part's buffer then holds none that only it can fill (the part
// it left is whole, and uploads), so the buffers held always fill and come
// back, and the waiting ends. A piece that starts inside a part (the first
// response's, after bytes written in order; a steal with no boundary left;
// the rest of a piece that gave up) writes into the buffer of that part,
// which the piece before it took. Pieces that began inside parts whose
// buffers nobody took yet could each hold half a part while waiting for the
// other's: on a budget of a few parts, such pieces could wait for good, and
// the split does not make them. WriteAtContext stops waiting when the split
// ends (Ctrl-C, a piece's error): the buffers held then never fill.
//
// What is durable is the parts stored: a re-run lists them (keptParts) and
// fetches the rest. The bytes of a part not yet whole are lost when the run
// stops, and fetched again.

// partBuf is a part being filled.
type partBuf struct {
	buf    []byte // the part's bytes (its full length); nil until the budget gave it
	res    int64  // its share of the budget
	have   []sink.Range
	filled int64
	ready  chan struct{} // closed once buf is set (or could not be: err)
	err    error
}

// inOrder is the number of parts from the first, in order, in parts.
func inOrder(parts []minio.CompletePart) int {
	nums := make([]int, 0, len(parts))
	for _, p := range parts {
		nums = append(nums, p.PartNumber)
	}
	slices.Sort(nums)
	n := 0
	for _, num := range nums {
		if num == n+1 {
			n++
		} else if num > n+1 {
			break
		}
	}
	return n
}

// addPart records a part stored, replacing one of the same number (sent
// again).
func (w *writer) addPart(p minio.CompletePart) {
	for i := range w.parts {
		if w.parts[i].PartNumber == p.PartNumber {
			w.parts[i] = p
			return
		}
	}
	w.parts = append(w.parts, p)
}

// hasPart reports whether part num is stored. Under rmu, or with no piece
// running.
func (w *writer) hasPart(num int) bool {
	for _, p := range w.parts {
		if p.PartNumber == num {
			return true
		}
	}
	return false
}

// PartSize is the size of the parts of a body of known length (the last one
// may be shorter), 0 where the length is unknown (the parts grow): pieces
// cut at its multiples fill their parts alone.
func (w *writer) PartSize() int64 {
	if w.total < 0 {
		return 0
	}
	return partSize(w.total, 1)
}

// numParts is the number of parts of a body of known length.
func (w *writer) numParts() int { return numParts(w.total) }

// partRange is the range of the body that part num holds.
func (w *writer) partRange(num int) sink.Range {
	size := partSize(w.total, 1)
	start := int64(num-1) * size
	return sink.Range{Start: start, End: min(start+size, w.total)}
}

// SetRanges enters ranged mode: the bytes come with WriteAt from now on. The
// part the bytes written in order were filling becomes the first part being
// filled. done is not recorded: what a re-run keeps is the parts stored.
func (w *writer) SetRanges(done []sink.Range) {
	if w.ranged {
		return
	}
	w.wait() // the part uploading, in order: its error is the next WriteAt's
	w.dropSpare()
	w.rmu.Lock()
	defer w.rmu.Unlock()
	w.ranged = true
	if w.rerr == nil {
		w.rerr = w.err
	}
	if w.filling == nil {
		w.filling = map[int]*partBuf{}
	}
	if w.next == 0 {
		w.next = 1
	}
	if len(w.buf) > 0 {
		r := w.partRange(w.next)
		buf := w.buf
		if int64(cap(buf)) < r.End-r.Start {
			buf = w.s.takeBuf(r.End - r.Start)
			copy(buf, w.buf)
		}
		pb := &partBuf{buf: buf[:r.End-r.Start], res: w.bufRes, ready: make(chan struct{}),
			have: []sink.Range{{Start: r.Start, End: r.Start + int64(len(w.buf))}}, filled: int64(len(w.buf))}
		close(pb.ready)
		w.filling[w.next] = pb
		w.buf, w.bufRes = nil, 0
		if pb.filled == int64(len(pb.buf)) && w.numParts() > 1 {
			delete(w.filling, w.next)
			w.sendPiecePart(w.next, pb)
		}
	} else if w.bufRes > 0 {
		w.s.release(w.bufRes)
		w.buf, w.bufRes = nil, 0
	}
}

// WriteAt writes p at off, between SetRanges and EndRanges.
func (w *writer) WriteAt(p []byte, off int64) (int, error) {
	return w.WriteAtContext(context.Background(), p, off)
}

// WriteAtContext is WriteAt that stops waiting for its share of the memory
// budget when ctx ends (the other pieces stopped: the buffers they hold
// will not fill).
func (w *writer) WriteAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > w.total {
		return 0, fmt.Errorf("s3://%s/%s: write of %d bytes at %d past the body's %d", w.s.bucket, w.key, len(p), off, w.total)
	}
	written := 0
	for len(p) > 0 {
		num := int(off/partSize(w.total, 1)) + 1
		r := w.partRange(num)
		k := int(min(int64(len(p)), r.End-off))
		pb, err := w.partBuf(ctx, num)
		if err != nil {
			return written, err
		}
		copy(pb.buf[off-r.Start:], p[:k])
		w.rmu.Lock()
		pb.have, pb.filled = addRange(pb.have, sink.Range{Start: off, End: off + int64(k)})
		// A body of one part is one PUT, at Commit.
		if pb.filled == int64(len(pb.buf)) && w.filling[num] == pb && w.numParts() > 1 {
			delete(w.filling, num)
			w.sendPiecePart(num, pb)
		}
		w.rmu.Unlock()
		p, off, written = p[k:], off+int64(k), written+k
	}
	return written, nil
}

// partBuf returns the buffer of part num, taking it (and its share of the
// budget) if no piece did yet.
func (w *writer) partBuf(ctx context.Context, num int) (*partBuf, error) {
	w.rmu.Lock()
	if w.rerr != nil {
		err := w.rerr
		w.rmu.Unlock()
		return nil, err
	}
	if !w.ranged {
		w.rmu.Unlock()
		return nil, fmt.Errorf("s3://%s/%s: WriteAt outside SetRanges and EndRanges", w.s.bucket, w.key)
	}
	pb := w.filling[num]
	if pb == nil {
		pb = &partBuf{ready: make(chan struct{})}
		w.filling[num] = pb
		w.rmu.Unlock()
		r := w.partRange(num)
		pb.res = min(r.End-r.Start, w.s.memSize)
		if err := w.s.acquire(ctx, pb.res); err != nil {
			w.rmu.Lock()
			delete(w.filling, num)
			w.rmu.Unlock()
			pb.err, pb.res = err, 0
			close(pb.ready)
			return nil, err
		}
		pb.buf = w.s.takeBuf(r.End - r.Start)
		close(pb.ready)
		return pb, nil
	}
	w.rmu.Unlock()
	select {
	case <-pb.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if pb.err != nil {
		return w.partBuf(ctx, num) // its taker gave up waiting: take it
	}
	return pb, nil
}

// addRange adds r to the sorted, disjoint set and returns it with the number
// of bytes it covers.
func addRange(set []sink.Range, r sink.Range) ([]sink.Range, int64) {
	set = append(set, r)
	slices.SortFunc(set, func(a, b sink.Range) int { return int(max(min(a.Start-b.Start, 1), -1)) })
	out := set[:0]
	for _, r := range set {
		if n := len(out); n > 0 && r.Start <= out[n-1].End {
			out[n-1].End = max(out[n-1].End, r.End)
			continue
		}
		out = append(out, r)
	}
	var n int64
	for _, r := range out {
		n += r.End - r.Start
	}
	return out, n
}

// sendPiecePart uploads part num, whole in pb, on a goroutine of its own; its
// buffer's share of the budget goes back when it is stored. Under rmu.
func (w *writer) sendPiecePart(num int, pb *partBuf) {
	w.uploads.Add(1)
	go func() {
		defer w.uploads.Done()
		id, err := w.begun()
		var part minio.ObjectPart
		if err == nil {
			part, err = w.s.core.PutObjectPart(context.Background(), w.s.bucket, w.key, id, num,
				bytes.NewReader(pb.buf), int64(len(pb.buf)), minio.PutObjectPartOptions{Sha256Hex: sha256Hex(pb.buf), DisableContentSha256: true})
			if err != nil {
				err = fmt.Errorf("s3://%s/%s: part %d: %w", w.s.bucket, w.key, num, w.s.classify(err))
			}
		}
		if err == nil {
			w.s.giveBuf(pb.buf)
		}
		pb.buf = nil
		w.s.release(pb.res)
		w.rmu.Lock()
		defer w.rmu.Unlock()
		if err != nil {
			if w.rerr == nil {
				w.rerr = err
			}
			return
		}
		w.addPart(minio.CompletePart{PartNumber: num, ETag: part.ETag})
	}()
}

// begun begins the upload if no part did yet, and returns its id.
func (w *writer) begun() (string, error) {
	w.bmu.Lock()
	defer w.bmu.Unlock()
	if w.uploadID == "" {
		if err := w.begin(); err != nil {
			return "", err
		}
	}
	return w.uploadID, nil
}

// ReadAt cannot read the parts back: S3 serves no byte of an upload in
// progress (sink.ErrNoPrefix). A body that must be hashed is not fetched in
// pieces into a bucket, but in order.
func (w *writer) ReadAt([]byte, int64) (int, error) {
	return 0, fmt.Errorf("s3://%s/%s: %w", w.s.bucket, w.key, sink.ErrNoPrefix)
}

// EndRanges leaves ranged mode once the parts uploading are stored: the
// bytes are in order up to prefix, and Write goes on there, in the part that
// holds prefix (its bytes before prefix are in its buffer: the bytes past
// the first missing one are never whole parts). A body of one part whole
// is kept for Commit's PUT.
func (w *writer) EndRanges(prefix int64) error {
	if !w.ranged {
		return nil
	}
	w.uploads.Wait()
	w.rmu.Lock()
	defer w.rmu.Unlock()
	w.ranged = false
	if w.rerr != nil {
		err := w.rerr
		w.dropFilling()
		return err
	}
	size := partSize(w.total, 1)
	num := int(prefix/size) + 1
	switch {
	case prefix == w.total && w.numParts() == 1:
		num = 1
	case prefix == w.total:
		w.next, w.size = w.numParts()+1, prefix
		w.dropFilling()
		for n := 1; n <= w.numParts(); n++ {
			if !w.hasPart(n) {
				return fmt.Errorf("s3://%s/%s: part %d of %d not stored", w.s.bucket, w.key, n, w.numParts())
			}
		}
		return nil
	}
	start := int64(num-1) * size
	w.next, w.size = num, prefix
	if pb := w.filling[num]; pb != nil && pb.buf != nil && len(pb.have) > 0 &&
		pb.have[0].Start == start && pb.have[0].End >= prefix && prefix > start {
		delete(w.filling, num)
		w.buf, w.bufRes = pb.buf[:prefix-start], pb.res
	} else if prefix > start {
		w.dropFilling()
		return fmt.Errorf("s3://%s/%s: the bytes from %d to %d are in no buffer: %w", w.s.bucket, w.key, start, prefix, sink.ErrNoPrefix)
	}
	w.dropFilling()
	return nil
}

// dropFilling gives back the buffers of the parts being filled. Under rmu,
// with no piece running.
func (w *writer) dropFilling() {
	for num, pb := range w.filling {
		if pb.buf != nil {
			w.s.release(pb.res)
			w.s.giveBuf(pb.buf)
		}
		delete(w.filling, num)
	}
}

// dropPieces waits for the parts uploading and drops the parts being
// filled: the writer is done with ranged mode.
func (w *writer) dropPieces() {
	w.uploads.Wait()
	w.rmu.Lock()
	w.ranged = false
	w.dropFilling()
	w.rmu.Unlock()
}
