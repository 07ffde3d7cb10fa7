package bucket

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/minio/minio-go/v7"

	"github.com/haul/haul/internal/urlid"
	"github.com/haul/haul/sink"
)

// record is what a re-run needs to resume an upload, stored as a small
// object at PREFIX/.haul-uploads/HASH.json (HASH: of the key) from the
// upload's start to its end (completed or aborted). S3 gives back an
// upload's key, id and parts (ListMultipartUploads, ListObjectParts), not the
// metadata it was begun with: the source's validator and length live here.
type record struct {
	Key       string `json:"key"`
	UploadID  string `json:"upload_id"`
	Origin    string `json:"url"`
	Validator string `json:"validator"`
	Total     int64  `json:"total"` // -1: unknown (the parts then grow, see partSize)
}

// RecordDir is where the resume records are, under the prefix.
const RecordDir = ".haul-uploads/"

func (s *Sink) recordKey(key string) string {
	return s.prefix + RecordDir + sha256Hex([]byte(key))[:32] + ".json"
}

func (s *Sink) putRecord(ctx context.Context, r *record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = s.core.PutObject(ctx, s.bucket, s.recordKey(r.Key), bytes.NewReader(b), int64(len(b)), "", sha256Hex(b),
		minio.PutObjectOptions{ContentType: "application/json", DisableContentSha256: true})
	if err != nil {
		return s.classify(err)
	}
	return nil
}

// readRecord returns the record of key, nil if there is none (or it is not
// one of haul's).
func (s *Sink) readRecord(ctx context.Context, key string) (*record, error) {
	rc, _, _, err := s.core.GetObject(ctx, s.bucket, s.recordKey(key), minio.GetObjectOptions{})
	if notFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, s.classify(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 64<<10))
	if err != nil {
		return nil, s.classify(err)
	}
	var r record
	if json.Unmarshal(b, &r) != nil || r.Key != key || r.UploadID == "" {
		return nil, nil
	}
	return &r, nil
}

func (s *Sink) deleteRecord(ctx context.Context, key string) {
	// A record left behind names an upload that is gone: a re-run finds
	// no such upload and starts over.
	s.core.RemoveObject(ctx, s.bucket, s.recordKey(key), minio.RemoveObjectOptions{})
}

// listPending notes the keys under the prefix with an upload in progress.
func (s *Sink) listPending(ctx context.Context) error {
	keyMarker, idMarker := "", ""
	for {
		res, err := s.core.ListMultipartUploads(ctx, s.bucket, s.prefix, keyMarker, idMarker, "", 1000)
		if err != nil {
			return err
		}
		for _, u := range res.Uploads {
			s.pending[u.Key] = true
		}
		if !res.IsTruncated || res.NextKeyMarker == "" && res.NextUploadIDMarker == "" {
			return nil
		}
		keyMarker, idMarker = res.NextKeyMarker, res.NextUploadIDMarker
	}
}

// resumable returns the upload of key that an earlier run left for origin,
// with the parts it keeps: those from the first, in order, each of the size
// it was sent with. Where there is none to resume, nil; with fix, the key's
// uploads that cannot be resumed are aborted (a source that changed, an
// upload begun by a run killed before it could record it).
func (s *Sink) resumable(ctx context.Context, key, origin string, fix bool) (*record, []minio.CompletePart, error) {
	s.mu.Lock()
	pending := s.pending[key]
	s.mu.Unlock()
	if !pending {
		return nil, nil, nil
	}
	r, err := s.readRecord(ctx, key)
	if err != nil {
		return nil, nil, err
	}
	if r != nil && urlid.Same(r.Origin, origin) && r.Validator != "" {
		parts, err := s.keptParts(ctx, r)
		if err == nil {
			return r, parts, nil
		}
		if !notFound(err) {
			return nil, nil, s.classify(err)
		}
	}
	if !fix {
		return nil, nil, nil
	}
	if err := s.abortAll(ctx, key); err != nil {
		return nil, nil, err
	}
	return nil, nil, nil
}

