package download

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/time/rate"
)

// The run's header is shared by every request and never changed: a request
// that sets a field gets its own copy. A Host header names the request's
// host, as with curl.
func TestExchangeHeaderSharedUntilSet(t *testing.T) {
	shared := http.Header{"User-Agent": {"haul-test"}, "Host": {"files.example"}}
	d := &transferDeps{header: shared, timeout: time.Minute}
	x, err := d.newExchange(context.Background(), "http://127.0.0.1:1/f", false)
	if err != nil {
		t.Fatal(err)
	}
	defer x.end()
	if x.req.Host != "files.example" {
		t.Errorf("Host %q, want the Host header's", x.req.Host)
	}
	x.setRange(5, 10, `"v1"`)
	if got := x.req.Header.Get("Range"); got != "bytes=5-9" {
		t.Errorf("Range %q, want bytes=5-9", got)
	}
	if got := x.req.Header.Get("If-Range"); got != `"v1"` {
		t.Errorf("If-Range %q", got)
	}
	if x.req.Header.Get("User-Agent") != "haul-test" {
		t.Errorf("the run's header was dropped: %v", x.req.Header)
	}
	if len(shared) != 2 || shared.Get("Range") != "" {
		t.Errorf("the shared header was changed: %v", shared)
	}

	// Without a run header, the request has its own from the start.
	d.header = nil
	y, err := d.newExchange(context.Background(), "http://127.0.0.1:1/f", true)
	if err != nil {
		t.Fatal(err)
	}
	defer y.end()
	y.setRange(7, -1, "Mon, 02 Jan 2026 03:04:05 GMT")
	if got := y.req.Header.Get("Range"); got != "bytes=7-" {
		t.Errorf("Range %q, want bytes=7-", got)
	}
}

// blockingReader gives its bytes, then blocks until ctx ends.
type blockingReader struct {
	ctx context.Context
	r   io.Reader
}

func (b *blockingReader) Read(p []byte) (int, error) {
	if n, _ := b.r.Read(p); n > 0 {
		return n, nil
	}
	<-b.ctx.Done()
	return 0, context.Cause(b.ctx)
}

// A body that brings nothing for --timeout fails with ErrStalled; bytes
// arriving push the deadline back.
func TestPacedBodyStalls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var bytes atomic.Int64
		d := &transferDeps{timeout: 30 * time.Second, bytes: &bytes}
		x, err := d.newExchange(context.Background(), "http://127.0.0.1:1/f", false)
		if err != nil {
			t.Fatal(err)
		}
		src := &slowReader{r: strings.NewReader(strings.Repeat("x", 10)), every: 20 * time.Second}
		body := x.body(&blockingReader{ctx: x.ctx, r: src}, nil)
		start := time.Now()
		got, err := io.ReadAll(body)
		if !errors.Is(err, ErrStalled) {
			t.Fatalf("read %d bytes, then %v; want ErrStalled", len(got), err)
		}
		if len(got) != 10 {
			t.Errorf("%d bytes before the stall, want 10", len(got))
		}
		// Ten reads 20 s apart, each within the timeout, then 30 s of
		// nothing and the eighth of it a push adds (pushStall: a read pushes
		// the deadline to 9/8 of the timeout, at most every eighth of it).
		if d := time.Since(start); d != 10*20*time.Second+30*time.Second+30*time.Second/8 {
			t.Errorf("stalled after %v", d)
		}
		body.Close()
	})
}

// slowReader gives one byte per read, every apart.
type slowReader struct {
	r     io.Reader
	every time.Duration
}

func (s *slowReader) Read(p []byte) (int, error) {
	time.Sleep(s.every)
	return s.r.Read(p[:min(len(p), 1)])
}

// Waiting for --limit-rate is not the network stalling: a body paced far
// slower than the timeout allows arrives whole, paced, and counted once
// stored.
func TestPacedBodyLimiterIsNotAStall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var bytes atomic.Int64
		lim := rate.NewLimiter(1000, 1000) // 1000 B/s, in reads of 1000 at most
		lim.AllowN(time.Now(), 1000)       // the burst is spent: every read waits
		d := &transferDeps{timeout: 500 * time.Millisecond, limiter: lim, bytes: &bytes}
		x, err := d.newExchange(context.Background(), "http://127.0.0.1:1/f", false)
		if err != nil {
			t.Fatal(err)
		}
		defer x.end()
		body := x.body(strings.NewReader(strings.Repeat("x", 5000)), nil)
		buf := make([]byte, 4096)
		start := time.Now()
		total := 0
		for {
			n, err := body.Read(buf)
			if n > 1000 {
				t.Fatalf("a read of %d bytes: more than the limiter's burst", n)
			}
			total += n
			body.stored(n)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("after %d bytes: %v", total, err)
			}
		}
		if total != 5000 || bytes.Load() != 5000 {
			t.Errorf("read %d, counted %d, want 5000", total, bytes.Load())
		}
		if d := time.Since(start); d < 5*time.Second {
			t.Errorf("5000 bytes at 1000 B/s in %v", d)
		}
	})
}

// Reads that come often push the stall deadline back at most every eighth
// of --timeout (a timer reset per read costs CPU): reads every second with a
// 32 s timeout push it at 1 s, 5 s and 9 s, not at 10 s, so the body stalls
// 36 s after the push at 9 s.
func TestPacedBodyPushesStallLazily(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var bytes atomic.Int64
		d := &transferDeps{timeout: 32 * time.Second, bytes: &bytes}
		x, err := d.newExchange(context.Background(), "http://127.0.0.1:1/f", false)
		if err != nil {
			t.Fatal(err)
		}
		src := &slowReader{r: strings.NewReader(strings.Repeat("x", 10)), every: time.Second}
		body := x.body(&blockingReader{ctx: x.ctx, r: src}, nil)
		start := time.Now()
		if _, err := io.ReadAll(body); !errors.Is(err, ErrStalled) {
			t.Fatalf("%v, want ErrStalled", err)
		}
		if d := time.Since(start); d != 9*time.Second+36*time.Second {
			t.Errorf("stalled after %v, want 45s", d)
		}
		body.Close()
	})
}
