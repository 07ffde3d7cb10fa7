package download

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/net/http/httpguts"
	"golang.org/x/time/rate"

	"github.com/haul/haul/download/internal/retry"
	"github.com/haul/haul/sink"
)

// transferDeps is what a transfer uses of the engine: built once per run,
// read-only, shared by every transfer.
type transferDeps struct {
	client  HTTPClient
	header  http.Header   // sent with every request; never modified (cloned first)
	timeout time.Duration // --timeout: no progress for this long stops an attempt
	decode  bool          // --compressed
	hashAll bool          // --sha256: hash every file
	limiter *rate.Limiter // --limit-rate, nil: none
	bufs    *buffers
	big     *buffers      // bigBufSize buffers, taken with TryGet; nil: none
	fit     *buffers      // smallBufSize buffers, for a body known to fit one; nil: none
	bytes   *atomic.Int64 // Stats.Bytes
	// split and minSplit are --split and --min-split-size (split.go); a
	// piece that gets no byte is tried retries+1 times, backoff apart.
	split    int
	minSplit int64
	// splitBelow: a file is split only once its first connection runs
	// slower than this (bytes/s); < 0: at once (copyUntilSlow).
	splitBelow int64
	retries    int
	backoff    retry.Backoff
}

// transfer is the state of one entry's body across attempts: how much is written,
// the validator that makes appending to it safe, and the running hash.
type transfer struct {
	d         *transferDeps
	ent       Entry
	w         sink.Writer
	written   int64  // bytes in the staging file
	best      int64  // most bytes ever written (progress, for the retry budget)
	total     int64  // full length from the server, -1 if unknown
	validator string // strong ETag or Last-Modified of what is written, "" if none
	hash      *asyncHash
	buf       *[]byte
	from      *buffers // the pool buf came from: d.bufs, d.big or d.fit
	raw       *rawBody // the encoded body under the decoder (--compressed), nil if none
	// responded: the last attempt got a response head (any status), so its
	// host is up.
	responded bool
	// multiplexed, if set, is called when an attempt's first request gets a
	// connection that speaks HTTP/2 (see multiplexTrace).
	multiplexed func()
	// cond, with --update, asks whether the file on disk changed; used only
	// while nothing is written (a partial of the new version is resumed).
	cond     *conditional
	condSent bool // the last request asked it (a 304 answers only that)
	// done: ranges past written that are written too (a split body, see
	// split.go), sorted, disjoint, none touching written. ranged: the writer
	// is in ranged mode (its record lists ranges). noSplit: a piece's response
	// did not match, the file goes on over one connection.
	done    []sink.Range
	ranged  bool
	noSplit bool
	// slot takes one more connection to the entry's host (--per-host) for a
	// piece, without waiting; nil: no cap.
	slot func() (release func(), ok bool)
	// gate is the entry's host, for its requests' rate and cap (exchange).
	gate hostGate
	// contentType is the Content-Type of the response the body is from.
	contentType string
}

// resuming reports whether bytes of the body are kept.
func (t *transfer) resuming() bool { return t.written > 0 || len(t.done) > 0 }

// conditional is --update's question about a final file: If-None-Match with
// the ETag it was written from, else If-Modified-Since.
type conditional struct {
	etag  string
	since string // an HTTP date
}

func (c *conditional) String() string {
	if c.etag != "" {
		return "If-None-Match: " + c.etag
	}
	return "If-Modified-Since: " + c.since
}

// errNotModified: the server answered --update's conditional request with
// 304: the file on disk is current.
var errNotModified = errors.New("not modified")

// rawBody records how the encoded body under a decoder ended, so that an error
// from the decoder can be told from one of the connection.
type rawBody struct {
	r   io.Reader
	err error
}

func (b *rawBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil {
		b.err = err
	}
	return n, err
}

