package h2

// The test harness: an HTTP/2 server that a test scripts frame by frame,
// over in-memory connections, inside a testing/synctest bubble (fake time:
// timeouts are exact and nothing waits on the wall clock).
//
// A test either writes a linear script (srv.accept, then sc.want* to read
// what the client wrote and sc.headers, sc.data... to answer, with
// startRoundTrip for the client's side), or gives newTestServer a handler
// that serves each connection on its own goroutine. Tests against real
// servers (net/http's, nginx...) use tlsServer and the real network.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"iter"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/haul/haul/internal/testutil"
)

// roundTrip is how every test sends a request: one place to change if the
// client's entry point does.
func roundTrip(c *Client, req *http.Request) (*http.Response, error) { return c.RoundTrip(req) }

// get makes a GET and reads the whole body.
func get(ctx context.Context, c *Client, url string) (status int, body []byte, err error) {
	resp, err := getResp(ctx, c, url)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

func newRequest(ctx context.Context, url string) (*http.Request, error) {
	return http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
}

// getResp makes a GET and returns its response, its body unread.
func getResp(ctx context.Context, c *Client, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	return roundTrip(c, req)
}

// content is the body served for a path: distinct per path, of a length
// that varies with it (0 to about 100 KiB), so mixed-up streams show.
func content(path string) []byte {
	sum := sha256.Sum256([]byte(path))
	n := int(sum[0])<<9 | int(sum[1])
	var b bytes.Buffer
	for b.Len() < n {
		b.Write(sum[:])
		sum = sha256.Sum256(sum[:])
	}
	return b.Bytes()[:n]
}

func contains(err error, s string) bool { return err != nil && strings.Contains(err.Error(), s) }

// --- In-memory connections ---

// pipeBuf is one direction of a memConn: what one end wrote and the other
// has not read. Waits are on a sync.Cond, which synctest counts as durably
// blocked.
type pipeBuf struct {
	mu    sync.Mutex
	cond  sync.Cond
	buf   []byte
	limit int  // the most it holds (a full socket buffer): 0 is no limit
	wdone bool // the writing end closed or half-closed: EOF after buf
	rdone bool // the reading end closed: writes fail
}

func newPipeBuf() *pipeBuf {
	p := &pipeBuf{}
	p.cond.L = &p.mu
	return p
}

// memConn is one end of an in-memory, buffered, full-duplex connection:
// writes return at once (unless the peer's buffer is at its limit), reads
// wait for data, a close is read as EOF after the data written before it.
// Deadlines run on the bubble's clock.
type memConn struct {
	r, w     *pipeBuf
	rdl, wdl atomic.Pointer[time.Time]
	closed   atomic.Bool
	local    net.Addr
	remote   net.Addr
}

// memPipe returns the client's and the server's ends of a connection.
func memPipe(port uint16) (cli, srv *memConn) {
	a, b := newPipeBuf(), newPipeBuf()
	ca := net.TCPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port))
	sa := net.TCPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:443"))
	return &memConn{r: a, w: b, local: ca, remote: sa}, &memConn{r: b, w: a, local: sa, remote: ca}
}

// wait waits on p (locked) until done() or the deadline dl passes.
func (p *pipeBuf) wait(dl *atomic.Pointer[time.Time], done func() bool) error {
	for !done() {
		d := dl.Load()
		if d != nil && !d.IsZero() {
			left := time.Until(*d)
			if left <= 0 {
				return os.ErrDeadlineExceeded
			}
			t := time.AfterFunc(left, func() {
				p.mu.Lock()
				p.cond.Broadcast()
				p.mu.Unlock()
			})
			p.cond.Wait()
			t.Stop()
			continue
		}
		p.cond.Wait()
	}
	return nil
}

func (c *memConn) Read(b []byte) (int, error) {
	p := c.r
	p.mu.Lock()
	defer p.mu.Unlock()
	err := p.wait(&c.rdl, func() bool { return len(p.buf) > 0 || p.wdone || p.rdone })
	switch {
	case p.rdone:
		return 0, &net.OpError{Op: "read", Net: "tcp", Err: net.ErrClosed}
	case err != nil:
		return 0, &net.OpError{Op: "read", Net: "tcp", Err: err}
	case len(p.buf) == 0:
		return 0, io.EOF
	}
	n := copy(b, p.buf)
	p.buf = p.buf[n:]
	p.cond.Broadcast()
	return n, nil
}

