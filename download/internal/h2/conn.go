package h2

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/haul/haul/download/internal/h1"
	"github.com/haul/haul/internal/ilist"
	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

const (
	maxStreamID   = 1<<31 - 1
	initialWindow = 65535 // RFC 9113's, for the connection until our WINDOW_UPDATE
	frameSize     = 16 << 10
)

// errNotSent is the error of a request that found its connection broken or
// full when it came to be written: it is tried again and that try not counted.
var errNotSent = errors.New("h2: connection unusable before the request was sent")

// retryable marks the error of a request that may be sent again, on another
// connection: refused, the server said it did not process it (REFUSED_STREAM,
// above a GOAWAY's last stream); else its connection died before any
// response, after serving others (most likely closed while idle).
type retryable struct {
	err     error
	refused bool
	// progress: the refusing connection serves others (a GOAWAY whose last
	// stream is not 0, a REFUSED_STREAM on a connection that answered
	// others), so sending again gets somewhere.
	progress bool
}

func (r retryable) Error() string { return r.err.Error() }
func (r retryable) Unwrap() error { return r.err }

// conn is one HTTP/2 connection. Requests write their HEADERS on their own
// goroutine (under wmu); readLoop, its one goroutine, reads every frame.
type conn struct {
	c  *Client
	h  *host
	nc net.Conn
	fr *http2.Framer
	cs tls.ConnectionState

	// Guarded by Client.mu.
	active   int               // streams reserved or open
	peerMax  uint32            // the server's SETTINGS_MAX_CONCURRENT_STREAMS
	draining bool              // GOAWAY received or ids used up: no new streams
	dead     bool              // out of the pool
	lru      ilist.Elem[*conn] // in Client.idle while no stream is in flight
	place    h1.IdlePlace      // in Options.IdleLimit while in Client.idle
	counted  bool              // in its host's draining count
	idleAt   time.Time

	// Guarded by wmu: the write side. Frames are appended to wbuf (the
	// Framer writes there) and whoever finds no flush under way writes them,
	// with those appended meanwhile, until none is left.
	wmu      sync.Mutex
	wbuf     []byte
	spare    []byte
	flushing bool
	werr     error
	henc     *hpack.Encoder
	hbuf     []byte
	nextID   uint32
	maxFrame uint32 // the server's SETTINGS_MAX_FRAME_SIZE
	// wmax is the server's SETTINGS_MAX_CONCURRENT_STREAMS as of the frames
	// in wbuf: HEADERS appended after it changed (and so after the SETTINGS
	// ACK) open no more streams than it allows.
	wmax uint32

	// Guarded by mu: the streams and the connection's receive window.
	mu       sync.Mutex
	streams  map[uint32]*stream
	lastID   uint32 // the highest stream id sent
	broken   error  // set once the connection has failed
	recvWin  int    // what the server may still send on the connection
	unacked  int    // consumed (or discarded) but not yet given back
	heads    int    // response heads received: served > 0 means the connection was reused after
	goaway   bool   // GOAWAY received: no stream is opened after it
	lastOK   uint32 // the last stream id of the GOAWAY
	canonMap map[string]string

	// The health check (Options.ReadIdleTimeout): idle fires once the
	// connection may have read nothing for that long, and again PingTimeout
	// after the PING it then sends. idle, pinging and ping are guarded by
	// mu; born and lastRead are written by the reader.
	idle     *time.Timer
	pinging  bool    // a PING is out, its answer not yet read
	ping     [8]byte // the PING's payload
	pings    uint64  // PINGs sent
	born     time.Time
	lastRead atomic.Int64 // when the last frame was read, as a time.Duration since born
}

// connWriter is what the Framer writes to: wbuf, under wmu.
type connWriter struct{ cn *conn }

func (w connWriter) Write(p []byte) (int, error) {
	w.cn.wbuf = append(w.cn.wbuf, p...)
	return len(p), nil
}

func newConn(c *Client, h *host, nc net.Conn) *conn {
	cn := &conn{c: c, h: h, nc: nc, peerMax: 100, wmax: 100, nextID: 1, maxFrame: frameSize,
		streams: map[uint32]*stream{}, recvWin: initialWindow}
	cn.lru.Value = cn
	if tc, ok := nc.(*tls.Conn); ok {
		cn.cs = tc.ConnectionState()
	}
	cn.fr = http2.NewFramer(connWriter{cn}, bufio.NewReaderSize(nc, 32<<10))
	cn.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	cn.fr.MaxHeaderListSize = uint32(c.o.MaxHeaderBytes)
	cn.fr.SetMaxReadFrameSize(frameSize)
	cn.fr.SetReuseFrames() // a DATA frame's payload is copied out before the next read
	cn.henc = hpack.NewEncoder(hbufWriter{cn})
	return cn
}