// keptParts lists the parts of r's upload that have the size they were sent
// with. Where the length is unknown (parts that grow), those from the first,
// in order: a gap, or a part of another size, ends them (the rest is sent
// again). Where it is known, any part whole (a body fetched in pieces
// stores its parts out of order): the gaps are fetched again.
func (s *Sink) keptParts(ctx context.Context, r *record) ([]minio.CompletePart, error) {
	var kept []minio.CompletePart
	marker := 0
	for {
		res, err := s.core.ListObjectParts(ctx, s.bucket, r.Key, r.UploadID, marker, 1000)
		if err != nil {
			return nil, err
		}
		for _, p := range res.ObjectParts {
			if r.Total >= 0 {
				if p.PartNumber >= 1 && p.PartNumber <= numParts(r.Total) && p.Size == partLen(r.Total, p.PartNumber) {
					kept = append(kept, minio.CompletePart{PartNumber: p.PartNumber, ETag: p.ETag})
				}
				continue
			}
			n := len(kept) + 1
			if p.PartNumber != n || p.Size != partSize(r.Total, n) {
				return kept, nil
			}
			kept = append(kept, minio.CompletePart{PartNumber: n, ETag: p.ETag})
		}
		if !res.IsTruncated || res.NextPartNumberMarker <= marker {
			return kept, nil
		}
		marker = res.NextPartNumberMarker
	}
}

// numParts is the number of parts of a body of total bytes (known; at
// least one).
func numParts(total int64) int {
	size := partSize(total, 1)
	return int(max((total+size-1)/size, 1))
}

// partLen is the length of part n of a body of total bytes (known): the last
// one holds what is left.
func partLen(total int64, n int) int64 {
	size := partSize(total, 1)
	return min(size, total-int64(n-1)*size)
}

// abortAll aborts every upload in progress for key, and its record.
func (s *Sink) abortAll(ctx context.Context, key string) error {
	keyMarker, idMarker := "", ""
	for {
		res, err := s.core.ListMultipartUploads(ctx, s.bucket, key, keyMarker, idMarker, "", 1000)
		if err != nil {
			return s.classify(err)
		}
		for _, u := range res.Uploads {
			if u.Key != key {
				continue
			}
			if err := s.core.AbortMultipartUpload(ctx, s.bucket, key, u.UploadID); err != nil && !notFound(err) {
				return fmt.Errorf("s3://%s/%s: abort upload %s: %w", s.bucket, key, u.UploadID, err)
			}
		}
		if !res.IsTruncated || res.NextKeyMarker == "" && res.NextUploadIDMarker == "" {
			break
		}
		keyMarker, idMarker = res.NextKeyMarker, res.NextUploadIDMarker
	}
	s.deleteRecord(ctx, key)
	s.mu.Lock()
	delete(s.pending, key)
	s.mu.Unlock()
	return nil
}

// partialOf is what a resumed upload keeps: the parts' bytes, those from
// the first in order as the offset, the others (a body fetched in pieces) as
// ranges done past it.
func partialOf(r *record, parts []minio.CompletePart) sink.Partial {
	n := inOrder(parts)
	var off int64
	for i := 1; i <= n; i++ {
		off += partSize(r.Total, i)
	}
	var done []sink.Range
	if r.Total >= 0 {
		size := partSize(r.Total, 1)
		for _, p := range parts {
			if p.PartNumber > n+1 {
				start := int64(p.PartNumber-1) * size
				done, _ = addRange(done, sink.Range{Start: start, End: start + partLen(r.Total, p.PartNumber)})
			}
		}
	}
	if r.Total >= 0 {
		off = min(off, r.Total)
	}
	if off == 0 && done == nil {
		return sink.Partial{}
	}
	return sink.Partial{Offset: off, Validator: r.Validator, Total: r.Total, Done: done}
}
