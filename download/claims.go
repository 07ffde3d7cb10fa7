package download

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/haul/haul/internal/urlid"
)

// claims makes sure no two workers of this run write the same name at once. It
// holds only the names in flight (at most --jobs), never the whole list: entries
// that finished are recognised on disk by their origin attribute instead. A
// failure is not on disk, so the last maxFailed failures are remembered: the
// same URL listed again fails at once with the same error, rather than going
// through its retries again (and holding workers) for every copy.
type claims struct {
	mu     sync.Mutex
	m      map[string]*claim
	failed map[string]error // by failKey
	order  []string         // failed's keys, oldest first
	// flush, if set, makes the samples handed to the sink durable now
	// (Sink.Flush): an entry waiting for the same URL's claim calls it once
	// that claim's body is committed, rather than wait for the sink to make
	// it durable on its own (a tar in a bucket waits seconds for more).
	flush func()
}

// maxFailed bounds the failures remembered for duplicates.
const maxFailed = 1024

type claim struct {
	name string
	ent  Entry
	done chan struct{}
	err  error // how the claimant's entry failed, set before done closes
	// committed is closed once the claimant's body went to the sink's
	// commit: it ends (done) when the sink made it durable.
	committed     chan struct{}
	committedOnce sync.Once
}

// committing notes that cl's entry handed its body to the sink's commit.
func (cl *claim) committing() {
	cl.committedOnce.Do(func() { close(cl.committed) })
}

func newClaims() *claims {
	return &claims{m: make(map[string]*claim), failed: make(map[string]error)}
}

// failKey identifies a failure that would happen again: the same resource
// written to the same name with the same checks. A line of the same URL with
// another sha256= or size= is another question to the server, and may succeed.
func failKey(name string, ent Entry) string {
	return name + "\x00" + urlid.Origin(ent.URL) + "\x00" + ent.SHA256 + "\x00" + strconv.FormatInt(ent.Size, 10)
}

// acquire claims name for ent. If a worker is writing the same URL to it,
// acquire waits for that worker to finish (the caller then finds the file on
// disk); if a different URL holds it, acquire fails with ErrCollision. If the
// same URL with the same checks failed (in flight, or among the last
// failures), acquire fails with its error. release ends the claim.
func (c *claims) acquire(ctx context.Context, name string, ent Entry) (*claim, error) {
	for {
		c.mu.Lock()
		if len(c.failed) > 0 { // the key is built only when there is something to find
			if ferr, ok := c.failed[failKey(name, ent)]; ok {
				c.mu.Unlock()
				return nil, ferr
			}
		}
		cl := c.m[name]
		if cl == nil {
			cl = &claim{name: name, ent: ent, done: make(chan struct{}), committed: make(chan struct{})}
			c.m[name] = cl
			c.mu.Unlock()
			return cl, nil
		}
		c.mu.Unlock()
		if urlid.Origin(cl.ent.URL) != urlid.Origin(ent.URL) { // the same resource (see urlid.Origin)
			return nil, fmt.Errorf("%w: %s is being written from %s", ErrCollision, name, urlid.Redact(cl.ent.URL))
		}
		committed := cl.committed
		if c.flush == nil {
			committed = nil
		}
	wait:
		for {
			select {
			case <-cl.done:
				break wait
			case <-committed:
				committed = nil
				c.flush()
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
}

// release ends cl, with its entry's error (nil: done, or set aside).
func (c *claims) release(cl *claim, err error) {
	c.mu.Lock()
	delete(c.m, cl.name)
	if err != nil && !errors.Is(err, ErrInterrupted) && !errors.Is(err, context.Canceled) {
		c.rememberLocked(cl, err)
	}
	cl.err = err
	c.mu.Unlock()
	close(cl.done)
}

// rememberLocked records that cl's entry failed with err.
func (c *claims) rememberLocked(cl *claim, err error) {
	var de *Error
	if errors.As(err, &de) {
		err = de.Err // the caller wraps it with its own line's URL
	}
	k := failKey(cl.name, cl.ent)
	if _, ok := c.failed[k]; !ok {
		if len(c.order) >= maxFailed {
			delete(c.failed, c.order[0])
			c.order = c.order[1:]
		}
		c.order = append(c.order, k)
	}
	c.failed[k] = fmt.Errorf("%w (the same URL failed on an earlier line)", err)
}
