package download

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
)

func newTestRegroup(jobs int) (*regroup, chan Entry, chan *entry) {
	in, out := make(chan Entry), make(chan *entry)
	return newRegroup(in, out, jobs, func(ent Entry, host string) *entry {
		return &entry{ent: ent, hostKey: host}
	}, func(*entry) {}), in, out
}

// feedUntilHeld sends n entries (host of line i: host(i)) to a regroup whose
// output nobody takes, and returns how many it read before it stopped reading.
func feedUntilHeld(t *testing.T, n int, host func(i int) string) (read int, r *regroup) {
	read, _, r = feedEntriesUntilHeld(t, n, func(i int) Entry {
		return Entry{URL: fmt.Sprintf("http://%s/%d", host(i), i), Line: i + 1, Size: -1}
	})
	return read, r
}

// feedEntriesUntilHeld is feedUntilHeld of the entries ent gives; it also
// returns the bytes held when it stopped reading. (The regroup it returns
// has dropped them since: its run ended.)
func feedEntriesUntilHeld(t *testing.T, n int, ent func(i int) Entry) (read int, held int64, r *regroup) {
	synctest.Test(t, func(t *testing.T) {
		r2, in, _ := newTestRegroup(64)
		r = r2
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			for i := range n {
				select {
				case in <- ent(i):
					read++
				case <-ctx.Done():
					return
				}
			}
		}()
		done := make(chan struct{})
		go func() { r.run(ctx); close(done) }()
		synctest.Wait()
		n := read
		held = r.bytes
		cancel()
		<-done
		read = n
	})
	return read, held, r
}

// A list of distinct hosts, or of one host, is read only lookBase entries
// ahead (memory); one whose hosts recur far apart within that reach, up to
// lookMax (so that a host's entries meet while its connection lives).
func TestRegroupReadsFurtherAheadWhileHostsRecur(t *testing.T) {
	read, r := feedUntilHeld(t, 3*lookMax, func(i int) string { return fmt.Sprintf("h%d.test", i) })
	// The first entry went to the out channel's sender; lookBase wait.
	if want := lookBase + 1; read != want || r.limit != lookBase {
		t.Errorf("distinct hosts: read %d entries ahead (limit %d), want %d", read, r.limit, want)
	}
	if len(r.slots) > lookBase {
		t.Errorf("distinct hosts: the ring grew to %d slots, want at most %d", len(r.slots), lookBase)
	}
	read, r = feedUntilHeld(t, 3*lookMax, func(int) string { return "one.test" })
	if want := lookBase + 1; read != want || r.limit != lookBase {
		t.Errorf("one host: read %d entries ahead (limit %d), want %d", read, r.limit, want)
	}
	read, r = feedUntilHeld(t, 3*lookMax, func(i int) string { return fmt.Sprintf("h%d.test", i%5000) })
	if want := lookMax + 1; read != want || r.limit != lookMax {
		t.Errorf("hosts recurring every 5,000 lines: read %d entries ahead (limit %d), want %d", read, r.limit, want)
	}
}

// Entries go out once each, each host's in the list's order; after a host's
// entry ended, that host's next goes out before older entries of other hosts
// (one step late: the entry taken before the hint arrived goes first).
func TestRegroupServesTheHostThatEndedFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, in, out := newTestRegroup(4)
		go r.run(context.Background())
		const hosts, rounds = 7, 40
		go func() {
			for i := range hosts * rounds {
				in <- Entry{URL: fmt.Sprintf("http://h%d.test/%d", i%hosts, i/hosts), Line: i + 1}
			}
			close(in)
		}()
		synctest.Wait() // all read: 280 < lookBase
		last := map[string]int{}
		var got []string
		for x := range out {
			line := x.ent.Line
			if l, ok := last[x.hostKey]; ok && line <= l {
				t.Fatalf("%s: line %d after line %d", x.hostKey, line, l)
			}
			last[x.hostKey] = line
			got = append(got, x.hostKey)
			if x.hostKey == "h3.test:80" {
				// h3's entries end at once: its next must come right after the one
				// already taken.
				r.end(x.hostKey)
			}
			synctest.Wait()
		}
		if len(got) != hosts*rounds {
			t.Fatalf("%d entries out, want %d", len(got), hosts*rounds)
		}
		// From h3's first entry on, every other entry out is h3's until its
		// entries run out.
		first := -1
		for i, h := range got {
			if h == "h3.test:80" {
				first = i
				break
			}
		}
		for k := 1; k < rounds; k++ {
			if i := first + 2*k; got[i] != "h3.test:80" {
				t.Fatalf("entry %d out is %s, want h3.test:80 (its %d-th): %v", i, got[i], k+1, got[:first+2*rounds])
			}
		}
	})
}

