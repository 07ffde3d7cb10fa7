package download

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/haul/haul/download/internal/retry"
	"github.com/haul/haul/internal/urlid"
	"github.com/haul/haul/sink"
)

// entry is the life of one entry of the list, from the line that names it to
// its final file, one method per step:
//
//	run          drives the steps below, in order
//	claim        takes its output name for this run (no two workers write one name)
//	checkDisk    decides from the final file alone: done (skip), fetch, replace, collision
//	robots       asks its host's robots.txt whether it may be fetched (--robots): excluded
//	rateAside    parks it until its turn under its host's rate (--per-host-rate, Crawl-delay)
//	openStaging  opens the staging file (waiting for another process that holds it)
//	attempts     requests until the body is whole, one fails for good, or retries run out
//	verify       checks the body against Content-Length, size= and sha256=
//	commit       hands the file to the sink's group commit; end is called from there
//	setAside     parks it while its host asks for a pause (429/503); run picks it up again
//	end          reports the result, once, and lets the name go
//
// An entry is used by one goroutine at a time: a worker, then, after commit, the
// sink's committer (end only). While parked it belongs to the parking.
type entry struct {
	e       *Engine
	ent     Entry
	hostKey string // urlid.HostKey of its URL
	r       *Result
	t0      time.Time // when a worker first took it: its duration includes pauses

	// started: a worker took it (its result is owed, it counts in flight).
	started bool
	// failures counts the attempts that brought no new byte, against --retries;
	// kept across pauses.
	failures int
	// replace: a file is at the final name and is to be replaced; why says
	// why the entry is fetched (--dry-run's reason); have is the size on disk.
	replace bool
	why     string
	have    int64
	// cond is the conditional request --update asks with (nil: none).
	cond *conditional
	// slotWait: it is parked waiting for a slot of its host (under the
	// parking's lock).
	slotWait bool
	// resumed: it comes back from a pause in its retry loop, so the bytes kept
	// are this run's and --force does not start them over.
	resumed bool
	// grant is its share of --jobs and, once takeSlot has a slot, of its
	// host's --per-host, for this run (a parked entry's next run has
	// another): given by the pool, which releases it when run returns.
	grant *grant
	// small: it uses the small buffers (it took a stream when it started).
	small bool
	// turn: it was set aside until its turn under its host's rate
	// (rateAside), and goes without asking for another.
	turn bool
	// aside: its last run set it aside (parked) rather than ending it: its
	// host's connection is not what it left idle (see regroup).
	aside atomic.Bool

	// Held between claim/openStaging and end or setAside.
	claimed *claim
	host    *host
	w       sink.Writer
	t       *transfer
}

func (e *Engine) newEntry(ent Entry) *entry {
	return &entry{e: e, ent: ent, hostKey: urlid.HostKey(ent.URL)}
}

// run takes the entry as far as it goes on this worker, on the grant g: to
// its end (maybe later, from the committer) or to the parking.
func (x *entry) run(ctx context.Context, g *grant) {
	e := x.e
	x.grant, x.small = g, g.Weight() == 1
	if !x.started {
		// An entry whose host asked to be left alone (429/503) waits aside
		// before it starts, so that this worker serves other hosts meanwhile.
		if d := e.hosts.pausedFor(x.hostKey); d > 0 && e.parking.park(x, d) {
			return
		}
		x.started, x.t0 = true, time.Now()
		x.r = &Result{Entry: x.ent, Status: StatusOK}
		e.stats.InFlight.Add(1)
	}
	if err := x.claim(ctx); err != nil {
		x.end(ctx, err)
		return
	}
	if done, err := x.checkDisk(); done || err != nil {
		x.end(ctx, err)
		return
	}
	if e.opts.DryRun {
		x.end(ctx, x.plan())
		return
	}
	if e.opts.Robots {
		excluded, err := x.robots(ctx)
		if excluded != nil {
			x.r.Status, x.r.Err = StatusExcluded, excluded
		}
		if excluded != nil || err != nil {
			x.end(ctx, err)
			return
		}
	}
	if x.rateAside() {
		return // set aside until its turn under its host's rate
	}
	if !x.takeSlot(ctx) {
		return // set aside until a slot of its host is free
	}
	if done, err := x.openStaging(ctx); done || err != nil {
		x.end(ctx, err)
		return
	}
	pause, err := x.attempts(ctx)
	if pause > 0 {
		x.setAside(pause)
		return
	}
	if errors.Is(err, errNotModified) {
		// --update: the file stays as it is (same inode, same times); the
		// empty staging file goes.
		x.w.Discard()
		x.closeTransfer()
		x.r.Status, x.r.Size = StatusUnchanged, x.have
		x.end(ctx, nil)
		return
	}
	if err == nil {
		err = x.verify()
	}
	if _, costly := x.w.(sink.CostlyWriter); costly && err != nil && ctx.Err() == nil {
		// Given up, not interrupted: nothing is kept where keeping costs.
		x.w.Discard()
		x.closeTransfer()
		x.end(ctx, err)
		return
	}
	if err != nil {
		x.closeStaging(err)
		x.end(ctx, err)
		return
	}
	x.commit(ctx)
}