func (c *memConn) Write(b []byte) (int, error) {
	p := c.w
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for n < len(b) {
		err := p.wait(&c.wdl, func() bool { return p.wdone || p.rdone || p.limit == 0 || len(p.buf) < p.limit })
		switch {
		case c.closed.Load() || p.wdone:
			return n, &net.OpError{Op: "write", Net: "tcp", Err: net.ErrClosed}
		case p.rdone:
			// As over TCP: what is written after the peer closed goes
			// nowhere, and the writer learns it by reading EOF.
			return len(b), nil
		case err != nil:
			return n, &net.OpError{Op: "write", Net: "tcp", Err: err}
		}
		m := len(b) - n
		if p.limit > 0 {
			m = min(m, p.limit-len(p.buf))
		}
		p.buf = append(p.buf, b[n:n+m]...)
		n += m
		p.cond.Broadcast()
	}
	return n, nil
}

func (c *memConn) Close() error {
	c.closed.Store(true)
	for _, p := range []*pipeBuf{c.r, c.w} {
		p.mu.Lock()
		if p == c.r {
			p.rdone = true
		} else {
			p.wdone = true
		}
		p.cond.Broadcast()
		p.mu.Unlock()
	}
	return nil
}

// CloseWrite half-closes: the peer reads EOF after what was written.
func (c *memConn) CloseWrite() error {
	c.w.mu.Lock()
	c.w.wdone = true
	c.w.cond.Broadcast()
	c.w.mu.Unlock()
	return nil
}

// buffered is how many bytes wait to be read on this end.
func (c *memConn) buffered() int {
	c.r.mu.Lock()
	defer c.r.mu.Unlock()
	return len(c.r.buf)
}

// peerClosed reports whether the other end closed the connection.
func (c *memConn) peerClosed() bool {
	c.r.mu.Lock()
	defer c.r.mu.Unlock()
	return c.r.wdone
}

