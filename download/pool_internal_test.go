package download

import (
	"bytes"
	"context"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
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
// granted at once, and none is left when work returns. (In a bubble: a
// runner left blocked would fail the test as a deadlock too.)
func TestWorkersReuseRunners(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n, inFlight, jobs = 2000, 8, 2
		p := newParking(64)
		entries := make(chan *entry)
		sem := semaphore.NewWeighted(inFlight)
		var (
			mu  sync.Mutex
			ids = map[uint64]bool{}
			ran atomic.Int64
		)
		run := func(x *entry, g *grant) {
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
		pl := &pool{parking: p, jobs: sem, weight: func(*entry) int64 { return 1 },
			inline: func(*entry) bool { return false }, workers: jobs, run: run}
		pl.work(context.Background(), entries)
		if got := ran.Load(); got != n {
			t.Fatalf("ran %d entries, want %d", got, n)
		}
		if got := len(ids); got > inFlight {
			t.Errorf("%d goroutines ran %d entries, at most %d granted at once: runners not reused",
				got, n, inFlight)
		}
		if got := pl.live.Load(); got != 0 {
			t.Errorf("%d runners are left after work returned", got)
		}
		if free := available(sem, inFlight); free != inFlight {
			t.Errorf("%d of -j free after work returned, want %d: a grant was not released", free, inFlight)
		}
	})
}
