package sink

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/haul/haul/internal/urlid"
)

// DefaultCheckpoint is how often (in body bytes) a staging file's progress is
// made durable and recorded, so that after a crash at most this much is fetched
// again. The flush runs on another goroutine: the download does not wait for it.
const DefaultCheckpoint = 32 << 20

// fileWriter writes one staging file. See Writer.
type fileWriter struct {
	s          *File
	d          *dirRef
	f          *os.File
	part       string
	final      string
	origin     string // urlid.Origin of the URL written
	replace    bool   // Commit may replace any file at the final name
	tmp        bool   // staged unnamed (O_TMPFILE): no NAME.part yet (see tmpfile.go)
	path       string // the final name's path in the sink
	dir        string // its directory's path in the sink ("" for the top)
	left       bool   // a file stays in dir at the end: the final one, or NAME.part to resume
	nameFailed bool   // nameEarly could not name it: not tried again

	partial   Partial // what was resumable when opened
	kept      int64   // file bytes kept from an earlier run
	written   int64   // bytes in the file
	plain     int64   // body bytes the file holds up to its last frame end (== written when not compressed)
	manual    bool    // a wrapping writer (compression) calls checkpoint at its frame ends
	validator string
	total     int64
	etag      string // SetCacheValidators
	modified  string
	lastCP    int64 // plain at the last checkpoint started
	kicked    int64 // written when writeback was last started (kick)
	cp        sync.WaitGroup
	cpBusy    atomic.Bool
	noResume  atomic.Bool // the filesystem had no room for the resume state, or a flush failed
	cpErr     error       // the first checkpoint's error, read after cp.Wait
	syncErr   error       // from the group commit's flush (committer only)
	// ranged: the body is written in pieces (RangeWriter); ranges holds what
	// SetRanges last gave, rangedBytes their length.
	ranged      bool
	ranges      []Range
	rangedBytes int64
	// inPieces: the record adopted was a v2 one (a plain file's, in pieces).
	inPieces bool
	// untouched: the v2 record adopted still describes the file: nothing was
	// written, recorded or restarted since. Abort then leaves record and
	// file as they are (a v1 record of the range from 0 would drop the
	// others' bytes, and a file with none from 0 would be removed).
	untouched bool
}

var (
	_ Writer      = (*fileWriter)(nil)
	_ RangeWriter = (*fileWriter)(nil)
)

// open opens (or creates) and locks the staging file and reads its resume state.
func (w *fileWriter) open(origin string) error {
	w.origin = urlid.Origin(origin)
	if w.s.unnamed() {
		ok, err := w.openUnnamed()
		if ok || err != nil {
			if err == nil {
				err = setOrigin(w.f, w.origin)
			}
			if err == nil && w.s.runTag != "" {
				err = setXattr(w.f, runAttr, w.s.runTag)
			}
			return err
		}
	}
	for {
		fresh, err := w.openLocked()
		if err == errStale {
			continue
		}
		if err != nil {
			return err
		}
		if fresh {
			err = setOrigin(w.f, w.origin)
		} else {
			err = w.adopt(w.origin)
		}
		if err == nil && w.s.runTag != "" {
			err = setXattr(w.f, runAttr, w.s.runTag)
		}
		return err
	}
}

// openUnnamed stages a new file unnamed, unless a NAME.part is there to be
// resumed (or locked by another process): ok false then, and the caller goes
// the named way.
func (w *fileWriter) openUnnamed() (ok bool, err error) {
	if !w.s.dirs.absent(w.d, w.part) {
		if _, err := w.d.lstat(w.part); !errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
	}
	f, err := w.d.openUnnamed(w.final) // messages name the file, not a NAME.part there is not
	if f == nil || err != nil {
		if err == nil {
			w.s.noUnnamed.Store(true)
			w.s.dirs.distrust() // no look for company before each file now
		}
		return false, err
	}
	w.f, w.tmp = f, true
	w.s.dirs.stagingUnnamed(w.path, 1)
	return true, nil
}

// unnamedMax is the largest file left unnamed to the end: a bigger one is named
// once its length is known to be bigger (SetValidator) or once that many bytes
// are written, so that another process sees it, and waits for it, the way it
// did before unnamed staging. Small files are where a name costs most and are
// done soonest.
const unnamedMax = 64 << 10

// nameEarly names an unnamed file before its end (see unnamedMax). If another
// process staged the name meanwhile, the file goes on unnamed, unresumable.
func (w *fileWriter) nameEarly() {
	if w.nameFailed {
		return
	}
	if err := w.name(); err != nil {
		w.nameFailed = true
		w.noResume.Store(true)
	}
}

// closeUnnamed is the end of an unnamed file that is never named.
func (w *fileWriter) closeUnnamed() {
	w.f.Close()
	w.s.dirs.stagingUnnamed(w.path, -1)
}

