package bucket

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strings"

	"github.com/minio/minio-go/v7"

	"github.com/haul/haul/sink"
)

// TarStore is the bucket under the sink's prefix as a Tar sink keeps its
// tar files there (sink.NewTarObjects): --tar -d s3://BUCKET/PREFIX.
func (s *Sink) TarStore() sink.ObjectStore { return tarStore{s} }

type tarStore struct{ s *Sink }

var _ sink.ObjectStore = tarStore{}

func (t tarStore) Name(key string) string {
	return fmt.Sprintf("s3://%s/%s", t.s.bucket, t.s.Key(key))
}

// wrap names the object an error is about, and makes a missing one
// fs.ErrNotExist.
func (t tarStore) wrap(key string, err error) error {
	if err == nil {
		return nil
	}
	if notFound(err) {
		return fmt.Errorf("%s: %w", t.Name(key), fs.ErrNotExist)
	}
	return fmt.Errorf("%s: %w", t.Name(key), t.s.classify(err))
}

func (t tarStore) List(prefix string) ([]sink.StoredObject, error) {
	var out []sink.StoredObject
	token := ""
	for {
		res, err := t.s.core.ListObjectsV2(t.s.bucket, t.s.Key(prefix), "", token, "/", 1000)
		if err != nil {
			return nil, t.wrap(prefix, err)
		}
		for _, o := range res.Contents {
			out = append(out, sink.StoredObject{Key: o.Key[len(t.s.prefix):], Size: o.Size})
		}
		if !res.IsTruncated || res.NextContinuationToken == "" {
			return out, nil
		}
		token = res.NextContinuationToken
	}
}

func (t tarStore) Get(key string, off, n int64) (io.ReadCloser, error) {
	var o minio.GetObjectOptions
	if n == 0 {
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	if off > 0 || n > 0 {
		end := int64(0)
		if n > 0 {
			end = off + n - 1
		}
		if err := o.SetRange(off, end); err != nil {
			return nil, err
		}
	}
	r, _, _, err := t.s.core.GetObject(context.Background(), t.s.bucket, t.s.Key(key), o)
	if err != nil {
		return nil, t.wrap(key, err)
	}
	return r, nil
}

func (t tarStore) Put(key string, body []byte) error {
	sum := sha256Hex(body)
	_, err := t.s.core.PutObject(context.Background(), t.s.bucket, t.s.Key(key), bytes.NewReader(body), int64(len(body)), "", sum,
		minio.PutObjectOptions{DisableContentSha256: true})
	return t.wrap(key, err)
}

func (t tarStore) Delete(key string) error {
	err := t.s.core.RemoveObject(context.Background(), t.s.bucket, t.s.Key(key), minio.RemoveObjectOptions{})
	if notFound(err) {
		return nil
	}
	return t.wrap(key, err)
}

func (t tarStore) Uploads(prefix string) ([]sink.StoredUpload, error) {
	var out []sink.StoredUpload
	keyMarker, idMarker := "", ""
	for {
		res, err := t.s.core.ListMultipartUploads(context.Background(), t.s.bucket, t.s.Key(prefix), keyMarker, idMarker, "/", 1000)
		if err != nil {
			return nil, t.wrap(prefix, err)
		}
		for _, u := range res.Uploads {
			out = append(out, sink.StoredUpload{Key: u.Key[len(t.s.prefix):], ID: u.UploadID})
		}
		if !res.IsTruncated || res.NextKeyMarker == "" && res.NextUploadIDMarker == "" {
			return out, nil
		}
		keyMarker, idMarker = res.NextKeyMarker, res.NextUploadIDMarker
	}
}

func (t tarStore) NewUpload(key string) (string, error) {
	id, err := t.s.core.NewMultipartUpload(context.Background(), t.s.bucket, t.s.Key(key), minio.PutObjectOptions{ContentType: "application/x-tar"})
	return id, t.wrap(key, err)
}

func (t tarStore) PutPart(key, id string, n int, body []byte) (string, error) {
	p, err := t.s.core.PutObjectPart(context.Background(), t.s.bucket, t.s.Key(key), id, n,
		bytes.NewReader(body), int64(len(body)), minio.PutObjectPartOptions{Sha256Hex: sha256Hex(body), DisableContentSha256: true})
	return strings.Trim(p.ETag, `"`), t.wrap(key, err)
}

func (t tarStore) Parts(key, id string) ([]sink.StoredPart, error) {
	var out []sink.StoredPart
	marker := 0
	for {
		res, err := t.s.core.ListObjectParts(context.Background(), t.s.bucket, t.s.Key(key), id, marker, 1000)
		if err != nil {
			return nil, t.wrap(key, err)
		}
		for _, p := range res.ObjectParts {
			out = append(out, sink.StoredPart{Number: p.PartNumber, ETag: strings.Trim(p.ETag, `"`), Size: p.Size})
		}
		if !res.IsTruncated || res.NextPartNumberMarker <= marker {
			sort.Slice(out, func(i, j int) bool { return out[i].Number < out[j].Number })
			return out, nil
		}
		marker = res.NextPartNumberMarker
	}
}

func (t tarStore) Complete(key, id string, parts []sink.StoredPart) error {
	ctx := context.Background()
	cp := make([]minio.CompletePart, len(parts))
	var size int64
	for i, p := range parts {
		cp[i] = minio.CompletePart{PartNumber: p.Number, ETag: p.ETag}
		size += p.Size
	}
	_, err := t.s.core.CompleteMultipartUpload(ctx, t.s.bucket, t.s.Key(key), id, cp, minio.PutObjectOptions{})
	if err != nil && !notFound(err) {
		return t.wrap(key, err)
	}
	// Checked with a HEAD: a completion the store finished after the
	// client gave up on its answer (and retried, to find no such upload)
	// is there; one it dropped is not.
	oi, serr := t.s.core.StatObject(ctx, t.s.bucket, t.s.Key(key), minio.StatObjectOptions{})
	if serr != nil || oi.Size != size {
		if err == nil {
			err = serr
		}
		return fmt.Errorf("%s: upload completed, but the object is not there whole (%d bytes, want %d): %v", t.Name(key), oi.Size, size, err)
	}
	return nil
}

func (t tarStore) Abort(key, id string) error {
	err := t.s.core.AbortMultipartUpload(context.Background(), t.s.bucket, t.s.Key(key), id)
	if notFound(err) {
		return nil
	}
	return t.wrap(key, err)
}
