package download

import "sync/atomic"

// buffers is a free list of copy buffers. Unlike a sync.Pool, which the garbage
// collector empties every cycle, it keeps its buffers: at thousands of files a
// second a pool would hand out freshly allocated (and zeroed) 128 KiB buffers
// after every collection. It holds at most cap(free) idle buffers, so memory
// stays bounded by the concurrency.
type buffers struct {
	size int
	free chan *[]byte
	made atomic.Int32 // buffers made, for TryGet's cap
}

func newBuffers(size, max int) *buffers {
	return &buffers{size: size, free: make(chan *[]byte, max)}
}

// Get returns a buffer of len size.
func (b *buffers) Get() *[]byte {
	select {
	case p := <-b.free:
		return p
	default:
		s := make([]byte, b.size)
		return &s
	}
}

// TryGet returns a buffer of len size, or nil if cap(free) of them are in
// use: never more than that many exist. A pool used only through TryGet and
// Put holds a fixed amount of memory, whatever the concurrency.
func (b *buffers) TryGet() *[]byte {
	select {
	case p := <-b.free:
		return p
	default:
	}
	if b.made.Add(1) > int32(cap(b.free)) {
		b.made.Add(-1)
		return nil
	}
	s := make([]byte, b.size)
	return &s
}

// Put gives p back for reuse.
func (b *buffers) Put(p *[]byte) {
	select {
	case b.free <- p:
	default: // more idle buffers than workers can use at once: let it go
	}
}
