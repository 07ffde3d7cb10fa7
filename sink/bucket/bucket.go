// Package bucket is a sink that stores each entry as an object in an
// S3-compatible bucket (-d s3://BUCKET/PREFIX), streamed from the response
// into the upload: no local copy.
//
// A body shorter than one part is held in memory and stored with one PUT; a
// longer one is a multipart upload whose parts are uploaded while the next is
// read, at most two in memory per upload (see partSize). The object appears at
// its key only when whole (CompleteMultipartUpload). What a re-run needs to
// resume an interrupted upload lives in the bucket, beside the upload: a small
// record under PREFIX/.haul-uploads/ (see record.go), so that a run on another
// machine, or in a restarted pod with an empty disk, resumes too.
//
// The client is minio-go's Core, driven at the multipart level. Every request
// body is signed with its own SHA-256 (held in memory, so hashed before it is
// sent): no aws-chunked streaming and no x-amz-checksum-* headers or trailers,
// which several S3-compatible stores reject.
package bucket

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"golang.org/x/sync/semaphore"

	"github.com/haul/haul/sink"
)

// Options say which bucket, where it is and how to sign.
type Options struct {
	// Bucket and Prefix: objects go to PREFIX/NAME (NAME alone for "").
	Bucket, Prefix string
	// Endpoint is the store's URL (http:// or https://, no path); "" is AWS S3.
	Endpoint string
	// Region signs the requests (us-east-1 if "").
	Region string
	// PathStyle addresses the bucket in the path (http://HOST/BUCKET/KEY)
	// rather than the host name; always so where the endpoint's host is an IP
	// address or localhost.
	PathStyle bool
	// Creds signs the requests; nil: Credentials() (the environment, then the
	// shared credentials file).
	Creds *credentials.Credentials
	// RunTag is recorded with each object (Info.RunTag), as the File sink does.
	RunTag string
	// Transport carries the requests (nil: a transport of its own).
	Transport http.RoundTripper
	// Memory bounds the bytes of bodies held by all writers together, read
	// and not yet stored (0: DefaultMemory). A writer waits for its share
	// before it reads a part; it holds two parts (one read while one
	// uploads) only where the budget has room. A body in pieces holds a
	// part for each piece filling one, and one for each part uploading,
	// each waiting for its share the same way.
	Memory int64
}

// DefaultMemory is Options.Memory's default: two parts of 8 MiB for each of
// 16 uploads.
const DefaultMemory = 16 * 2 * minPart

// Credentials are the usual chain of the AWS tools: AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN, else the shared credentials
// file (AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials, profile
// AWS_PROFILE or default).
func Credentials() *credentials.Credentials {
	return credentials.NewChainCredentials([]credentials.Provider{
		&credentials.EnvAWS{},
		&credentials.FileAWSCredentials{},
	})
}

// ParseURL splits s3://BUCKET/PREFIX into the bucket and the prefix (without
// slashes at its ends).
func ParseURL(s string) (bucketName, prefix string, err error) {
	rest, ok := strings.CutPrefix(s, "s3://")
	if !ok {
		return "", "", fmt.Errorf("%q: want s3://BUCKET/PREFIX", s)
	}
	bucketName, prefix, _ = strings.Cut(rest, "/")
	prefix = strings.Trim(prefix, "/")
	if !validBucket(bucketName) {
		return "", "", fmt.Errorf("%q: bucket name %q: want 3 to 63 lower-case letters, digits, dots and hyphens", s, bucketName)
	}
	for _, seg := range strings.Split(prefix, "/") {
		if prefix != "" && (seg == "" || seg == "." || seg == "..") {
			return "", "", fmt.Errorf("%q: prefix %q has an empty, . or .. segment", s, prefix)
		}
	}
	return bucketName, prefix, nil
}

func validBucket(b string) bool {
	if len(b) < 3 || len(b) > 63 {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return false
		}
	}
	return b[0] != '.' && b[0] != '-' && b[len(b)-1] != '.' && b[len(b)-1] != '-'
}

// Sink stores entries as objects. It is safe for concurrent use.
type Sink struct {
	core   minio.Core
	bucket string
	prefix string // "" or ending in "/"
	runTag string

	mem     *semaphore.Weighted // Options.Memory
	memSize int64
	// held is the part of the budget taken, peak the most it was.
	held, peak atomic.Int64
	// free holds part buffers for reuse, freeBytes their size (buffers.go).
	freeMu    sync.Mutex
	free      [][]byte
	freeBytes int64

	mu sync.Mutex
	// pending holds the keys with an upload in progress, as listed when the
	// sink was opened and left since by this run's Abort: only those look for
	// a resume record, so a new object costs no request before its upload.
	pending map[string]bool
}

var (
	_ sink.Sink         = (*Sink)(nil)
	_ sink.HashWriter   = (*writer)(nil)
	_ sink.CostlyWriter = (*writer)(nil)
)

