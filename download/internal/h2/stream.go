package h2

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/haul/haul/download/internal/h1"
	"golang.org/x/net/http2"
)

// stream is one request and its response. Its fields are guarded by its
// connection's mu, but for head (closed once, by the reader) and notify.
type stream struct {
	cn     *conn
	id     uint32
	req    *http.Request
	ctx    context.Context
	head   chan struct{} // closed when resp or err is set
	notify chan struct{} // a token when data, the end or an error arrives

	resp     *http.Response
	err      error // the stream failed: what Read returns once the data is read
	ended    bool  // END_STREAM received (all of the body is here or in chunks)
	closed   bool  // aborted by this side (body closed, request canceled)
	released bool  // out of cn.streams, its reservation given back
	noBody   bool  // 204, 304: DATA is an error
	interim  int64 // size of the interim (1xx) header lists so far (the reader's own)
	heads    int   // the connection's heads count when this stream was sent

	clen     int64 // Content-Length, -1 if none
	recvd    int64 // body bytes received
	chunks   []*[]byte
	off      int // read offset in chunks[0]
	buffered int // bytes in chunks
	recvWin  int // what the server may still send on this stream
	unacked  int // consumed but not yet given back to the stream's window
}

var chunkPool = sync.Pool{New: func() any { b := make([]byte, 0, frameSize); return &b }}

func getChunk() *[]byte  { return chunkPool.Get().(*[]byte) }
func putChunk(b *[]byte) { chunkPool.Put(b) }

func (s *stream) signal() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// removeLocked takes s out of its connection's streams, once: it reports
// whether this call did (and so must give back the reservation).
func (s *stream) removeLocked() bool {
	if s.released {
		return false
	}
	s.released = true
	delete(s.cn.streams, s.id)
	return true
}

// end records END_STREAM: the body is complete, or short of its
// Content-Length (an error once the data is read).
//
// The stream's slot is given back before its end is visible: a caller that
// reads the body to its end and sends the next request finds the room (else
// it opens another connection: 5 for 16 requests at 4 streams, under load).
func (s *stream) end() {
	cn := s.cn
	cn.mu.Lock()
	if s.ended || s.closed || s.err != nil {
		cn.mu.Unlock()
		return
	}
	rel := s.removeLocked()
	cn.mu.Unlock()
	if rel {
		cn.c.release(cn)
	}
	cn.mu.Lock()
	s.ended = true
	if !s.noBody && s.clen >= 0 && s.recvd != s.clen {
		s.err = fmt.Errorf("h2: body ended after %d of its %d bytes: %w", s.recvd, s.clen, io.ErrUnexpectedEOF)
	}
	cn.mu.Unlock()
	s.signal()
}

// fail ends s with err (called by the reader), unless it ended already: the
// head wait or the body's Read returns err.
func (s *stream) fail(err error) {
	cn := s.cn
	cn.mu.Lock()
	if s.ended || s.closed || s.err != nil {
		cn.mu.Unlock()
		return
	}
	rel := s.removeLocked()
	cn.mu.Unlock()
	if rel {
		cn.c.release(cn) // before the error is visible, as in end
	}
	cn.mu.Lock()
	s.err = err
	noHead := s.resp == nil
	cn.mu.Unlock()
	if noHead {
		close(s.head)
	}
	s.signal()
}

// abort ends s from this side: its buffered bytes are dropped (and given back
// to the connection's window) and, if it is still open, it is reset with code.
func (s *stream) abort(code http2.ErrCode) {
	cn := s.cn
	cn.mu.Lock()
	if s.closed {
		cn.mu.Unlock()
		return
	}
	s.closed = true
	cn.unacked += s.buffered
	s.buffered = 0
	for i, b := range s.chunks {
		putChunk(b)
		s.chunks[i] = nil
	}
	s.chunks = nil
	rel := s.removeLocked()
	cn.mu.Unlock()
	if rel {
		if s.id != 0 {
			cn.rst(s.id, code)
		}
		cn.c.release(cn)
	}
	cn.ack(0)
}

// body is a response's body: its stream's DATA, in order.
type body struct {
	s      *stream
	closed bool
}

var errClosed = errors.New("h2: read on closed response body")

func (b *body) Read(p []byte) (int, error) {
	s := b.s
	cn := s.cn
	for {
		cn.mu.Lock()
		if b.closed {
			cn.mu.Unlock()
			return 0, errClosed
		}
		if len(s.chunks) > 0 && len(p) > 0 {
			n := 0
			for n < len(p) && len(s.chunks) > 0 {
				c := *s.chunks[0]
				m := copy(p[n:], c[s.off:])
				n += m
				s.off += m
				if s.off == len(c) {
					putChunk(s.chunks[0])
					s.chunks[0] = nil
					s.chunks = s.chunks[1:]
					s.off = 0
				}
			}
			s.buffered -= n
			cn.unacked += n
			s.unacked += n
			due := cn.unacked >= cn.c.o.ConnWindow/4 || !s.ended && s.unacked >= cn.c.o.StreamWindow/4
			cn.mu.Unlock()
			if due {
				cn.ack(s.id) // an error is the connection's: the reader fails the stream
			}
			return n, nil
		}
		if s.err != nil {
			err := s.err
			cn.mu.Unlock()
			return 0, err
		}
		if s.ended {
			cn.mu.Unlock()
			return 0, io.EOF
		}
		cn.mu.Unlock()
		if len(p) == 0 {
			return 0, nil
		}
		select {
		case <-s.notify:
		case <-s.ctx.Done():
			return 0, h1.Canceled(s.ctx)
		}
	}
}

func (b *body) Close() error {
	cn := b.s.cn
	cn.mu.Lock()
	already := b.closed
	b.closed = true
	cn.mu.Unlock()
	if !already {
		b.s.abort(http2.ErrCodeCancel)
		b.s.signal() // a Read blocked on the body returns
	}
	return nil
}
