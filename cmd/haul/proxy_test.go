package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/haul/haul/download/downloadtest"
	"github.com/haul/haul/internal/realserver"
	"github.com/haul/haul/internal/testutil"
)

// noProxyEnv keeps the test's own NO_PROXY, if any, from sending a loopback
// origin around the proxy a test names.
var noProxyEnv = []string{"NO_PROXY=", "no_proxy="}

// --proxy socks5:// and socks5h:// with a login take every request through
// a real SOCKS5 server (microsocks): plain http, and https over HTTP/2 through
// the proxy. Every file is right, the proxy made the connections, and without
// the login, or with the proxy stopped, nothing is fetched.
func TestE2EProxySOCKS5(t *testing.T) {
	t.Parallel()
	proxy := realserver.StartSOCKS(t, realserver.SOCKSOptions{User: "haul", Password: "pw"})
	for _, tc := range []struct {
		name, scheme string
		tls          bool
	}{
		{"Socks5HTTP", "socks5", false},
		{"Socks5HTTP2", "socks5", true},
		{"Socks5hHTTP", "socks5h", false},
		{"Socks5hHTTP2", "socks5h", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var srv *downloadtest.Server
			args := []string{"-q", "--retries", "0", "-j", "2", "--proxy", proxy.URL(tc.scheme, "haul", "pw")}
			wantProto := "HTTP/1.1"
			if tc.tls {
				srv = downloadtest.New(t, downloadtest.HTTP2())
				args = append(args, "--cacert", srv.CAFile(t))
				wantProto = "HTTP/2.0"
			} else {
				srv = downloadtest.New(t)
			}
			want := map[string][]byte{}
			var urls []string
			for i := range 6 {
				body := testutil.Payload(uint64(i), 10<<(2*i)) // 10 B to 10 MiB
				path := fmt.Sprintf("/d/f%d", i)
				urls = append(urls, srv.Add(path, body))
				want[hostDir(srv)+path] = body
			}
			dir := t.TempDir()
			before := proxy.Connections()
			r := runHaulEnv(t, noProxyEnv, nil, append(append(args, "-d", dir), urls...)...)
			wantCode(t, r, exitOK)
			checkFiles(t, dir, want)
			for i := range 6 {
				for _, req := range srv.Log(fmt.Sprintf("/d/f%d", i)) {
					if req.Proto != wantProto {
						t.Errorf("%s came over %s, want %s", req.Path, req.Proto, wantProto)
					}
				}
			}
			if n := proxy.Connections() - before; n < 1 || n > 2 {
				t.Errorf("the proxy made %d connections, want 1 or 2 (-j 2)\n%s", n, proxy.Log())
			}
			// Without the login the proxy lets nothing through.
			r = runHaulEnv(t, noProxyEnv, nil, "-q", "--retries", "0", "--proxy", proxy.URL(tc.scheme, "", ""),
				"-d", t.TempDir(), srv.Add("/refused", []byte("x")))
			wantCode(t, r, exitFailed)
			if n := srv.Requests("/refused"); n != 0 {
				t.Errorf("the origin was asked /refused %d times through a proxy that refused the client", n)
			}
		})
	}
	srv := downloadtest.New(t)
	u := srv.Add("/after", []byte("after"))
	proxy.Stop()
	r := runHaulEnv(t, noProxyEnv, nil, "-q", "--retries", "0", "--proxy", proxy.URL("socks5", "haul", "pw"), "-d", t.TempDir(), u)
	wantCode(t, r, exitFailed)
	if n := srv.Requests("/after"); n != 0 {
		t.Errorf("the origin was asked %d times with the proxy stopped", n)
	}
	// --proxy "" is no proxy: direct.
	r = runHaulEnv(t, noProxyEnv, nil, "-q", "--retries", "0", "--proxy", "", "-d", t.TempDir(), u)
	wantCode(t, r, exitOK)
}

// A bad --proxy, or a bad proxy variable that applies, is a usage error
// naming it.
func TestE2EProxyUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"Scheme", nil, []string{"--proxy", "ftp://p.example"}, `--proxy "ftp://p.example": unsupported proxy scheme "ftp"`},
		{"NoHost", nil, []string{"--proxy", "socks5h://"}, `--proxy "socks5h://": no host`},
		{"Malformed", nil, []string{"--proxy", "http://[::1"}, "--proxy: not a proxy URL"},
		{"AllProxy", []string{"ALL_PROXY=wss://p.example"}, nil, `ALL_PROXY in the environment "wss://p.example": unsupported proxy scheme`},
		{"HTTPSProxy", []string{"HTTPS_PROXY=socks5://:1080"}, nil, `HTTPS_PROXY in the environment "socks5://:1080": no host`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := append([]string{"http_proxy=", "HTTP_PROXY=", "https_proxy=", "HTTPS_PROXY=", "all_proxy=", "ALL_PROXY="}, tc.env...)
			args := append(tc.args, "-d", filepath.Join(t.TempDir(), "out"), "http://127.0.0.1:1/x")
			r := runHaulEnv(t, env, nil, args...)
			wantCode(t, r, exitUsage)
			if !strings.Contains(r.stderr, tc.want) {
				t.Errorf("stderr %q, want %q in it", r.stderr, tc.want)
			}
		})
	}
}