// ErrNoBucket reports that the bucket does not exist.
var ErrNoBucket = errors.New("no such bucket (haul never creates one)")

// ErrDenied reports that the store refused the credentials or the access.
var ErrDenied = errors.New("access denied")

// Open connects to the bucket and checks, once, that it is there and that the
// credentials are accepted (ErrNoBucket, ErrDenied otherwise). It lists the
// uploads in progress under the prefix, which a re-run resumes.
func Open(ctx context.Context, o Options) (*Sink, error) {
	endpoint, secure := "s3.amazonaws.com", true
	lookup := minio.BucketLookupDNS
	if o.Endpoint != "" {
		u, err := url.Parse(o.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.Trim(u.Path, "/") != "" {
			return nil, fmt.Errorf("endpoint %q: want http(s)://HOST[:PORT]", o.Endpoint)
		}
		endpoint, secure = u.Host, u.Scheme == "https"
		host := u.Hostname()
		if net.ParseIP(host) != nil || host == "localhost" {
			o.PathStyle = true
		}
	}
	if o.PathStyle {
		lookup = minio.BucketLookupPath
	}
	if o.Region == "" {
		o.Region = "us-east-1"
	}
	if o.Creds == nil {
		o.Creds = Credentials()
	}
	tr := o.Transport
	if tr == nil {
		t, err := minio.DefaultTransport(secure)
		if err != nil {
			return nil, err
		}
		t.MaxIdleConnsPerHost = 256
		// A store may assemble a big object before it answers
		// CompleteMultipartUpload (versitygw copies the parts): a minute,
		// minio-go's default, is not always enough, and its retry then
		// finds no such upload.
		t.ResponseHeaderTimeout = 15 * time.Minute
		tr = t
	}
	c, err := minio.NewCore(endpoint, &minio.Options{
		Creds: o.Creds, Secure: secure, Region: o.Region, BucketLookup: lookup, Transport: tr,
		// No trailing checksums (x-amz-checksum-crc32c ...): bodies are
		// signed with their SHA-256 instead (see the package comment).
		TrailingHeaders: false,
	})
	if err != nil {
		return nil, err
	}
	c.SetAppInfo("haul", "")
	if o.Memory <= 0 {
		o.Memory = DefaultMemory
	}
	s := &Sink{core: *c, bucket: o.Bucket, runTag: o.RunTag, pending: map[string]bool{},
		mem: semaphore.NewWeighted(o.Memory), memSize: o.Memory}
	if o.Prefix != "" {
		s.prefix = o.Prefix + "/"
	}
	// A listing of one key, not a HEAD of the bucket: its error comes with
	// a body that says whether the bucket or the credentials are wrong.
	if _, err := c.ListObjectsV2(o.Bucket, s.prefix, "", "", "", 1); err != nil {
		return nil, s.classify(err)
	}
	if err := s.listPending(ctx); err != nil {
		return nil, s.classify(err)
	}
	return s, nil
}

// acquire takes n bytes of the memory budget, waiting for them as long as
// ctx lasts.
func (s *Sink) acquire(ctx context.Context, n int64) error {
	if err := s.mem.Acquire(ctx, n); err != nil {
		return err
	}
	s.took(n)
	return nil
}

// tryAcquire takes n bytes of the memory budget if they are free.
func (s *Sink) tryAcquire(n int64) bool {
	if !s.mem.TryAcquire(n) {
		return false
	}
	s.took(n)
	return true
}

func (s *Sink) took(n int64) {
	h := s.held.Add(n)
	for p := s.peak.Load(); h > p && !s.peak.CompareAndSwap(p, h); p = s.peak.Load() {
	}
}

// release gives n bytes back to the memory budget.
func (s *Sink) release(n int64) {
	s.held.Add(-n)
	s.mem.Release(n)
}

// classify names the errors that stop a run: the bucket is not there, or the
// store refuses the credentials (sink.ErrUnavailable: no entry can be
// written). A refused access alone (AccessDenied: a policy) concerns the
// object, and stops only a run that has not begun (Open).
func (s *Sink) classify(err error) error {
	er := minio.ToErrorResponse(err)
	const hint = "check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the profile (AWS_PROFILE) in the shared credentials file"
	switch er.Code {
	case "NoSuchBucket":
		return stop{fmt.Errorf("s3://%s: %w", s.bucket, ErrNoBucket)}
	case "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "InvalidClientTokenId",
		"XAdminUserNotFound": // versitygw's answer (404) to an unknown access key
		return stop{fmt.Errorf("s3://%s: %w (%v): %s", s.bucket, ErrDenied, err, hint)}
	}
	if er.Code == "AccessDenied" || er.StatusCode == http.StatusUnauthorized || er.StatusCode == http.StatusForbidden {
		return fmt.Errorf("s3://%s: %w (%v): %s", s.bucket, ErrDenied, err, hint)
	}
	return fmt.Errorf("s3://%s: %w", s.bucket, err)
}

// stop marks an error after which no entry can be written.
type stop struct{ error }

func (e stop) Unwrap() []error { return []error{e.error, sink.ErrUnavailable} }

// Key is the object key of name.
func (s *Sink) Key(name string) string { return s.prefix + name }

// The object metadata haul writes (x-amz-meta-haul-...).
const (
	metaURL          = "Haul-Url"
	metaETag         = "Haul-Etag"
	metaLastModified = "Haul-Last-Modified"
	metaSHA256       = "Haul-Sha256"
	metaRun          = "Haul-Run"
)

// encodeMeta makes v fit a header value: as it is when it is printable
// ASCII, else percent-encoded behind "%" (an ETag or URL with other bytes).
func encodeMeta(v string) string {
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e || v[i] == '%' && i == 0 {
			return "%" + url.QueryEscape(v)
		}
	}
	return v
}

