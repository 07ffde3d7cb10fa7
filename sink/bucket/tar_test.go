package bucket

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os/exec"
	"path"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/haul/haul/internal/s3test"
	"github.com/haul/haul/sink"
)

// Sizes that make parts and rotation both happen with few samples: parts
// of 5 MiB (S3's smallest), tars of 12 MiB, bodies of 1 MiB.
const (
	tarPart   = sink.MinTarPartSize
	tarSize   = 12 << 20
	tarSample = 1 << 20
)

func tarBody(i int) []byte {
	n := tarSample + i // not all of one length
	if i%100 == 99 {
		n = 2*tarPart + 2<<20 + i // spans parts: held in a local staging file
	}
	b := make([]byte, n)
	for j := range b {
		b[j] = byte(i*31 + j*7 + j/251)
	}
	return b
}

func tarKey(i int) string { return fmt.Sprintf("%06d", i) }
func tarURL(i int) string { return fmt.Sprintf("http://example.com/img/%d.png", i) }

func openTar(t *testing.T, srv *s3test.Server, prefix string, tailEvery time.Duration) *sink.Tar {
	t.Helper()
	return openTarSize(t, srv, prefix, tailEvery, tarSize)
}

func openTarSize(t *testing.T, srv *s3test.Server, prefix string, tailEvery time.Duration, size int64) *sink.Tar {
	t.Helper()
	b := reopen(t, srv, prefix)
	s, err := sink.NewTarObjects(b.TarStore(), sink.TarOptions{Size: size, PartSize: tarPart, TailEvery: tailEvery})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// commitSample writes sample i and commits it; done gets the outcome.
func commitSample(t *testing.T, s *sink.Tar, i int, done func(error)) {
	t.Helper()
	w, err := s.Create(tarKey(i), tarURL(i))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(tarBody(i)); err != nil {
		t.Fatal(err)
	}
	w.(sink.SampleWriter).SetSample(sink.Sample{Key: tarKey(i), HTTPStatus: 200, ContentType: "image/png"})
	w.Commit(done)
}

// putSamples stores samples from..to-1 and waits for each to be durable.
func putSamples(t *testing.T, s *sink.Tar, from, to int) {
	t.Helper()
	errs := make(chan error, to-from)
	for i := from; i < to; i++ {
		commitSample(t, s, i, func(err error) { errs <- err })
	}
	s.Flush()
	for i := from; i < to; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// tarObjects reads every tar object of the bucket whole: the samples each
// holds, by key, checked against their bodies.
func tarObjects(t *testing.T, srv *s3test.Server, prefix string) (byTar map[string][]int, etags map[string]string) {
	t.Helper()
	byTar, etags = map[string][]int{}, map[string]string{}
	for _, key := range srv.Keys(t, "data", prefix) {
		if !strings.HasSuffix(key, ".tar") || strings.Contains(key, sink.TarMetaDir) {
			continue
		}
		data := srv.Get(t, "data", key)
		if len(data)%512 != 0 || !bytes.Equal(data[len(data)-1024:], make([]byte, 1024)) {
			t.Fatalf("%s: %d bytes, not ending with two zero blocks", key, len(data))
		}
		tr := tar.NewReader(bytes.NewReader(data))
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", key, err)
			}
			b, _ := io.ReadAll(tr)
			if strings.HasSuffix(h.Name, ".json") {
				continue
			}
			var i int
			fmt.Sscanf(h.Name, "%06d.png", &i)
			if h.Name != tarKey(i)+".png" || !bytes.Equal(b, tarBody(i)) {
				t.Errorf("%s: member %s (%d bytes) is not sample %d", key, h.Name, len(b), i)
			}
			byTar[path.Base(key)] = append(byTar[path.Base(key)], i)
		}
		oi, err := srv.Client.StatObject(context.Background(), "data", key, minio.StatObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		etags[path.Base(key)] = oi.ETag
		if py, err := exec.LookPath("python3"); err == nil {
			// What WebDataset reads them with.
			cmd := exec.Command(py, "-c", "import sys,tarfile; t=tarfile.open(fileobj=sys.stdin.buffer, mode='r|'); print(sum(1 for m in t))")
			cmd.Stdin = bytes.NewReader(data)
			out, err := cmd.Output()
			if err != nil || strings.TrimSpace(string(out)) != fmt.Sprint(2*len(byTar[path.Base(key)])) {
				t.Errorf("%s: python tarfile: %s %v", key, out, err)
			}
		}
	}
	return byTar, etags
}

// everyOnce fails unless the tars hold samples 0..n-1, each once.
func everyOnce(t *testing.T, byTar map[string][]int, n int) {
	t.Helper()
	var all []int
	for _, s := range byTar {
		all = append(all, s...)
	}
	slices.Sort(all)
	want := make([]int, n)
	for i := range want {
		want[i] = i
	}
	if !slices.Equal(all, want) {
		t.Errorf("the tars hold samples %v, want 0..%d once each", all, n-1)
	}
}

// Samples land in tar objects of about the tar size, each object made of
// parts; a re-run finds them all, continues the unfinished tar from what
// its last run stored, completes it when full, and never rewrites a
// finished tar.
func TestTarObjectsRotateAndContinueAcrossRuns(t *testing.T) {
	srv, _ := open(t, "ds")
	s := openTar(t, srv, "ds", time.Hour)
	putSamples(t, s, 0, 30)
	if err := s.Close(false); err != nil {
		t.Fatal(err)
	}
	byTar, etags := tarObjects(t, srv, "ds/")
	if len(byTar) != 2 || len(byTar["00000.tar"]) == 0 || len(byTar["00001.tar"]) == 0 {
		t.Fatalf("tars %v, want 00000.tar and 00001.tar finished", byTar)
	}
	if up := srv.Uploads(t, "data"); !slices.Equal(up, []string{"ds/00002.tar"}) {
		t.Errorf("uploads in progress %q, want the unfinished ds/00002.tar", up)
	}
	for name := range byTar {
		if n := len(srv.Keys(t, "data", "ds/"+sink.TarMetaDir+name+".index.json")); n != 1 {
			t.Errorf("%s: no index object", name)
		}
	}

	// A re-run: every sample found, none stored twice.
	s = openTar(t, srv, "ds", time.Hour)
	for i := 0; i < 30; i++ {
		info, err := s.Stat(tarKey(i))
		if err != nil || info.Size != int64(len(tarBody(i))) || info.Origin != sink.TarOrigin(tarURL(i)) {
			t.Fatalf("sample %d: %+v %v", i, info, err)
		}
	}
	// A finished tar's samples read back from the object.
	r, err := s.Open(tarKey(3))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(r)
	r.Close()
	if !bytes.Equal(got, tarBody(3)) {
		t.Errorf("sample 3 read back: %d bytes, want its body", len(got))
	}
	putSamples(t, s, 30, 45)
	if err := s.Close(true); err != nil {
		t.Fatal(err)
	}
	byTar2, etags2 := tarObjects(t, srv, "ds/")
	everyOnce(t, byTar2, 45)
	for name, etag := range etags {
		if etags2[name] != etag {
			t.Errorf("%s rewritten: ETag %s, then %s", name, etag, etags2[name])
		}
	}
	if !slices.Contains(byTar2["00002.tar"], 29) || !slices.Contains(byTar2["00002.tar"], 30) {
		t.Errorf("00002.tar holds %v: want the first run's last samples and the second's first", byTar2["00002.tar"])
	}
	srv.CheckDone(t, "data", "")
	for _, k := range srv.Keys(t, "data", "ds/"+sink.TarMetaDir) {
		if !strings.HasSuffix(k, ".index.json") {
			t.Errorf("%s left behind", k)
		}
	}
}

// A run stopped before the samples it appended reached a part or a tail
// (kill -9) leaves them out: the next run stores them, once, after what the
// store holds, and the tar's parts stored are kept.
func TestTarObjectsSampleNotStoredIsWrittenAgain(t *testing.T) {
	srv, _ := open(t, "")
	s := openTar(t, srv, "", time.Hour)
	putSamples(t, s, 0, 4)
	if err := s.Close(false); err != nil { // 0-3 in a tail
		t.Fatal(err)
	}
	s = openTar(t, srv, "", time.Hour)
	// With 4, the tar's first part is full (samples 0-4); 5-8 wait in
	// memory for the next, and the run is abandoned there.
	stored := make(chan int, 10)
	for i := 4; i < 9; i++ {
		commitSample(t, s, i, func(err error) {
			if err == nil {
				stored <- i
			}
		})
	}
	if i := <-stored; i != 4 {
		t.Fatalf("sample %d stored first, want 4", i)
	}
	// No Close: what a killed run leaves.
	s2 := openTar(t, srv, "", time.Hour)
	var again []int
	for i := 0; i < 9; i++ {
		if _, err := s2.Stat(tarKey(i)); errors.Is(err, fs.ErrNotExist) {
			again = append(again, i)
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(again, []int{5, 6, 7, 8}) {
		t.Fatalf("missing after the stop: %v, want 5-8", again)
	}
	for _, i := range again {
		putSamples(t, s2, i, i+1)
	}
	putSamples(t, s2, 9, 14)
	if err := s2.Close(true); err != nil {
		t.Fatal(err)
	}
	byTar, _ := tarObjects(t, srv, "")
	everyOnce(t, byTar, 14)
	if len(byTar["00000.tar"]) < 11 {
		t.Errorf("00000.tar holds %v: want it continued, not a new tar", byTar)
	}
	// The abandoned sink's upload was the one continued: none left.
	srv.CheckDone(t, "data", "")
}

// A body bigger than two parts is stored across parts that end within it;
// a run that ends after it stores the bytes past the last part (the rest of
// that body and the sample after it) as a tail, which the next run
// continues from.
func TestTarObjectsBodySpanningPartsThenTail(t *testing.T) {
	srv, _ := open(t, "")
	s := openTarSize(t, srv, "", time.Hour, 64<<20)
	putSamples(t, s, 98, 101) // 99 holds 12 MiB: a part of 10 ends within it
	if err := s.Close(false); err != nil {
		t.Fatal(err)
	}
	if n := len(srv.Keys(t, "data", sink.TarMetaDir+"00000.tar.tail")); n != 1 {
		t.Fatalf("%d tail objects, want 1", n)
	}
	if n := len(srv.Keys(t, "data", sink.TarMetaDir+"00000.tar.part")); n != 1 {
		t.Fatalf("%d part records, want 1", n)
	}
	s = openTarSize(t, srv, "", time.Hour, 64<<20)
	for i := 98; i < 101; i++ {
		if info, err := s.Stat(tarKey(i)); err != nil || info.Size != int64(len(tarBody(i))) {
			t.Fatalf("sample %d: %+v %v", i, info, err)
		}
	}
	putSamples(t, s, 101, 103)
	if err := s.Close(true); err != nil {
		t.Fatal(err)
	}
	byTar, _ := tarObjects(t, srv, "")
	if !slices.Equal(byTar["00000.tar"], []int{98, 99, 100, 101, 102}) {
		t.Errorf("tars %v, want 98-102 in 00000.tar", byTar)
	}
	srv.CheckDone(t, "data", "")
}

// failRecord is a store whose PUT of the record of part n fails: a run
// stopped between a part and its record.
type failRecord struct {
	sink.ObjectStore
	n int
}

func (f failRecord) Put(key string, body []byte) error {
	if strings.HasSuffix(key, fmt.Sprintf(".part%05d.json", f.n)) {
		return errors.New("stopped before the record")
	}
	return f.ObjectStore.Put(key, body)
}

// A part stored without its record is not counted: its samples are
// written again by the next run, into a part of the same number, once.
func TestTarObjectsPartWithoutRecordIsWrittenAgain(t *testing.T) {
	srv, _ := open(t, "")
	b := reopen(t, srv, "")
	s, err := sink.NewTarObjects(failRecord{b.TarStore(), 2}, sink.TarOptions{Size: 64 << 20, PartSize: tarPart, TailEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 12)
	for i := 0; i < 12; i++ {
		commitSample(t, s, i, func(err error) { errs <- err })
	}
	failed := 0
	for i := 0; i < 12; i++ {
		if err := <-errs; err != nil {
			failed++
		}
	}
	s.Close(false)
	if failed == 0 || failed == 12 {
		t.Fatalf("%d of 12 samples failed, want those of part 2 on", failed)
	}
	s = openTarSize(t, srv, "", time.Hour, 64<<20)
	var again []int
	for i := 0; i < 12; i++ {
		if _, err := s.Stat(tarKey(i)); err != nil {
			again = append(again, i)
		}
	}
	if len(again) != failed {
		t.Errorf("missing after the stop: %v, want the %d that failed", again, failed)
	}
	for _, i := range again {
		putSamples(t, s, i, i+1)
	}
	if err := s.Close(true); err != nil {
		t.Fatal(err)
	}
	byTar, _ := tarObjects(t, srv, "")
	everyOnce(t, byTar, 12)
	srv.CheckDone(t, "data", "")
}

// Two shards write their tars side by side under one prefix, at once, with
// names of their own; a run without --shard finds the samples of both,
// those in their unfinished tars too.
func TestTarObjectsShardsShareAPrefix(t *testing.T) {
	srv, _ := open(t, "ds")
	b := reopen(t, srv, "ds")
	var shards [2]*sink.Tar
	for k := range shards {
		s, err := sink.NewTarObjects(b.TarStore(), sink.TarOptions{Prefix: fmt.Sprintf("%d-of-2-", k), Size: tarSize, PartSize: tarPart, TailEvery: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		shards[k] = s
	}
	done := make(chan struct{})
	for k, s := range shards {
		go func() {
			defer func() { done <- struct{}{} }()
			errs := make(chan error, 20)
			for i := k; i < 30; i += 2 {
				commitSample(t, s, i, func(err error) { errs <- err })
			}
			s.Flush()
			for i := k; i < 30; i += 2 {
				if err := <-errs; err != nil {
					t.Error(err)
				}
			}
			if err := s.Close(false); err != nil {
				t.Error(err)
			}
		}()
	}
	<-done
	<-done
	byTar, _ := tarObjects(t, srv, "ds/")
	if len(byTar["0-of-2-00000.tar"]) == 0 || len(byTar["1-of-2-00000.tar"]) == 0 {
		t.Errorf("tars %v, want 0-of-2-00000.tar and 1-of-2-00000.tar", byTar)
	}
	all := openTar(t, srv, "ds", time.Hour)
	defer all.Close(false)
	for i := 0; i < 30; i++ {
		info, err := all.Stat(tarKey(i))
		if err != nil {
			t.Fatalf("sample %d: %v", i, err)
		}
		if want := fmt.Sprintf("%d-of-2-", i%2); !strings.HasPrefix(info.Tar, want) {
			t.Errorf("sample %d in %s, want a tar of %s", i, info.Tar, want)
		}
	}
}

// Samples that wait for a part with no more coming are stored in a tail
// object without a Flush: a run killed afterwards keeps them.
func TestTarObjectsWaitingSamplesGoToATail(t *testing.T) {
	srv, _ := open(t, "")
	s := openTar(t, srv, "", 50*time.Millisecond)
	errs := make(chan error, 2)
	for i := 0; i < 2; i++ {
		commitSample(t, s, i, func(err error) { errs <- err })
	}
	for i := 0; i < 2; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// No Close: what a killed run leaves.
	s2 := openTar(t, srv, "", time.Hour)
	for i := 0; i < 2; i++ {
		if _, err := s2.Stat(tarKey(i)); err != nil {
			t.Errorf("sample %d: %v", i, err)
		}
	}
	if err := s2.Close(true); err != nil {
		t.Fatal(err)
	}
	byTar, _ := tarObjects(t, srv, "")
	everyOnce(t, byTar, 2)
}

// A tar object without its index (put there by other means) is read whole,
// once, to find its samples.
func TestTarObjectsFinishedTarWithoutIndexIsReadWhole(t *testing.T) {
	srv, _ := open(t, "")
	s := openTar(t, srv, "", time.Hour)
	putSamples(t, s, 0, 3)
	if err := s.Close(true); err != nil {
		t.Fatal(err)
	}
	if err := srv.Client.RemoveObject(context.Background(), "data", sink.TarMetaDir+"00000.tar.index.json", minio.RemoveObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	s = openTar(t, srv, "", time.Hour)
	defer s.Close(false)
	for i := 0; i < 3; i++ {
		info, err := s.Stat(tarKey(i))
		if err != nil || info.Tar != "00000.tar" || info.Size != int64(len(tarBody(i))) {
			t.Fatalf("sample %d: %+v %v", i, info, err)
		}
		r, err := s.Open(tarKey(i))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(r)
		r.Close()
		if !bytes.Equal(b, tarBody(i)) {
			t.Errorf("sample %d read back: %d bytes, want its body", i, len(b))
		}
	}
}

// A run under --shard counts the samples of an unfinished tar written
// without it as stored, and names that tar (only a run without --shard
// completes it).
func TestTarObjectsOtherSplitsUnfinishedTarNamed(t *testing.T) {
	srv, _ := open(t, "fu")
	whole := openTar(t, srv, "fu", time.Hour)
	putSamples(t, whole, 0, 5)
	if err := whole.Close(false); err != nil {
		t.Fatal(err)
	}
	b := reopen(t, srv, "fu")
	shard, err := sink.NewTarObjects(b.TarStore(), sink.TarOptions{Prefix: "0-of-2-", Size: tarSize, PartSize: tarPart, TailEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer shard.Close(false)
	if _, err := shard.Stat(tarKey(3)); err != nil {
		t.Errorf("sample 3 of the unfinished tar: %v", err)
	}
	got := shard.ForeignUnfinished()
	if len(got) != 1 || !strings.HasSuffix(got[0], "fu/00000.tar") {
		t.Errorf("ForeignUnfinished() = %q, want the unfinished fu/00000.tar", got)
	}
	mine := openTar(t, srv, "fu", time.Hour)
	defer mine.Close(false)
	if got := mine.ForeignUnfinished(); len(got) != 0 {
		t.Errorf("the run that wrote it: ForeignUnfinished() = %q, want none", got)
	}
}
