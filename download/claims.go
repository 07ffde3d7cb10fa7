package download

import (
	"context"
	"fmt"
	"sync"

	"github.com/haul/haul/sink"
)

// claims makes sure no two workers of this run write the same name at once. It
// holds only the names in flight (at most --jobs), never the whole list: entries
// that finished are recognised on disk by their origin attribute instead.
type claims struct {
	mu sync.Mutex
	m  map[string]*claim
}

type claim struct {
	url  string
	done chan struct{}
}

func newClaims() *claims { return &claims{m: make(map[string]*claim)} }

// acquire claims name for url. If a worker is writing the same URL to it, acquire
// waits for that worker to finish (the caller then finds the file on disk); if a
// different URL holds it, acquire fails with ErrCollision.
func (c *claims) acquire(ctx context.Context, name, url string) (release func(), err error) {
	for {
		c.mu.Lock()
		cl := c.m[name]
		if cl == nil {
			cl = &claim{url: url, done: make(chan struct{})}
			c.m[name] = cl
			c.mu.Unlock()
			return func() {
				c.mu.Lock()
				delete(c.m, name)
				c.mu.Unlock()
				close(cl.done)
			}, nil
		}
		c.mu.Unlock()
		if sink.OriginValue(cl.url) != sink.OriginValue(url) { // the same resource (see OriginValue)
			return nil, fmt.Errorf("%w: %s is being written from %s", ErrCollision, name, redact(cl.url))
		}
		select {
		case <-cl.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
