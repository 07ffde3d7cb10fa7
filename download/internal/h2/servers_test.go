//go:build linux

package h2

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The real-server tests run the client against the HTTP/2 servers users
// meet (nginx, Caddy, h2o when installed), configured to be awkward: a stream
// limit below Streams, a GOAWAY every few dozen requests, small frames. Every
// body must be its file's, over HTTP/2.

// selfSigned writes a certificate for 127.0.0.1 and its key into dir.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// realFiles writes n files of varied sizes (0 to 200 KiB) and a 12 MiB one
// (many windows' worth) under www, and returns their paths.
func realFiles(t *testing.T, www string, n int) []string {
	t.Helper()
	var paths []string
	for i := range n {
		paths = append(paths, fmt.Sprintf("/d%d/f%d.bin", i%10, i))
	}
	paths = append(paths, "/big.bin")
	for _, p := range paths {
		b := content(p)
		if p == "/big.bin" {
			b = bytes.Repeat(content(p), 12<<20/max(len(b), 1)+1)[:12<<20]
		} else {
			b = bytes.Repeat(b, 1+len(p)%3)
		}
		f := filepath.Join(www, filepath.FromSlash(p))
		os.MkdirAll(filepath.Dir(f), 0o755)
		if err := os.WriteFile(f, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return paths
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startServer runs cmd in a process group of its own until the test ends,
// and waits until port accepts connections.
func startServer(t *testing.T, cmd *exec.Cmd, work string, port int) {
	t.Helper()
	logf, _ := os.Create(filepath.Join(work, "log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(exited) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(3 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	for deadline := time.Now().Add(15 * time.Second); ; {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(work, "log"))
			t.Fatalf("%s exited: %s", cmd.Path, log)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not listen on %d", cmd.Path, port)
		}
	}
}

func TestRealServers(t *testing.T) {
	for _, srv := range []struct {
		name  string
		start func(t *testing.T, www, work, cert, key string, port int)
	}{
		{"nginx", startNginx},
		{"caddy", startCaddy},
		{"h2o", startH2O},
	} {
		t.Run(srv.name, func(t *testing.T) {
			if _, err := exec.LookPath(srv.name); err != nil {
				if os.Getenv("CI") != "" {
					t.Fatalf("%s is not installed (.ci/run installs it)", srv.name)
				}
				t.Skipf("%s is not installed", srv.name)
			}
			t.Parallel()
			base := t.TempDir()
			os.Chmod(base, 0o755)
			www, work := filepath.Join(base, "www"), filepath.Join(base, "work")
			os.MkdirAll(www, 0o755)
			os.MkdirAll(work, 0o755)
			cert, key, pool := selfSigned(t, work)
			paths := realFiles(t, www, 300)
			port := freePort(t)
			srv.start(t, www, work, cert, key, port)
			c := New(Options{TLSConfig: &tls.Config{RootCAs: pool}, Streams: 16, MaxConnsPerHost: 2})
			defer c.CloseIdleConnections()
			base = fmt.Sprintf("https://127.0.0.1:%d", port)
			var wg sync.WaitGroup
			work1 := make(chan string)
			var mu sync.Mutex
			var failures []string
			for range 32 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for p := range work1 {
						if err := fetchCheck(c, base, p, filepath.Join(www, filepath.FromSlash(p))); err != nil {
							mu.Lock()
							failures = append(failures, err.Error())
							mu.Unlock()
						}
					}
				}()
			}
			for range 2 { // twice: the second round on connections kept
				for _, p := range paths {
					work1 <- p
				}
			}
			close(work1)
			wg.Wait()
			if len(failures) > 0 {
				t.Errorf("%d of %d failed, first: %s", len(failures), 2*len(paths), failures[0])
			}
		})
	}
}

func fetchCheck(c *Client, base, path, file string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.RoundTrip(req)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s: body: %w", path, err)
	}
	want, _ := os.ReadFile(file)
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 || !bytes.Equal(got, want) {
		return fmt.Errorf("%s: %s %s, %d bytes, want 200 over HTTP/2 and its %d", path, resp.Proto, resp.Status, len(got), len(want))
	}
	return nil
}

// nginx: 4 streams per connection (below Streams), a GOAWAY after 40
// requests, 4 KiB DATA frames.
func startNginx(t *testing.T, www, work, cert, key string, port int) {
	conf := fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 256; }
http {
	access_log off;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	http2_max_concurrent_streams 4;
	keepalive_requests 40;
	http2_chunk_size 4k;
	server {
		listen 127.0.0.1:%[2]d ssl http2;
		ssl_certificate %[4]s;
		ssl_certificate_key %[5]s;
		root %[3]s;
	}
}
`, work, port, www, cert, key)
	p := filepath.Join(work, "nginx.conf")
	os.WriteFile(p, []byte(conf), 0o644)
	startServer(t, exec.Command("nginx", "-p", work, "-c", p), work, port)
}

func startCaddy(t *testing.T, www, work, cert, key string, port int) {
	conf := fmt.Sprintf(`{
	admin off
	auto_https off
	storage file_system %[1]s/data
}
https://127.0.0.1:%[2]d {
	tls %[4]s %[5]s
	root * %[3]s
	file_server
}
`, work, port, www, cert, key)
	p := filepath.Join(work, "Caddyfile")
	os.WriteFile(p, []byte(conf), 0o644)
	cmd := exec.Command("caddy", "run", "--config", p, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "HOME="+work, "XDG_DATA_HOME="+work, "XDG_CONFIG_HOME="+work)
	startServer(t, cmd, work, port)
}

func startH2O(t *testing.T, www, work, cert, key string, port int) {
	conf := fmt.Sprintf(`listen:
  host: 127.0.0.1
  port: %[2]d
  ssl:
    certificate-file: %[4]s
    key-file: %[5]s
http2-max-concurrent-requests-per-connection: 4
user: root
error-log: %[1]s/error.log
hosts:
  default:
    paths:
      /:
        file.dir: %[3]s
`, work, port, www, cert, key)
	p := filepath.Join(work, "h2o.conf")
	os.WriteFile(p, []byte(conf), 0o644)
	startServer(t, exec.Command("h2o", "-c", p), work, port)
}
