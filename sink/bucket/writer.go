package bucket

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/minio/minio-go/v7"

	"github.com/haul/haul/sink"
)

// writer streams one body into its object: one PUT when it ends within its
// first part, else a multipart upload. One part is read into buf while the one
// before is uploaded on another goroutine (inflight): two parts in memory at
// most.
type writer struct {
	s           *Sink
	key, origin string

	validator     string // guards a resume (SetValidator)
	total         int64  // announced length, -1 unknown: sizes the parts
	etag, lastMod string // the response's, stored as metadata
	sha256        string // expected (SetSHA256), stored as metadata
	partial       sink.Partial

	buf   []byte // the part being read (part number next)
	spare []byte // a part buffer back from its upload, for the next one
	// bufRes and spareRes are the bytes of the sink's memory budget that
	// buf and spare hold (a buffer may grow up to its share).
	bufRes, spareRes int64
	next             int    // number of the part in buf, from 1
	size             int64  // body bytes written, from 0 (kept ones too)
	uploadID         string // "" until the first part is sent
	recorded         bool   // a resume record names uploadID
	parts            []minio.CompletePart
	inflight         chan sent // the part being uploaded, nil if none
	err              error     // the first failed part upload

	// Between SetRanges and EndRanges the body comes in pieces (see
	// ranged.go's comment on WriteAt): rmu guards parts and what follows.
	ranged  bool
	rmu     sync.Mutex
	filling map[int]*partBuf // parts being filled, by number
	uploads sync.WaitGroup   // parts of the pieces being uploaded
	rerr    error            // the first failure of a piece's part
	bmu     sync.Mutex       // one begin at a time
	failed  bool             // Commit failed: its buffer is not used again
}

// sent is how a part upload ended; its buffer comes back for the next part.
type sent struct {
	buf  []byte
	res  int64
	part minio.CompletePart
	err  error
}

// resume continues upload r with the parts kept.
func (w *writer) resume(r *record, parts []minio.CompletePart) {
	w.uploadID, w.recorded, w.parts = r.UploadID, true, parts
	w.validator, w.total = r.Validator, r.Total
	w.next = inOrder(parts) + 1
	w.partial = partialOf(r, parts)
	w.size = w.partial.Offset
}

func (w *writer) Partial() sink.Partial { return w.partial }

