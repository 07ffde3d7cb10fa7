package bucket

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/haul/haul/internal/s3test"
	"github.com/haul/haul/internal/testutil"
	"github.com/haul/haul/sink"
)

func TestPartSizeFromLength(t *testing.T) {
	cases := []struct {
		total int64
		n     int
		want  int64
	}{
		{0, 1, 8 << 20},
		{40 << 20, 1, 8 << 20},
		{80 << 30, 1, 9 << 20},          // 80 GiB / 10,000 = 8.19 MiB, rounded up to a MiB
		{5 << 40, 1, 525 << 20},         // 5 TiB: 10,000 parts of 525 MiB hold it
		{-1, 1, 8 << 20},                // unknown: 8 MiB first
		{-1, 1000, 8 << 20},             //
		{-1, 1001, 16 << 20},            // doubled every 1,000 parts
		{-1, 10000, 4096 << 20},         //
		{1 << 50, 1, 5 << 30},           // never past the 5 GiB a part may hold
		{10000*(8<<20) + 1, 1, 9 << 20}, // one byte past 10,000 parts of 8 MiB
	}
	for _, c := range cases {
		if got := partSize(c.total, c.n); got != c.want {
			t.Errorf("partSize(%d, %d) = %d, want %d", c.total, c.n, got, c.want)
		}
	}
	// An unknown length reaches an object's limit (5 TiB) within 10,000 parts.
	var sum int64
	for n := 1; n <= maxParts; n++ {
		sum += partSize(-1, n)
	}
	if sum < 5<<40 {
		t.Errorf("10,000 parts of an unknown length hold %d bytes, want at least 5 TiB", sum)
	}
	// A known one never needs more than 10,000 parts.
	for _, total := range []int64{1 << 30, 100<<30 + 7, 5 << 40} {
		if p := partSize(total, 1); (total+p-1)/p > maxParts {
			t.Errorf("%d bytes take %d parts of %d", total, (total+p-1)/p, p)
		}
	}
}

