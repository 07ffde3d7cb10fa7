package download

import (
	"github.com/haul/haul/internal/urlid"

	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"syscall"
	"time"

	"github.com/haul/haul/sink"
)

// process takes one entry from name to final file. Its result is reported by
// finish, maybe after process returns: a download ends when the sink's group
// commit has made it durable, while the worker is already on its next entry. The
// entry's name stays claimed until then.
//
// An entry whose host pauses it (429/503) in its retry loop is parked (see
// download) and comes back here, with what it had (j.st), when the pause ends.
func (e *Engine) process(ctx context.Context, j job) {
	ent := j.ent
	// An entry for a host that asked to be left alone (429/503) waits aside, so
	// that this worker serves other hosts meanwhile.
	if d := e.hosts.pausedFor(urlid.HostKey(ent.URL)); d > 0 && e.parking.park(j, d) {
		return
	}
	var r *Result
	var t0 time.Time
	failures := 0
	if j.st != nil {
		r, t0, failures = j.st.r, j.st.t0, j.st.failures
	} else {
		r, t0 = &Result{Entry: ent, Status: StatusOK}, time.Now()
		// A parked entry stays counted in flight: its result is still owed.
		e.stats.InFlight.Add(1)
	}
	fail := func(err error) { e.finish(ctx, r, t0, err) }
	name := ent.Out
	if name == "" {
		var err error
		if name, err = e.opts.Layout.Name(ent.URL); err != nil {
			fail(&Error{Op: "name", URL: ent.URL, Err: err})
			return
		}
	}
	r.Name = name
	release, err := e.claims.acquire(ctx, name, ent.URL)
	if err != nil {
		fail(&Error{Op: "claim", URL: ent.URL, Err: err})
		return
	}
	done := func(err error) {
		release(err)
		e.finish(ctx, r, t0, err)
	}
	skip, replace, err := e.existing(ent, r)
	if skip || err != nil {
		done(err)
		return
	}
	if e.download(ctx, ent, r, replace, j.st != nil, &failures, done) {
		// Parked in its retry loop: the name, the host slot and the staging
		// file are let go for the pause (another worker may take them), and
		// taken again when it comes back.
		release(nil)
		st := &started{r: r, t0: t0, failures: failures}
		e.parking.put(job{ent: ent, st: st}, e.hosts.pausedFor(urlid.HostKey(ent.URL)))
	}
}

// finish records the outcome of an entry. It is called once per entry, from the
// worker or from the sink's committer.
func (e *Engine) finish(ctx context.Context, r *Result, t0 time.Time, err error) {
	if err != nil {
		r.Status = StatusFailed
		var fe *FatalError
		switch {
		case errors.As(err, &fe):
			e.cancel(fe) // no later entry can be written either
		case ctx.Err() != nil:
			err = &Error{Op: "get", URL: r.Entry.URL, Err: ErrInterrupted}
			e.interrupted.Store(true)
		}
		r.Err = err
	}
	r.Duration = time.Since(t0)
	e.stats.InFlight.Add(-1)
	e.stats.count(r.Status)
	e.opts.OnResult(r)
}

// existing decides from the final file alone, without asking the server, whether
// the entry is already done (skip), must be fetched, or collides with another URL.
// replace says that a file is there and the download is to replace it.
func (e *Engine) existing(ent Entry, r *Result) (skip, replace bool, err error) {
	info, err := e.sink.Stat(r.Name)
	if errors.Is(err, fs.ErrNotExist) {
		return false, false, nil
	}
	if errors.Is(err, sink.ErrNotRegular) {
		return false, false, &Error{Op: "check", URL: ent.URL, Err: fmt.Errorf("%w: %s %v", ErrCollision, r.Name, sink.ErrNotRegular)}
	}
	if err != nil {
		return false, false, e.sinkError("check", ent.URL, err)
	}
	if info.Origin != "" && !urlid.Same(info.Origin, ent.URL) {
		return false, false, &Error{Op: "check", URL: ent.URL,
			Err: fmt.Errorf("%w: %s already holds %q", ErrCollision, r.Name, info.Origin)}
	}
	// With --force, a file written before this run is fetched again; one written
	// during it (the same URL listed twice) is not. The sink's run tag tells
	// them apart (without extended attributes, every file is fetched again).
	if e.opts.Force && (e.opts.RunTag == "" || info.RunTag != e.opts.RunTag) {
		return false, true, nil
	}
	if ent.Size >= 0 && info.Size != ent.Size {
		return false, true, nil // stale or foreign file: fetch it again
	}
	if ent.SHA256 != "" {
		sum, err := e.hashFile(r.Name)
		if errors.Is(err, sink.ErrCorrupt) {
			return false, true, nil // a damaged compressed file: fetch it again
		}
		if err != nil {
			return false, false, e.sinkError("check", ent.URL, err)
		}
		if sum != ent.SHA256 {
			return false, true, nil
		}
		r.SHA256 = sum
	}
	r.Status, r.Size = StatusSkipped, info.Size
	return true, false, nil
}

