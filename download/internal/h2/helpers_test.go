package h2

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// rawServer is an HTTP/2 server that a test scripts frame by frame, over
// plain TCP on loopback (the client in prior-knowledge mode, Client.plain).
type rawServer struct {
	ln    net.Listener
	conns atomic.Int32
	serve func(sc *serverConn)
}

func newRawServer(t *testing.T, settings []http2.Setting, serve func(sc *serverConn)) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rs := &rawServer{ln: ln, serve: serve}
	var wg sync.WaitGroup
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			rs.conns.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer nc.Close()
				sc, err := newServerConn(nc, settings)
				if err != nil {
					return
				}
				rs.serve(sc)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return rs
}

func (rs *rawServer) url(path string) string { return "https://" + rs.ln.Addr().String() + path }

// serverConn is one connection of a rawServer: a reader goroutine answers
// SETTINGS and passes requests and resets on; writes are serialized.
type serverConn struct {
	nc   net.Conn
	fr   *http2.Framer
	wmu  sync.Mutex
	enc  *hpack.Encoder
	hbuf bytes.Buffer
	reqs chan request
	rsts chan http2.ErrCode
	wins atomic.Int64 // WINDOW_UPDATE increments received on the connection
	done chan struct{}

	// The client's flow-control windows, for flowData.
	fmu     sync.Mutex
	fcond   *sync.Cond
	connWin int64
	initWin int64
	strWin  map[uint32]int64 // what was added to or taken from initWin
	reset   map[uint32]bool  // streams the client reset
}

type request struct {
	id     uint32
	path   string
	header http.Header
}

func newServerConn(nc net.Conn, settings []http2.Setting) (*serverConn, error) {
	preface := make([]byte, len(http2.ClientPreface))
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(nc, preface); err != nil || string(preface) != http2.ClientPreface {
		return nil, errors.New("bad preface")
	}
	nc.SetReadDeadline(time.Time{})
	sc := &serverConn{nc: nc, fr: http2.NewFramer(nc, nc), reqs: make(chan request, 256),
		rsts: make(chan http2.ErrCode, 256), done: make(chan struct{})}
	sc.enc = hpack.NewEncoder(&sc.hbuf)
	sc.fcond = sync.NewCond(&sc.fmu)
	sc.connWin, sc.initWin, sc.strWin = 65535, 65535, map[uint32]int64{}
	sc.reset = map[uint32]bool{}
	sc.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	sc.fr.SetMaxReadFrameSize(1 << 20)
	sc.write(func(fr *http2.Framer) error { return fr.WriteSettings(settings...) })
	go func() {
		defer close(sc.done)
		for {
			f, err := sc.fr.ReadFrame()
			if err != nil {
				return
			}
			switch f := f.(type) {
			case *http2.MetaHeadersFrame:
				h := http.Header{}
				for _, hf := range f.RegularFields() {
					h.Add(hf.Name, hf.Value)
				}
				sc.reqs <- request{id: f.StreamID, path: f.PseudoValue("path"), header: h}
			case *http2.SettingsFrame:
				if v, ok := f.Value(http2.SettingInitialWindowSize); ok && !f.IsAck() {
					sc.fmu.Lock()
					sc.initWin = int64(v)
					sc.fcond.Broadcast()
					sc.fmu.Unlock()
				}
				if !f.IsAck() {
					sc.write(func(fr *http2.Framer) error { return fr.WriteSettingsAck() })
				}
			case *http2.RSTStreamFrame:
				sc.fmu.Lock()
				sc.reset[f.StreamID] = true
				sc.fcond.Broadcast()
				sc.fmu.Unlock()
				select {
				case sc.rsts <- f.ErrCode:
				default:
				}
			case *http2.WindowUpdateFrame:
				sc.fmu.Lock()
				if f.StreamID == 0 {
					sc.wins.Add(int64(f.Increment))
					sc.connWin += int64(f.Increment)
				} else {
					sc.strWin[f.StreamID] += int64(f.Increment)
				}
				sc.fcond.Broadcast()
				sc.fmu.Unlock()
			}
		}
	}()
	go func() {
		<-sc.done
		sc.fmu.Lock()
		sc.fcond.Broadcast()
		sc.fmu.Unlock()
	}()
	return sc, nil
}