type hbufWriter struct{ cn *conn }

func (w hbufWriter) Write(p []byte) (int, error) {
	w.cn.hbuf = append(w.cn.hbuf, p...)
	return len(p), nil
}

// start writes the client preface: the magic, SETTINGS (no push, our stream
// window, the header list bound) and the connection's window.
func (cn *conn) start() error {
	o := &cn.c.o
	return cn.write(func() error {
		cn.wbuf = append(cn.wbuf, http2.ClientPreface...)
		if err := cn.fr.WriteSettings(
			http2.Setting{ID: http2.SettingEnablePush, Val: 0},
			http2.Setting{ID: http2.SettingInitialWindowSize, Val: uint32(o.StreamWindow)},
			http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: uint32(o.MaxHeaderBytes)},
		); err != nil {
			return err
		}
		if o.ConnWindow > initialWindow {
			cn.mu.Lock()
			cn.recvWin = o.ConnWindow
			cn.mu.Unlock()
			return cn.fr.WriteWindowUpdate(0, uint32(o.ConnWindow-initialWindow))
		}
		return nil
	})
}

// write runs fill under wmu (it appends frames) and makes sure they are
// written: by this goroutine, or by the one already flushing, which writes
// everything appended before it finds the buffer empty. An error is the
// connection's: it is closed, and its reader fails the streams.
func (cn *conn) write(fill func() error) error {
	cn.wmu.Lock()
	if cn.werr != nil {
		err := cn.werr
		cn.wmu.Unlock()
		return err
	}
	if err := fill(); err != nil {
		cn.werr = err
		cn.wmu.Unlock()
		cn.fail()
		return err
	}
	if cn.flushing {
		cn.wmu.Unlock()
		return nil
	}
	cn.flushing = true
	for len(cn.wbuf) > 0 && cn.werr == nil {
		b := cn.wbuf
		cn.wbuf = cn.spare[:0]
		cn.wmu.Unlock()
		cn.nc.SetWriteDeadline(time.Now().Add(cn.c.o.WriteTimeout))
		_, err := cn.nc.Write(b)
		cn.wmu.Lock()
		if cap(b) <= 64<<10 {
			cn.spare = b[:0]
		} else {
			cn.spare = nil
		}
		if err != nil {
			cn.werr = err
		}
	}
	cn.flushing = false
	err := cn.werr
	cn.wmu.Unlock()
	if err != nil {
		cn.fail()
	}
	return err
}

func (cn *conn) close() { cn.nc.Close() }

// fail takes a connection whose write failed out of the pool, at once (no
// request may get it while it closes), and closes its socket without TLS's
// close_notify, which would wait on the same stuck socket; its reader then
// fails the streams.
func (cn *conn) fail() {
	cn.c.lost(cn)
	if tc, ok := cn.nc.(*tls.Conn); ok {
		tc.NetConn().Close()
		return
	}
	cn.nc.Close()
}

// canTake reports whether cn has room for another stream (under Client.mu).
func (cn *conn) canTake(streams int) bool {
	return !cn.dead && !cn.draining && cn.active < min(streams, int(cn.peerMax))
}

// roundTrip sends req on a stream of cn (reserved by get) and waits for its
// response head.
func (cn *conn) roundTrip(ctx context.Context, req *http.Request) (*http.Response, error) {
	s := &stream{cn: cn, req: req, ctx: ctx, head: make(chan struct{}), notify: make(chan struct{}, 1),
		clen: -1, recvWin: cn.c.o.StreamWindow}
	if err := cn.send(s); err != nil {
		return nil, err
	}
	select {
	case <-s.head:
	case <-ctx.Done():
		s.abort(http2.ErrCodeCancel)
		return nil, h1.Canceled(ctx)
	}
	cn.mu.Lock()
	resp, err := s.resp, s.err
	cn.mu.Unlock()
	if resp == nil {
		s.abort(http2.ErrCodeCancel)
		return nil, err
	}
	return resp, nil
}

