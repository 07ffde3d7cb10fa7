package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/haul/haul/download/downloadtest"
	"github.com/haul/haul/internal/s3test"
	"github.com/haul/haul/internal/testutil"
)

// s3Env points haul at endpoint with the store's keys, and at nothing else
// the test's own environment may hold.
func s3Env(store *s3test.Server, endpoint string) []string {
	return []string{"AWS_ENDPOINT_URL=" + endpoint, "AWS_ENDPOINT_URL_S3=", "AWS_ACCESS_KEY_ID=" + store.Access,
		"AWS_SECRET_ACCESS_KEY=" + store.Secret, "AWS_SESSION_TOKEN=", "AWS_REGION=" + store.Region,
		"AWS_PROFILE=", "AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(os.TempDir(), "haul-no-such-credentials")}
}

func TestS3FilesLandAsObjectsAndARerunSkipsThemWithOneHeadEach(t *testing.T) {
	store := s3test.Start(t)
	store.Bucket(t, "data")
	px := store.Proxy(t)
	src := downloadtest.New(t)
	want := map[string][]byte{}
	var lines []string
	for i := range 100 {
		body := testutil.Payload(uint64(i), 1+i*613)
		name := fmt.Sprintf("small/%03d.bin", i)
		lines = append(lines, src.Add("/"+name, body))
		want[name] = body
	}
	for i := range 2 {
		body := testutil.Payload(uint64(1000+i), 40<<20)
		name := fmt.Sprintf("big/%d.iso", i)
		lines = append(lines, src.Add("/"+name, body))
		want[name] = body
	}
	// A body of no announced length: its parts are sized as it comes.
	stream := testutil.Payload(2000, 12<<20+3)
	lines = append(lines, src.Add("/big/stream.bin", stream, downloadtest.NoContentLength()))
	want["big/stream.bin"] = stream
	list := writeList(t, lines...)
	man := filepath.Join(t.TempDir(), "m.jsonl")
	r := runHaulEnv(t, s3Env(store, px.Endpoint), nil, "-q", "-i", list, "-d", "s3://data/mirror/", "--manifest", man)
	wantCode(t, r, 0)
	prefix := "mirror/" + hostDir(src) + "/"
	for name, body := range want {
		if got := store.Get(t, "data", prefix+name); !bytes.Equal(got, body) {
			t.Errorf("%s: %d bytes stored, want the %d served", name, len(got), len(body))
		}
	}
	if keys := store.Keys(t, "data", ""); len(keys) != len(want) {
		t.Errorf("%d objects in the bucket, want %d", len(keys), len(want))
	}
	store.CheckDone(t, "data", "")
	for _, m := range readManifest(t, man) {
		if m.Status != "ok" || !strings.HasPrefix(str(m.Out), hostDir(src)+"/") {
			t.Errorf("manifest line %+v: want ok, out NAME (not the bucket's key)", m)
		}
	}

	// Every body was signed with its SHA-256: no aws-chunked streaming, no
	// checksum header or trailer (stores such as R2 and Ceph reject them).
	for _, req := range px.Requests() {
		for k, v := range req.Header {
			if strings.HasPrefix(k, "X-Amz-Checksum") || k == "X-Amz-Trailer" || k == "X-Amz-Sdk-Checksum-Algorithm" ||
				k == "X-Amz-Content-Sha256" && strings.HasPrefix(v[0], "STREAMING") || k == "Content-Encoding" && strings.Contains(v[0], "aws-chunked") {
				t.Errorf("%s %s sent %s: %q", req.Method, req.Path, k, v)
			}
		}
	}

	// A re-run asks the store one HEAD per object and the origin nothing.
	before := src.TotalRequests()
	px.Reset()
	r = runHaulEnv(t, s3Env(store, px.Endpoint), nil, "-q", "-i", list, "-d", "s3://data/mirror/")
	wantCode(t, r, 0)
	if n := src.TotalRequests() - before; n != 0 {
		t.Errorf("re-run: %d requests to the origin, want none", n)
	}
	if n := px.Count(http.MethodPut, nil) + px.Count(http.MethodPost, nil); n != 0 {
		t.Errorf("re-run: %d PUT or POST requests to the store, want none", n)
	}
	if n := px.Count(http.MethodGet, s3test.ObjectBody); n != 0 {
		t.Errorf("re-run: %d GET requests of an object to the store, want none", n)
	}
	if n := px.Count(http.MethodHead, s3test.ObjectBody); n != len(want) {
		t.Errorf("re-run: %d HEAD requests of an object, want one per object (%d)", n, len(want))
	}
}

func TestS3RejectedCredentialsAndMissingBucketStopTheRunWritingNothing(t *testing.T) {
	store := s3test.Start(t)
	store.Bucket(t, "data")
	src := downloadtest.New(t)
	list := writeList(t, src.Add("/a.bin", testutil.Payload(1, 1000)))

	env := append(s3Env(store, store.Endpoint), "AWS_SECRET_ACCESS_KEY=not-the-secret")
	r := runHaulEnv(t, env, nil, "-i", list, "-d", "s3://data/x")
	wantCode(t, r, exitFatal)
	if !strings.Contains(r.stderr, "access denied") || !strings.Contains(r.stderr, "AWS_ACCESS_KEY_ID") {
		t.Errorf("rejected credentials: stderr %q, want it to say access denied and which credentials", r.stderr)
	}

	r = runHaulEnv(t, s3Env(store, store.Endpoint), nil, "-i", list, "-d", "s3://nothere/x")
	wantCode(t, r, exitFatal)
	if !strings.Contains(r.stderr, "s3://nothere") || !strings.Contains(r.stderr, "no such bucket") {
		t.Errorf("missing bucket: stderr %q, want it named", r.stderr)
	}
	if n := src.TotalRequests(); n != 0 {
		t.Errorf("%d requests to the origin, want none", n)
	}
	if keys := store.Keys(t, "data", ""); len(keys) != 0 {
		t.Errorf("objects written: %q", keys)
	}
	if buckets, err := store.Client.ListBuckets(t.Context()); err != nil || len(buckets) != 1 {
		t.Errorf("buckets %v (%v): want data alone (haul never creates one)", buckets, err)
	}
}

func TestS3CredentialsFromTheSharedFileProfile(t *testing.T) {
	store := s3test.Start(t)
	store.Bucket(t, "data")
	src := downloadtest.New(t)
	body := testutil.Payload(2, 5000)
	list := writeList(t, src.Add("/p.bin", body))
	creds := filepath.Join(t.TempDir(), "credentials")
	os.WriteFile(creds, []byte("[default]\naws_access_key_id = nobody\naws_secret_access_key = nothing\n\n[haul]\n"+
		"aws_access_key_id = "+store.Access+"\naws_secret_access_key = "+store.Secret+"\n"), 0o600)
	env := append(s3Env(store, store.Endpoint), "AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=",
		"AWS_SHARED_CREDENTIALS_FILE="+creds, "AWS_PROFILE=haul")
	r := runHaulEnv(t, env, nil, "-q", "-i", list, "-d", "s3://data", "--layout", "flat")
	wantCode(t, r, 0)
	if got := store.Get(t, "data", "p.bin"); !bytes.Equal(got, body) {
		t.Errorf("p.bin: %d bytes, not the body", len(got))
	}
}

func TestS3FlagUsageErrors(t *testing.T) {
	cases := []struct {
		env  []string
		args []string
		want string
	}{
		{nil, []string{"--s3-endpoint", "http://127.0.0.1:9", "-d", "out"}, "--s3-endpoint needs -d s3://"},
		{nil, []string{"--s3-path-style", "-d", "out"}, "--s3-path-style needs -d s3://"},
		{nil, []string{"--s3-endpoint", "ftp://127.0.0.1:9", "-d", "s3://data"}, "--s3-endpoint \"ftp://127.0.0.1:9\""},
		{nil, []string{"--s3-endpoint", "http://127.0.0.1:9/path", "-d", "s3://data"}, "--s3-endpoint"},
		{[]string{"AWS_ENDPOINT_URL_S3=", "AWS_ENDPOINT_URL=127.0.0.1:9"}, []string{"-d", "s3://data"}, "AWS_ENDPOINT_URL \"127.0.0.1:9\""},
		{nil, []string{"-d", "s3://Data/x"}, "--dir \"s3://Data/x\": bucket name"},
		{nil, []string{"-d", "s3://data/a/../b"}, "--dir"},
		{nil, []string{"--compress", "zstd", "-d", "s3://data"}, "--compress cannot go with -d s3://"},
	}
	for _, c := range cases {
		args := append(slices.Clone(c.args), "http://127.0.0.1:9/a")
		r := runHaulEnv(t, c.env, nil, args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, c.want) {
			t.Errorf("haul %q: exit %d, stderr %q; want %d and %q", args, r.code, r.stderr, exitUsage, c.want)
		}
	}
}

// gatedBody serves body with Range support, holding every response at gate
// bytes until open is closed (or the client goes): a transfer cut there.
func gatedBody(body []byte, etag string, gate int64, open <-chan struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", etag)
		http.ServeContent(w, r, "", time.Time{}, &gatedReader{Reader: bytes.NewReader(body), gate: gate, open: open, done: r.Context().Done()})
	})
}

