package download

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/url"
	"strings"
	"time"

	"github.com/haul/haul/sink"
)

// process takes one entry from name to final file and returns its result.
func (e *Engine) process(ctx context.Context, ent Entry) *Result {
	t0 := time.Now()
	e.stats.InFlight.Add(1)
	defer e.stats.InFlight.Add(-1)
	r := &Result{Entry: ent, Status: StatusOK}
	if err := e.fetch(ctx, ent, r); err != nil {
		r.Status = StatusFailed
		var fe *FatalError
		if ctx.Err() != nil && !errors.As(err, &fe) {
			err = ErrInterrupted
		}
		if !errors.As(err, &fe) {
			var de *Error
			if !errors.As(err, &de) {
				err = &Error{Op: "get", URL: ent.URL, Err: err}
			}
		}
		r.Err = err
	}
	r.Duration = time.Since(t0)
	return r
}

func (e *Engine) fetch(ctx context.Context, ent Entry, r *Result) error {
	name := ent.Out
	if name == "" {
		var err error
		if name, err = e.opts.Layout.Name(ent.URL); err != nil {
			return &Error{Op: "name", URL: ent.URL, Err: err}
		}
	}
	r.Name = name
	release, err := e.claims.acquire(ctx, name, ent.URL)
	if err != nil {
		return &Error{Op: "claim", URL: ent.URL, Err: err}
	}
	defer release()
	if skip, err := e.existing(ent, r); skip || err != nil {
		return err
	}
	return e.download(ctx, ent, r)
}

// existing decides from the final file alone, without asking the server, whether
// the entry is already done (skip), must be fetched, or collides with another URL.
func (e *Engine) existing(ent Entry, r *Result) (skip bool, err error) {
	info, err := e.sink.Stat(r.Name)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if errors.Is(err, sink.ErrNotRegular) {
		return false, &Error{Op: "check", URL: ent.URL, Err: fmt.Errorf("%w: %s %v", ErrCollision, r.Name, sink.ErrNotRegular)}
	}
	if err != nil {
		return false, e.sinkError("check", ent.URL, err)
	}
	if info.Origin != "" && info.Origin != ent.URL {
		return false, &Error{Op: "check", URL: ent.URL,
			Err: fmt.Errorf("%w: %s already holds %s", ErrCollision, r.Name, info.Origin)}
	}
	// With --force, a file written before this run is fetched again; one written
	// during it (the same URL listed twice) is not. The margin covers the
	// kernel's coarse file timestamps.
	if e.opts.Force && info.ModTime.Before(e.start.Add(-20*time.Millisecond)) {
		return false, nil
	}
	if ent.Size >= 0 && info.Size != ent.Size {
		return false, nil // stale or foreign file: fetch it again
	}
	if ent.SHA256 != "" {
		sum, err := e.hashFile(r.Name)
		if err != nil {
			return false, e.sinkError("check", ent.URL, err)
		}
		if sum != ent.SHA256 {
			return false, nil
		}
		r.SHA256 = sum
	}
	r.Status, r.Size = StatusSkipped, info.Size
	return true, nil
}

func (e *Engine) hashFile(name string) (string, error) {
	f, err := e.sink.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := newHasher()
	bp := e.bufs.Get().(*[]byte)
	defer e.bufs.Put(bp)
	if _, err := io.CopyBuffer(h, f, *bp); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// sinkError wraps a local I/O error: fatal when no entry could be written.
func (e *Engine) sinkError(op, rawURL string, err error) error {
	if fatalSinkError(err) {
		return &FatalError{Err: fmt.Errorf("%s %s: %w", op, rawURL, err)}
	}
	return &Error{Op: op, URL: rawURL, Err: &localError{err}}
}

// download fetches the body into a new staging file, retrying as the network
// allows, verifies it and commits it to its final name.
func (e *Engine) download(ctx context.Context, ent Entry, r *Result) error {
	hostName := hostOf(ent.URL)
	h, err := e.hosts.acquire(ctx, hostName)
	if err != nil {
		return err
	}
	defer e.hosts.release(h)

	w, err := e.sink.Create(r.Name, ent.URL)
	if err != nil {
		return e.sinkError("create", ent.URL, err)
	}
	t := newTransfer(e, ent, w)
	defer t.close()
	if err := e.retry(ctx, h, t, r); err != nil {
		w.Abort()
		return err
	}
	r.Size = t.written
	if err := t.verify(r); err != nil {
		w.Abort()
		return &Error{Op: "verify", URL: ent.URL, Err: err}
	}
	if err := w.Commit(); err != nil {
		return e.sinkError("commit", ent.URL, err)
	}
	return nil
}

// retry runs attempts until one succeeds, one fails for good, or the retries
// are spent. Only an attempt that brought no new bytes counts against --retries,
// so a long download over a flaky link keeps going.
func (e *Engine) retry(ctx context.Context, h *host, t *transfer, r *Result) error {
	failures := 0
	for {
		if err := e.hosts.wait(ctx, h); err != nil {
			return err
		}
		r.Attempts++
		before := t.best
		err := t.attempt(ctx, r)
		if err == nil {
			return nil
		}
		var le *localError
		if errors.As(err, &le) {
			return e.sinkError("write", t.ent.URL, le.err)
		}
		err = &Error{Op: "get", URL: t.ent.URL, Err: err}
		if ctx.Err() != nil || !retryable(err) {
			return err
		}
		delay := time.Duration(0)
		if t.best <= before {
			failures++
			delay = e.backoff(failures)
		}
		if failures > e.opts.Retries {
			return err
		}
		var se *StatusError
		if errors.As(err, &se) {
			if se.RetryAfter > 0 {
				delay = se.RetryAfter
			}
			if se.Code == 429 || se.Code == 503 {
				e.hosts.pause(h, delay) // every worker waits for this host
				continue
			}
		}
		if err := sleep(ctx, delay); err != nil {
			return err
		}
	}
}

// backoff is exponential with full jitter: uniform in [d/2, d), d = base * 2^(n-1)
// capped at RetryMax.
func (e *Engine) backoff(n int) time.Duration {
	d := e.opts.RetryBase << min(n-1, 20)
	if d > e.opts.RetryMax || d <= 0 {
		d = e.opts.RetryMax
	}
	return d/2 + rand.N(d/2+1)
}

func hostOf(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return ""
	}
	return strings.ToLower(u.Host)
}
