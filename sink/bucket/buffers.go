package bucket

// Part buffers are used again rather than left to the garbage collector: a
// run streaming big files through the memory budget would otherwise let the
// heap grow to twice the budget between collections (Go's default GOGC) for
// bytes no longer used. A buffer given back (giveBuf) waits in the sink's
// free list for the next part (takeBuf); the budget still says how many are
// in use at once, so the buffers ever made stay within about the budget
// too. The free list keeps at most the budget's worth of buffers.

// reuseMin is the smallest buffer kept for reuse: a part's (a small body's
// buffer is not worth keeping).
const reuseMin = minPart

// takeBuf returns a buffer of n bytes: one given back of at least that
// capacity (for n of a MiB or more: a body's last part, a body of a few
// MiB), else a new one. The caller holds its share of the budget.
func (s *Sink) takeBuf(n int64) []byte {
	if n >= 1<<20 {
		s.freeMu.Lock()
		best := -1
		for i, b := range s.free {
			if int64(cap(b)) >= n && (best < 0 || cap(b) < cap(s.free[best])) {
				best = i
			}
		}
		if best >= 0 {
			b := s.free[best]
			s.free[best] = s.free[len(s.free)-1]
			s.free = s.free[:len(s.free)-1]
			s.freeBytes -= int64(cap(b))
			s.freeMu.Unlock()
			return b[:n]
		}
		s.freeMu.Unlock()
	}
	return make([]byte, n)
}

// giveBuf gives b back for a later part. Nothing may use b after: only a
// buffer whose upload succeeded is given back (a request that failed may
// still be read by its transport).
func (s *Sink) giveBuf(b []byte) {
	if int64(cap(b)) < reuseMin {
		return
	}
	s.freeMu.Lock()
	defer s.freeMu.Unlock()
	if s.freeBytes+int64(cap(b)) > s.memSize {
		return
	}
	s.free = append(s.free, b[:0])
	s.freeBytes += int64(cap(b))
}