type gatedReader struct {
	*bytes.Reader
	gate       int64
	open, done <-chan struct{}
}

func (g *gatedReader) Read(p []byte) (int, error) {
	pos := g.Size() - int64(g.Len())
	if pos >= g.gate {
		select {
		case <-g.open:
		case <-g.done:
			return 0, io.ErrUnexpectedEOF
		}
	} else if pos+int64(len(p)) > g.gate {
		p = p[:g.gate-pos]
	}
	return g.Reader.Read(p)
}

// storedParts is how many bytes the upload in progress of key has stored.
func storedParts(t *testing.T, store *s3test.Server, bucket, key string) int64 {
	res, err := store.Client.ListMultipartUploads(t.Context(), bucket, key, "", "", "", 10)
	if err != nil || len(res.Uploads) == 0 {
		return 0
	}
	parts, err := store.Client.ListObjectParts(t.Context(), bucket, key, res.Uploads[0].UploadID, 0, 1000)
	if err != nil {
		return 0
	}
	var n int64
	for _, p := range parts.ObjectParts {
		n += p.Size
	}
	return n
}

// killHalfway runs haul on list until the upload of key has stored at least
// least bytes, and kills it (SIGKILL).
func killHalfway(t *testing.T, store *s3test.Server, list, dest, key string, least int64) {
	t.Helper()
	stopHalfway(t, store, list, dest, key, least, syscall.SIGKILL)
}