// name gives an unnamed staging file its name NAME.part, locked first, so
// that another process finds it locked and a later run can resume it. It fails
// (fs.ErrExist) where another process has staged the name meanwhile.
func (w *fileWriter) name() error {
	if !w.tmp {
		return nil
	}
	if err := lock(w.f); err != nil {
		return err
	}
	w.s.dirs.creating(w.dir, w.part)
	if err := w.d.link(w.f, w.part); err != nil {
		return err
	}
	w.tmp = false
	w.s.dirs.stagingUnnamed(w.path, -1)
	return nil
}

// errStale: the staging file was renamed or removed between open and lock.
var errStale = errors.New("staging file replaced while locking")

// openLocked opens the staging file and takes its lock. The lock is only good
// if the name still refers to the file locked: a process that finishes a file
// renames it (still locked) and only then unlocks, so a lock won on the old
// inode would be a lock on the final file. Then it returns errStale.
func (w *fileWriter) openLocked() (fresh bool, err error) {
	d := w.d
	// O_EXCL never follows a symbolic link, so a link planted at the staging name
	// cannot redirect the write, even to another file inside the directory.
	w.s.dirs.creating(w.dir, w.part)
	f, err := d.openFile(w.part, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	fresh = err == nil
	if errors.Is(err, fs.ErrExist) {
		if st, lerr := d.lstat(w.part); lerr == nil && !isRegular(&st) {
			if err := d.remove(w.part); err != nil {
				return false, err
			}
			return false, errStale
		}
		f, err = d.openFile(w.part, os.O_RDWR, 0)
		if errors.Is(err, fs.ErrNotExist) {
			return false, errStale
		}
	}
	if err != nil {
		return false, err
	}
	if err := lock(f); err != nil {
		f.Close()
		return false, err
	}
	if !fresh {
		var held unix.Stat_t
		named, err := d.lstat(w.part)
		if err == nil {
			err = control(f, func(fd int) error { return unix.Fstat(fd, &held) })
		}
		if err != nil || held.Dev != named.Dev || held.Ino != named.Ino {
			f.Close()
			return false, errStale
		}
		if held.Nlink != 1 {
			// haul never links a staging file: another name for this inode may
			// be outside the directory, and resuming (or truncating) it would
			// write there. Drop this name and start a new file.
			f.Close()
			if err := d.remove(w.part); err != nil {
				return false, err
			}
			return false, errStale
		}
	}
	w.f = f
	return fresh, nil
}

// adopt takes over a staging file an earlier run left: its bytes up to the
// recorded durable offset are kept if the same URL wrote them under a
// validator; anything else is discarded. origin is a urlid.Origin value.
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
	keep := int64(0)
	// Durable bytes were flushed before they were recorded, so the file holds at
	// least that many; bytes past them may be torn by a power loss.
	if ok && w.isOrigin(got) && fi.Size() >= rs.durable {
		keep = rs.durable
	}
	pos := keep // where the next Write goes
	if keep > 0 {
		w.partial = Partial{Offset: rs.plain, Validator: rs.validator, Total: rs.total, Done: rs.rest()}
		w.validator, w.total = rs.validator, rs.total
		if rs.ranges != nil {
			w.inPieces, w.untouched = true, true
			// Written in pieces: the bytes in order run to the end of the range
			// from 0; the other ranges stay where they are, for the caller to
			// keep (SetRanges) or overwrite.
			pos = rs.plain
		}
	}
	if err := w.f.Truncate(keep); err != nil {
		return err
	}
	if _, err := w.f.Seek(pos, io.SeekStart); err != nil {
		return err
	}
	w.kept, w.written, w.plain, w.lastCP, w.kicked = pos, pos, w.partial.Offset, w.partial.Offset, pos
	if !w.isOrigin(got) {
		return setOrigin(w.f, origin)
	}
	return nil
}

// isOrigin reports whether got, a value of OriginAttr, is this writer's origin.
func (w *fileWriter) isOrigin(got string) bool {
	return got == w.origin || got == urlid.Short(w.origin)
}

// Partial implements Writer.
func (w *fileWriter) Partial() Partial { return w.partial }

// Prefix implements Writer.
func (w *fileWriter) Prefix() io.Reader { return io.NewSectionReader(w.f, 0, w.kept) }

// SetValidator implements Writer.
func (w *fileWriter) SetValidator(validator string, total int64) {
	w.validator, w.total = validator, total
	if w.tmp && total > unnamedMax {
		w.nameEarly()
	}
}

