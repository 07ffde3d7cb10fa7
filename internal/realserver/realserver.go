// Package realserver starts the web servers users meet (nginx, Apache,
// lighttpd, Caddy, h2o, python3 -m http.server) for tests: one process each,
// on 127.0.0.1, serving a directory, over TLS if asked, stopped when the
// test ends. Only tests import it.
//
// A server whose program is not installed skips the test, naming the Debian
// package, unless CI is set: CI installs them all, and there a missing one
// fails the test.
package realserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/haul/haul/internal/testutil"
)

// Kind is a server program.
type Kind string

// The servers. Options.Config is written where each one's documentation
// says.
const (
	// Nginx runs as one process (master_process off). Config goes in its
	// http block.
	Nginx Kind = "nginx"
	// Apache runs as one process (-X), as www-data when the test runs as
	// root (it refuses root): Options.Dir must be readable by www-data
	// (TempDir is). It serves no TLS. Config goes at the top level (server
	// config).
	Apache Kind = "apache2"
	// Lighttpd serves no TLS. Config is appended to its configuration.
	Lighttpd Kind = "lighttpd"
	// Caddy runs without its admin endpoint, automatic HTTPS or HTTP/3.
	// Config goes in the site block.
	Caddy Kind = "caddy"
	// H2O offers HTTP/2 with TLS. Config is YAML at the top level.
	H2O Kind = "h2o"
	// Python is python3 -m http.server: it always lists directories, and
	// serves a directory's index.html in its place whatever Options.Listing
	// says; it takes no TLS and no Config.
	Python Kind = "python3"
)

// Options configures a server.
type Options struct {
	// Dir is the directory served at "/".
	Dir string
	// Listing lists directories (nginx's autoindex, Apache's mod_autoindex,
	// lighttpd's mod_dirlisting, Caddy's browse, h2o's file.dirlisting),
	// even one that holds an index.html: it is served as a file, not in
	// place of the listing (but by Python).
	Listing bool
	// TLS serves https with a new self-signed certificate for 127.0.0.1
	// (Server.Cert), offering HTTP/2 by ALPN (nginx, Caddy, h2o; Apache,
	// lighttpd and Python take no TLS).
	TLS bool
	// Config is added to the server's configuration, in its own syntax, at
	// the place its Kind's documentation gives.
	Config string
}

// Server is a running server.
type Server struct {
	Kind Kind
	URL  string // scheme://127.0.0.1:PORT, without a trailing "/"
	Port int
	Cert testutil.Cert // its certificate, with Options.TLS
	Work string        // its configuration and logs
	pid  int
}

// attempts is how many ports a server is started on before the test fails:
// another process may take the port picked before the server binds it, and
// the server then exits.
const attempts = 5

// pickPort returns a port of 127.0.0.1 free a moment ago (tests replace it).
var pickPort = testutil.FreePort

// kind is what Start needs to know of a Kind.
type kind struct {
	bin, pkg string
	tls      bool
	config   bool // takes Options.Config
	// command writes the configuration into s.Work for s.Port and returns
	// the command that runs the server in the foreground.
	command func(t testing.TB, s *Server, o Options, bin string, tls tlsFiles) *exec.Cmd
}

type tlsFiles struct{ cert, key string }

var kinds = map[Kind]kind{
	Nginx:    {bin: "nginx", pkg: "nginx-light", tls: true, config: true, command: nginx},
	Apache:   {bin: "apache2", pkg: "apache2", config: true, command: apache},
	Lighttpd: {bin: "lighttpd", pkg: "lighttpd", config: true, command: lighttpd},
	Caddy:    {bin: "caddy", pkg: "caddy", tls: true, config: true, command: caddy},
	H2O:      {bin: "h2o", pkg: "h2o", tls: true, config: true, command: h2o},
	Python:   {bin: "python3", pkg: "python3", command: python},
}

// Start starts a server of kind k serving o.Dir on a port of 127.0.0.1 and
// returns once it answers an HTTP request. It is stopped, and its work
// directory removed, when t ends. A server that exits before it answers is
// started again on another port (the one picked was taken meanwhile); one
// that neither answers nor exits within a couple of minutes fails t, with
// its logs.
func Start(t testing.TB, k Kind, o Options) *Server {
	t.Helper()
	spec, ok := kinds[k]
	if !ok {
		t.Fatalf("realserver: no server %q", k)
	}
	bin := lookBin(spec.bin)
	if bin == "" {
		missing(t, spec.bin+" is not installed (Debian package "+spec.pkg+")")
	}
	switch {
	case o.Dir == "":
		t.Fatalf("realserver: %s: no Options.Dir to serve", k)
	case o.TLS && !spec.tls:
		t.Fatalf("realserver: %s is started without TLS here", k)
	case o.Config != "" && !spec.config:
		t.Fatalf("realserver: %s takes no configuration", k)
	}
	s := &Server{Kind: k, Work: workDir(t, k)}
	var files tlsFiles
	scheme := "http"
	if o.TLS {
		s.Cert = testutil.SelfSigned(t)
		files.cert, files.key = s.Cert.WriteFiles(t, s.Work)
		scheme = "https"
	}
	for try := 1; ; try++ {
		port := pickPort(t)
		s.Port, s.URL = port, scheme+"://127.0.0.1:"+strconv.Itoa(port)
		p, err := start(spec.command(t, s, o, bin, files), s.Work)
		if err != nil {
			t.Fatalf("realserver: starting %s: %v", k, err)
		}
		err = p.waitReady(s, testutil.Patience(t))
		if err == nil {
			s.pid = p.pid
			t.Cleanup(p.stop)
			return s
		}
		p.stop()
		if !errors.Is(err, errExited) || try == attempts {
			t.Fatalf("realserver: %s on port %d: %v (attempt %d of %d)\n%s", k, port, err, try, attempts, s.logs())
		}
		t.Logf("realserver: %s on port %d: %v; starting it on another port", k, port, err)
	}
}