// stopHalfway is killHalfway with signal sig; it returns haul's exit code
// (-1 for a signal that killed it).
func stopHalfway(t *testing.T, store *s3test.Server, list, dest, key string, least int64, sig syscall.Signal) int {
	t.Helper()
	ctx, cancel := haulContext(t)
	defer cancel()
	h := spawnHaulEnv(t, ctx, cancel, s3Env(store, store.Endpoint), "-q", "-i", list, "-d", dest)
	h.until(t, func() error {
		if n := storedParts(t, store, "data", key); n < least {
			return fmt.Errorf("upload of %s: %d bytes stored, waiting for %d", key, n, least)
		}
		return nil
	})
	return h.stop(sig)
}

func TestS3UploadKilledHalfwayIsResumedByTheRerunFromItsParts(t *testing.T) {
	store := s3test.Start(t)
	store.Bucket(t, "data")
	src := downloadtest.New(t)
	const size = 300 << 20
	body := testutil.Payload(77, size)
	open := make(chan struct{})
	list := writeList(t, src.Handle("/big.iso", gatedBody(body, `"big-1"`, size/2, open)))
	key := "in/" + hostDir(src) + "/big.iso"

	killHalfway(t, store, list, "s3://data/in", key, 17*8<<20) // 17 parts of 8 MiB
	if keys := store.Keys(t, "data", key); len(keys) != 0 {
		t.Fatalf("object there before its upload completed: %q", keys)
	}
	close(open)
	before := src.BodyBytes()
	r := runHaulEnv(t, s3Env(store, store.Endpoint), nil, "-q", "-i", list, "-d", "s3://data/in")
	wantCode(t, r, 0)
	if got := store.Get(t, "data", key); !bytes.Equal(got, body) {
		t.Fatalf("resumed object: %d bytes, not the body", len(got))
	}
	fetched := src.BodyBytes() - before
	t.Logf("the re-run fetched %d of %d bytes (%.0f%%)", fetched, size, 100*float64(fetched)/size)
	if fetched > size*6/10 {
		t.Errorf("the re-run fetched %d bytes of %d, want at most 60%%", fetched, size)
	}
	if ranges := src.RangeRequests("/big.iso"); len(ranges) == 0 {
		t.Errorf("the re-run asked for no range")
	}
	store.CheckDone(t, "data", "in/.haul-uploads/")
}

