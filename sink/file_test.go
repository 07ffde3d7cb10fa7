package sink

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func newSink(t *testing.T, opts FileOptions) (*File, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := NewFile(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dir
}

func commit(t *testing.T, w Writer) error {
	t.Helper()
	ch := make(chan error, 1)
	w.Commit(func(err error) { ch <- err })
	return <-ch
}

func TestFileCommitAndStat(t *testing.T) {
	for _, noSync := range []bool{false, true} {
		s, dir := newSink(t, FileOptions{NoSync: noSync})
		w, err := s.Create("h/a/b.txt", "http://h/a/b.txt")
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, "hello ")
		// Until the commit, nothing exists at the final name.
		if _, err := s.Stat("h/a/b.txt"); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("final name visible before commit: %v", err)
		}
		io.WriteString(w, "world")
		if err := commit(t, w); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(dir, "h/a/b.txt"))
		if err != nil || string(got) != "hello world" {
			t.Fatalf("got %q, %v", got, err)
		}
		info, err := s.Stat("h/a/b.txt")
		if err != nil {
			t.Fatal(err)
		}
		if info.Size != 11 || info.Origin != "http://h/a/b.txt" {
			t.Errorf("Stat = %+v", info)
		}
		if _, err := os.Stat(filepath.Join(dir, "h/a/b.txt"+PartSuffix)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("staging file left behind: %v", err)
		}
	}
}

func TestFileAbortAndRestart(t *testing.T) {
	s, dir := newSink(t, FileOptions{})
	w, _ := s.Create("x", "u")
	io.WriteString(w, "partial")
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("abort left %v", ents)
	}
	w, _ = s.Create("x", "u")
	io.WriteString(w, "wrong bytes, longer")
	if err := w.Restart(); err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "right")
	if err := commit(t, w); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "x")); string(got) != "right" {
		t.Fatalf("after restart got %q", got)
	}
}

// A symbolic link planted in the output directory must never lead a write
// outside it, nor onto another file inside it.
func TestFileSymlinks(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	victim := filepath.Join(outside, "victim")
	os.WriteFile(victim, []byte("keep"), 0o644)
	os.Symlink(outside, filepath.Join(dir, "escape"))
	os.WriteFile(filepath.Join(dir, "inside"), []byte("keep too"), 0o644)
	os.Symlink("inside", filepath.Join(dir, "y.part"))
	os.Symlink(victim, filepath.Join(dir, "z"))
	// A hard link at a staging name, to a file outside, with a resume state
	// for this very origin.
	hard := filepath.Join(outside, "hard")
	if err := os.WriteFile(hard, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	hardSkip := ""
	if err := os.Link(hard, filepath.Join(dir, "h.part")); err != nil {
		hardSkip = fmt.Sprintf("no hard links here: %v", err)
	} else {
		for k, v := range map[string]string{OriginAttr: "u", resumeAttr: `v1 4 4 8 "e"`} {
			if err := setXattrPath(filepath.Join(dir, "h.part"), k, v); err != nil {
				hardSkip = fmt.Sprintf("no user xattrs here: %v", err)
			}
		}
	}
	// Planted before the sink opens, as a user's or an earlier run's files
	// are; one planted while it runs is below.
	s, err := NewFile(dir, FileOptions{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	t.Run("DirectoryLinkOutside", func(t *testing.T) {
		if _, err := s.Create("escape/victim", "u"); err == nil {
			t.Fatal("Create through a link to outside succeeded")
		}
		if _, err := s.Stat("escape/victim"); err == nil {
			t.Fatal("Stat through a link to outside succeeded")
		}
	})
	t.Run("StagingNameIsLink", func(t *testing.T) {
		w, err := s.Create("y", "u")
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, "new")
		if err := commit(t, w); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(filepath.Join(dir, "inside")); string(got) != "keep too" {
			t.Fatalf("write followed the staging link: inside = %q", got)
		}
	})
	t.Run("FinalNameIsLink", func(t *testing.T) {
		if _, err := s.Stat("z"); !errors.Is(err, ErrNotRegular) {
			t.Fatalf("Stat of a link = %v, want ErrNotRegular", err)
		}
		w, _ := s.Create("z", "u")
		io.WriteString(w, "new")
		if err := commit(t, w); !errors.Is(err, ErrTaken) {
			t.Fatalf("commit over a link haul did not make = %v, want ErrTaken", err)
		}
		if target, err := os.Readlink(filepath.Join(dir, "z")); err != nil || target != victim {
			t.Fatalf("the link was not kept: %q %v", target, err)
		}
		w, _ = s.Create("z", "u")
		w.Replace()
		io.WriteString(w, "new")
		if err := commit(t, w); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(victim); string(got) != "keep" {
			t.Fatalf("commit wrote through the link: victim = %q", got)
		}
		if got, _ := os.ReadFile(filepath.Join(dir, "z")); string(got) != "new" {
			t.Fatalf("z = %q after a replacing commit", got)
		}
	})
	t.Run("StagingNameIsHardLink", func(t *testing.T) {
		// The outside file is not touched.
		if hardSkip != "" {
			t.Skip(hardSkip)
		}
		w, err := s.Create("h", "u")
		if err != nil {
			t.Fatal(err)
		}
		if p := w.Partial(); p.Offset != 0 {
			t.Errorf("resumed a hard-linked staging file: %+v", p)
		}
		io.WriteString(w, "new")
		if err := commit(t, w); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(hard); string(got) != "precious" {
			t.Fatalf("the file outside was written through its hard link: %q", got)
		}
		if got, _ := os.ReadFile(filepath.Join(dir, "h")); string(got) != "new" {
			t.Fatalf("h = %q", got)
		}
	})
	t.Run("DotDot", func(t *testing.T) {
		if _, err := s.Create("../outside", "u"); err == nil {
			t.Fatal("Create ../outside succeeded")
		}
	})
	t.Run("LinkPlantedWhileRunning", func(t *testing.T) {
		// The sink takes the names it did not make for absent (see known):
		// the commit still finds the link, and neither follows nor replaces it.
		os.Symlink(victim, filepath.Join(dir, "late"))
		w, err := s.Create("late", "u")
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, "new")
		if err := commit(t, w); !errors.Is(err, ErrTaken) {
			t.Fatalf("commit over a link planted meanwhile = %v, want ErrTaken", err)
		}
		if got, _ := os.ReadFile(victim); string(got) != "keep" {
			t.Fatalf("the commit wrote through the link: victim = %q", got)
		}
		if target, err := os.Readlink(filepath.Join(dir, "late")); err != nil || target != victim {
			t.Fatalf("the link was not kept: %q %v", target, err)
		}
	})
}

// Group commit: many writers commit at once; every file lands, Flush waits.
func TestFileGroupCommit(t *testing.T) {
	s, dir := newSink(t, FileOptions{})
	const n = 300
	errs := make(chan error, n)
	for i := range n {
		w, err := s.Create(filepath.Join("d", string(rune('a'+i%26)), "f"+string(rune('0'+i%10))+string(rune('A'+i/10))), "u")
		if err != nil {
			t.Fatal(err)
		}
		w.Write(bytes.Repeat([]byte{byte(i)}, i))
		w.Commit(func(err error) { errs <- err })
	}
	s.Flush()
	if len(errs) != n {
		t.Fatalf("Flush returned with %d of %d commits done", len(errs), n)
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	count := 0
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if d.Type().IsRegular() {
			count++
		}
		return nil
	})
	if count != n {
		t.Fatalf("%d files on disk, want %d", count, n)
	}
}

