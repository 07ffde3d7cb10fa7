package sink

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"io/fs"
	"mime"
	"net/url"
	"os"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/haul/haul/internal/urlid"
)

// Tar is the sink of WebDataset shards: each entry is a sample, two adjacent
// members of a tar file, KEY.EXT (the body) and KEY.json (what the list and
// the response said of it), appended to PREFIX00000.tar, PREFIX00001.tar, ...
// of about TarOptions.Size bytes each. The names it is given are sample keys.
//
// A tar being written is PREFIXNNNNN.tar.part; it gets its final name once it
// is complete (its end-of-archive blocks written) and durable, and is never
// written again. Samples are appended by one goroutine, many at a time, and
// made durable with one fsync per batch: a sample's Commit calls done once
// it is. A run that starts on a directory reads the samples every tar of its
// prefix holds (Stat finds them), cuts the unfinished one back to its last
// whole sample and appends to it.
//
// A body is held in memory while it is small and memory allows (see
// TarOptions.Memory); a bigger one is written to a staging file in
// .haul-tar/ (with the File sink: resumable, and fetched in pieces with
// --split) and copied into the tar when committed.
//
// NewTarObjects keeps the tars as objects of an ObjectStore instead (a
// bucket): the same samples, index and names, written as multipart uploads
// (see tarobjects.go).
type Tar struct {
	root       *os.Root
	dir        string
	prefix     string
	size       int64
	noSync     bool
	readOnly   bool
	checkpoint int64

	memMax   int64 // the most one body may hold in memory
	memLimit int64 // the most all bodies may hold together
	mem      atomic.Int64

	mu sync.Mutex
	// index finds a sample by the hash of its key (seed): recs[index[h]].
	// Two keys of one hash are told apart by their origins (see TarOrigin):
	// at worst an entry fails as a collision, none is stored twice.
	index map[uint64]int32
	recs  []storedAt
	seed  maphash.Seed
	tars  []string // the tar files samples are in, by storedAt.tar
	// spilled: keys with a staging file in the spill directory (a body too
	// big for memory, left by an earlier run or set aside in this one).
	spilled map[string]bool
	failed  error // a flush failed: nothing more is appended
	maxNo   int   // the highest tar number in the directory

	obj *tarObj // the tars are objects of a store (NewTarObjects); nil: files in dir

	lock      *os.File // the prefix's lock, held while the sink is open
	spillOnce sync.Once
	spill     *File
	spillErr  error

	queue chan *tarWriter
	done  chan struct{}

	// Used by the appending goroutine alone.
	part    *os.File // the unfinished tar, nil: none yet
	partNo  int      // its number (or the next tar's, when part is nil)
	partIdx int32    // its index in tars
	samples int      // whole samples in part
	bw      *bufio.Writer
	cw      countWriter
	tw      *tar.Writer
	copyBuf []byte
	// extNames are the extensions of the samples, by storedAt.ext (a few
	// for millions of samples), exts their indexes; extOver holds a
	// sample's extension past the 65,535th distinct one.
	extNames []string
	exts     map[string]uint16
	extOver  map[uint64]string
}

// storedAt is where a sample is: in tars[tar], its body at off (about
// 80 bytes a sample with the index's share).
type storedAt struct {
	origin [16]byte // of its URL: see originSum
	off    int64
	size   int64
	tar    int32
	ext    uint16 // in extNames
}

// TarOptions configures a Tar sink.
type TarOptions struct {
	// Prefix starts every tar's name ("K-of-N-" for a shard): processes
	// with different prefixes share a directory, one process per prefix.
	Prefix string
	// Size is the tar files' size: a tar is finished once it reaches it
	// (the last sample may carry it past). Default 1 GiB.
	Size int64
	// NoSync skips the flushes: faster, but after a power loss a finished
	// tar may be cut short.
	NoSync bool
	// ReadOnly opens the directory for --dry-run: its tars are read, nothing
	// is written, locked or cut (Create fails).
	ReadOnly bool
	// Memory bounds the bytes of bodies held in memory, by writers and by
	// samples waiting to be appended (default 64 MiB); a body past an eighth
	// of it, or 4 MiB, goes to a staging file.
	Memory int64
	// Checkpoint is the staging files' FileOptions.Checkpoint (--checkpoint).
	Checkpoint int64
	// PartSize is, for NewTarObjects, the size of the parts of a tar's
	// upload (default DefaultTarPartSize, at least MinTarPartSize, more
	// where a tar of Size would take more than 9,000).
	PartSize int64
	// TailEvery is, for NewTarObjects, how long samples appended wait in
	// memory, once no more come, before a tail object stores them (six
	// times as long at most while they come; DefaultTarTailEvery).
	TailEvery time.Duration
}

// DefaultTarSize is the size of a tar file unless TarOptions.Size says.
const DefaultTarSize = 1 << 30

