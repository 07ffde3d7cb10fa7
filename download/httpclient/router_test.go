package httpclient

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
)

// newHTTP1Backend starts an https server that offers only HTTP/1.1 in ALPN,
// counting the connections it accepts.
func newHTTP1Backend(t *testing.T, h http.HandlerFunc) (*backend, *atomic.Int32) {
	t.Helper()
	b := &backend{}
	var conns atomic.Int32
	b.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.add(r.Proto + " " + r.URL.RequestURI())
		h(w, r)
	}))
	b.Config.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
	b.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	b.StartTLS()
	t.Cleanup(b.Close)
	return b, &conns
}

// A redirect from a host that speaks HTTP/2 to one that speaks only
// HTTP/1.1 goes on over HTTP/1.1: h2 hands the connection it opened to h1,
// which makes the hop and the host's next requests on it.
func TestRedirectFromHTTP2HostToHTTP1Host(t *testing.T) {
	old, conns := newHTTP1Backend(t, serveOK)
	secure := newBackend(t, true, redirector(func() string { return old.URL }))
	c, ll := newTestClient(t, Options{Jobs: 4}, nil)
	for _, path := range []string{"/to/f", "/to/g"} {
		_, body, err := get(t, c, context.Background(), secure.URL+path)
		if want := "ok /" + path[len(path)-1:]; err != nil || body != want {
			t.Fatalf("%s: body %q, error %v; want %q", path, body, err, want)
		}
	}
	if got, want := secure.get(), []string{"HTTP/2.0 /to/f", "HTTP/2.0 /to/g"}; !eq(got, want) {
		t.Errorf("HTTP/2 origin saw %q, want %q", got, want)
	}
	if got, want := old.get(), []string{"HTTP/1.1 /f", "HTTP/1.1 /g"}; !eq(got, want) {
		t.Errorf("HTTP/1.1 origin saw %q, want %q", got, want)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("HTTP/1.1 origin got %d connections, want 1 (the one that learnt its protocol, kept)", n)
	}
	if got := ll.get(); len(got) != 0 {
		t.Errorf("the router gave h1 %q: https goes to h2, which hands on what it cannot make", got)
	}
}

// Redirects are followed as net/http follows them, over h1 (http) and h2
// (https) alike: a relative Location, 302 and 303; the response names the
// last request; a 3xx without Location is the response; a loop stops after
// 10 with an error naming the Location.
func TestRedirectsFollowed(t *testing.T) {
	h := func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/a/start":
			w.Header().Set("Location", "next") // relative: /a/next
			w.WriteHeader(http.StatusFound)
			io.WriteString(w, "redirect body")
		case "/a/next":
			http.Redirect(w, r, "/final?q=1", http.StatusSeeOther)
		case "/final":
			io.WriteString(w, "final "+r.URL.RawQuery+" auth="+r.Header.Get("Authorization")+" ref="+r.Header.Get("Referer"))
		case "/loop":
			http.Redirect(w, r, "/loop", http.StatusTemporaryRedirect)
		case "/nolocation":
			w.WriteHeader(http.StatusMovedPermanently)
			io.WriteString(w, "stay")
		}
	}
	for _, https := range []bool{false, true} {
		t.Run(map[bool]string{false: "HTTP1", true: "HTTP2"}[https], func(t *testing.T) {
			b := newBackend(t, https, h)
			c, _ := newTestClient(t, Options{Jobs: 4}, nil)
			resp, body, err := get(t, c, context.Background(), b.URL+"/a/start", "Authorization: secret")
			// Same origin: the credentials follow; no Referer but one given.
			if want := "final q=1 auth=secret ref="; err != nil || body != want || resp.Request.URL.Path != "/final" {
				t.Errorf("body %q, error %v, request %v; want %q from /final", body, err, resp.Request.URL, want)
			}
			wantProto := map[bool]string{false: "HTTP/1.1", true: "HTTP/2.0"}[https]
			if got, want := b.get(), []string{wantProto + " /a/start", wantProto + " /a/next", wantProto + " /final?q=1"}; !eq(got, want) {
				t.Errorf("origin saw %q, want %q", got, want)
			}
			resp, body, err = get(t, c, context.Background(), b.URL+"/nolocation")
			if err != nil || resp.StatusCode != 301 || body != "stay" {
				t.Errorf("3xx without Location: %v %q %v", resp, body, err)
			}
			resp, _, err = get(t, c, context.Background(), b.URL+"/loop")
			var ue *url.Error
			if !errors.Is(err, ErrTooManyRedirects) || !errors.As(err, &ue) || ue.URL != "/loop" || resp == nil || resp.StatusCode != 307 {
				t.Errorf("a loop: response %v, error %v", resp, err)
			}
		})
	}
}