func TestS3SourceChangedBetweenRunsEndsAsTheNewContent(t *testing.T) {
	store := s3test.Start(t)
	store.Bucket(t, "data")
	src := downloadtest.New(t)
	const size = 40 << 20
	old := testutil.Payload(78, size)
	open := make(chan struct{})
	list := writeList(t, src.Handle("/c.bin", gatedBody(old, `"c-1"`, size/2, open)))
	key := hostDir(src) + "/c.bin"
	killHalfway(t, store, list, "s3://data", key, 16<<20)
	close(open)
	body := testutil.Payload(79, size+5)
	src.Handle("/c.bin", gatedBody(body, `"c-2"`, size*2, open))
	r := runHaulEnv(t, s3Env(store, store.Endpoint), nil, "-q", "-i", list, "-d", "s3://data")
	wantCode(t, r, 0)
	if got := store.Get(t, "data", key); !bytes.Equal(got, body) {
		t.Fatalf("object: %d bytes, not the new body", len(got))
	}
	store.CheckDone(t, "data", ".haul-uploads/")
}

func TestS3HashedFileKilledHalfwayStartsOverAndEndsWhole(t *testing.T) {
	store := s3test.Start(t)
	store.Bucket(t, "data")
	src := downloadtest.New(t)
	const size = 40 << 20
	body := testutil.Payload(80, size)
	open := make(chan struct{})
	url := src.Handle("/h.bin", gatedBody(body, `"h-1"`, size/2, open))
	list := writeList(t, url+" sha256="+testutil.SHA256Hex(body))
	key := hostDir(src) + "/h.bin"
	killHalfway(t, store, list, "s3://data", key, 16<<20)
	close(open)
	before := src.BodyBytes()
	man := filepath.Join(t.TempDir(), "m.jsonl")
	r := runHaulEnv(t, s3Env(store, store.Endpoint), nil, "-q", "-i", list, "-d", "s3://data", "--manifest", man)
	wantCode(t, r, 0)
	// The parts stored cannot be read back to hash them: the file starts over.
	if fetched := src.BodyBytes() - before; fetched != size {
		t.Errorf("the re-run fetched %d bytes, want the whole file (%d)", fetched, size)
	}
	if got := store.Get(t, "data", key); !bytes.Equal(got, body) {
		t.Fatalf("object: %d bytes, not the body", len(got))
	}
	// The hash sha256= gives is the object's metadata, a multipart upload's too.
	if oi, err := store.Client.StatObject(t.Context(), "data", key, minio.StatObjectOptions{}); err != nil ||
		oi.Metadata.Get("X-Amz-Meta-Haul-Sha256") != testutil.SHA256Hex(body) {
		t.Errorf("object's sha256 metadata %q (%v), want the body's", oi.Metadata.Get("X-Amz-Meta-Haul-Sha256"), err)
	}
	if ms := readManifest(t, man); len(ms) != 1 || ms[0].Status != "ok" || str(ms[0].SHA256) != testutil.SHA256Hex(body) {
		t.Errorf("manifest %+v: want ok with the body's sha256", ms)
	}
	store.CheckDone(t, "data", "")
}

