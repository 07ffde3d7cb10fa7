package download

// One body over several connections (--split): the first response, a plain
// GET (or the Range request of a resume) streaming from the first missing
// byte, becomes the first piece once its head shows a length, a strong
// validator and that the server serves ranges, and once it runs slower than
// SplitBelow (copyUntilSlow: a connection faster than that is not what limits
// the download, and the file goes on over it alone, in order; what it wrote
// before is the range from 0); up to Split-1 more connections take pieces of
// the rest, each a closed range ("bytes=S-E") with If-Range.
// The connections are taken first (--per-host slots, without waiting), then the
// missing bytes are cut into about equal pieces, one per connection (none
// under MinSplitSize): 256 MiB over 16 connections is 16 pieces of 16 MiB, the
// first of them the first response's.
//
// Work stealing: a connection that finishes its piece takes a range nobody
// has (left by a resume, a range per gap, or by a piece that gave up), else
// the second half of
// the piece with the most bytes left, if both halves are at least
// MinSplitSize. The piece stolen from is not asked again: its end is lowered
// under the split's lock, and its connection stops reading there (bytes it
// already read past the new end are dropped, never written), then closes the
// body (over HTTP/1.1 that connection is not reused; the stealer's closed
// range ends at its own end and is).
//
// Every piece's 206 must carry exactly the Content-Range asked for, the total
// length and the validator of the first response, and no Content-Encoding.
// Anything else means the file is not the one the other pieces hold: the
// pieces are discarded and the file starts over on one connection (errSplice),
// never spliced. A piece whose connection drops is asked again from where it
// got to; one that keeps failing leaves its range to the others, and if none
// is left the attempt fails with the pieces' progress kept (the transfer's
// done ranges), so the next attempt (or run) fetches only the missing ranges.
//
// A split is a type of its own (as rclone's multi-thread copy): it writes
// with a sink.RangeWriter and asks for each piece with a fetch function; the
// transfer hands it the first response's body, the missing ranges and what
// is written, and reads back the ranges written when every piece ended.
//
// The writer records the ranges written (sink.RangeWriter.SetRanges), which
// its checkpoints make durable then store; with a hash wanted, a goroutine
// hashes the file's contiguous prefix as it grows, reading it back from the
// file (the page cache), so the hash stays off the pieces' copy path. A
// writer that cannot read its bytes back (ReadAt fails with
// sink.ErrNoPrefix: an object store's upload) gets a body to hash in order,
// over one connection.
//
// A writer that stores the body in parts (partWriter: an object store's
// multipart upload) has its pieces cut at multiples of its part size, and a
// steal too where the piece stolen from has a part boundary to cut at: each
// part is then filled by one connection, and uploaded while the others go on.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/haul/haul/download/internal/retry"
	"github.com/haul/haul/sink"
)

// defaultSplitBelow is Options.SplitBelow's default: 64 MiB/s, half what a
// gigabit link carries. A server that caps each connection, or a long path
// whose window caps it, rarely gives one connection more; one on loopback or
// a fast LAN runs ten times faster (the page cache or the CPU is the limit
// there, and more connections only share it), and stays above it even on a
// machine whose CPUs are busy with other work.
const defaultSplitBelow = 64 << 20

// errSplice: a piece's response does not belong to the file the others hold.
var errSplice = errors.New("a piece's response does not match the file")

// partWriter is a sink.RangeWriter that stores the body in parts of one size
// (an object store's multipart upload, sink/bucket): a part is stored once
// whole, whichever pieces wrote it.
type partWriter interface {
	// PartSize is the size of the parts (0: none): a piece that starts at
	// a multiple of it fills its parts alone.
	PartSize() int64
	// WriteAtContext is WriteAt that gives up waiting for the memory to
	// hold a part when ctx ends.
	WriteAtContext(ctx context.Context, p []byte, off int64) (int, error)
}

// piece is the range one connection fetches: [start, end), next is the next
// byte it reads (reserved), done the end of what it wrote.
type piece struct {
	start, next, done, end int64
}