// Credentials and cookies given for the first host are not sent to another
// host a redirect names (127.0.0.1 to localhost, same port); other fields
// are.
func TestRedirectToOtherHostDropsCredentials(t *testing.T) {
	for _, https := range []bool{false, true} {
		t.Run(map[bool]string{false: "HTTP1", true: "HTTP2"}[https], func(t *testing.T) {
			var got atomic.Value
			other := newBackend(t, https, func(w http.ResponseWriter, r *http.Request) {
				got.Store(fmt.Sprintf("auth=%q cookie=%q x=%q", r.Header.Get("Authorization"), r.Header.Get("Cookie"), r.Header.Get("X-Keep")))
			})
			target := strings.Replace(other.URL, "127.0.0.1", "localhost", 1)
			first := newBackend(t, https, func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, target+"/x", http.StatusMovedPermanently)
			})
			c, _ := newTestClient(t, Options{Jobs: 4, Insecure: true}, nil) // the test certificate does not name localhost
			if _, _, err := get(t, c, context.Background(), first.URL, "Authorization: Bearer t", "Cookie: a=b", "X-Keep: yes"); err != nil {
				t.Fatal(err)
			}
			if want := `auth="" cookie="" x="yes"`; got.Load() != want {
				t.Errorf("other host saw %v, want %s", got.Load(), want)
			}
		})
	}
}

// A cookie jar's cookies go on requests made by h1 (http) and h2 (https),
// on redirect hops too, with the cookies the first response set; the
// header the caller shares among its requests is left as it was.
func TestCookieJarOverH1AndH2(t *testing.T) {
	h := func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/set" {
			http.SetCookie(w, &http.Cookie{Name: "set", Value: "1", Path: "/"})
			http.Redirect(w, r, "/check", http.StatusFound)
			return
		}
		io.WriteString(w, "cookie="+r.Header.Get("Cookie"))
	}
	plain, secure := newBackend(t, false, h), newBackend(t, true, h)
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []*backend{plain, secure} {
		u, _ := url.Parse(b.URL)
		jar.SetCookies(u, []*http.Cookie{{Name: "jar", Value: "x"}})
	}
	c, ll := newTestClient(t, Options{Jobs: 4, Jar: jar}, nil)
	shared := http.Header{"User-Agent": {"haul-test"}}
	for _, b := range []*backend{plain, secure} {
		req, err := http.NewRequest(http.MethodGet, b.URL+"/set", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header = shared
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if got := string(body); got != "cookie=jar=x; set=1" && got != "cookie=set=1; jar=x" {
			t.Errorf("%s: the redirect's hop got %q, want the jar's cookie and the one set", b.URL, got)
		}
	}
	if len(shared) != 1 {
		t.Errorf("the shared header was changed: %v", shared)
	}
	if got, want := ll.get(), []string{plain.URL + "/set", plain.URL + "/check"}; !eq(got, want) {
		t.Errorf("h1 was given %q, want %q", got, want)
	}
	if got, want := secure.get(), []string{"HTTP/2.0 /set", "HTTP/2.0 /check"}; !eq(got, want) {
		t.Errorf("https origin saw %q, want %q (h2)", got, want)
	}
}

// An error is a *url.Error naming the URL, its password masked, whichever
// client made the request.
func TestErrorsNameTheURL(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			bufio.NewReader(c).ReadString('\n')
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Le")
			c.Close()
		}
	}()
	c, ll := newTestClient(t, Options{Jobs: 4}, nil)
	u := "http://user:pw@" + ln.Addr().String() + "/f"
	_, _, err = get(t, c, context.Background(), u)
	var ue *url.Error
	if !errors.As(err, &ue) || ue.Op != "Get" || ue.URL != "http://user:***@"+ln.Addr().String()+"/f" {
		t.Errorf("error %v (%#v), want a *url.Error naming the URL without its password", err, ue)
	}
	if len(ll.get()) != 1 {
		t.Errorf("h1 was given %q", ll.get())
	}
}

