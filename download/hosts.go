package download

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/haul/haul/download/internal/retry"
	"github.com/haul/haul/internal/ilist"
)

// hosts tracks what the pool shares per host: a cap on concurrent downloads
// (--per-host) and a pause that a 429 or 503 imposes on every worker, so one
// overloaded host is backed off as a whole while the others keep going, and
// whether the host speaks HTTP/2 (its entries then take a stream, not a
// connection: see Engine.weight).
//
// The cap is counted in streams: --per-host P is P*streams, an entry over
// HTTP/1.1 (or to a host not yet known to speak HTTP/2) takes streams of them
// (a whole connection), one over HTTP/2 takes one. An entry's slots are
// taken for its grant and recorded in it (tryAcquire, release); hosts keeps
// the grants that hold a connection's worth, to lower them when the host
// turns out to multiplex, and knows nothing of the entries.
//
// It also keeps what politeness asks per host: a host that answers 429 or 503
// has its cap lowered and grown back as TCP's window is (answered); its
// requests are spaced by a rate (--per-host-rate, a robots.txt's
// Crawl-delay: pace, rateTurn); and its robots.txt is fetched once
// (robotsFor).
//
// The table is bounded, so a list touching millions of hosts does not grow
// memory with them: a host nobody uses is kept in a list, least recently used
// first, and the oldest are forgotten past maxIdleHosts (maxDownHosts for
// those that are down, which are remembered apart, so that a list of dead
// hosts does not push out the live ones). A host in use (slots taken, or
// entries waiting for them) is in no list and never forgotten; one still
// paused is kept until its pause ends.
type hosts struct {
	cap       int64 // in streams; 0: no per-host cap
	streams   int64 // the weight of a whole connection
	failLimit int   // attempts without a response that make a host down; <= 0: never

	mu     sync.Mutex
	m      map[string]*host
	idle   ilist.List[*host] // up hosts nobody uses, least recently used first
	down   ilist.List[*host] // down hosts nobody uses, least recently used first
	looked int               // hosts looked at to forget one (for a test)
	// anyUntil is the latest end of any pause (UnixNano): past it no host is
	// paused, and pausedFor answers without the lock (the usual case).
	anyUntil atomic.Int64

	// rate is --per-host-rate, in requests a second (0: no limit); jobs is
	// -j in streams, the cap a throttled host grows back to where --per-host
	// sets none (see answered). Set by setPolite before use.
	rate rate.Limit
	jobs int64
	// paced: some host's requests are spaced (a rate, or a robots.txt's
	// Crawl-delay): without it pace and rateTurn answer without the lock.
	paced atomic.Bool
}

type host struct {
	used   int64     // weight of the slots taken (see hosts.cap)
	users  int       // grants (and split pieces) between acquire and release
	h2     bool      // a connection to this host negotiated HTTP/2
	paused time.Time // no new request before this instant
	misses int       // consecutive attempts that got no response
	down   error     // set once misses reached the limit: the host is down for this run
	// waiters are called, first in first out, as slots free up: entries set
	// aside while every slot was taken (tryAcquire). One returns false when
	// its entry no longer waits (it came back on its timer, and may have
	// registered again): the next one is tried.
	waiters []waiter
	// heavy are the grants holding more than one slot (a whole connection:
	// sent before the host was known to speak HTTP/2): when it turns out to,
	// they are lowered to one (multiplexed).
	heavy map[*grant]struct{}

	// limit is the cap its 429s and 503s left it, in streams, a whole number
	// of connections (0: not lowered: hosts.cap holds); okRun counts its
	// successful responses in a row since limit last changed (answered).
	limit int64
	okRun int
	// lowered is limit > 0, read without the lock: a success from a host
	// never throttled (the usual case) costs no lock.
	lowered atomic.Bool
	// lim spaces its requests (--per-host-rate, or its robots.txt's
	// Crawl-delay; nil: no limit); turnAt is the turn the next entry that
	// asks is given (rateTurn).
	lim    *rate.Limiter
	turnAt time.Time
	// robots is its robots.txt (--robots), over http and over https.
	robots [2]*robotsFetch

	key  string            // its name in hosts.m
	el   ilist.Elem[*host] // in hosts.idle or hosts.down while nobody uses it, else in no list
	gone bool              // forgotten: no longer in hosts.m, nor in a list
}