// split fetches the missing ranges of one body over several connections and
// writes them with rw. Its fields up to ctx are given by its caller, who
// then calls run once.
type split struct {
	rw sink.RangeWriter
	// fetch asks for the bytes [start, end) of the file; its body carries
	// exactly them, or it fails (errSplice: the response is not of this
	// file).
	fetch    func(ctx context.Context, start, end int64) (*pacedBody, error)
	minSplit int64 // no piece is cut smaller (--min-split-size)
	// align, if not 0, is the writer's part size: pieces are cut at its
	// multiples (see partWriter).
	align int64
	// A piece that gets no byte is asked again retries times, backoff apart.
	retries int
	backoff retry.Backoff
	// slot takes one more connection to the host (--per-host), without
	// waiting; nil: no cap.
	slot func() (release func(), ok bool)
	bufs *buffers
	// firstBuf is the first connection's buffer; nil: it takes one from bufs.
	firstBuf []byte
	// hash, if not nil, is fed the file's bytes from hashed on, read back
	// from rw as the range from 0 grows.
	hash   *asyncHash
	hashed int64

	ctx    context.Context
	cancel context.CancelCauseFunc

	mu       sync.Mutex
	finished []sink.Range // merged, sorted: bytes written by pieces that ended (and before)
	todo     []sink.Range // ranges no connection has
	active   []*piece
	snap     []sink.Range // scratch for the writer's record
	moved    chan struct{}
	errs     []error
}

// splitConns says over how many connections the body whose first response is
// resp (accepted) is fetched in pieces: 0 for not in pieces (in order, over
// resp alone). A body with ranges already written past the first missing
// byte (a resume of pieces) is fetched in pieces even over one connection,
// which then skips them: resp's piece ends where they start, and the next
// missing range is asked for.
func (t *transfer) splitConns(resp *http.Response) int {
	d := t.d
	if t.noSplit || d.decode || t.total <= 0 || t.validator == "" || encoded(resp.Header) {
		return 0
	}
	rw, ok := t.w.(sink.RangeWriter)
	if !ok {
		return 0
	}
	if t.hash != nil {
		// The hash reads the bytes back as the prefix grows; a writer
		// that cannot gets them in order.
		if _, err := rw.ReadAt(nil, 0); errors.Is(err, sink.ErrNoPrefix) {
			return 0
		}
	}
	if resp.StatusCode != http.StatusPartialContent && !acceptsRanges(resp.Header) {
		return 0
	}
	if resp.ContentLength >= 0 && resp.ContentLength != t.total-t.written {
		return 0
	}
	missing := int64(0)
	for _, g := range t.gaps() {
		missing += g.End - g.Start
	}
	if d.split > 1 && missing >= 2*d.minSplit {
		return d.split
	}
	if t.done != nil && missing > 0 {
		return 1
	}
	return 0
}

// acceptsRanges reports whether Accept-Ranges lists bytes.
func acceptsRanges(h http.Header) bool {
	for _, v := range h.Values("Accept-Ranges") {
		for _, tok := range strings.Split(v, ",") {
			if strings.EqualFold(textproto.TrimString(tok), "bytes") {
				return true
			}
		}
	}
	return false
}

// gaps returns the ranges of [t.written, t.total) not in t.done.
func (t *transfer) gaps() []sink.Range {
	var g []sink.Range
	at := t.written
	for _, r := range t.done {
		if r.Start > at {
			g = append(g, sink.Range{Start: at, End: r.Start})
		}
		at = max(at, r.End)
	}
	if at < t.total {
		g = append(g, sink.Range{Start: at, End: t.total})
	}
	return g
}