func (w *fileWriter) Write(p []byte) (int, error) {
	w.untouched = false
	n, err := w.f.Write(p)
	w.written += int64(n)
	if w.tmp && w.written > unnamedMax {
		w.nameEarly()
	}
	if w.written-w.kicked >= kickEvery && w.s.committer != nil {
		w.kick()
	}
	if !w.manual {
		w.plain = w.written
		if w.plain-w.lastCP >= w.s.checkpoint {
			w.checkpoint()
		}
	}
	return n, err
}

// WriteAt implements RangeWriter.
func (w *fileWriter) WriteAt(p []byte, off int64) (int, error) {
	return w.f.WriteAt(p, off)
}

// ReadAt implements RangeWriter.
func (w *fileWriter) ReadAt(p []byte, off int64) (int, error) {
	return w.f.ReadAt(p, off)
}

// SetRanges implements RangeWriter.
func (w *fileWriter) SetRanges(done []Range) {
	w.untouched = false
	w.ranged = true
	w.ranges = append(w.ranges[:0], done...)
	w.rangedBytes = 0
	for _, r := range done {
		w.rangedBytes += r.End - r.Start
	}
	if w.rangedBytes-w.kicked >= kickEvery && w.s.committer != nil {
		// As kick, for the whole file: its new bytes are anywhere in it.
		w.kicked = w.rangedBytes
		startWriteback(w.f, 0, 0)
	}
	if w.rangedBytes-w.lastCP >= w.s.checkpoint {
		w.checkpoint()
	}
}

// EndRanges implements RangeWriter.
func (w *fileWriter) EndRanges(prefix int64) error {
	w.cp.Wait()
	w.untouched = false
	w.ranged, w.ranges, w.rangedBytes = false, nil, 0
	w.written, w.plain, w.kicked = prefix, prefix, prefix
	if w.lastCP > 0 || prefix > 0 {
		// A checkpoint may have recorded ranges: the next one (or the
		// commit) replaces or removes that record.
		w.lastCP = max(min(w.lastCP, prefix), 1)
	}
	_, err := w.f.Seek(prefix, io.SeekStart)
	return err
}

// progress is the body bytes the file holds, as checkpoints count them.
func (w *fileWriter) progress() int64 {
	if w.ranged {
		return w.rangedBytes
	}
	return w.plain
}

// kickEvery is how often the kernel is asked to start writing a large file's
// new bytes to disk. By default Linux lets gigabytes of dirty pages pile up
// before writing any back, so the flush before the rename would then wait for
// all of them; started early, the disk works while the network does, and the
// final flush finds little left. Only when syncing (not with NoSync).
const kickEvery = 8 << 20

// kick starts writeback of the bytes written since the last kick. It does not
// wait for it, and it guarantees nothing: the checkpoints and the group commit
// still flush. Linux only (sync_file_range); a no-op elsewhere.
func (w *fileWriter) kick() {
	off, n := w.kicked, w.written-w.kicked
	w.kicked = w.written
	startWriteback(w.f, off, n)
}

// checkpoint makes the bytes written so far durable and records them, on another
// goroutine; one checkpoint runs at a time per file. It must be called at a point
// where the file is a valid prefix (for compression, a frame end).
func (w *fileWriter) checkpoint() {
	if w.validator == "" || w.noResume.Load() || !w.cpBusy.CompareAndSwap(false, true) {
		return
	}
	if err := w.name(); err != nil {
		// Another process staged this name meanwhile: go on unnamed, without
		// checkpoints (an interruption restarts the file).
		w.noResume.Store(true)
		w.cpBusy.Store(false)
		return
	}
	w.lastCP = w.progress()
	rs := w.state()
	w.cp.Add(1)
	go func() {
		defer w.cp.Done()
		defer w.cpBusy.Store(false)
		if err := w.save(rs); err != nil && w.cpErr == nil {
			// The first error is kept: Linux reports a failed writeback once,
			// so the next flush succeeds and would hide the lost bytes. No
			// later state is recorded either (it would cover them).
			w.cpErr = err
			w.noResume.Store(true)
		}
	}()
}

// save makes the file's bytes durable (unless NoSync) and only then records rs,
// so the recorded state never runs ahead of the data. Where the filesystem has
// no room for the state (a validator of kilobytes), the file goes on without
// one: an interruption then costs it a restart, not the whole run.
func (w *fileWriter) save(rs resumeState) error {
	if w.s.committer != nil {
		if err := syncData(w.f); err != nil {
			return err
		}
	}
	err := setXattr(w.f, resumeAttr, rs.String())
	if attrTooBig(err) {
		w.noResume.Store(true)
		return removeXattr(w.f, resumeAttr)
	}
	return err
}

