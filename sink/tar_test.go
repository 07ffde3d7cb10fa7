package sink

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// body is the deterministic body of sample i, n bytes.
func body(i, n int) []byte {
	b := make([]byte, n)
	for j := range b {
		b[j] = byte(i*31 + j*7 + j/251)
	}
	return b
}

func sampleURL(i int) string { return fmt.Sprintf("http://example.com/img/%d.JPG", i) }

func sampleKey(i int) string { return fmt.Sprintf("%09d", i) }

// putSample stores sample i (n bytes) through the sink and waits for it.
func putSample(t *testing.T, s *Tar, i, n int) (tarName, member string) {
	t.Helper()
	w, err := s.Create(sampleKey(i), sampleURL(i))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(body(i, n)); err != nil {
		t.Fatal(err)
	}
	sw := w.(SampleWriter)
	sw.SetSample(Sample{Key: sampleKey(i), HTTPStatus: 200, ContentType: "image/jpeg", Meta: fmt.Sprintf(`{"i":"%d"}`, i)})
	errc := make(chan error, 1)
	w.Commit(func(err error) { errc <- err })
	if err := <-errc; err != nil {
		t.Fatalf("sample %d: %v", i, err)
	}
	return sw.Stored()
}

type member struct {
	name string
	data []byte
}

// readTar reads a finished tar whole, failing unless it is valid and ends
// with its end-of-archive blocks.
func readTar(t *testing.T, path string) []member {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data)%tarBlock != 0 || len(data) < 2*tarBlock || !bytes.Equal(data[len(data)-2*tarBlock:], make([]byte, 2*tarBlock)) {
		t.Fatalf("%s: %d bytes, not ending with two zero blocks", path, len(data))
	}
	var ms []member
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return ms
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("%s: %s: %v", path, h.Name, err)
		}
		ms = append(ms, member{h.Name, b})
	}
}

// checkSamples fails unless ms are the samples of indexes want, in pairs,
// with their bodies and descriptions.
func checkSamples(t *testing.T, ms []member, want []int, size func(int) int) {
	t.Helper()
	if len(ms) != 2*len(want) {
		t.Fatalf("%d members, want %d samples", len(ms), len(want))
	}
	for j, i := range want {
		b, js := ms[2*j], ms[2*j+1]
		if b.name != sampleKey(i)+".jpg" || !bytes.Equal(b.data, body(i, size(i))) {
			t.Errorf("member %d: %s, %d bytes; want %s.jpg with sample %d's %d bytes", 2*j, b.name, len(b.data), sampleKey(i), i, size(i))
		}
		var m map[string]any
		if err := json.Unmarshal(js.data, &m); js.name != sampleKey(i)+".json" || err != nil {
			t.Fatalf("member %d: %s: %v", 2*j+1, js.name, err)
		}
		want := map[string]any{"url": sampleURL(i), "key": sampleKey(i), "size": float64(size(i)), "sha256": nil,
			"http_status": float64(200), "content_type": "image/jpeg", "meta": map[string]any{"i": fmt.Sprint(i)}}
		if fmt.Sprint(m) != fmt.Sprint(want) {
			t.Errorf("%s: %v, want %v", js.name, m, want)
		}
	}
}