// send encodes req's HEADERS and writes them (END_STREAM: a GET has no
// body), registering the stream first so that its response finds it.
func (cn *conn) send(s *stream) error {
	req := s.req
	authority := req.Host
	if authority == "" {
		authority = req.URL.Host
	}
	path := req.URL.RequestURI()
	if path == "" {
		path = "/"
	}
	if !httpguts.ValidHostHeader(authority) {
		cn.c.release(cn)
		return fmt.Errorf("h2: invalid Host %q", authority)
	}
	for k, vv := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			cn.c.release(cn)
			return fmt.Errorf("h2: invalid header field name %q", k)
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				cn.c.release(cn)
				return fmt.Errorf("h2: invalid header field value for %q", k)
			}
		}
	}
	registered := false
	var why int // why not registered: 1 going away, 2 broken, 3 at the server's limit
	var limit uint32
	var notSent error // the error for a connection that failed or went away before serving anything
	err := cn.write(func() error {
		if cn.nextID > maxStreamID {
			why = 1
			return nil // the reservation is given back below
		}
		cn.mu.Lock()
		switch {
		case cn.goaway:
			why = 1
			if cn.heads == 0 {
				// Refused before any response: as the streams above the
				// GOAWAY's last are (counted, with a wait, if the server
				// serves none at all).
				notSent = retryable{err: errors.New("h2: server sent GOAWAY before the stream"),
					refused: true, progress: cn.lastOK > 0}
			}
		case cn.broken != nil:
			why = 2
			if cn.heads == 0 {
				// A connection that ends before serving anything: a try
				// (else a server closing every connection at once gets
				// a new one for each send, up to maxUnsent).
				notSent = retryable{err: fmt.Errorf("h2: connection lost before the request was sent: %w", cn.broken)}
			}
		case uint32(len(cn.streams)) >= cn.wmax:
			why, limit = 3, cn.wmax
			if cn.wmax == 0 && cn.heads == 0 {
				// A server that allows no stream before serving any: a
				// refusal, as if it had reset this one.
				notSent = retryable{err: errors.New("h2: server allows no streams"), refused: true}
			}
		}
		if why != 0 {
			// Going away, broken, or at a stream limit the server lowered
			// after get reserved this stream: another try, as if not
			// reserved.
			cn.mu.Unlock()
			return nil
		}
		s.id = cn.nextID
		s.heads = cn.heads
		cn.nextID += 2
		cn.streams[s.id] = s
		cn.lastID = s.id
		cn.mu.Unlock()
		registered = true
		cn.hbuf = cn.hbuf[:0]
		cn.field(":method", "GET", false)
		cn.field(":scheme", "https", false)
		cn.field(":authority", authority, false)
		cn.field(":path", path, true)
		for k, vv := range req.Header {
			name, skip, literal := lowerName(k)
			if skip {
				continue
			}
			for _, v := range vv {
				if name == "te" && v != "trailers" {
					continue
				}
				cn.field(name, v, literal)
			}
		}
		block := cn.hbuf
		first := true
		for first || len(block) > 0 {
			n := min(len(block), int(cn.maxFrame))
			frag, end := block[:n], n == len(block)
			var err error
			if first {
				err = cn.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: s.id, BlockFragment: frag,
					EndStream: true, EndHeaders: end})
			} else {
				err = cn.fr.WriteContinuation(s.id, end, frag)
			}
			if err != nil {
				return err
			}
			block, first = block[n:], false
		}
		if cn.nextID > maxStreamID {
			go cn.c.drain(cn)
		}
		return nil
	})
	if !registered {
		// The pool learns it now, not when the reader gets to it: the
		// next get must not hand this connection back.
		switch {
		case why == 1:
			cn.c.drain(cn)
		case why == 2 || err != nil:
			cn.c.lost(cn)
		case why == 3:
			cn.c.lowerMaxStreams(cn, limit)
		}
		cn.c.release(cn)
		if err != nil {
			return fmt.Errorf("%w: %w", errNotSent, err)
		}
		if notSent != nil {
			return notSent
		}
		return errNotSent
	}
	// A write error (err) is the connection's: the reader fails the stream
	// as the connection ends, and the head wait sees it.
	return nil
}

// field appends one header field to hbuf. Literal fields (the path, the
// range, validators) change with every request: sent without indexing, they
// cost neither side an entry evicted from its table.
func (cn *conn) field(name, value string, literal bool) {
	cn.henc.WriteField(hpack.HeaderField{Name: name, Value: value, Sensitive: literal})
}