// TarSpillDir is the directory, inside the tar sink's directory, of its lock
// files and of the staging files of bodies too big for memory.
const TarSpillDir = ".haul-tar"

// ErrTarInUse reports that another process writes the same prefix's tars.
var ErrTarInUse = errors.New("another haul process writes these tar files")

var _ Sink = (*Tar)(nil)

// NewTar opens the tar sink on dir (created if needed): it reads the index of
// every tar of the prefix, and cuts the unfinished one back to its last whole
// sample. The caller must Close it.
func NewTar(dir string, opts TarOptions) (*Tar, error) {
	if !opts.ReadOnly {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	s := newTarSink(dir, opts)
	s.root = root
	if err := s.open(); err != nil {
		if s.lock != nil {
			s.lock.Close()
		}
		if s.part != nil {
			s.part.Close()
		}
		root.Close()
		return nil, err
	}
	go s.appender()
	return s, nil
}

// newTarSink is a Tar sink of opts (its Size and Memory set), not yet open.
func newTarSink(dir string, opts TarOptions) *Tar {
	if opts.Size <= 0 {
		opts.Size = DefaultTarSize
	}
	if opts.Memory <= 0 {
		opts.Memory = 64 << 20
	}
	return &Tar{dir: dir, prefix: opts.Prefix, size: opts.Size, noSync: opts.NoSync, readOnly: opts.ReadOnly, checkpoint: opts.Checkpoint,
		memMax: min(opts.Memory/8, 4<<20), memLimit: opts.Memory,
		index: make(map[uint64]int32), seed: maphash.MakeSeed(), spilled: make(map[string]bool),
		queue: make(chan *tarWriter, 256), done: make(chan struct{}), copyBuf: make([]byte, 1<<20),
		exts: make(map[string]uint16), extOver: make(map[uint64]string), maxNo: -1}
}

// open takes the prefix's lock and reads the directory's tars.
func (s *Tar) open() error {
	if !s.readOnly {
		if err := s.root.MkdirAll(TarSpillDir, 0o755); err != nil {
			return err
		}
		f, err := s.root.OpenFile(path.Join(TarSpillDir, s.prefix+"lock"), os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return err
		}
		s.lock = f
		if err := lock(f); err != nil {
			return fmt.Errorf("%s: tar files %s*.tar: %w", s.dir, s.prefix, ErrTarInUse)
		}
	}
	if err := s.readSpilled(); err != nil {
		return err
	}
	d, err := s.root.Open(".")
	if err != nil {
		return err
	}
	ents, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		return err
	}
	type found struct {
		no   int
		name string
		part bool
	}
	var tars []found
	finished := map[int]bool{}
	for _, e := range ents {
		m := anyTar.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		if !e.Type().IsRegular() {
			// haul never follows a link at a name it writes, nor reads one
			// as a tar: it may point at any file, a finished tar included.
			return fmt.Errorf("%s is not a regular file (a symbolic link?): haul does not follow it", path.Join(s.dir, e.Name()))
		}
		if m[1] != s.prefix {
			if s.otherSplit(m[2]) {
				// Another split of the list (another N, or none): its
				// samples may be this run's entries.
				if _, _, err := s.scan(e.Name(), strings.HasSuffix(e.Name(), PartSuffix)); err != nil {
					return err
				}
			}
			continue
		}
		no, _ := strconv.Atoi(m[3])
		tars = append(tars, found{no, e.Name(), m[4] != ""})
		if m[4] == "" {
			finished[no] = true
		}
	}
	sort.Slice(tars, func(i, j int) bool { return tars[i].no < tars[j].no || tars[i].no == tars[j].no && !tars[i].part })
	var part *found
	for i := range tars {
		t := &tars[i]
		s.maxNo = max(s.maxNo, t.no)
		if !t.part {
			if _, _, err := s.scan(t.name, false); err != nil {
				return err
			}
			continue
		}
		if finished[t.no] {
			// Finished, then a crash before the staging name went: the
			// same file under both names (else the finished one wins).
			if !s.readOnly {
				s.root.Remove(t.name)
			}
			continue
		}
		if part != nil {
			// Only one tar is written at a time; an older one was left by a
			// copy or by hand: finished as it is.
			if err := s.adoptPart(part.name); err != nil {
				return err
			}
			if !s.readOnly {
				if err := s.finishPart(); err != nil {
					return err
				}
			}
		}
		part = t
	}
	s.partNo = s.maxNo + 1
	if part != nil {
		// Appended to under its own number: the next tar takes the one
		// after it (or after the highest found), leaving no gap.
		s.partNo = part.no
		if err := s.adoptPart(part.name); err != nil {
			return err
		}
		if !s.readOnly && s.samples > 0 && s.cw.n+2*tarBlock >= s.size {
			// It reached its size before the run that wrote it stopped:
			// finished now, or one more sample would carry it past.
			if err := s.finishPart(); err != nil {
				return err
			}
		}
	}
	s.dropStoredSpills()
	return nil
}

