package sink

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/haul/haul/internal/urlid"
)

// mountSmallExt4 mounts a new ext4 filesystem with 1 KiB blocks and 128-byte
// inodes: all of a file's extended attributes must share one 1 KiB block. It
// skips the test where loop mounts are not allowed.
func mountSmallExt4(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("no mkfs.ext4")
	}
	tmp := t.TempDir()
	img, dir := filepath.Join(tmp, "fs.img"), filepath.Join(tmp, "mnt")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 8<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-b", "1024", "-I", "128", img).CombinedOutput(); err != nil {
		t.Skipf("mkfs.ext4: %v %s", err, out)
	}
	os.Mkdir(dir, 0o755)
	if out, err := exec.Command("mount", "-o", "loop", img, dir).CombinedOutput(); err != nil {
		t.Skipf("cannot loop-mount here: %v %s", err, out)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// Where the filesystem has no room for an attribute, the file is still written:
// a long origin is recorded in its short form (and still recognised), and a
// resume state with a validator of kilobytes is left out (the file would restart
// after an interruption) instead of failing the checkpoint and the commit.
func TestFileAttributesWithoutRoom(t *testing.T) {
	dir := mountSmallExt4(t)
	s, err := NewFile(dir, FileOptions{Checkpoint: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	url := "http://h/f?" + strings.Repeat("q", 990)
	w, err := s.Create("f", url)
	if err != nil {
		t.Fatalf("create with a %d-byte origin: %v", len(url), err)
	}
	w.SetValidator(`"`+strings.Repeat("e", 1500)+`"`, 1<<20)
	body := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB: 16 checkpoints
	if _, err := w.Write(body); err != nil {
		t.Fatal(err)
	}
	if err := commit(t, w); err != nil {
		t.Fatalf("commit: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "f")); !bytes.Equal(got, body) {
		t.Fatalf("final file holds %d bytes, want the %d written", len(got), len(body))
	}
	info, err := s.Stat("f")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(info.Origin, "sha256:") || !urlid.Same(info.Origin, url) {
		t.Errorf("origin %q: want the short form, matching the URL", info.Origin)
	}
	if urlid.Same(info.Origin, url+"x") {
		t.Errorf("origin %q matches another URL", info.Origin)
	}

	// Interrupted without room for the resume state: nothing to resume, so the
	// staging file is not kept; the next attempt starts over cleanly.
	w, err = s.Create("g", url)
	if err != nil {
		t.Fatal(err)
	}
	w.SetValidator(`"`+strings.Repeat("e", 1500)+`"`, 1<<20)
	if _, err := w.Write(body[:256<<10]); err != nil {
		t.Fatal(err)
	}
	if err := w.Abort(); err != nil {
		t.Fatalf("abort: %v", err)
	}
	w, err = s.Create("g", url)
	if err != nil {
		t.Fatal(err)
	}
	if p := w.Partial(); p.Offset != 0 {
		t.Errorf("resumable from %d with no resume state recorded", p.Offset)
	}
	w.Discard()
}
