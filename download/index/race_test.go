//go:build race

package index

// raceEnabled: the race detector slows the huge-tree test tenfold, so it
// walks a smaller tree.
const raceEnabled = true
