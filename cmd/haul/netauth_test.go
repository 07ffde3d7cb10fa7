package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// --netrc / --netrc-file give a host its credentials (and only it: not the
// host a redirect names); --cookies sends a cookies.txt's cookies to their
// domain.
func TestE2ENetrcAndCookies(t *testing.T) {
	t.Parallel()
	var mu = make(chan struct{}, 1)
	var seen []string
	record := func(r *http.Request) {
		mu <- struct{}{}
		seen = append(seen, r.URL.Path+" "+r.Header.Get("Authorization")+" "+r.Header.Get("Cookie"))
		<-mu
	}
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		record(r)
		w.Write([]byte("elsewhere"))
	}))
	defer other.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		record(r)
		if r.URL.Path == "/away" {
			http.Redirect(w, r, strings.Replace(other.URL, "127.0.0.1", "localhost", 1)+"/landed", http.StatusFound)
			return
		}
		if u, p, ok := r.BasicAuth(); r.URL.Path == "/private" && (!ok || u != "alice" || p != "pw") {
			http.Error(w, "who?", http.StatusUnauthorized)
			return
		}
		if c, err := r.Cookie("session"); r.URL.Path == "/members" && (err != nil || c.Value != "xyz") {
			http.Error(w, "no session", http.StatusForbidden)
			return
		}
		w.Write([]byte("content of " + r.URL.Path))
	}))
	defer srv.Close()
	tmp := t.TempDir()
	netrc := filepath.Join(tmp, "netrc")
	cookies := filepath.Join(tmp, "cookies.txt")
	if err := os.WriteFile(netrc, []byte("machine 127.0.0.1 login alice password pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cookies, []byte("# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t0\tsession\txyz\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wantCode(t, runHaul(t, nil, "-q", "--retries", "0", "-d", filepath.Join(tmp, "none"), srv.URL+"/private"), exitFailed)
	wantCode(t, runHaul(t, nil, "-q", "--netrc-file", netrc, "-d", filepath.Join(tmp, "a"), srv.URL+"/private", srv.URL+"/away"), exitOK)
	r := runHaulEnv(t, []string{"NETRC=" + netrc}, nil, "-q", "--netrc", "-d", filepath.Join(tmp, "b"), srv.URL+"/private")
	wantCode(t, r, exitOK)
	wantCode(t, runHaul(t, nil, "-q", "--cookies", cookies, "-d", filepath.Join(tmp, "c"), srv.URL+"/members"), exitOK)
	mu <- struct{}{}
	defer func() { <-mu }()
	for _, s := range seen {
		if strings.HasPrefix(s, "/landed") && strings.Contains(s, "Basic") {
			t.Errorf("the credentials went on to the host a redirect named: %q", s)
		}
	}
	if !slicesContainsPrefix(seen, "/landed") {
		t.Errorf("the redirect was not followed: %q", seen)
	}
	wantCode(t, runHaul(t, nil, "--netrc-file", filepath.Join(tmp, "missing"), srv.URL+"/private"), exitUsage)
	if err := os.WriteFile(cookies, []byte("broken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = runHaul(t, nil, "--cookies", cookies, srv.URL+"/members")
	wantCode(t, r, exitUsage)
	if !strings.Contains(r.stderr, "cookies line 1") {
		t.Errorf("a bad cookies file: %s", r.stderr)
	}
}

func slicesContainsPrefix(ss []string, p string) bool {
	for _, s := range ss {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