// state is the resume state for the file as it is now (at a frame end).
func (w *fileWriter) state() resumeState {
	if w.ranged {
		rs := resumeState{total: w.total, validator: w.validator, ranges: slices.Clone(w.ranges)}
		if rs.ranges == nil {
			rs.ranges = []Range{}
		}
		return rs
	}
	return resumeState{durable: w.written, plain: w.plain, total: w.total, validator: w.validator}
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
	w.written, w.plain, w.lastCP, w.kept, w.kicked, w.partial = 0, 0, 0, 0, 0, Partial{}
	w.ranged, w.ranges, w.rangedBytes = false, nil, 0
	w.untouched = false
	_, err := w.f.Seek(0, io.SeekStart)
	return err
}

// releaseDir lets go of the writer's directory; if the writer left nothing in
// it, the directories created for it go too, where they are empty.
func (w *fileWriter) releaseDir() {
	w.s.dirs.release(w.d)
	if w.left {
		w.s.dirs.settled(w.dir)
	} else if w.dir != "" && w.s.alone() {
		w.s.dirs.prune(w.dir)
	}
}

// Abort implements Writer: the bytes written so far are made durable (unless
// NoSync) and recorded, so the next run resumes them; a file with nothing worth
// resuming is removed.
func (w *fileWriter) Abort() error {
	defer w.releaseDir()
	w.cp.Wait()
	if w.untouched && w.validator == w.partial.Validator && w.total == w.partial.Total && !w.tmp {
		// As adopted: its record is still right.
		w.left = true
		return w.f.Close()
	}
	if w.progress() == 0 || w.validator == "" || w.noResume.Load() || w.ranged && w.total <= 0 {
		if w.tmp {
			w.closeUnnamed() // an unnamed file is gone when closed
			return nil
		}
		w.f.Close()
		return w.d.remove(w.part)
	}
	if err := w.name(); err != nil {
		w.closeUnnamed()
		if errors.Is(err, fs.ErrExist) {
			return nil // another process stages this name now: it is theirs to finish
		}
		return err
	}
	w.left = true
	err := w.save(w.state())
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Discard implements Writer.
func (w *fileWriter) Discard() error {
	defer w.releaseDir()
	w.cp.Wait()
	if w.tmp {
		w.closeUnnamed()
		return nil
	}
	w.f.Close()
	return w.d.remove(w.part)
}

// Commit implements Writer: close the staging file, then rename it, at once with
// NoSync, else after the committer's next filesystem flush.
func (w *fileWriter) Commit(done func(error)) {
	w.cp.Wait()
	err := w.cpErr
	if err == nil {
		w.saveMeta()
	}
	if w.s.committer == nil || err != nil {
		done(w.rename(err))
		return
	}
	w.s.committer.submit(commitReq{w: w, done: done})
}

// Replace implements Writer.
func (w *fileWriter) Replace() { w.replace = true }

// rename moves the staging file to the final name unless err says the data may
// not be safe, in which case the staging file is removed. Only then is the file
// closed, which releases its lock: another process never sees this staging file
// unlocked before it has its final name. It releases the directory handle too.
func (w *fileWriter) rename(err error) error {
	defer w.releaseDir()
	if err == nil {
		err = w.place()
	}
	w.left = err == nil
	if err != nil {
		if w.tmp {
			w.closeUnnamed()
		} else {
			w.d.remove(w.part)
			w.f.Close()
		}
		return fmt.Errorf("commit %s: %w", w.final, err)
	}
	if w.tmp {
		w.closeUnnamed() // linked: it has its final name
		return nil
	}
	if w.lastCP > 0 {
		// The final file needs no resume state. Removed only now: until the
		// rename, a crash must still find the checkpoint on NAME.part.
		removeXattr(w.f, resumeAttr)
	}
	return w.f.Close()
}

// place renames the staging file to the final name. Unless Replace was called, a
// file already there is replaced only if it has this writer's origin: the check
// and the rename are one atomic step (RENAME_NOREPLACE), so a file another
// process put there after the engine looked is never lost.
func (w *fileWriter) place() error {
	w.s.dirs.creating(w.dir, w.final)
	if !w.replace {
		var err error
		if w.tmp {
			err = w.d.link(w.f, w.final) // like RENAME_NOREPLACE
		} else {
			err = w.d.renameNoReplace(w.part, w.final)
		}
		if !errors.Is(err, fs.ErrExist) {
			return err
		}
		got, err := w.d.origin(w.final)
		if err != nil {
			return err
		}
		if !w.isOrigin(got) {
			if got == "" {
				return fmt.Errorf("%w: %s holds a file haul did not write", ErrTaken, w.final)
			}
			return fmt.Errorf("%w: %s holds %q", ErrTaken, w.final, got)
		}
		// The same URL, finished by another process: replaced, below.
	}
	// A link cannot replace a file, a rename can: an unnamed file is named first.
	if err := w.name(); err != nil {
		return err
	}
	return w.d.rename(w.part, w.final)
}
