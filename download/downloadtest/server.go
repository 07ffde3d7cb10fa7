// Package downloadtest is an HTTP test server for haul's tests: it serves generated
// files over httptest on 127.0.0.1, records every request, and injects the faults a
// downloader must survive (error statuses, Retry-After, dropped connections, stalls,
// short bodies, servers that ignore Range, content that changes between attempts,
// redirects). It follows cavaliercoder/grab's grabtest: behaviour is set per file
// with composable functional options.
//
//	s := downloadtest.New(t)
//	u := s.Add("/a.bin", body, downloadtest.DropAfter(1000, 1))
//	// ... download u ...
//	if got := s.RangeRequests("/a.bin"); len(got) != 1 { ... }
//
// Range, If-Range and the other conditional headers are handled by
// http.ServeContent, so resuming works as against a real server. Every file gets a
// strong ETag derived from its content unless told otherwise (ETag, LastModified,
// NoValidator).
//
// Faults that take a count fire that many times and then stop; each counts its own
// firings, so Status(503, 1) and DropAfter(10, 1) together give a 503, then a
// dropped body, then a clean answer. Pass Always to fire on every request.
// Byte offsets of faults (DropAfter, ShortBody, Stall) count the bytes of one
// response's body, not offsets in the file.
//
// A Server is safe for concurrent use.
package downloadtest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Always, passed as a count, makes a fault fire on every request.
const Always = -1

// Server serves files added with Add (or handlers added with Handle) and records
// the requests it receives. Its embedded *httptest.Server gives URL, Client and
// Certificate.
type Server struct {
	*httptest.Server

	closing chan struct{} // closed first on cleanup: ends stalls and delays

	mu       sync.Mutex
	files    map[string]*file
	handlers map[string]http.Handler
	log      []Request

	bodyBytes   atomic.Int64
	inFlight    atomic.Int64
	maxInFlight atomic.Int64
}

// Request is what the server recorded about one request it received.
type Request struct {
	Method  string
	Proto   string // "HTTP/1.1" or "HTTP/2.0"
	Path    string // URL path, without the query
	Query   string // raw query, "" if none
	Range   string // Range header, "" if none
	IfRange string // If-Range header, "" if none
	Header  http.Header
	Host    string    // the Host the request named
	Time    time.Time // when the request arrived
	// Status is the status code answered (0 if the handler answered nothing,
	// e.g. a connection dropped before the headers).
	Status int
}

// Option configures a Server.
type Option func(*serverConfig)

type serverConfig struct {
	tls, http2 bool
}

// TLS serves HTTPS (HTTP/1.1) with httptest's self-signed certificate. Trust it
// with Server.Client, Server.Certificate or Server.CAFile.
func TLS() Option { return func(c *serverConfig) { c.tls = true } }

// HTTP2 serves HTTPS with HTTP/2 enabled (implies TLS). Connections are then
// dropped by resetting the stream instead of closing the TCP connection.
func HTTP2() Option { return func(c *serverConfig) { c.tls, c.http2 = true, true } }

// New starts a Server on 127.0.0.1. It is closed by t.Cleanup; stalls and delays
// in progress end at that point so that closing never hangs.
func New(t testing.TB, opts ...Option) *Server {
	t.Helper()
	var cfg serverConfig
	for _, o := range opts {
		o(&cfg)
	}
	s := &Server{
		closing:  make(chan struct{}),
		files:    make(map[string]*file),
		handlers: make(map[string]http.Handler),
	}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(s.serveHTTP))
	if cfg.http2 {
		s.Server.EnableHTTP2 = true
	}
	if cfg.tls {
		s.StartTLS()
	} else {
		s.Start()
	}
	t.Cleanup(func() {
		close(s.closing)
		s.Server.Close()
	})
	return s
}

// Add serves body at path (which must start with "/"; a "?query" part is kept in
// the returned URL but requests are matched on the path alone) and returns the
// file's full URL. Adding a path again replaces it.
func (s *Server) Add(path string, body []byte, opts ...FileOption) string {
	p, _, _ := strings.Cut(path, "?")
	f := &file{body: body, etag: defaultETag(body)}
	for _, o := range opts {
		o(f)
	}
	s.mu.Lock()
	s.files[p] = f
	delete(s.handlers, p)
	s.mu.Unlock()
	return s.URL + path
}