func seq(from, to int) []int {
	var s []int
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

// Samples land in order, in one tar that is finished when the list ends,
// and a sink opened on the directory again finds each of them.
func TestTarStoresSamplesAndFindsThemAgain(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := mustOpenTar(t, dir, TarOptions{})
	size := func(i int) int { return 100 + 1000*i }
	for i := range 10 {
		if tn, m := putSample(t, s, i, size(i)); tn != "00000.tar" || m != sampleKey(i)+".jpg" {
			t.Errorf("sample %d stored as %s in %s", i, m, tn)
		}
	}
	mustCloseTar(t, s, true)
	checkSamples(t, readTar(t, filepath.Join(dir, "00000.tar")), seq(0, 10), size)

	s = mustOpenTar(t, dir, TarOptions{})
	defer s.Close(true)
	for i := range 10 {
		info, err := s.Stat(sampleKey(i))
		if err != nil {
			t.Fatal(err)
		}
		if info.Size != int64(size(i)) || info.Tar != "00000.tar" || info.Member != sampleKey(i)+".jpg" || info.Origin != TarOrigin(sampleURL(i)) {
			t.Errorf("sample %d: %+v", i, info)
		}
		r, err := s.Open(sampleKey(i))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		r.Close()
		if err != nil || !bytes.Equal(got, body(i, size(i))) {
			t.Errorf("sample %d read back: %d bytes, %v", i, len(got), err)
		}
	}
	if mustStat(t, s, sampleKey(1)).Origin == TarOrigin(sampleURL(2)) {
		t.Error("a sample's origin matches another URL")
	}
	if _, err := s.Stat("nope"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Stat of a key never stored: %v", err)
	}
}

func mustStat(t *testing.T, s *Tar, key string) Info {
	t.Helper()
	info, err := s.Stat(key)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// A tar is finished once it reaches its size; the next sample starts the
// next one, and no tar is bigger than its size and one sample.
func TestTarFinishesEachTarAtItsSize(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const limit = 10 << 10
	s := mustOpenTar(t, dir, TarOptions{Size: limit})
	size := func(int) int { return 3000 }
	for i := range 20 {
		putSample(t, s, i, size(i))
		names := tarNames(t, dir)
		for _, n := range names[:len(names)-1] {
			if strings.HasSuffix(n, PartSuffix) {
				t.Fatalf("after sample %d: %v: only the last tar may be unfinished", i, names)
			}
		}
	}
	mustCloseTar(t, s, true)
	names := tarNames(t, dir)
	if len(names) < 4 {
		t.Fatalf("tars %v: want several", names)
	}
	next := 0
	for j, n := range names {
		if n != fmt.Sprintf("%05d.tar", j) {
			t.Errorf("tar %d named %s", j, n)
		}
		fi, err := os.Stat(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > limit+2*tarBlock+int64(size(0))+3*tarBlock+512 {
			t.Errorf("%s: %d bytes, past its size and one sample", n, fi.Size())
		}
		ms := readTar(t, filepath.Join(dir, n))
		checkSamples(t, ms, seq(next, next+len(ms)/2), size)
		next += len(ms) / 2
	}
	if next != 20 {
		t.Errorf("%d samples in the tars, want 20", next)
	}
}

// tarNames lists the tars in dir, finished or not, in order.
func tarNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tar") {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	return names
}

// A run that stops (Ctrl-C, kill -9, power loss) leaves its tar unfinished,
// possibly cut anywhere in a sample: the next run keeps it up to its last
// whole sample, appends to it, and each sample ends in the tar once.
func TestTarResumesAnUnfinishedTarCutAnywhere(t *testing.T) {
	t.Parallel()
	size := func(i int) int { return 700 + 300*i }
	base := t.TempDir()
	s := mustOpenTar(t, base, TarOptions{})
	var ends []int64 // where each sample ends in the tar
	for i := range 4 {
		putSample(t, s, i, size(i))
		fi, err := os.Stat(filepath.Join(base, "00000.tar"+PartSuffix))
		if err != nil {
			t.Fatal(err)
		}
		ends = append(ends, fi.Size())
	}
	mustCloseTar(t, s, false)
	full, err := os.ReadFile(filepath.Join(base, "00000.tar"+PartSuffix))
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(full)) != ends[3] {
		t.Fatalf("unfinished tar of %d bytes, the samples end at %d", len(full), ends[3])
	}
	for cut := int64(0); cut <= int64(len(full)); cut += 97 {
		whole := 0
		for whole < len(ends) && ends[whole] <= cut {
			whole++
		}
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "00000.tar"+PartSuffix), full[:cut], 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := NewTar(dir, TarOptions{})
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		for i := range 4 {
			_, err := s.Stat(sampleKey(i))
			if found := err == nil; found != (i < whole) {
				t.Fatalf("cut at %d: sample %d found %v, want %v (%d whole)", cut, i, found, i < whole, whole)
			}
		}
		for i := whole; i < 6; i++ {
			putSample(t, s, i, size(i))
		}
		mustCloseTar(t, s, true)
		if names := tarNames(t, dir); len(names) != 1 || names[0] != "00000.tar" {
			t.Fatalf("cut at %d: tars %v", cut, names)
		}
		checkSamples(t, readTar(t, filepath.Join(dir, "00000.tar")), seq(0, 6), size)
	}
}

