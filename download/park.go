package download

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"
)

// parking sets aside entries whose host is paused (a 429 or 503 with
// Retry-After), so that their worker takes the next entry and other hosts keep
// going: entries that find the host paused before they start, and entries whose
// attempt just got the 429 or 503 (parked in their retry loop, with their
// progress: see entry.setAside). A parked entry comes back to the pool when the
// pause ends. At most max entries are parked, so memory stays bounded; beyond that a
// worker waits for the pause as before (head-of-line).
//
// It also tells the workers when they may stop: the list is read to the end and
// no entry is in process or parked.
type parking struct {
	back  chan *entry // parked entries whose pause is over
	max   int64
	count atomic.Int64 // parked or reserved (timers pending or in back)

	// The counters are atomics, not a mutex: add runs twice per entry. Each
	// side stores its own variable, then loads the other's; Go's atomics are
	// sequentially consistent, so whichever comes last sees both and closes idle.
	work      atomic.Int64 // entries sent by the list's reader or parked, not yet processed
	inputDone atomic.Bool  // the list is read
	idle      chan struct{}
	closeIdle sync.Once

	// out holds the parked entries until a worker takes them back: those left
	// when the workers stop early (Ctrl-C) are reported as interrupted
	// (stranded).
	mu  sync.Mutex
	out map[*entry]*time.Timer // the timer that brings it back
}

func newParking(max int) *parking {
	return &parking{back: make(chan *entry, max), max: int64(max), idle: make(chan struct{}),
		out: make(map[*entry]*time.Timer)}
}

// park sets x aside for d, if there is room.
func (p *parking) park(x *entry, d time.Duration) bool {
	if !p.reserve() {
		return false
	}
	p.put(x, d)
	return true
}

// reserve takes a place in the parking for an entry put there later (put), if
// there is room.
func (p *parking) reserve() bool {
	if p.count.Add(1) > p.max {
		p.count.Add(-1)
		return false
	}
	return true
}

// put parks x for d in a place taken by reserve.
func (p *parking) put(x *entry, d time.Duration) {
	p.add(1)
	p.mu.Lock()
	// Under mu, so that unparked finds it even if the timer fires at once.
	p.out[x] = time.AfterFunc(d, func() { p.back <- x }) // never blocks: count <= cap(back)
	p.mu.Unlock()
}

// putForSlot parks x, waiting for a slot of its host, for at most d.
func (p *parking) putForSlot(x *entry, d time.Duration) {
	p.mu.Lock()
	x.slotWait = true
	p.mu.Unlock()
	p.put(x, d)
}

// wakeForSlot brings x back at once if it is parked waiting for a slot of its
// host (not for a pause or a backoff), and reports whether it did: a release
// tries its host's waiters until one wakes.
func (p *parking) wakeForSlot(x *entry) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	t, ok := p.out[x]
	if !ok || !x.slotWait || !t.Stop() {
		return false
	}
	x.slotWait = false
	p.back <- x // never blocks: count <= cap(back)
	return true
}

// wake brings back at once the parked entries of the host key: it went down,
// and they are to fail now rather than when their backoff ends.
func (p *parking) wake(hostKey string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for x, t := range p.out {
		if x.hostKey == hostKey && t.Stop() {
			p.back <- x // never blocks: count <= cap(back)
		}
	}
}

// unparked is called for each entry received from back. It reports false for
// an entry already reported by stranded (never while workers run).
func (p *parking) unparked(x *entry) bool {
	p.count.Add(-1)
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.out[x]
	delete(p.out, x)
	x.slotWait = false
	return ok
}

// stranded returns the entries still parked, which no worker will take back
// any more: it is called once the workers have stopped.
func (p *parking) stranded() []*entry {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*entry
	for x, t := range p.out {
		t.Stop()
		out = append(out, x)
		delete(p.out, x)
	}
	return out
}

// add counts entries sent to the workers or parked (+1) and processed (-1).
func (p *parking) add(n int64) {
	if p.work.Add(n) == 0 && p.inputDone.Load() {
		p.closeIdle.Do(func() { close(p.idle) })
	}
}