// anyTar matches the name of any tar a Tar sink writes: its prefix
// ("K-of-N-" or ""), N, its number, and whether it is unfinished.
var anyTar = regexp.MustCompile(`^((?:[0-9]+-of-([0-9]+)-)?)([0-9]{5,9})\.tar(` + regexp.QuoteMeta(PartSuffix) + `)?$`)

// otherSplit reports whether the tars of another prefix, written under
// --shard K/n (n "": without), may hold entries of this sink's: written
// without --shard, or with another N. The tars of the other shards of the
// same N hold other entries (a shard is a hash of the URL modulo N): they
// are not read.
func (s *Tar) otherSplit(n string) bool {
	own := anyTar.FindStringSubmatch(s.prefix + "00000.tar")
	return own == nil || own[2] == "" || n != own[2]
}

// dropStoredSpills removes the staging files of samples a tar already holds:
// a run stopped after such a sample was appended, before its staging file
// went. The sample is skipped, so nothing else would ever remove it.
func (s *Tar) dropStoredSpills() {
	if s.readOnly {
		return
	}
	for key := range s.spilled {
		if _, _, _, stored := s.lookup(key); !stored {
			continue
		}
		if err := s.root.Remove(path.Join(s.spillDir(), key+PartSuffix)); err == nil || errors.Is(err, fs.ErrNotExist) {
			delete(s.spilled, key)
		}
	}
}

// scan records the n samples of the tar file name. A finished tar must be
// whole; an unfinished one is read up to its last whole sample: end is that
// offset (where adoptPart cuts it).
func (s *Tar) scan(name string, unfinished bool) (end int64, n int, err error) {
	f, err := s.openRegular(name, os.O_RDONLY)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	idx := int32(len(s.tars))
	s.tars = append(s.tars, name)
	end, err = ScanTar(f, fi.Size(), func(st StoredSample) {
		s.record(st.Key, storedAt{origin: originSum(st.URL), off: st.Offset, size: st.Size, tar: idx}, st.Member[len(st.Key)+1:])
		n++
	})
	if err != nil && !unfinished {
		return 0, 0, fmt.Errorf("tar file %s is damaged %v (move it away to fetch its samples again)", path.Join(s.dir, name), err)
	}
	return end, n, nil
}

// adoptPart makes the unfinished tar name the one appended to, cut back to
// its last whole sample.
func (s *Tar) adoptPart(name string) error {
	end, n, err := s.scan(name, true)
	if err != nil {
		return err
	}
	s.samples = n
	s.partIdx = int32(len(s.tars) - 1)
	if s.readOnly {
		return nil
	}
	f, err := s.openRegular(name, os.O_RDWR)
	if err != nil {
		return err
	}
	if err := f.Truncate(end); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Seek(end, io.SeekStart); err != nil {
		f.Close()
		return err
	}
	s.setPart(f, end)
	return nil
}

// openRegular opens name, which must be a regular file, not a link to one
// (os.Root follows a link that stays in the directory).
func (s *Tar) openRegular(name string, flag int) (*os.File, error) {
	fi, err := s.root.Lstat(name)
	if err != nil {
		return nil, err
	}
	f, err := s.root.OpenFile(name, flag, 0)
	if err != nil {
		return nil, err
	}
	if ffi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() || !os.SameFile(fi, ffi) {
		f.Close()
		return nil, fmt.Errorf("%s is not a regular file (a symbolic link?): haul does not follow it", path.Join(s.dir, name))
	}
	return f, nil
}

func (s *Tar) setPart(f *os.File, off int64) {
	s.part = f
	if s.bw == nil {
		s.bw = bufio.NewWriterSize(f, 1<<20)
	} else {
		s.bw.Reset(f)
	}
	s.cw = countWriter{w: s.bw, n: off}
	s.tw = tar.NewWriter(&s.cw)
}

// readSpilled lists the staging files left in the spill directory.
func (s *Tar) readSpilled() error {
	d, err := s.root.Open(s.spillDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer d.Close()
	ents, err := d.ReadDir(-1)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if key, ok := strings.CutSuffix(e.Name(), PartSuffix); ok {
			s.spilled[key] = true
		}
	}
	return nil
}

func (s *Tar) spillDir() string { return path.Join(TarSpillDir, s.prefix+"spill") }

// spillSink is the File sink of the bodies too big for memory, opened at
// the first.
func (s *Tar) spillSink() (*File, error) {
	s.spillOnce.Do(func() {
		dir := path.Join(s.dir, s.spillDir())
		if s.obj != nil {
			dir = s.obj.spillDir // fetched again by a later run
		}
		s.spill, s.spillErr = NewFile(dir, FileOptions{NoSync: s.noSync, Named: true, MaxOpen: 64, Checkpoint: s.checkpoint})
	})
	return s.spill, s.spillErr
}