// missing skips t for a server that is not installed, or fails it under CI,
// which installs them all (.ci/run).
func missing(t testing.TB, what string) {
	t.Helper()
	if skip, msg := missingVerdict(what, os.Getenv("CI")); skip {
		t.Skip(msg)
	} else {
		t.Fatal(msg)
	}
}

func missingVerdict(what, ci string) (skip bool, msg string) {
	if ci != "" && ci != "false" && ci != "0" {
		return false, "realserver: " + what + ", and CI is set: .ci/run installs it"
	}
	return true, "realserver: " + what + ": skipped"
}

// lookBin finds a server's program in PATH or in the sbin directories Debian
// puts them in (not in a user's PATH); "" if there is none.
func lookBin(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, d := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// TempDir returns a new directory that every server can read (Apache's
// www-data too: t.TempDir's are its owner's only), removed when t ends.
func TempDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "realserver-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// workDir makes the server's work directory, removed when t ends (after the
// server stops: cleanups run last registered first).
func workDir(t testing.TB, k Kind) string {
	t.Helper()
	d := TempDir(t)
	w := filepath.Join(d, string(k))
	if err := os.Mkdir(w, 0o755); err != nil {
		t.Fatal(err)
	}
	return w
}

// writeConf writes a configuration file into the work directory.
func writeConf(t testing.TB, s *Server, name, conf string) string {
	t.Helper()
	p := filepath.Join(s.Work, name)
	if err := os.WriteFile(p, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// logs is what the server wrote to its output and error logs, for a failure.
func (s *Server) logs() string {
	var b strings.Builder
	for _, name := range []string{"log", "error.log"} {
		data, err := os.ReadFile(filepath.Join(s.Work, name))
		if err != nil || len(data) == 0 {
			continue
		}
		if len(data) > 8<<10 {
			data = data[len(data)-8<<10:]
		}
		fmt.Fprintf(&b, "--- %s:\n%s\n", name, data)
	}
	return b.String()
}

// proc is a server's process, in a process group of its own (a server may
// fork helpers: h2o does).
type proc struct {
	pid    int
	exited chan struct{}
	err    error // Wait's, once exited is closed
}

var errExited = errors.New("exited before answering")

func start(cmd *exec.Cmd, work string) (*proc, error) {
	logf, err := os.Create(filepath.Join(work, "log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = work
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	dieWithParent(cmd.SysProcAttr)
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	p := &proc{pid: cmd.Process.Pid, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	return p, nil
}

// stop kills the process group, at once: a graceful stop waits for the
// clients' idle connections (h2o's does), and nothing of a server's state
// outlives its work directory. The group's leader is not reaped before it
// has exited, so its id names no other group meanwhile.
func (p *proc) stop() {
	syscall.Kill(-p.pid, syscall.SIGKILL)
	<-p.exited
}

// waitReady polls until the server's own process listens on s.Port (where
// that can be seen: another process that took the port must not pass for
// it) and answers an HTTP request there; errExited if it exits first. It
// gives up after patience (the test's time, on a loaded machine a launch may
// take long).
func (p *proc) waitReady(s *Server, patience time.Duration) error {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.Cert.Pool}, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return p.poll(patience, "no answer at "+s.URL, func() bool {
		return listens(p.pid, s.Port) && answers(client, s.URL+"/")
	})
}

// poll calls ready until it reports true, backing off to 50 ms between calls;
// an error wrapping errExited if the process exits first, one saying what
// (notYet) after patience.
func (p *proc) poll(patience time.Duration, notYet string, ready func() bool) error {
	deadline := time.Now().Add(patience)
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		select {
		case <-p.exited:
			return fmt.Errorf("%w: %v", errExited, p.err)
		default:
		}
		if ready() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s after %v", notYet, patience)
		}
		select {
		case <-p.exited:
		case <-time.After(wait):
		}
	}
}

// answers reports whether an HTTP request to u gets a response, whatever
// its status.
func answers(c *http.Client, u string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return false
	}
	resp, err := c.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return true
}
