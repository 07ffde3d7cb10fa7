package index

import (
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"time"
)

// spool copies one index page's body to a temporary file as fast as the
// server sends it, on a goroutine of its own, while the parser reads it back
// at the caller's pace. The caller (the engine's feed) may stop pulling for
// minutes while every worker is busy with a large file; a connection left
// unread that long would be closed by the server (nginx's send_timeout is
// 60 s) and the rest of the listing lost. So the page costs disk, not memory,
// and never holds a connection.
//
// One spool, and its file, serve every page of a walk in turn: start, read to
// the end or stop, start again.
type spool struct {
	dir string
	f   *os.File
	buf []byte // the copier's

	mu   sync.Mutex
	cond sync.Cond
	n    int64 // bytes of the page in f
	done bool  // the copier has ended: err says why
	err  error // nil: the body ended; else the error the reader gets at n

	off    int64 // the reader's offset
	cancel context.CancelCauseFunc
	exited chan struct{}
}

var errPageTooLarge = errors.New("index page larger than the limit")

func newSpool(dir string) *spool {
	s := &spool{dir: dir}
	s.cond.L = &s.mu
	return s
}

// start copies body, the response to a request made with ctx, at most max
// bytes of it, and calls stalled each time bytes arrive (it restarts the stall
// timer). cancel must cancel ctx: stop calls it.
func (s *spool) start(ctx context.Context, cancel context.CancelCauseFunc, body io.ReadCloser, max int64, progress func()) error {
	if s.f == nil {
		f, err := createTemp(s.dir, "haul-index-page-")
		if err != nil {
			body.Close()
			return err
		}
		s.f, s.buf = f, make([]byte, 32<<10)
	}
	s.n, s.done, s.err, s.off = 0, false, nil, 0
	s.cancel, s.exited = cancel, make(chan struct{})
	go s.copy(ctx, body, max, progress)
	return nil
}

func (s *spool) copy(ctx context.Context, body io.ReadCloser, max int64, progress func()) {
	defer close(s.exited)
	// Read and Close of one body are never concurrent (h1 requires it): both
	// are this goroutine's.
	defer body.Close()
	var n int64
	for {
		k, err := body.Read(s.buf)
		if k > 0 {
			progress()
			if int64(k) > max-n {
				k, err = int(max-n), errPageTooLarge
			}
			if _, werr := s.f.WriteAt(s.buf[:k], n); werr != nil {
				err = &localError{werr}
			}
			n += int64(k)
			s.mu.Lock()
			s.n = n
			s.cond.Broadcast()
			s.mu.Unlock()
		}
		if err != nil {
			if err == io.EOF {
				err = nil
			} else if c := context.Cause(ctx); c != nil {
				err = c // a stall or a cancellation, not the transport's words for it
			}
			s.mu.Lock()
			s.done, s.err = true, err
			s.cond.Broadcast()
			s.mu.Unlock()
			return
		}
	}
}

// Read reads the page as it arrives; at its end it returns io.EOF, or the
// error that ended the copy.
func (s *spool) Read(p []byte) (int, error) {
	s.mu.Lock()
	for s.off >= s.n && !s.done {
		s.cond.Wait()
	}
	n, err := s.n, s.err
	s.mu.Unlock()
	if s.off >= n {
		if err != nil {
			return 0, err
		}
		return 0, io.EOF
	}
	k, err := s.f.ReadAt(p[:min(int64(len(p)), n-s.off)], s.off)
	s.off += int64(k)
	if err != nil && k == 0 {
		return 0, &localError{err}
	}
	return k, nil
}

// stop abandons the page, if its copy still runs, and waits for the copier
// to end, so that the file is free for the next page.
func (s *spool) stop() {
	if s.exited == nil {
		return
	}
	s.cancel(errAbandoned)
	<-s.exited
	s.exited = nil
	// The next page overwrites from offset 0; truncating keeps the file
	// no larger than the largest page and frees what a large one took.
	if s.n > 1<<20 {
		s.f.Truncate(0)
	}
}

func (s *spool) close() {
	s.stop()
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
}

var errAbandoned = errors.New("index page abandoned")

// localError marks a failure of the local side (the temporary files): no
// retry of the page can fix it.
type localError struct{ err error }

func (e *localError) Error() string { return "index: temporary file: " + e.err.Error() }
func (e *localError) Unwrap() error { return e.err }

// stallTimer cancels a page's request when nothing arrives for d.
type stallTimer struct {
	t *time.Timer
	d time.Duration
}

func newStallTimer(d time.Duration, cancel context.CancelCauseFunc) *stallTimer {
	return &stallTimer{t: time.AfterFunc(d, func() { cancel(errStalled) }), d: d}
}

func (s *stallTimer) reset() { s.t.Reset(s.d) }
func (s *stallTimer) stop()  { s.t.Stop() }

// errStalled: nothing arrived for Options.Timeout.
var errStalled = errors.New("index page stalled")