func decodeMeta(v string) string {
	if rest, ok := strings.CutPrefix(v, "%"); ok {
		if d, err := url.QueryUnescape(rest); err == nil {
			return d
		}
	}
	return v
}

func metaOf(h http.Header, name string) string {
	return decodeMeta(h.Get("X-Amz-Meta-" + name))
}

// Stat describes the object for name with one HEAD.
func (s *Sink) Stat(name string) (sink.Info, error) {
	oi, err := s.core.StatObject(context.Background(), s.bucket, s.Key(name), minio.StatObjectOptions{})
	if err != nil {
		if notFound(err) {
			return sink.Info{}, fmt.Errorf("s3://%s/%s: %w", s.bucket, s.Key(name), fs.ErrNotExist)
		}
		return sink.Info{}, s.classify(err)
	}
	return sink.Info{
		Size: oi.Size, ModTime: oi.LastModified,
		Origin: metaOf(oi.Metadata, metaURL), RunTag: metaOf(oi.Metadata, metaRun),
		ETag: metaOf(oi.Metadata, metaETag), LastModified: metaOf(oi.Metadata, metaLastModified),
	}, nil
}

func notFound(err error) bool {
	switch minio.ToErrorResponse(err).Code {
	case "NoSuchKey", "NotFound", "NoSuchUpload":
		return true
	}
	return minio.ToErrorResponse(err).StatusCode == http.StatusNotFound &&
		minio.ToErrorResponse(err).Code != "NoSuchBucket"
}

// Open reads the object for name (one GET).
func (s *Sink) Open(name string) (io.ReadCloser, error) {
	r, _, _, err := s.core.GetObject(context.Background(), s.bucket, s.Key(name), minio.GetObjectOptions{})
	if err != nil {
		if notFound(err) {
			return nil, fmt.Errorf("s3://%s/%s: %w", s.bucket, s.Key(name), fs.ErrNotExist)
		}
		return nil, s.classify(err)
	}
	return r, nil
}

// Flush returns at once: Commit has stored the object when it calls done.
func (s *Sink) Flush() {}

// Staged reports what Create would resume for name and origin, reading the
// resume record and the parts stored, changing nothing.
func (s *Sink) Staged(name, origin string) (sink.Partial, error) {
	r, parts, err := s.resumable(context.Background(), s.Key(name), origin, false)
	if err != nil || r == nil {
		return sink.Partial{}, err
	}
	return partialOf(r, parts), nil
}

// Create starts the writer for name: resuming the upload an earlier run
// left for the same origin, or a new one (begun at the first full part).
func (s *Sink) Create(name, origin string) (sink.Writer, error) {
	ctx := context.Background()
	key := s.Key(name)
	w := &writer{s: s, key: key, origin: origin, total: -1}
	r, parts, err := s.resumable(ctx, key, origin, true)
	if err != nil {
		return nil, err
	}
	if r != nil && len(parts) == 0 {
		// Nothing kept: a new upload, with this response's metadata.
		err = s.abortAll(ctx, key)
	} else if r != nil {
		w.resume(r, parts)
	}
	if err != nil {
		return nil, err
	}
	return w, nil
}

// Parts: at least minPart (S3 wants 5 MiB but the last), at most maxParts
// per object, at most maxPart each.
const (
	minPart  = 8 << 20
	maxParts = 10000
	maxPart  = 5 << 30
)

// partSize is the size of part n (from 1) of a body of total bytes (-1:
// unknown). A known length gets equal parts of max(8 MiB, total/10,000)
// rounded up to a MiB. An unknown one starts at 8 MiB and doubles every
// 1,000 parts, so that 10,000 parts hold 8,000 MiB x 1,023, about 8 TiB (an
// object's limit is 5 TiB).
func partSize(total int64, n int) int64 {
	if total >= 0 {
		p := (total + maxParts - 1) / maxParts
		p = (p + 1<<20 - 1) &^ (1<<20 - 1)
		return min(max(p, minPart), maxPart)
	}
	return min(int64(minPart)<<((n-1)/1000), maxPart)
}

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