func (c *memConn) LocalAddr() net.Addr  { return c.local }
func (c *memConn) RemoteAddr() net.Addr { return c.remote }
func (c *memConn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

func (c *memConn) SetReadDeadline(t time.Time) error {
	c.rdl.Store(&t)
	c.r.mu.Lock()
	c.r.cond.Broadcast()
	c.r.mu.Unlock()
	return nil
}

func (c *memConn) SetWriteDeadline(t time.Time) error {
	c.wdl.Store(&t)
	c.w.mu.Lock()
	c.w.cond.Broadcast()
	c.w.mu.Unlock()
	return nil
}

// --- The scripted server ---

// testServer accepts the client's in-memory connections. With a handler,
// each is served on a goroutine of its own after the preface and the
// server's SETTINGS; without, the test takes them with accept.
type testServer struct {
	t        *testing.T
	settings []http2.Setting
	handle   func(i int, sc *serverConn)
	tls      bool // serve over TLS (the client then uses TLS, not prior knowledge)
	limit    int  // what a connection holds that the server has not read: 0 is no limit
	host     string

	mu     sync.Mutex
	conns  []*serverConn
	queue  []*serverConn  // accepted, not yet taken by accept
	broken bool           // dials fail (a dead host)
	cert   *testutil.Cert // made at the first dial over TLS
	wg     sync.WaitGroup
}

// newTestServer starts a server inside the calling test's synctest bubble;
// handle nil means the test scripts each connection (accept). The server's
// connections are closed as the test ends.
func newTestServer(t *testing.T, settings []http2.Setting, handle func(i int, sc *serverConn)) *testServer {
	s := &testServer{t: t, settings: settings, handle: handle}
	t.Cleanup(func() {
		s.mu.Lock()
		for _, sc := range s.conns {
			sc.nc.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *testServer) url(path string) string {
	if s.host == "" {
		return "https://h2.test" + path
	}
	return "https://" + s.host + path
}

// accepted is how many connections the client opened.
func (s *testServer) accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func (s *testServer) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.broken {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	}
	i := len(s.conns)
	cli, srv := memPipe(uint16(10000 + i))
	srv.r.limit = s.limit
	sc := newServerConn(s.t, srv)
	s.conns = append(s.conns, sc)
	if s.tls && s.cert == nil {
		c := testutil.SelfSigned(s.t)
		s.cert = &c
	}
	cert := s.cert
	if s.handle == nil {
		s.queue = append(s.queue, sc)
		return cli, nil
	}
	s.wg.Go(func() {
		defer srv.Close()
		if s.tls {
			tc := tls.Server(srv, &tls.Config{Certificates: []tls.Certificate{cert.TLS}, NextProtos: []string{"h2"}})
			sc.setConn(tc)
		}
		if sc.handshake(s.settings) != nil {
			return
		}
		s.handle(i, sc)
	})
	return cli, nil
}

// client returns a Client whose connections go to s; Cleanup closes its
// idle connections.
func (s *testServer) client(o Options) *Client {
	if o.DialContext == nil {
		o.DialContext = s.dial
	}
	if s.tls {
		o.TLSConfig = &tls.Config{InsecureSkipVerify: true}
	}
	c := New(o)
	c.plain = !s.tls
	s.t.Cleanup(c.CloseIdleConnections)
	return c
}

// accept returns the next connection the client opened, its preface read
// and the server's SETTINGS sent; it fails the test if there is none.
func (s *testServer) accept() *serverConn {
	s.t.Helper()
	synctest.Wait()
	s.mu.Lock()
	if len(s.queue) == 0 {
		s.mu.Unlock()
		s.t.Fatal("the client opened no connection")
	}
	sc := s.queue[0]
	s.queue = s.queue[1:]
	s.mu.Unlock()
	if err := sc.handshake(s.settings); err != nil {
		s.t.Fatal(err)
	}
	return sc
}

// wantNoConn checks that the client opened no connection not yet accepted.
func (s *testServer) wantNoConn() {
	s.t.Helper()
	synctest.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) > 0 {
		s.t.Fatalf("the client opened %d connections more", len(s.queue))
	}
}

// serverConn is one connection of a testServer.
type serverConn struct {
	t    *testing.T
	mc   *memConn
	nc   net.Conn // mc, or a TLS connection over it
	fr   *http2.Framer
	wmu  sync.Mutex // serializes writes
	henc *hpack.Encoder
	hbuf bytes.Buffer

	// For serve: requests and resets, and the client's flow-control windows.
	reqs    chan request
	rsts    chan http2.ErrCode
	done    chan struct{}
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

func newServerConn(t *testing.T, mc *memConn) *serverConn {
	sc := &serverConn{t: t, mc: mc}
	sc.setConn(mc)
	sc.henc = hpack.NewEncoder(&sc.hbuf)
	return sc
}

func (sc *serverConn) setConn(nc net.Conn) {
	sc.nc = nc
	sc.fr = http2.NewFramer(nc, nc)
	sc.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	sc.fr.SetMaxReadFrameSize(1 << 24)
}

// handshake reads the client's preface and sends the server's SETTINGS.
func (sc *serverConn) handshake(settings []http2.Setting) error {
	pre := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(sc.nc, pre); err != nil || string(pre) != http2.ClientPreface {
		return errors.New("no client preface")
	}
	return sc.write(func(fr *http2.Framer) error { return fr.WriteSettings(settings...) })
}

func (sc *serverConn) write(f func(fr *http2.Framer) error) error {
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	return f(sc.fr)
}

// Writing frames (each returns the write's error, which scripts ignore
// where the client may have closed the connection).

// headers writes a header block: the status (unless 0), then name/value pairs.
func (sc *serverConn) headers(id uint32, end bool, status int, kv ...string) error {
	return sc.write(func(fr *http2.Framer) error {
		sc.hbuf.Reset()
		if status > 0 {
			sc.henc.WriteField(hpack.HeaderField{Name: ":status", Value: strconv.Itoa(status)})
		}
		for i := 0; i+1 < len(kv); i += 2 {
			sc.henc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
		}
		return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: sc.hbuf.Bytes(),
			EndStream: end, EndHeaders: true})
	})
}

// data writes p in DATA frames of at most 16 KiB, the last with end.
func (sc *serverConn) data(id uint32, end bool, p []byte) error {
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

func (sc *serverConn) padded(id uint32, end bool, p []byte, pad int) error {
	return sc.write(func(fr *http2.Framer) error { return fr.WriteDataPadded(id, end, p, make([]byte, pad)) })
}

func (sc *serverConn) goAway(last uint32) error {
	return sc.write(func(fr *http2.Framer) error { return fr.WriteGoAway(last, http2.ErrCodeNo, nil) })
}

func (sc *serverConn) rst(id uint32, code http2.ErrCode) error {
	return sc.write(func(fr *http2.Framer) error { return fr.WriteRSTStream(id, code) })
}

func (sc *serverConn) settings(s ...http2.Setting) error {
	return sc.write(func(fr *http2.Framer) error { return fr.WriteSettings(s...) })
}

func (sc *serverConn) ping(ack bool, data [8]byte) error {
	return sc.write(func(fr *http2.Framer) error { return fr.WritePing(ack, data) })
}

// respond answers r with status 200, a Content-Length and body (for serve:
// within the client's flow-control windows).
func (sc *serverConn) respond(r request, body []byte) error {
	if err := sc.headers(r.id, false, 200, "content-length", strconv.Itoa(len(body))); err != nil {
		return err
	}
	if !sc.flowData(r.id, body, true) {
		return io.ErrClosedPipe
	}
	return nil
}

// reply answers stream id with status 200, a Content-Length and body in one
// DATA frame that ends the stream, regardless of flow control (for a body
// within the initial windows).
func (sc *serverConn) reply(id uint32, body string) {
	sc.headers(id, false, 200, "content-length", strconv.Itoa(len(body)))
	sc.data(id, true, []byte(body))
}

// Reading frames, in a handler.

// readHeaders reads frames until a request's HEADERS, acking SETTINGS, and
// returns its stream id (0 once the connection ended).
func (sc *serverConn) readHeaders() uint32 {
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
				sc.write(func(fr *http2.Framer) error { return fr.WriteSettingsAck() })
			}
		}
	}
}

