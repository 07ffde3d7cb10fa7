package download

import (
	"crypto/sha256"
	"hash"
)

func newHasher() hash.Hash { return sha256.New() }

// asyncHash computes SHA-256 of a body as it streams. The first inlineMax bytes
// are hashed inline: for a small file that costs microseconds, less than handing
// buffers to another goroutine. Past that, hashing moves to its own goroutine, so
// it runs on another core beside the copy loop instead of inside it: the copy
// loop takes a buffer, fills it, writes it, and submits it; the hasher hands it
// back once hashed. With three buffers in the ring the copy loop waits only when
// it is a full ring ahead.
type asyncHash struct {
	pool   *buffers
	h      hash.Hash
	n      int64   // bytes hashed inline
	inline *[]byte // the buffer used while inline

	async bool
	full  chan []byte
	free  chan []byte
	done  chan struct{}
	bufs  []*[]byte
}

const (
	hashRing  = 3
	inlineMax = 1 << 20
)

func newAsyncHash(pool *buffers) *asyncHash {
	return &asyncHash{pool: pool, h: newHasher(), inline: pool.Get()}
}

// goAsync starts the hashing goroutine with a ring of buffers.
func (a *asyncHash) goAsync() {
	a.async = true
	a.free = make(chan []byte, hashRing)
	a.bufs = []*[]byte{a.inline}
	for len(a.bufs) < hashRing {
		a.bufs = append(a.bufs, a.pool.Get())
	}
	for _, bp := range a.bufs {
		a.free <- *bp
	}
	a.start()
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

func (a *asyncHash) stop() {
	close(a.full)
	<-a.done
}

// buffer returns a free buffer, waiting for the hasher if all are in use.
func (a *asyncHash) buffer() []byte {
	if !a.async {
		return *a.inline
	}
	return <-a.free
}

// submit hands a filled buffer (possibly empty) to the hash.
func (a *asyncHash) submit(b []byte) {
	if a.async {
		a.full <- b
		return
	}
	a.h.Write(b)
	if a.n += int64(len(b)); a.n >= inlineMax {
		a.goAsync()
	}
}

// sum waits for every submitted buffer and returns the hash of all of them.
func (a *asyncHash) sum() []byte {
	if !a.async {
		return a.h.Sum(nil)
	}
	a.stop()
	s := a.h.Sum(nil)
	a.start()
	return s
}

// reset forgets everything hashed so far.
func (a *asyncHash) reset() {
	if a.async {
		a.stop()
		a.h.Reset()
		a.start()
		return
	}
	a.h.Reset()
	a.n = 0
}

// close stops the hasher and returns its buffers to the pool.
func (a *asyncHash) close() {
	if !a.async {
		a.pool.Put(a.inline)
		return
	}
	a.stop()
	for _, bp := range a.bufs {
		a.pool.Put(bp)
	}
}
