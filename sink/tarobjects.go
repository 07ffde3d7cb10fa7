package sink

import (
	"archive/tar"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ObjectStore is an object store (an S3 bucket, under a prefix) as a Tar
// sink keeps its tar files there: see NewTarObjects. Keys are relative to
// the store's prefix.
type ObjectStore interface {
	// Name names key in messages (s3://BUCKET/PREFIX/KEY).
	Name(key string) string
	// List lists the objects whose key starts with prefix and has no "/"
	// past it.
	List(prefix string) ([]StoredObject, error)
	// Get reads n bytes of key from off (n < 0: up to its end); an error
	// wrapping fs.ErrNotExist if there is no such object.
	Get(key string, off, n int64) (io.ReadCloser, error)
	// Put stores body at key, replacing what is there.
	Put(key string, body []byte) error
	// Delete removes key; none there is no error.
	Delete(key string) error
	// Uploads lists the multipart uploads in progress whose key starts with
	// prefix.
	Uploads(prefix string) ([]StoredUpload, error)
	// NewUpload begins a multipart upload of key.
	NewUpload(key string) (id string, err error)
	// PutPart stores part n (from 1) of the upload: a part but the last
	// must hold at least 5 MiB.
	PutPart(key, id string, n int, body []byte) (etag string, err error)
	// Parts lists the parts stored of the upload; an error wrapping
	// fs.ErrNotExist if there is no such upload.
	Parts(key, id string) ([]StoredPart, error)
	// Complete makes the object key of parts, whole.
	Complete(key, id string, parts []StoredPart) error
	// Abort aborts the upload.
	Abort(key, id string) error
}

// StoredObject is an object an ObjectStore lists.
type StoredObject struct {
	Key  string
	Size int64
}

// StoredUpload is a multipart upload in progress.
type StoredUpload struct {
	Key, ID string
}

// StoredPart is a part of a multipart upload.
type StoredPart struct {
	Number int
	ETag   string
	Size   int64
}

// TarMetaDir holds, beside the tar objects, what a later run needs to know
// what the unfinished tar holds (S3 cannot read back the parts of an
// upload in progress) and the index of each finished tar:
//
//	NNNNN.tar.part00001.json  the samples ending in part 1 of NNNNN.tar
//	NNNNN.tar.tail            the bytes past the last part, held at the end of a run
//	NNNNN.tar.index.json      the samples of the finished NNNNN.tar
const TarMetaDir = ".haul-tar/"

// MinTarPartSize is the smallest part of a tar object that S3 accepts but
// for the last; DefaultTarPartSize the part size unless TarOptions.PartSize
// says.
const (
	MinTarPartSize     = 5 << 20
	DefaultTarPartSize = 8 << 20
)

// DefaultTarTailEvery is how long samples appended wait in a tar's last
// bytes, once no more come, before a tail object makes them durable (when
// no part does sooner); while they come, six times as long at most.
const DefaultTarTailEvery = 5 * time.Second

// tarMeta matches the objects of TarMetaDir: the tar's name, and which.
var tarMeta = regexp.MustCompile(`^` + regexp.QuoteMeta(TarMetaDir) + `((?:[0-9]+-of-[0-9]+-)?[0-9]{5,9}\.tar)\.(part([0-9]{5})\.json|tail|index\.json)$`)

// tarObj is what a Tar sink keeps of its tars when they are objects.
type tarObj struct {
	store     ObjectStore
	partSize  int64
	tailEvery time.Duration
	spillDir  string   // a local temporary directory, removed at Close
	spillLock *os.File // held while the sink is open (see newSpillDir)
	// foreign are the unfinished tars of other splits (no --shard, or
	// another N) whose samples count as stored (ForeignUnfinished).
	foreign []string

	finished map[string]bool // the tar objects there are
	// sums holds the SHA-256 recorded of the samples in unfinished tars,
	// by key (under Tar.mu): their bytes cannot be read back.
	sums map[string]string

	// The unfinished tar, used by the appending goroutine alone.
	key        string       // "": none
	uploadID   string       // "": no part yet
	parts      []StoredPart // its parts stored, in order
	base       int64        // the tar offset of buf[0]
	buf        []byte       // the bytes past the last part
	bufSamples []objSample  // the samples ending in buf
	samples    []objSample  // all its samples: its index once finished
	pending    []*tarWriter // samples appended, not yet durable
	inflight   *partSent    // the part being uploaded, if any
	spare      []byte       // the buffer of the part uploaded last, for the next
	midSample  bool         // a part was sent within the sample being appended
	// pendingSince: when the oldest of pending was appended (about);
	// lastAppend: the newest.
	pendingSince, lastAppend time.Time
	tail                     bool // a tail object may be there
	records                  int  // the highest part record there may be
}

// partRecord is TarMetaDir's record of a part (or of a tail: Part is then
// the number the next part takes).
type partRecord struct {
	UploadID string      `json:"upload_id"`
	Part     int         `json:"part"`
	ETag     string      `json:"etag,omitempty"`
	Prev     string      `json:"prev"` // the ETag of the part before, "" for the first
	Start    int64       `json:"start"`
	End      int64       `json:"end"`
	Boundary bool        `json:"boundary"` // it ends where a sample does
	Samples  []objSample `json:"samples"`
}

// objSample is a sample in a record or an index.
type objSample struct {
	Key    string `json:"key"`
	Ext    string `json:"ext"`
	Off    int64  `json:"off"`
	Size   int64  `json:"size"`
	Origin string `json:"origin"`           // hex of originSum
	SHA256 string `json:"sha256,omitempty"` // of the body, where the engine computed it
}

// tarIndex is the index object of a finished tar.
type tarIndex struct {
	Tar     string      `json:"tar"`
	Size    int64       `json:"size"`
	Samples []objSample `json:"samples"`
}

// NewTarObjects opens a Tar sink that keeps its tar files as objects of
// store: PREFIX00000.tar, ... as NewTar names them. The unfinished tar is a
// multipart upload, completed when the tar is full (or the list ends); its
// parts end where a sample ends, and a small record beside each (in
// TarMetaDir) lists the samples it holds, for a later run to continue after
// the last part stored. The bytes past it, at the end of a run, are stored as
// a tail object. One process writes a prefix's tars at a time (objects
// cannot be locked). The caller must Close it.
func NewTarObjects(store ObjectStore, opts TarOptions) (*Tar, error) {
	s := newTarSink(store.Name(""), opts)
	o := &tarObj{store: store, partSize: opts.PartSize, tailEvery: opts.TailEvery, finished: map[string]bool{}, sums: map[string]string{}}
	if o.partSize <= 0 {
		o.partSize = DefaultTarPartSize
	}
	// At most 10,000 parts: a tar of its size takes about 9,000.
	o.partSize = max(o.partSize, MinTarPartSize, s.size/9000+1)
	if o.tailEvery <= 0 {
		o.tailEvery = DefaultTarTailEvery
	}
	s.obj = o
	s.noSync = true // only the staging files of big bodies are local, and not resumed
	if !opts.ReadOnly {
		d, lock, err := newSpillDir()
		if err != nil {
			return nil, err
		}
		o.spillDir, o.spillLock = d, lock
	}
	if err := s.openObjects(); err != nil {
		o.removeSpill()
		return nil, err
	}
	go s.appenderObj()
	return s, nil
}

// ForeignUnfinished names the unfinished tar objects of other splits (written
// without --shard, or under another number of shards) that hold samples: they
// count as stored, so this run fetches them no more, but only a run of that
// split completes such a tar (two splits may run at once): until then its
// samples are in no object a reader can get.
func (s *Tar) ForeignUnfinished() []string {
	if s.obj == nil {
		return nil
	}
	names := make([]string, len(s.obj.foreign))
	for i, n := range s.obj.foreign {
		names[i] = s.obj.store.Name(n)
	}
	return names
}

// removeSpill removes the spill directory, then lets its lock go.
func (o *tarObj) removeSpill() {
	if o.spillDir != "" {
		os.RemoveAll(o.spillDir)
		o.spillLock.Close()
	}
}

// openObjects reads the samples of the prefix's tars, and adopts the
// unfinished one.
func (s *Tar) openObjects() error {
	o := s.obj
	objs, err := o.store.List("")
	if err != nil {
		return err
	}
	metas, err := o.store.List(TarMetaDir)
	if err != nil {
		return err
	}
	uploads, err := o.store.Uploads("")
	if err != nil {
		return err
	}
	sizes := map[string]int64{}
	for _, ob := range objs {
		if m := anyTar.FindStringSubmatch(ob.Key); m != nil && m[4] == "" {
			o.finished[ob.Key] = true
			sizes[ob.Key] = ob.Size
		}
	}
	type meta struct {
		index   bool
		tail    bool
		records int
	}
	metaOf := map[string]*meta{}
	mt := func(name string) *meta {
		if metaOf[name] == nil {
			metaOf[name] = &meta{}
		}
		return metaOf[name]
	}
	for _, ob := range metas {
		m := tarMeta.FindStringSubmatch(ob.Key)
		if m == nil {
			continue
		}
		switch {
		case m[2] == "tail":
			mt(m[1]).tail = true
		case m[2] == "index.json":
			mt(m[1]).index = true
		default:
			n, _ := strconv.Atoi(m[3])
			mt(m[1]).records = max(mt(m[1]).records, n)
		}
	}
	uploadsOf := map[string][]string{}
	for _, u := range uploads {
		if m := anyTar.FindStringSubmatch(u.Key); m != nil && m[4] == "" {
			uploadsOf[u.Key] = append(uploadsOf[u.Key], u.ID)
		}
	}
	// The finished tars.
	var names []string
	for name := range o.finished {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		m := anyTar.FindStringSubmatch(name)
		if m[1] != s.prefix && !s.otherSplit(m[2]) {
			continue
		}
		if m[1] == s.prefix {
			no, _ := strconv.Atoi(m[3])
			s.maxNo = max(s.maxNo, no)
		}
		mm := metaOf[name]
		if err := s.readFinished(name, sizes[name], mm != nil && mm.index); err != nil {
			return err
		}
		if s.readOnly || m[1] != s.prefix {
			continue
		}
		// Completed, then a stop before its records went.
		if mm != nil {
			s.dropMeta(name, mm.records, mm.tail)
		}
		for _, id := range uploadsOf[name] {
			o.store.Abort(name, id)
		}
	}
	// The unfinished ones: records, a tail or an upload, and no object.
	unfinished := map[string]bool{}
	for name := range metaOf {
		if !o.finished[name] && (metaOf[name].records > 0 || metaOf[name].tail) {
			unfinished[name] = true
		}
	}
	for name := range uploadsOf {
		if !o.finished[name] {
			unfinished[name] = true
		}
	}
	names = names[:0]
	for name := range unfinished {
		names = append(names, name)
	}
	sort.Strings(names)
	var own []string
	for _, name := range names {
		m := anyTar.FindStringSubmatch(name)
		if m[1] == s.prefix {
			own = append(own, name)
			continue
		}
		if s.otherSplit(m[2]) {
			mm := mt(name)
			found, err := s.adoptObject(name, mm.records, mm.tail, uploadsOf[name], false)
			if err != nil {
				return err
			}
			if found {
				o.foreign = append(o.foreign, name)
			}
		}
	}
	sort.Slice(own, func(i, j int) bool { return tarNo(own[i]) < tarNo(own[j]) })
	for i, name := range own {
		mm := mt(name)
		take := !s.readOnly
		found, err := s.adoptObject(name, mm.records, mm.tail, uploadsOf[name], take)
		if err != nil {
			return err
		}
		if !found {
			continue // nothing stored: the number is free
		}
		s.maxNo = max(s.maxNo, tarNo(name))
		if !take {
			continue
		}
		if i < len(own)-1 || s.samples > 0 && s.cw.n+2*tarBlock >= s.size {
			// Only one tar is written at a time (an older one is finished
			// as it is), or it reached its size before its run stopped.
			if err := s.finishObject(); err != nil {
				return err
			}
		}
	}
	s.partNo = s.maxNo + 1
	if o.key != "" {
		s.partNo = tarNo(o.key)
	}
	return nil
}

func tarNo(name string) int {
	m := anyTar.FindStringSubmatch(name)
	n, _ := strconv.Atoi(m[3])
	return n
}

// readFinished records the samples of the finished tar object name: from
// its index object, else (a tar put there by other means) read whole.
func (s *Tar) readFinished(name string, size int64, index bool) error {
	o := s.obj
	idx := int32(len(s.tars))
	s.tars = append(s.tars, name)
	if index {
		if ix, err := s.readIndex(name); err == nil && ix.Size == size {
			return s.recordObjSamples(ix.Samples, idx)
		}
	}
	r, err := o.store.Get(name, 0, -1)
	if err != nil {
		return err
	}
	defer r.Close()
	_, err = ScanTarStream(r, size, func(st StoredSample) {
		s.record(st.Key, storedAt{origin: originSum(st.URL), off: st.Offset, size: st.Size, tar: idx}, st.Member[len(st.Key)+1:])
	})
	if err != nil {
		return fmt.Errorf("tar file %s is damaged %v (move it away to fetch its samples again)", o.store.Name(name), err)
	}
	return nil
}

func (s *Tar) readIndex(name string) (*tarIndex, error) {
	var ix tarIndex
	if err := s.getJSON(TarMetaDir+name+".index.json", &ix); err != nil {
		return nil, err
	}
	if ix.Tar != name {
		return nil, errors.New("not this tar's index")
	}
	return &ix, nil
}

func (s *Tar) getJSON(key string, v any) error {
	r, err := s.obj.store.Get(key, 0, -1)
	if err != nil {
		return err
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, 1<<30))
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func (s *Tar) recordObjSamples(samples []objSample, idx int32) error {
	for _, sm := range samples {
		var origin [16]byte
		if b, err := hex.DecodeString(sm.Origin); err != nil || len(b) != 16 || sm.Key == "" || sm.Ext == "" {
			return fmt.Errorf("tar file %s: its records name a sample %q that is not one haul writes", s.obj.store.Name(s.tars[idx]), sm.Key)
		} else {
			origin = [16]byte(b)
		}
		s.record(sm.Key, storedAt{origin: origin, off: sm.Off, size: sm.Size, tar: idx}, sm.Ext)
	}
	return nil
}

// adoptObject reads what the unfinished tar name holds: the parts stored,
// in order, each with its record, up to the last that ends where a sample
// does, or up to the tail that follows a part. With take, it becomes the tar
// appended to (uploads of its name that are not the one kept are aborted);
// found reports whether it holds anything.
func (s *Tar) adoptObject(name string, records int, tail bool, uploads []string, take bool) (found bool, err error) {
	o := s.obj
	var recs []partRecord
	var stored map[int]StoredPart
	for n := 1; n <= records; n++ {
		var r partRecord
		if err := s.getJSON(o.recordKey(name, n), &r); err != nil {
			if errors.Is(err, fs.ErrNotExist) || isJSONError(err) {
				break
			}
			return false, err
		}
		if n == 1 {
			if r.UploadID == "" {
				break
			}
			ps, err := o.store.Parts(name, r.UploadID)
			if errors.Is(err, fs.ErrNotExist) {
				break
			}
			if err != nil {
				return false, err
			}
			stored = map[int]StoredPart{}
			for _, p := range ps {
				stored[p.Number] = p
			}
		}
		p, ok := stored[n]
		prev, start := "", int64(0)
		if n > 1 {
			prev, start = recs[n-2].ETag, recs[n-2].End
		}
		if r.Part != n || r.UploadID != recs0(recs, r).UploadID || !ok || p.ETag != r.ETag || p.Size != r.End-r.Start ||
			r.Prev != prev || r.Start != start {
			break
		}
		recs = append(recs, r)
	}
	// Continued after the last part ending where a sample does, or after
	// the part a tail follows, if that one is further.
	at := 0
	for i, r := range recs {
		if r.Boundary {
			at = i + 1
		}
	}
	var tr *partRecord
	var tailBytes []byte
	if tail {
		r, b, err := s.readTail(name)
		if err != nil {
			return false, err
		}
		if r != nil && r.Part-1 >= at && r.Part-1 <= len(recs) {
			m := r.Part - 1
			prev, start := "", int64(0)
			if m > 0 {
				prev, start = recs[m-1].ETag, recs[m-1].End
			}
			if r.Prev == prev && r.Start == start && (m == 0 || r.UploadID == recs[0].UploadID) && int64(len(b)) == r.End-r.Start {
				at, tr, tailBytes = m, r, b
			}
		}
	}
	recs = recs[:at]
	idx := int32(len(s.tars))
	s.tars = append(s.tars, name+PartSuffix)
	var samples []objSample
	for _, r := range recs {
		samples = append(samples, r.Samples...)
	}
	if tr != nil {
		samples = append(samples, tr.Samples...)
	}
	if err := s.recordObjSamples(samples, idx); err != nil {
		return false, err
	}
	for _, sm := range samples {
		if sm.SHA256 != "" {
			o.sums[sm.Key] = sm.SHA256
		}
	}
	found = len(samples) > 0
	if !take {
		return found, nil
	}
	keep := ""
	if len(recs) > 0 {
		keep = recs[0].UploadID
	}
	for _, id := range uploads {
		if id != keep {
			o.store.Abort(name, id)
		}
	}
	if !found {
		s.dropMeta(name, records, tail)
		s.tars = s.tars[:len(s.tars)-1]
		return false, nil
	}
	o.key, o.uploadID, o.records, o.tail = name, keep, records, tail
	o.parts = o.parts[:0]
	for _, r := range recs {
		o.parts = append(o.parts, StoredPart{Number: r.Part, ETag: r.ETag, Size: r.End - r.Start})
		o.base = r.End
	}
	o.buf = append(o.newBuf(), tailBytes...)
	o.bufSamples = nil
	if tr != nil {
		o.bufSamples = append(o.bufSamples, tr.Samples...)
	}
	o.samples = samples
	s.partIdx = idx
	s.samples = len(samples)
	s.setObjectPart(o.base + int64(len(o.buf)))
	return true, nil
}

func recs0(recs []partRecord, r partRecord) partRecord {
	if len(recs) == 0 {
		return r
	}
	return recs[0]
}

func isJSONError(err error) bool {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	return errors.As(err, &se) || errors.As(err, &te) || errors.Is(err, io.ErrUnexpectedEOF)
}

// readTail reads the tail object of name: its record, then its bytes.
func (s *Tar) readTail(name string) (*partRecord, []byte, error) {
	r, err := s.obj.store.Get(TarMetaDir+name+".tail", 0, -1)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, 4*s.obj.partSize+(64<<20)))
	if err != nil {
		return nil, nil, err
	}
	head, body, ok := bytes.Cut(b, []byte("\n"))
	var rec partRecord
	if !ok || json.Unmarshal(head, &rec) != nil || rec.Part < 1 {
		return nil, nil, nil
	}
	return &rec, body, nil
}