func TestS3DryRunUpdateAndChecksumsWorkOnTheBucket(t *testing.T) {
	store := s3test.Start(t)
	store.Bucket(t, "data")
	px := store.Proxy(t)
	env := s3Env(store, px.Endpoint)
	src := downloadtest.New(t)
	a, b := testutil.Payload(81, 3000), testutil.Payload(82, 9<<20)
	urlA, urlB := src.Add("/a.bin", a), src.Add("/b.bin", b)
	wantCode(t, runHaulEnv(t, env, nil, "-q", "-d", "s3://data/m", urlA, urlB), 0)
	prefix := "m/" + hostDir(src) + "/"

	// --dry-run: asks the bucket, sends nothing to the origin, writes nothing.
	b2 := testutil.Payload(83, 9<<20+1)
	src.Add("/b.bin", b2)
	urlC := src.Add("/c.bin", testutil.Payload(84, 10))
	before := src.TotalRequests()
	px.Reset()
	r := runHaulEnv(t, env, nil, "--dry-run", "-d", "s3://data/m", urlA, urlC)
	wantCode(t, r, exitFailed) // something to do
	if want := "fetch s3://data/m/" + hostDir(src) + "/c.bin: missing"; !strings.Contains(r.stdout, want) {
		t.Errorf("--dry-run printed %q, want a line %q", r.stdout, want)
	}
	if n := src.TotalRequests() - before; n != 0 {
		t.Errorf("--dry-run: %d requests to the origin", n)
	}
	if n := px.Count(http.MethodPut, nil) + px.Count(http.MethodPost, nil) + px.Count(http.MethodDelete, nil); n != 0 {
		t.Errorf("--dry-run: %d requests that write to the store", n)
	}

	// --update: asks the origin with the stored validators; the changed
	// file is replaced, the other one left alone.
	src.Add("/b.bin", b2)
	r = runHaulEnv(t, env, nil, "-q", "-N", "-d", "s3://data/m", urlA, urlB)
	wantCode(t, r, 0)
	if got := store.Get(t, "data", prefix+"a.bin"); !bytes.Equal(got, a) {
		t.Errorf("a.bin changed under --update")
	}
	if got := store.Get(t, "data", prefix+"b.bin"); !bytes.Equal(got, b2) {
		t.Errorf("b.bin: %d bytes, want the new body", len(got))
	}
	ifNone := 0
	for _, req := range src.Log("/a.bin") {
		if req.Header.Get("If-None-Match") != "" {
			ifNone++
		}
	}
	if ifNone == 0 {
		t.Errorf("--update sent no If-None-Match for a.bin")
	}

	// sha256=: the object's bytes are read back to check them, the origin
	// is not asked.
	before = src.TotalRequests()
	px.Reset()
	list := writeList(t, urlA+" sha256="+testutil.SHA256Hex(a))
	r = runHaulEnv(t, env, nil, "-q", "-i", list, "-d", "s3://data/m")
	wantCode(t, r, 0)
	if n := src.TotalRequests() - before; n != 0 {
		t.Errorf("sha256= matching the object: %d requests to the origin", n)
	}
	if n := px.Count(http.MethodGet, s3test.ObjectBody); n != 1 {
		t.Errorf("sha256=: %d GETs of the object, want 1 (its bytes hashed)", n)
	}
}

