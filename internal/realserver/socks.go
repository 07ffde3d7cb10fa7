package realserver

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/haul/haul/internal/testutil"
)

// SOCKS is a SOCKS5 proxy users meet, microsocks (Debian package
// microsocks), running on 127.0.0.1: CONNECT only, host names resolved with
// the system's resolver (getaddrinfo, its first answer), username/password
// authentication (RFC 1929) if asked. It writes a line to its log for each
// connection it makes for a client.
type SOCKS struct {
	Addr string // 127.0.0.1:PORT
	Port int
	Work string // its log
	p    *proc
}

// SOCKSOptions configures StartSOCKS.
type SOCKSOptions struct {
	// User, if set, and Password are required of every client.
	User, Password string
}

// StartSOCKS starts microsocks on a port of 127.0.0.1 and returns once it
// listens there. It is stopped when t ends. A missing microsocks skips t,
// or fails it under CI, which installs it (.ci/run).
func StartSOCKS(t testing.TB, o SOCKSOptions) *SOCKS {
	t.Helper()
	bin := lookBin("microsocks")
	if bin == "" {
		missing(t, "microsocks is not installed (Debian package microsocks)")
	}
	s := &SOCKS{Work: workDir(t, "microsocks")}
	for try := 1; ; try++ {
		port := pickPort(t)
		s.Port, s.Addr = port, net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		args := []string{"-i", "127.0.0.1", "-p", strconv.Itoa(port)}
		if o.User != "" {
			args = append(args, "-u", o.User, "-P", o.Password)
		}
		p, err := start(exec.Command(bin, args...), s.Work)
		if err != nil {
			t.Fatalf("realserver: starting microsocks: %v", err)
		}
		err = p.waitListening(port, testutil.Patience(t))
		if err == nil {
			s.p = p
			t.Cleanup(p.stop)
			return s
		}
		p.stop()
		if !errors.Is(err, errExited) || try == attempts {
			t.Fatalf("realserver: microsocks on port %d: %v (attempt %d of %d)\n%s", port, err, try, attempts, s.Log())
		}
		t.Logf("realserver: microsocks on port %d: %v; starting it on another port", port, err)
	}
}

// URL is the proxy's URL with scheme (socks5 or socks5h) and, unless user
// is "", user:password.
func (s *SOCKS) URL(scheme, user, password string) string {
	if user == "" {
		return scheme + "://" + s.Addr
	}
	return scheme + "://" + user + ":" + password + "@" + s.Addr
}

// Log is what the proxy wrote to its output.
func (s *SOCKS) Log() string {
	b, err := os.ReadFile(filepath.Join(s.Work, "log"))
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return string(b)
}

// Connections is how many connections the proxy made for its clients: the
// lines of its log that say so ("client[N] ADDR: connected to ADDR:PORT"),
// each written before the client is told its connection is open.
func (s *SOCKS) Connections() int { return strings.Count(s.Log(), ": connected to ") }

// Stop kills the proxy: the connections through it end, and new ones are
// refused.
func (s *SOCKS) Stop() { s.p.stop() }

// waitListening polls until the process listens on port of 127.0.0.1 and
// takes a connection there; an error wrapping errExited if it exits first,
// another after patience.
func (p *proc) waitListening(port int, patience time.Duration) error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	return p.poll(patience, "not listening on "+addr, func() bool {
		if !listens(p.pid, port) {
			return false
		}
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}