// originSum identifies a sample's URL in the index: the first half of the
// SHA-256 of its origin (urlid.Origin).
func originSum(rawURL string) [16]byte {
	sum := sha256.Sum256([]byte(urlid.Origin(rawURL)))
	return [16]byte(sum[:16])
}

// TarOrigin is the Info.Origin a Tar sink reports for a sample stored from
// rawURL: the engine compares it with its entry's.
func TarOrigin(rawURL string) string {
	sum := originSum(rawURL)
	return "sha256/128:" + hex.EncodeToString(sum[:])
}

// record adds the sample key at st, its body's member KEY.ext. Called at
// open, and by the appending goroutine under mu.
func (s *Tar) record(key string, st storedAt, ext string) {
	h := maphash.String(s.seed, key)
	if i, ok := s.exts[ext]; ok {
		st.ext = i
	} else if len(s.extNames) < 1<<16-1 {
		st.ext = uint16(len(s.extNames))
		s.exts[strings.Clone(ext)] = st.ext
		s.extNames = append(s.extNames, strings.Clone(ext))
	} else {
		st.ext = 1<<16 - 1
		s.extOver[h] = strings.Clone(ext)
	}
	if i, ok := s.index[h]; ok {
		s.recs[i] = st // the same key again (or one of the same hash)
		return
	}
	s.index[h] = int32(len(s.recs))
	s.recs = append(s.recs, st)
}

// lookup returns where the sample key is, its tar's name and its body's
// extension.
func (s *Tar) lookup(key string) (st storedAt, tarName, ext string, ok bool) {
	h := maphash.String(s.seed, key)
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.index[h]
	if !ok {
		return storedAt{}, "", "", false
	}
	st = s.recs[i]
	if st.ext == 1<<16-1 {
		ext = s.extOver[h]
	} else {
		ext = s.extNames[st.ext]
	}
	return st, s.tars[st.tar], ext, true
}

// Stat implements Sink: the sample stored under the key name. Its Origin is
// the short form of the URL's (urlid.Short), which urlid.Same matches.
func (s *Tar) Stat(name string) (Info, error) {
	st, tarName, ext, ok := s.lookup(name)
	if !ok {
		return Info{}, &fs.PathError{Op: "stat", Path: name, Err: fs.ErrNotExist}
	}
	return Info{Size: st.size, Origin: "sha256/128:" + hex.EncodeToString(st.origin[:]),
		Tar: strings.TrimSuffix(tarName, PartSuffix), Member: name + "." + ext}, nil
}

// Open implements Sink: the body of the sample name.
func (s *Tar) Open(name string) (io.ReadCloser, error) {
	if s.obj != nil {
		return s.openObject(name)
	}
	st, tarName, _, ok := s.lookup(name)
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	f, err := s.root.Open(tarName)
	if errors.Is(err, fs.ErrNotExist) && strings.HasSuffix(tarName, PartSuffix) {
		f, err = s.root.Open(strings.TrimSuffix(tarName, PartSuffix)) // finished meanwhile
	}
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.NewSectionReader(f, st.off, st.size), f}, nil
}

// Staged implements Sink: only a body too big for memory leaves anything.
func (s *Tar) Staged(name, origin string) (Partial, error) {
	s.mu.Lock()
	spilled := s.spilled[name]
	s.mu.Unlock()
	if !spilled {
		return Partial{}, nil
	}
	sp, err := s.spillSink() // there, since it holds name (read-only: not created)
	if err != nil {
		return Partial{}, err
	}
	return sp.Staged(name, origin)
}

// Create implements Sink.
func (s *Tar) Create(name, origin string) (Writer, error) {
	if s.readOnly {
		return nil, errors.New("tar sink opened read-only")
	}
	w := &tarWriter{s: s, key: name, origin: origin}
	s.mu.Lock()
	spilled := s.spilled[name]
	s.mu.Unlock()
	if spilled {
		if err := w.toFile(); err != nil {
			return nil, err
		}
		w.partial = w.fw.Partial()
		w.n = w.partial.Offset
	}
	return w, nil
}

// Flush implements Sink.
func (s *Tar) Flush() {
	ch := make(chan struct{})
	s.queue <- &tarWriter{flushed: ch}
	<-ch
}

// Writable reports why this process may not write in the directory, or nil.
func (s *Tar) Writable() error {
	if s.obj != nil {
		return nil // told by the store's answers
	}
	return unix.Faccessat(unix.AT_FDCWD, s.dir, unix.W_OK|unix.X_OK, unix.AT_EACCESS)
}