func TestParseURL(t *testing.T) {
	cases := []struct{ in, bucket, prefix, err string }{
		{"s3://data", "data", "", ""},
		{"s3://data/", "data", "", ""},
		{"s3://data/a/b/", "data", "a/b", ""},
		{"s3://my.bucket-1/x", "my.bucket-1", "x", ""},
		{"s3://", "", "", "bucket name"},
		{"s3://Data/x", "", "", "bucket name"},
		{"s3://ab", "", "", "bucket name"},
		{"s3://data/a//b", "", "", "empty"},
		{"s3://data/a/../b", "", "", ".."},
		{"/tmp/x", "", "", "want s3://"},
	}
	for _, c := range cases {
		b, p, err := ParseURL(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseURL(%q): error %v, want one with %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || b != c.bucket || p != c.prefix {
			t.Errorf("ParseURL(%q) = %q, %q, %v; want %q, %q", c.in, b, p, err, c.bucket, c.prefix)
		}
	}
}

// open starts a store with bucket "data" and opens the sink on prefix.
func open(t *testing.T, prefix string) (*s3test.Server, *Sink) {
	t.Helper()
	srv := s3test.Start(t)
	srv.Bucket(t, "data")
	return srv, reopen(t, srv, prefix)
}

// reopen opens a new sink on srv's bucket "data": a new run.
func reopen(t *testing.T, srv *s3test.Server, prefix string) *Sink {
	t.Helper()
	s, err := Open(context.Background(), Options{Bucket: "data", Prefix: prefix, Endpoint: srv.Endpoint,
		Creds: credentials.NewStaticV4(srv.Access, srv.Secret, "")})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// store writes body to name through a writer, in writes of step bytes.
func store(t *testing.T, s *Sink, name, origin string, body []byte, total int64, step int) sink.Writer {
	t.Helper()
	w, err := s.Create(name, origin)
	if err != nil {
		t.Fatal(err)
	}
	w.SetValidator(`"v1"`, total)
	w.SetCacheValidators(`"v1"`, "Mon, 07 Dec 2026 08:00:00 GMT")
	for off := 0; off < len(body); off += step {
		if _, err := w.Write(body[off:min(off+step, len(body))]); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

func commit(t *testing.T, w sink.Writer) {
	t.Helper()
	var got error
	called := false
	w.Commit(func(err error) { got, called = err, true })
	if !called || got != nil {
		t.Fatalf("commit: called %v, err %v", called, got)
	}
}

func TestObjectsLandWholeWithTheirMetadata(t *testing.T) {
	srv, s := open(t, "run/1")
	small := testutil.Payload(1, 100<<10)
	big := testutil.Payload(2, 20<<20+12345) // 3 parts of 8 MiB
	unknown := testutil.Payload(3, 9<<20)    // length unknown: 2 parts
	commit(t, store(t, s, "h/small.bin", "http://h/small.bin", small, int64(len(small)), 32<<10))
	commit(t, store(t, s, "h/big.bin", "http://h/big.bin", big, int64(len(big)), 1<<20))
	commit(t, store(t, s, "h/unknown.bin", "http://h/unknown.bin", unknown, -1, 100<<10))
	smallUnknown := testutil.Payload(9, 300<<10+1) // length unknown, under a part: one PUT
	commit(t, store(t, s, "h/small-unknown.bin", "http://h/small-unknown.bin", smallUnknown, -1, 10<<10))
	empty := []byte{}
	commit(t, store(t, s, "h/empty", "http://h/empty", empty, 0, 1))
	for name, body := range map[string][]byte{"h/small.bin": small, "h/big.bin": big, "h/unknown.bin": unknown,
		"h/small-unknown.bin": smallUnknown, "h/empty": empty} {
		if got := srv.Get(t, "data", "run/1/"+name); !bytes.Equal(got, body) {
			t.Errorf("%s: %d bytes stored, want %d as written", name, len(got), len(body))
		}
		info, err := s.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if info.Size != int64(len(body)) || info.Origin != "http://"+name || info.ETag != `"v1"` ||
			info.LastModified != "Mon, 07 Dec 2026 08:00:00 GMT" {
			t.Errorf("%s: Stat = %+v", name, info)
		}
		r, err := s.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || !bytes.Equal(got, body) {
			t.Errorf("%s: Open read %d bytes (%v), want the body", name, len(got), err)
		}
	}
	// The body of one PUT carries its SHA-256.
	oi, err := s.core.StatObject(context.Background(), "data", "run/1/h/small.bin", minio.StatObjectOptions{})
	if err != nil || oi.Metadata.Get("X-Amz-Meta-Haul-Sha256") != testutil.SHA256Hex(small) {
		t.Errorf("small.bin: sha256 metadata %q (%v), want %s", oi.Metadata.Get("X-Amz-Meta-Haul-Sha256"), err, testutil.SHA256Hex(small))
	}
	if _, err := s.Stat("h/none"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat of a missing object: %v, want fs.ErrNotExist", err)
	}
	srv.CheckDone(t, "data", "run/1/"+RecordDir)
}

func TestAnObjectAppearsOnlyWhenWhole(t *testing.T) {
	srv, s := open(t, "")
	body := testutil.Payload(4, 17<<20)
	w := store(t, s, "a.bin", "http://h/a.bin", body, int64(len(body)), 1<<20)
	if _, err := s.Stat("a.bin"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("before Commit: Stat %v, want fs.ErrNotExist", err)
	}
	if up := srv.Uploads(t, "data"); !slices.Equal(up, []string{"a.bin"}) {
		t.Fatalf("uploads in progress %q, want a.bin's", up)
	}
	if err := w.Discard(); err != nil {
		t.Fatal(err)
	}
	if up := srv.Uploads(t, "data"); len(up) != 0 {
		t.Errorf("after Discard: uploads in progress %q", up)
	}
	if keys := srv.Keys(t, "data", ""); len(keys) != 0 {
		t.Errorf("after Discard: objects %q", keys)
	}
}

func TestAbortedUploadResumesInAnotherRun(t *testing.T) {
	srv, s := open(t, "p")
	body := testutil.Payload(5, 30<<20)
	// 20 MiB written: parts 1 and 2 stored, 4 MiB read into part 3.
	w := store(t, s, "x/big.bin", "http://h/big.bin", body[:20<<20], int64(len(body)), 1<<20)
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	if keys := srv.Keys(t, "data", "p/"+RecordDir); len(keys) != 1 {
		t.Fatalf("resume records %q, want one", keys)
	}
	s2 := reopen(t, srv, "p") // a new run, with nothing of the first but the bucket
	p, err := s2.Staged("x/big.bin", "http://h/big.bin")
	if err != nil || p.Offset != 16<<20 || p.Validator != `"v1"` || p.Total != int64(len(body)) {
		t.Fatalf("Staged = %+v, %v; want 16 MiB kept under \"v1\"", p, err)
	}
	if p, _ := s2.Staged("x/big.bin", "http://other/big.bin"); p.Offset != 0 {
		t.Errorf("Staged for another URL: %+v, want nothing", p)
	}
	w2, err := s2.Create("x/big.bin", "http://h/big.bin")
	if err != nil {
		t.Fatal(err)
	}
	if got := w2.Partial(); got.Offset != p.Offset || got.Validator != p.Validator || got.Total != p.Total {
		t.Fatalf("Partial %+v, want %+v", got, p)
	}
	if _, err := io.ReadAll(w2.Prefix()); !errors.Is(err, sink.ErrNoPrefix) {
		t.Errorf("reading the parts back: %v, want sink.ErrNoPrefix", err)
	}
	if _, err := w2.Write(body[16<<20:]); err != nil {
		t.Fatal(err)
	}
	commit(t, w2)
	if got := srv.Get(t, "data", "p/x/big.bin"); !bytes.Equal(got, body) {
		t.Errorf("resumed object: %d bytes, not the body", len(got))
	}
	srv.CheckDone(t, "data", "p/"+RecordDir)
}

func TestRestartedUploadStartsOver(t *testing.T) {
	srv, s := open(t, "")
	old := testutil.Payload(6, 20<<20)
	w := store(t, s, "c.bin", "http://h/c.bin", old[:18<<20], int64(len(old)), 1<<20)
	w.Abort()
	s2 := reopen(t, srv, "")
	w2, err := s2.Create("c.bin", "http://h/c.bin")
	if err != nil {
		t.Fatal(err)
	}
	if w2.Partial().Offset != 16<<20 {
		t.Fatalf("Partial %+v, want 16 MiB kept", w2.Partial())
	}
	// The source changed: the engine restarts the body.
	if err := w2.Restart(); err != nil {
		t.Fatal(err)
	}
	body := testutil.Payload(7, 10<<20)
	w2.SetValidator(`"v2"`, int64(len(body)))
	if _, err := w2.Write(body); err != nil {
		t.Fatal(err)
	}
	commit(t, w2)
	if got := srv.Get(t, "data", "c.bin"); !bytes.Equal(got, body) {
		t.Errorf("object: %d bytes, not the new body", len(got))
	}
	srv.CheckDone(t, "data", "")
}

func TestUploadForAnotherURLIsAbortedNotResumed(t *testing.T) {
	srv, s := open(t, "")
	body := testutil.Payload(8, 20<<20)
	store(t, s, "d.bin", "http://h/old", body, int64(len(body)), 1<<20).Abort()
	s2 := reopen(t, srv, "")
	w, err := s2.Create("d.bin", "http://h/new")
	if err != nil {
		t.Fatal(err)
	}
	if w.Partial().Offset != 0 {
		t.Errorf("Partial %+v for another URL, want nothing", w.Partial())
	}
	if up := srv.Uploads(t, "data"); len(up) != 0 {
		t.Errorf("the other URL's upload is still in progress: %q", up)
	}
	w.Discard()
}

func TestMissingBucketAndRejectedCredentials(t *testing.T) {
	srv := s3test.Start(t)
	srv.Bucket(t, "data")
	_, err := Open(context.Background(), Options{Bucket: "nothere", Endpoint: srv.Endpoint,
		Creds: credentials.NewStaticV4(srv.Access, srv.Secret, "")})
	if !errors.Is(err, ErrNoBucket) {
		t.Errorf("missing bucket: %v, want ErrNoBucket", err)
	}
	_, err = Open(context.Background(), Options{Bucket: "data", Endpoint: srv.Endpoint,
		Creds: credentials.NewStaticV4(srv.Access, "wrong-secret", "")})
	if !errors.Is(err, ErrDenied) {
		t.Errorf("wrong secret: %v, want ErrDenied", err)
	}
	_, err = Open(context.Background(), Options{Bucket: "data", Endpoint: srv.Endpoint,
		Creds: credentials.NewStaticV4("nobody", "nothing", "")})
	if !errors.Is(err, ErrDenied) {
		t.Errorf("unknown key: %v, want ErrDenied", err)
	}
}

func TestWritersShareTheMemoryBudgetAndAllFinish(t *testing.T) {
	srv := s3test.Start(t)
	srv.Bucket(t, "data")
	const budget = 16 << 20 // two parts: four writers of three parts each must share them
	s, err := Open(context.Background(), Options{Bucket: "data", Endpoint: srv.Endpoint, Memory: budget,
		Creds: credentials.NewStaticV4(srv.Access, srv.Secret, "")})
	if err != nil {
		t.Fatal(err)
	}
	bodies := make([][]byte, 4)
	errs := make(chan error, len(bodies))
	for i := range bodies {
		bodies[i] = testutil.Payload(uint64(20+i), 20<<20)
		go func() {
			w, err := s.Create(fmt.Sprintf("m/%d", i), fmt.Sprintf("http://h/%d", i))
			if err != nil {
				errs <- err
				return
			}
			w.SetValidator(`"v"`, int64(len(bodies[i])))
			for off := 0; off < len(bodies[i]); off += 1 << 20 {
				if _, err := w.Write(bodies[i][off : off+1<<20]); err != nil {
					w.Abort()
					errs <- err
					return
				}
			}
			w.Commit(func(err error) { errs <- err })
		}()
	}
	for range bodies {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	for i, body := range bodies {
		if got := srv.Get(t, "data", fmt.Sprintf("m/%d", i)); !bytes.Equal(got, body) {
			t.Errorf("m/%d: %d bytes, not the body", i, len(got))
		}
	}
	if !s.mem.TryAcquire(budget) {
		t.Errorf("the writers did not give all of the memory budget back")
	}
}

func TestBucketGoneOrCredentialsRefusedMidRunStopTheRun(t *testing.T) {
	srv := s3test.Start(t)
	srv.Bucket(t, "data")
	srv.Bucket(t, "gone")
	s, err := Open(context.Background(), Options{Bucket: "gone", Endpoint: srv.Endpoint,
		Creds: credentials.NewStaticV4(srv.Access, srv.Secret, "")})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Client.RemoveBucket(context.Background(), "gone"); err != nil {
		t.Fatal(err)
	}
	// A HEAD's 404 has no body to tell a missing bucket from a missing
	// object; the write's answer does.
	w := store(t, s, "a", "http://h/a", []byte("body"), 4, 4)
	var got error
	w.Commit(func(err error) { got = err })
	if !errors.Is(got, sink.ErrUnavailable) || !errors.Is(got, ErrNoBucket) {
		t.Errorf("Commit: %v, want ErrNoBucket and sink.ErrUnavailable (the run stops)", got)
	}
	// Another bucket's sink, whose credentials are refused mid-run.
	keys := &revocable{v: credentials.Value{AccessKeyID: srv.Access, SecretAccessKey: srv.Secret, SignerType: credentials.SignatureV4}}
	s2, err := Open(context.Background(), Options{Bucket: "data", Endpoint: srv.Endpoint, Creds: credentials.New(keys)})
	if err != nil {
		t.Fatal(err)
	}
	keys.revoke()
	w = store(t, s2, "a", "http://h/a", []byte("body"), 4, 4)
	w.Commit(func(err error) { got = err })
	if !errors.Is(got, sink.ErrUnavailable) || !errors.Is(got, ErrDenied) {
		t.Errorf("Commit with refused credentials: %v, want ErrDenied and sink.ErrUnavailable", got)
	}
}

// revocable gives credentials until revoke, then a wrong secret.
type revocable struct {
	mu sync.Mutex
	v  credentials.Value
}

func (r *revocable) revoke() {
	r.mu.Lock()
	r.v.SecretAccessKey = "revoked"
	r.mu.Unlock()
}

func (r *revocable) Retrieve() (credentials.Value, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.v, nil
}

func (r *revocable) RetrieveWithCredContext(*credentials.CredContext) (credentials.Value, error) {
	return r.Retrieve()
}

func (r *revocable) IsExpired() bool { return true }
