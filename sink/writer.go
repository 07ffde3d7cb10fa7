package sink

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"sync/atomic"
)

// checkpointEvery is how often (in bytes written) a staging file's progress is
// made durable and recorded, so that after a crash at most this much is fetched
// again. The flush runs on another goroutine: the download does not wait for it.
const checkpointEvery = 32 << 20

// fileWriter writes one staging file. See Writer.
type fileWriter struct {
	s     *File
	d     *dirRef
	f     *os.File
	part  string
	final string

	partial   Partial // what was resumable when opened
	written   int64   // bytes in the file
	validator string
	total     int64
	lastCP    int64 // written at the last checkpoint started
	cp        sync.WaitGroup
	cpBusy    atomic.Bool
	cpErr     error // from the last checkpoint, read after cp.Wait
}

var _ Writer = (*fileWriter)(nil)

// open opens (or creates) and locks the staging file and reads its resume state.
func (w *fileWriter) open(origin string) error {
	r := w.d.r
	// O_EXCL never follows a symbolic link, so a link planted at the staging name
	// cannot redirect the write, even to another file inside the directory.
	f, err := r.OpenFile(w.part, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	fresh := err == nil
	if errors.Is(err, fs.ErrExist) {
		if fi, lerr := r.Lstat(w.part); lerr == nil && !fi.Mode().IsRegular() {
			if err := r.Remove(w.part); err != nil {
				return err
			}
			return w.open(origin)
		}
		f, err = r.OpenFile(w.part, os.O_RDWR, 0)
	}
	if err != nil {
		return err
	}
	w.f = f
	if err := lock(f); err != nil {
		return err
	}
	if fresh {
		return setXattr(f, OriginAttr, origin)
	}
	return w.adopt(origin)
}

// adopt takes over a staging file an earlier run left: its bytes up to the
// recorded durable offset are kept if the same URL wrote them under a
// validator; anything else is discarded.
func (w *fileWriter) adopt(origin string) error {
	got, err := getXattr(w.f, OriginAttr)
	if err != nil {
		return err
	}
	st, _ := getXattr(w.f, resumeAttr)
	rs, ok := parseResumeState(st)
	fi, err := w.f.Stat()
	if err != nil {
		return err
	}
	if !ok || got != origin {
		rs = resumeState{}
	}
	keep := min(rs.durable, fi.Size())
	if keep > 0 {
		w.partial = Partial{Offset: keep, Validator: rs.validator, Total: rs.total}
		w.validator, w.total = rs.validator, rs.total
	}
	if err := w.f.Truncate(keep); err != nil {
		return err
	}
	if _, err := w.f.Seek(keep, io.SeekStart); err != nil {
		return err
	}
	w.written, w.lastCP = keep, keep
	if got != origin {
		return setXattr(w.f, OriginAttr, origin)
	}
	return nil
}

// Partial implements Writer.
func (w *fileWriter) Partial() Partial { return w.partial }

// Prefix implements Writer.
func (w *fileWriter) Prefix() io.Reader { return io.NewSectionReader(w.f, 0, w.partial.Offset) }

// SetValidator implements Writer.
func (w *fileWriter) SetValidator(validator string, total int64) {
	w.validator, w.total = validator, total
}

func (w *fileWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.written += int64(n)
	if w.written-w.lastCP >= checkpointEvery && w.validator != "" {
		w.checkpoint()
	}
	return n, err
}

// checkpoint makes the bytes written so far durable and records them, on another
// goroutine; one checkpoint runs at a time per file.
func (w *fileWriter) checkpoint() {
	if !w.cpBusy.CompareAndSwap(false, true) {
		return
	}
	w.lastCP = w.written
	rs := resumeState{durable: w.written, total: w.total, validator: w.validator}
	noSync := w.s.committer == nil
	w.cp.Add(1)
	go func() {
		defer w.cp.Done()
		defer w.cpBusy.Store(false)
		if !noSync {
			if w.cpErr = fdatasync(w.f); w.cpErr != nil {
				return
			}
		}
		w.cpErr = setXattr(w.f, resumeAttr, rs.String())
	}()
}

// Restart implements Writer.
func (w *fileWriter) Restart() error {
	w.cp.Wait()
	if err := removeXattr(w.f, resumeAttr); err != nil {
		return err
	}
	if err := w.f.Truncate(0); err != nil {
		return err
	}
	w.written, w.lastCP, w.partial = 0, 0, Partial{}
	_, err := w.f.Seek(0, io.SeekStart)
	return err
}

// Abort implements Writer: the bytes written so far are made durable (unless
// NoSync) and recorded, so the next run resumes them; a file with nothing worth
// resuming is removed.
func (w *fileWriter) Abort() error {
	defer w.s.dirs.release(w.d)
	w.cp.Wait()
	if w.written == 0 || w.validator == "" {
		w.f.Close()
		return w.d.r.Remove(w.part)
	}
	var err error
	if w.s.committer != nil {
		err = fdatasync(w.f)
	}
	if err == nil {
		rs := resumeState{durable: w.written, total: w.total, validator: w.validator}
		err = setXattr(w.f, resumeAttr, rs.String())
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Discard implements Writer.
func (w *fileWriter) Discard() error {
	defer w.s.dirs.release(w.d)
	w.cp.Wait()
	w.f.Close()
	return w.d.r.Remove(w.part)
}

// Commit implements Writer: close the staging file, then rename it, at once with
// NoSync, else after the committer's next filesystem flush.
func (w *fileWriter) Commit(done func(error)) {
	w.cp.Wait()
	err := w.cpErr
	if err == nil && w.lastCP > 0 {
		err = removeXattr(w.f, resumeAttr) // the final file needs no resume state
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if w.s.committer == nil || err != nil {
		done(w.rename(err))
		return
	}
	w.s.committer.submit(commitReq{w: w, done: done})
}

// rename moves the staging file to the final name unless err says the data may
// not be safe, in which case the staging file is removed. It releases the
// directory handle either way.
func (w *fileWriter) rename(err error) error {
	defer w.s.dirs.release(w.d)
	if err == nil {
		err = w.d.r.Rename(w.part, w.final)
	}
	if err != nil {
		w.d.r.Remove(w.part)
		return fmt.Errorf("commit %s: %w", w.final, err)
	}
	return nil
}