// newTransfer starts from what the writer kept of an earlier run. When a hash is
// wanted, the kept bytes are hashed first, so the hash covers the whole file.
// An error is the sink's (reading the kept bytes).
func newTransfer(d *transferDeps, ent Entry, w sink.Writer) (*transfer, error) {
	p := w.Partial()
	t := &transfer{d: d, ent: ent, w: w, total: -1}
	if p.Offset > 0 || p.Done != nil {
		t.written, t.best, t.total, t.validator, t.done = p.Offset, p.Offset, p.Total, p.Validator, p.Done
		for _, r := range p.Done {
			t.best += r.End - r.Start
		}
		if !usableValidator(t.validator) {
			// Kept by an older haul, or damaged: it cannot go in If-Range, and
			// without it the kept bytes cannot be trusted. The first attempt
			// starts the file over.
			t.validator = ""
		}
	}
	if ent.SHA256 == "" && !d.hashAll {
		return t, nil // its buffer is taken at the first read (buffer)
	}
	t.hash = newAsyncHash(d.bufs)
	if p.Offset > 0 {
		err := t.hashPrefix()
		if errors.Is(err, sink.ErrNoPrefix) {
			// An object store's upload keeps its parts where they cannot be
			// read back to hash: the body starts over.
			err = t.restart()
			t.best, t.total, t.validator = 0, -1, ""
		}
		if err != nil {
			t.close()
			return nil, err
		}
	}
	return t, nil
}

