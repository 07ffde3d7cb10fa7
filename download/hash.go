package download

import (
	"crypto/sha256"
	"hash"
)

func newHasher() hash.Hash { return sha256.New() }

// asyncHash computes SHA-256 on its own goroutine, so hashing runs on another core
// beside the copy loop instead of inside it. The copy loop takes a buffer, fills
// it, writes it, and submits it; the hasher hands it back once hashed. With three
// buffers in the ring the copy loop waits only when it is a full ring ahead.
type asyncHash struct {
	pool *buffers
	h    hash.Hash
	full chan []byte
	free chan []byte
	done chan struct{}
	bufs []*[]byte
}

const hashRing = 3

func newAsyncHash(pool *buffers) *asyncHash {
	a := &asyncHash{pool: pool, h: newHasher(), free: make(chan []byte, hashRing)}
	for range hashRing {
		bp := pool.Get()
		a.bufs = append(a.bufs, bp)
		a.free <- *bp
	}
	a.start()
	return a
}

func (a *asyncHash) start() {
	a.full = make(chan []byte, hashRing)
	a.done = make(chan struct{})
	go func() {
		defer close(a.done)
		for b := range a.full {
			a.h.Write(b)
			a.free <- b[:cap(b)]
		}
	}()
}

// buffer returns a free buffer, waiting for the hasher if all are in use.
func (a *asyncHash) buffer() []byte { return <-a.free }

// submit hands a filled buffer (possibly empty) to the hasher.
func (a *asyncHash) submit(b []byte) { a.full <- b }

// sum waits for every submitted buffer and returns the hash of all of them.
func (a *asyncHash) sum() []byte {
	a.stop()
	s := a.h.Sum(nil)
	a.start()
	return s
}

// reset forgets everything hashed so far.
func (a *asyncHash) reset() {
	a.stop()
	a.h.Reset()
	a.start()
}

func (a *asyncHash) stop() {
	close(a.full)
	<-a.done
}

// close stops the hasher and returns its buffers to the pool.
func (a *asyncHash) close() {
	a.stop()
	for _, bp := range a.bufs {
		a.pool.Put(bp)
	}
}
