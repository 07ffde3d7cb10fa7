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
// goroutines kept from one entry to the next, no more of them than entries
// granted at once, and none is left when workers returns.
func TestWorkersReuseRunners(t *testing.T) {
	const n, inFlight, jobs = 2000, 8, 2
	p := newParking(64)
	entries := make(chan *entry)
	sem := semaphore.NewWeighted(inFlight)
	var (
		mu  sync.Mutex
		ids = map[uint64]bool{}
		ran atomic.Int64
	)
	run := func(x *entry) {
		mu.Lock()
		ids[goid()] = true
		mu.Unlock()
		time.Sleep(50 * time.Microsecond)
		ran.Add(1)
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
	if got := len(ids); got > inFlight {
		t.Errorf("%d goroutines ran %d entries, at most %d granted at once: runners not reused",
			got, n, inFlight)
	}
	// Every runner has ended (looked for by name: other tests' goroutines
	// may come and go meanwhile).
	buf := make([]byte, 1<<20)
	if st := buf[:runtime.Stack(buf, true)]; bytes.Contains(st, []byte("(*pool).runner")) {
		t.Errorf("a runner is left after workers returned:\n%s", st)
	}
}