// Close waits for the samples committed, and, with finish, finishes the
// unfinished tar (the list ended: a later run starts a new one); without,
// it stays unfinished, for the next run to append to. No Writer may be in
// use.
func (s *Tar) Close(finish bool) error {
	close(s.queue)
	<-s.done
	if s.obj != nil {
		return s.closeObjects(finish)
	}
	var err error
	if s.part != nil {
		if finish && s.samples > 0 && s.failed == nil {
			err = s.finishPart()
		} else if cerr := s.closePart(); err == nil {
			err = cerr
		}
	}
	if s.spill != nil {
		s.spill.Close()
		if !s.readOnly {
			s.root.Remove(s.spillDir()) // if empty
		}
	}
	if s.lock != nil {
		s.lock.Close()
	}
	if cerr := s.root.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = s.failed
	}
	return err
}

// closePart flushes the unfinished tar and closes it, for a later run.
func (s *Tar) closePart() error {
	err := s.bw.Flush()
	if err == nil && !s.noSync {
		err = fdatasync(s.part)
	}
	if cerr := s.part.Close(); err == nil {
		err = cerr
	}
	s.part = nil
	return err
}

// appender appends the samples committed, a batch at a time: each is
// written, the batch made durable, then each one's done called.
func (s *Tar) appender() {
	defer close(s.done)
	var batch []*tarWriter
	for w := range s.queue {
		batch = append(batch[:0], w)
		bytes := w.size()
	drain:
		for len(batch) < 512 && bytes < 32<<20 {
			select {
			case w, ok := <-s.queue:
				if !ok {
					break drain
				}
				batch = append(batch, w)
				bytes += w.size()
			default:
				break drain
			}
		}
		s.appendBatch(batch)
	}
}

// appendBatch appends the samples of batch, finishing a tar whenever one
// reaches its size.
func (s *Tar) appendBatch(batch []*tarWriter) {
	from := 0
	for i, w := range batch {
		if w.flushed != nil {
			continue
		}
		w.err = s.failed
		if w.err == nil {
			w.err = s.appendSample(w)
		}
		if s.part != nil && s.cw.n+2*tarBlock >= s.size {
			s.settle(batch[from : i+1])
			from = i + 1
			if s.failed == nil {
				if err := s.finishPart(); err != nil {
					s.failed = err
				}
			}
		}
	}
	s.settle(batch[from:])
}

// settle makes the samples appended durable and calls their done.
func (s *Tar) settle(batch []*tarWriter) {
	if s.part != nil && s.failed == nil {
		err := s.bw.Flush()
		if err == nil && !s.noSync {
			err = fdatasync(s.part)
		}
		if err != nil {
			// What the kernel failed to write may be lost whatever a retry
			// says: no later sample goes into this tar.
			s.failed = fmt.Errorf("tar file %s: %w", s.tars[s.partIdx], err)
		}
	}
	s.mu.Lock() // once for the batch: Stat takes it for every entry
	for _, w := range batch {
		if w.flushed != nil {
			continue
		}
		if w.err == nil && s.failed != nil {
			w.err = s.failed
		}
		if w.err == nil {
			s.record(w.key, w.stored, w.ext)
			delete(s.spilled, w.key)
		}
	}
	s.mu.Unlock()
	for _, w := range batch {
		if w.flushed != nil {
			close(w.flushed)
			continue
		}
		w.release()
		w.done(w.err)
	}
}

// appendSample writes the two members of w's sample. On an error, the tar
// is cut back to before them.
func (s *Tar) appendSample(w *tarWriter) error {
	if s.part == nil {
		if err := s.newPart(); err != nil {
			return err
		}
	}
	start := s.cw.n
	err := s.writeMembers(w)
	if err != nil {
		s.bw.Reset(s.part) // what it held is cut below
		if terr := s.part.Truncate(start); terr != nil {
			s.failed = fmt.Errorf("tar file %s: %w", s.tars[s.partIdx], terr)
		} else if _, serr := s.part.Seek(start, io.SeekStart); serr != nil {
			s.failed = fmt.Errorf("tar file %s: %w", s.tars[s.partIdx], serr)
		}
		s.setPart(s.part, start)
		return err
	}
	s.samples++
	return nil
}

func (s *Tar) writeMembers(w *tarWriter) error {
	ext := sampleExt(w.origin, w.sample.ContentType)
	member := w.key + "." + ext
	mtime := time.Now()
	if t, err := time.Parse(time.RFC1123, w.lastModified); err == nil {
		mtime = t
	}
	if err := s.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: member, Size: w.n, Mode: 0o644, ModTime: mtime}); err != nil {
		return err
	}
	off := s.cw.n
	if w.fw != nil {
		rw := w.fw.(RangeWriter)
		if _, err := io.CopyBuffer(s.tw, io.NewSectionReader(rw, 0, w.n), s.copyBuf); err != nil {
			return err
		}
	} else if _, err := s.tw.Write(w.buf); err != nil {
		return err
	}
	js, err := w.sampleJSON()
	if err != nil {
		return err
	}
	if err := s.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: w.key + ".json", Size: int64(len(js)), Mode: 0o644, ModTime: mtime}); err != nil {
		return err
	}
	if _, err := s.tw.Write(js); err != nil {
		return err
	}
	if err := s.tw.Flush(); err != nil { // the padding: the sample ends on a block
		return err
	}
	w.stored, w.ext = storedAt{origin: originSum(w.origin), off: off, size: w.n, tar: s.partIdx}, ext
	w.tarName, w.member = strings.TrimSuffix(s.tars[s.partIdx], PartSuffix), member
	return nil
}

