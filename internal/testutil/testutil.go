// Package testutil holds what haul's tests share: deterministic bodies, their
// checksums, a self-signed certificate, a free port and a wait for a
// condition. Only tests import it.
package testutil

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Payload returns n pseudo-random bytes, the same for the same seed and n
// (and unrelated for another seed or another n). It does not compress.
func Payload(seed uint64, n int) []byte {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[0:], seed)
	binary.LittleEndian.PutUint64(key[8:], uint64(n))
	b := make([]byte, n)
	mrand.NewChaCha8(key).Read(b)
	return b
}

// Text returns n bytes of text-like data that compresses well, the same for
// the same seed and n.
func Text(seed uint64, n int) []byte {
	const alphabet = "haul streams URLs to disk\n"
	r := mrand.New(mrand.NewPCG(seed, uint64(n)))
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[r.IntN(len(alphabet))]
	}
	return b
}

// SHA256Hex is the lower-case hex SHA-256 of b.
func SHA256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// Cert is a self-signed certificate valid for 127.0.0.1, ::1 and localhost
// (server and client use), and the pool that trusts it.
type Cert struct {
	TLS     tls.Certificate // with Leaf set
	Pool    *x509.CertPool
	CertPEM []byte
	KeyPEM  []byte
}

// SelfSigned makes a new Cert. It is its own CA: a client that trusts Pool
// accepts it.
func SelfSigned(t testing.TB) Cert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 63))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return Cert{
		TLS:     tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf},
		Pool:    pool,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}),
	}
}

// WriteFiles writes c's certificate and key as PEM into dir (for a server
// configured by file) and returns their paths.
func (c Cert) WriteFiles(t testing.TB, dir string) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, c.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, c.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// ServerConfig is a server's TLS configuration serving c.
func (c Cert) ServerConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{c.TLS}}
}

// ClientConfig is a client's TLS configuration that trusts c.
func (c Cert) ClientConfig() *tls.Config {
	return &tls.Config{RootCAs: c.Pool}
}

// FreePort returns a TCP port of 127.0.0.1 that was free a moment ago, for a
// server that can only be told its port (an external program). Another
// process may take it before the server binds it: a caller that can listen
// itself should listen on port 0 instead, and one that cannot should start
// its server again on a new port when the bind fails.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// deadliner is *testing.T and *testing.B (go test -timeout).
type deadliner interface {
	Deadline() (time.Time, bool)
}

// WaitFor polls cond until it holds. It has no deadline of its own: a loaded
// machine may take long. When the test binary has one (go test -timeout), it
// fails the test a little before that, naming what, rather than let the
// binary be killed with no word of what was awaited.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	Until(t, func() error {
		if cond() {
			return nil
		}
		return errors.New("still waiting for " + what)
	})
}

// Until is WaitFor for a check that says what it still waits for: it polls
// check until it returns nil, and fails the test with its last error a
// little before the test binary's deadline.
func Until(t testing.TB, check func() error) {
	t.Helper()
	var stop time.Time
	if d, ok := t.(deadliner); ok {
		if dl, ok := d.Deadline(); ok {
			stop = dl.Add(-time.Until(dl) / 20)
		}
	}
	for wait := time.Millisecond; ; wait = min(2*wait, 20*time.Millisecond) {
		err := check()
		if err == nil {
			return
		}
		if !stop.IsZero() && time.Now().After(stop) {
			t.Fatalf("the test's time ran out: %v", err)
		}
		time.Sleep(wait)
	}
}

// Patience is how long a test may wait for something that must happen: until
// a little before the test binary's deadline (go test -timeout), or ten
// minutes without one. A wait bounded by it fails only a test that would
// otherwise hang.
func Patience(t testing.TB) time.Duration {
	if d, ok := t.(deadliner); ok {
		if dl, ok := d.Deadline(); ok {
			return time.Until(dl) * 19 / 20
		}
	}
	return 10 * time.Minute
}

var trackSeq atomic.Int64

// TrackGoroutines labels the calling goroutine, the test's own, with a pprof
// label unique to this call, which every goroutine it starts from then on
// inherits, and those they start. alive returns the stacks of the labelled
// goroutines still running, but the test's own: what the test started and
// left behind, told apart from what tests running beside it start (a scan of
// all goroutines cannot). A goroutine the test merely woke (a pool's worker
// started earlier) is not counted.
func TrackGoroutines(t testing.TB) (alive func() []string) {
	t.Helper()
	label := fmt.Sprintf("%s#%d", t.Name(), trackSeq.Add(1))
	pprof.SetGoroutineLabels(pprof.WithLabels(context.Background(), pprof.Labels(trackLabel, label)))
	t.Cleanup(func() { pprof.SetGoroutineLabels(context.Background()) })
	want := fmt.Sprintf("# labels: {%q:%q}", trackLabel, label)
	return func() []string {
		var buf bytes.Buffer
		if err := pprof.Lookup("goroutine").WriteTo(&buf, 1); err != nil {
			panic(err)
		}
		var out []string
		// Records are blank-line separated: "N @ PCs", "# labels: {...}",
		// then one "#\tPC\tfunc+off\tfile:line" per frame.
		for rec := range strings.SplitSeq(buf.String(), "\n\n") {
			if !strings.Contains(rec, want+"\n") || strings.Contains(rec, "runtime/pprof.writeGoroutine") {
				continue
			}
			out = append(out, rec)
		}
		return out
	}
}

const trackLabel = "haul-test"

// WritePaced writes p to w as a link capped at rate bytes a second would: in
// 8 KiB chunks, each flushed after the time it takes at that rate. sent, if
// not nil, is told each chunk's bytes as they are written.
func WritePaced(w http.ResponseWriter, p []byte, rate int, sent func(n int)) (int, error) {
	const chunk = 8 << 10
	n := 0
	for len(p) > 0 {
		c := p[:min(len(p), chunk)]
		time.Sleep(time.Duration(len(c)) * time.Second / time.Duration(rate))
		m, err := w.Write(c)
		if sent != nil {
			sent(m)
		}
		n += m
		if err != nil {
			return n, err
		}
		w.(http.Flusher).Flush()
		p = p[len(c):]
	}
	return n, nil
}
