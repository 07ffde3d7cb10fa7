package download

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// parking sets aside entries whose host is paused (a 429 or 503 with
// Retry-After) before they start, so that their worker takes the next entry and
// other hosts keep going. A parked entry comes back to the pool when the pause
// ends. At most max entries are parked, so memory stays bounded; beyond that a
// worker waits for the pause as before (head-of-line).
//
// It also tells the workers when they may stop: the list is read to the end and
// no entry is in process or parked.
type parking struct {
	back  chan Entry // parked entries whose pause is over
	max   int64
	count atomic.Int64 // parked (timers pending or in back)

	// The counters are atomics, not a mutex: add runs twice per entry. Each
	// side stores its own variable, then loads the other's; Go's atomics are
	// sequentially consistent, so whichever comes last sees both and closes idle.
	work      atomic.Int64 // entries sent by the list's reader or parked, not yet processed
	inputDone atomic.Bool  // the list is read
	idle      chan struct{}
	closeIdle sync.Once
}

func newParking(max int) *parking {
	return &parking{back: make(chan Entry, max), max: int64(max), idle: make(chan struct{})}
}

// park sets ent aside for d, if there is room.
func (p *parking) park(ent Entry, d time.Duration) bool {
	if p.count.Add(1) > p.max {
		p.count.Add(-1)
		return false
	}
	p.add(1)
	time.AfterFunc(d, func() { p.back <- ent }) // never blocks: count <= cap(back)
	return true
}

// unparked is called for each entry received from back.
func (p *parking) unparked() { p.count.Add(-1) }

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

// worker takes entries from the list and from the parking until both are done
// or ctx ends, processing each with process.
func (p *parking) worker(ctx context.Context, entries <-chan Entry, process func(Entry)) {
	for {
		select {
		case <-ctx.Done(): // stopping: entries not started are not reported
			return
		case <-p.idle:
			return
		case ent := <-p.back:
			p.unparked()
			process(ent)
			p.add(-1)
		case ent, ok := <-entries:
			if !ok {
				entries = nil // a nil channel is never ready
				p.listDone()
				continue
			}
			if ctx.Err() != nil {
				return
			}
			process(ent)
			p.add(-1)
		}
	}
}
