package download

import (
	"sync"
	"sync/atomic"
	"time"
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
	back chan *entry // parked entries whose pause is over
	max  int64
	// down reports whether the named host is down (nil: never): see put.
	down  func(hostKey string) bool
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
	key := x.hostKey // once parked, x may be another worker's
	x.aside.Store(true)
	p.add(1)
	p.mu.Lock()
	// Under mu, so that unparked finds it even if the timer fires at once.
	p.out[x] = time.AfterFunc(d, func() { p.back <- x }) // never blocks: count <= cap(back)
	p.mu.Unlock()
	// The host may have gone down since x last looked (another entry's
	// miss), and woken its parked entries before x was among them: x would
	// wait out its pause or backoff before failing. Either that wake sees x
	// here, or this sees the host down.
	if p.down != nil && p.down(key) {
		p.wake(key)
	}
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
