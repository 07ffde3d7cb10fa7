package download

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// hosts tracks what the pool shares per host: a cap on concurrent downloads
// (--per-host) and a pause that a 429 or 503 imposes on every worker, so one
// overloaded host is backed off as a whole while the others keep going.
//
// Entries for idle hosts are dropped once the table grows, so a list touching
// millions of hosts does not grow memory without bound.
type hosts struct {
	cap int // 0: no per-host cap

	mu      sync.Mutex
	m       map[string]*host
	sweepAt int // len(m) at which the next sweep runs
	swept   int // hosts looked at by sweeps (for a test)
	// anyUntil is the latest end of any pause (UnixNano): past it no host is
	// paused, and pausedFor answers without the lock (the usual case).
	anyUntil atomic.Int64
}

type host struct {
	sem    chan struct{} // nil without a cap
	users  int           // workers between acquire and release
	paused time.Time     // no new request before this instant
}

const maxIdleHosts = 4096

func newHosts(perHost int) *hosts {
	return &hosts{cap: perHost, m: make(map[string]*host)}
}

// acquire waits for a per-host slot and returns the host's state. The caller must
// release it.
func (hs *hosts) acquire(ctx context.Context, name string) (*host, error) {
	hs.mu.Lock()
	h := hs.m[name]
	if h == nil {
		if len(hs.m) >= max(maxIdleHosts, hs.sweepAt) {
			hs.sweepLocked()
			// Hosts in use or still paused stay: the next sweep waits until the
			// table has doubled, so that sweeps cost O(1) per new host even
			// when thousands of hosts are paused at once.
			hs.sweepAt = 2 * len(hs.m)
		}
		h = &host{}
		if hs.cap > 0 {
			h.sem = make(chan struct{}, hs.cap)
		}
		hs.m[name] = h
	}
	h.users++
	hs.mu.Unlock()
	if h.sem == nil {
		return h, nil
	}
	select {
	case h.sem <- struct{}{}:
		return h, nil
	case <-ctx.Done():
		hs.done(h)
		return nil, ctx.Err()
	}
}

func (hs *hosts) release(h *host) {
	if h.sem != nil {
		<-h.sem
	}
	hs.done(h)
}

func (hs *hosts) done(h *host) {
	hs.mu.Lock()
	h.users--
	hs.mu.Unlock()
}

// sweepLocked forgets hosts nobody uses whose pause has ended.
func (hs *hosts) sweepLocked() {
	now := time.Now()
	hs.swept += len(hs.m)
	for k, h := range hs.m {
		if h.users == 0 && now.After(h.paused) {
			delete(hs.m, k)
		}
	}
}

// pause backs the host off until d from now (never shortening a longer pause).
func (hs *hosts) pause(h *host, d time.Duration) {
	until := time.Now().Add(d)
	hs.mu.Lock()
	if until.After(h.paused) {
		h.paused = until
	}
	if n := until.UnixNano(); n > hs.anyUntil.Load() {
		hs.anyUntil.Store(n) // under mu: no lost update
	}
	hs.mu.Unlock()
}

// pausedFor returns how long the named host's pause still lasts (0: none).
func (hs *hosts) pausedFor(name string) time.Duration {
	if time.Now().UnixNano() >= hs.anyUntil.Load() {
		return 0
	}
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if h := hs.m[name]; h != nil {
		return time.Until(h.paused)
	}
	return 0
}

// remaining returns how long h's pause still lasts (<= 0: none).
func (hs *hosts) remaining(h *host) time.Duration {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	return time.Until(h.paused)
}

// wait blocks until the host's pause, if any, is over.
func (hs *hosts) wait(ctx context.Context, h *host) error {
	for {
		d := hs.remaining(h)
		if d <= 0 {
			return nil
		}
		if err := sleep(ctx, d); err != nil {
			return err
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