func TestS3EntryGivenUpLeavesNoUpload(t *testing.T) {
	store := s3test.Start(t)
	store.Bucket(t, "data")
	src := downloadtest.New(t)
	const size = 40 << 20
	body := testutil.Payload(85, size)
	var mu sync.Mutex
	served := 0
	// The first response breaks off after 20 MiB; the file is gone after that.
	url := src.Handle("/gone.bin", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		served++
		first := served == 1
		mu.Unlock()
		if !first {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("ETag", `"g-1"`)
		w.Header().Set("Content-Length", strconv.Itoa(size))
		w.Write(body[:20<<20])
		panic(http.ErrAbortHandler)
	}))
	r := runHaulEnv(t, s3Env(store, store.Endpoint), nil, "-q", "-d", "s3://data", url)
	wantCode(t, r, exitFailed)
	if up := store.Uploads(t, "data"); len(up) != 0 {
		t.Errorf("uploads left in progress after the entry failed: %q", up)
	}
	if keys := store.Keys(t, "data", ""); len(keys) != 0 {
		t.Errorf("objects left: %q", keys)
	}
}

func TestS3InterruptedUploadIsKeptAndResumed(t *testing.T) {
	store := s3test.Start(t)
	store.Bucket(t, "data")
	src := downloadtest.New(t)
	const size = 40 << 20
	body := testutil.Payload(86, size)
	open := make(chan struct{})
	list := writeList(t, src.Handle("/i.bin", gatedBody(body, `"i-1"`, 20<<20, open)))
	key := hostDir(src) + "/i.bin"
	// Held at 20 MiB: two parts of 8 MiB stored, the third never whole.
	if code := stopHalfway(t, store, list, "s3://data", key, 16<<20, syscall.SIGINT); code != exitInterrupted {
		t.Fatalf("Ctrl-C: exit %d, want %d", code, exitInterrupted)
	}
	if up := store.Uploads(t, "data"); !slices.Equal(up, []string{key}) {
		t.Fatalf("uploads after Ctrl-C: %q, want %s's kept", up, key)
	}
	close(open)
	before := src.BodyBytes()
	wantCode(t, runHaulEnv(t, s3Env(store, store.Endpoint), nil, "-q", "-i", list, "-d", "s3://data"), 0)
	if fetched := src.BodyBytes() - before; fetched != size-16<<20 {
		t.Errorf("the re-run fetched %d bytes, want the %d past the two parts kept", fetched, size-16<<20)
	}
	if got := store.Get(t, "data", key); !bytes.Equal(got, body) {
		t.Fatalf("object: %d bytes, not the body", len(got))
	}
	store.CheckDone(t, "data", "")
}

func TestS3RecursiveWalkLandsInTheBucket(t *testing.T) {
	store := s3test.Start(t)
	store.Bucket(t, "data")
	root := t.TempDir()
	tree := map[string][]byte{
		"pub/a.iso":     testutil.Payload(90, 3000),
		"pub/sub/b.iso": testutil.Payload(91, 9<<20),
		"other/c.iso":   testutil.Payload(92, 10),
	}
	for name, b := range tree {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(http.FileServer(http.Dir(root)))
	defer srv.Close()
	host := strings.ReplaceAll(strings.TrimPrefix(srv.URL, "http://"), ":", "_")
	wantCode(t, runHaulEnv(t, s3Env(store, store.Endpoint), nil, "-q", "-r", "-d", "s3://data/m", srv.URL+"/pub/"), 0)
	keys := store.Keys(t, "data", "")
	slices.Sort(keys)
	if want := []string{"m/" + host + "/pub/a.iso", "m/" + host + "/pub/sub/b.iso"}; !slices.Equal(keys, want) {
		t.Fatalf("objects %q, want %q", keys, want)
	}
	for _, name := range []string{"pub/a.iso", "pub/sub/b.iso"} {
		if got := store.Get(t, "data", "m/"+host+"/"+name); !bytes.Equal(got, tree[name]) {
			t.Errorf("%s: %d bytes, not the file", name, len(got))
		}
	}
}