func (o *tarObj) recordKey(name string, n int) string {
	return fmt.Sprintf("%s%s.part%05d.json", TarMetaDir, name, n)
}

// dropMeta removes the records and tail of name.
func (s *Tar) dropMeta(name string, records int, tail bool) {
	for n := 1; n <= records; n++ {
		s.obj.store.Delete(s.obj.recordKey(name, n))
	}
	if tail {
		s.obj.store.Delete(TarMetaDir + name + ".tail")
	}
}

// partSent is a part being uploaded, by a goroutine of its own, while the
// next is filled.
type partSent struct {
	boundary bool
	pending  []*tarWriter // durable once it is stored, if boundary
	buf      []byte
	etag     string
	done     chan error
}

// midLimit is where the bytes past the last part are sent as a part
// within a sample: past a part and the biggest body held in memory (so
// that only a body in a staging file spans parts).
func (o *tarObj) midLimit() int { return int(o.partSize) + 4<<20 + 64<<10 }

// newBuf is an empty buffer for the bytes past the last part (two of them:
// one filled while the other uploads).
func (o *tarObj) newBuf() []byte {
	if cap(o.buf) > 0 {
		return o.buf[:0]
	}
	return make([]byte, 0, o.midLimit())
}

// setObjectPart makes the tar writer append at off.
func (s *Tar) setObjectPart(off int64) {
	s.cw = countWriter{w: s.obj, n: off}
	s.tw = tar.NewWriter(&s.cw)
}

