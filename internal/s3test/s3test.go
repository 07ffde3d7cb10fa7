// Package s3test starts a real S3-compatible store for tests: versitygw
// (github.com/versity/versitygw) on 127.0.0.1, its POSIX backend in a
// temporary directory, stopped with the test. A test that cannot find the
// program skips, unless CI is set (.ci/run installs it): then it fails.
// Only tests import it.
package s3test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/haul/haul/internal/testutil"
)

// Version is the versitygw that .ci/run installs.
const Version = "v1.8.0"

// Install is the command that installs it where Start looks.
const Install = "go install github.com/versity/versitygw/cmd/versitygw@" + Version

// Server is a running versitygw.
type Server struct {
	Endpoint       string // http://127.0.0.1:PORT
	Access, Secret string // the root account's keys
	Region         string
	Dir            string      // the POSIX backend's root: a bucket is a directory
	Client         *minio.Core // signed with the root account, for the test's own checks

	cmd  *exec.Cmd
	log  *logBuf
	exit chan error
}

// Binary finds versitygw: $HAUL_VERSITYGW, else in PATH, else in
// $(go env GOPATH)/bin (where go install puts it); "" if it is nowhere.
func Binary() string {
	if p := os.Getenv("HAUL_VERSITYGW"); p != "" {
		return p
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		home, _ := os.UserHomeDir()
		gopath = filepath.Join(home, "go")
	}
	for _, dir := range filepath.SplitList(gopath) {
		p := filepath.Join(dir, "bin", "versitygw")
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p
		}
	}
	return ""
}

// Start starts versitygw for t, ready to answer. It makes no bucket.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Binary()
	if bin == "" {
		msg := "versitygw not found (in PATH, $(go env GOPATH)/bin or $HAUL_VERSITYGW): " + Install
		if ci := os.Getenv("CI"); ci != "" && ci != "false" && ci != "0" {
			t.Fatal(msg + "; CI is set: .ci/run installs it")
		}
		t.Skip(msg)
	}
	const attempts = 3
	for try := 1; ; try++ {
		s, err := start(t, bin)
		if err == nil {
			return s
		}
		if try == attempts {
			t.Fatalf("s3test: versitygw: %v (attempt %d of %d)", err, try, attempts)
		}
		t.Logf("s3test: versitygw: %v; starting it on another port", err)
	}
}

func start(t testing.TB, bin string) (*Server, error) {
	dir := t.TempDir()
	port := testutil.FreePort(t)
	s := &Server{
		Endpoint: "http://127.0.0.1:" + strconv.Itoa(port),
		Access:   "haultestroot", Secret: "haultestroot-secret-key",
		Region: "us-east-1", Dir: dir, log: &logBuf{}, exit: make(chan error, 1),
	}
	s.cmd = exec.Command(bin, "--quiet", "--access", s.Access, "--secret", s.Secret,
		"--region", s.Region, "--port", "127.0.0.1:"+strconv.Itoa(port), "posix", dir)
	s.cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY_ID=", "ROOT_SECRET_ACCESS_KEY=")
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	dieWithParent(s.cmd.SysProcAttr)
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { s.exit <- s.cmd.Wait() }()
	c, err := minio.NewCore("127.0.0.1:"+strconv.Itoa(port), &minio.Options{
		Creds: credentials.NewStaticV4(s.Access, s.Secret, ""), Region: s.Region, BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		s.stop()
		return nil, err
	}
	s.Client = c
	// Ready once it answers an S3 request signed with its keys (a
	// listing of its buckets): not merely once something listens.
	var exited error
	testutil.Until(t, func() error {
		select {
		case err := <-s.exit:
			exited = fmt.Errorf("exited (%v)", err)
			return nil
		default:
		}
		_, err := c.ListBuckets(context.Background())
		return err
	})
	if exited != nil {
		return nil, fmt.Errorf("%w:\n%s", exited, s.log.String())
	}
	t.Cleanup(s.stop)
	return s, nil
}

func (s *Server) stop() {
	if s.cmd.Process == nil {
		return
	}
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-s.exit:
	default:
		<-s.exit
	}
	s.cmd.Process = nil
}

// Bucket creates bucket name through the S3 API.
func (s *Server) Bucket(t testing.TB, name string) {
	t.Helper()
	if err := s.Client.MakeBucket(context.Background(), name, minio.MakeBucketOptions{Region: s.Region}); err != nil {
		t.Fatalf("s3test: make bucket %s: %v", name, err)
	}
}

