package httpclient

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/haul/haul/internal/testutil"
)

func TestParseNetrc(t *testing.T) {
	n, err := ParseNetrc(strings.NewReader(`# a comment
machine Example.COM login alice password "s3 \"cr\\et"
machine example.com login second password ignored
macdef init
  cd /pub
  get x

machine other.org
  login bob
  account acct
  password pw2
default login anon password guest
`))
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]string{
		"example.com": `alice s3 "cr\et`, // the first entry for a machine wins; case-insensitive
		"other.org":   "bob pw2",
		"else.net":    "anon guest", // default
	} {
		l, p, ok := n.Lookup(host)
		if got := l + " " + p; !ok || got != want {
			t.Errorf("Lookup(%s) = %q %v, want %q", host, got, ok, want)
		}
	}
	n, err = ParseNetrc(strings.NewReader("machine a login x password y\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := n.Lookup("b"); ok {
		t.Error("a host without an entry and no default got credentials")
	}
	for _, bad := range []string{"login x", "machine", "machine a login", "machine a frobnicate 1", `machine "a`} {
		if _, err := ParseNetrc(strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "netrc line 1") {
			t.Errorf("%q: %v, want an error naming line 1", bad, err)
		}
	}
}

func FuzzNetrc(f *testing.F) {
	for _, s := range []string{
		"machine a login b password c\n",
		"default login anon password guest",
		"machine a\n login \"q \\\" x\"\n password p\nmacdef m\nline\n\nmachine z login y password x",
		"# c\n\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseNetrc(strings.NewReader(s))
		if err != nil {
			return
		}
		for host, e := range n.machines {
			l, p, ok := n.Lookup(host)
			if !ok || l != e.login || p != e.password {
				t.Fatalf("Lookup(%q) = %q %q %v, want %+v", host, l, p, ok, e)
			}
		}
	})
}

// authLog records the Authorization and Cookie headers each server saw.
type authLog struct {
	mu   sync.Mutex
	seen []string
}

func (a *authLog) add(r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.seen = append(a.seen, r.Host+" auth="+r.Header.Get("Authorization")+" cookie="+r.Header.Get("Cookie"))
}

// --netrc: credentials go to their host only, and never
// on to the host a redirect names, even one the netrc has no entry for.
func TestNetrcCredentialsStayOnTheirHost(t *testing.T) {
	var log authLog
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.add(r)
		io.WriteString(w, "other")
	}))
	defer other.Close()
	first := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.add(r)
		if r.URL.Path == "/away" {
			// Another host: localhost, where the first is 127.0.0.1.
			http.Redirect(w, r, strings.Replace(other.URL, "127.0.0.1", "localhost", 1)+"/x", http.StatusFound)
			return
		}
		if u, p, ok := r.BasicAuth(); !ok || u != "alice" || p != "pw" {
			http.Error(w, "who?", http.StatusUnauthorized)
			return
		}
		io.WriteString(w, "ok")
	}))
	defer first.Close()
	n, err := ParseNetrc(strings.NewReader("machine 127.0.0.1 login alice password pw\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, http11 := range []bool{false, true} {
		c, err := New(Options{Jobs: 2, ConnectTimeout: testutil.Patience(t), Netrc: n, HTTP11: http11,
			proxy: func(*url.URL) (*url.URL, error) { return nil, nil }})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := getURL(c, first.URL+"/file")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("a host in the netrc: %v %v", resp, err)
		}
		resp.Body.Close()
		log.mu.Lock()
		log.seen = nil
		log.mu.Unlock()
		resp, err = getURL(c, first.URL+"/away")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("redirect: %v %v", resp, err)
		}
		resp.Body.Close()
		log.mu.Lock()
		seen := log.seen
		log.mu.Unlock()
		if len(seen) != 2 || !strings.Contains(seen[0], "auth=Basic") || strings.Contains(seen[1], "auth=Basic") {
			t.Errorf("requests seen %q: want the credentials on the first host's request only", seen)
		}
		c.CloseIdleConnections()
	}
}

// --cookies: a Netscape cookies.txt's cookies go to their domain only, also
// over plain http (through h1), expired ones not at all.
func TestCookiesFile(t *testing.T) {
	var log authLog
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.add(r)
	}))
	defer srv.Close()
	port := srv.URL[strings.LastIndex(srv.URL, ":")+1:]
	far := time.Now().Add(time.Hour).Unix()
	jar, err := LoadCookies(strings.NewReader("# Netscape HTTP Cookie File\n" +
		"127.0.0.1\tFALSE\t/\tFALSE\t0\tsession\tone\n" +
		"#HttpOnly_127.0.0.1\tFALSE\t/data\tFALSE\t" + itoa(far) + "\ttoken\ttwo\n" +
		"127.0.0.1\tFALSE\t/\tFALSE\t1000\texpired\tzzz\n" +
		"localhost\tFALSE\t/\tFALSE\t0\tlocal\tthree\n"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(Options{Jobs: 2, ConnectTimeout: testutil.Patience(t), Jar: jar,
		proxy: func(*url.URL) (*url.URL, error) { return nil, nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	// One header map for every request, as the engine passes it: the jar's
	// cookies must not stick to it.
	shared := http.Header{"User-Agent": {"haul-test"}}
	for _, u := range []string{"http://127.0.0.1:" + port + "/data/f", "http://127.0.0.1:" + port + "/other"} {
		req, err := http.NewRequest(http.MethodGet, u, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header = shared
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if len(shared) != 1 {
		t.Errorf("the shared header was changed: %v", shared)
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	if len(log.seen) != 2 || !strings.HasSuffix(log.seen[0], "cookie=session=one; token=two") && !strings.HasSuffix(log.seen[0], "cookie=token=two; session=one") ||
		!strings.HasSuffix(log.seen[1], "cookie=session=one") {
		t.Errorf("cookies sent: %q", log.seen)
	}
	if _, err := LoadCookies(strings.NewReader("a\tb\n")); err == nil || !strings.Contains(err.Error(), "cookies line 1") {
		t.Errorf("a bad line: %v", err)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
