package download

import (
	"context"
	"hash/maphash"
	"unsafe"

	"github.com/haul/haul/internal/urlid"
)

// regroup stands between the list's reader and the workers, and hands out
// the entries so that a host's next entry follows its last one while the
// connection that served it is still idle in the client's pool.
//
// A list that spreads each host's entries far apart (line i to host i mod
// 10,000) otherwise costs a connection per entry: by the time a host's next
// entry comes, thousands of other hosts have pushed its idle connection out
// of the bounded pool (the client keeps a few hundred, least recently used
// first, so descriptors do not grow with the hosts). Keeping a connection per
// host open would cost a descriptor each; holding entries read ahead costs a
// few hundred bytes each, so the entries wait rather than the connections.
//
// It reads up to lookBase entries ahead of the oldest not handed out, and up
// to lookMax while hosts recur far apart: at least one entry in 8 of the last
// recurEvery finds an entry of its host waiting, read more entries before
// than the client keeps idle connections, or none waiting but its host among
// those of the last 32,768 to 65,536 entries read (a Bloom filter of 128 KiB).
// A list of distinct hosts, or of one host, holds only lookBase, and only
// lookQuiet once quietAfter entries (the filter's reach) had no host recur,
// fewer than one in 32 of them (the filter's false hits are about one in
// 40): hosts further apart are not seen anyway, so reading further ahead
// would group nothing, and over millions of hosts it would only hold
// memory. (lookBase until then: the first round of a round-robin list looks
// like distinct hosts, and its entries still waiting when its hosts come
// back join their next ones.) Once hosts stop recurring, the ring that held
// lookMax shrinks back as it empties. Whatever the number, the entries
// waiting hold at most about lookBytes (16 MiB): a table's rows carry their
// other columns. When an entry's run returns (ended),
// its host's next waiting entry goes out first; otherwise the oldest. One
// host's entries keep the order of the list, and each is handed out once;
// the entries of different hosts may go out of the list's order.
type regroup struct {
	in    <-chan Entry  // from the list's reader, closed at its end
	out   chan<- *entry // to the workers, closed once in is and all went out
	ended chan string   // hosts whose entry's run returned (hints: dropped when full)
	mk    func(ent Entry, host string) *entry
	drop  func(*entry) // reports an entry not handed out when the run ends

	// The entries read and not handed out, in a ring by the order read:
	// entry seq is at slots[seq&(len-1)]; [head, tail) are the read ones
	// still in reach, some of them already handed out (their q nil).
	slots      []slot
	head, tail int64
	limit      int64 // how far ahead of head it reads now
	base       int64 // limit while hosts do not recur
	low        int64 // limit once they did not for quietAfter entries
	quiet      int64 // entries read in blocks of hosts not recurring since they last did
	far        int64 // a host recurs when its entries lie this far apart
	waiting    int   // slots waiting
	bytes      int64 // what the waiting entries hold, about (slotBytes)
	hosts      map[string]*hostQueue
	hot        []*hostQueue // hot[hotAt:]: hosts to serve next, in the order their entries ended
	hotAt      int

	// Recurrence over the last recurEvery entries read.
	read, recur int
	// seen holds the hosts of the last seenSpan to 2*seenSpan entries read:
	// a Bloom filter of two generations, the older dropped every seenSpan.
	seen             [2][seenWords]uint64
	seenGen, seenLen int
	seed             maphash.Seed
}

// slot is a waiting entry, small: most entries of a long list are a URL, a
// line and a position (about 56 bytes here, besides the URL's; an Entry is
// 112, its host key 40 more).
type slot struct {
	url         string
	line, index int
	more        *Entry     // the whole entry, where it has more than those
	q           *hostQueue // its host's; nil: not waiting
	next        int64      // the next waiting entry of the same host, -1: none
}

// size is about what s holds: itself and its strings.
func (s *slot) size() int64 {
	n := int64(unsafe.Sizeof(*s)) + int64(len(s.url))
	if m := s.more; m != nil {
		n += int64(unsafe.Sizeof(*m)) + int64(len(m.Out)+len(m.SHA256)+len(m.Key)+len(m.Meta))
	}
	return n
}

func (s *slot) entry() Entry {
	if s.more != nil {
		return *s.more
	}
	return Entry{URL: s.url, Line: s.line, Index: s.index, Size: -1}
}

// hostQueue is one host's waiting entries, in the order read.
type hostQueue struct {
	host        string
	first, last int64
	hot         bool // in regroup.hot
}

const (
	lookBase   = 1 << 13
	lookQuiet  = 1 << 10
	quietAfter = 2 * seenSpan
	lookMax    = 1 << 17
	recurEvery = 1 << 10
	// lookBytes bounds what the waiting entries hold, whatever their
	// number: rows of a table carry their other columns (Entry.Meta).
	lookBytes = 16 << 20
	seenSpan  = 1 << 15
	seenWords = 1 << 13 // 2^19 bits a generation: 2 probes, about 1.3% false hits when full
)

func newRegroup(in <-chan Entry, out chan<- *entry, jobs int, mk func(ent Entry, host string) *entry, drop func(*entry)) *regroup {
	base, low := max(int64(lookBase), 4*int64(jobs)), max(int64(lookQuiet), 4*int64(jobs))
	return &regroup{in: in, out: out, ended: make(chan string, max(64, 4*jobs)), mk: mk, drop: drop,
		slots: make([]slot, lookQuiet), limit: base, base: base, low: low, far: 2*int64(jobs) + 64,
		hosts: make(map[string]*hostQueue), seed: maphash.MakeSeed()}
}

// end hints that an entry of host ran and returned: its connection is idle.
func (r *regroup) end(host string) {
	select {
	case r.ended <- host:
	default:
	}
}

