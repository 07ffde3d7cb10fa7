package download

import (
	"github.com/haul/haul/internal/urlid"

	"context"
	"errors"
	"fmt"
	"sync"
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
}

// maxFailed bounds the failures remembered for duplicates.
const maxFailed = 1024

type claim struct {
	url  string
	done chan struct{}
	err  error // how the claimant's entry failed, set before done closes
}

func newClaims() *claims {
	return &claims{m: make(map[string]*claim), failed: make(map[string]error)}
}

func failKey(name, url string) string { return name + "\x00" + urlid.Origin(url) }

// acquire claims name for url. If a worker is writing the same URL to it, acquire
// waits for that worker to finish (the caller then finds the file on disk); if a
// different URL holds it, acquire fails with ErrCollision. If the same URL
// failed (in flight, or among the last failures), acquire fails with its error.
// release ends the claim, with the entry's error (nil: done, or set aside).
func (c *claims) acquire(ctx context.Context, name, url string) (release func(error), err error) {
	for {
		c.mu.Lock()
		if len(c.failed) > 0 { // the key is built only when there is something to find
			if ferr, ok := c.failed[failKey(name, url)]; ok {
				c.mu.Unlock()
				return nil, ferr
			}
		}
		cl := c.m[name]
		if cl == nil {
			cl = &claim{url: url, done: make(chan struct{})}
			c.m[name] = cl
			c.mu.Unlock()
			return func(err error) {
				c.mu.Lock()
				delete(c.m, name)
				if err != nil && !errors.Is(err, ErrInterrupted) && !errors.Is(err, context.Canceled) {
					c.rememberLocked(name, url, err)
				}
				cl.err = err
				c.mu.Unlock()
				close(cl.done)
			}, nil
		}
		c.mu.Unlock()
		if urlid.Origin(cl.url) != urlid.Origin(url) { // the same resource (see urlid.Origin)
			return nil, fmt.Errorf("%w: %s is being written from %s", ErrCollision, name, urlid.Redact(cl.url))
		}
		select {
		case <-cl.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// rememberLocked records that url, written to name, failed with err.
func (c *claims) rememberLocked(name, url string, err error) {
	var de *Error
	if errors.As(err, &de) {
		err = de.Err // the caller wraps it with its own line's URL
	}
	k := failKey(name, url)
	if _, ok := c.failed[k]; !ok {
		if len(c.order) >= maxFailed {
			delete(c.failed, c.order[0])
			c.order = c.order[1:]
		}
		c.order = append(c.order, k)
	}
	c.failed[k] = fmt.Errorf("%w (the same URL failed on an earlier line)", err)
}