// readLoop reads the connection's frames until it fails, then fails its
// streams.
func (cn *conn) readLoop() {
	if d := cn.c.o.ReadIdleTimeout; d > 0 {
		cn.born = time.Now()
		cn.mu.Lock()
		cn.idle = time.AfterFunc(d, cn.healthCheck)
		cn.mu.Unlock()
	}
	err := cn.readFrames()
	cn.c.lost(cn) // out of the pool before the close, which may take time
	cn.nc.Close()
	cn.mu.Lock()
	if cn.broken == nil {
		cn.broken = err
	} else {
		err = cn.broken // the health check's verdict, not the close it made
	}
	if cn.idle != nil {
		cn.idle.Stop()
	}
	streams := cn.streams
	cn.streams = map[uint32]*stream{}
	served := cn.heads > 0
	cn.mu.Unlock()
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF // a body cut short is no io.EOF, even wrapped
	}
	for _, s := range streams {
		e := fmt.Errorf("h2: connection lost: %w", err)
		cn.mu.Lock()
		gotHead := s.resp != nil
		cn.mu.Unlock()
		if !gotHead && served && isEOF(err) {
			// As over HTTP/1.1: a connection that served responses and
			// ends before this one's was most likely closed as idle by
			// the server, before it saw the request.
			s.fail(retryable{err: e})
		} else {
			s.fail(e)
		}
	}
}

// healthCheck runs when the connection may have read no frame for
// ReadIdleTimeout: it sends a PING if so (and checks again later if not),
// and closes the connection when the PING it sent is still unanswered
// PingTimeout later.
func (cn *conn) healthCheck() {
	o := &cn.c.o
	cn.mu.Lock()
	if cn.broken != nil {
		cn.mu.Unlock()
		return
	}
	if cn.pinging {
		cn.broken = fmt.Errorf("h2: no answer to PING within %v: %w", o.PingTimeout, os.ErrDeadlineExceeded)
		cn.mu.Unlock()
		cn.fail() // out of the pool at once; the reader fails the streams with broken
		return
	}
	if idle := time.Since(cn.born) - time.Duration(cn.lastRead.Load()); idle < o.ReadIdleTimeout {
		cn.idle.Reset(o.ReadIdleTimeout - idle)
		cn.mu.Unlock()
		return
	}
	cn.pinging = true
	cn.pings++
	binary.BigEndian.PutUint64(cn.ping[:], cn.pings)
	data := cn.ping
	cn.idle.Reset(o.PingTimeout)
	cn.mu.Unlock()
	cn.write(func() error { return cn.fr.WritePing(false, data) }) // an error is the connection's
}

// onPingAck ends the health check's wait if data answers its PING.
func (cn *conn) onPingAck(data [8]byte) {
	cn.mu.Lock()
	if cn.pinging && data == cn.ping {
		cn.pinging = false
		cn.idle.Reset(cn.c.o.ReadIdleTimeout)
	}
	cn.mu.Unlock()
}

// frameRead records, for the health check, that a frame was read.
func (cn *conn) frameRead() {
	if cn.idle != nil { // set by this goroutine, before the first read
		cn.lastRead.Store(int64(time.Since(cn.born)))
	}
}

func isEOF(err error) bool {
	var ne *net.OpError
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &ne)
}

func (cn *conn) readFrames() error {
	f, err := cn.fr.ReadFrame()
	cn.frameRead()
	if err != nil {
		return err
	}
	if sf, ok := f.(*http2.SettingsFrame); !ok || sf.IsAck() {
		return fmt.Errorf("h2: server's first frame is %v, not SETTINGS", f.Header().Type)
	}
	for {
		if err := cn.handle(f); err != nil {
			return err
		}
		for {
			f, err = cn.fr.ReadFrame()
			cn.frameRead()
			if err == nil {
				break
			}
			// A StreamError is a malformed header block (the Framer
			// decoded all of it, so the table is in step) or a bad frame
			// on one stream: that stream fails, the connection goes on.
			var se http2.StreamError
			if !errors.As(err, &se) {
				return err
			}
			if !cn.known(se.StreamID) {
				return http2.ConnectionError(http2.ErrCodeProtocol)
			}
			rerr := cn.rst(se.StreamID, se.Code) // before the stream's slot is given back
			if s := cn.lookup(se.StreamID); s != nil {
				s.fail(fmt.Errorf("h2: stream error: %w", se))
			}
			if rerr != nil {
				return rerr
			}
		}
	}
}