// Write takes the tar's bytes (see midPartWriter for a sample's).
func (o *tarObj) Write(p []byte) (int, error) {
	o.buf = append(o.buf, p...)
	return len(p), nil
}

// newObject starts the next tar, numbered past every tar of the prefix.
func (s *Tar) newObject() {
	o := s.obj
	for o.finished[fmt.Sprintf("%s%05d.tar", s.prefix, s.partNo)] {
		s.partNo++
	}
	name := fmt.Sprintf("%s%05d.tar", s.prefix, s.partNo)
	s.mu.Lock()
	s.tars = append(s.tars, name+PartSuffix)
	s.partIdx = int32(len(s.tars) - 1)
	s.mu.Unlock()
	o.key, o.uploadID, o.parts, o.base, o.buf = name, "", o.parts[:0], 0, o.newBuf()
	o.bufSamples, o.samples, o.midSample, o.tail, o.records = nil, nil, false, false, 0
	s.samples = 0
	s.setObjectPart(0)
}

// appenderObj appends the samples committed, a batch at a time; samples
// wait in the tar's last bytes until a part or a tail stores them.
func (s *Tar) appenderObj() {
	defer close(s.done)
	o := s.obj
	tick := time.NewTicker(o.tailEvery)
	defer tick.Stop()
	var batch []*tarWriter
	for {
		var uploaded chan error // the part uploading, settled as soon as it is stored
		if o.inflight != nil {
			uploaded = o.inflight.done
		}
		select {
		case err := <-uploaded:
			s.partDone(err)
		case w, ok := <-s.queue:
			if !ok {
				return
			}
			batch = append(batch[:0], w)
		drain:
			for len(batch) < 512 {
				select {
				case w, ok := <-s.queue:
					if !ok {
						break drain
					}
					batch = append(batch, w)
				default:
					break drain
				}
			}
			s.appendObjects(batch)
		case <-tick.C:
			// A tail rewrites the bytes past the last part: stored once
			// the samples stop coming, or at most every 6 TailEvery while
			// they come too slowly to fill parts.
			if len(o.pending) > 0 && (time.Since(o.lastAppend) >= o.tailEvery || time.Since(o.pendingSince) >= 6*o.tailEvery) {
				s.storeTail()
			}
		}
	}
}