// A finished tar is never written again: the next run's samples go to the
// next tar.
func TestTarNeverRewritesAFinishedTar(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	size := func(int) int { return 2000 }
	s := mustOpenTar(t, dir, TarOptions{})
	putSample(t, s, 0, 2000)
	mustCloseTar(t, s, true)
	before, err := os.ReadFile(filepath.Join(dir, "00000.tar"))
	if err != nil {
		t.Fatal(err)
	}
	s = mustOpenTar(t, dir, TarOptions{})
	if tn, _ := putSample(t, s, 1, 2000); tn != "00001.tar" {
		t.Errorf("the next sample went to %s", tn)
	}
	mustCloseTar(t, s, true)
	after, err := os.ReadFile(filepath.Join(dir, "00000.tar"))
	if err != nil || !bytes.Equal(before, after) {
		t.Fatalf("00000.tar changed (%v)", err)
	}
	checkSamples(t, readTar(t, filepath.Join(dir, "00001.tar")), []int{1}, size)
}

// A finished tar that cannot be read whole is an error naming it: its
// samples would otherwise be fetched again into another tar.
func TestTarRefusesADamagedFinishedTar(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := mustOpenTar(t, dir, TarOptions{})
	putSample(t, s, 0, 2000)
	putSample(t, s, 1, 2000)
	mustCloseTar(t, s, true)
	name := filepath.Join(dir, "00000.tar")
	if err := os.Truncate(name, 3000); err != nil {
		t.Fatal(err)
	}
	_, err := NewTar(dir, TarOptions{})
	if err == nil || !strings.Contains(err.Error(), name) {
		t.Fatalf("NewTar on a damaged tar: %v, want an error naming %s", err, name)
	}
}

// One process writes a prefix's tars; others may write other prefixes in
// the same directory.
func TestTarOneProcessPerPrefix(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	a := mustOpenTar(t, dir, TarOptions{Prefix: "0-of-2-"})
	defer a.Close(true)
	if _, err := NewTar(dir, TarOptions{Prefix: "0-of-2-"}); !errors.Is(err, ErrTarInUse) {
		t.Errorf("a second sink on the prefix: %v, want ErrTarInUse", err)
	}
	b := mustOpenTar(t, dir, TarOptions{Prefix: "1-of-2-"})
	if tn, _ := putSample(t, b, 0, 100); tn != "1-of-2-00000.tar" {
		t.Errorf("stored in %s", tn)
	}
	mustCloseTar(t, b, true)
	if tn, _ := putSample(t, a, 1, 100); tn != "0-of-2-00000.tar" {
		t.Errorf("stored in %s", tn)
	}
}

// A read-only sink (--dry-run) finds what the tars hold and changes
// nothing: an unfinished tar is not cut, no lock is taken.
func TestTarReadOnlyChangesNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := mustOpenTar(t, dir, TarOptions{})
	putSample(t, s, 0, 1000)
	putSample(t, s, 1, 1000)
	mustCloseTar(t, s, false)
	part := filepath.Join(dir, "00000.tar"+PartSuffix)
	fi, err := os.Stat(part)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(part, fi.Size()-100); err != nil { // the second sample cut
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, TarSpillDir)); err != nil {
		t.Fatal(err)
	}
	ro := mustOpenTar(t, dir, TarOptions{ReadOnly: true})
	if _, err := ro.Stat(sampleKey(0)); err != nil {
		t.Error(err)
	}
	if _, err := ro.Stat(sampleKey(1)); err == nil {
		t.Error("a cut sample is found")
	}
	if _, err := ro.Create(sampleKey(2), sampleURL(2)); err == nil {
		t.Error("a read-only sink creates")
	}
	mustCloseTar(t, ro, true)
	if fi2, err := os.Stat(part); err != nil || fi2.Size() != fi.Size()-100 {
		t.Errorf("the unfinished tar changed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, TarSpillDir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s created: %v", TarSpillDir, err)
	}
}

