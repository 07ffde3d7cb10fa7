package sink

import (
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// committer implements group commit: the durability of many files for the price
// of one flush. Workers hand it finished staging files and go on with their next
// download; it flushes each filesystem the files are on once (syncfs) for
// everything handed in so far, then renames each file to its final name. A
// file's data is therefore durable before its final name appears, and a crash at
// any moment leaves either a complete, durable final file or a staging file,
// never a torn final file.
//
// Per-file fsync costs small files dearly (a flush per 4 KiB file); here the
// cost is one flush per filesystem per batch, and batches grow by themselves
// while a flush runs. Without syncfs (other systems than Linux) each file is
// fsynced, and each device's cache flushed once per batch (syncFiles).
type committer struct {
	queue    chan commitReq
	done     chan struct{}
	maxBatch int
}

type commitReq struct {
	w    *fileWriter // nil for a Flush barrier
	done func(error)
}

// maxPending bounds the commits handed in and not yet renamed, the batch
// being flushed included (each holds its staging file open, and so locked,
// until it is renamed); FileOptions.MaxOpen lowers it.
const maxPending = 1024

// A batch is flushed when it holds maxBatch files (or half the pending
// commits, if fewer) or batchWindow after its first.
const (
	maxBatch    = 512
	batchWindow = 5 * time.Millisecond
)

// newCommitter holds at most pending commits at once: half waiting in the
// queue, half in the batch being flushed.
func newCommitter(pending int) *committer {
	pending = max(pending, 2)
	c := &committer{queue: make(chan commitReq, pending/2), done: make(chan struct{}),
		maxBatch: min(maxBatch, pending-pending/2)}
	go c.loop()
	return c
}

func (c *committer) submit(r commitReq) { c.queue <- r }

// flush waits until every request submitted before it is finished.
func (c *committer) flush() {
	ch := make(chan struct{})
	c.queue <- commitReq{done: func(error) { close(ch) }}
	<-ch
}

func (c *committer) close() {
	close(c.queue)
	<-c.done
}

func (c *committer) loop() {
	defer close(c.done)
	batch := make([]commitReq, 0, c.maxBatch)
	for r := range c.queue {
		batch = append(batch[:0], r)
		// Gather what arrives within batchWindow: one flush then covers it all.
		// The delay only adds latency to a file's rename, never to a download.
		timer := time.NewTimer(batchWindow)
	gather:
		for len(batch) < cap(batch) {
			select {
			case r, ok := <-c.queue:
				if !ok {
					break gather
				}
				batch = append(batch, r)
				if r.w == nil {
					break gather // a Flush is waiting
				}
			case <-timer.C:
				break gather
			}
		}
		timer.Stop()
		c.commit(batch)
	}
}

func (c *committer) commit(batch []commitReq) {
	syncBatch(batch)
	for _, r := range batch {
		if r.w == nil {
			r.done(nil)
			continue
		}
		r.done(r.w.rename(r.w.syncErr))
	}
}

// byDevice groups the files of a batch by the filesystem they are on (st_dev):
// the sink's directory may hold mount points (a tmpfs, another disk at
// DIR/sub), and flushing DIR's filesystem alone would leave their files
// unflushed at the rename. A file is on its directory's filesystem, whose
// device the directory handle recorded when it was opened: no fstat per file.
func byDevice(batch []commitReq) map[uint64][]*fileWriter {
	devs := make(map[uint64][]*fileWriter)
	for _, r := range batch {
		if r.w == nil {
			continue
		}
		devs[r.w.d.dev] = append(devs[r.w.d.dev], r.w)
	}
	return devs
}

// syncFiles is the group commit where there is no syncfs: each file is
// flushed to its device (fsync), then each device's write cache once (on macOS
// fsync leaves the data in the drive's cache, and F_FULLFSYNC, on any one file,
// flushes all of it: one per device covers the batch).
func syncFiles(batch []commitReq) {
	for _, ws := range byDevice(batch) {
		var flushed *os.File
		for _, w := range ws {
			if w.syncErr = syncFile(w.f); w.syncErr == nil {
				flushed = w.f
			}
		}
		if flushed == nil {
			continue
		}
		if err := syncDevice(flushed); err != nil {
			for _, w := range ws {
				if w.syncErr == nil {
					w.syncErr = err
				}
			}
		}
	}
}

// The flushes, variables so that tests can record or fail them.
var (
	syncData   = fdatasync       // a staging file's data, at a checkpoint
	syncFile   = fsync           // one file's data, to its device (syncFiles)
	syncDevice = (*os.File).Sync // the device's write cache: F_FULLFSYNC on macOS, fsync elsewhere
)

func fsync(f *os.File) error { return control(f, unix.Fsync) }