// appendObjects appends the samples of batch: a part is sent whenever the
// bytes past the last one reach the part size, and a tar finished whenever
// it reaches its size.
func (s *Tar) appendObjects(batch []*tarWriter) {
	o := s.obj
	for _, w := range batch {
		if w.flushed != nil {
			s.storeTail()
			close(w.flushed)
			continue
		}
		err := s.failed
		if err == nil {
			err = s.appendObject(w)
		}
		w.release() // its bytes are in buf, or failed
		if err != nil {
			w.done(err)
			continue
		}
		if len(o.pending) == 0 {
			o.pendingSince = time.Now()
		}
		o.pending = append(o.pending, w)
		o.lastAppend = time.Now()
		switch {
		case s.cw.n+2*tarBlock >= s.size:
			if err := s.finishObject(); err != nil {
				s.fail(err)
			}
		case int64(len(o.buf)) >= o.partSize:
			s.sendPart(true)
		}
	}
}

// fail stops the appends: the samples not yet durable fail with err.
func (s *Tar) fail(err error) {
	o := s.obj
	if s.failed == nil {
		s.failed = err
	}
	if ps := o.inflight; ps != nil {
		o.inflight = nil
		if e := <-ps.done; e == nil && ps.boundary {
			s.settleObjects(ps.pending, nil)
		} else {
			o.pending = append(ps.pending, o.pending...)
		}
	}
	s.settleObjects(o.pending, s.failed)
	o.pending = o.pending[:0]
}