// waiter is an entry waiting for w of its host's slots.
type waiter struct {
	w    int64
	wake func() bool
}

// maxIdleHosts bounds the up hosts remembered while nobody uses them: their
// learnt protocol and pause (and what else is kept per host).
const maxIdleHosts = 4096

// maxDownHosts bounds the hosts remembered as down: past it, the least
// recently used are forgotten too (their next entries try again), so a list
// over millions of dead hosts does not grow memory without bound. A down
// host keeps the error its entries fail with: about 800 bytes, so 12 MiB at
// most.
const maxDownHosts = 1 << 14

// maxLook bounds the hosts looked at to forget some when one is added: those
// still paused are passed over (moved to the recent end), so that adding a
// host costs O(1) even while thousands are paused; the table then exceeds
// its bound until their pauses end.
const maxLook = 4

// newHosts caps each host at perHost connections' worth of streams (0: no
// cap): perHost*streams.
func newHosts(perHost, failLimit, streams int) *hosts {
	return &hosts{cap: int64(perHost) * int64(max(streams, 1)), streams: int64(max(streams, 1)), failLimit: failLimit,
		m: make(map[string]*host)}
}

// tryConn takes a whole connection's worth of the named host's slots, if
// free, without waiting: a split file's piece, on a connection of its own
// whatever the host speaks. release gives them back.
func (hs *hosts) tryConn(name string) (release func(), ok bool) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	h := hs.getLocked(name)
	if c := hs.capLocked(h); c != 0 && h.used+hs.streams > c {
		hs.settleLocked(h)
		return nil, false
	}
	h.used += hs.streams
	h.users++
	hs.settleLocked(h)
	return func() {
		hs.mu.Lock()
		defer hs.mu.Unlock()
		hs.releaseLocked(h, hs.streams)
	}, true
}

// acquire waits for g's weight of a host's slots (lowered as tryAcquire
// does) and returns the host's state. The caller must release them.
func (hs *hosts) acquire(ctx context.Context, name string, g *grant) (*host, error) {
	for {
		ch := make(chan struct{}, 1)
		var gone atomic.Bool
		h, ok := hs.tryAcquire(name, g, func() bool {
			if gone.Load() {
				return false
			}
			ch <- struct{}{}
			return true
		})
		if ok {
			return h, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			gone.Store(true)
			return nil, ctx.Err()
		}
	}
}

// tryAcquire takes g's weight of the named host's slots, if they are free,
// and records them in g (release gives them back); a weight above one (a
// whole connection) is lowered to one first (g.Lower) if the host is known
// to speak HTTP/2, in the same step, so that no entry takes a connection's
// worth of a host just learnt to multiplex. A grant that takes more than one
// is kept as heavy: see multiplexed. If they are not free, it does not wait:
// it registers onFree (nil: none), called once when a slot is released (the
// caller sets its entry aside meanwhile, and its worker takes others: with
// --per-host, a slow or dead host does not hold the workers the other hosts
// need), and returns ok false.
func (hs *hosts) tryAcquire(name string, g *grant, onFree func() bool) (h *host, ok bool) {
	g.mu.Lock() // lock order: the grant, then the hosts (see grant)
	defer g.mu.Unlock()
	hs.mu.Lock()
	defer hs.mu.Unlock()
	h = hs.getLocked(name)
	if h.h2 {
		g.lowerLocked(1) // it holds no slot yet: only -j gets the rest back
	}
	w := g.w
	if c := hs.capLocked(h); c == 0 || h.used+w <= c {
		h.used += w
		h.users++
		g.hosts, g.host = hs, h
		if w > 1 {
			if h.heavy == nil {
				h.heavy = make(map[*grant]struct{})
			}
			h.heavy[g] = struct{}{}
		}
		hs.settleLocked(h)
		return h, true
	}
	// Under mu: a release frees its slots under mu, then calls waiters, so
	// this one is not missed.
	if onFree != nil {
		h.waiters = append(h.waiters, waiter{w, onFree})
	}
	hs.settleLocked(h)
	return nil, false
}