// newPart starts the next tar, numbered past every tar of the prefix.
func (s *Tar) newPart() error {
	var name string
	var f *os.File
	for {
		name = fmt.Sprintf("%s%05d.tar", s.prefix, s.partNo)
		_, err := s.root.Lstat(name)
		if err == nil {
			s.partNo++ // put there meanwhile, by hand
			continue
		}
		name += PartSuffix
		if f, err = s.root.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644); err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) {
			return err
		}
		s.partNo++
	}
	if !s.noSync {
		// Its name durable before its first samples are reported stored:
		// an fdatasync of the file does not flush its directory entry.
		if err := s.syncDir(); err != nil {
			f.Close()
			s.root.Remove(name)
			return err
		}
	}
	s.mu.Lock()
	s.tars = append(s.tars, name)
	s.partIdx = int32(len(s.tars) - 1)
	s.mu.Unlock()
	s.samples = 0
	s.setPart(f, 0)
	return nil
}

// finishPart writes the end-of-archive blocks of the unfinished tar, makes
// it durable and gives it its final name.
func (s *Tar) finishPart() error {
	name := s.tars[s.partIdx]
	final := strings.TrimSuffix(name, PartSuffix)
	err := s.tw.Close()
	if err == nil {
		err = s.bw.Flush()
	}
	if err == nil && !s.noSync {
		err = fdatasync(s.part)
	}
	if cerr := s.part.Close(); err == nil {
		err = cerr
	}
	s.part = nil
	if err == nil {
		// A link cannot replace a file: a finished tar is never overwritten.
		err = s.root.Link(name, final)
	}
	if err == nil {
		err = s.root.Remove(name)
	}
	if err == nil && !s.noSync {
		err = s.syncDir()
	}
	if err != nil {
		return fmt.Errorf("tar file %s: %w", path.Join(s.dir, final), err)
	}
	s.mu.Lock()
	s.tars[s.partIdx] = final
	s.mu.Unlock()
	s.partNo = max(s.partNo, s.maxNo) + 1
	return nil
}

