package realserver

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

// get fetches u with a client that trusts s's certificate (HTTP/2 offered).
func get(t *testing.T, s *Server, u string) (*http.Response, []byte) {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.Cert.Pool}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// Every server serves the directory it is given, lists it when asked, and
// those that take TLS serve https with HTTP/2.
func TestStartServesDir(t *testing.T) {
	dir := TempDir(t)
	want := []byte("hello, server\n")
	if err := os.WriteFile(filepath.Join(dir, "hello.txt"), want, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, k := range []Kind{Nginx, Apache, Lighttpd, Caddy, H2O, Python} {
		for _, tlsOn := range []bool{false, true} {
			if tlsOn && !kinds[k].tls {
				continue
			}
			name := string(k)
			if tlsOn {
				name += "-tls"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				s := Start(t, k, Options{Dir: dir, Listing: true, TLS: tlsOn})
				resp, body := get(t, s, s.URL+"/hello.txt")
				if resp.StatusCode != 200 || string(body) != string(want) {
					t.Errorf("/hello.txt: %s, %q", resp.Status, body)
				}
				if tlsOn && resp.ProtoMajor != 2 {
					t.Errorf("over TLS: %s, want HTTP/2", resp.Proto)
				}
				resp, body = get(t, s, s.URL+"/")
				if resp.StatusCode != 200 || !strings.Contains(string(body), "hello.txt") {
					t.Errorf("/: %s, no listing of hello.txt:\n%s", resp.Status, body)
				}
			})
		}
	}
}

// A server whose port was taken between its choice and the server's bind
// exits; it is started again on another port.
func TestStartOnAnotherPortWhenTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	port := taken.Addr().(*net.TCPAddr).Port
	real := pickPort
	defer func() { pickPort = real }()
	picks := 0
	pickPort = func(t testing.TB) int {
		if picks++; picks == 1 {
			return port
		}
		return real(t)
	}
	s := Start(t, Python, Options{Dir: TempDir(t)})
	if s.Port == port || picks != 2 {
		t.Errorf("serving on %d after %d picks; %d was taken", s.Port, picks, port)
	}
	if resp, _ := get(t, s, s.URL+"/"); resp.StatusCode != 200 {
		t.Errorf("/: %s", resp.Status)
	}
}

// The server is stopped when its test ends.
func TestStartStopsWithTest(t *testing.T) {
	var pid int
	t.Run("server", func(t *testing.T) {
		pid = Start(t, Python, Options{Dir: TempDir(t)}).pid
	})
	if pid == 0 {
		t.Skip("no server was started")
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("process %d after its test ended: %v, want gone", pid, err)
	}
}

func TestListens(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("only Linux tells which process listens")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if !listens(os.Getpid(), port) {
		t.Errorf("this process listens on %d: not seen", port)
	}
	if listens(1, port) {
		t.Errorf("process 1 seen listening on %d", port)
	}
	l.Close()
	if listens(os.Getpid(), port) {
		t.Errorf("still seen listening on %d once closed", port)
	}
}

// A missing server skips its test, but under CI, which installs them all.
func TestMissingServerFailsUnderCI(t *testing.T) {
	for _, c := range []struct {
		ci   string
		skip bool
	}{{"", true}, {"false", true}, {"0", true}, {"true", false}, {"1", false}} {
		skip, msg := missingVerdict("h2o is not installed (Debian package h2o)", c.ci)
		if skip != c.skip || !strings.Contains(msg, "Debian package h2o") {
			t.Errorf("CI=%q: skip %v (%s), want %v", c.ci, skip, msg, c.skip)
		}
	}
}