// A body past what memory holds goes through a staging file, which an
// aborted attempt keeps for the next run to resume from, and which is gone
// once the sample is in the tar.
func TestTarBigBodyIsStagedAndResumed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	opts := TarOptions{Memory: 1 << 20} // 128 KiB a body
	s := mustOpenTar(t, dir, opts)
	const n = 600 << 10
	want := body(7, n)
	w, err := s.Create(sampleKey(7), sampleURL(7))
	if err != nil {
		t.Fatal(err)
	}
	w.SetValidator(`"v1"`, n)
	if _, err := w.Write(want[:n/2]); err != nil {
		t.Fatal(err)
	}
	if s.mem.Load() != 0 {
		t.Errorf("a body known to be %d bytes holds %d bytes of memory", n, s.mem.Load())
	}
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	mustCloseTar(t, s, false)

	s = mustOpenTar(t, dir, opts)
	p, err := s.Staged(sampleKey(7), sampleURL(7))
	if err != nil || p.Offset != n/2 || p.Validator != `"v1"` {
		t.Fatalf("Staged: %+v, %v; want %d bytes under \"v1\"", p, err, n/2)
	}
	w, err = s.Create(sampleKey(7), sampleURL(7))
	if err != nil {
		t.Fatal(err)
	}
	if w.Partial().Offset != n/2 {
		t.Fatalf("Partial %+v, want the %d bytes kept", w.Partial(), n/2)
	}
	kept, err := io.ReadAll(w.Prefix())
	if err != nil || !bytes.Equal(kept, want[:n/2]) {
		t.Fatalf("Prefix: %d bytes, %v", len(kept), err)
	}
	w.SetValidator(`"v1"`, n)
	if _, err := w.Write(want[n/2:]); err != nil {
		t.Fatal(err)
	}
	w.(SampleWriter).SetSample(Sample{Key: sampleKey(7), HTTPStatus: 206})
	errc := make(chan error, 1)
	w.Commit(func(err error) { errc <- err })
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	mustCloseTar(t, s, true)
	ms := readTar(t, filepath.Join(dir, "00000.tar"))
	if len(ms) != 2 || ms[0].name != sampleKey(7)+".jpg" || !bytes.Equal(ms[0].data, want) {
		t.Fatalf("tar holds %d members; the body %d bytes, want %d", len(ms), len(ms[0].data), n)
	}
	left, _ := os.ReadDir(filepath.Join(dir, TarSpillDir))
	for _, e := range left {
		if e.Name() != "lock" {
			t.Errorf("%s left in %s", e.Name(), TarSpillDir)
		}
	}
}

// A body written in pieces (--split) goes to a staging file, whose ranges
// become the sample's body.
func TestTarBodyInPieces(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := mustOpenTar(t, dir, TarOptions{})
	const n = 64 << 10
	want := body(3, n)
	w, err := s.Create(sampleKey(3), sampleURL(3))
	if err != nil {
		t.Fatal(err)
	}
	w.SetValidator(`"v"`, n)
	if _, err := w.Write(want[:1000]); err != nil {
		t.Fatal(err)
	}
	rw := w.(RangeWriter)
	rw.SetRanges([]Range{{0, 1000}})
	if _, err := rw.WriteAt(want[n/2:], n/2); err != nil {
		t.Fatal(err)
	}
	if _, err := rw.WriteAt(want[1000:n/2], 1000); err != nil {
		t.Fatal(err)
	}
	rw.SetRanges([]Range{{0, n}})
	if err := rw.EndRanges(n); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	w.Commit(func(err error) { errc <- err })
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	mustCloseTar(t, s, true)
	ms := readTar(t, filepath.Join(dir, "00000.tar"))
	if len(ms) != 2 || !bytes.Equal(ms[0].data, want) {
		t.Fatalf("the body in the tar differs from what was written in pieces")
	}
}

// The bodies held in memory, by writers and by samples waiting to be
// appended, never pass TarOptions.Memory; past it, bodies go to staging
// files, and the memory is all given back once the samples are stored.
func TestTarMemoryStaysWithinItsBound(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const limit = 256 << 10
	s := mustOpenTar(t, dir, TarOptions{Memory: limit})
	var ws []Writer
	for i := range 20 {
		w, err := s.Create(sampleKey(i), sampleURL(i))
		if err != nil {
			t.Fatal(err)
		}
		for j := 0; j < 24<<10; j += 1000 { // 24 KiB each, in small writes
			if _, err := w.Write(body(i, 24<<10)[j:min(j+1000, 24<<10)]); err != nil {
				t.Fatal(err)
			}
			if m := s.mem.Load(); m > limit {
				t.Fatalf("%d bytes of memory held, the bound is %d", m, limit)
			}
		}
		ws = append(ws, w)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(ws))
	for i, w := range ws {
		wg.Add(1)
		w.Commit(func(err error) { errs[i] = err; wg.Done() })
	}
	wg.Wait()
	if m := s.mem.Load(); m != 0 {
		t.Errorf("%d bytes of memory still held once every sample is stored", m)
	}
	mustCloseTar(t, s, true)
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	checkSamplesAnyOrder(t, readTar(t, filepath.Join(dir, "00000.tar")), 20, 24<<10)
}

