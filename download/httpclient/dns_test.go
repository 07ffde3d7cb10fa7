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
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/haul/haul/download/internal/dns"
	"github.com/haul/haul/download/internal/dns/dnstest"
	"github.com/haul/haul/internal/testutil"
)

// countingLookup resolves names ending in ".test" to loopback (others fail)
// and counts the lookups per name.
type countingLookup struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *countingLookup) lookup(ctx context.Context, host string) (dns.Answer, error) {
	c.mu.Lock()
	c.n[host]++
	c.mu.Unlock()
	time.Sleep(time.Millisecond) // widens the window in which lookups of one name overlap (the count holds either way)
	if strings.HasSuffix(host, ".test") {
		// An address nothing listens on first: the dial goes on to the next.
		return dns.Answer{Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.1")}, TTL: -1}, nil
	}
	return dns.Answer{}, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
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
	// The cache's clock stands still: however slow the machine, no answer
	// (30 s at least) or failure (10 s) is kept too briefly for the test.
	start := time.Now()
	c, err := New(Options{Jobs: 8, ConnectTimeout: testutil.Patience(t), lookup: cl.lookup,
		proxy: func(*url.URL) (*url.URL, error) { return nil, nil }, now: func() time.Time { return start }})
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
		r := newResolver(Options{lookup: func(ctx context.Context, host string) (dns.Answer, error) {
			select {
			case <-ctx.Done():
				return dns.Answer{}, ctx.Err()
			case <-release:
				return dns.Answer{}, errors.New("released")
			}
		}})
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
		r2 := newResolver(Options{lookup: func(ctx context.Context, host string) (dns.Answer, error) {
			<-release // ignores its context: only the caller's can end the wait
			return dns.Answer{}, errors.New("released")
		}})
		t0 = time.Now()
		if _, err := r2.dialer(&net.Dialer{Timeout: time.Hour})(ctx, "tcp", "hang.test:80"); !errors.Is(err, context.Canceled) {
			t.Errorf("a cancelled dial returned %v, want context.Canceled", err)
		}
		if d := time.Since(t0); d != 50*time.Millisecond {
			t.Errorf("a dial cancelled after 50ms returned after %v", d)
		}
	})
}

// clock is a time a test moves.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// An answer is kept for its TTL, but at least 30 seconds and at most 30
// minutes; a failure (NXDOMAIN) for 10 seconds.
func TestDNSAnswerKeptForItsTTL(t *testing.T) {
	s := dnstest.Start(t, func(q dnstest.Query) dnstest.Reply {
		if q.Type != dnsmessage.TypeA {
			return dnstest.Reply{} // no AAAA record
		}
		ttl := map[string]uint32{"ttl120.test.": 120, "ttl0.test.": 0, "ttl1d.test.": 86400}
		v, ok := ttl[q.Name]
		if !ok {
			return dnstest.Reply{RCode: dnsmessage.RCodeNameError}
		}
		return dnstest.Reply{Answers: []dnsmessage.Resource{dnstest.A(q.Name, v, "127.0.0.1")}}
	})
	r := newResolver(Options{DNSServers: []netip.AddrPort{s.Addr}, hostsFile: filepath.Join(t.TempDir(), "none")})
	c := &clock{t: time.Unix(1e9, 0)}
	r.now = c.now
	ctx := context.Background()
	for _, tc := range []struct {
		host         string
		kept, looked time.Duration // still cached at kept, looked up again at looked
	}{
		{"ttl120.test", 119 * time.Second, 121 * time.Second},
		{"ttl0.test", 29 * time.Second, 31 * time.Second},
		{"ttl1d.test", 29 * time.Minute, 31 * time.Minute},
		{"gone.test", 9 * time.Second, 11 * time.Second},
	} {
		t0 := c.now()
		for i, at := range []time.Duration{0, tc.kept, tc.looked} {
			c.advance(t0.Add(at).Sub(c.now()))
			_, err := r.addrs(ctx, tc.host, testutil.Patience(t))
			if (err != nil) != (tc.host == "gone.test") {
				t.Fatalf("%s: %v", tc.host, err)
			}
			if n, want := s.Count(tc.host, dnsmessage.TypeA), []int{1, 1, 2}[i]; n != want {
				t.Errorf("%s after %v: %d queries, want %d", tc.host, at, n, want)
			}
		}
	}
}

// With DNSServers, every client dials the names those servers give, and the
// names of the hosts file without asking them.
func TestDNSServersOption(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.Host) }))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	s := dnstest.Start(t, func(q dnstest.Query) dnstest.Reply {
		if q.Type == dnsmessage.TypeA && q.Name == "served.dns.test." {
			return dnstest.Reply{Answers: []dnsmessage.Resource{dnstest.A(q.Name, 300, "127.0.0.1")}}
		}
		if q.Name == "served.dns.test." {
			return dnstest.Reply{}
		}
		return dnstest.Reply{RCode: dnsmessage.RCodeNameError}
	})
	hosts := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(hosts, []byte("127.0.0.1 from-hosts-file.test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := New(Options{Jobs: 4, ConnectTimeout: testutil.Patience(t), DNSServers: []netip.AddrPort{s.Addr}, hostsFile: hosts,
		proxy: func(*url.URL) (*url.URL, error) { return nil, nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	for _, host := range []string{"served.dns.test", "from-hosts-file.test"} {
		resp, err := getURL(c, "http://"+host+":"+port+"/")
		if err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != host+":"+port {
			t.Errorf("%s: served %q", host, b)
		}
	}
	if n := s.Count("served.dns.test", dnsmessage.TypeA); n != 1 {
		t.Errorf("served.dns.test: %d A queries, want 1", n)
	}
	if n := s.Count("from-hosts-file.test", dnsmessage.TypeA) + s.Count("from-hosts-file.test", dnsmessage.TypeAAAA); n != 0 {
		t.Errorf("a name of the hosts file asked of the server %d times", n)
	}
	_, err = getURL(c, "http://nowhere.dns.test:"+port+"/")
	var de *net.DNSError
	if !errors.As(err, &de) || !de.IsNotFound {
		t.Errorf("a name the server does not know: %v, want a *net.DNSError with IsNotFound", err)
	}
}
