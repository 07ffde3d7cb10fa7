package h2

// Review harness: a scripted HTTP/2 server over TLS on 127.0.0.1 that speaks
// raw frames (x/net/http2's Framer), for hostile and lying servers.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

var (
	certOnce sync.Once
	certVal  tls.Certificate
)

func reviewCert(t testing.TB) tls.Certificate {
	certOnce.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			panic(err)
		}
		certVal = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	})
	return certVal
}

// srvConn is one accepted connection of the scripted server.
type srvConn struct {
	t    testing.TB
	nc   net.Conn
	fr   *http2.Framer
	wmu  sync.Mutex
	henc *hpack.Encoder
	hbuf bytes.Buffer
}

type rvServer struct {
	ln    net.Listener
	addr  string
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
	n     int // connections accepted
}

// newRvServer serves each accepted connection with handle(i, sc), i counting
// from 0, after the preface and the server's SETTINGS (settings) are exchanged.
func newRvServer(t testing.TB, settings []http2.Setting, handle func(i int, sc *srvConn)) *rvServer {
	conf := &tls.Config{Certificates: []tls.Certificate{reviewCert(t)}, NextProtos: []string{"h2"}}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", conf)
	if err != nil {
		t.Fatal(err)
	}
	s := &rvServer{ln: ln, addr: ln.Addr().String()}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			i := s.n
			s.n++
			s.conns = append(s.conns, nc)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer nc.Close()
				sc := &srvConn{t: t, nc: nc}
				sc.fr = http2.NewFramer(nc, nc)
				sc.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
				sc.henc = hpack.NewEncoder(&sc.hbuf)
				pre := make([]byte, len(http2.ClientPreface))
				if _, err := io.ReadFull(nc, pre); err != nil || string(pre) != http2.ClientPreface {
					return
				}
				if err := sc.fr.WriteSettings(settings...); err != nil {
					return
				}
				handle(i, sc)
			}()
		}
	}()
	t.Cleanup(s.close)
	return s
}

func (s *rvServer) close() {
	s.ln.Close()
	s.mu.Lock()
	for _, c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *rvServer) accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

func (s *rvServer) url(path string) string { return "https://" + s.addr + path }

// readHeaders reads frames until a request's HEADERS, acking SETTINGS, and
// returns its stream id (0 on error or EOF).
func (sc *srvConn) readHeaders() uint32 {
	for {
		f, err := sc.fr.ReadFrame()
		if err != nil {
			return 0
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			return f.StreamID
		case *http2.SettingsFrame:
			if !f.IsAck() {
				sc.wmu.Lock()
				sc.fr.WriteSettingsAck()
				sc.wmu.Unlock()
			}
		}
	}
}

// readFrames reads frames in the background, acking SETTINGS, calling fn for
// each (under no lock) until the connection ends.
func (sc *srvConn) readFrames(fn func(f http2.Frame)) {
	for {
		f, err := sc.fr.ReadFrame()
		if err != nil {
			return
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			sc.wmu.Lock()
			sc.fr.WriteSettingsAck()
			sc.wmu.Unlock()
			continue
		}
		if fn != nil {
			fn(f)
		}
	}
}

// headers writes a response head (status, then name/value pairs).
func (sc *srvConn) headers(id uint32, end bool, status int, kv ...string) {
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	sc.hbuf.Reset()
	if status > 0 {
		sc.henc.WriteField(hpack.HeaderField{Name: ":status", Value: strconv.Itoa(status)})
	}
	for i := 0; i+1 < len(kv); i += 2 {
		sc.henc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	sc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: sc.hbuf.Bytes(),
		EndStream: end, EndHeaders: true})
}

func (sc *srvConn) data(id uint32, end bool, p []byte) {
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	sc.fr.WriteData(id, end, p)
}

func (sc *srvConn) padded(id uint32, end bool, p []byte, pad int) {
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	sc.fr.WriteDataPadded(id, end, p, make([]byte, pad))
}

func (sc *srvConn) goAway(last uint32) {
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	sc.fr.WriteGoAway(last, http2.ErrCodeNo, nil)
}

func (sc *srvConn) rst(id uint32, code http2.ErrCode) {
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	sc.fr.WriteRSTStream(id, code)
}

func reviewClient(o Options) *Client {
	o.TLSConfig = &tls.Config{InsecureSkipVerify: true}
	return New(o)
}

func rvGet(ctx context.Context, c *Client, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	return c.RoundTrip(req)
}

func rvNewReq(ctx context.Context, url string) (*http.Request, error) {
	return http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
}