// waitFor registers onFree to be called once when w of the named host's
// slots may be free (as tryAcquire does when they are not), and reports
// true instead if they are free now: the caller then takes them itself. The
// waiters of the host that the free slots may serve are woken meanwhile.
func (hs *hosts) waitFor(name string, w int64, onFree func() bool) (free bool) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	h := hs.getLocked(name)
	if h.h2 {
		w = min(w, 1)
	}
	if c := hs.capLocked(h); c == 0 || h.used+w <= c {
		hs.wakeLocked(h)
		hs.settleLocked(h)
		return true
	}
	h.waiters = append(h.waiters, waiter{w, onFree})
	hs.settleLocked(h)
	return false
}

// getLocked returns the named host's state, made if new. The caller settles
// it (settleLocked) once done with it.
func (hs *hosts) getLocked(name string) *host {
	h := hs.m[name]
	if h == nil {
		h = &host{key: name}
		h.el.Value = h
		hs.m[name] = h
	}
	return h
}

// settleLocked puts h where its state says, after any change to it: in no
// list while it is in use (it cannot be forgotten), else at the recent end
// of the idle or the down list, making room there first (forgetLocked).
func (hs *hosts) settleLocked(h *host) {
	if h.gone {
		return // forgotten while a caller still held it: it stays out
	}
	if l := h.el.List(); l != nil {
		l.Remove(&h.el)
	}
	if h.users != 0 || len(h.waiters) != 0 {
		return
	}
	if h.down != nil {
		for hs.down.Len() >= maxDownHosts {
			hs.dropLocked(hs.down.Front().Value)
		}
		hs.down.PushBack(&h.el)
		return
	}
	hs.forgetLocked()
	hs.idle.PushBack(&h.el)
}

// forgetLocked makes room in the idle list: at maxIdleHosts, it forgets the
// least recently used. One whose pause has not ended is kept (moved to the
// recent end): at most maxLook are looked at, so the list may exceed its
// bound while many hosts are paused.
func (hs *hosts) forgetLocked() {
	var now int64 // UnixNano, read once some host may be paused
	for look := 0; hs.idle.Len() >= maxIdleHosts && look < maxLook; look++ {
		h := hs.idle.Front().Value
		hs.looked++
		if !h.paused.IsZero() {
			if now == 0 {
				now = time.Now().UnixNano()
			}
			if now < h.paused.UnixNano() {
				hs.idle.PushBack(&h.el) // to the recent end
				continue
			}
		}
		hs.dropLocked(h)
	}
}

// dropLocked forgets h, which nobody uses.
func (hs *hosts) dropLocked(h *host) {
	h.el.List().Remove(&h.el)
	delete(hs.m, h.key)
	h.gone = true
}

// release gives back the host's slots that g holds (taken by acquire or
// tryAcquire, less what Lower gave back meanwhile), and wakes as many
// waiters, first in first out, as the free slots may serve. g keeps its
// share of -j (Release gives it back).
func (hs *hosts) release(g *grant) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.leaveHostLocked()
}

// giveBack returns n of h's slots that g holds; leave: they are all it
// holds, and it lets go of h. The caller holds g's mu (see grant).
func (hs *hosts) giveBack(h *host, g *grant, n int64, leave bool) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if leave || g.w <= 1 {
		delete(h.heavy, g)
	}
	if leave {
		hs.releaseLocked(h, n)
		return
	}
	h.used -= n
	hs.wakeLocked(h)
	hs.settleLocked(h)
}

func (hs *hosts) releaseLocked(h *host, w int64) {
	h.used -= w
	h.users--
	hs.wakeLocked(h)
	hs.settleLocked(h)
}

// wakeLocked wakes as many of h's waiters, first in first out, as its free
// slots may serve.
func (hs *hosts) wakeLocked(h *host) {
	// Under mu (lock order: hosts, then parking), so that a waiter that
	// registers meanwhile is not missed.
	c := hs.capLocked(h)
	free := c - h.used
	if c == 0 {
		free = math.MaxInt64 // no cap (any more: see answered)
	}
	for len(h.waiters) > 0 && free > 0 {
		wt := h.waiters[0]
		h.waiters[0] = waiter{}
		h.waiters = h.waiters[1:]
		if wt.wake() {
			// One registered before its host was known to speak HTTP/2
			// comes back taking a stream.
			if h.h2 {
				free--
			} else {
				free -= wt.w
			}
		}
	}
}