func checkSamplesAnyOrder(t *testing.T, ms []member, n, size int) {
	t.Helper()
	seen := map[string]bool{}
	for _, m := range ms {
		if key, ok := strings.CutSuffix(m.name, ".jpg"); ok {
			var i int
			fmt.Sscanf(key, "%d", &i)
			if !bytes.Equal(m.data, body(i, size)) {
				t.Errorf("%s: wrong bytes", m.name)
			}
			seen[key] = true
		}
	}
	if len(seen) != n {
		t.Errorf("%d samples in the tar, want %d", len(seen), n)
	}
}

// An aborted or discarded body in memory gives its memory back and leaves
// nothing.
func TestTarAbortedBodyLeavesNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := mustOpenTar(t, dir, TarOptions{})
	for _, abort := range []bool{true, false} {
		w, err := s.Create("k", "http://example.com/k")
		if err != nil {
			t.Fatal(err)
		}
		w.Write(body(0, 5000))
		if abort {
			w.Abort()
		} else {
			w.Discard()
		}
	}
	if m := s.mem.Load(); m != 0 {
		t.Errorf("%d bytes of memory held", m)
	}
	mustCloseTar(t, s, true)
	if names := tarNames(t, dir); len(names) != 0 {
		t.Errorf("tars %v, want none", names)
	}
}

func TestSampleExt(t *testing.T) {
	for _, c := range []struct{ url, ct, want string }{
		{"http://h/a/b.JPG", "image/png", "jpg"},
		{"http://h/a/b.jpeg?x=1.png", "", "jpeg"},
		{"http://h/a/b", "image/png", "png"},
		{"http://h/a/b", "image/jpeg; charset=binary", "jpg"},
		{"http://h/a/b.toolongext", "image/webp", "webp"},
		{"http://h/a/b.j-g", "", "bin"},
		{"http://h/a/b", "application/x-unknown", "bin"},
		{"http://h/data.json", "", "body.json"},
		{"http://h/data", "application/json", "body.json"},
		{"http://h/a.b/c", "text/plain", "txt"},
		{"http://h/%41.PNG", "", "png"},
	} {
		if got := sampleExt(c.url, c.ct); got != c.want {
			t.Errorf("sampleExt(%q, %q) = %q, want %q", c.url, c.ct, got, c.want)
		}
	}
}

// ScanTar stops at the first member haul does not write, and says why.
func TestScanTarStopsAtForeignMembers(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name, data string) {
		tw.WriteHeader(&tar.Header{Name: name, Size: int64(len(data)), Mode: 0o644, Typeflag: tar.TypeReg})
		tw.Write([]byte(data))
	}
	add("a.jpg", "xx")
	add("a.json", `{"url":"http://h/a.jpg","key":"a"}`)
	add("b.jpg", "yy")
	add("c.json", `{"url":"http://h/c","key":"c"}`)
	tw.Close()
	var got []string
	end, err := ScanTar(bytes.NewReader(buf.Bytes()), int64(buf.Len()), func(s StoredSample) { got = append(got, s.Key+" "+s.URL) })
	if !errors.Is(err, errNotSample) || len(got) != 1 || got[0] != "a http://h/a.jpg" || end != 4*tarBlock {
		t.Errorf("ScanTar: %v, end %d, %v", got, end, err)
	}
}

func FuzzScanTar(f *testing.F) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i, name := range []string{"000000001.jpg", "000000002.body.json"} {
		key, _, _ := strings.Cut(name, ".")
		tw.WriteHeader(&tar.Header{Name: name, Size: 3, Mode: 0o644, Typeflag: tar.TypeReg})
		tw.Write([]byte{1, 2, byte(i)})
		js := fmt.Sprintf(`{"url":"http://h/%d","key":%q,"size":3}`, i, key)
		tw.WriteHeader(&tar.Header{Name: key + ".json", Size: int64(len(js)), Mode: 0o644, Typeflag: tar.TypeReg})
		tw.Write([]byte(js))
	}
	tw.Flush()
	f.Add(buf.Bytes())
	tw.Close()
	f.Add(buf.Bytes())
	f.Add(buf.Bytes()[:1000])
	f.Fuzz(func(t *testing.T, data []byte) {
		var prev int64
		end, _ := ScanTar(bytes.NewReader(data), int64(len(data)), func(s StoredSample) {
			if s.Offset < prev || s.Offset+s.Size > int64(len(data)) || s.Key == "" || strings.ContainsAny(s.Key, "./") || s.URL == "" {
				t.Fatalf("sample %+v out of the tar's %d bytes or badly named", s, len(data))
			}
			if !strings.HasPrefix(s.Member, s.Key+".") {
				t.Fatalf("member %q of key %q", s.Member, s.Key)
			}
			prev = s.Offset + s.Size
		})
		if end < prev || end > int64(len(data)) || end%tarBlock != 0 {
			t.Fatalf("end %d: the samples end at %d, the tar has %d bytes", end, prev, len(data))
		}
		// What precedes end is whole: scanned alone, it gives the same.
		end2, err := ScanTar(bytes.NewReader(data[:end]), end, func(StoredSample) {})
		if end2 != end || err != nil {
			t.Fatalf("the whole part [0,%d) scans to %d: %v", end, end2, err)
		}
	})
}

