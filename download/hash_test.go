package download

import (
	"bytes"
	"crypto/sha256"
	"math/rand/v2"
	"testing"
)

// The hash is the same whether it stayed inline (small bodies) or moved to its
// goroutine part-way (large ones), and reset starts it over in either mode.
func TestAsyncHash(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{0, 1, 4096, inlineMax - 1, inlineMax, inlineMax + 1, 5 << 20} {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(r.Uint32())
		}
		pool := newBuffers(bufSize, 8)
		a := newAsyncHash(pool)
		feed := func(b []byte) {
			for len(b) > 0 {
				buf := a.buffer()
				n := copy(buf[:min(len(buf), 1+r.IntN(bufSize))], b)
				a.submit(buf[:n])
				b = b[n:]
			}
		}
		feed(bytes.Repeat([]byte("junk"), size/8)) // then thrown away
		a.reset()
		feed(data)
		want := sha256.Sum256(data)
		if got := a.sum(); !bytes.Equal(got, want[:]) {
			t.Fatalf("size %d: hash differs", size)
		}
		a.close()
	}
}
