package download

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/haul/haul/download/httpclient"
)

// exchange is one GET of a transfer: an attempt's, or a piece's of a split
// body. Its context is cancelled with ErrStalled when nothing arrives for
// --timeout; each redirect hop and each read that brings bytes push that
// deadline back. Its request carries the run's header (-H, User-Agent),
// shared and read-only until a field is set: set clones it first.
type exchange struct {
	d      *transferDeps
	ctx    context.Context
	cancel context.CancelCauseFunc
	stall  *time.Timer
	req    *http.Request
	own    bool // req.Header is the request's own, not the shared one
	// pushed: when a read last pushed the stall deadline back (pushStall);
	// the zero time: not yet, or the timer was stopped.
	pushed time.Time
	// gate is the host the request goes to (the zero gate: none): it waits
	// for the host's rate before it is sent, and tells the host how it was
	// answered.
	gate hostGate
}

// hostGate is one host of the hosts table, as a request to it sees it.
type hostGate struct {
	hs *hosts
	h  *host
}

// newExchange builds the request for rawURL under ctx, with its stall timer
// running. piece marks the request of a piece (httpclient.WithPiece). The
// caller ends it (end, or Close of its body).
func (d *transferDeps) newExchange(ctx context.Context, rawURL string, piece bool) (*exchange, error) {
	cctx, cancel := context.WithCancelCause(ctx)
	x := &exchange{d: d, ctx: cctx, cancel: cancel}
	x.stall = time.AfterFunc(d.timeout, func() { cancel(ErrStalled) })
	// Each redirect hop is progress: --timeout bounds every hop, not the chain.
	rctx := httpclient.WithHop(cctx, x.progress)
	if piece {
		rctx = httpclient.WithPiece(rctx)
	}
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, rawURL, nil)
	if err != nil {
		x.end()
		return nil, err
	}
	x.req, x.own = req, true
	if d.header != nil {
		req.Header, x.own = d.header, false
		if host := req.Header.Get("Host"); host != "" {
			req.Host = host // as curl -H 'Host: …' (net/http ignores a Host header)
		}
	}
	return x, nil
}

// set sets a header field of this request only.
func (x *exchange) set(key, value string) {
	if !x.own {
		x.req.Header, x.own = x.req.Header.Clone(), true
	}
	x.req.Header.Set(key, value)
}

// setRange asks for the bytes from start to end (exclusive; -1: to the
// file's end), if the file is still the one validator names (If-Range).
func (x *exchange) setRange(start, end int64, validator string) {
	r := "bytes=" + strconv.FormatInt(start, 10) + "-"
	if end >= 0 {
		r += strconv.FormatInt(end-1, 10)
	}
	x.set("Range", r)
	x.set("If-Range", validator)
}

// do sends the request, once its host's rate lets it go (waiting for that is
// not the network stalling: the stall timer stops meanwhile). The status of
// the response (after any redirects) goes to the host's cap (hosts.answered).
func (x *exchange) do() (*http.Response, error) {
	g := x.gate
	if g.h != nil && g.hs.paced.Load() {
		x.stall.Stop()
		err := g.hs.pace(x.ctx, g.h)
		x.stall.Reset(x.d.timeout)
		if err != nil {
			return nil, err
		}
	}
	resp, err := x.d.client.Do(x.req)
	if err == nil && g.h != nil {
		g.hs.answered(g.h, resp.StatusCode)
	}
	return resp, x.stalled(err)
}

// progress pushes the stall deadline back.
func (x *exchange) progress() { x.stall.Reset(x.d.timeout) }

// pushStall pushes the stall deadline back after a read that brought bytes:
// to --timeout and an eighth from now, but only once an eighth of --timeout
// has passed since it was last pushed, so an attempt stops between --timeout
// and --timeout and an eighth after its last byte. Resetting a runtime timer
// on every read wakes the thread parked in the network poller each time: on
// loopback that cost a sixth of the copy's CPU.
func (x *exchange) pushStall() {
	now := time.Now()
	if x.pushed.IsZero() || now.Sub(x.pushed) >= x.d.timeout/8 {
		x.stall.Reset(x.d.timeout + x.d.timeout/8)
		x.pushed = now
	}
}

// end stops the stall timer and ends the request's context.
func (x *exchange) end() {
	x.stall.Stop()
	x.cancel(nil)
}

// stalled turns an error caused by the stall timer into ErrStalled.
func (x *exchange) stalled(err error) error {
	if err != nil && errors.Is(context.Cause(x.ctx), ErrStalled) {
		return fmt.Errorf("%w: no data for %s", ErrStalled, x.d.timeout)
	}
	return err
}

// body returns r, read under this exchange's stall timer and paced by
// --limit-rate. Closing it closes c (if not nil) and ends the exchange.
func (x *exchange) body(r io.Reader, c io.Closer) *pacedBody {
	return &pacedBody{r: r, c: c, x: x}
}

// pacedBody is a response body as a transfer reads it. A read returns at
// most --limit-rate's burst, and returns once the limiter lets its bytes
// through, with the stall timer stopped meanwhile: waiting for the limiter is
// not the network stalling. Bytes that arrive push the stall deadline back.
// The reader counts the bytes it stores with stored (Stats.Bytes).
type pacedBody struct {
	r io.Reader
	c io.Closer
	x *exchange
}

func (b *pacedBody) Read(p []byte) (int, error) {
	x := b.x
	lim := x.d.limiter
	if lim != nil {
		p = p[:min(len(p), lim.Burst())]
	}
	n, err := b.r.Read(p)
	if n == 0 {
		return 0, x.stalled(err)
	}
	if lim != nil {
		x.stall.Stop()
		if werr := lim.WaitN(x.ctx, n); werr != nil {
			return 0, x.stalled(werr)
		}
		x.pushed = time.Time{}
	}
	x.pushStall()
	if err != nil && err != io.EOF {
		err = x.stalled(err)
	}
	return n, err
}

// stored counts n bytes of the body written where they belong.
func (b *pacedBody) stored(n int) { b.x.d.bytes.Add(int64(n)) }

// abort ends the exchange's context with cause: a read in progress returns.
func (b *pacedBody) abort(cause error) { b.x.cancel(cause) }

// Close closes the body, then ends the exchange.
func (b *pacedBody) Close() error {
	var err error
	if b.c != nil {
		err = b.c.Close()
	}
	b.x.end()
	return err
}