// runSplit fetches the body over several connections, the first of which
// reads first (resp's body). It returns when every piece ended, with what
// they wrote kept in t.written and t.done.
func (t *transfer) runSplit(ctx context.Context, first *pacedBody, resp *http.Response, conns int) error {
	rw := t.w.(sink.RangeWriter)
	s := &split{rw: rw, fetch: t.fetchPiece(pieceURL(t.ent.URL, resp)), minSplit: t.d.minSplit,
		retries: t.d.retries, backoff: t.d.backoff, slot: t.slot, bufs: t.d.bufs,
		hash: t.hash, hashed: t.written}
	if pw, ok := rw.(partWriter); ok {
		s.align = pw.PartSize()
	}
	if t.buf != nil {
		// Unless the transfer hashes: then its buffers are the hash's ring,
		// fed by the split's hashPrefix.
		s.firstBuf = *t.buf
	}
	var have []sink.Range
	if t.written > 0 {
		have = append(have, sink.Range{Start: 0, End: t.written})
	}
	have = mergeRange(have, t.done...)
	t.ranged = true
	done, err := s.run(ctx, first, have, t.gaps(), conns)

	// Every piece ended: what is written is what the next attempt keeps.
	t.written = 0
	if len(done) > 0 && done[0].Start == 0 {
		t.written, done = done[0].End, done[1:]
	}
	t.done = done
	if len(t.done) == 0 {
		t.done = nil
	}
	progress := t.written
	for _, r := range t.done {
		progress += r.End - r.Start
	}
	t.best = max(t.best, progress)
	var le *localError
	switch {
	case errors.Is(err, errSplice):
		return t.forget(err)
	case errors.As(err, &le):
		return le
	case t.written == t.total:
		t.ranged = false
		if err := rw.EndRanges(t.total); err != nil {
			return &localError{err}
		}
		return nil
	case err == nil:
		err = errShortBody
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("%d of %d bytes in pieces: %w", progress, t.total, err)
}

// fetchPiece returns the fetch of a split's pieces from u: a closed range
// with If-Range, whose 206 must carry exactly the range asked for, the
// total length and the validator of the first response, and no
// Content-Encoding.
func (t *transfer) fetchPiece(u string) func(ctx context.Context, start, end int64) (*pacedBody, error) {
	d, validator, total, gate := t.d, t.validator, t.total, t.gate
	return func(ctx context.Context, start, end int64) (*pacedBody, error) {
		x, err := d.newExchange(ctx, u, true)
		if err != nil {
			return nil, err
		}
		x.gate = gate // a piece is one more request to the host: its rate holds
		x.setRange(start, end, validator)
		resp, err := x.do()
		if err != nil {
			x.end()
			return nil, err
		}
		if err := checkPiece(resp, start, end, total, validator); err != nil {
			resp.Body.Close()
			x.end()
			return nil, err
		}
		return x.body(resp.Body, resp.Body), nil
	}
}

// checkPiece checks the response to a piece's request for [start, end) of
// the file of length total under validator.
func checkPiece(resp *http.Response, start, end, total int64, validator string) error {
	switch {
	case resp.StatusCode == http.StatusPartialContent:
		want := "bytes " + strconv.FormatInt(start, 10) + "-" + strconv.FormatInt(end-1, 10) + "/" + strconv.FormatInt(total, 10)
		if cr := resp.Header.Get("Content-Range"); cr != want {
			return fmt.Errorf("%w: Content-Range %q, asked for %q", errSplice, cr, want)
		}
		if resp.ContentLength >= 0 && resp.ContentLength != end-start {
			return fmt.Errorf("%w: Content-Length %d for a range of %d", errSplice, resp.ContentLength, end-start)
		}
		if v := sameKindValidator(resp.Header, validator); v != validator {
			return fmt.Errorf("%w: validator %q, the file's is %q", errSplice, v, validator)
		}
		if encoded(resp.Header) {
			return fmt.Errorf("%w: Content-Encoding %s", errSplice, resp.Header.Get("Content-Encoding"))
		}
		return nil
	case resp.StatusCode == http.StatusOK, resp.StatusCode == http.StatusRequestedRangeNotSatisfiable:
		return fmt.Errorf("%w: %s to a range request", errSplice, resp.Status)
	}
	se := statusError(resp)
	if retryable(se) {
		return se
	}
	return fmt.Errorf("%w: %w", errSplice, se)
}

// run fetches gaps (sorted; the first starts where first does) over up to
// conns connections, the first of which reads first; have are the ranges
// written already. It returns when every piece ended, with the ranges written
// (have's included), and why they are not all of the file: the errors of a
// piece's response that was not of the file (errSplice) or of the writer
// (*localError), else the error of the last piece to give up; nil if none did.
func (s *split) run(ctx context.Context, first *pacedBody, have, gaps []sink.Range, conns int) ([]sink.Range, error) {
	s.ctx, s.cancel = context.WithCancelCause(ctx)
	defer s.cancel(nil)
	// The first response was asked under a context of its own: the split's
	// end (or failure) ends it too.
	defer context.AfterFunc(s.ctx, func() { first.abort(context.Cause(s.ctx)) })()
	s.moved = make(chan struct{}, 1)
	s.finished = have
	// The connections first (--per-host may leave fewer), then the pieces,
	// one per connection: with no slot free the first response streams on
	// to the end of its range, as without --split.
	var slots []func()
	for range conns - 1 {
		release, ok := s.takeSlot()
		if !ok {
			break
		}
		slots = append(slots, release)
	}
	plan := planPieces(gaps, 1+len(slots), s.minSplit, s.align)
	p0 := &piece{start: plan[0].Start, next: plan[0].Start, done: plan[0].Start, end: plan[0].End}
	s.active = []*piece{p0}
	s.todo = plan[1:]
	s.mu.Lock()
	s.record()
	s.mu.Unlock()

	var hashDone chan error
	if s.hash != nil {
		hashDone = make(chan error, 1)
		go func() { hashDone <- s.hashPrefix(s.hashed) }()
	}
	var wg sync.WaitGroup
	work := func(p *piece, body *pacedBody) {
		defer wg.Done()
		if err := s.work(p, body); err != nil {
			s.mu.Lock()
			s.errs = append(s.errs, err)
			s.mu.Unlock()
		}
	}
	wg.Add(1)
	go work(p0, first)
	for _, release := range slots {
		s.mu.Lock()
		p := s.take()
		s.mu.Unlock()
		if p == nil {
			release()
			continue
		}
		wg.Add(1)
		go func() {
			defer release()
			work(p, nil)
		}()
	}
	wg.Wait()

	s.mu.Lock()
	s.record()
	done := slices.Clone(s.snap)
	s.mu.Unlock()
	if hashDone != nil {
		s.signal()
		close(s.moved)
		if err := <-hashDone; err != nil {
			return done, &localError{err}
		}
	}
	err := errors.Join(s.errs...)
	var le *localError
	if err == nil || errors.Is(err, errSplice) || errors.As(err, &le) {
		return done, err
	}
	return done, s.errs[len(s.errs)-1] // the last piece to give up
}

func (s *split) takeSlot() (release func(), ok bool) {
	if s.slot == nil {
		return func() {}, true
	}
	return s.slot()
}

// planPieces cuts the missing ranges into the first pieces: about equal, one
// per connection (the missing bytes over conns), none smaller than minSplit
// unless its range is; with align, each cut is moved to the nearest multiple
// of align inside its range (fewer pieces where two cuts meet). Sorted: the
// first starts where the first response does.
func planPieces(gaps []sink.Range, conns int, minSplit, align int64) []sink.Range {
	missing := int64(0)
	for _, g := range gaps {
		missing += g.End - g.Start
	}
	// Rounded down: a gap of conns*target+r bytes (r < conns) is then cut
	// into conns pieces, the last r bytes longer; rounded up, it was cut
	// into conns-1, and the last connection halved one of them.
	target := max(minSplit, missing/int64(conns), 1)
	var plan []sink.Range
	for _, g := range gaps {
		n := max(1, (g.End-g.Start)/target)
		size := (g.End - g.Start) / n
		start := g.Start
		for i := int64(1); i <= n; i++ {
			cut := g.Start + i*size
			if i == n {
				cut = g.End
			} else if align > 0 {
				cut = (cut + align/2) / align * align
			}
			if cut <= start || cut >= g.End && i < n {
				continue
			}
			plan = append(plan, sink.Range{Start: start, End: cut})
			start = cut
		}
	}
	return plan
}

// pieceURL is the URL pieces ask for: where the first request was redirected
// to, when that is the same origin (no hop again per piece); else the URL of
// the entry, whose redirects each piece follows under the usual policy (a
// header given with -H, such as Authorization, never goes to another origin
// than the redirect policy lets it).
func pieceURL(entry string, resp *http.Response) string {
	if resp.Request == nil || resp.Request.URL == nil {
		return entry
	}
	u, err := url.Parse(entry)
	final := resp.Request.URL
	if err != nil || u.Scheme != final.Scheme || !strings.EqualFold(u.Host, final.Host) {
		return entry
	}
	return final.String()
}

// hashPrefix feeds the hash the file's bytes from hashed on, as the range from
// 0 grows, reading them back from the file; once moved is closed it catches
// up with the last prefix and returns.
func (s *split) hashPrefix(hashed int64) error {
	for {
		_, open := <-s.moved
		s.mu.Lock()
		s.record()
		prefix := int64(0)
		if len(s.snap) > 0 && s.snap[0].Start == 0 {
			prefix = s.snap[0].End
		}
		s.mu.Unlock()
		for hashed < prefix {
			buf := s.hash.buffer()
			n, err := s.rw.ReadAt(buf[:min(int64(len(buf)), prefix-hashed)], hashed)
			s.hash.submit(buf[:n])
			hashed += int64(n)
			if err != nil && hashed < prefix {
				return fmt.Errorf("hashing the bytes written: %w", err)
			}
		}
		if !open {
			return nil
		}
	}
}

func (s *split) signal() {
	select {
	case s.moved <- struct{}{}:
	default:
	}
}

// take gives a connection its next piece (nil: none left worth a connection).
// Under s.mu.
func (s *split) take() *piece {
	var p *piece
	if len(s.todo) > 0 {
		i := 0
		for j, r := range s.todo {
			if r.End-r.Start > s.todo[i].End-s.todo[i].Start {
				i = j
			}
		}
		r := s.todo[i]
		s.todo = slices.Delete(s.todo, i, i+1)
		p = &piece{start: r.Start, next: r.Start, done: r.Start, end: r.End}
	} else {
		var big *piece
		for _, a := range s.active {
			if big == nil || a.end-a.next > big.end-big.next {
				big = a
			}
		}
		if big == nil || big.end-big.next < 2*s.minSplit {
			return nil
		}
		mid := big.next + (big.end-big.next)/2
		if s.align > 0 {
			// At a part boundary next to the middle (the one below it,
			// else the one above), if the piece has one left: each part
			// is then filled by one connection. Else the piece ends
			// inside the part it is filling, and the stealer writes into
			// that part's buffer.
			if a := mid / s.align * s.align; a > big.next {
				mid = a
			} else if a := (mid + s.align - 1) / s.align * s.align; a < big.end {
				mid = a
			}
		}
		p = &piece{start: mid, next: mid, done: mid, end: big.end}
		big.end = mid
	}
	s.active = append(s.active, p)
	return p
}

// end takes p out of the active pieces: what it wrote is finished, what it
// did not goes back to the ranges nobody has. Under s.mu.
func (s *split) end(p *piece) {
	s.active = slices.DeleteFunc(s.active, func(a *piece) bool { return a == p })
	if p.done > p.start {
		s.finished = mergeRange(s.finished, sink.Range{Start: p.start, End: p.done})
	}
	if p.done < p.end {
		s.todo = append(s.todo, sink.Range{Start: p.done, End: p.end})
	}
}

// record hands the writer the ranges written so far. Under s.mu.
func (s *split) record() {
	s.snap = append(s.snap[:0], s.finished...)
	for _, p := range s.active {
		if p.done > p.start {
			s.snap = mergeRange(s.snap, sink.Range{Start: p.start, End: p.done})
		}
	}
	s.rw.SetRanges(s.snap)
}

// mergeRange adds rs to the sorted, disjoint, non-touching set and returns it
// so.
func mergeRange(set []sink.Range, rs ...sink.Range) []sink.Range {
	for _, r := range rs {
		i, _ := slices.BinarySearchFunc(set, r.Start, func(a sink.Range, x int64) int {
			return int(max(min(a.Start-x, 1), -1))
		})
		set = slices.Insert(set, i, r)
	}
	out := set[:0]
	for _, r := range set {
		if n := len(out); n > 0 && r.Start <= out[n-1].End {
			out[n-1].End = max(out[n-1].End, r.End)
			continue
		}
		out = append(out, r)
	}
	return out
}

// work runs one connection: its piece (from body, the first response's, if
// given), then the pieces it takes, until none is left or it fails for good.
func (s *split) work(p *piece, body *pacedBody) error {
	// One buffer per connection.
	var buf []byte
	if body != nil && s.firstBuf != nil {
		buf = s.firstBuf
	} else {
		bp := s.bufs.Get()
		defer s.bufs.Put(bp)
		buf = *bp
	}
	failures := 0
	for {
		var err error
		before := p.done
		if body == nil {
			s.mu.Lock()
			start, end := p.next, p.end
			s.mu.Unlock()
			if start < end {
				body, err = s.fetch(s.ctx, start, end)
			}
		}
		if body != nil {
			err = s.copy(p, body, buf)
			// Done with this response (its piece ended, or it failed): its
			// stall timer must not end the others, and its connection goes
			// (over HTTP/1.1 the rest of its body is not read).
			body.Close()
			body = nil
		}
		if err == nil {
			s.mu.Lock()
			s.end(p)
			p = s.take()
			s.record()
			s.mu.Unlock()
			if p == nil {
				return nil
			}
			continue
		}
		var le *localError
		if errors.Is(err, errSplice) || errors.As(err, &le) {
			s.cancel(err) // the others stop: no use going on
			s.giveUp(p)
			return err
		}
		if s.ctx.Err() != nil {
			s.giveUp(p)
			if c := context.Cause(s.ctx); c != nil && !errors.Is(c, s.ctx.Err()) {
				return nil // another piece's error says why
			}
			return s.ctx.Err()
		}
		if p.done > before {
			continue // a dropped connection: ask again from where it got
		}
		failures++
		if failures > s.retries || !retryable(err) {
			s.giveUp(p)
			return err
		}
		delay := s.backoff.Delay(failures)
		var se *StatusError
		if errors.As(err, &se) && se.RetryAfter > 0 {
			delay = se.RetryAfter
		}
		if retry.Sleep(s.ctx, delay) != nil {
			s.giveUp(p)
			return err
		}
	}
}

// writeAt writes p at off; waiting for a part's memory ends with the split.
func (s *split) writeAt(p []byte, off int64) (int, error) {
	if pw, ok := s.rw.(partWriter); ok {
		return pw.WriteAtContext(s.ctx, p, off)
	}
	return s.rw.WriteAt(p, off)
}

func (s *split) giveUp(p *piece) {
	s.mu.Lock()
	s.end(p)
	s.record()
	s.mu.Unlock()
}

// copy moves body into p until p ends (its end may be lowered meanwhile).
func (s *split) copy(p *piece, body *pacedBody, buf []byte) error {
	for {
		s.mu.Lock()
		left := p.end - p.next
		s.mu.Unlock()
		if left <= 0 {
			return nil
		}
		n, rerr := body.Read(buf[:min(int64(len(buf)), left)])
		if n > 0 {
			s.mu.Lock()
			n = int(min(int64(n), p.end-p.next)) // a steal may have moved the end
			off := p.next
			p.next += int64(n)
			s.mu.Unlock()
			if n > 0 {
				if _, err := s.writeAt(buf[:n], off); err != nil {
					if s.ctx.Err() != nil && errors.Is(err, s.ctx.Err()) {
						return err // the split ended while this piece waited for memory
					}
					return &localError{err}
				}
				body.stored(n)
				s.mu.Lock()
				p.done += int64(n)
				s.record()
				s.mu.Unlock()
				s.signal()
			}
		}
		if rerr == io.EOF {
			s.mu.Lock()
			short := p.next < p.end
			s.mu.Unlock()
			if short {
				return errShortBody
			}
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}