// run hands out the entries until in is closed and all went out, or ctx
// ends: those still waiting are then dropped (reported as interrupted).
func (r *regroup) run(ctx context.Context) {
	in := r.in
	var next *entry // taken from the waiting, to go out
	for {
		if next == nil {
			if s, ok := r.take(); ok {
				next = r.mk(s.entry(), s.q.host)
			}
		}
		if next == nil && in == nil {
			close(r.out)
			return
		}
		var read <-chan Entry
		if in != nil && r.tail-r.head < r.limit && r.bytes < lookBytes {
			read = in
		}
		var out chan<- *entry
		if next != nil {
			out = r.out
		}
		select {
		case ent, ok := <-read:
			if !ok {
				in = nil
				continue
			}
			r.add(ent)
		case out <- next:
			next = nil
		case h := <-r.ended:
			if q := r.hosts[h]; q != nil && !q.hot {
				q.hot = true
				r.hot = append(r.hot, q)
			}
		case <-ctx.Done():
			if next != nil {
				r.drop(next)
			}
			for r.waiting > 0 {
				s, _ := r.take()
				r.drop(r.mk(s.entry(), s.q.host))
			}
			return
		}
	}
}

// add makes ent wait, last of its host's.
func (r *regroup) add(ent Entry) {
	switch n, size := r.tail-r.head, int64(len(r.slots)); {
	case n == size:
		r.resize(2 * len(r.slots))
	case size > lookQuiet && n < size/4 && r.limit <= size/4:
		// Hosts stopped recurring, and few entries wait: give back
		// the ring that held lookMax, and the map that held its hosts
		// (a map keeps the room it grew to).
		r.resize(len(r.slots) / 2)
		hosts := make(map[string]*hostQueue, len(r.hosts))
		for h, q := range r.hosts {
			hosts[h] = q
		}
		r.hosts = hosts
	}
	seq := r.tail
	r.tail++
	host := urlid.HostKey(ent.URL)
	seen := r.sawHost(host)
	q := r.hosts[host]
	if q != nil {
		if seq-q.last >= r.far {
			r.recur++
		}
		r.slots[q.last&int64(len(r.slots)-1)].next = seq
		q.last = seq
	} else {
		if seen {
			r.recur++
		}
		q = &hostQueue{host: host, first: seq, last: seq}
		r.hosts[host] = q
	}
	s := slot{url: ent.URL, line: ent.Line, index: ent.Index, q: q, next: -1}
	if ent.Out != "" || ent.SHA256 != "" || ent.Size != -1 || ent.Row != 0 || ent.Key != "" || ent.Meta != "" {
		s.more = &ent
	}
	r.slots[seq&int64(len(r.slots)-1)] = s
	r.waiting++
	r.bytes += s.size()
	if r.read++; r.read == recurEvery {
		switch {
		case r.recur*8 >= recurEvery:
			r.limit, r.quiet = lookMax, 0
		case r.recur*32 < recurEvery:
			r.limit = r.base
			if r.quiet += recurEvery; r.quiet >= quietAfter {
				r.limit = r.low
			}
		}
		r.read, r.recur = 0, 0
	}
}

// sawHost reports whether host is among those of the last entries read (or
// seems to be: a Bloom filter), and adds it.
func (r *regroup) sawHost(host string) bool {
	h := maphash.String(r.seed, host)
	b1, b2 := uint32(h)%(seenWords*64), uint32(h>>32)%(seenWords*64)
	has := func(g *[seenWords]uint64) bool {
		return g[b1/64]&(1<<(b1%64)) != 0 && g[b2/64]&(1<<(b2%64)) != 0
	}
	cur := &r.seen[r.seenGen]
	saw := has(cur) || has(&r.seen[1-r.seenGen])
	cur[b1/64] |= 1 << (b1 % 64)
	cur[b2/64] |= 1 << (b2 % 64)
	if r.seenLen++; r.seenLen == seenSpan {
		r.seenGen, r.seenLen = 1-r.seenGen, 0
		r.seen[r.seenGen] = [seenWords]uint64{}
	}
	return saw
}

// resize moves the waiting entries to a ring of n slots (a power of two,
// more than tail-head), keeping each entry's sequence number.
func (r *regroup) resize(n int) {
	slots := make([]slot, n)
	for seq := r.head; seq < r.tail; seq++ {
		slots[seq&int64(len(slots)-1)] = r.slots[seq&int64(len(r.slots)-1)]
	}
	r.slots = slots
}

// take removes the entry to hand out next: the first waiting one of the
// first host whose entry ended with more waiting, else the oldest.
func (r *regroup) take() (slot, bool) {
	var q *hostQueue
	for r.hotAt < len(r.hot) && q == nil {
		h := r.hot[r.hotAt]
		r.hot[r.hotAt] = nil
		r.hotAt++
		h.hot = false
		if r.hosts[h.host] == h { // it still has entries waiting
			q = h
		}
	}
	if r.hotAt == len(r.hot) {
		r.hot, r.hotAt = r.hot[:0], 0
	}
	mask := int64(len(r.slots) - 1)
	if q == nil {
		for r.head < r.tail && r.slots[r.head&mask].q == nil {
			r.head++
		}
		if r.head == r.tail {
			return slot{}, false
		}
		q = r.slots[r.head&mask].q
	}
	s := &r.slots[q.first&mask]
	taken := *s
	if s.next < 0 {
		delete(r.hosts, q.host)
	} else {
		q.first = s.next
	}
	*s = slot{}
	r.waiting--
	r.bytes -= taken.size()
	for r.head < r.tail && r.slots[r.head&mask].q == nil {
		r.head++
	}
	return taken, true
}
