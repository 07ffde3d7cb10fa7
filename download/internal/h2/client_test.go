package h2

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
)

// A server that picks HTTP/1.1 in ALPN: ErrNotOffered, the connection handed
// to OnHTTP1, and the host remembered (no second connection).
func TestHTTP1ServerNotOfferedAndRemembered(t *testing.T) {
	t.Parallel()
	var handed atomic.Int32
	srv, c, conns := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), true, 0,
		Options{OnHTTP1: func(host string, tc *tls.Conn) {
			handed.Add(1)
			if tc.ConnectionState().NegotiatedProtocol == "h2" {
				t.Error("handed an h2 connection")
			}
			tc.Close()
		}})
	for range 3 {
		_, _, err := get(context.Background(), c, srv.URL+"/x")
		if !errors.Is(err, ErrNotOffered) || !errors.Is(err, errors.ErrUnsupported) {
			t.Fatalf("err %v, want ErrNotOffered", err)
		}
	}
	if handed.Load() != 1 || conns.Load() != 1 {
		t.Errorf("%d connections handed over, %d made; want 1 and 1", handed.Load(), conns.Load())
	}
}

// Redirects are followed as net/http follows them, and the response names
// its request.
func TestRedirectFollowed(t *testing.T) {
	t.Parallel()
	cc := &concurrency{}
	mux := http.NewServeMux()
	mux.HandleFunc("/old", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/new", http.StatusFound) })
	mux.Handle("/new", cc.handler())
	srv, c, _ := tlsServer(t, mux, false, 0, Options{})
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/old", nil)
	resp, err := roundTrip(c, req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(body, content("/new")) || resp.Request.URL.Path != "/new" || resp.ProtoMajor != 2 {
		t.Errorf("err %v, %d bytes, request %s, proto %s", err, len(body), resp.Request.URL, resp.Proto)
	}
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
