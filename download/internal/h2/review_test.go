// The adversarial review of h2 (its first cut, 91c0819): each test names the
// finding it reproduced; all hold since the fixes that followed. The harness
// (review_harness_test.go) serves scripted frames over TLS.
package h2

import (
	"context"
	"errors"
	"io"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Finding 1: two malformed header blocks in a row (each a StreamError from the
// Framer) make readFrames call handle(nil), which panics in the reader
// goroutine and kills the process. Run in a child process.
func TestReviewTwoStreamErrorsPanic(t *testing.T) {
	if os.Getenv("REVIEW_CHILD") == "1" {
		reviewTwoStreamErrorsChild(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestReviewTwoStreamErrorsPanic$", "-test.v")
	cmd.Env = append(os.Environ(), "REVIEW_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil || strings.Contains(string(out), "panic") {
		t.Fatalf("child failed (%v):\n%s", err, lastLines(string(out), 25))
	}
}

func lastLines(s string, n int) string {
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[:n]
	}
	return strings.Join(l, "\n")
}

func reviewTwoStreamErrorsChild(t *testing.T) {
	srv := newRvServer(t, nil, func(i int, sc *srvConn) {
		a := sc.readHeaders()
		b := sc.readHeaders()
		// A header value with a newline: the Framer reports a StreamError
		// for each block (and keeps the HPACK table in step).
		sc.headers(a, true, 200, "x-bad", "a\nb")
		sc.headers(b, true, 200, "x-bad", "a\nb")
		sc.readFrames(nil)
	})
	c := reviewClient(Options{})
	defer c.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := rvGet(ctx, c, srv.url("/x"))
			if err == nil {
				resp.Body.Close()
				t.Errorf("malformed response accepted")
			}
		}()
	}
	wg.Wait()
}

// Finding 2: a stream reserved by get before a GOAWAY is read, and written
// after it, gets an id above the GOAWAY's last stream id: the server ignores
// it, and while the connection stays open (streams <= last still running)
// the request waits for a response that never comes (until its context ends).
// A fixed client refuses it (retryable) or never sends it.
func TestReviewStreamSentAfterGoAway(t *testing.T) {
	release := make(chan struct{})
	got1 := make(chan struct{})
	goaway := make(chan struct{})
	srv := newRvServer(t, nil, func(i int, sc *srvConn) {
		id := sc.readHeaders()
		close(got1)
		<-goaway
		sc.goAway(id)
		sc.headers(id, false, 200)
		sc.data(id, false, []byte("partial"))
		go sc.readFrames(nil) // stream 3 is ignored, as RFC 9113 §6.8 lets the server do
		<-release
		sc.data(id, true, []byte(" rest"))
		time.Sleep(100 * time.Millisecond)
	})
	defer close(release)
	c := reviewClient(Options{})
	defer c.CloseIdleConnections()
	ctx := context.Background()
	go func() {
		resp, err := rvGet(ctx, c, srv.url("/long"))
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	<-got1
	u, _ := url.Parse(srv.url("/second"))
	cn, _, err := c.get(ctx, hostKey(u), u) // the reservation a request holds until its HEADERS are written
	if err != nil {
		t.Fatal(err)
	}
	close(goaway)
	for deadline := time.Now().Add(2 * time.Second); ; {
		c.mu.Lock()
		d := cn.draining
		c.mu.Unlock()
		if d {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("GOAWAY not seen")
		}
		time.Sleep(5 * time.Millisecond)
	}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, _ := rvNewReq(rctx, srv.url("/second"))
	start := time.Now()
	resp, err := cn.roundTrip(rctx, req)
	if resp != nil {
		resp.Body.Close()
	}
	var r retryable
	if !errors.As(err, &r) && !errors.Is(err, errNotSent) {
		t.Fatalf("stream sent after GOAWAY(last=1): got %v after %v, want a retryable refusal or not sent, at once", err, time.Since(start).Round(time.Millisecond))
	}
}

// Finding 3: a connection that got GOAWAY stays in host.conns (and counts
// against MaxConnsPerHost) until its last stream ends: with one connection
// per host, every other request to the host waits for the longest transfer
// on the draining connection, though a new connection would serve it.
func TestReviewDrainingConnBlocksHost(t *testing.T) {
	release := make(chan struct{})
	srv := newRvServer(t, nil, func(i int, sc *srvConn) {
		if i == 0 {
			id := sc.readHeaders()
			sc.headers(id, false, 200)
			sc.data(id, false, []byte("partial"))
			sc.goAway(id)
			go sc.readFrames(nil)
			<-release
			sc.data(id, true, []byte(" rest"))
			time.Sleep(100 * time.Millisecond)
			return
		}
		sc.readFrames(func(f http2.Frame) {
			if h, ok := f.(*http2.MetaHeadersFrame); ok {
				sc.headers(h.StreamID, false, 200, "content-length", "2")
				sc.data(h.StreamID, true, []byte("ok"))
			}
		})
	})
	defer close(release)
	c := reviewClient(Options{MaxConnsPerHost: 1})
	defer c.CloseIdleConnections()
	resp, err := rvGet(context.Background(), c, srv.url("/long"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 7)
	io.ReadFull(resp.Body, buf) // the GOAWAY comes right after this DATA
	time.Sleep(100 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	resp2, err := rvGet(ctx, c, srv.url("/short"))
	if err != nil {
		t.Fatalf("second request with the first connection draining: %v after %v (connections accepted: %d)",
			err, time.Since(start).Round(time.Millisecond), srv.accepted())
	}
	resp2.Body.Close()
}

// Finding 4: DATA frames that are all padding use up the stream's window, but
// only Read gives the stream's window back and Read is never woken for them:
// no WINDOW_UPDATE for the stream, the server cannot send the rest, the body
// hangs.
func TestReviewPaddingOnlyStallsStream(t *testing.T) {
	const win = 65536
	srv := newRvServer(t, nil, func(i int, sc *srvConn) {
		id := sc.readHeaders()
		sc.headers(id, false, 200, "content-length", "5")
		credit := win
		for credit >= 256 {
			sc.padded(id, false, nil, 255) // 1 pad-length byte + 255: 256 of the window
			credit -= 256
		}
		upd := make(chan struct{}, 1)
		go sc.readFrames(func(f http2.Frame) {
			if w, ok := f.(*http2.WindowUpdateFrame); ok && w.StreamID == id {
				select {
				case upd <- struct{}{}:
				default:
				}
			}
		})
		select {
		case <-upd:
			sc.data(id, true, []byte("hello"))
		case <-time.After(3 * time.Second):
		}
		time.Sleep(100 * time.Millisecond)
	})
	c := reviewClient(Options{StreamWindow: win})
	defer c.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := rvGet(ctx, c, srv.url("/pad"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || string(b) != "hello" {
		t.Fatalf("body %q, %v: the stream's window, used up by padding, was never given back", b, err)
	}
}

// Finding 5: before the server's SETTINGS is read a new connection takes
// min(Streams, 100) streams; a server with a lower MAX_CONCURRENT_STREAMS
// refuses the excess, and each retry that lands on another new connection is
// refused again: with several connections per host a request runs out of
// its retries and fails with REFUSED_STREAM.
func TestReviewRefusedOnEveryNewConn(t *testing.T) {
	const maxStreams = 2
	srv := newRvServer(t, []http2.Setting{{ID: http2.SettingMaxConcurrentStreams, Val: maxStreams}},
		func(i int, sc *srvConn) {
			var mu sync.Mutex
			open := 0
			sc.readFrames(func(f http2.Frame) {
				h, ok := f.(*http2.MetaHeadersFrame)
				if !ok {
					return
				}
				mu.Lock()
				if open >= maxStreams {
					mu.Unlock()
					sc.rst(h.StreamID, http2.ErrCodeRefusedStream)
					return
				}
				open++
				mu.Unlock()
				go func(id uint32) {
					time.Sleep(20 * time.Millisecond)
					sc.headers(id, false, 200, "content-length", "2")
					mu.Lock()
					open--
					mu.Unlock()
					sc.data(id, true, []byte("ok"))
				}(h.StreamID)
			})
		})
	c := reviewClient(Options{Streams: 32, MaxConnsPerHost: 16})
	defer c.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var fails []error
	for range 256 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := rvGet(ctx, c, srv.url("/f"))
			if err != nil {
				mu.Lock()
				fails = append(fails, err)
				mu.Unlock()
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}()
	}
	wg.Wait()
	if len(fails) > 0 {
		t.Fatalf("%d of 256 requests failed (connections: %d), first: %v", len(fails), srv.accepted(), fails[0])
	}
}

// Control: bodies are exactly the DATA of their stream with many streams in
// flight, interleaved frames, padding, trailers and 1xx.
func TestReviewIntegrityInterleaved(t *testing.T) {
	const n = 64
	srv := newRvServer(t, nil, func(i int, sc *srvConn) {
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
	c := reviewClient(Options{})
	defer c.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := rvGet(ctx, c, srv.url("/i"))
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Error(err)
				return
			}
			if len(b) != 40000 || strings.Trim(string(b), string(b[:1])) != "" {
				t.Errorf("body of %d bytes mixed", len(b))
			}
		}()
	}
	wg.Wait()
}

var _ = hpack.HeaderField{}

// Finding 7: every DATA frame gets a 16 KiB chunk of its own, however small:
// a server that sends small frames (nginx http2_chunk_size, a paced or
// proxied stream) to a reader that lags makes the buffered body cost up to
// 16 KiB per byte, far past the flow-control windows' bound.
func TestReviewTinyFramesMemory(t *testing.T) {
	const frames = 8192
	sent := make(chan struct{})
	srv := newRvServer(t, nil, func(i int, sc *srvConn) {
		id := sc.readHeaders()
		sc.headers(id, false, 200, "content-length", strconv.Itoa(frames))
		for range frames {
			sc.data(id, false, []byte{'x'})
		}
		sc.data(id, true, nil)
		close(sent)
		sc.readFrames(nil)
	})
	c := reviewClient(Options{})
	defer c.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	resp, err := rvGet(ctx, c, srv.url("/tiny"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	<-sent
	time.Sleep(200 * time.Millisecond) // the reader has buffered it all
	runtime.GC()
	runtime.ReadMemStats(&after)
	held := int64(after.HeapInuse) - int64(before.HeapInuse)
	b, err := io.ReadAll(resp.Body)
	if err != nil || len(b) != frames {
		t.Fatalf("body: %d bytes, %v", len(b), err)
	}
	t.Logf("%d body bytes buffered held %d MiB of heap", frames, held>>20)
	if held > 8<<20 {
		t.Errorf("%d bytes of body held %d MiB: a 16 KiB chunk per DATA frame", frames, held>>20)
	}
}

// Finding 6: a server that serves k requests per connection and then sends
// GOAWAY (nginx keepalive_requests, many CDNs), k below Streams: each new
// connection gets min(Streams, 100) streams at once, all but k are refused by
// the GOAWAY, and a request refused on 5 connections in a row fails; the
// retries have no backoff and no regard to the refusal being the client's own
// burst. (nginx keepalive_requests 7: 2,640 of 3,003 files fail in haul, none
// with HAUL_NETHTTP2=1.)
func goAwayAfterKServer(t *testing.T) *rvServer {
	const k = 7
	return newRvServer(t, nil, func(i int, sc *srvConn) {
		served := 0
		var last uint32
		var wg sync.WaitGroup
		sc.readFrames(func(f http2.Frame) {
			h, ok := f.(*http2.MetaHeadersFrame)
			if !ok || served >= k {
				return
			}
			served++
			last = h.StreamID
			if served == k {
				sc.goAway(last)
			}
			wg.Add(1)
			go func(id uint32, closeAfter bool) {
				defer wg.Done()
				time.Sleep(5 * time.Millisecond)
				sc.headers(id, false, 200, "content-length", "2")
				sc.data(id, true, []byte("ok"))
				if closeAfter {
					time.Sleep(20 * time.Millisecond)
					sc.nc.Close()
				}
			}(h.StreamID, served == k)
		})
		wg.Wait()
	})
}

func TestReviewGoAwayAfterKRequests(t *testing.T) {
	srv := goAwayAfterKServer(t)
	c := reviewClient(Options{Streams: 32, MaxConnsPerHost: 4})
	defer c.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var fails []error
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := rvGet(ctx, c, srv.url("/f"))
			if err != nil {
				mu.Lock()
				fails = append(fails, err)
				mu.Unlock()
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}()
	}
	wg.Wait()
	if len(fails) > 0 {
		t.Fatalf("%d of 200 requests failed (connections: %d), first: %v", len(fails), srv.accepted(), fails[0])
	}
}

// Finding 8 (minor): Close does not wake a Read blocked on the same body
// (abort never signals notify): the Read returns only when data comes (never:
// the stream is reset) or its context ends. net/http's Close unblocks it.
func TestReviewCloseDoesNotWakeRead(t *testing.T) {
	srv := newRvServer(t, nil, func(i int, sc *srvConn) {
		id := sc.readHeaders()
		sc.headers(id, false, 200)
		sc.readFrames(nil)
	})
	c := reviewClient(Options{})
	defer c.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := rvGet(ctx, c, srv.url("/stall"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := resp.Body.Read(make([]byte, 10))
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	resp.Body.Close()
	select {
	case err := <-done:
		t.Logf("Read returned %v after Close", err)
	case <-time.After(time.Second):
		t.Fatal("Read still blocked 1s after Close")
	}
}

// Finding 9 (minor): SETTINGS_MAX_CONCURRENT_STREAMS 0 (allowed, RFC 9113
// §6.5.2, "until it is raised") leaves the connection in host.conns, unable
// to take a stream: with MaxConnsPerHost 1 every request waits on h.wait
// until its context ends (no new connection is tried).
func TestReviewMaxStreamsZero(t *testing.T) {
	srv := newRvServer(t, []http2.Setting{{ID: http2.SettingMaxConcurrentStreams, Val: 0}}, func(i int, sc *srvConn) {
		sc.readFrames(func(f http2.Frame) {
			if h, ok := f.(*http2.MetaHeadersFrame); ok {
				sc.rst(h.StreamID, http2.ErrCodeRefusedStream)
			}
		})
	})
	c := reviewClient(Options{})
	defer c.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	_, err := rvGet(ctx, c, srv.url("/zero"))
	t.Logf("err after %v: %v", time.Since(start).Round(time.Millisecond), err)
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatal("request waited for its whole context on a connection that takes no stream")
	}
}