// A piece of a split file (WithPiece) over https goes over HTTP/1.1 through
// h1, on a connection of its own, also to a server that speaks HTTP/2.
func TestPieceOverHTTP1(t *testing.T) {
	secure := newBackend(t, true, serveOK)
	c, ll := newTestClient(t, Options{Jobs: 4}, nil)
	if _, body, err := get(t, c, WithPiece(context.Background()), secure.URL+"/p"); err != nil || body != "ok /p" {
		t.Fatalf("body %q, error %v", body, err)
	}
	if got, want := secure.get(), []string{"HTTP/1.1 /p"}; !eq(got, want) {
		t.Errorf("origin saw %q, want %q", got, want)
	}
	if got, want := ll.get(), []string{secure.URL + "/p"}; !eq(got, want) {
		t.Errorf("h1 was given %q, want %q", got, want)
	}
}

// A ClientTrace on the request learns, as the connection is got, the
// protocol of the connection each client uses: h2's speaks HTTP/2, the one
// h2 handed to h1 HTTP/1.1, net/http's through a proxy's tunnel HTTP/2.
func TestTraceTellsTheProtocol(t *testing.T) {
	secure := newBackend(t, true, serveOK)
	old, _ := newHTTP1Backend(t, serveOK)
	plain := newBackend(t, false, serveOK)
	for _, tc := range []struct {
		name, url string
		proxied   bool
		want      string
	}{
		{"H2", secure.URL + "/f", false, "h2"},
		{"H2ToH1", old.URL + "/f", false, "http/1.1"},
		{"H1", plain.URL + "/f", false, "not TLS"},
		{"NetHTTPViaProxy", secure.URL + "/f", true, "h2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newFakeProxy(t)
			var proxied []string
			if tc.proxied {
				proxied = []string{"https"}
			}
			c, _ := newTestClient(t, Options{Jobs: 4}, p, proxied...)
			var got []string
			ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{GotConn: func(ci httptrace.GotConnInfo) {
				if conn, ok := ci.Conn.(*tls.Conn); ok {
					got = append(got, conn.ConnectionState().NegotiatedProtocol)
				} else {
					got = append(got, "not TLS")
				}
			}})
			if _, _, err := get(t, c, ctx, tc.url); err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || got[0] != tc.want {
				t.Errorf("GotConn told %q, want %q", got, tc.want)
			}
			if tc.proxied && len(p.get()) != 1 {
				t.Errorf("proxy saw %q", p.get())
			}
		})
	}
}

// With NetHTTP every request goes through net/http's Transport (HTTP/2 over
// TLS), under the same redirect policy.
func TestNetHTTP(t *testing.T) {
	secure := newBackend(t, true, serveOK)
	plain := newBackend(t, false, redirector(func() string { return secure.URL }))
	c, ll := newTestClient(t, Options{Jobs: 4, NetHTTP: true}, nil)
	hops := 0
	ctx := WithHop(context.Background(), func() { hops++ })
	if _, body, err := get(t, c, ctx, plain.URL+"/to/f", "Authorization: Bearer t"); err != nil || body != "ok /f" {
		t.Fatalf("body %q, error %v", body, err)
	}
	if got, want := plain.get(), []string{"HTTP/1.1 /to/f"}; !eq(got, want) {
		t.Errorf("http origin saw %q, want %q", got, want)
	}
	if got, want := secure.get(), []string{"HTTP/2.0 /f"}; !eq(got, want) {
		t.Errorf("https origin saw %q, want %q", got, want)
	}
	if _, ok := c.hc.Transport.(*http.Transport); !ok || len(ll.get()) != 0 || hops != 1 {
		t.Errorf("transport %T, h1 given %q, %d hops; want net/http's alone, 1 hop", c.hc.Transport, ll.get(), hops)
	}
}
