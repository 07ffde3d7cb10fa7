package download

import (
	"context"
	"fmt"
	"testing"
	"time"

	"golang.org/x/sync/semaphore"
)

// granted returns a grant of w taken from jobs.
func granted(t *testing.T, jobs *semaphore.Weighted, w int64) *grant {
	t.Helper()
	g, err := acquireGrant(context.Background(), jobs, w)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// available reports how much of s is free, up to limit (it takes and gives
// back).
func available(s *semaphore.Weighted, limit int64) int64 {
	var n int64
	for n < limit && s.TryAcquire(1) {
		n++
	}
	if n > 0 {
		s.Release(n)
	}
	return n
}

// Forgetting idle hosts stays O(1) per new host even when most hosts are
// paused (and so cannot be forgotten): a list of many hosts answering 429.
func TestHostsSweepAmortized(t *testing.T) {
	hs := newHosts(0, 8, 1)
	jobs := semaphore.NewWeighted(1)
	const n = 5 * maxIdleHosts
	for i := range n {
		g := granted(t, jobs, 1)
		h, err := hs.acquire(context.Background(), fmt.Sprintf("h%d:80", i), g)
		if err != nil {
			t.Fatal(err)
		}
		hs.pause(h, time.Hour)
		hs.release(g)
		g.Release()
	}
	if hs.swept > 4*n {
		t.Errorf("sweeps looked at %d hosts for %d new ones: quadratic", hs.swept, n)
	}
}

// Per-host slots are counted in streams: an entry sent before its host was
// known to speak HTTP/2 takes a whole connection's worth, and once the host
// turns out to, it keeps one stream: the rest goes back to the host and to
// -j at once, and a waiter wakes.
func TestHostsMultiplexedLightensHeavy(t *testing.T) {
	hs := newHosts(1, 8, 4) // --per-host 1 x 4 streams
	jobs := semaphore.NewWeighted(8)
	g := granted(t, jobs, 4)
	h, ok := hs.tryAcquire("h:443", g, nil)
	if !ok || g.Weight() != 4 {
		t.Fatalf("first entry: ok %v weight %d, want a whole connection (4)", ok, g.Weight())
	}
	woken := false
	g1 := granted(t, jobs, 1)
	if _, ok := hs.tryAcquire("h:443", g1, func() bool { woken = true; return true }); ok {
		t.Fatal("a stream was free while the one connection's worth was taken")
	}
	g1.Release()
	hs.multiplexed(h)
	if w, free := g.Weight(), available(jobs, 8); w != 1 || free != 7 || h.used != 1 {
		t.Errorf("after multiplexed: weight %d, -j free %d, used %d, want 1 7 1", w, free, h.used)
	}
	if !woken {
		t.Error("the waiter was not woken")
	}
	g2 := granted(t, jobs, 4) // a later entry dispatched as heavy takes one stream
	if _, ok := hs.tryAcquire("h:443", g2, nil); !ok || g2.Weight() != 1 {
		t.Errorf("later entry: ok %v weight %d, want a stream", ok, g2.Weight())
	}
	if free := available(jobs, 8); free != 6 {
		t.Errorf("-j free %d with a stream each taken by two entries, want 6", free)
	}
	hs.release(g)
	hs.release(g2)
	if h.used != 0 || h.users != 0 {
		t.Errorf("%d slots (%d users) still taken after every release", h.used, h.users)
	}
	g.Release()
	g2.Release()
	if free := available(jobs, 8); free != 8 {
		t.Errorf("-j free %d after every release, want 8", free)
	}
}
