package sink

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
)

// failSyncData makes the k-th checkpoint flush from now fail with EIO, as a
// writeback error is reported: once, the flushes after it succeed.
func failSyncData(t *testing.T, k int32) {
	t.Helper()
	var calls atomic.Int32
	orig := syncData
	syncData = func(f *os.File) error {
		if calls.Add(1) == k {
			return syscall.EIO
		}
		return orig(f)
	}
	t.Cleanup(func() { syncData = orig })
}

// A checkpoint whose flush failed fails the commit, even when a later
// checkpoint's flush succeeds (the kernel reports a lost write once), and no
// later checkpoint records bytes past the failure as durable.
func TestCheckpointSyncErrorKept(t *testing.T) {
	s, dir := newSink(t, FileOptions{Checkpoint: 64 << 10, Named: true})
	chunk := make([]byte, 64<<10)
	write := func(name string) *fileWriter {
		t.Helper()
		w, err := s.Create(name, "http://h/"+name)
		if err != nil {
			t.Fatal(err)
		}
		w.SetValidator(`"v"`, 4*int64(len(chunk)))
		fw := w.(*fileWriter)
		for range 4 {
			if _, err := w.Write(chunk); err != nil {
				t.Fatal(err)
			}
			fw.cp.Wait() // each write's checkpoint runs, none is skipped
		}
		return fw
	}

	failSyncData(t, 1)
	w := write("a")
	err := commit(t, w)
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("commit after a failed checkpoint flush = %v, want EIO", err)
	}
	for _, n := range []string{"a", "a" + PartSuffix} {
		if _, err := os.Lstat(filepath.Join(dir, n)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s after the failed commit: %v", n, err)
		}
	}

	// Stopped instead: nothing past the failure may be resumed. The first
	// checkpoint (64 KiB) succeeded, the second failed, the rest succeeded.
	failSyncData(t, 2)
	w = write("b")
	w.Abort()
	w2, err := s.Create("b", "http://h/b")
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Discard()
	if p := w2.Partial(); p.Offset > int64(len(chunk)) {
		t.Fatalf("resumable from %d after the flush of bytes %d-%d failed", p.Offset, len(chunk), 2*len(chunk))
	}
}