// Entries that carry much (a table's other columns) are read ahead up to
// about lookBytes, not lookBase of them.
func TestRegroupBoundsTheBytesReadAhead(t *testing.T) {
	meta := `{"caption":"` + strings.Repeat("x", 2*lookBytes/lookBase) + `"}`
	read, held, r := feedEntriesUntilHeld(t, lookBase, func(i int) Entry {
		return Entry{URL: fmt.Sprintf("http://h%d.test/%d", i, i), Row: i + 1, Size: -1, Meta: meta}
	})
	if held < lookBytes || held > lookBytes+16<<10 {
		t.Errorf("%d entries of %d bytes read ahead hold %d bytes, want about %d", read, len(meta), held, lookBytes)
	}
	if read >= lookBase {
		t.Errorf("read %d entries ahead: the byte bound did not hold", read)
	}
	// Dropped at the run's end, they gave their bytes back.
	if r.waiting != 0 || r.bytes != 0 {
		t.Errorf("%d bytes counted with %d entries waiting after the run", r.bytes, r.waiting)
	}
}

// A list whose hosts recur far apart, then stop recurring, reads lookMax
// entries ahead and then gives that ring back as it empties: the entries of
// millions of distinct hosts that follow hold no more than lookQuiet would
// once quietAfter of them showed no host recur.
// Every entry still goes out once, each host's in the list's order.
func TestRegroupShrinksBackWhenHostsStopRecurring(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, in, out := newTestRegroup(64)
		const recurring, distinct = 2 * lookMax, 4 * lookMax
		go func() {
			for i := range recurring + distinct {
				host := fmt.Sprintf("h%d.test", i%5000)
				if i >= recurring {
					host = fmt.Sprintf("d%d.test", i)
				}
				in <- Entry{URL: fmt.Sprintf("http://%s/%d", host, i), Line: i + 1, Size: -1}
			}
			close(in)
		}()
		done := make(chan struct{})
		go func() { r.run(context.Background()); close(done) }()
		last := map[string]int{}
		n, grew := 0, 0
		for x := range out {
			n++
			if l, ok := last[x.hostKey]; ok && x.ent.Line <= l {
				t.Fatalf("%s: line %d after line %d", x.hostKey, x.ent.Line, l)
			}
			last[x.hostKey] = x.ent.Line
			if n == recurring/2 {
				synctest.Wait() // the run reads what it may, then waits for us
				grew = len(r.slots)
			}
		}
		<-done
		if n != recurring+distinct {
			t.Fatalf("%d entries out, want %d", n, recurring+distinct)
		}
		if grew < lookMax {
			t.Errorf("the ring held %d slots amid recurring hosts, want at least %d", grew, lookMax)
		}
		if r.limit != lookQuiet || len(r.slots) > 2*lookQuiet {
			t.Errorf("after %d entries of distinct hosts the ring holds %d slots (limit %d), want at most %d (limit %d)",
				distinct, len(r.slots), r.limit, 2*lookQuiet, lookQuiet)
		}
	})
}

// A list of distinct hosts reads lookBase entries ahead while it could still
// be the first round of a round-robin list, and lookQuiet once quietAfter
// entries showed no host recur.
func TestRegroupReadsLessAheadOnceHostsShowNoRecurrence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r, in, out := newTestRegroup(64)
		const n = 2 * quietAfter
		go func() {
			for i := range n {
				in <- Entry{URL: fmt.Sprintf("http://d%d.test/%d", i, i), Line: i + 1, Size: -1}
			}
			close(in)
		}()
		done := make(chan struct{})
		go func() { r.run(context.Background()); close(done) }()
		got := 0
		for range out {
			got++
			var early bool
			switch got {
			case quietAfter / 2:
				early = true
			case quietAfter + 2*lookBase, n - 2*lookBase:
			default:
				continue
			}
			synctest.Wait() // the run reads what it may, then waits for us
			ahead := r.tail - r.head
			if early && (r.limit != lookBase || ahead != lookBase) {
				t.Errorf("after %d entries out: %d read ahead (limit %d), want %d", got, ahead, r.limit, lookBase)
			}
			if !early && (r.limit != lookQuiet || ahead != lookQuiet || len(r.slots) > 2*lookQuiet) {
				t.Errorf("after %d entries out: %d read ahead (limit %d) in a ring of %d, want %d in at most %d",
					got, ahead, r.limit, len(r.slots), lookQuiet, 2*lookQuiet)
			}
		}
		<-done
		if got != n {
			t.Fatalf("%d entries out, want %d", got, n)
		}
	})
}