// Env is the environment that points the AWS tools (and haul) at the
// server with its root keys.
func (s *Server) Env() []string {
	return []string{"AWS_ENDPOINT_URL=" + s.Endpoint, "AWS_ACCESS_KEY_ID=" + s.Access,
		"AWS_SECRET_ACCESS_KEY=" + s.Secret, "AWS_REGION=" + s.Region}
}

// Get reads an object whole.
func (s *Server) Get(t testing.TB, bucket, key string) []byte {
	t.Helper()
	r, _, _, err := s.Client.GetObject(context.Background(), bucket, key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatalf("s3test: get s3://%s/%s: %v", bucket, key, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("s3test: read s3://%s/%s: %v", bucket, key, err)
	}
	return b
}

// Keys lists the keys under prefix.
func (s *Server) Keys(t testing.TB, bucket, prefix string) []string {
	t.Helper()
	var keys []string
	for o := range s.Client.Client.ListObjects(context.Background(), bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			t.Fatalf("s3test: list s3://%s/%s: %v", bucket, prefix, o.Err)
		}
		keys = append(keys, o.Key)
	}
	return keys
}

// Uploads lists the multipart uploads in progress in bucket (their keys).
func (s *Server) Uploads(t testing.TB, bucket string) []string {
	t.Helper()
	res, err := s.Client.ListMultipartUploads(context.Background(), bucket, "", "", "", "", 1000)
	if err != nil {
		t.Fatalf("s3test: list uploads of %s: %v", bucket, err)
	}
	var keys []string
	for _, u := range res.Uploads {
		keys = append(keys, u.Key)
	}
	return keys
}

// CheckDone fails t if bucket holds a multipart upload in progress, or, for
// records not "", an object under that prefix (haul's resume records): what
// a finished or given-up upload must not leave behind.
func (s *Server) CheckDone(t testing.TB, bucket, records string) {
	t.Helper()
	if up := s.Uploads(t, bucket); len(up) != 0 {
		t.Errorf("uploads left in progress: %q", up)
	}
	if records == "" {
		return
	}
	if keys := s.Keys(t, bucket, records); len(keys) != 0 {
		t.Errorf("resume records left: %q", keys)
	}
}

// logBuf keeps what the server prints, for a failure's message.
type logBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() < 1<<20 {
		l.b.Write(p)
	}
	return len(p), nil
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Proxy stands between a client and the server and records the requests
// it passes: what a client sent the store.
type Proxy struct {
	Endpoint string // http://127.0.0.1:PORT, to give the client

	mu   sync.Mutex
	reqs []Request
}

// Request is one request the store received through a Proxy.
type Request struct {
	Method, Path string
	Query        url.Values
	Header       http.Header
}

// Proxy starts a Proxy to s, closed with the test. Requests keep the Host
// they were signed for.
func (s *Server) Proxy(t testing.TB) *Proxy {
	t.Helper()
	target, err := url.Parse(s.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{}
	rp := httputil.NewSingleHostReverseProxy(target)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.reqs = append(p.reqs, Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Header: r.Header.Clone()})
		p.mu.Unlock()
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	p.Endpoint = hs.URL
	return p
}

// Requests returns the requests passed since the last Reset.
func (p *Proxy) Requests() []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.reqs)
}

// Reset forgets the requests passed.
func (p *Proxy) Reset() {
	p.mu.Lock()
	p.reqs = nil
	p.mu.Unlock()
}

// Count counts the requests passed with method (any for "") for which
// match (nil: every one) holds.
func (p *Proxy) Count(method string, match func(Request) bool) int {
	n := 0
	for _, r := range p.Requests() {
		if (method == "" || r.Method == method) && (match == nil || match(r)) {
			n++
		}
	}
	return n
}

// ObjectBody reports a request of an object's bytes or metadata (a GET or
// HEAD of a key, a PUT of one or of a part), not of a listing or of the
// bucket.
func ObjectBody(r Request) bool {
	_, list := r.Query["uploads"]
	_, parts := r.Query["uploadId"]
	isKey := strings.Count(strings.Trim(r.Path, "/"), "/") >= 1
	return isKey && (!list && !(parts && r.Method == http.MethodGet))
}
