package download

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
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
func TestHostsForgettingStaysCheapWhileHostsArePaused(t *testing.T) {
	hs := newHosts(0, 8, 1)
	jobs := semaphore.NewWeighted(1)
	const n = 5 * maxIdleHosts
	for i := range n {
		h := use(t, hs, jobs, fmt.Sprintf("h%d:80", i), func(h *host) { hs.pause(h, time.Hour) })
		_ = h
	}
	if hs.looked > maxLook*n {
		t.Errorf("looked at %d hosts to forget some, for %d new ones: more than %d each", hs.looked, n, maxLook)
	}
	if len(hs.m) != n {
		t.Errorf("%d hosts remembered, want all %d: each is paused for an hour", len(hs.m), n)
	}
}

// use takes a slot of the named host, calls during (if not nil) with its
// state, and gives the slot back: one entry to the host, start to end.
func use(t *testing.T, hs *hosts, jobs *semaphore.Weighted, name string, during func(*host)) *host {
	t.Helper()
	g := granted(t, jobs, 1)
	defer g.Release()
	h, err := hs.acquire(context.Background(), name, g)
	if err != nil {
		t.Fatal(err)
	}
	if during != nil {
		during(h)
	}
	hs.release(g)
	return h
}

// checkBound fails if the table holds more hosts nobody uses than its bounds.
func checkBound(t *testing.T, hs *hosts, inUse int) {
	t.Helper()
	if hs.idle.Len() > maxIdleHosts || hs.down.Len() > maxDownHosts || len(hs.m) > maxIdleHosts+hs.down.Len()+inUse {
		t.Fatalf("table holds %d hosts (%d idle, %d down, %d in use): above its bounds %d and %d",
			len(hs.m), hs.idle.Len(), hs.down.Len(), inUse, maxIdleHosts, maxDownHosts)
	}
}

// Over far more hosts than it keeps, the table stays at its bound and
// forgets the least recently used first: a host used again now and then is
// remembered (with what was learnt of it), the ones not seen for longest are
// gone, and the most recent maxIdleHosts are all there.
func TestHostsTableForgetsLeastRecentlyUsedFirst(t *testing.T) {
	hs := newHosts(0, 8, 4)
	jobs := semaphore.NewWeighted(4)
	hot := use(t, hs, jobs, "hot:443", func(h *host) { hs.multiplexed(h) })
	const n = 10 * maxIdleHosts
	for i := range n {
		use(t, hs, jobs, fmt.Sprintf("h%d:80", i), nil)
		if i%(maxIdleHosts/2) == 0 {
			if h := use(t, hs, jobs, "hot:443", nil); h != hot {
				t.Fatalf("after %d hosts, the host used every %d was forgotten", i, maxIdleHosts/2)
			}
		}
		checkBound(t, hs, 0)
	}
	if !hs.isMultiplexed("hot:443") {
		t.Error("the host used now and then lost what was learnt of it (HTTP/2)")
	}
	if len(hs.m) != maxIdleHosts {
		t.Errorf("%d hosts remembered after %d, want the bound %d", len(hs.m), n, maxIdleHosts)
	}
	for i := range n - maxIdleHosts {
		if hs.m[fmt.Sprintf("h%d:80", i)] != nil {
			t.Fatalf("h%d, one of the least recently used, is still remembered", i)
		}
	}
	for i := n - maxIdleHosts + 1; i < n; i++ { // one place went to hot
		if hs.m[fmt.Sprintf("h%d:80", i)] == nil {
			t.Fatalf("h%d, one of the most recently used, was forgotten", i)
		}
	}
}

// A host in use (slots taken, or an entry waiting for one) is never
// forgotten, however many hosts come after it; once released it is forgotten
// as any other.
func TestHostsTableKeepsHostsInUse(t *testing.T) {
	hs := newHosts(1, 8, 1) // --per-host 1: a second entry waits
	jobs := semaphore.NewWeighted(4)
	g := granted(t, jobs, 1)
	busy, ok := hs.tryAcquire("busy:80", g, nil)
	if !ok {
		t.Fatal("no slot on a new host")
	}
	g2 := granted(t, jobs, 1)
	defer g2.Release()
	woken := 0
	if _, ok := hs.tryAcquire("busy:80", g2, func() bool { woken++; return true }); ok {
		t.Fatal("a second slot under --per-host 1")
	}
	g3 := granted(t, jobs, 1)
	held, ok := hs.tryAcquire("held:80", g3, nil)
	if !ok {
		t.Fatal("no slot on a new host")
	}
	hs.release(g3) // held: released before the others come
	g3.Release()
	const n = 3 * maxIdleHosts
	for i := range n {
		use(t, hs, jobs, fmt.Sprintf("h%d:80", i), nil)
		checkBound(t, hs, 1)
	}
	if hs.m["busy:80"] != busy {
		t.Fatal("a host in use was forgotten")
	}
	if hs.m["held:80"] == held {
		t.Fatal("a host released long ago is still remembered")
	}
	hs.release(g) // the waiter is woken, and its host stays until it is done
	g.Release()
	if woken != 1 {
		t.Fatalf("the waiter was woken %d times, want 1", woken)
	}
	if h, ok := hs.tryAcquire("busy:80", g2, nil); !ok || h != busy {
		t.Fatal("the waiter did not get the host it waited for")
	}
	hs.release(g2)
	for i := range maxIdleHosts {
		use(t, hs, jobs, fmt.Sprintf("after%d:80", i), nil)
	}
	if hs.m["busy:80"] != nil {
		t.Error("a host no longer in use was not forgotten after maxIdleHosts others")
	}
}

