package h2

import (
	"bytes"
	"context"
	"io"
	"strconv"
	"testing"
	"testing/synctest"

	"golang.org/x/net/http2"
)

// The server cannot send past the stream's window: a stream that does fails
// (the memory a slow reader lets pile up is bounded), the connection goes on.
func TestServerPastStreamWindowFailsStream(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		srv := newTestServer(t, nil, nil)
		c := srv.client(Options{StreamWindow: 64 << 10, ConnWindow: 1 << 20})
		rt := startRoundTrip(t, context.Background(), c, srv.url("/flood"))
		sc := srv.accept()
		r := sc.wantHeaders()
		sc.headers(r.id, false, 200)
		sc.data(r.id, true, make([]byte, 100<<10)) // the window is 64 KiB
		resp := rt.response()
		synctest.Wait() // nothing read: the client has all the server sent
		_, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !contains(err, "flow-control") {
			t.Errorf("read %v, want a flow-control error", err)
		}
		sc.wantRST(r.id, http2.ErrCodeFlowControl)

		rt = startRoundTrip(t, context.Background(), c, srv.url("/after"))
		r = sc.wantHeaders()
		sc.reply(r.id, "after")
		rt.wantBody("after")
		srv.wantNoConn()
	})
}

// The connection's window is given back as bodies are read, and for the
// bytes of bodies closed unread: a connection carries far more than its
// window.
func TestConnWindowGivenBackForReadAndDiscardedBodies(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		big := bytes.Repeat([]byte("0123456789abcdef"), 16<<10) // 256 KiB
		srv := newTestServer(t, nil, func(i int, sc *serverConn) {
			for r := range sc.requests() {
				sc.respond(r, big)
			}
		})
		c := srv.client(Options{StreamWindow: 128 << 10, ConnWindow: 128 << 10, MaxConnsPerHost: 1, Streams: 2})
		for i := range 20 { // 5 MiB through a 128 KiB window
			resp, err := getResp(context.Background(), c, srv.url("/b"))
			if err != nil {
				t.Fatal(err)
			}
			if i%2 == 0 {
				body, err := io.ReadAll(resp.Body)
				if err != nil || !bytes.Equal(body, big) {
					t.Fatalf("%d: %d bytes, %v", i, len(body), err)
				}
			} else {
				synctest.Wait() // the window's worth has come, unread
			}
			resp.Body.Close()
		}
		if n := srv.accepted(); n != 1 {
			t.Errorf("%d connections, want 1", n)
		}
	})
}

// DATA frames that are all padding use up the stream's window: it is given
// back (the reader is never woken for them), so the server can send the
// rest.
func TestPaddingOnlyDataGivesStreamWindowBack(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const win = 65536
		srv := newTestServer(t, nil, nil)
		c := srv.client(Options{StreamWindow: win})
		rt := startRoundTrip(t, context.Background(), c, srv.url("/pad"))
		sc := srv.accept()
		r := sc.wantHeaders()
		sc.headers(r.id, false, 200, "content-length", "5")
		for credit := win; credit >= 256; credit -= 256 {
			sc.padded(r.id, false, nil, 255) // 1 pad-length byte + 255: 256 of the window
		}
		resp := rt.response()
		for {
			f := sc.wantFrame(http2.FrameWindowUpdate).(*http2.WindowUpdateFrame)
			if f.StreamID == r.id {
				break
			}
		}
		sc.data(r.id, true, []byte("hello"))
		if b, err := io.ReadAll(resp.Body); err != nil || string(b) != "hello" {
			t.Fatalf("body %q, %v", b, err)
		}
	})
}

// Small DATA frames share the buffers of a body not read yet: what a stream
// holds is about its bytes, not a 16 KiB buffer per frame.
func TestTinyDataFramesShareBuffers(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const frames = 8192
		srv := newTestServer(t, nil, nil)
		c := srv.client(Options{})
		rt := startRoundTrip(t, context.Background(), c, srv.url("/tiny"))
		sc := srv.accept()
		r := sc.wantHeaders()
		sc.headers(r.id, false, 200, "content-length", strconv.Itoa(frames))
		for range frames {
			sc.data(r.id, false, []byte{'x'})
		}
		sc.data(r.id, true, nil)
		resp := rt.response()
		synctest.Wait() // the client has buffered it all
		s := resp.Body.(*body).s
		s.cn.mu.Lock()
		held := 0
		for _, b := range s.chunks {
			held += cap(*b)
		}
		buffered := s.buffered
		s.cn.mu.Unlock()
		t.Logf("%d body bytes buffered in %d bytes of buffers", buffered, held)
		if buffered != frames || held > 2*frameSize {
			t.Errorf("%d body bytes buffered held %d bytes of buffers, want all %d in at most %d", buffered, held, frames, 2*frameSize)
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil || len(b) != frames {
			t.Fatalf("body: %d bytes, %v", len(b), err)
		}
	})
}