// multiplexed records that a connection to h negotiated HTTP/2. Its heavy
// grants in flight now hold a stream each: the rest of their slots and of
// their share of -j is given back at once (a slow server may hold them for
// long; the requests behind them need not wait). Safe from any goroutine.
func (hs *hosts) multiplexed(h *host) {
	hs.mu.Lock()
	heavy := hs.multiplexedLocked(h)
	hs.mu.Unlock()
	lower(heavy)
}

// multiplexedLocked marks h as speaking HTTP/2 and returns its heavy grants,
// for the caller to lower once it has let hs.mu go (lock order: see grant).
// From now on no grant takes more than one of h's slots (tryAcquire).
func (hs *hosts) multiplexedLocked(h *host) map[*grant]struct{} {
	if h.h2 {
		return nil
	}
	h.h2 = true
	heavy := h.heavy
	h.heavy = nil
	hs.wakeLocked(h) // a heavy waiter now waits for one slot
	hs.settleLocked(h)
	return heavy
}

// lower lowers each grant of heavy to a stream.
func lower(heavy map[*grant]struct{}) {
	for g := range heavy {
		g.Lower(1)
	}
}

// isMultiplexed reports whether the named host is known to speak HTTP/2.
func (hs *hosts) isMultiplexed(name string) bool {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	h := hs.m[name]
	return h != nil && h.h2
}

// responded records that an attempt to h got a response (any status): the
// host is up, its count of misses starts again.
func (hs *hosts) responded(h *host) {
	hs.mu.Lock()
	h.misses = 0
	hs.mu.Unlock()
}

// missed records an attempt to h that got no response (refused, reset, DNS,
// connect or TLS handshake timeout). After failLimit in a row the host is down
// for the rest of the run: missed returns the error its entries then fail
// with, without a request, and now says that this miss made it so.
func (hs *hosts) missed(h *host, err error) (down error, now bool) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if h.down != nil {
		return h.down, false
	}
	h.misses++
	if hs.failLimit > 0 && h.misses >= hs.failLimit {
		h.down = fmt.Errorf("%w: %w (%d attempts in a row without a response)", ErrHostDown, err, h.misses)
		hs.settleLocked(h) // to the down hosts, if nobody uses it
		return h.down, true
	}
	return nil, false
}

// isDown returns the error h's entries fail with if it is down, else nil.
func (hs *hosts) isDown(h *host) error {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	return h.down
}

// downNamed reports whether the named host is down (one forgotten since
// counts as not).
func (hs *hosts) downNamed(name string) bool {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	h := hs.m[name]
	return h != nil && h.down != nil
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
		if err := retry.Sleep(ctx, d); err != nil {
			return err
		}
	}
}

// setPolite sets the rate of requests to each host (--per-host-rate, in
// requests a second; 0: no limit) and -j (in connections), the cap a
// throttled host grows back to where --per-host sets none. It is called once,
// before the hosts are used.
func (hs *hosts) setPolite(perSecond float64, jobs int) {
	hs.rate = rate.Limit(perSecond)
	hs.jobs = int64(jobs) * hs.streams
	hs.paced.Store(perSecond > 0)
}

// capLocked is h's cap now, in streams: what its 429s and 503s left it, else
// --per-host's; 0: none.
func (hs *hosts) capLocked(h *host) int64 {
	if h.limit > 0 {
		return h.limit
	}
	return hs.cap
}

// ceiling is the cap a throttled host grows back to: --per-host's, else
// -j's (0: not set, nothing to lower).
func (hs *hosts) ceiling() int64 {
	if hs.cap > 0 {
		return hs.cap
	}
	return hs.jobs
}

// regrowAfter is how many successful responses in a row give a throttled
// host one more connection.
const regrowAfter = 20