func (sc *serverConn) write(f func(fr *http2.Framer) error) error {
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	return f(sc.fr)
}

// next returns the next request, or false once the connection ended or 5s
// passed.
func (sc *serverConn) next() (request, bool) {
	select {
	case r := <-sc.reqs:
		return r, true
	case <-sc.done:
		return request{}, false
	case <-time.After(5 * time.Second):
		return request{}, false
	}
}

// headers sends a header block of name, value pairs.
func (sc *serverConn) headers(id uint32, end bool, kv ...string) error {
	return sc.write(func(fr *http2.Framer) error {
		sc.hbuf.Reset()
		for i := 0; i+1 < len(kv); i += 2 {
			sc.enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
		}
		return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: sc.hbuf.Bytes(),
			EndStream: end, EndHeaders: true})
	})
}

func (sc *serverConn) data(id uint32, p []byte, end bool) error {
	return sc.write(func(fr *http2.Framer) error {
		for len(p) > 16<<10 {
			if err := fr.WriteData(id, false, p[:16<<10]); err != nil {
				return err
			}
			p = p[16<<10:]
		}
		return fr.WriteData(id, end, p)
	})
}

// flowData sends p on stream id within the client's windows, waiting for
// its WINDOW_UPDATEs; false if the connection ended first.
func (sc *serverConn) flowData(id uint32, p []byte, end bool) bool {
	for {
		sc.fmu.Lock()
		var n int64
		for {
			n = min(sc.connWin, sc.initWin+sc.strWin[id], int64(len(p)), 16<<10)
			if n > 0 || len(p) == 0 {
				break
			}
			if sc.reset[id] {
				sc.fmu.Unlock()
				return true // as a server does: the stream is gone, the connection goes on
			}
			select {
			case <-sc.done:
				sc.fmu.Unlock()
				return false
			default:
			}
			sc.fcond.Wait()
		}
		sc.connWin -= n
		sc.strWin[id] -= n
		sc.fmu.Unlock()
		last := int(n) == len(p)
		if sc.write(func(fr *http2.Framer) error { return fr.WriteData(id, end && last, p[:n]) }) != nil {
			return false
		}
		p = p[n:]
		if last {
			return true
		}
	}
}

// respond answers r with status 200, a Content-Length and body.
func (sc *serverConn) respond(r request, body []byte) error {
	if err := sc.headers(r.id, false, ":status", "200", "content-length", itoa(len(body))); err != nil {
		return err
	}
	if !sc.flowData(r.id, body, true) {
		return io.ErrClosedPipe
	}
	return nil
}

func itoa(n int) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}

// rawClient is a Client in prior-knowledge mode that dials rs.
func rawClient(t *testing.T, rs *rawServer, o Options) *Client {
	t.Helper()
	o.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", rs.ln.Addr().String())
	}
	c := New(o)
	c.plain = true
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// get makes a GET and reads the whole body.
func get(ctx context.Context, c *Client, url string) (status int, body []byte, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := c.RoundTrip(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// tlsServer is an httptest server over TLS with HTTP/2 (unless h1only), and
// a client trusting it.
func tlsServer(t *testing.T, h http.Handler, h1only bool, maxStreams uint32, o Options) (*httptest.Server, *Client, *atomic.Int32) {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.EnableHTTP2 = !h1only
	if maxStreams > 0 {
		srv.Config.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: int(maxStreams)}
	}
	var conns atomic.Int32
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Config.ErrorLog = nil
	srv.StartTLS()
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	o.TLSConfig = &tls.Config{RootCAs: pool}
	c := New(o)
	t.Cleanup(c.CloseIdleConnections)
	return srv, c, &conns
}

func contains(err error, s string) bool { return err != nil && strings.Contains(err.Error(), s) }