func (cn *conn) lookup(id uint32) *stream {
	cn.mu.Lock()
	s := cn.streams[id]
	cn.mu.Unlock()
	return s
}

// known reports whether id is a stream this client opened (even if closed
// since): frames on any other are a protocol error.
func (cn *conn) known(id uint32) bool {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	return cn.knownLocked(id)
}

func (cn *conn) knownLocked(id uint32) bool { return id%2 == 1 && id <= cn.lastID }

func (cn *conn) handle(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.DataFrame:
		return cn.onData(f)
	case *http2.MetaHeadersFrame:
		return cn.onHeaders(f)
	case *http2.RSTStreamFrame:
		if !cn.known(f.StreamID) {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		if s := cn.lookup(f.StreamID); s != nil {
			e := fmt.Errorf("h2: stream reset by the server: %v", f.ErrCode)
			cn.mu.Lock()
			gotHead := s.resp != nil
			cn.mu.Unlock()
			if f.ErrCode == http2.ErrCodeRefusedStream && !gotHead {
				cn.mu.Lock()
				progress := cn.heads > s.heads // others were answered since this one was sent
				cn.mu.Unlock()
				s.fail(retryable{err: e, refused: true, progress: progress})
			} else {
				s.fail(e)
			}
		}
	case *http2.SettingsFrame:
		if f.IsAck() {
			return nil
		}
		var maxStreams *uint32
		err := f.ForeachSetting(func(s http2.Setting) error {
			switch s.ID {
			case http2.SettingMaxConcurrentStreams:
				v := s.Val
				maxStreams = &v
				cn.wmu.Lock()
				cn.wmax = v
				cn.wmu.Unlock()
			case http2.SettingMaxFrameSize:
				cn.wmu.Lock()
				cn.maxFrame = s.Val
				cn.wmu.Unlock()
			case http2.SettingHeaderTableSize:
				cn.wmu.Lock()
				cn.henc.SetMaxDynamicTableSizeLimit(s.Val)
				cn.wmu.Unlock()
			}
			return s.Valid()
		})
		if err != nil {
			return err
		}
		if maxStreams != nil {
			cn.c.setMaxStreams(cn, *maxStreams)
		}
		return cn.write(cn.fr.WriteSettingsAck)
	case *http2.PingFrame:
		if f.IsAck() {
			cn.onPingAck(f.Data)
			return nil
		}
		data := f.Data
		return cn.write(func() error { return cn.fr.WritePing(true, data) })
	case *http2.GoAwayFrame:
		last := f.LastStreamID
		cn.mu.Lock()
		cn.goaway = true // send opens no stream after this
		cn.lastOK = last
		var refused []*stream
		for id, s := range cn.streams {
			if id > last {
				refused = append(refused, s)
			}
		}
		cn.mu.Unlock()
		cn.c.drain(cn)
		for _, s := range refused {
			s.fail(retryable{err: fmt.Errorf("h2: server sent GOAWAY (%v) before the stream", f.ErrCode),
				refused: true, progress: last > 0})
		}
	case *http2.PushPromiseFrame:
		return http2.ConnectionError(http2.ErrCodeProtocol) // push is off
	case *http2.WindowUpdateFrame, *http2.PriorityFrame, *http2.UnknownFrame:
		// This client sends no DATA: the server's windows do not matter.
	default:
		return fmt.Errorf("h2: unexpected frame %v", f.Header().Type)
	}
	return nil
}

