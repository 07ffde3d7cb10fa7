package httpclient

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/haul/haul/internal/testutil"
)

// countingLookup resolves names ending in ".test" to loopback (others fail)
// and counts the lookups per name.
type countingLookup struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *countingLookup) lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	c.mu.Lock()
	c.n[host]++
	c.mu.Unlock()
	time.Sleep(time.Millisecond) // widens the window in which lookups of one name overlap (the count holds either way)
	if strings.HasSuffix(host, ".test") {
		// An address nothing listens on first: the dial goes on to the next.
		return []netip.Addr{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.1")}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func (c *countingLookup) count(host string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[host]
}

// Every name is looked up once per run, over both clients (h1 for http, and
// net/http) and many concurrent connections; a failure is cached too, briefly.
func TestDNSLookedUpOnce(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Config.SetKeepAlivesEnabled(false) // a connection per request: a dial, a chance to look up
	srv.Start()
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	cl := &countingLookup{n: map[string]int{}}
	c, err := New(Options{Jobs: 8, ConnectTimeout: testutil.Patience(t), lookup: cl.lookup,
		proxy: func(*url.URL) (*url.URL, error) { return nil, nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			host := []string{"a.test", "b.test"}[i%2]
			resp, err := getURL(c, "http://"+host+":"+port+"/x")
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
		}()
	}
	wg.Wait()
	if int(conns.Load()) < 40 {
		t.Fatalf("%d connections for 40 requests: the test needs a dial each", conns.Load())
	}
	for _, h := range []string{"a.test", "b.test"} {
		if n := cl.count(h); n != 1 {
			t.Errorf("%s looked up %d times, want once", h, n)
		}
	}
	for range 3 {
		_, err := getURL(c, "http://nowhere.invalid:"+port+"/x")
		var de *net.DNSError
		if !errors.As(err, &de) {
			t.Errorf("a name that does not resolve: %v, want a *net.DNSError", err)
		}
	}
	if n := cl.count("nowhere.invalid"); n != 1 {
		t.Errorf("a failing name looked up %d times in a row, want once (cached briefly)", n)
	}
}

func getURL(c Client, u string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	return c.Do(req)
}

// A lookup that hangs is bounded by --connect-timeout, and a caller that gives
// up (Ctrl-C) does not wait for it.
func TestDNSHungLookup(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		defer close(release)
		r := newResolver(func(ctx context.Context, host string) ([]netip.Addr, error) {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-release:
				return nil, errors.New("released")
			}
		})
		dial := r.dialer(&net.Dialer{Timeout: 100 * time.Millisecond})
		t0 := time.Now()
		if _, err := dial(context.Background(), "tcp", "hang.test:80"); err == nil {
			t.Fatal("dialed through a hung lookup")
		}
		if d := time.Since(t0); d != 100*time.Millisecond {
			t.Errorf("the lookup took %v, want the 100ms connect timeout", d)
		}
		ctx, cancel := context.WithCancel(context.Background())
		go func() { time.Sleep(50 * time.Millisecond); cancel() }()
		r2 := newResolver(func(ctx context.Context, host string) ([]netip.Addr, error) {
			<-release // ignores its context: only the caller's can end the wait
			return nil, errors.New("released")
		})
		t0 = time.Now()
		if _, err := r2.dialer(&net.Dialer{Timeout: time.Hour})(ctx, "tcp", "hang.test:80"); !errors.Is(err, context.Canceled) {
			t.Errorf("a cancelled dial returned %v, want context.Canceled", err)
		}
		if d := time.Since(t0); d != 50*time.Millisecond {
			t.Errorf("a dial cancelled after 50ms returned after %v", d)
		}
	})
}