// hashPrefix feeds the bytes already in the staging file to the hash. They
// must be exactly the Partial's bytes: a decoder cut short also ends in
// io.ErrUnexpectedEOF, and a short prefix hashed as whole would be a wrong hash.
func (t *transfer) hashPrefix() error {
	r := t.w.Prefix()
	var got int64
	for {
		buf := t.hash.buffer()
		n, err := io.ReadFull(r, buf)
		got += int64(max(n, 0))
		t.hash.submit(buf[:max(n, 0)])
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			if got != t.written {
				return fmt.Errorf("kept bytes: read %d, want %d", got, t.written)
			}
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (t *transfer) close() {
	if t.hash != nil {
		t.hash.close()
	}
	if t.buf != nil {
		t.from.Put(t.buf)
	}
}

// grow swaps the copy buffer for a big one (see bigBufSize) once a body past
// growAt still fills every read, if one is free.
func (t *transfer) grow() {
	if t.d.big == nil || t.from == t.d.big || t.hash != nil || t.written < growAt {
		return
	}
	if bp := t.d.big.TryGet(); bp != nil {
		t.from.Put(t.buf)
		t.buf, t.from = bp, t.d.big
	}
}

// attempt makes one request and streams its body to the writer. It resumes with
// Range + If-Range when bytes are already written and a validator guards them.
func (t *transfer) attempt(ctx context.Context, r *Result) error {
	if t.multiplexed != nil {
		// The engine learns at connection time that the host speaks HTTP/2.
		ctx = httptrace.WithClientTrace(ctx, multiplexTrace(t.multiplexed))
	}
	x, err := t.d.newExchange(ctx, t.ent.URL, false)
	if err != nil {
		return err
	}
	x.gate = t.gate
	defer x.end()
	if t.resuming() && t.validator != "" {
		x.setRange(t.written, -1, t.validator)
		// A range of an encoded body is not a range of the stored (decoded)
		// bytes: a resume asks for the identity representation (no
		// Accept-Encoding), whose bytes the stored ones are.
	} else if t.d.decode {
		x.set("Accept-Encoding", "zstd, gzip")
	}
	t.condSent = t.cond != nil && !t.resuming()
	if t.condSent {
		if t.cond.etag != "" {
			x.set("If-None-Match", t.cond.etag)
		} else {
			x.set("If-Modified-Since", t.cond.since)
		}
	}
	if t.resuming() && t.validator == "" {
		if err := t.restart(); err != nil {
			return err
		}
	}
	t.responded = false
	resp, err := x.do()
	if err != nil {
		return err
	}
	t.responded = true
	defer resp.Body.Close()
	r.HTTPStatus = resp.StatusCode
	if done, err := t.accept(resp); done || err != nil {
		if errors.Is(err, errStartOver) {
			// What is kept cannot be continued: start over at once, without
			// spending a retry (the next request has no Range, so this recurses
			// once at most).
			resp.Body.Close()
			x.stall.Stop()
			return t.attempt(ctx, r)
		}
		return err
	}
	body, err := t.decode(resp)
	if err != nil {
		return x.stalled(err)
	}
	defer body.Close()
	conns := t.splitConns(resp)
	first := x.body(resp.Body, resp.Body)
	if conns > 1 && !t.ranged && t.done == nil && t.d.splitBelow > 0 {
		// More connections only where the first one is slow: the body goes
		// on in order until it ends or its rate drops below splitBelow.
		slow, err := t.copyUntilSlow(first)
		if err != nil {
			return err
		}
		if !slow || t.total-t.written < 2*t.d.minSplit {
			conns = 0 // on in order (or already at the end)
		}
	}
	if conns > 0 {
		err := t.runSplit(ctx, first, resp, conns)
		if errors.Is(err, errStartOver) {
			// A piece's response was not of this file: the pieces are
			// discarded, and the file starts over on one connection.
			t.noSplit = true
			resp.Body.Close()
			x.stall.Stop()
			return t.attempt(ctx, r)
		}
		return err
	}
	if t.ranged || t.done != nil {
		// Not split this time: the body goes on in order from written,
		// over whatever pieces wrote past it.
		if rw, ok := t.w.(sink.RangeWriter); ok && t.ranged {
			if err := rw.EndRanges(t.written); err != nil {
				return &localError{err}
			}
		}
		t.ranged, t.done = false, nil
	}
	if err := t.copy(x.body(body, nil)); err != nil {
		var le *localError
		if t.raw != nil && t.raw.err == nil && x.ctx.Err() == nil && !errors.As(err, &le) {
			// The decoder failed on bytes the connection delivered whole: the
			// encoded stream is corrupt (a bad block or checksum), and what it
			// decoded before noticing cannot be trusted. Start the file over.
			t.forget(err)
			return fmt.Errorf("corrupt %s body: %w", resp.Header.Get("Content-Encoding"), err)
		}
		return x.stalled(err)
	}
	// A body with neither a length nor chunked framing ends when the server
	// closes the connection (RFC 9112 §6.3, HTTP/1 only): a cut connection
	// looks the same as the end, so only size= or sha256= can confirm it.
	r.CloseDelimited = resp.ProtoMajor == 1 && resp.ContentLength < 0 && len(resp.TransferEncoding) == 0 &&
		t.total < 0
	if resp.StatusCode == http.StatusPartialContent && t.total >= 0 && t.written < t.total {
		// A range that stops short of the end (or a server that sends the file
		// in pieces): ask for the rest.
		return fmt.Errorf("%w: range ended at %d of %d", errShortBody, t.written, t.total)
	}
	return nil
}

// multiplexTrace calls h2 when the first connection an attempt gets (that of
// its first request: the entry's own host, whatever the redirects after it)
// speaks HTTP/2, as the client gets it, before the request is sent on it:
// entries waiting for the host learn it without waiting a round trip. Each
// client tells the trace as net/http's Transport does (GotConn), through a
// proxy's CONNECT tunnel too.
func multiplexTrace(h2 func()) *httptrace.ClientTrace {
	var first atomic.Bool
	return &httptrace.ClientTrace{GotConn: func(ci httptrace.GotConnInfo) {
		if !first.CompareAndSwap(false, true) {
			return
		}
		if tc, ok := ci.Conn.(*tls.Conn); ok && tc.ConnectionState().NegotiatedProtocol == "h2" {
			h2()
		}
	}}
}

// accept checks the response and positions the writer: append after a matching
// 206, start over after a 200. done reports that the file was already complete.
func (t *transfer) accept(resp *http.Response) (done bool, err error) {
	switch {
	case resp.StatusCode == http.StatusNotModified && t.condSent:
		return false, errNotModified
	case resp.StatusCode == http.StatusOK:
		if cr := resp.Header.Get("Content-Range"); cr != "" && !wholeRange(cr, resp.ContentLength) {
			// A 200 is the whole file; one that says it carries part of it is
			// not (some servers answer a Range so). Storing it would commit a
			// part as the file: start over without Range, and give up if the
			// server answers a plain request that way too.
			err := fmt.Errorf("200 OK with Content-Range %q: not the whole file", cr)
			if t.resuming() {
				return false, t.forget(err)
			}
			return false, retry.Final(err)
		}
		if t.resuming() {
			if err := t.restart(); err != nil {
				return false, err
			}
		}
		t.total = resp.ContentLength
		t.validator = validatorOf(resp.Header)
		if t.d.decode && resp.Header.Get("Content-Encoding") != "" {
			// Stored decoded (--compressed): Content-Length counts encoded bytes,
			// and an ETag names the encoded variant, so neither fits what is
			// stored. The decoded bytes are the identity representation, though,
			// and Last-Modified dates that too: a resume asks for identity bytes
			// from the decoded offset, guarded by If-Range with that date.
			t.total, t.validator = -1, strongLastModified(resp.Header)
		}
		t.w.SetValidator(t.validator, t.total)
	case resp.StatusCode == http.StatusPartialContent && t.resuming() && t.d.decode && encoded(resp.Header):
		// A range of an encoded body (as a store that keeps files gzipped
		// serves them) is not a range of the decoded bytes kept.
		return false, t.forget(fmt.Errorf("range of the %s-encoded body, not of the bytes kept", resp.Header.Get("Content-Encoding")))
	case resp.StatusCode == http.StatusPartialContent && t.resuming():
		start, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != t.written || (t.total >= 0 && total >= 0 && total != t.total) {
			return false, t.forget(fmt.Errorf("unexpected Content-Range %q for offset %d of %d",
				resp.Header.Get("Content-Range"), t.written, t.total))
		}
		// If-Range should have turned a changed file into a 200; a server that
		// ignores it sends the new file's range under the new validator.
		if v := sameKindValidator(resp.Header, t.validator); v != "" && v != t.validator {
			return false, t.forget(fmt.Errorf("the file changed on the server (validator %s, was %s)", v, t.validator))
		}
		if total >= 0 {
			t.total = total
		} // "/*": the length stays what the first response announced
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && t.written > 0 && t.written == t.total:
		return true, nil // everything was already here
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && t.resuming():
		// The file is shorter than what is kept (or its length was never known):
		// the kept bytes are no use.
		return false, t.forget(fmt.Errorf("range from %d not satisfiable", t.written))
	default:
		return false, statusError(resp)
	}
	if t.ent.Size >= 0 && t.total >= 0 && t.total != t.ent.Size {
		return false, fmt.Errorf("%w: server announces %d bytes, size= says %d", ErrBadLength, t.total, t.ent.Size)
	}
	// Recorded with the file, so that --update can ask whether it changed.
	// A value that cannot be sent back is not kept.
	etag, lm := resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	if !usableValidator(etag) {
		etag = ""
	}
	if _, err := http.ParseTime(lm); err != nil {
		lm = ""
	}
	t.w.SetCacheValidators(etag, lm)
	t.contentType = resp.Header.Get("Content-Type")
	return false, nil
}

// decode returns the body to store: as sent, or decoded when --compressed asked
// for an encoding and the server used one. Go's body reader has already checked
// the encoded bytes against Content-Length.
func (t *transfer) decode(resp *http.Response) (io.ReadCloser, error) {
	ce := strings.ToLower(strings.TrimSpace(resp.Header.Get("Content-Encoding")))
	t.raw = nil
	if !t.d.decode || ce == "" || ce == "identity" {
		return io.NopCloser(resp.Body), nil
	}
	t.raw = &rawBody{r: resp.Body}
	switch ce {
	case "gzip", "x-gzip":
		return gzip.NewReader(t.raw)
	case "zstd":
		d, err := zstd.NewReader(t.raw, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	}
	return nil, retry.Final(fmt.Errorf("unsupported Content-Encoding %q", ce))
}

// encoded reports whether h has a Content-Encoding other than identity.
func encoded(h http.Header) bool {
	ce := strings.ToLower(strings.TrimSpace(h.Get("Content-Encoding")))
	return ce != "" && ce != "identity"
}

// forget drops the validator after a response that cannot be appended, so the
// file starts over (never a splice).
func (t *transfer) forget(err error) error {
	t.validator = ""
	t.w.SetValidator("", -1)
	return fmt.Errorf("%w: %w", errStartOver, err)
}

// errStartOver: the response cannot be appended to the bytes kept; attempt
// starts the file over.
var errStartOver = errors.New("starting over")

func (t *transfer) restart() error {
	if err := t.w.Restart(); err != nil {
		return &localError{err}
	}
	t.written, t.done, t.ranged = 0, nil, false
	if t.hash != nil {
		t.hash.reset()
	}
	return nil
}

// copy streams body into the writer chunk by chunk, feeding the hash on
// another goroutine; body paces the reads and pushes the stall deadline back.
func (t *transfer) copy(body *pacedBody) error {
	for {
		n, rerr := t.chunk(body)
		if n < 0 {
			return rerr
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// splitProbe is how long copyUntilSlow lets the first connection run before
// its rate counts: a slow link gets its pieces that late.
const splitProbe = 50 * time.Millisecond

// copyUntilSlow copies body as copy does until it ends (slow false) or its
// rate since the start, past splitProbe, is below splitBelow (slow true: the
// rest may be split). The rate since the start, not over a recent window: a
// moment's pause (another process on the CPU) does not split a fast link,
// and a link that slows down for good still falls below in time.
func (t *transfer) copyUntilSlow(body *pacedBody) (slow bool, err error) {
	start, from := time.Now(), t.written
	for {
		n, rerr := t.chunk(body)
		if n < 0 || rerr != nil {
			if rerr == io.EOF {
				rerr = nil
			}
			return false, rerr
		}
		if el := time.Since(start); el >= splitProbe &&
			float64(t.written-from) < float64(t.d.splitBelow)*el.Seconds() {
			return true, nil
		}
	}
}

// chunk moves one read's worth of bytes from body to the writer and the hash.
// n < 0 means a local failure (err). Every buffer taken is handed back.
func (t *transfer) chunk(body *pacedBody) (n int, err error) {
	buf := t.buffer()
	n, err = body.Read(buf)
	if t.hash != nil {
		defer func() { t.hash.submit(buf[:max(n, 0)]) }()
	}
	if n == 0 {
		return 0, err
	}
	if _, werr := t.w.Write(buf[:n]); werr != nil {
		return -1, &localError{werr}
	}
	t.written += int64(n)
	if t.ent.Size >= 0 && t.written > t.ent.Size {
		// A body with no length (chunked, or read to the close) is bounded by
		// size= as it arrives, not at the end: an endless one would fill the disk.
		return -1, fmt.Errorf("%w: more than the %d bytes size= says", ErrBadLength, t.ent.Size)
	}
	t.best = max(t.best, t.written)
	body.stored(n)
	if n == len(buf) {
		t.grow()
	}
	return n, err
}

func (t *transfer) buffer() []byte {
	if t.hash != nil {
		return t.hash.buffer()
	}
	// What is left of the body, when its length is known, fits a small
	// buffer: one of bufSize for each of --jobs small files would hold
	// megabytes that the reads never fill.
	fits := t.d.fit != nil && t.total >= 0 && t.total-t.written <= smallBufSize
	if t.buf != nil && t.from == t.d.fit && !fits { // this attempt's body is longer than the last's
		t.from.Put(t.buf)
		t.buf = nil
	}
	if t.buf == nil {
		// Not before: over HTTP/2 most entries in flight wait for their
		// response head, and need no buffer meanwhile.
		pool := t.d.bufs
		if fits {
			pool = t.d.fit
		}
		t.buf, t.from = pool.Get(), pool
	}
	return *t.buf
}

// verify checks what arrived against Content-Length, size= and sha256=.
func (t *transfer) verify(r *Result) error {
	if t.total >= 0 && t.written != t.total {
		return fmt.Errorf("%w: got %d bytes, Content-Length said %d", ErrBadLength, t.written, t.total)
	}
	if t.ent.Size >= 0 && t.written != t.ent.Size {
		return fmt.Errorf("%w: got %d bytes, size= says %d", ErrBadLength, t.written, t.ent.Size)
	}
	if t.hash == nil {
		return nil
	}
	r.SHA256 = hex.EncodeToString(t.hash.sum())
	if t.ent.SHA256 != "" && r.SHA256 != t.ent.SHA256 {
		return fmt.Errorf("%w: expected %s, got %s", ErrBadChecksum, t.ent.SHA256, r.SHA256)
	}
	return nil
}

// validatorOf returns what If-Range may carry: a strong ETag, else a strong
// Last-Modified, else "".
func validatorOf(h http.Header) string {
	if et := h.Get("ETag"); usableValidator(et) && !strings.HasPrefix(et, "W/") {
		return et
	}
	return strongLastModified(h)
}

// usableValidator reports whether v can be sent back in If-Range: an ETag
// holding a control byte (or a line break) would make every resume request
// unsendable, on every run, as if the network failed.
func usableValidator(v string) bool {
	return v != "" && v == strings.TrimSpace(v) && httpguts.ValidHeaderFieldValue(v)
}

// strongLastModified returns Last-Modified if it is a strong validator: at least
// a second before the response's Date (RFC 9110, 8.8.2.2). A file modified in the
// second it was served may change again within that second under the same date,
// so resuming on it could splice two versions.
func strongLastModified(h http.Header) string {
	lm := h.Get("Last-Modified")
	m, err := http.ParseTime(lm)
	if err != nil {
		return ""
	}
	d, err := http.ParseTime(h.Get("Date"))
	if err != nil || d.Sub(m) < time.Second {
		return ""
	}
	return lm
}

// sameKindValidator returns the response's validator of the kind stored (a
// Last-Modified when stored is an HTTP date, else an ETag, quoted or not: some
// servers send them bare), "" if it sent none.
func sameKindValidator(h http.Header, stored string) string {
	if _, err := http.ParseTime(stored); err == nil {
		return h.Get("Last-Modified")
	}
	return h.Get("ETag")
}

// parseContentRange parses "bytes START-END/TOTAL" (TOTAL may be "*").
// wholeRange reports whether Content-Range cr covers a whole body of length n
// (-1 unknown): "bytes 0-(N-1)/N".
func wholeRange(cr string, n int64) bool {
	start, total, ok := parseContentRange(cr)
	return ok && start == 0 && total >= 0 && (n < 0 || n == total) &&
		strings.HasPrefix(cr, "bytes 0-"+strconv.FormatInt(total-1, 10)+"/")
}

func parseContentRange(s string) (start, total int64, ok bool) {
	rest, found := strings.CutPrefix(s, "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, tot, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, false
	}
	a, b, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, false
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || start < 0 || end < start {
		return 0, 0, false
	}
	total = -1
	if tot != "*" {
		n, err := strconv.ParseInt(tot, 10, 64)
		if err != nil || n <= end {
			return 0, 0, false
		}
		total = n
	}
	return start, total, true
}