// A paused host is remembered (with its pause) while the pause lasts, however
// many hosts come meanwhile, and forgotten as any other once it has ended.
func TestHostsTableKeepsPausedHostsUntilThePauseEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hs := newHosts(0, 8, 1)
		jobs := semaphore.NewWeighted(1)
		paused := use(t, hs, jobs, "paused:80", func(h *host) { hs.pause(h, time.Minute) })
		for i := range 3 * maxIdleHosts {
			use(t, hs, jobs, fmt.Sprintf("h%d:80", i), nil)
		}
		if hs.m["paused:80"] != paused || hs.pausedFor("paused:80") <= 0 {
			t.Fatal("a paused host was forgotten while its pause lasts")
		}
		if len(hs.m) > maxIdleHosts+1 {
			t.Fatalf("%d hosts remembered, want at most %d and the paused one", len(hs.m), maxIdleHosts)
		}
		time.Sleep(time.Minute)
		for i := range 2 * maxIdleHosts {
			use(t, hs, jobs, fmt.Sprintf("after%d:80", i), nil)
			checkBound(t, hs, 0)
		}
		if hs.m["paused:80"] != nil {
			t.Error("a host whose pause ended was not forgotten")
		}
	})
}

// A down host is remembered apart from the up ones (a list of live hosts does
// not make haul try a dead one again), and the down hosts are bounded too:
// past maxDownHosts the least recently used go.
func TestHostsTableBoundsDownHostsApart(t *testing.T) {
	hs := newHosts(0, 1, 1) // one miss: down
	jobs := semaphore.NewWeighted(1)
	miss := errors.New("connection refused")
	dead := use(t, hs, jobs, "dead:80", func(h *host) { hs.missed(h, miss) })
	if hs.isDown(dead) == nil {
		t.Fatal("a host that missed its limit is not down")
	}
	for i := range 3 * maxIdleHosts {
		use(t, hs, jobs, fmt.Sprintf("up%d:80", i), nil)
	}
	if hs.m["dead:80"] != dead {
		t.Fatal("a down host was forgotten to make room for up ones")
	}
	for i := range maxDownHosts + 100 {
		use(t, hs, jobs, fmt.Sprintf("down%d:80", i), func(h *host) { hs.missed(h, miss) })
	}
	checkBound(t, hs, 0)
	if hs.down.Len() != maxDownHosts {
		t.Errorf("%d down hosts remembered, want the bound %d", hs.down.Len(), maxDownHosts)
	}
	if hs.m["dead:80"] != nil || hs.m["down0:80"] != nil {
		t.Error("the least recently used down hosts are still remembered past the bound")
	}
	if h := hs.m[fmt.Sprintf("down%d:80", maxDownHosts+99)]; h == nil || hs.isDown(h) == nil {
		t.Error("the most recent down host was forgotten")
	}
	if hs.idle.Len() != maxIdleHosts {
		t.Errorf("%d up hosts remembered, want %d: down hosts do not push them out", hs.idle.Len(), maxIdleHosts)
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

// Politeness reaches hosts the table has not seen yet (a rate turn, a
// robots.txt asked before any slot): those hosts are in the table's order
// too, and forgotten as any other.
func TestHostsTableBoundsHostsSeenOnlyByPoliteness(t *testing.T) {
	hs := newHosts(0, 8, 1)
	hs.setPolite(1000, 4)
	const n = 3 * maxIdleHosts
	for i := range n {
		hs.rateTurn(fmt.Sprintf("r%d:80", i))
		hs.robotsFor(fmt.Sprintf("b%d:80", i), false)
		checkBound(t, hs, 0)
	}
	if len(hs.m) != maxIdleHosts {
		t.Errorf("%d hosts remembered after %d, want the bound %d", len(hs.m), 2*n, maxIdleHosts)
	}
}
