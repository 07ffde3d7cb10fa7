package sink

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The spill directories of dead processes are removed by the next run; a live
// process's (locked), or one just made, is kept.
func TestSpillDirsOfDeadRunsRemoved(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	live, lock, err := newSpillDir()
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	old := time.Now().Add(-time.Hour)
	mk := func(name string, withLock bool, mtime time.Time) string {
		d := filepath.Join(tmp, spillPattern+name)
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "000000001.part"), []byte("body"), 0o600); err != nil {
			t.Fatal(err)
		}
		if withLock {
			if err := os.WriteFile(filepath.Join(d, spillLockName), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chtimes(d, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		return d
	}
	dead := mk("dead", true, old)
	noLock := mk("nolock", false, old)
	young := mk("young", false, time.Now())
	if err := os.Chtimes(live, old, old); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(tmp, "haul-other")
	if err := os.Mkdir(other, 0o700); err != nil {
		t.Fatal(err)
	}
	_, lock2, err := newSpillDir() // sweeps first
	if err != nil {
		t.Fatal(err)
	}
	defer lock2.Close()
	for d, want := range map[string]bool{dead: false, noLock: false, young: true, live: true, other: true} {
		_, err := os.Stat(d)
		if got := err == nil; got != want {
			t.Errorf("%s: there %v, want %v", filepath.Base(d), got, want)
		}
	}
}
