package h2

import (
	"context"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"testing/synctest"

	"golang.org/x/net/http2"
)

// A body shorter or longer than its Content-Length fails, never ends in
// io.EOF; without a Content-Length, END_STREAM ends the body. Stream errors
// do not end the connection.
func TestBodyMustMatchContentLength(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		srv := newTestServer(t, nil, nil)
		c := srv.client(Options{})
		var sc *serverConn
		for _, tc := range []struct {
			path  string
			serve func(id uint32)
			body  string
			ok    bool
		}{
			{"/short", func(id uint32) {
				sc.headers(id, false, 200, "content-length", "10")
				sc.data(id, true, []byte("12345"))
			}, "", false},
			{"/long", func(id uint32) {
				sc.headers(id, false, 200, "content-length", "5")
				sc.data(id, true, []byte("1234567890"))
			}, "", false},
			{"/none", func(id uint32) {
				sc.headers(id, false, 200)
				sc.data(id, false, []byte("12345"))
				sc.data(id, true, []byte("67890"))
			}, "1234567890", true},
			{"/empty-end", func(id uint32) {
				sc.headers(id, true, 200, "content-length", "3")
			}, "", false},
			{"/two", func(id uint32) {
				sc.headers(id, false, 200, "content-length", "5", "content-length", "6")
				sc.data(id, true, []byte("12345"))
			}, "", false},
			{"/304", func(id uint32) {
				sc.headers(id, true, 304, "content-length", "100")
			}, "", true},
		} {
			rt := startRoundTrip(t, context.Background(), c, srv.url(tc.path))
			if sc == nil {
				sc = srv.accept()
			}
			r := sc.wantHeaders()
			if r.path != tc.path {
				t.Fatalf("request for %s, want %s", r.path, tc.path)
			}
			tc.serve(r.id)
			var body []byte
			resp, err := rt.result()
			if err == nil {
				body, err = io.ReadAll(resp.Body)
			}
			if tc.ok != (err == nil) || tc.ok && string(body) != tc.body {
				t.Errorf("%s: %q, %v; want ok %v", tc.path, body, err, tc.ok)
			}
		}
		srv.wantNoConn()
	})
}

// Interim responses are skipped, trailers end the body, padding is not body.
func TestInterimTrailersAndPaddingAreNotBody(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		srv := newTestServer(t, nil, nil)
		c := srv.client(Options{})
		rt := startRoundTrip(t, context.Background(), c, srv.url("/x"))
		sc := srv.accept()
		r := sc.wantHeaders()
		sc.headers(r.id, false, 103, "link", "</a>; rel=preload")
		if rt.finished() {
			t.Fatal("the request returned on an interim response")
		}
		sc.headers(r.id, false, 200, "content-length", "8")
		sc.padded(r.id, false, []byte("abcd"), 100)
		sc.data(r.id, false, []byte("efgh"))
		sc.headers(r.id, true, 0, "x-checksum", "1")
		resp := rt.response()
		if b, err := io.ReadAll(resp.Body); err != nil || resp.StatusCode != 200 || string(b) != "abcdefgh" {
			t.Errorf("%d %q %v, want 200 abcdefgh", resp.StatusCode, b, err)
		}
	})
}

// Bodies are exactly the DATA of their stream with many streams in flight:
// interleaved frames, padding, trailers and interim responses.
func TestInterleavedStreamsKeepTheirOwnBodies(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const n = 64
		srv := newTestServer(t, nil, func(i int, sc *serverConn) {
			ids := make(chan uint32, n)
			go func() {
				sc.readFrames(func(f http2.Frame) {
					if h, ok := f.(*http2.MetaHeadersFrame); ok {
						ids <- h.StreamID
					}
				})
				close(ids)
			}()
			var batch []uint32
			for id := range ids {
				batch = append(batch, id)
				if len(batch) < 8 {
					continue
				}
				for _, id := range batch {
					sc.headers(id, false, 103, "link", "</x>")
					sc.headers(id, false, 200, "content-length", "40000")
				}
				for k := 0; k < 40000; k += 10000 {
					for j, id := range batch {
						p := []byte(strings.Repeat(string(rune('a'+int(id%26))), 10000))
						sc.padded(id, false, p, j*7%200)
					}
				}
				for _, id := range batch {
					sc.headers(id, true, 0, "x-trailer", "t")
				}
				batch = batch[:0]
			}
		})
		c := srv.client(Options{})
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				_, b, err := get(context.Background(), c, srv.url("/i"))
				if err != nil {
					t.Error(err)
					return
				}
				if len(b) != 40000 || strings.Trim(string(b), string(b[:1])) != "" {
					t.Errorf("body of %d bytes mixed", len(b))
				}
			})
		}
		wg.Wait()
	})
}

// Two malformed header blocks in a row (each a StreamError from the Framer)
// fail their two requests, and nothing else: the reader goroutine does not
// panic (which would kill the process: the check runs in a child process).
func TestMalformedHeaderBlocksFailOnlyTheirStreams(t *testing.T) {
	t.Parallel()
	if os.Getenv("H2_TEST_CHILD") == "1" {
		malformedHeaderBlocks(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestMalformedHeaderBlocksFailOnlyTheirStreams$", "-test.v")
	cmd.Env = append(os.Environ(), "H2_TEST_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil || strings.Contains(string(out), "panic") || !strings.Contains(string(out), "--- PASS") {
		t.Fatalf("child failed (%v):\n%s", err, out)
	}
}

func malformedHeaderBlocks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := newTestServer(t, nil, nil)
		c := srv.client(Options{})
		rt1 := startRoundTrip(t, context.Background(), c, srv.url("/a"))
		rt2 := startRoundTrip(t, context.Background(), c, srv.url("/b"))
		sc := srv.accept()
		a, b := sc.wantHeaders(), sc.wantHeaders()
		// A header value with a newline: the Framer reports a StreamError
		// for each block (and keeps the HPACK table in step).
		sc.headers(a.id, true, 200, "x-bad", "a\nb")
		sc.headers(b.id, true, 200, "x-bad", "a\nb")
		for _, rt := range []*asyncRoundTrip{rt1, rt2} {
			if _, err := rt.result(); err == nil {
				t.Error("malformed response accepted")
			}
		}
		rt3 := startRoundTrip(t, context.Background(), c, srv.url("/c"))
		r := sc.wantHeaders()
		sc.headers(r.id, true, 204)
		if resp := rt3.response(); resp.StatusCode != 204 {
			t.Errorf("after two malformed blocks: %s, want 204 on the same connection", resp.Status)
		}
	})
}
