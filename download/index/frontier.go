package index

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// item is a directory waiting to be listed.
type item struct {
	url   string
	depth int // 0 for a root, 1 for its subdirectories, ...
}

// frontier is the FIFO of directories waiting to be listed: at most max in
// memory, the rest spilled to a temporary file, so a level of a million
// directories costs disk, not memory. Items go to the file as soon as it
// holds any (order is kept: memory holds the oldest), and come back max at a
// time once memory is empty; when the file has given back all it held it is
// truncated, so it grows only to the widest stretch of waiting directories.
type frontier struct {
	ring       []item // a ring of len max; ring[head:head+n] (mod max) waiting
	head, n    int
	dir        string // for the file
	f          *os.File
	bw         *bufio.Writer
	br         *bufio.Reader
	rOff, wOff int64 // f's offsets of the next item to read back and of its end
	inFile     int   // items written to f and not yet read back
	spilled    int   // items ever written to f (tests read it)
}

func newFrontier(max int, dir string) *frontier {
	return &frontier{ring: make([]item, max), dir: dir}
}

func (q *frontier) len() int { return q.n + q.inFile }

func (q *frontier) push(it item) error {
	if q.inFile == 0 && q.n < len(q.ring) {
		q.ring[(q.head+q.n)%len(q.ring)] = it
		q.n++
		return nil
	}
	if q.f == nil {
		f, err := createTemp(q.dir, "haul-index-frontier-")
		if err != nil {
			return err
		}
		q.f, q.bw = f, bufio.NewWriter(f)
	}
	// One line per item: its depth, a space, its URL. No URL holds a line
	// break: the input refuses control characters and links are escaped.
	d := strconv.Itoa(it.depth)
	q.bw.WriteString(d)
	q.bw.WriteByte(' ')
	q.bw.WriteString(it.url)
	if err := q.bw.WriteByte('\n'); err != nil {
		return fmt.Errorf("index: spilling the list of directories: %w", err)
	}
	q.wOff += int64(len(d) + 1 + len(it.url) + 1)
	q.inFile++
	q.spilled++
	return nil
}

// pop returns the oldest waiting directory; ok is false when none waits.
func (q *frontier) pop() (it item, ok bool, err error) {
	if q.n == 0 && q.inFile > 0 {
		if err := q.refill(); err != nil {
			return item{}, false, err
		}
	}
	if q.n == 0 {
		return item{}, false, nil
	}
	it = q.ring[q.head]
	q.ring[q.head] = item{}
	q.head = (q.head + 1) % len(q.ring)
	q.n--
	return it, true, nil
}

// refill reads up to max items back from the file into the empty ring.
func (q *frontier) refill() error {
	if err := q.bw.Flush(); err != nil {
		return fmt.Errorf("index: spilling the list of directories: %w", err)
	}
	// ReadAt from where the last refill stopped, up to what is written: the
	// file's own offset is the writer's. A reader kept across refills would
	// keep the end of file it met.
	sr := io.NewSectionReader(q.f, q.rOff, q.wOff-q.rOff)
	if q.br == nil {
		q.br = bufio.NewReaderSize(sr, 32<<10)
	} else {
		q.br.Reset(sr)
	}
	q.head = 0
	for q.n < len(q.ring) && q.inFile > 0 {
		line, err := q.br.ReadString('\n')
		if err != nil {
			return fmt.Errorf("index: reading back the list of directories: %w", err)
		}
		d, u, ok := strings.Cut(strings.TrimSuffix(line, "\n"), " ")
		depth, err := strconv.Atoi(d)
		if !ok || err != nil {
			return fmt.Errorf("index: the list of directories is corrupt: %q", line)
		}
		q.rOff += int64(len(line))
		q.ring[q.n] = item{url: u, depth: depth}
		q.n++
		q.inFile--
	}
	if q.inFile == 0 {
		// Everything written was read back: start the file over.
		if err := q.f.Truncate(0); err != nil {
			return err
		}
		if _, err := q.f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		q.rOff, q.wOff = 0, 0
	}
	return nil
}

func (q *frontier) close() {
	if q.f != nil {
		q.f.Close()
		q.f = nil
	}
	q.n, q.inFile = 0, 0
}

// createTemp creates a temporary file in dir ("": the system's) and unlinks
// it at once: it goes away with its descriptor, even after kill -9.
func createTemp(dir, pattern string) (*os.File, error) {
	f, err := os.CreateTemp(dir, pattern+"*")
	if err != nil {
		return nil, fmt.Errorf("index: %w", err)
	}
	os.Remove(f.Name())
	return f, nil
}
