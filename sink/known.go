package sink

import (
	"hash/maphash"
	"sync/atomic"
)

// known records the names this process gave entries under the sink's
// directory, in a Bloom filter, so that where a directory holds nothing but
// such entries (one this process made, or the sink's directory when it started
// empty or nearly) "is NAME there?" is answered without asking the file
// system. Spread over a hundred thousand hosts, a file costs a directory each,
// and three lookups of names that are not there (the directory itself, and the
// NAME.part beside the directory and beside the file) cost more CPU than its
// write: an ext4 lookup of a missing name in a directory of 100,000 entries
// walks its hash tree.
//
// The filter only ever answers "certainly not there" or "maybe": a name is
// added before the system call that creates it, so a concurrent look never
// misses it, and a false "maybe" (about 2 % at a million names, more beyond)
// only costs the system call it would have made anyway. Removals are not
// recorded: a removed name stays "maybe".
//
// This holds only while no other process writes under the directory. known is
// trusted from the start only if this process is alone there, stages new files
// unnamed (so that it looks for company before each one, see presence), and
// stops being trusted for the rest of the run at the first sign of another
// process, or at the first symbolic link met on the way to a directory (the
// names made through it are recorded under the link's path, not the one it
// leads to: see dirCache.linked). A process that comes and goes between two of those looks can leave
// a name unseen: the file there is then found at the commit (a link or rename
// never replaces a file another URL owns), not before the download.
type known struct {
	seed  maphash.Seed
	bits  []atomic.Uint64
	trust atomic.Bool
}

// knownBits is the filter's size: 1 MiB, 4 probes a name.
const (
	knownBits   = 1 << 23
	knownProbes = 4
)

func newKnown() *known {
	return &known{seed: maphash.MakeSeed(), bits: make([]atomic.Uint64, knownBits/64)}
}

// probes calls f with the bit positions of the path dir/name (name alone
// where dir is ""), hashed as the bytes of that path, without making it: a
// name made as ("", "a/b") is found as ("a", "b").
func (k *known) probes(dir, name string, f func(word, bit uint64) bool) bool {
	var mh maphash.Hash
	mh.SetSeed(k.seed)
	if dir != "" {
		mh.WriteString(dir)
		mh.WriteByte('/')
	}
	mh.WriteString(name)
	h := mh.Sum64()
	a, b := h, h>>32|h<<32|1
	for i := 0; i < knownProbes; i++ {
		pos := a % knownBits
		if !f(pos/64, 1<<(pos%64)) {
			return false
		}
		a += b
	}
	return true
}

// add records name in dir (a path in the sink, "" for its top) as maybe
// present.
func (k *known) add(dir, name string) {
	k.probes(dir, name, func(w, bit uint64) bool {
		if k.bits[w].Load()&bit == 0 {
			k.bits[w].Or(bit)
		}
		return true
	})
}

// absent reports whether name in dir was never added: true means it is
// certainly not an entry this process made.
func (k *known) absent(dir, name string) bool {
	return !k.probes(dir, name, func(w, bit uint64) bool { return k.bits[w].Load()&bit != 0 })
}
