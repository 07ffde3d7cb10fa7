package testutil

import (
	"bytes"
	"compress/gzip"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
)

func TestPayloadDeterministic(t *testing.T) {
	a, b := Payload(7, 1000), Payload(7, 1000)
	if !bytes.Equal(a, b) || len(a) != 1000 {
		t.Fatal("Payload(7, 1000) differs between calls")
	}
	if bytes.Equal(a, Payload(8, 1000)) {
		t.Error("seeds 7 and 8 give the same bytes")
	}
	if bytes.HasPrefix(Payload(7, 2000), a[:100]) {
		t.Error("Payload(7, 2000) starts as Payload(7, 1000) does: another length must give other bytes")
	}
}

func TestTextCompresses(t *testing.T) {
	for name, b := range map[string][]byte{"Text": Text(1, 64<<10), "Payload": Payload(1, 64<<10)} {
		var z bytes.Buffer
		w := gzip.NewWriter(&z)
		w.Write(b)
		w.Close()
		ratio := float64(z.Len()) / float64(len(b))
		if compresses := ratio < 0.8; compresses != (name == "Text") {
			t.Errorf("%s: gzip ratio %.2f", name, ratio)
		}
	}
}

func TestSHA256Hex(t *testing.T) {
	if got := SHA256Hex([]byte("test")); got != "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08" {
		t.Errorf("SHA256Hex(test) = %s", got)
	}
}

// A client that trusts the pool completes a handshake with a server serving
// the certificate, by IP and by name.
func TestSelfSignedHandshake(t *testing.T) {
	c := SelfSigned(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", c.ServerConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(conn, "ok")
			conn.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	for _, name := range []string{"127.0.0.1", "localhost"} {
		cfg := c.ClientConfig()
		cfg.ServerName = name
		conn, err := tls.Dial("tcp", "127.0.0.1:"+port, cfg)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		b, _ := io.ReadAll(conn)
		conn.Close()
		if string(b) != "ok" {
			t.Errorf("%s: read %q", name, b)
		}
	}
	certFile, keyFile := c.WriteFiles(t, t.TempDir())
	if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
		t.Errorf("written files: %v", err)
	}
}

func TestWaitForReturnsOnceTrue(t *testing.T) {
	n := 0
	WaitFor(t, "the third call", func() bool { n++; return n == 3 })
	if n != 3 {
		t.Errorf("cond called %d times, want 3", n)
	}
}

func blockedOn(ch chan struct{}) { <-ch }

// TrackGoroutines sees what the test starts, also through another goroutine,
// and not what was started before it.
func TestTrackGoroutines(t *testing.T) {
	before := make(chan struct{})
	defer close(before)
	go blockedOn(before)
	alive := TrackGoroutines(t)
	if n := len(alive()); n != 0 {
		t.Fatalf("%d goroutines before any was started:\n%s", n, alive())
	}
	ch := make(chan struct{})
	go func() { go blockedOn(ch) }()
	// The child that started it may still be seen before it ends.
	WaitFor(t, "the grandchild, alone", func() bool {
		a := alive()
		return len(a) == 1 && strings.Contains(a[0], "testutil.blockedOn")
	})
	close(ch)
	WaitFor(t, "the grandchild to end", func() bool { return len(alive()) == 0 })
}

// Until polls until its check returns nil.
func TestUntilReturnsOnNil(t *testing.T) {
	n := 0
	Until(t, func() error {
		if n++; n < 3 {
			return fmt.Errorf("call %d", n)
		}
		return nil
	})
	if n != 3 {
		t.Errorf("check called %d times, want 3", n)
	}
}

// A connection to RefusedAddr is refused.
func TestRefusedAddrRefuses(t *testing.T) {
	addr := RefusedAddr(t)
	c, err := net.Dial("tcp", addr)
	if err == nil {
		c.Close()
		t.Fatalf("%s accepted a connection", addr)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial %s: %v, want connection refused", addr, err)
	}
}