func (e *Engine) hashFile(name string) (string, error) {
	f, err := e.sink.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := newHasher()
	bp := e.bufs.Get()
	defer e.bufs.Put(bp)
	if _, err := io.CopyBuffer(h, f, *bp); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// writable reports whether the sink's directory is writable, as far as it can
// tell: a permission error then concerns one entry, not the whole run.
func (e *Engine) writable() bool {
	w, ok := e.sink.(interface{ Writable() error })
	return !ok || w.Writable() == nil
}

// sinkError wraps a local I/O error: fatal when no entry could be written.
func (e *Engine) sinkError(op, rawURL string, err error) error {
	if fatalSinkError(err) || errors.Is(err, syscall.EACCES) && !e.writable() {
		return &FatalError{Err: fmt.Errorf("%s %s: %w", op, rawURL, err)}
	}
	return &Error{Op: op, URL: rawURL, Err: &localError{err}}
}

// download fetches the body into a new staging file, retrying as the network
// allows, verifies it and commits it to its final name. It calls done once,
// unless it returns parked: the entry's host paused it (429/503) in its retry
// loop and a place in the parking is reserved for it. Its staging file is then
// aborted, with its progress saved, and its host slot released; the caller
// parks it, and its next download resumes the file (resumed) where the retry
// loop left it (failures: attempts that brought nothing so far).
func (e *Engine) download(ctx context.Context, ent Entry, r *Result, replace, resumed bool, failures *int, done func(error)) (parked bool) {
	h, err := e.hosts.acquire(ctx, urlid.HostKey(ent.URL))
	if err != nil {
		done(err)
		return false
	}
	defer e.hosts.release(h)

	w, err := e.create(ctx, ent, r, replace, resumed)
	if w == nil || err != nil {
		done(err) // nil: another process finished the file meanwhile
		return false
	}
	t, err := newTransfer(e, ent, w)
	if err != nil {
		w.Abort()
		done(err)
		return false
	}
	defer t.close()
	if err := e.retry(ctx, h, t, r, failures); err != nil {
		// Parked, the Writer is aborted rather than kept open: an open one
		// holds a file descriptor, the staging file's lock, a directory handle
		// and, compressing, an encoder of up to megabytes, and up to
		// max(64, 4*jobs) entries can be parked, which would multiply the
		// memory bound set by --jobs. Abort saves the progress; Create finds it
		// again and the next attempt resumes it with Range + If-Range (an
		// entry parked after a 429 on its first attempt has no bytes anyway).
		if errors.Is(err, ErrBadLength) && !errors.Is(err, errShortBody) {
			w.Discard() // longer than promised: the bytes are not worth resuming
		} else {
			w.Abort()
		}
		if err == errParked {
			return true
		}
		done(err)
		return false
	}
	r.Size = t.written
	if err := t.verify(r); err != nil {
		w.Discard()
		done(&Error{Op: "verify", URL: ent.URL, Err: err})
		return false
	}
	w.Commit(func(err error) {
		switch {
		case errors.Is(err, sink.ErrTaken):
			// Another process (or another tool) put a different file there
			// after the check above: it is kept, this entry collides.
			err = &Error{Op: "commit", URL: ent.URL, Err: fmt.Errorf("%w: %w", ErrCollision, err)}
		case err != nil:
			err = e.sinkError("commit", ent.URL, err)
		}
		done(err)
	})
	return false
}

// create opens the entry's staging file. If another haul process is writing it,
// create waits for that process to let go, then looks at the final file again:
// it returns a nil Writer when the entry turned out to be done (r says skipped).
// resumed says that the entry was parked in its retry loop: the bytes kept are
// this run's, so --force does not start them over.
func (e *Engine) create(ctx context.Context, ent Entry, r *Result, replace, resumed bool) (sink.Writer, error) {
	waited := false
	for {
		w, err := e.sink.Create(r.Name, ent.URL)
		if errors.Is(err, sink.ErrLocked) {
			waited = true
			if err := sleep(ctx, lockPoll); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, e.sinkError("create", ent.URL, err)
		}
		if waited {
			skip, again, err := e.existing(ent, r)
			if skip || err != nil {
				w.Abort()
				return nil, err
			}
			replace = again
		}
		if replace {
			w.Replace()
		}
		if e.opts.Force && !resumed && w.Partial().Offset > 0 {
			if err := w.Restart(); err != nil {
				w.Abort()
				return nil, e.sinkError("create", ent.URL, err)
			}
		}
		return w, nil
	}
}

// lockPoll is how often a worker checks whether another process let go of a
// staging file.
const lockPoll = 250 * time.Millisecond

// retry runs attempts until one succeeds, one fails for good, or the retries
// are spent. Only an attempt that brought no new bytes counts against --retries
// (*failures counts those, kept across a parking), so a long download over a
// flaky link keeps going. It returns errParked, with a place in the parking
// reserved, when a 429 or 503 paused the host and the entry has retries left.
func (e *Engine) retry(ctx context.Context, h *host, t *transfer, r *Result, failures *int) error {
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
			*failures++
			delay = e.backoff(*failures)
		}
		var se *StatusError
		paused := errors.As(err, &se) && (se.Code == 429 || se.Code == 503)
		if se != nil && se.RetryAfter > 0 {
			delay = se.RetryAfter
		}
		if paused {
			// Every worker waits for this host, even when this entry gives up.
			e.hosts.pause(h, delay)
		}
		if *failures > e.opts.Retries {
			return err
		}
		if paused {
			// The worker does not sleep through the pause: the entry is set
			// aside and the worker goes on with other entries, so other hosts
			// keep going even when every worker was on this one. With the
			// parking full, it waits (hosts.wait, at the top).
			if e.hosts.remaining(h) > 0 && e.parking.reserve() {
				return errParked
			}
			continue
		}
		if err := sleep(ctx, delay); err != nil {
			return err
		}
	}
}

// errParked: retry stopped for the host's pause, the entry is to be parked.
var errParked = errors.New("parked for the host's pause")

// backoff is exponential with full jitter: uniform in [d/2, d), d = base * 2^(n-1)
// capped at RetryMax.
func (e *Engine) backoff(n int) time.Duration {
	d := e.opts.RetryBase << min(n-1, 20)
	if d > e.opts.RetryMax || d <= 0 {
		d = e.opts.RetryMax
	}
	return d/2 + rand.N(d/2+1)
}
