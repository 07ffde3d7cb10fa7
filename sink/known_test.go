package sink

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
)

// Every name added stays "maybe", however its path is split into directory
// and name; names never added are nearly all absent.
func TestKnownFilter(t *testing.T) {
	k := newKnown()
	const n = 100_000
	for i := range n {
		k.add("h-"+strconv.Itoa(i), "f.part")
	}
	for i := range n {
		if k.absent("h-"+strconv.Itoa(i), "f.part") || k.absent("", "h-"+strconv.Itoa(i)+"/f.part") {
			t.Fatalf("name %d added, reported absent", i)
		}
	}
	maybe := 0
	for i := range n {
		if !k.absent("", "other-"+strconv.Itoa(i)) {
			maybe++
		}
	}
	// 4 probes in 2^23 bits with 10^5 names: about 1 in 200,000 expected;
	// the bound leaves room for any seed.
	if maybe > n/1000 {
		t.Errorf("%d of %d names never added reported maybe", maybe, n)
	}
}

// In a directory the sink made (and in its own directory, which started
// empty), a name it did not make is answered absent without asking the file
// system; in a directory that was there before, the file system is asked.
func TestKnownFreshDirectories(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "old"), 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := NewFile(dir, FileOptions{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.dirs.known == nil {
		t.Skip("no O_TMPFILE here: names are always looked up")
	}
	for _, name := range []string{"new/a", "old/a"} {
		put(t, s, name)
	}
	// Files another writer puts there meanwhile (haul's contract is that no
	// one does, or that it is another haul process, which presence sees).
	for _, name := range []string{"new/planted", "old/planted", "top-planted"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("p"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, seen := range map[string]bool{"new/a": true, "old/a": true, "old/planted": true, "new/planted": false, "top-planted": false} {
		_, err := s.Stat(name)
		if got := err == nil; got != seen {
			t.Errorf("Stat(%s) = %v: seen %v, want %v", name, err, got, seen)
		}
		if !seen && !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Stat(%s) = %v, want not exist", name, err)
		}
	}
}

// Once another haul process shares the directory, every name is looked up.
func TestKnownDistrustedWithCompany(t *testing.T) {
	s, dir := newSink(t, FileOptions{NoSync: true})
	if s.dirs.known == nil {
		t.Skip("no O_TMPFILE here: names are always looked up")
	}
	if err := os.WriteFile(filepath.Join(dir, "p"), []byte("p"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat("p"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Stat(p) alone = %v, want it answered absent", err)
	}
	other, err := NewFile(dir, FileOptions{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	w, err := s.Create("q", "http://h/q") // looks for company
	if err != nil {
		t.Fatal(err)
	}
	w.Discard()
	if _, err := s.Stat("p"); err != nil {
		t.Errorf("Stat(p) with company = %v, want the file found", err)
	}
}

// A symbolic link in the sink's directory may lead to the directory itself or
// to one the sink makes later: a file written through the link is found under
// its other path too.
func TestKnownThroughLinkedDirectory(t *testing.T) {
	for _, tc := range []struct {
		name         string
		link, target string   // the link, there before the sink opens
		first        string   // written before, under the target ("": none)
		through      string   // written through the link
		want         []string // then found
	}{
		{"ToTheTop", "here", ".", "", "here/x", []string{"x"}},
		{"ToADirectoryMadeLater", "later", "made", "made/a", "later/b", []string{"made/b"}},
		{"MadeThroughIt", "later", "made", "made/a", "later/new/c", []string{"made/new/c"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.Symlink(tc.target, filepath.Join(dir, tc.link)); err != nil {
				t.Fatal(err)
			}
			s, err := NewFile(dir, FileOptions{NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			for _, name := range []string{tc.first, tc.through} {
				if name == "" {
					continue
				}
				put(t, s, name)
			}
			for _, name := range tc.want {
				if _, err := os.Lstat(filepath.Join(dir, name)); err != nil {
					t.Fatalf("the file is not at %s: %v", name, err)
				}
				if _, err := s.Stat(name); err != nil {
					t.Errorf("Stat(%s) = %v, want the file written through %s", name, err, tc.link)
				}
			}
		})
	}
}

// Where the sink does not keep the names it makes (staging named, or a
// directory that held many entries when it opened), every name is looked up:
// a file put there while it runs is seen.
func TestKnownNotKept(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  FileOptions
		files int // in the directory when the sink opens
	}{
		{"Named", FileOptions{NoSync: true, Named: true}, 0},
		{"Crowded", FileOptions{NoSync: true}, knownTopMax + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for i := range tc.files {
				if err := os.WriteFile(filepath.Join(dir, "old-"+strconv.Itoa(i)), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			s, err := NewFile(dir, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if s.dirs.known != nil {
				t.Fatal("names kept")
			}
			if err := os.WriteFile(filepath.Join(dir, "planted"), []byte("p"), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Stat("planted"); err != nil {
				t.Errorf("Stat(planted) = %v, want the file found", err)
			}
		})
	}
}

// Within one sink, what it made is found again: a second entry of the same
// name in a directory the sink made sees the first's file, and resumes the
// NAME.part a stopped one left.
func TestKnownFindsWhatItMade(t *testing.T) {
	s, dir := newSink(t, FileOptions{})
	w, err := s.Create("new/f", "http://h/f")
	if err != nil {
		t.Fatal(err)
	}
	w.SetValidator(`"v1"`, 10000)
	w.Write(bytes.Repeat([]byte("a"), 3000))
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	if !exists(t, filepath.Join(dir, "new/f"+PartSuffix)) {
		t.Fatal("no new/f.part after Abort")
	}
	if p, err := s.Staged("new/f", "http://h/f"); err != nil || p.Offset != 3000 {
		t.Fatalf("Staged = %+v %v, want 3000 bytes", p, err)
	}
	w, err = s.Create("new/f", "http://h/f")
	if err != nil {
		t.Fatal(err)
	}
	if p := w.Partial(); p.Offset != 3000 {
		t.Fatalf("Partial %+v, want the 3000 bytes left", p)
	}
	w.Write(bytes.Repeat([]byte("b"), 7000))
	if err := commit(t, w); err != nil {
		t.Fatal(err)
	}
	if info, err := s.Stat("new/f"); err != nil || info.Size != 10000 {
		t.Fatalf("Stat(new/f) = %+v %v, want the 10000 bytes written", info, err)
	}
}

// A name is recorded before the system call that makes it: once the file
// system shows an entry the sink is making, the sink's own Stat finds it too,
// while other workers go on creating files beside it.
func TestKnownConcurrentCreate(t *testing.T) {
	s, dir := newSink(t, FileOptions{NoSync: true})
	const workers, files = 4, 50
	name := func(w, i int) string { return fmt.Sprintf("d%d/f%d", i%3, w*files+i) }
	done := make(chan struct{})
	var wg sync.WaitGroup
	for wk := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range files {
				n := name(wk, i)
				w, err := s.Create(n, "http://h/"+n)
				if err != nil {
					t.Error(err)
					return
				}
				io.WriteString(w, "x")
				if err := commit(t, w); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); close(done) }()
	for wk := range workers {
		for i := range files {
			n := name(wk, i)
			for {
				if _, err := os.Lstat(filepath.Join(dir, n)); err == nil {
					break
				}
				select {
				case <-done:
					if _, err := os.Lstat(filepath.Join(dir, n)); err != nil {
						t.Fatalf("%s never made: %v", n, err)
					}
				default:
					continue
				}
				break
			}
			if _, err := s.Stat(n); err != nil {
				t.Errorf("Stat(%s) = %v once the file is there", n, err)
			}
		}
	}
	<-done
}

// A file where a directory is looked for is not a link: the names made stay
// trusted.
func TestKnownFileOnThePath(t *testing.T) {
	s, _ := newSink(t, FileOptions{NoSync: true})
	if s.dirs.known == nil {
		t.Skip("no O_TMPFILE here: names are always looked up")
	}
	w, err := s.Create("f", "http://h/f")
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "x")
	if err := commit(t, w); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat("f/x"); err == nil {
		t.Fatal("Stat(f/x) found a file under a file")
	}
	if _, err := s.Create("f/x", "http://h/f/x"); err == nil {
		t.Fatal("Create(f/x) made a directory over the file f")
	}
	if !s.dirs.known.trust.Load() {
		t.Error("a file on the path stopped the answers from the names made")
	}
}

// A file the process makes in the sink's directory by other means (a
// manifest) is looked up once Made names it.
func TestKnownMadeElsewhere(t *testing.T) {
	s, dir := newSink(t, FileOptions{NoSync: true})
	if s.dirs.known == nil {
		t.Skip("no O_TMPFILE here: names are always looked up")
	}
	s.Made("m.jsonl")
	if err := os.WriteFile(filepath.Join(dir, "m.jsonl"), []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat("m.jsonl"); err != nil {
		t.Errorf("Stat of a file named by Made = %v, want it found", err)
	}
}

// put writes the file name through s and commits it.
func put(t *testing.T, s *File, name string) {
	t.Helper()
	w, err := s.Create(name, "http://h/"+name)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "x")
	if err := commit(t, w); err != nil {
		t.Fatal(err)
	}
}