func (cn *conn) onHeaders(f *http2.MetaHeadersFrame) error {
	id := f.StreamID
	if !cn.known(id) {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	s := cn.lookup(id)
	if s == nil {
		return nil // a stream this client reset
	}
	if f.Truncated {
		err := cn.rst(id, http2.ErrCodeProtocol) // before the stream's slot is given back
		s.fail(errors.New("h2: response header list too large"))
		return err
	}
	cn.mu.Lock()
	gotHead := s.resp != nil
	cn.mu.Unlock()
	if gotHead {
		// Trailers: they end the stream; their fields are not kept.
		if !f.StreamEnded() || len(f.PseudoFields()) > 0 {
			err := cn.rst(id, http2.ErrCodeProtocol) // before the stream's slot is given back
			s.fail(errors.New("h2: malformed trailers"))
			return err
		}
		s.end()
		return nil
	}
	status := f.PseudoValue("status")
	code, err := strconv.Atoi(status)
	if len(status) != 3 || err != nil || code < 100 {
		err := cn.rst(id, http2.ErrCodeProtocol) // before the stream's slot is given back
		s.fail(fmt.Errorf("h2: malformed response status %q", status))
		return err
	}
	if code < 200 {
		if code == 101 || f.StreamEnded() {
			err := cn.rst(id, http2.ErrCodeProtocol) // before the stream's slot is given back
			s.fail(fmt.Errorf("h2: %d response", code))
			return err
		}
		for _, hf := range f.Fields {
			s.interim += int64(hf.Size())
		}
		if s.interim > int64(cn.c.o.MaxHeaderBytes) {
			err := cn.rst(id, http2.ErrCodeProtocol) // before the stream's slot is given back
			s.fail(errors.New("h2: interim responses' header lists too large"))
			return err
		}
		return nil // an interim response: the final one follows
	}
	regular := f.RegularFields()
	h := make(http.Header, len(regular))
	vals := make([]string, len(regular))
	clen := int64(-1)
	for i, hf := range regular {
		k := cn.canon(hf.Name)
		vals[i] = hf.Value
		if vv := h[k]; vv != nil {
			h[k] = append(vv, hf.Value)
		} else {
			h[k] = vals[i : i+1 : i+1]
		}
		if k == "Content-Length" {
			n, ok := parseLength(hf.Value)
			if !ok || clen >= 0 && n != clen {
				err := cn.rst(id, http2.ErrCodeProtocol) // before the stream's slot is given back
				s.fail(fmt.Errorf("h2: invalid Content-Length %q", hf.Value))
				return err
			}
			clen = n
		}
	}
	resp := &http.Response{Status: status + " " + http.StatusText(code), StatusCode: code,
		Proto: "HTTP/2.0", ProtoMajor: 2, Header: h, ContentLength: clen, Request: s.req, TLS: &cn.cs}
	resp.Body = &body{s: s}
	cn.mu.Lock()
	s.noBody = code == http.StatusNoContent || code == http.StatusNotModified
	s.clen = clen
	s.resp = resp
	cn.heads++
	cn.mu.Unlock()
	close(s.head)
	if f.StreamEnded() {
		s.end()
	}
	return nil
}

// parseLength parses a Content-Length value: digits only.
func parseLength(v string) (int64, bool) {
	if v == "" || len(v) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return 0, false
		}
		n = n*10 + int64(v[i]-'0')
	}
	return n, true
}