// answered records the status of a response from h, as TCP's congestion
// control treats a loss and an acknowledgement: a 429 or a 503 halves its
// cap, counted in connections (rounding down, never below one), and every
// regrowAfter successful responses (below 400) in a row give one back, up
// to ceiling, waking the entries that wait for a slot. Any other status
// starts the run of successes over. Its pause (pause) is the caller's.
func (hs *hosts) answered(h *host, code int) {
	if !h.lowered.Load() && code != 429 && code != 503 {
		return // the usual case: a host never throttled, answering anything else
	}
	hs.mu.Lock()
	defer hs.mu.Unlock()
	switch {
	case code == 429 || code == 503:
		top := hs.ceiling()
		if top == 0 {
			return
		}
		cur := hs.capLocked(h)
		if cur == 0 {
			cur = top
		}
		h.limit, h.okRun = max(1, cur/hs.streams/2)*hs.streams, 0
		h.lowered.Store(true)
	case code < 400:
		if h.limit == 0 {
			return
		}
		if h.okRun++; h.okRun < regrowAfter {
			return
		}
		h.okRun = 0
		if h.limit += hs.streams; h.limit >= hs.ceiling() {
			h.limit = 0 // back to --per-host's cap (or none)
			h.lowered.Store(false)
		}
		hs.wakeLocked(h)
	default:
		h.okRun = 0
	}
}

// limiterLocked returns h's limiter, made at first use (nil: no limit).
func (hs *hosts) limiterLocked(h *host) *rate.Limiter {
	if h.lim == nil && hs.rate > 0 {
		h.lim = rate.NewLimiter(hs.rate, 1)
	}
	return h.lim
}

// pace waits until h's rate lets one more request go (--per-host-rate, a
// Crawl-delay), or ctx ends. Every request to the host waits here right
// before it is sent: entries', retries', split pieces' and robots.txt's.
func (hs *hosts) pace(ctx context.Context, h *host) error {
	if !hs.paced.Load() {
		return nil
	}
	hs.mu.Lock()
	lim := hs.limiterLocked(h)
	hs.mu.Unlock()
	if lim == nil {
		return nil
	}
	return lim.Wait(ctx)
}

// rateTurn gives an entry of the named host that is about to start its turn
// under the host's rate, and returns how long from now it is (0: now, or no
// limit). Turns are one interval apart, in the order asked, so that entries
// set aside until theirs (instead of holding a worker meanwhile) come back
// one at a time rather than all at once. A turn only orders the entries:
// pace, right before the request, is what holds the rate (retries and split
// pieces take no turn, and may push a request past its turn).
func (hs *hosts) rateTurn(name string) time.Duration {
	if !hs.paced.Load() {
		return 0
	}
	hs.mu.Lock()
	defer hs.mu.Unlock()
	h := hs.getLocked(name)
	defer hs.settleLocked(h) // into the table's order, as any change
	lim := hs.limiterLocked(h)
	if lim == nil {
		return 0
	}
	now := time.Now()
	every := time.Duration(min(1/float64(lim.Limit()), 1e9) * float64(time.Second)) // a rate of once in 30 years is none
	at := now
	if tokens := lim.TokensAt(now); tokens < 1 {
		at = now.Add(time.Duration((1 - tokens) * float64(every)))
	}
	if h.turnAt.After(at) {
		at = h.turnAt
	}
	h.turnAt = at.Add(every)
	return at.Sub(now)
}

// crawlDelay lowers h's rate to one request per d (a robots.txt's
// Crawl-delay) where --per-host-rate allows more. The request that fetched
// the robots.txt counts as the last one: the next waits d from now. It is
// called before the host's entries send anything (they wait for the
// robots.txt), so the limiter is replaced, not changed.
func (hs *hosts) crawlDelay(h *host, d time.Duration) {
	if d <= 0 {
		return
	}
	r := rate.Every(d)
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if hs.rate > 0 && hs.rate <= r {
		return
	}
	h.lim = rate.NewLimiter(r, 1)
	h.lim.Allow()
	hs.paced.Store(true)
}

// robotsFor returns the named host's robots.txt for the scheme (https or
// http), and first true if nobody asked for it before: the caller then
// fetches it, fills it in and closes its done; the others wait for done.
// It is kept with the rest of the host's state (and forgotten with it).
func (hs *hosts) robotsFor(name string, https bool) (h *host, rf *robotsFetch, first bool) {
	i := 0
	if https {
		i = 1
	}
	hs.mu.Lock()
	defer hs.mu.Unlock()
	h = hs.getLocked(name)
	defer hs.settleLocked(h) // into the table's order, as any change
	if rf = h.robots[i]; rf != nil {
		return h, rf, false
	}
	rf = &robotsFetch{done: make(chan struct{})}
	h.robots[i] = rf
	return h, rf, true
}