func (s *Tar) syncDir() error {
	d, err := s.root.Open(".")
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// countWriter counts the bytes written through it: the tar's length.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Sample is what a sample's KEY.json says besides its size: the engine
// gives it to a Writer of a Tar sink (SampleWriter) before Commit.
type Sample struct {
	Key         string
	SHA256      string // "" unless computed
	HTTPStatus  int
	ContentType string
	Meta        string // a JSON object, or ""
}

// SampleWriter is what a Writer of a Tar sink offers besides Writer.
type SampleWriter interface {
	// SetSample records what the sample's KEY.json says.
	SetSample(Sample)
	// Stored reports where Commit put the sample: its tar file (its final
	// name) and its body's member. Valid once done was called with nil.
	Stored() (tarName, member string)
}

// tarWriter is the Writer of one sample: its body in memory (buf), or, past
// what memory allows, in a staging file of the spill sink (fw).
type tarWriter struct {
	s        *Tar
	key      string
	origin   string
	buf      []byte
	reserved int64 // bytes of s.mem that buf holds
	fw       Writer
	n        int64 // body bytes written
	partial  Partial

	sample       Sample
	lastModified string
	done         func(error)
	err          error
	stored       storedAt
	ext          string
	tarName      string
	member       string
	flushed      chan struct{} // a Flush barrier, not a sample
}

var _ RangeWriter = (*tarWriter)(nil)

func (w *tarWriter) size() int64 { return int64(len(w.buf)) }

// reserve takes n more bytes of the shared memory for buf, if it has them.
func (w *tarWriter) reserve(n int64) bool {
	if w.reserved+n > w.s.memMax {
		return false
	}
	for {
		m := w.s.mem.Load()
		if m+n > w.s.memLimit {
			return false
		}
		if w.s.mem.CompareAndSwap(m, m+n) {
			w.reserved += n
			return true
		}
	}
}

func (w *tarWriter) release() {
	w.dropBuf()
	if w.fw != nil {
		w.fw.Discard()
		w.fw = nil
	}
}

// grow gives buf room for n bytes, from the pool of bodies and within the
// memory bound, and reports whether it could.
func (w *tarWriter) grow(n int64) bool {
	c := bodyClass(n)
	if n > w.s.memMax {
		return false
	}
	if c > w.s.memMax {
		c = n
	}
	if !w.reserve(c - w.reserved) {
		return false
	}
	nb := getBody(c)
	nb = append(nb, w.buf...)
	putBody(w.buf)
	w.buf = nb
	return true
}

// dropBuf gives buf back to the pool and its memory to the bound.
func (w *tarWriter) dropBuf() {
	putBody(w.buf)
	w.s.mem.Add(-w.reserved)
	w.reserved, w.buf = 0, nil
}

// Bodies held in memory come from pools of 4 KiB, 8 KiB, ... 4 MiB
// buffers: a run of small files reuses them rather than leave the garbage
// collector a heap of freed bodies to let grow (up to twice the bound).
const (
	minBodyClass = 4 << 10
	bodyClasses  = 11 // up to 4 MiB
)

var bodyPools [bodyClasses]sync.Pool

// bodyClass is the size of the pooled buffer that holds n bytes (n itself
// past the biggest).
func bodyClass(n int64) int64 {
	c := int64(minBodyClass)
	for i := 0; i < bodyClasses; i++ {
		if c >= n {
			return c
		}
		c <<= 1
	}
	return n
}

func getBody(c int64) []byte {
	for i := 0; i < bodyClasses; i++ {
		if minBodyClass<<i == c {
			if b, ok := bodyPools[i].Get().(*[]byte); ok {
				return (*b)[:0]
			}
			break
		}
	}
	return make([]byte, 0, c)
}

func putBody(b []byte) {
	for i := 0; i < bodyClasses; i++ {
		if minBodyClass<<i == cap(b) {
			b = b[:0]
			bodyPools[i].Put(&b)
			return
		}
	}
}

// toFile moves the body to a staging file of the spill sink. An error
// stays the writer's: its next Write and its Commit fail with it.
func (w *tarWriter) toFile() error {
	if w.err == nil {
		w.err = w.spillBody()
	}
	return w.err
}

func (w *tarWriter) spillBody() error {
	sp, err := w.s.spillSink()
	if err != nil {
		return err
	}
	fw, err := sp.Create(w.key, w.origin)
	if err != nil {
		return err
	}
	if len(w.buf) > 0 {
		if _, err := fw.Write(w.buf); err != nil {
			fw.Discard()
			return err
		}
	}
	w.fw = fw
	w.dropBuf()
	w.s.mu.Lock()
	w.s.spilled[w.key] = true
	w.s.mu.Unlock()
	return nil
}

// Write implements Writer.
func (w *tarWriter) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.fw == nil && len(w.buf)+len(p) > cap(w.buf) && !w.grow(max(int64(len(w.buf)+len(p)), 2*int64(cap(w.buf)))) {
		if err := w.toFile(); err != nil {
			return 0, err
		}
	}
	if w.fw != nil {
		n, err := w.fw.Write(p)
		w.n += int64(n)
		return n, err
	}
	w.buf = append(w.buf, p...)
	w.n += int64(len(p))
	return len(p), nil
}

// Partial implements Writer.
func (w *tarWriter) Partial() Partial { return w.partial }

// Prefix implements Writer.
func (w *tarWriter) Prefix() io.Reader {
	if w.fw != nil {
		return w.fw.Prefix()
	}
	return bytes.NewReader(nil)
}

// SetValidator implements Writer: a body known to be too big for memory
// goes to a staging file from its start.
func (w *tarWriter) SetValidator(validator string, total int64) {
	if w.fw == nil && total > int64(cap(w.buf)) && !w.grow(total) {
		// Its length is known: held in one buffer of that size, if memory
		// has room for it, else in a staging file.
		w.toFile()
	}
	if w.fw != nil {
		w.fw.SetValidator(validator, total)
	}
}

// SetCacheValidators implements Writer: Last-Modified dates the members.
func (w *tarWriter) SetCacheValidators(etag, lastModified string) {
	w.lastModified = lastModified
	if w.fw != nil {
		w.fw.SetCacheValidators(etag, lastModified)
	}
}

// SetSample implements SampleWriter.
func (w *tarWriter) SetSample(s Sample) { w.sample = s }

// Stored implements SampleWriter.
func (w *tarWriter) Stored() (string, string) { return w.tarName, w.member }

// Commit implements Writer: the sample is appended to the tar, and done
// called once it is durable (or with the error that prevented it).
func (w *tarWriter) Commit(done func(error)) {
	if w.err != nil {
		w.release()
		done(w.err)
		return
	}
	w.done = done
	w.s.queue <- w
}