// claim takes the entry's output name for this run, waiting while a worker
// writes the same URL there (the entry then finds the file on disk).
func (x *entry) claim(ctx context.Context) error {
	name, err := x.e.nameOf(x.ent)
	if err != nil {
		return &Error{Op: "name", URL: x.ent.URL, Err: err}
	}
	x.r.Name = name
	if x.e.opts.Tar {
		x.r.Sample = name
	}
	if cs := x.e.opts.Checksums; cs != nil && x.ent.SHA256 == "" {
		csName, err := x.e.checksumName(x.ent)
		if err != nil {
			return &Error{Op: "name", URL: x.ent.URL, Err: err}
		}
		sum, err := cs.Lookup(csName)
		if err != nil {
			return &Error{Op: "checksums", URL: x.ent.URL, Err: err}
		}
		x.ent.SHA256, x.r.Entry.SHA256 = sum, sum
	}
	cl, err := x.e.claims.acquire(ctx, name, x.ent)
	if err != nil {
		return &Error{Op: "claim", URL: x.ent.URL, Err: err}
	}
	x.claimed = cl
	return nil
}

// checkDisk decides from the final file alone, without asking the server,
// whether the entry is already done (r says skipped), must be fetched, or
// collides with another URL. x.replace says a file is there to be replaced,
// x.why says why it is fetched (for --dry-run), and with --update x.cond holds
// the conditional request that asks whether it changed.
func (x *entry) checkDisk() (done bool, err error) {
	e, ent, r := x.e, x.ent, x.r
	// Decided afresh each time: an entry back from a pause, or from waiting for
	// another process, finds the disk as it is now.
	x.replace, x.cond, x.have, x.why = false, nil, 0, ""
	info, err := e.sink.Stat(r.Name)
	if errors.Is(err, fs.ErrNotExist) {
		x.why = "missing"
		return false, nil
	}
	if errors.Is(err, sink.ErrNotRegular) {
		return false, &Error{Op: "check", URL: ent.URL, Err: fmt.Errorf("%w: %s %v", ErrCollision, r.Name, sink.ErrNotRegular)}
	}
	if err != nil {
		return false, e.sinkError("check", ent.URL, err)
	}
	if e.opts.Tar {
		return x.checkSample(info)
	}
	if info.Origin != "" && !urlid.Same(info.Origin, ent.URL) {
		return false, &Error{Op: "check", URL: ent.URL,
			Err: fmt.Errorf("%w: %s already holds %q", ErrCollision, r.Name, info.Origin)}
	}
	x.have = info.Size
	// With --force, a file written before this run is fetched again; one written
	// during it (the same URL listed twice) is not. The sink's run tag tells
	// them apart (without extended attributes, every file is fetched again).
	if e.opts.Force && (e.opts.RunTag == "" || info.RunTag != e.opts.RunTag) {
		x.replace, x.why = true, "--force"
		return false, nil
	}
	if ent.Size >= 0 && info.Size != ent.Size {
		// A stale or foreign file: fetch it again.
		x.replace, x.why = true, fmt.Sprintf("size differs: %d on disk, size= says %d", info.Size, ent.Size)
		return false, nil
	}
	if ent.SHA256 != "" {
		sum, err := e.hashFile(r.Name, x.deps().bufs)
		if errors.Is(err, sink.ErrCorrupt) {
			x.replace, x.why = true, "damaged compressed file"
			return false, nil
		}
		if err != nil {
			return false, e.sinkError("check", ent.URL, err)
		}
		if sum != ent.SHA256 {
			x.replace, x.why = true, "sha256 differs: "+sum+" on disk"
			return false, nil
		}
		r.SHA256 = sum // the list pins the content: nothing to ask, even with --update
	} else if e.opts.Update && info.Changed {
		// Its recorded validators describe what haul wrote, not what is
		// there: a 304 would keep the damage.
		x.replace, x.why = true, "changed on disk since haul wrote it"
		return false, nil
	} else if e.opts.Update {
		x.replace, x.cond = true, conditionalFor(info)
		x.why = "--update: ask the server (" + x.cond.String() + ")"
		return false, nil
	}
	r.Status, r.Size = StatusSkipped, info.Size
	return true, nil
}

