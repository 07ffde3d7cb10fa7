package download

import (
	"fmt"
	"sync"
	"testing"

	"golang.org/x/sync/semaphore"
)

// Lower gives the difference back to -j and to the host at once, and
// Release what is left, once: in total exactly what was granted. (A
// semaphore panics when given back more than it lent.)
func TestGrantLowerThenReleaseGivesBackOnce(t *testing.T) {
	jobs := semaphore.NewWeighted(8)
	hs := newHosts(1, 8, 4) // --per-host 1 x 4 streams
	g := granted(t, jobs, 4)
	h, ok := hs.tryAcquire("h:443", g, nil)
	if !ok {
		t.Fatal("no slot for the first grant")
	}
	g.Lower(1)
	if w, free := g.Weight(), available(jobs, 8); w != 1 || free != 7 {
		t.Errorf("after Lower(1): weight %d, -j free %d, want 1 7", w, free)
	}
	if h.used != 1 {
		t.Errorf("after Lower(1): host's slots used %d, want 1", h.used)
	}
	g.Lower(2) // never raised
	g.Lower(1)
	if w, free := g.Weight(), available(jobs, 8); w != 1 || free != 7 {
		t.Errorf("after Lower(2), Lower(1): weight %d, -j free %d, want 1 7", w, free)
	}
	g.Release() // gives back the host's slot too: the entry did not
	g.Release()
	g.Lower(0)
	hs.release(g)
	if free := available(jobs, 8); free != 8 {
		t.Errorf("-j free %d after Release, want 8", free)
	}
	if h.used != 0 || h.users != 0 {
		t.Errorf("host: %d slots, %d users after Release, want 0 0", h.used, h.users)
	}
}

// The host's slots that Lower gives back are free for others at once: a
// waiter wakes and takes them.
func TestGrantLowerFreesHostSlots(t *testing.T) {
	jobs := semaphore.NewWeighted(8)
	hs := newHosts(1, 8, 4)
	g := granted(t, jobs, 4)
	if _, ok := hs.tryAcquire("h:443", g, nil); !ok {
		t.Fatal("no slot for the first grant")
	}
	other := granted(t, jobs, 3)
	woken := false
	if _, ok := hs.tryAcquire("h:443", other, func() bool { woken = true; return true }); ok {
		t.Fatal("3 slots free while a connection's worth (4 of 4) is taken")
	}
	g.Lower(1)
	if !woken {
		t.Error("Lower freed 3 slots and the waiter for 3 was not woken")
	}
	if _, ok := hs.tryAcquire("h:443", other, nil); !ok {
		t.Error("the 3 slots Lower freed cannot be taken")
	}
	for _, x := range []*grant{g, other} {
		hs.release(x)
		x.Release()
	}
	if free := available(jobs, 8); free != 8 {
		t.Errorf("-j free %d after every release, want 8", free)
	}
}

// Lowering (by hand, or by the host turning out to multiplex) races the
// entry giving its slot back and the pool releasing the grant: whatever the
// order, -j and the host get back exactly what was granted. Run with -race.
func TestGrantLowerRacesRelease(t *testing.T) {
	jobs := semaphore.NewWeighted(8)
	hs := newHosts(2, 8, 4)
	for i := range 500 {
		name := fmt.Sprintf("h%d:443", i)
		g := granted(t, jobs, 4)
		h, ok := hs.tryAcquire(name, g, nil)
		if !ok {
			t.Fatal("no slot for the grant")
		}
		var wg sync.WaitGroup
		wg.Go(func() { g.Lower(1) })
		wg.Go(func() { hs.multiplexed(h) })
		wg.Go(func() { hs.multiplexed(h) })
		wg.Go(func() {
			hs.release(g)
			g.Release()
		})
		wg.Go(func() { g.Release() })
		wg.Wait()
		if free := available(jobs, 8); free != 8 {
			t.Fatalf("round %d: -j free %d after every release, want 8", i, free)
		}
		if h.used != 0 || h.users != 0 || len(h.heavy) != 0 {
			t.Fatalf("round %d: host: %d slots, %d users, %d heavy after every release, want none",
				i, h.used, h.users, len(h.heavy))
		}
	}
}