func (cn *conn) onData(f *http2.DataFrame) error {
	id := f.StreamID
	n := int(f.Header().Length) // padding counts against the windows too
	data := f.Data()
	cn.mu.Lock()
	if !cn.knownLocked(id) {
		cn.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	if n > cn.recvWin {
		cn.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	cn.recvWin -= n
	s := cn.streams[id]
	if s == nil || s.resp == nil || s.closed || s.err != nil {
		// Reset by this client (or DATA before HEADERS, failed below): its
		// bytes are given back to the connection at once.
		cn.unacked += n
		cn.mu.Unlock()
		if s != nil && s.resp == nil {
			rerr := cn.rst(id, http2.ErrCodeProtocol) // before the stream's slot is given back
			s.fail(errors.New("h2: DATA before the response head"))
			if rerr != nil {
				return rerr
			}
		}
		return cn.ack(0)
	}
	if n > s.recvWin {
		cn.unacked += n
		cn.mu.Unlock()
		rerr := cn.rst(id, http2.ErrCodeFlowControl) // before the stream's slot is given back
		s.fail(errors.New("h2: server sent past the stream's flow-control window"))
		if rerr != nil {
			return rerr
		}
		return cn.ack(0)
	}
	s.recvWin -= n
	pad := n - len(data)
	cn.unacked += pad
	s.unacked += pad
	if s.clen >= 0 && s.recvd+int64(len(data)) > s.clen || s.noBody && len(data) > 0 {
		cn.unacked += len(data)
		cn.mu.Unlock()
		rerr := cn.rst(id, http2.ErrCodeProtocol) // before the stream's slot is given back
		s.fail(errors.New("h2: server sent more than the Content-Length"))
		if rerr != nil {
			return rerr
		}
		return cn.ack(0)
	}
	s.recvd += int64(len(data))
	if len(data) > 0 {
		// Into the last chunk while it has room: small frames (nginx sends
		// 8 KiB, some servers less) fill chunks, so what a stream holds is
		// its bytes, not a chunk per frame.
		if k := len(s.chunks) - 1; k >= 0 && cap(*s.chunks[k])-len(*s.chunks[k]) >= len(data) {
			*s.chunks[k] = append(*s.chunks[k], data...)
		} else {
			b := getChunk()
			*b = append((*b)[:0], data...)
			s.chunks = append(s.chunks, b)
		}
		s.buffered += len(data)
	}
	cn.mu.Unlock()
	if len(data) > 0 {
		s.signal()
	}
	if f.StreamEnded() {
		s.end()
	}
	return cn.ack(id) // padding alone may have used up a quarter of the stream's window
}

// ack sends the WINDOW_UPDATEs due: the connection's once a quarter of its
// window is consumed, and stream id's (if not 0) once a quarter of its own.
func (cn *conn) ack(id uint32) error {
	cn.mu.Lock()
	connInc := 0
	if cn.unacked >= cn.c.o.ConnWindow/4 {
		connInc, cn.unacked = cn.unacked, 0
		cn.recvWin += connInc
	}
	streamInc := 0
	if s := cn.streams[id]; id != 0 && s != nil && !s.ended && s.unacked >= cn.c.o.StreamWindow/4 {
		streamInc, s.unacked = s.unacked, 0
		s.recvWin += streamInc
	}
	cn.mu.Unlock()
	if connInc == 0 && streamInc == 0 {
		return nil
	}
	return cn.write(func() error {
		if connInc > 0 {
			if err := cn.fr.WriteWindowUpdate(0, uint32(connInc)); err != nil {
				return err
			}
		}
		if streamInc > 0 {
			return cn.fr.WriteWindowUpdate(id, uint32(streamInc))
		}
		return nil
	})
}

func (cn *conn) rst(id uint32, code http2.ErrCode) error {
	return cn.write(func() error { return cn.fr.WriteRSTStream(id, code) })
}

// canon returns the canonical form of a (lower-case) field name, from a
// cache per connection for the names servers repeat.
func (cn *conn) canon(name string) string {
	if k, ok := commonCanon[name]; ok {
		return k
	}
	if k, ok := cn.canonMap[name]; ok {
		return k
	}
	k := http.CanonicalHeaderKey(name)
	if cn.canonMap == nil {
		cn.canonMap = map[string]string{}
	}
	if len(cn.canonMap) < 256 {
		cn.canonMap[name] = k
	}
	return k
}

var commonCanon = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{"Accept-Ranges", "Age", "Cache-Control", "Content-Disposition",
		"Content-Encoding", "Content-Language", "Content-Length", "Content-Location", "Content-Range",
		"Content-Type", "Date", "Digest", "Etag", "Expires", "Last-Modified", "Link", "Location",
		"Retry-After", "Server", "Set-Cookie", "Strict-Transport-Security", "Vary", "Via",
		"Www-Authenticate", "X-Content-Type-Options", "X-Frame-Options", "Repr-Digest",
		"Content-Digest", "Alt-Svc", "Access-Control-Allow-Origin", "X-Cache"} {
		m[strings.ToLower(k)] = k
	}
	return m
}()

// lowerName is the HTTP/2 name of a request field: lower case; skip for the
// fields HTTP/2 forbids (connection-specific ones, and Host: :authority
// carries it); literal for the values that change with each request.
func lowerName(k string) (name string, skip, literal bool) {
	switch k {
	case "User-Agent":
		return "user-agent", false, false
	case "Accept-Encoding":
		return "accept-encoding", false, false
	case "Accept":
		return "accept", false, false
	case "Range":
		return "range", false, true
	case "If-Range":
		return "if-range", false, true
	case "If-None-Match":
		return "if-none-match", false, true
	case "If-Modified-Since":
		return "if-modified-since", false, true
	}
	name = strings.ToLower(k)
	switch name {
	case "connection", "proxy-connection", "transfer-encoding", "upgrade", "keep-alive", "host":
		return name, true, false
	case "authorization", "cookie", "referer", "proxy-authorization":
		return name, false, true
	}
	return name, false, false
}