// checkSample decides for an entry stored as a sample in a tar file, which
// is never rewritten: done, unless it fails size= or sha256= (then it fails:
// the tar file would have to be moved away to fetch it again).
func (x *entry) checkSample(info sink.Info) (done bool, err error) {
	e, ent, r := x.e, x.ent, x.r
	r.Tar, r.Member = info.Tar, info.Member
	if info.Origin != sink.TarOrigin(ent.URL) {
		return false, &Error{Op: "check", URL: ent.URL, Err: fmt.Errorf("%w: sample %s in %s is from another URL", ErrCollision, r.Name, info.Tar)}
	}
	differs := ""
	if ent.Size >= 0 && info.Size != ent.Size {
		differs = fmt.Sprintf("%d bytes, size= says %d", info.Size, ent.Size)
	} else if ent.SHA256 != "" {
		sum, err := e.hashFile(r.Name, x.deps().bufs)
		if err != nil {
			return false, e.sinkError("check", ent.URL, err)
		}
		if sum != ent.SHA256 {
			differs = "sha256 " + sum
		} else {
			r.SHA256 = sum
		}
	}
	if differs != "" {
		return false, &Error{Op: "check", URL: ent.URL, Err: fmt.Errorf("%w: %s in %s holds %s (a finished tar file is never rewritten: move it away to fetch its samples again)",
			ErrStoredDiffers, info.Member, info.Tar, differs)}
	}
	r.Status, r.Size = StatusSkipped, info.Size
	return true, nil
}

// conditionalFor is the question --update asks about a final file: has it
// changed since the response it was written from (its ETag, else its
// Last-Modified), or, for a file haul did not write, since its modification
// time (as wget -N)?
func conditionalFor(info sink.Info) *conditional {
	if info.ETag != "" {
		return &conditional{etag: info.ETag}
	}
	if info.LastModified != "" {
		return &conditional{since: info.LastModified}
	}
	return &conditional{since: info.ModTime.UTC().Format(http.TimeFormat)}
}

// plan reports, for --dry-run, what a run would do for an entry checkDisk did
// not find done, and why. It reads the staging file's state, and writes
// nothing.
func (x *entry) plan() error {
	e, r := x.e, x.r
	p, err := e.sink.Staged(r.Name, x.ent.URL)
	if err != nil {
		return e.sinkError("check", x.ent.URL, err)
	}
	switch {
	case (p.Offset > 0 || p.Done != nil) && !e.opts.Force: // --force starts partial files over (openStaging)
		r.Plan = "resume"
		r.Reason = fmt.Sprintf("partial at byte %d", p.Offset)
		if p.Done != nil {
			// Written in pieces: the bytes kept past the first gap too.
			have, n := p.Offset, len(p.Done)
			if p.Offset > 0 {
				n++
			}
			for _, d := range p.Done {
				have += d.End - d.Start
			}
			r.Reason = fmt.Sprintf("partial: %d bytes in %d ranges", have, n)
		}
		if p.Total >= 0 {
			r.Reason += fmt.Sprintf(" of %d", p.Total)
		}
		if x.replace {
			r.Reason += "; " + x.why
		}
	case x.cond != nil:
		r.Plan, r.Reason = "check", x.why
	case x.replace:
		r.Plan, r.Reason = "replace", x.why
	default:
		r.Plan, r.Reason = "fetch", x.why
	}
	r.Status = StatusPlanned
	return nil
}

