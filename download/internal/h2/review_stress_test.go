package h2

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Control (held up): against net/http's HTTP/2 server, with -race: many
// concurrent requests, bodies read whole, closed early, contexts canceled at
// random; every whole body matches; afterwards no stream is reserved and
// CloseIdleConnections leaves no reader goroutine.
func TestReviewStressGoServer(t *testing.T) {
	blob := make([]byte, 3<<20)
	rand.New(rand.NewSource(1)).Read(blob)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		off, _ := strconv.Atoi(r.URL.Query().Get("off"))
		w.Header().Set("Content-Length", strconv.Itoa(n))
		if r.URL.Query().Get("slow") != "" {
			for i := 0; i < n; i += 1000 {
				w.Write(blob[off+i : off+min(i+1000, n)])
				w.(http.Flusher).Flush()
			}
			return
		}
		w.Write(blob[off : off+n])
	})
	srv := httptest.NewUnstartedServer(h)
	srv.EnableHTTP2 = true
	srv.Config.MaxHeaderBytes = 1 << 20
	srv.StartTLS()
	defer srv.Close()
	c := reviewClient(Options{Streams: 16, MaxConnsPerHost: 3, StreamWindow: 256 << 10, ConnWindow: 512 << 10})
	base := goroutines("readLoop")
	var wg sync.WaitGroup
	var mu sync.Mutex
	bad := 0
	for w := range 48 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(w)))
			for range 60 {
				n := rng.Intn(300 << 10)
				off := rng.Intn(len(blob) - n)
				u := fmt.Sprintf("%s/?n=%d&off=%d", srv.URL, n, off)
				if rng.Intn(8) == 0 {
					u += "&slow=1"
				}
				ctx, cancel := context.WithCancel(context.Background())
				mode := rng.Intn(10)
				if mode == 0 {
					time.AfterFunc(time.Duration(rng.Intn(3000))*time.Microsecond, cancel)
				}
				resp, err := rvGet(ctx, c, u)
				if err != nil {
					cancel()
					if mode != 0 {
						t.Errorf("%s: %v", u, err)
					}
					continue
				}
				if mode == 1 {
					io.CopyN(io.Discard, resp.Body, int64(rng.Intn(n+1)))
					resp.Body.Close()
					cancel()
					continue
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				cancel()
				if err != nil {
					if mode != 0 {
						t.Errorf("%s: read: %v", u, err)
					}
					continue
				}
				if !bytes.Equal(b, blob[off:off+n]) {
					mu.Lock()
					bad++
					mu.Unlock()
					t.Errorf("%s: body of %d bytes differs (sha %x)", u, len(b), sha256.Sum256(b))
				}
			}
		}()
	}
	wg.Wait()
	time.Sleep(100 * time.Millisecond)
	c.mu.Lock()
	for k, h := range c.hosts {
		for _, cn := range h.conns {
			if cn.active != 0 {
				t.Errorf("host %s: conn with %d streams reserved after all requests ended", k, cn.active)
			}
		}
	}
	c.mu.Unlock()
	c.CloseIdleConnections()
	time.Sleep(200 * time.Millisecond)
	if n := goroutines("readLoop"); n > base {
		t.Errorf("%d reader goroutines left after CloseIdleConnections", n-base)
	}
}

func goroutines(fn string) int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "h2.(*conn)."+fn)
}

// Finding 4b: net/http's own HTTP/2 server (as in Caddy) with
// MaxConcurrentStreams below Streams: the burst sent before its SETTINGS is
// refused (REFUSED_STREAM, before the ACK) or reset as a PROTOCOL_ERROR (a
// stream over the limit after the ACK: reserved under the old peerMax,
// written after the ACK), and neither is always retried to success.
func TestReviewGoServerLowMaxStreams(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(2 * time.Millisecond)
		w.Header().Set("Content-Length", "2")
		w.Write([]byte("ok"))
	})
	srv := httptest.NewUnstartedServer(h)
	srv.EnableHTTP2 = true
	srv.Config.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: 4}
	srv.Config.ErrorLog = nil
	srv.StartTLS()
	defer srv.Close()
	c := reviewClient(Options{Streams: 32, MaxConnsPerHost: 8})
	defer c.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var fails []error
	for range 400 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := rvGet(ctx, c, srv.URL+"/x")
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
		kinds := map[string]int{}
		for _, e := range fails {
			kinds[e.Error()[strings.LastIndex(e.Error(), ": ")+2:]]++
		}
		t.Fatalf("%d of 400 requests failed: %v", len(fails), kinds)
	}
}