// appendObject writes the two members of w's sample into the tar's bytes.
// On an error, they are cut back to before them (or, where a part was sent
// meanwhile, nothing more is appended).
func (s *Tar) appendObject(w *tarWriter) error {
	o := s.obj
	if o.key == "" {
		s.newObject()
	}
	start := s.cw.n
	o.midSample = false
	err := s.writeMembersObj(w)
	if err != nil {
		if o.midSample {
			s.fail(fmt.Errorf("tar file %s: %w", o.store.Name(o.key), err))
			return err
		}
		o.buf = o.buf[:start-o.base]
		s.setObjectPart(start)
		return err
	}
	s.samples++
	sm := objSample{Key: w.key, Ext: w.ext, Off: w.stored.off, Size: w.stored.size, Origin: hex.EncodeToString(w.stored.origin[:]),
		SHA256: w.sample.SHA256}
	o.bufSamples = append(o.bufSamples, sm)
	o.samples = append(o.samples, sm)
	return nil
}

// writeMembersObj is writeMembers, a part sent whenever a big body brings
// the bytes past the last part to midLimit.
func (s *Tar) writeMembersObj(w *tarWriter) error {
	o := s.obj
	s.cw.w = midPartWriter{s}
	defer func() { s.cw.w = o }()
	return s.writeMembers(w)
}