// takeSlot takes a slot of the entry's host (--per-host) for its grant.
// When every slot is taken, the entry is set aside until one is released,
// and takeSlot returns false: its worker goes on with other entries. With
// the parking full, it waits for the slot on the worker.
func (x *entry) takeSlot(ctx context.Context) bool {
	e, g := x.e, x.grant
	h, ok := e.hosts.tryAcquire(x.hostKey, g, nil)
	if ok {
		x.host = h // the usual case: a slot is free, or there is no cap
		return true
	}
	if e.parking.reserve() {
		// Parked before it registers as a waiter (both under the hosts' lock
		// in tryAcquire would invert the lock order): a release in between
		// finds it parked. If a slot is free after all, it comes back at
		// once and takes it then. Once parked, x may be another worker's
		// already: only g, this run's grant, is read.
		x.e.claims.release(x.claimed, nil)
		x.claimed = nil
		e.parking.putForSlot(x, slotRecheck)
		if e.hosts.waitFor(x.hostKey, g.Weight(), func() bool { return e.parking.wakeForSlot(x) }) {
			e.parking.wakeForSlot(x)
		}
		return false
	}
	h, err := e.hosts.acquire(ctx, x.hostKey, g)
	if err != nil {
		x.end(ctx, err)
		return false
	}
	x.host = h
	return true
}

// slotRecheck is how long an entry waiting for a slot of its host stays set
// aside if no release wakes it.
const slotRecheck = 2 * time.Second

// rateAside sets the entry aside until its turn under its host's rate
// (--per-host-rate, a Crawl-delay: hosts.rateTurn), if that is more than
// rateAsideMin away and the parking has room: its worker takes other
// entries meanwhile, so a slow rate on one host does not hold the workers
// that the other hosts need. It reports whether it did. With the parking
// full, the entry goes on and its request waits for the rate on the worker
// (hosts.pace), as a pause does.
func (x *entry) rateAside() bool {
	e := x.e
	if x.turn {
		x.turn = false // back on its turn
		return false
	}
	d := e.hosts.rateTurn(x.hostKey)
	if d < rateAsideMin || !e.parking.reserve() {
		return false
	}
	e.claims.release(x.claimed, nil)
	x.claimed = nil
	x.turn = true
	e.parking.put(x, d)
	return true
}

// rateAsideMin is the shortest wait for a host's rate worth setting an entry
// aside for: a shorter one costs less on the worker.
const rateAsideMin = 10 * time.Millisecond

// openStaging opens the entry's staging file, with what an earlier run (or
// this one, before a pause) kept of it. If another haul process is writing it,
// openStaging waits for that process to let go, then looks at the final file
// again: done says the entry turned out finished.
func (x *entry) openStaging(ctx context.Context) (done bool, err error) {
	e, ent, r := x.e, x.ent, x.r
	h := x.host
	if err := e.hosts.isDown(h); err != nil {
		return false, &Error{Op: "get", URL: ent.URL, Err: err}
	}
	waited := false
	var w sink.Writer
	for {
		w, err = e.sink.Create(r.Name, ent.URL)
		if !errors.Is(err, sink.ErrLocked) {
			break
		}
		waited = true
		if err := retry.Sleep(ctx, lockPoll); err != nil {
			return false, err
		}
	}
	if err != nil {
		return false, e.sinkError("create", ent.URL, err)
	}
	if waited {
		if done, err := x.checkDisk(); done || err != nil {
			w.Abort()
			return done, err
		}
	}
	if x.replace {
		w.Replace()
	}
	if hw, ok := w.(sink.HashWriter); ok && ent.SHA256 != "" {
		hw.SetSHA256(ent.SHA256)
	}
	if e.opts.Force && !x.resumed && w.Partial().Offset > 0 {
		if err := w.Restart(); err != nil {
			w.Abort()
			return false, e.sinkError("create", ent.URL, err)
		}
	}
	t, err := newTransfer(x.deps(), ent, w)
	if err != nil {
		w.Abort()
		return false, e.sinkError("read", ent.URL, err)
	}
	t.cond = x.cond
	t.gate = hostGate{e.hosts, x.host}
	t.slot = func() (func(), bool) {
		// A piece of a split file is one more connection to its host:
		// it takes a slot too, if one is free (else the file gets fewer).
		return e.hosts.tryConn(x.hostKey)
	}
	if !e.inline(x) {
		// An entry that may go over HTTP/2 (https, with --streams): when
		// its connection turns out to, the host's next entries take a
		// stream each, and so do those in flight (see hosts.multiplexed).
		// A plain http:// entry never does, and costs no trace.
		h := x.host
		t.multiplexed = func() { e.hosts.multiplexed(h) }
	}
	x.w, x.t = w, t
	return false, nil
}