// readFrames reads frames until the connection ends, acking SETTINGS and
// calling fn (if not nil) for the others.
func (sc *serverConn) readFrames(fn func(f http2.Frame)) {
	for {
		f, err := sc.fr.ReadFrame()
		if err != nil {
			return
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			sc.write(func(fr *http2.Framer) error { return fr.WriteSettingsAck() })
			continue
		}
		if fn != nil {
			fn(f)
		}
	}
}

// serve starts reading the connection on a goroutine of its own: requests
// come out of next, resets out of rsts, and the client's windows are kept
// for flowData.
func (sc *serverConn) serve() {
	sc.reqs, sc.rsts, sc.done = make(chan request, 256), make(chan http2.ErrCode, 256), make(chan struct{})
	sc.fcond = sync.NewCond(&sc.fmu)
	sc.connWin, sc.initWin, sc.strWin, sc.reset = 65535, 65535, map[uint32]int64{}, map[uint32]bool{}
	go func() {
		defer func() {
			sc.fmu.Lock()
			close(sc.done)
			sc.fcond.Broadcast()
			sc.fmu.Unlock()
		}()
		sc.readFrames(func(f http2.Frame) {
			switch f := f.(type) {
			case *http2.MetaHeadersFrame:
				h := http.Header{}
				for _, hf := range f.RegularFields() {
					h.Add(hf.Name, hf.Value)
				}
				sc.reqs <- request{id: f.StreamID, path: f.PseudoValue("path"), header: h}
			case *http2.SettingsFrame:
				// The client's SETTINGS are acked by readFrames; this is its ACK.
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
					sc.connWin += int64(f.Increment)
				} else {
					sc.strWin[f.StreamID] += int64(f.Increment)
				}
				sc.fcond.Broadcast()
				sc.fmu.Unlock()
			}
		})
	}()
}

// next returns the next request, or false once the connection ended.
func (sc *serverConn) next() (request, bool) {
	select {
	case r := <-sc.reqs:
		return r, true
	case <-sc.done:
		return request{}, false
	}
}

// requests serves the connection (serve) and yields its requests until it
// ends.
func (sc *serverConn) requests() iter.Seq[request] {
	sc.serve()
	return func(yield func(request) bool) {
		for {
			r, ok := sc.next()
			if !ok || !yield(r) {
				return
			}
		}
	}
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

// Reading frames in a linear script: each waits until the bubble is idle,
// then takes what the client wrote by then, failing the test if it is not
// what the script wants.

// readFrame returns the next frame the client wrote, or nil if none is
// waiting once every goroutine of the test is blocked.
func (sc *serverConn) readFrame() http2.Frame {
	sc.t.Helper()
	synctest.Wait()
	if sc.mc.buffered() == 0 {
		return nil
	}
	f, err := sc.fr.ReadFrame()
	if err != nil {
		sc.t.Fatalf("reading the client's frame: %v", err)
	}
	return f
}

// wantFrame returns the next frame of type typ the client wrote, skipping
// SETTINGS (acking them), WINDOW_UPDATE and RST_STREAM frames before it;
// any other frame fails the test.
func (sc *serverConn) wantFrame(typ http2.FrameType) http2.Frame {
	sc.t.Helper()
	for {
		f := sc.readFrame()
		if f == nil {
			sc.t.Fatalf("the client wrote no %v frame", typ)
		}
		if f.Header().Type == typ {
			return f
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				sc.write(func(fr *http2.Framer) error { return fr.WriteSettingsAck() })
			}
		case *http2.WindowUpdateFrame, *http2.RSTStreamFrame:
		default:
			sc.t.Fatalf("the client wrote %v, want %v", f.Header().Type, typ)
		}
	}
}