type midPartWriter struct{ s *Tar }

func (m midPartWriter) Write(p []byte) (int, error) {
	o := m.s.obj
	n := len(p)
	for len(p) > 0 {
		if len(o.buf) >= o.midLimit() {
			o.midSample = true
			if err := m.s.sendPart(false); err != nil {
				return 0, err
			}
		}
		k := min(len(p), o.midLimit()-len(o.buf))
		o.buf = append(o.buf, p[:k]...)
		p = p[k:]
	}
	return n, nil
}

// sendPart starts the upload of the tar's bytes past its last part as the
// next part, then its record, once the part before it is stored. A part
// that ends where a sample does makes the samples appended durable once it
// is stored.
func (s *Tar) sendPart(boundary bool) error {
	o := s.obj
	if err := s.waitPart(); err != nil {
		return err
	}
	if o.uploadID == "" {
		id, err := o.store.NewUpload(o.key)
		if err != nil {
			err = fmt.Errorf("tar file %s: %w", o.store.Name(o.key), err)
			s.fail(err)
			return err
		}
		o.uploadID = id
	}
	n := len(o.parts) + 1
	key, id := o.key, o.uploadID
	r := partRecord{UploadID: id, Part: n, Prev: o.lastETag(), Start: o.base,
		End: o.base + int64(len(o.buf)), Boundary: boundary, Samples: o.bufSamples}
	ps := &partSent{boundary: boundary, buf: o.buf, done: make(chan error, 1)}
	if boundary {
		ps.pending, o.pending = o.pending, nil
	}
	o.parts = append(o.parts, StoredPart{Number: n, Size: int64(len(o.buf))})
	o.records = max(o.records, n)
	o.base += int64(len(o.buf))
	o.buf, o.spare, o.bufSamples = o.spare, nil, nil
	if o.buf == nil {
		o.buf = make([]byte, 0, o.midLimit())
	}
	o.inflight = ps
	go func() {
		etag, err := o.store.PutPart(key, id, n, ps.buf)
		if err == nil {
			r.ETag = etag
			var b []byte
			if b, err = json.Marshal(r); err == nil {
				err = o.store.Put(o.recordKey(key, n), b)
			}
		}
		if err != nil {
			err = fmt.Errorf("tar file %s: part %d: %w", o.store.Name(key), n, err)
		}
		ps.etag = etag
		ps.done <- err
	}()
	return nil
}