// listDone records that the list is read to the end.
func (p *parking) listDone() {
	p.inputDone.Store(true)
	if p.work.Load() == 0 {
		p.closeIdle.Do(func() { close(p.idle) })
	}
}

// workers takes entries from the list and from the parking until both are
// done or ctx ends, and runs each once sem grants it weight(x) (an entry over
// HTTP/1.1 takes a connection's worth, one over HTTP/2 a stream: see
// Engine.weight). An entry that takes a stream also takes one of streams
// (nil: no cap), which bounds those in flight below -j x --streams.
//
// jobs workers take their entries themselves, as the fixed pool of -j
// workers did before HTTP/2 multiplexing, and run an entry that can only go
// over HTTP/1.1 (inline: http://, or no multiplexing) themselves: its start
// costs no hand-over between goroutines. (One dispatcher handing every entry
// to a goroutine of its own cost 12-14% more CPU on 10,000 small files over
// HTTP/1.1.) Any other entry runs on a runner (spawn), and its worker goes
// on to the next: runners exist for the entries in flight, however many
// streams -j allows, and a worker is not held by an https entry sent
// before its host was known to speak HTTP/2 (run by the worker, those cost
// the next entries a round trip: 0.36 -> 0.40 s on 2,000 small files at
// 41 ms). A worker whose entry waits for a
// connection's worth waits with it; the grants are in the order asked (never
// for ever: every grant is released when its run returns). An entry taken as
// ctx ends is reported as interrupted; those still in entries are the
// caller's to report. It returns when every entry it started is done.
func (p *parking) workers(ctx context.Context, entries <-chan *entry, sem, streams *semaphore.Weighted,
	weight func(*entry) int64, inline func(*entry) bool, jobs int, run func(*entry)) {
	pl := &pool{p: p, ctx: ctx, entries: entries, sem: sem, streams: streams, weight: weight, inline: inline, run: run,
		runq: make(chan job), done: make(chan struct{})}
	pl.wg.Add(jobs)
	for range jobs {
		go pl.worker()
	}
	pl.wg.Wait()
	close(pl.done)
	pl.runners.Wait()
}

// pool is the state the workers share.
type pool struct {
	p            *parking
	ctx          context.Context
	entries      <-chan *entry
	sem, streams *semaphore.Weighted
	weight       func(*entry) int64
	inline       func(*entry) bool
	run          func(*entry)
	wg           sync.WaitGroup // the workers
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
}

// job is an entry granted *w (and a stream if stream): run it, then give back
// its grant. w is read once the run is done: takeSlot and hosts.multiplexed
// may lower it as it runs (x.granted).
type job struct {
	x      *entry
	w      *int64
	stream bool
}

func (pl *pool) release(j job) {
	if j.stream {
		pl.streams.Release(1)
	}
	pl.sem.Release(*j.w)
	pl.p.add(-1)
}

// spawn gives j to a runner that has offered itself, or to a new one if none
// has.
func (pl *pool) spawn(j job) {
	for {
		n := pl.free.Load()
		if n <= 0 {
			pl.runners.Add(1)
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
	for {
		pl.run(j.x)
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
	p, ctx, entries := pl.p, pl.ctx, pl.entries
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
	ctx, sem := pl.ctx, pl.sem
	w := pl.weight(x)
	if err := sem.Acquire(ctx, w); err != nil {
		x.interrupted()
		return false
	}
	if nw := pl.weight(x); nw < w {
		// Its host turned out to speak HTTP/2 while it waited: it takes a
		// stream, not a connection.
		sem.Release(w - nw)
		w = nw
	}
	// takeSlot and hosts.multiplexed may lower w (see there).
	stream := w == 1 && pl.streams != nil
	if stream {
		if err := pl.streams.Acquire(ctx, 1); err != nil {
			sem.Release(w)
			x.interrupted()
			return false
		}
	}
	x.weight, x.granted, x.small = w, &w, w == 1
	j := job{x: x, w: &w, stream: stream}
	if !pl.inline(x) {
		pl.spawn(j)
		return true
	}
	pl.run(x)
	pl.release(j)
	return true
}
