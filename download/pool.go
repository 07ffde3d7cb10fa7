package download

import (
	"context"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/semaphore"
)

// pool runs the entries of a run: workers take them from the list and from
// the parking until both are done or the run ends, and run each once it is
// granted its weight (a grant: an entry over HTTP/1.1 takes a connection's
// worth of -j, one over HTTP/2 a stream: see Engine.weight). An entry that
// takes a stream also takes one of streams (nil: no cap), which bounds
// those in flight below -j x --streams.
//
// As many workers as -j take their entries themselves, and run an entry that
// can only go over HTTP/1.1 (inline: http://, or no multiplexing) themselves:
// its start costs no hand-over between goroutines. (One dispatcher handing
// every entry to a goroutine of its own cost 12-14% more CPU on 10,000 small
// files over HTTP/1.1.) Any other entry runs on a runner (spawn), and its
// worker goes on to the next: runners exist for the entries in flight,
// however many streams -j allows, and a worker is not held by an https entry
// sent before its host was known to speak HTTP/2 (run by the worker, those
// cost the next entries a round trip: 0.36 -> 0.40 s on 2,000 small files at
// 41 ms). A worker whose entry waits for a connection's worth waits with it;
// the grants are given in the order asked (never for ever: every grant is
// released when its run returns).
type pool struct {
	parking *parking
	jobs    *semaphore.Weighted // -j, in streams (Engine.jobs)
	streams *semaphore.Weighted // entries that take a stream (nil: no cap)
	weight  func(*entry) int64
	inline  func(*entry) bool
	workers int
	run     func(*entry, *grant) // runs the entry on its grant (which the pool releases)

	// The state of work.
	ctx     context.Context
	entries <-chan *entry
	wg      sync.WaitGroup // the workers
	// Runners: goroutines that run entries off the workers, kept once their
	// entry is done and given the next one (runq) until done is closed. A
	// new goroutine for every entry grew its stack from the start each time
	// (runtime.newstack: 14% of the CPU on 10,000 small files over HTTP/2);
	// a runner keeps the stack it grew. A runner offers itself (free) before
	// its entry's grant goes back, so the entry that grant lets start finds
	// it: there are never more runners than entries granted at once.
	runq    chan job
	free    atomic.Int64 // runners offered and not yet given a job
	done    chan struct{}
	runners sync.WaitGroup
	live    atomic.Int64 // runners started and not returned
}

// job is an entry and its grant: run it, then release the grant.
type job struct {
	x *entry
	g *grant
}

// work runs the entries of entries and of the parking until both are done or
// ctx ends. An entry taken as ctx ends is reported as interrupted; those
// still in entries are the caller's to report. It returns when every entry it
// started is done and every runner has returned.
func (pl *pool) work(ctx context.Context, entries <-chan *entry) {
	pl.ctx, pl.entries = ctx, entries
	pl.runq, pl.done = make(chan job), make(chan struct{})
	pl.wg.Add(pl.workers)
	for range pl.workers {
		go pl.worker()
	}
	pl.wg.Wait()
	close(pl.done)
	pl.runners.Wait()
}

func (pl *pool) release(j job) {
	j.g.Release()
	pl.parking.add(-1)
}

// spawn gives j to a runner that has offered itself, or to a new one if none
// has.
func (pl *pool) spawn(j job) {
	for {
		n := pl.free.Load()
		if n <= 0 {
			pl.runners.Add(1)
			pl.live.Add(1)
			go pl.runner(j)
			return
		}
		if pl.free.CompareAndSwap(n, n-1) {
			pl.runq <- j // that runner is on its way to take it
			return
		}
	}
}

func (pl *pool) runner(j job) {
	defer pl.runners.Done()
	defer pl.live.Add(-1)
	for {
		pl.run(j.x, j.g)
		pl.free.Add(1)
		pl.release(j)
		select {
		case j = <-pl.runq:
		case <-pl.done: // no worker is left to give it a job
			return
		}
	}
}

func (pl *pool) worker() {
	defer pl.wg.Done()
	p, ctx, entries := pl.parking, pl.ctx, pl.entries
	for {
		var x *entry
		select {
		case <-ctx.Done():
			return
		case <-p.idle:
			return
		case x = <-p.back:
			if !p.unparked(x) {
				p.add(-1)
				continue
			}
		case y, ok := <-entries:
			if !ok {
				entries = nil // a nil channel is never ready
				p.listDone()
				continue
			}
			if ctx.Err() != nil {
				y.interrupted()
				return
			}
			x = y
		}
		if !pl.one(x) {
			return
		}
	}
}

// one runs x once its grant is given (on a runner unless inline), and
// reports false if ctx ended first (x is reported as interrupted).
func (pl *pool) one(x *entry) bool {
	ctx := pl.ctx
	w := pl.weight(x)
	g, err := acquireGrant(ctx, pl.jobs, w)
	if err != nil {
		x.interrupted()
		return false
	}
	if nw := pl.weight(x); nw < w {
		// Its host turned out to speak HTTP/2 while it waited: it takes a
		// stream, not a connection.
		g.Lower(nw)
		w = nw
	}
	if w == 1 && pl.streams != nil {
		if err := g.takeStream(ctx, pl.streams); err != nil {
			g.Release()
			x.interrupted()
			return false
		}
	}
	j := job{x: x, g: g}
	if !pl.inline(x) {
		pl.spawn(j)
		return true
	}
	pl.run(x, g)
	pl.release(j)
	return true
}