// waitPart waits for the part being uploaded, if any, and settles the
// samples it made durable.
func (s *Tar) waitPart() error {
	o := s.obj
	ps := o.inflight
	if ps == nil {
		return s.failed
	}
	return s.partDone(<-ps.done)
}

// partDone settles the part uploaded, which ended with err.
func (s *Tar) partDone(err error) error {
	o := s.obj
	ps := o.inflight
	o.inflight = nil
	o.spare = ps.buf[:0]
	if err != nil {
		o.pending = append(ps.pending, o.pending...)
		s.fail(err)
		return err
	}
	o.parts[len(o.parts)-1].ETag = ps.etag
	if ps.boundary {
		if o.tail {
			// Behind the part: a later run continues after the part.
			o.store.Delete(TarMetaDir + o.key + ".tail")
			o.tail = false
		}
		s.settleObjects(ps.pending, nil)
	}
	return nil
}

func (o *tarObj) lastETag() string {
	if len(o.parts) == 0 {
		return ""
	}
	return o.parts[len(o.parts)-1].ETag
}

// storeTail stores the bytes past the last part, with their record, as the
// tail object, if samples wait there: they are durable then.
func (s *Tar) storeTail() {
	o := s.obj
	if o.key == "" || s.waitPart() != nil || len(o.pending) == 0 {
		return
	}
	r := partRecord{UploadID: o.uploadID, Part: len(o.parts) + 1, Prev: o.lastETag(), Start: o.base,
		End: o.base + int64(len(o.buf)), Samples: o.bufSamples}
	head, err := json.Marshal(r)
	if err == nil {
		body := make([]byte, 0, len(head)+1+len(o.buf))
		body = append(append(append(body, head...), '\n'), o.buf...)
		err = o.store.Put(TarMetaDir+o.key+".tail", body)
	}
	if err != nil {
		s.fail(fmt.Errorf("tar file %s: %w", o.store.Name(o.key), err))
		return
	}
	o.tail = true
	s.settleObjects(o.pending, nil)
	o.pending = o.pending[:0]
}

