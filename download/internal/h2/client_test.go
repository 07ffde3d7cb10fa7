package h2

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
)

// A server that picks HTTP/1.1 in ALPN: the connection handed to HTTP1's
// Adopt, each request to HTTP1's RoundTrip, and the host remembered (no
// second connection); without HTTP1, ErrNotOffered.
func TestHTTP1ServerHandedToHTTP1AndRemembered(t *testing.T) {
	t.Parallel()
	one := &http1Stub{t: t}
	srv, c, conns := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), true, 0,
		Options{HTTP1: one})
	for range 3 {
		_, _, err := get(context.Background(), c, srv.URL+"/x")
		if !errors.Is(err, errHTTP1Stub) {
			t.Fatalf("err %v, want HTTP1's", err)
		}
	}
	if one.adopted.Load() != 1 || one.sent.Load() != 3 || conns.Load() != 1 {
		t.Errorf("%d connections handed over, %d requests, %d connections made; want 1, 3 and 1",
			one.adopted.Load(), one.sent.Load(), conns.Load())
	}
	srv, c, _ = tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), true, 0, Options{})
	if _, _, err := get(context.Background(), c, srv.URL+"/x"); !errors.Is(err, ErrNotOffered) || !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("err %v, want ErrNotOffered", err)
	}
}

var errHTTP1Stub = errors.New("sent over HTTP/1.1")

// http1Stub is the HTTP1 of TestHTTP1ServerHandedToHTTP1AndRemembered: it
// closes the connections it is handed and fails the requests.
type http1Stub struct {
	t             *testing.T
	adopted, sent atomic.Int32
}

func (h *http1Stub) Adopt(host string, tc *tls.Conn) {
	h.adopted.Add(1)
	if tc.ConnectionState().NegotiatedProtocol == "h2" {
		h.t.Error("handed an h2 connection")
	}
	tc.Close()
}

func (h *http1Stub) RoundTrip(*http.Request) (*http.Response, error) {
	h.sent.Add(1)
	return nil, errHTTP1Stub
}

// Requests HTTP/2 cannot carry, or this client does not make, fail with
// errors.ErrUnsupported.
func TestUnsupportedRequestsFail(t *testing.T) {
	t.Parallel()
	c := New(Options{})
	for _, tc := range []struct {
		method, url string
	}{
		{http.MethodPost, "https://127.0.0.1:1/"},
		{http.MethodGet, "http://127.0.0.1:1/"},
		{http.MethodGet, "https://bücher.example/"},
	} {
		req, _ := http.NewRequest(tc.method, tc.url, nil)
		if _, err := roundTrip(c, req); !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("%s %s: %v, want ErrUnsupported", tc.method, tc.url, err)
		}
	}
}