// wantHeaders reads a request's HEADERS.
func (sc *serverConn) wantHeaders() request {
	sc.t.Helper()
	f := sc.wantFrame(http2.FrameHeaders).(*http2.MetaHeadersFrame)
	h := http.Header{}
	for _, hf := range f.RegularFields() {
		h.Add(hf.Name, hf.Value)
	}
	return request{id: f.StreamID, path: f.PseudoValue("path"), header: h}
}

// wantRST reads a RST_STREAM of stream id with code.
func (sc *serverConn) wantRST(id uint32, code http2.ErrCode) {
	sc.t.Helper()
	f := sc.wantFrame(http2.FrameRSTStream).(*http2.RSTStreamFrame)
	if f.StreamID != id || f.ErrCode != code {
		sc.t.Fatalf("RST_STREAM %d %v, want %d %v", f.StreamID, f.ErrCode, id, code)
	}
}

// wantPing reads a PING (not an ACK) and returns its payload.
func (sc *serverConn) wantPing() [8]byte {
	sc.t.Helper()
	f := sc.wantFrame(http2.FramePing).(*http2.PingFrame)
	if f.IsAck() {
		sc.t.Fatal("the client wrote a PING ACK, want a PING")
	}
	return f.Data
}

// wantIdle checks that the client wrote nothing more but SETTINGS and
// WINDOW_UPDATE frames, which it drops.
func (sc *serverConn) wantIdle() {
	sc.t.Helper()
	for {
		f := sc.readFrame()
		if f == nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				sc.write(func(fr *http2.Framer) error { return fr.WriteSettingsAck() })
			}
		case *http2.WindowUpdateFrame:
		default:
			sc.t.Fatalf("the client wrote %v, want nothing", f.Header().Type)
		}
	}
}

// closedByClient reports whether the client closed the connection.
func (sc *serverConn) closedByClient() bool {
	synctest.Wait()
	return sc.mc.peerClosed()
}

// --- The client's side of a script ---

// asyncRoundTrip is a request sent on a goroutine of its own.
type asyncRoundTrip struct {
	t    *testing.T
	url  string
	done chan struct{}
	resp *http.Response
	err  error
}

// startRoundTrip sends a GET for url on a goroutine of its own and returns
// once the test's goroutines are all blocked.
func startRoundTrip(t *testing.T, ctx context.Context, c *Client, url string) *asyncRoundTrip {
	rt := &asyncRoundTrip{t: t, url: url, done: make(chan struct{})}
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		defer close(rt.done)
		rt.resp, rt.err = getResp(ctx, c, url)
	}()
	synctest.Wait()
	t.Cleanup(func() {
		cancel()
		<-rt.done
		if rt.resp != nil {
			rt.resp.Body.Close()
		}
	})
	return rt
}

// finished reports whether the request has returned.
func (rt *asyncRoundTrip) finished() bool {
	synctest.Wait()
	select {
	case <-rt.done:
		return true
	default:
		return false
	}
}

// result returns what the request returned; it fails the test if it has
// not returned.
func (rt *asyncRoundTrip) result() (*http.Response, error) {
	rt.t.Helper()
	if !rt.finished() {
		rt.t.Fatal("the request has not returned")
	}
	return rt.resp, rt.err
}

// response returns the response; it fails the test on an error.
func (rt *asyncRoundTrip) response() *http.Response {
	rt.t.Helper()
	resp, err := rt.result()
	if err != nil {
		rt.t.Fatalf("request failed: %v", err)
	}
	return resp
}

// wantBody reads the response's body to its end; it fails the test unless
// that is want, without error.
func (rt *asyncRoundTrip) wantBody(want string) {
	rt.t.Helper()
	if b, err := io.ReadAll(rt.response().Body); err != nil || string(b) != want {
		rt.t.Fatalf("%s: body %q, %v; want %q", rt.url, b, err, want)
	}
}

// wantNoReaders checks that none of c's connection readers is left, once
// every goroutine of the test is blocked (they are the test's own: other
// tests' connections do not count).
func wantNoReaders(t *testing.T, c *Client) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		c.readers.Wait()
		close(done)
	}()
	synctest.Wait()
	select {
	case <-done:
	default:
		t.Fatal("a connection's reader is left after CloseIdleConnections")
	}
}

// --- Certificates and real servers ---

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