// settleObjects records the samples of ws (err nil: they are durable) and calls
// their done.
func (s *Tar) settleObjects(ws []*tarWriter, err error) {
	o := s.obj
	if err == nil {
		s.mu.Lock()
		for _, w := range ws {
			s.record(w.key, w.stored, w.ext)
			delete(s.spilled, w.key)
			if w.sample.SHA256 != "" {
				o.sums[w.key] = w.sample.SHA256
			}
		}
		s.mu.Unlock()
	}
	for _, w := range ws {
		w.done(err)
	}
}

// finishObject writes the end-of-archive blocks of the unfinished tar, its
// last part and its index, and completes its upload: the object appears,
// whole, and its records go.
func (s *Tar) finishObject() error {
	o := s.obj
	name := o.key
	err := s.tw.Close()
	if err == nil {
		err = s.waitPart()
	}
	size := o.base + int64(len(o.buf))
	if err == nil {
		var b []byte
		b, err = json.Marshal(tarIndex{Tar: name, Size: size, Samples: o.samples})
		if err == nil {
			err = o.store.Put(TarMetaDir+name+".index.json", b)
		}
	}
	if err == nil {
		if o.uploadID == "" {
			// Smaller than a part: one PUT.
			err = o.store.Put(name, o.buf)
		} else {
			// The last part has no record: a run stopped before the
			// completion continues after the part before it.
			n := len(o.parts) + 1
			var etag string
			if etag, err = o.store.PutPart(name, o.uploadID, n, o.buf); err == nil {
				o.parts = append(o.parts, StoredPart{Number: n, ETag: etag, Size: int64(len(o.buf))})
				err = o.store.Complete(name, o.uploadID, o.parts)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("tar file %s: %w", o.store.Name(name), err)
	}
	s.dropMeta(name, o.records, o.tail)
	s.settleObjects(o.pending, nil)
	o.pending = o.pending[:0]
	s.mu.Lock()
	s.tars[s.partIdx] = name
	for _, sm := range o.samples {
		delete(o.sums, sm.Key) // read back from the object now
	}
	s.mu.Unlock()
	o.finished[name] = true
	o.key, o.buf = "", o.buf[:0]
	s.partNo = max(s.partNo, s.maxNo) + 1
	return nil
}

// closeObjects ends the appends: with finish, the unfinished tar is
// completed; else its last bytes are stored as its tail.
func (s *Tar) closeObjects(finish bool) error {
	o := s.obj
	var err error
	if o.key != "" && !s.readOnly {
		if finish && s.samples > 0 && s.failed == nil {
			err = s.finishObject()
			if err != nil {
				s.fail(err)
			}
		} else {
			s.storeTail()
		}
	}
	if s.failed != nil {
		s.fail(s.failed)
	} else {
		s.waitPart()
	}
	if s.spill != nil {
		s.spill.Close()
	}
	o.removeSpill()
	if err == nil {
		err = s.failed
	}
	return err
}

// UnreadableSHA256 reports the SHA-256 recorded of the sample name when
// its bytes cannot be read back (Open): it is in a tar object not complete
// yet, whose parts S3 does not give back. ok is false for a sample Open
// reads, or one stored with no SHA-256 known (its check then fails).
func (s *Tar) UnreadableSHA256(name string) (sum string, ok bool) {
	if s.obj == nil {
		return "", false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sum, ok = s.obj.sums[name]
	return sum, ok
}

// openObject reads the body of a sample of a finished tar object.
func (s *Tar) openObject(name string) (io.ReadCloser, error) {
	st, tarName, _, ok := s.lookup(name)
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	if strings.HasSuffix(tarName, PartSuffix) {
		return nil, fmt.Errorf("%s: sample %s: its tar is not complete yet, its bytes cannot be read back from the store until it is",
			s.obj.store.Name(strings.TrimSuffix(tarName, PartSuffix)), name)
	}
	return s.obj.store.Get(tarName, st.off, st.size)
}