// Handle serves path with h (requests are still recorded and counted) and returns
// the full URL. Use it for behaviour the FileOptions do not cover.
func (s *Server) Handle(path string, h http.Handler) string {
	p, _, _ := strings.Cut(path, "?")
	s.mu.Lock()
	s.handlers[p] = h
	delete(s.files, p)
	s.mu.Unlock()
	return s.URL + path
}

// Host returns the server's "127.0.0.1:PORT".
func (s *Server) Host() string {
	return strings.TrimPrefix(strings.TrimPrefix(s.URL, "http://"), "https://")
}

// Requests returns how many requests (of any method) path has received.
func (s *Server) Requests(path string) int {
	return len(s.Log(path))
}

// RangeRequests returns the Range headers of the requests for path that had one,
// in arrival order.
func (s *Server) RangeRequests(path string) []string {
	var out []string
	for _, r := range s.Log(path) {
		if r.Range != "" {
			out = append(out, r.Range)
		}
	}
	return out
}

// Log returns the recorded requests for path in arrival order, or for every path
// when path is "".
func (s *Server) Log(path string) []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Request
	for _, r := range s.log {
		if path == "" || r.Path == path {
			out = append(out, r)
		}
	}
	return out
}

// TotalRequests returns how many requests the server has received on all paths.
func (s *Server) TotalRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.log)
}

// BodyBytes returns the response body bytes sent so far, over all paths.
func (s *Server) BodyBytes() int64 { return s.bodyBytes.Load() }

// MaxInFlight returns the most requests the server was handling at one time.
func (s *Server) MaxInFlight() int { return int(s.maxInFlight.Load()) }

// CAFile writes the server's certificate as PEM into a temporary file and returns
// its path, for --cacert. The server must have been started with TLS or HTTP2.
func (s *Server) CAFile(t testing.TB) string {
	t.Helper()
	c := s.Certificate()
	if c == nil {
		t.Fatal("downloadtest: CAFile on a server without TLS")
	}
	name := filepath.Join(t.TempDir(), "ca.pem")
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	if err := os.WriteFile(name, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return name
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	n := s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	for {
		m := s.maxInFlight.Load()
		if n <= m || s.maxInFlight.CompareAndSwap(m, n) {
			break
		}
	}
	s.mu.Lock()
	idx := len(s.log)
	s.log = append(s.log, Request{
		Method: r.Method, Proto: r.Proto, Path: r.URL.Path, Query: r.URL.RawQuery,
		Range: r.Header.Get("Range"), IfRange: r.Header.Get("If-Range"),
		Header: r.Header.Clone(), Host: r.Host, Time: time.Now(),
	})
	f := s.files[r.URL.Path]
	h := s.handlers[r.URL.Path]
	var plan plan
	if f != nil {
		plan = f.next()
	}
	s.mu.Unlock()

	rw := &recorder{ResponseWriter: w, s: s, idx: idx}
	switch {
	case h != nil:
		h.ServeHTTP(rw, r)
	case f != nil:
		s.serveFile(rw, r, plan)
	default:
		http.NotFound(rw, r)
	}
}

// recorder counts body bytes and records the status code as soon as they are
// written, so that a test reading them after its client finished sees them.
type recorder struct {
	http.ResponseWriter
	s      *Server
	idx    int // in s.log
	status int
}

func (w *recorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
		w.s.mu.Lock()
		w.s.log[w.idx].Status = code
		w.s.mu.Unlock()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	// Counted before the write: the client may have read the bytes and moved on
	// before Write returns.
	w.s.bodyBytes.Add(int64(len(p)))
	n, err := w.ResponseWriter.Write(p)
	w.s.bodyBytes.Add(int64(n - len(p)))
	return n, err
}

// Unwrap lets http.ResponseController reach Flush and Hijack.
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func defaultETag(body []byte) string {
	sum := sha256.Sum256(body)
	return `"` + hex.EncodeToString(sum[:8]) + `"`
}