// The samples of another split of the list (without --shard, or with
// another N) count as stored: changing the number of shards between runs
// stores no entry twice. Those of the other shards of the same N are not
// read (they hold other entries).
func TestTarFindsSamplesOfOtherSplits(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, c := range []struct {
		prefix string
		i      int
	}{{"", 0}, {"0-of-3-", 1}, {"2-of-3-", 2}} {
		s := mustOpenTar(t, dir, TarOptions{Prefix: c.prefix})
		putSample(t, s, c.i, 100)
		if err := s.Close(c.i != 2); err != nil { // the last one left unfinished
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		prefix string
		want   []bool
	}{
		{"", []bool{true, true, true}},
		{"1-of-3-", []bool{true, false, false}},
		{"0-of-2-", []bool{true, true, true}},
	} {
		s := mustOpenTar(t, dir, TarOptions{Prefix: c.prefix, ReadOnly: true})
		for i, want := range c.want {
			if _, err := s.Stat(sampleKey(i)); (err == nil) != want {
				t.Errorf("prefix %q: sample %d found: %v, want %v", c.prefix, i, err == nil, want)
			}
		}
		s.Close(false)
	}
	if _, err := os.Stat(filepath.Join(dir, "2-of-3-00000.tar"+PartSuffix)); err != nil {
		t.Errorf("another prefix's unfinished tar: %v", err)
	}
}

// A staging file left for a body whose sample a tar already holds (a run
// stopped between the append and the removal) is removed by the next run:
// the sample is skipped, so nothing else would.
func TestTarRemovesStagingFilesOfStoredSamples(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := mustOpenTar(t, dir, TarOptions{})
	putSample(t, s, 0, 100)
	mustCloseTar(t, s, true)
	spill := filepath.Join(dir, TarSpillDir, "spill")
	if err := os.MkdirAll(spill, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{sampleKey(0), sampleKey(1)} {
		if err := os.WriteFile(filepath.Join(spill, k+PartSuffix), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s = mustOpenTar(t, dir, TarOptions{})
	mustCloseTar(t, s, true)
	if _, err := os.Stat(filepath.Join(spill, sampleKey(0)+PartSuffix)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the staging file of a stored sample is left: %v", err)
	}
	if _, err := os.Stat(filepath.Join(spill, sampleKey(1)+PartSuffix)); err != nil {
		t.Errorf("the staging file of a sample not stored is gone: %v", err)
	}
}

func mustOpenTar(t *testing.T, dir string, opts TarOptions) *Tar {
	t.Helper()
	s, err := NewTar(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// mustCloseTar closes s, finishing its unfinished tar (the list ended) or
// leaving it for the next run (interrupted).
func mustCloseTar(t *testing.T, s *Tar, finish bool) {
	t.Helper()
	if err := s.Close(finish); err != nil {
		t.Fatal(err)
	}
}

// A link at a tar's name is refused, never followed: it could point at any
// file in the directory, a finished tar included.
func TestTarRefusesALinkAtATarName(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"00000.tar" + PartSuffix, "00000.tar"} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "important.txt"), []byte("precious"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("important.txt", filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
		if _, err := NewTar(dir, TarOptions{}); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("a link at %s: %v, want it refused", name, err)
		}
		if b, err := os.ReadFile(filepath.Join(dir, "important.txt")); err != nil || string(b) != "precious" {
			t.Errorf("the link's target changed: %q, %v", b, err)
		}
	}
}

func TestSampleJSONPublishesNoCredentials(t *testing.T) {
	w := &tarWriter{key: "k", origin: "http://user:secret@example.com/a.jpg?x=1#frag"}
	js, err := w.sampleJSON()
	if err != nil || strings.Contains(string(js), "secret") || strings.Contains(string(js), "frag") ||
		!strings.Contains(string(js), `"url":"http://example.com/a.jpg?x=1"`) {
		t.Errorf("KEY.json %s (%v)", js, err)
	}
}