// lockPoll is how often a worker checks whether another process let go of a
// staging file.
const lockPoll = 250 * time.Millisecond

// attempts runs requests until one brings the whole body, one fails for good,
// or the retries are spent. Only an attempt that brought no new byte counts
// against --retries, so a long download over a flaky link keeps going. When a
// 429 or 503 paused the host and the entry has retries left, attempts returns
// how long the pause lasts, with a place in the parking reserved: the worker
// does not sleep through it (see setAside).
func (x *entry) attempts(ctx context.Context) (pause time.Duration, err error) {
	e, t, r, h := x.e, x.t, x.r, x.host
	for {
		if err := e.hosts.wait(ctx, h); err != nil {
			return 0, err
		}
		if err := e.hosts.isDown(h); err != nil {
			return 0, &Error{Op: "get", URL: x.ent.URL, Err: err}
		}
		r.Attempts++
		before := t.best
		err := t.attempt(ctx, r)
		if t.responded {
			e.hosts.responded(h)
		}
		if err == nil || errors.Is(err, errNotModified) {
			return 0, err
		}
		var le *localError
		if errors.As(err, &le) {
			return 0, e.sinkError("write", x.ent.URL, le.err)
		}
		cause := err
		err = &Error{Op: "get", URL: x.ent.URL, Err: err}
		if ctx.Err() != nil || !retryable(err) {
			return 0, err
		}
		noResponse := !t.responded
		if noResponse {
			var ue *url.Error
			if errors.As(cause, &ue) {
				cause = ue.Err // the URL is in the entry's error already
			}
			if down, now := e.hosts.missed(h, cause); down != nil {
				if now {
					e.parking.wake(x.hostKey) // its entries waiting out a backoff fail now
				}
				return 0, &Error{Op: "get", URL: x.ent.URL, Err: down}
			}
		}
		delay := time.Duration(0)
		if t.best <= before {
			x.failures++
			delay = t.d.backoff.Delay(x.failures)
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
		if x.failures > e.opts.Retries {
			return 0, err
		}
		if paused {
			// Other hosts keep going even when every worker was on this one.
			// Set aside even when the pause is over already: its slot goes
			// back, and it takes one again under the host's cap, which the
			// answer just lowered (hosts.answered). With the parking full,
			// the worker waits (hosts.wait, at the top).
			if e.parking.reserve() {
				return max(e.hosts.remaining(h), time.Nanosecond), nil
			}
			continue
		}
		if noResponse && delay > 0 && e.parking.reserve() {
			// The host may be down: the worker does not wait on it but takes
			// other entries (other hosts', or this one's, whose attempts then
			// tell sooner whether it is down).
			return delay, nil
		}
		if err := retry.Sleep(ctx, delay); err != nil {
			return 0, err
		}
	}
}

// verify checks what arrived against Content-Length, size= and sha256=.
func (x *entry) verify() error {
	x.r.Size = x.t.written
	if err := x.t.verify(x.r); err != nil {
		return &Error{Op: "verify", URL: x.ent.URL, Err: err}
	}
	return nil
}

// commit hands the staging file to the sink's group commit. The entry ends
// when the commit has made it durable and named it, on the committer's
// goroutine, while this worker is already on its next entry.
func (x *entry) commit(ctx context.Context) {
	w := x.w
	sw, sample := w.(sink.SampleWriter)
	if sample {
		sw.SetSample(sink.Sample{Key: x.r.Sample, SHA256: x.r.SHA256, HTTPStatus: x.r.HTTPStatus,
			ContentType: x.t.contentType, Meta: x.ent.Meta})
	}
	x.closeTransfer()
	x.releaseHost() // the network part is over
	// Once Commit returns, the body is in the sink's queue: a line waiting
	// for the same URL may have the sink flush it (see claims.flush). Not
	// before, or that flush could come ahead of the body and miss it. (The
	// claim is taken now: done may release it on another goroutine.)
	cl := x.claimed
	defer func() {
		if cl != nil {
			cl.committing()
		}
	}()
	w.Commit(func(err error) {
		if sample && err == nil {
			x.r.Tar, x.r.Member = sw.Stored()
		}
		switch {
		case errors.Is(err, sink.ErrTaken):
			// Another process (or another tool) put a different file there
			// after checkDisk: it is kept, this entry collides.
			err = &Error{Op: "commit", URL: x.ent.URL, Err: fmt.Errorf("%w: %w", ErrCollision, err)}
		case err != nil:
			err = x.e.sinkError("commit", x.ent.URL, err)
		}
		x.end(ctx, err)
	})
}

// closeStaging lets the staging file go after a failure: kept, with its
// progress, for a later attempt or run to resume, unless its bytes are known
// to be wrong.
func (x *entry) closeStaging(err error) {
	if x.w == nil {
		return
	}
	switch {
	case errors.Is(err, ErrBadChecksum),
		errors.Is(err, ErrBadLength) && !errors.Is(err, errShortBody):
		// Longer than promised, or failed its checks: not worth resuming.
		x.w.Discard()
	default:
		x.w.Abort()
	}
	x.closeTransfer()
}

// closeTransfer lets the transfer (its buffers, its hash) and the Writer go:
// the Writer was committed, aborted or discarded by the caller.
func (x *entry) closeTransfer() {
	if x.t != nil {
		x.t.close()
		x.t = nil
	}
	x.w = nil
}

// deps is what its transfer uses of the engine: with the small buffers for
// an entry on a stream of an HTTP/2 connection.
func (x *entry) deps() *transferDeps {
	if x.small && x.e.xferSmall.bufs != nil {
		return &x.e.xferSmall
	}
	return &x.e.xfer
}

// releaseHost gives the host slot back (its grant keeps its share of
// --jobs until run returns).
func (x *entry) releaseHost() {
	if x.host != nil {
		x.e.hosts.release(x.grant)
		x.host = nil
	}
}

// setAside parks the entry for its host's pause, in the place attempts
// reserved. The name, the host slot and the staging file are let go meanwhile
// (another worker may take them) and taken again when it comes back. The
// staging file is aborted rather than kept open: an open one holds a file
// descriptor, its lock, a directory handle and, compressing, an encoder of up
// to megabytes, and up to max(64, 4*jobs) entries can be parked, which would
// multiply the memory bound set by --jobs. Abort saves the progress; the next
// openStaging finds it and the next attempt resumes it with Range + If-Range.
func (x *entry) setAside(d time.Duration) {
	x.closeStaging(nil)
	x.releaseHost()
	x.e.claims.release(x.claimed, nil)
	x.claimed = nil
	x.resumed = true
	x.e.parking.put(x, d)
}

// end records the outcome of a started entry and lets its name go. It is
// called once per entry, from the worker or from the sink's committer.
func (x *entry) end(ctx context.Context, err error) {
	e, r := x.e, x.r
	x.releaseHost()
	if x.claimed != nil {
		e.claims.release(x.claimed, err)
		x.claimed = nil
	}
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
	r.Duration = time.Since(x.t0)
	e.stats.InFlight.Add(-1)
	e.stats.count(r.Status)
	e.opts.OnResult(r)
}

// interrupted reports an entry that the run stopped before it could finish or
// even start (read from the list, or parked): it is in the manifest and the
// summary as failed, so that a list filtered to failures holds it.
func (x *entry) interrupted() {
	if !x.started {
		x.started, x.t0 = true, time.Now()
		x.r = &Result{Entry: x.ent}
		x.e.stats.InFlight.Add(1)
	}
	x.e.interrupted.Store(true)
	x.end(canceled, &Error{Op: "get", URL: x.ent.URL, Err: ErrInterrupted})
}

// canceled is a context that is done: end reports what it is given as an
// interruption.
var canceled = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

func (e *Engine) hashFile(name string, bufs *buffers) (string, error) {
	if u, ok := e.sink.(interface {
		UnreadableSHA256(string) (string, bool)
	}); ok {
		// A sample of a tar object not complete yet: its bytes cannot be
		// read back, the SHA-256 recorded as it was stored stands for them.
		if sum, ok := u.UnreadableSHA256(name); ok {
			return sum, nil
		}
	}
	f, err := e.sink.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := newHasher()
	bp := bufs.Get()
	defer bufs.Put(bp)
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
	var le *localError
	if errors.As(err, &le) {
		err = le.err
	}
	if fatalSinkError(err) || errors.Is(err, syscall.EACCES) && !e.writable() {
		return &FatalError{Err: fmt.Errorf("%s %s: %w", op, rawURL, err)}
	}
	return &Error{Op: op, URL: rawURL, Err: &localError{err}}
}