func setXattrPath(path, name, value string) error {
	return unix.Setxattr(path, name, []byte(value), 0)
}

// Commit never replaces a file from another origin that appeared at the final
// name after the engine looked (another process, another tool); it replaces one
// from the same origin, and anything once Replace was called.
func TestFileCommitNoReplace(t *testing.T) {
	for _, opts := range []FileOptions{{NoSync: true}, {}} {
		s, dir := newSink(t, opts)
		put := func(name, origin, body string, replace bool) error {
			t.Helper()
			w, err := s.Create(name, origin)
			if err != nil {
				t.Fatal(err)
			}
			if replace {
				w.Replace()
			}
			io.WriteString(w, body)
			return commit(t, w)
		}
		read := func(name string) string {
			b, _ := os.ReadFile(filepath.Join(dir, name))
			return string(b)
		}
		// The engine found no "a" and went on to download http://x/a; meanwhile
		// another process wrote http://y/a there.
		if err := put("a", "http://y/a", "from y", false); err != nil {
			t.Fatal(err)
		}
		if err := put("a", "http://x/a", "from x", false); !errors.Is(err, ErrTaken) || !strings.Contains(err.Error(), "http://y/a") {
			t.Fatalf("commit over another origin's file = %v, want ErrTaken naming it", err)
		}
		if got := read("a"); got != "from y" {
			t.Fatalf("a = %q, want the first writer's", got)
		}
		if _, err := os.Stat(filepath.Join(dir, "a.part")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("staging file left after a refused commit: %v", err)
		}
		if err := put("a", "http://y/a", "y again", false); err != nil || read("a") != "y again" {
			t.Fatalf("same origin: %v, a = %q", err, read("a"))
		}
		os.WriteFile(filepath.Join(dir, "b"), []byte("someone else's"), 0o644)
		if err := put("b", "http://x/b", "x", false); !errors.Is(err, ErrTaken) || read("b") != "someone else's" {
			t.Fatalf("foreign file: %v, b = %q", err, read("b"))
		}
		if err := put("b", "http://x/b", "x", true); err != nil || read("b") != "x" {
			t.Fatalf("with Replace: %v, b = %q", err, read("b"))
		}
	}
}

// A checkpointed file keeps its resume state on NAME.part until it is renamed:
// a crash while the group commit flushes must still find the checkpoint (not
// refetch the whole file). The final file carries none.
func TestFileResumeStateKeptUntilRename(t *testing.T) {
	s, dir := newSink(t, FileOptions{Checkpoint: 64 << 10})
	buf := make([]byte, 256)
	seen := false // a NAME.part waiting for the group commit was looked at
	for i := 0; i < 10 && !seen; i++ {
		name := fmt.Sprintf("big%d", i)
		w, err := s.Create(name, "http://h/"+name)
		if err != nil {
			t.Fatal(err)
		}
		w.SetValidator(`"v"`, 256<<10)
		w.Write(make([]byte, 256<<10))
		done := make(chan error, 1)
		w.Commit(func(err error) { done <- err })
		part := filepath.Join(dir, name+PartSuffix)
		if _, err := os.Lstat(part); err == nil { // the batch's flush has not renamed it yet
			seen = true
			if n, err := unix.Getxattr(part, resumeAttr, buf); err != nil || !strings.HasPrefix(string(buf[:n]), "v1 ") {
				t.Errorf("NAME.part waiting for the group commit has no resume state (%v)", err)
			}
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if _, err := unix.Getxattr(filepath.Join(dir, name), resumeAttr, buf); err != errNoAttr {
			t.Errorf("final file: resume state %v, want none", err)
		}
	}
	if !seen {
		t.Error("every commit was done before it could be looked at: nothing was checked")
	}
}
