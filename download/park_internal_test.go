package download

import (
	"bytes"
	"context"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sync/semaphore"
)

// goid is the id of the calling goroutine, from its stack's header line.
func goid() uint64 {
	b := make([]byte, 64)
	b = b[:runtime.Stack(b, false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	id, _ := strconv.ParseUint(string(b[:bytes.IndexByte(b, ' ')]), 10, 64)
	return id
}

// TestWorkersReuseRunners: entries that run off the workers (streams) run on
// goroutines kept from one entry to the next, no more of them than were in
// flight at once and those between the release of their grant and their
// wait for the next (at most 2 x in flight), and none is left when workers
// returns.
func TestWorkersReuseRunners(t *testing.T) {
	const n, inFlight, jobs = 2000, 8, 2
	before := runtime.NumGoroutine()
	p := newParking(64)
	entries := make(chan *entry)
	sem := semaphore.NewWeighted(inFlight)
	var (
		mu   sync.Mutex
		ids  = map[uint64]bool{}
		ran  atomic.Int64
		cur  atomic.Int64
		peak atomic.Int64
	)
	run := func(x *entry) {
		c := cur.Add(1)
		for {
			pk := peak.Load()
			if c <= pk || peak.CompareAndSwap(pk, c) {
				break
			}
		}
		mu.Lock()
		ids[goid()] = true
		mu.Unlock()
		time.Sleep(50 * time.Microsecond)
		ran.Add(1)
		cur.Add(-1)
	}
	go func() {
		for range n {
			p.add(1)
			entries <- &entry{}
		}
		close(entries)
	}()
	p.workers(context.Background(), entries, sem, nil, func(*entry) int64 { return 1 },
		func(*entry) bool { return false }, jobs, run)
	if got := ran.Load(); got != n {
		t.Fatalf("ran %d entries, want %d", got, n)
	}
	if got := len(ids); got > 2*inFlight {
		t.Errorf("%d goroutines ran %d entries, at most %d in flight at once: runners not reused",
			got, n, peak.Load())
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > before {
		t.Errorf("%d goroutines after workers returned, %d before", g, before)
	}
}