// Abort implements Writer: a body in memory is lost, one in a staging file
// kept for a later attempt.
func (w *tarWriter) Abort() error {
	if w.fw != nil {
		err := w.fw.Abort()
		w.fw = nil
		w.release()
		return err
	}
	w.release()
	return nil
}

// Discard implements Writer.
func (w *tarWriter) Discard() error {
	if w.fw != nil {
		w.s.mu.Lock()
		delete(w.s.spilled, w.key)
		w.s.mu.Unlock()
	}
	w.release()
	return nil
}

// Restart implements Writer.
func (w *tarWriter) Restart() error {
	w.n = 0
	if w.fw != nil {
		return w.fw.Restart()
	}
	w.buf = w.buf[:0]
	return nil
}

// Replace implements Writer: a sample is never replaced (no tar is
// rewritten), so there is nothing to allow.
func (w *tarWriter) Replace() {}

// WriteAt implements RangeWriter: a body fetched in pieces is in a staging
// file.
func (w *tarWriter) WriteAt(p []byte, off int64) (int, error) {
	if w.fw == nil && w.toFile() != nil {
		return 0, w.err
	}
	return w.fw.(RangeWriter).WriteAt(p, off)
}

// ReadAt implements RangeWriter.
func (w *tarWriter) ReadAt(p []byte, off int64) (int, error) {
	if w.fw == nil {
		if off >= int64(len(w.buf)) {
			return 0, io.EOF
		}
		n := copy(p, w.buf[off:])
		if n < len(p) {
			return n, io.EOF
		}
		return n, nil
	}
	return w.fw.(RangeWriter).ReadAt(p, off)
}

// SetRanges implements RangeWriter: the body goes to a staging file first.
func (w *tarWriter) SetRanges(done []Range) {
	if w.fw == nil && w.toFile() != nil {
		return
	}
	w.fw.(RangeWriter).SetRanges(done)
}

// EndRanges implements RangeWriter.
func (w *tarWriter) EndRanges(prefix int64) error {
	if w.fw == nil {
		return w.err
	}
	w.n = prefix
	return w.fw.(RangeWriter).EndRanges(prefix)
}

// sampleJSON is the KEY.json member.
func (w *tarWriter) sampleJSON() ([]byte, error) {
	type sampleJSON struct {
		URL         string          `json:"url"`
		Key         string          `json:"key"`
		Size        int64           `json:"size"`
		SHA256      *string         `json:"sha256"`
		HTTPStatus  int             `json:"http_status"`
		ContentType *string         `json:"content_type"`
		Meta        json.RawMessage `json:"meta"`
	}
	m := sampleJSON{URL: urlid.Public(w.origin), Key: w.key, Size: w.n, HTTPStatus: w.sample.HTTPStatus, Meta: json.RawMessage("null")}
	if w.sample.SHA256 != "" {
		m.SHA256 = &w.sample.SHA256
	}
	if w.sample.ContentType != "" {
		m.ContentType = &w.sample.ContentType
	}
	if w.sample.Meta != "" {
		m.Meta = json.RawMessage(w.sample.Meta)
	}
	return json.Marshal(m)
}

// sampleExt is a sample's body member's extension: the URL path's, lower
// case, when it is 1-8 letters and digits; else one for the Content-Type;
// else "bin". A body whose extension would be json is "body.json" (KEY.json
// is the sample's description).
func sampleExt(rawURL, contentType string) string {
	ext := ""
	if u, err := url.Parse(rawURL); err == nil {
		e := strings.ToLower(path.Ext(u.Path))
		if len(e) >= 2 && len(e) <= 9 && alnum(e[1:]) {
			ext = e[1:]
		}
	}
	if ext == "" {
		mt, _, _ := mime.ParseMediaType(contentType)
		ext = mediaExt[mt]
	}
	switch ext {
	case "":
		return "bin"
	case "json":
		return "body.json"
	}
	return ext
}

func alnum(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// mediaExt names the extension of the media types datasets hold.
var mediaExt = map[string]string{
	"image/jpeg": "jpg", "image/png": "png", "image/gif": "gif", "image/webp": "webp",
	"image/avif": "avif", "image/bmp": "bmp", "image/tiff": "tiff", "image/svg+xml": "svg",
	"image/heic": "heic", "image/x-icon": "ico", "image/vnd.microsoft.icon": "ico",
	"text/plain": "txt", "text/html": "html", "text/csv": "csv", "text/xml": "xml",
	"text/markdown": "md", "application/xml": "xml", "application/json": "json",
	"application/pdf": "pdf", "application/zip": "zip", "application/gzip": "gz",
	"application/x-tar": "tar", "application/zstd": "zst",
	"audio/mpeg": "mp3", "audio/wav": "wav", "audio/x-wav": "wav", "audio/ogg": "ogg",
	"audio/flac": "flac", "video/mp4": "mp4", "video/webm": "webm", "video/ogg": "ogv",
	"video/quicktime": "mov",
}
