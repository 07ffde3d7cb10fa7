package download

import (
	"context"
	"sync"

	"golang.org/x/sync/semaphore"
)

// grant is one run of an entry's share of the engine: w of -j (Engine.jobs,
// counted in streams: a whole connection's worth over HTTP/1.1 or to a host
// not yet known to speak HTTP/2, one stream over HTTP/2), maybe one of the
// cap on entries that take a stream (Engine.streams), and, from the moment
// hosts hands it a slot of the entry's host (hosts.tryAcquire) to the moment
// it gives that back (hosts.release), w of that host's slots too (--per-host,
// counted in streams as well). The pool makes it when the entry's turn comes
// (acquireGrant), the entry holds it while it runs, and the pool releases it
// when the run returns: a parked entry's next run has a grant of its own.
//
// Its weight only goes down: Lower gives the difference back to -j and to
// the host at once, when the host turns out to multiplex (hosts.multiplexed
// lowers the grants it keeps as heavy), and Release gives back what is left,
// once. What a grant gives back in total is what it was granted, whichever
// of Lower, hosts.release and Release run and in whatever order, from
// whatever goroutines.
//
// Locking: mu guards w, the host held and released. Lock order: a grant's
// mu, then the hosts' mu (then the parking's, which hosts' waiters take).
// hosts.tryAcquire and hosts.release hold both, so that a slot taken or given
// back and the grant's record of it change together; hosts never takes a
// grant's mu while it holds its own (multiplexed lowers its heavy grants
// after it lets its mu go). The semaphores are released under mu: their
// Release does not block.
type grant struct {
	jobs   *semaphore.Weighted
	stream *semaphore.Weighted // one of it is held (nil: none); set before the grant is shared

	mu       sync.Mutex
	w        int64  // held of jobs, and of host's slots while host is set
	hosts    *hosts // the table host belongs to
	host     *host  // whose slots it holds (nil: none)
	released bool
}

// acquireGrant waits for w of jobs and returns them as a grant.
func acquireGrant(ctx context.Context, jobs *semaphore.Weighted, w int64) (*grant, error) {
	if err := jobs.Acquire(ctx, w); err != nil {
		return nil, err
	}
	return &grant{jobs: jobs, w: w}, nil
}

// takeStream adds one of streams to a grant that no other goroutine sees yet.
func (g *grant) takeStream(ctx context.Context, streams *semaphore.Weighted) error {
	if err := streams.Acquire(ctx, 1); err != nil {
		return err
	}
	g.stream = streams
	return nil
}

// Weight is what the grant holds now.
func (g *grant) Weight() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.w
}

// Lower lowers the grant to to, if it holds more and is not released: the
// difference goes back to -j and, if it holds a slot of its host, to the host,
// whose waiters may then take it.
func (g *grant) Lower(to int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.lowerLocked(to)
}

func (g *grant) lowerLocked(to int64) {
	if g.released || to >= g.w {
		return
	}
	d := g.w - to
	g.w = to
	g.jobs.Release(d)
	if g.host != nil {
		g.hosts.giveBack(g.host, g, d, false)
	}
}

// Release gives back what the grant still holds: its host's slots (if the
// entry did not give them back itself), its share of -j and its stream. Only
// the first call does anything.
func (g *grant) Release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.released {
		return
	}
	g.leaveHostLocked()
	g.released = true
	g.jobs.Release(g.w)
	if g.stream != nil {
		g.stream.Release(1)
	}
}

// leaveHostLocked gives back the host's slots it holds, if any.
func (g *grant) leaveHostLocked() {
	if g.host != nil {
		g.hosts.giveBack(g.host, g, g.w, true)
		g.host, g.hosts = nil, nil
	}
}