// Prefix cannot read back the parts of an upload in progress (S3 serves no
// byte of an unfinished object): a reader of them fails with
// sink.ErrNoPrefix, and the caller starts over where it needs them.
func (w *writer) Prefix() io.Reader {
	if w.partial.Offset == 0 {
		return bytes.NewReader(nil)
	}
	return errReader{fmt.Errorf("s3://%s/%s: %w", w.s.bucket, w.key, sink.ErrNoPrefix)}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func (w *writer) SetValidator(validator string, total int64) {
	w.validator = validator
	if w.next <= 1 && len(w.buf) == 0 {
		// Parts are sized once, before the first byte: a resumed upload
		// keeps the sizes it was begun with.
		w.total = total
	}
}

func (w *writer) SetCacheValidators(etag, lastModified string) {
	w.etag, w.lastMod = etag, lastModified
}

// SetSHA256 records the SHA-256 the body is expected to have: the object
// carries it (the engine discards a body that does not match).
func (w *writer) SetSHA256(hex string) { w.sha256 = strings.ToLower(hex) }

// KeepingCosts: an upload in progress is charged for its parts until it is
// completed or aborted, so an entry given up discards it.
func (w *writer) KeepingCosts() {}

// Replace changes nothing: an object is replaced by a PUT of its key.
func (w *writer) Replace() {}

func (w *writer) Write(p []byte) (int, error) {
	if w.next == 0 {
		w.next = 1
	}
	written := 0
	for len(p) > 0 {
		size := int(partSize(w.total, w.next))
		if len(w.buf) >= size {
			// Sent only once more bytes come: a body that ends here is one
			// PUT if it is the first part.
			if err := w.sendPart(); err != nil {
				return written, err
			}
			continue
		}
		if w.buf == nil {
			if err := w.newBuf(size); err != nil {
				return written, err
			}
		}
		if len(w.buf) == cap(w.buf) {
			grown := make([]byte, len(w.buf), min(max(2*cap(w.buf), 64<<10), size))
			copy(grown, w.buf)
			w.buf = grown
		}
		k := min(cap(w.buf)-len(w.buf), size-len(w.buf), len(p))
		w.buf = append(w.buf, p[:k]...)
		p = p[k:]
		written += k
		w.size += int64(k)
	}
	return written, nil
}

// newBuf sets buf to an empty buffer for a part of size bytes, with its
// share of the sink's memory budget: the spare one, or one as big as what
// is left of a body of known length (a small body takes no more), or a small
// one that grows up to size. Only a writer that holds no buffer waits for
// the budget: one whose part is uploading takes what is free, or else
// waits for that upload and reuses its buffer (one part in memory rather
// than two), so that writers never wait for each other's buffers.
func (w *writer) newBuf(size int) error {
	res := int64(size)
	if w.total >= 0 {
		if left := w.total - w.stored(); left > 0 && left < res {
			res = left
		}
	}
	res = min(res, w.s.memSize)
	if w.spare != nil && w.spareRes >= res {
		w.buf, w.bufRes = w.spare[:0], w.spareRes
		w.spare, w.spareRes = nil, 0
		return nil
	}
	w.dropSpare()
	if w.inflight != nil && !w.s.tryAcquire(res) {
		if err := w.wait(); err != nil {
			return err
		}
		return w.newBuf(size)
	}
	if w.inflight == nil {
		if err := w.s.acquire(context.Background(), res); err != nil {
			return err
		}
	}
	w.bufRes = res
	w.buf = make([]byte, 0, min(res, 64<<10))
	if w.total >= 0 {
		w.buf = w.s.takeBuf(res)[:0]
	}
	return nil
}

// dropSpare gives the spare buffer's share back.
func (w *writer) dropSpare() {
	if w.spareRes > 0 {
		w.s.release(w.spareRes)
	}
	if w.reusable() {
		w.s.giveBuf(w.spare)
	}
	w.spare, w.spareRes = nil, 0
}

// release waits for the part uploading, if any, and gives every buffer's
// share of the budget back.
func (w *writer) release() {
	w.wait()
	w.dropPieces()
	w.dropSpare()
	if w.bufRes > 0 {
		w.s.release(w.bufRes)
	}
	if w.reusable() {
		w.s.giveBuf(w.buf)
	}
	w.buf, w.bufRes = nil, 0
}

// reusable reports whether the writer's buffers may be used again: no
// request that failed may still read them.
func (w *writer) reusable() bool { return w.err == nil && w.rerr == nil && !w.failed }

// stored is the number of body bytes in parts sent (or being sent).
func (w *writer) stored() int64 {
	var n int64
	for i := 1; i < w.next; i++ {
		n += partSize(w.total, i)
	}
	return n
}

// sendPart starts the upload of buf as part next, once the part before it
// is stored.
func (w *writer) sendPart() error {
	if err := w.wait(); err != nil {
		return err
	}
	if w.uploadID == "" {
		if err := w.begin(); err != nil {
			return err
		}
	}
	buf, res, num, id := w.buf, w.bufRes, w.next, w.uploadID
	w.buf, w.bufRes, w.next = nil, 0, w.next+1
	ch := make(chan sent, 1)
	w.inflight = ch
	go func() {
		p, err := w.s.core.PutObjectPart(context.Background(), w.s.bucket, w.key, id, num,
			bytes.NewReader(buf), int64(len(buf)), minio.PutObjectPartOptions{Sha256Hex: sha256Hex(buf), DisableContentSha256: true})
		ch <- sent{buf: buf, res: res, part: minio.CompletePart{PartNumber: num, ETag: p.ETag}, err: err}
	}()
	return nil
}

// wait waits for the part being uploaded, if any.
func (w *writer) wait() error {
	if w.inflight != nil {
		r := <-w.inflight
		w.inflight = nil
		w.dropSpare()
		w.spare, w.spareRes = r.buf, r.res
		if r.err != nil && w.err == nil {
			w.err = fmt.Errorf("s3://%s/%s: part %d: %w", w.s.bucket, w.key, r.part.PartNumber, r.err)
		}
		if r.err == nil {
			w.addPart(r.part)
		}
	}
	return w.err
}

// metadata is what the object carries: its source and the source's
// validators (and the SHA-256 of a body stored with one PUT).
func (w *writer) metadata() map[string]string {
	m := map[string]string{metaURL: encodeMeta(w.origin)}
	if w.etag != "" {
		m[metaETag] = encodeMeta(w.etag)
	}
	if w.lastMod != "" {
		m[metaLastModified] = encodeMeta(w.lastMod)
	}
	if w.s.runTag != "" {
		m[metaRun] = w.s.runTag
	}
	if w.sha256 != "" {
		m[metaSHA256] = w.sha256
	}
	return m
}

// begin starts the multipart upload, and records it for a later run when a
// validator can tell that run whether the source is still the same.
func (w *writer) begin() error {
	ctx := context.Background()
	id, err := w.s.core.NewMultipartUpload(ctx, w.s.bucket, w.key, minio.PutObjectOptions{UserMetadata: w.metadata()})
	if err != nil {
		return w.s.classify(err)
	}
	w.uploadID = id
	if w.validator != "" {
		r := &record{Key: w.key, UploadID: id, Origin: w.origin, Validator: w.validator, Total: w.total}
		if err := w.s.putRecord(ctx, r); err != nil {
			// Not resumable without its record: not left behind either.
			w.s.core.AbortMultipartUpload(ctx, w.s.bucket, w.key, id)
			w.uploadID = ""
			return err
		}
		w.recorded = true
	}
	return nil
}

// Commit stores the object: one PUT, or the last part and
// CompleteMultipartUpload. done is called before Commit returns.
func (w *writer) Commit(done func(error)) {
	err := w.commit()
	w.failed = err != nil
	w.release()
	done(err)
}

func (w *writer) commit() error {
	ctx := context.Background()
	if w.ranged {
		if err := w.EndRanges(w.total); err != nil {
			w.abortUpload()
			return err
		}
	}
	if w.uploadID == "" {
		body := w.buf
		sum := sha256Hex(body)
		meta := w.metadata()
		meta[metaSHA256] = sum
		_, err := w.s.core.PutObject(ctx, w.s.bucket, w.key, bytes.NewReader(body), int64(len(body)), "", sum,
			minio.PutObjectOptions{UserMetadata: meta, DisableContentSha256: true})
		if err != nil {
			return w.s.classify(err)
		}
		return nil
	}
	if len(w.buf) > 0 || len(w.parts) == 0 && w.inflight == nil {
		if err := w.sendPart(); err != nil {
			w.abortUpload()
			return err
		}
	}
	if err := w.wait(); err != nil {
		w.abortUpload()
		return err
	}
	slices.SortFunc(w.parts, func(a, b minio.CompletePart) int { return a.PartNumber - b.PartNumber })
	_, err := w.s.core.CompleteMultipartUpload(ctx, w.s.bucket, w.key, w.uploadID, w.parts, minio.PutObjectOptions{})
	if err != nil && !notFound(err) {
		w.abortUpload()
		return w.s.classify(err)
	}
	// Checked with a HEAD: a completion the store finished after the
	// client gave up on its answer (and retried, to find no such upload)
	// is there; one it dropped is not, and the entry fails rather than
	// count a file that is not in the bucket.
	oi, serr := w.s.core.StatObject(ctx, w.s.bucket, w.key, minio.StatObjectOptions{})
	if serr != nil || oi.Size != w.size || metaOf(oi.Metadata, metaURL) != w.origin {
		w.abortUpload()
		if err == nil {
			err = serr
		}
		return fmt.Errorf("s3://%s/%s: upload completed, but the object is not there whole (%d bytes, want %d): %v", w.s.bucket, w.key, oi.Size, w.size, err)
	}
	w.forget()
	return nil
}

// Abort keeps a resumable upload (one with a record) for a later run: the
// parts stored stay, the bytes read past them go. Any other upload is
// aborted.
func (w *writer) Abort() error {
	w.release()
	if w.uploadID == "" {
		return nil
	}
	if w.recorded && w.err == nil && w.rerr == nil {
		w.s.mu.Lock()
		w.s.pending[w.key] = true
		w.s.mu.Unlock()
		return nil
	}
	return w.abortUpload()
}

// Discard aborts the upload: its bytes are known to be wrong.
func (w *writer) Discard() error {
	w.release()
	return w.abortUpload()
}

// Restart aborts the upload: the next Write starts the body over.
func (w *writer) Restart() error {
	w.wait()
	w.dropPieces()
	err := w.abortUpload()
	w.buf, w.next, w.parts, w.err, w.rerr, w.size = w.buf[:0], 1, nil, nil, nil, 0
	w.partial = sink.Partial{}
	return err
}

// abortUpload aborts the upload begun (or resumed), if any, and its record.
func (w *writer) abortUpload() error {
	if w.uploadID == "" {
		return nil
	}
	err := w.s.core.AbortMultipartUpload(context.Background(), w.s.bucket, w.key, w.uploadID)
	if notFound(err) {
		err = nil
	}
	w.forget()
	if err != nil {
		return w.s.classify(err)
	}
	return nil
}

// forget lets go of the upload: its record is deleted, the key no longer
// pending.
func (w *writer) forget() {
	if w.recorded {
		w.s.deleteRecord(context.Background(), w.key)
	}
	w.s.mu.Lock()
	delete(w.s.pending, w.key)
	w.s.mu.Unlock()
	w.uploadID, w.recorded = "", false
}
