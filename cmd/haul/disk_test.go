package main

// Disk tests: a full disk (for files and for the manifest), a read-only or
// unwritable output directory, unreadable files, and no empty directories left
// by failed entries.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/haul/haul/download/downloadtest"
	"github.com/haul/haul/internal/testutil"
)

// mountTmpfs mounts a tmpfs with the given options on a new directory, or skips
// the test where mounting is not allowed.
func mountTmpfs(t *testing.T, opts string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, opts); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// A manifest on a full disk keeps only whole lines (still valid JSON lines),
// and the run says the manifest could not be written (exit 3).
func TestE2EManifestDiskFull(t *testing.T) {
	t.Parallel()
	mdir := mountTmpfs(t, "size=4k")
	s := downloadtest.New(t)
	var urls []string
	for i := range 100 {
		urls = append(urls, fmt.Sprintf("%s/missing/%03d-%s", s.URL, i, strings.Repeat("x", 40)))
	}
	man := filepath.Join(mdir, "m.jsonl")
	r := runHaul(t, nil, append([]string{"-d", t.TempDir(), "--retries", "0", "--manifest", man}, urls...)...)
	wantCode(t, r, 3)
	if !strings.Contains(r.stderr, "manifest") || !strings.Contains(r.stderr, "no space left") {
		t.Errorf("stderr does not say the manifest could not be written:\n%s", r.stderr)
	}
	raw, err := os.ReadFile(man)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(raw), "\n")
	if last := lines[len(lines)-1]; last != "" {
		t.Errorf("the manifest ends in a torn line %q", last)
	}
	for _, l := range lines[:len(lines)-1] {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Errorf("manifest line %q: %v", l, err)
		}
	}
	if len(lines) < 5 {
		t.Errorf("only %d whole lines kept", len(lines)-1)
	}
}

// A full disk stops the run with exit 3 and a clear message; nothing at a final
// name is corrupt. The list is longer than haul reads ahead (it holds some
// thousands of entries, not a list's millions), so the summary says that its
// end was not read.
func TestE2EDiskFull(t *testing.T) {
	t.Parallel()
	dir := mountTmpfs(t, "size=1m")
	s := downloadtest.New(t)
	want := map[string][]byte{}
	var urls []string
	for i := range 40 {
		p := fmt.Sprintf("/full/%d.bin", i)
		b := testutil.Payload(uint64(2100+i), 300<<10)
		urls = append(urls, s.Add(p, b))
		want[hostDir(s)+p] = b
	}
	list := filepath.Join(t.TempDir(), "urls.txt")
	var sb strings.Builder
	for i := range 200000 {
		fmt.Fprintf(&sb, "%s?copy=%d out=copy/%d.bin\n", urls[i%len(urls)], i, i)
		want[fmt.Sprintf("copy/%d.bin", i)] = want[hostDir(s)+fmt.Sprintf("/full/%d.bin", i%len(urls))]
	}
	if err := os.WriteFile(list, []byte(strings.Join(urls, "\n")+"\n"+sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runHaul(t, nil, "-d", dir, "-j", "2", "-i", list)
	wantCode(t, r, 3)
	if !strings.Contains(r.stderr, "no space left") {
		t.Errorf("stderr does not say the disk is full:\n%s", r.stderr)
	}
	if !strings.Contains(r.stderr, "the list was not read to the end") {
		t.Errorf("stderr does not say that the rest of the list was not started:\n%s", r.stderr)
	}
	if !strings.Contains(r.stderr, " more stopped unfinished when the run stopped: run the same command again to resume them") {
		t.Errorf("stderr does not sum up the entries the full disk cut short:\n%s", r.stderr)
	}
	for name, b := range files(t, dir) {
		if !strings.HasSuffix(name, ".part") && !bytes.Equal(b, want[name]) {
			t.Errorf("%s holds %d bytes that are not the file", name, len(b))
		}
	}
	t.Logf("%v", r)
}

// A read-only output directory stops the run with exit 3 and a clear message.
func TestE2EReadOnlyDir(t *testing.T) {
	t.Parallel()
	dir := mountTmpfs(t, "ro,size=1m")
	s := downloadtest.New(t)
	u := s.Add("/ro.bin", []byte("x"))
	r := runHaul(t, nil, "-d", dir, u, u+"?2", u+"?3")
	wantCode(t, r, 3)
	if !strings.Contains(r.stderr, "read-only") {
		t.Errorf("stderr does not say the directory is read-only:\n%s", r.stderr)
	}
	t.Logf("%v", r)
}

// A permission error on one file inside -d fails that entry only (exit 1, the
// rest of the list is fetched); one on -d itself stops the run (exit 3), since
// no entry could be written. As root, haul runs as nobody for this test.
func TestE2EPermissionDenied(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	var urls []string
	for _, n := range []string{"a", "b", "c", "d"} {
		urls = append(urls, s.Add("/"+n, []byte("body of "+n)))
	}
	base := t.TempDir()
	out := filepath.Join(base, "out")
	host := filepath.Join(out, hostDir(s))
	if err := os.MkdirAll(host, 0o777); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Dir(base), base, out, host} {
		os.Chmod(d, 0o777)
	}
	// b is there, unreadable: haul cannot tell whether it is done.
	if err := os.WriteFile(filepath.Join(host, "b"), []byte("not haul's"), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) result {
		t.Helper()
		ctx, cancel := haulContext(t)
		defer cancel()
		cmd, stdout, stderr := haulCmd(ctx, nil, args...)
		if os.Geteuid() == 0 {
			os.Chmod(filepath.Dir(haulBin), 0o755)
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		} else {
			os.Chmod(filepath.Join(host, "b"), 0)
		}
		err := cmd.Run()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("running haul: %v", err)
		}
		return result{code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String()}
	}
	r := run(append([]string{"-q", "-j", "1", "-d", out}, urls...)...)
	wantCode(t, r, 1)
	if !strings.Contains(r.stderr, urls[1]) || !strings.Contains(r.stderr, "permission denied") {
		t.Errorf("the failure does not name b's URL and the cause:\n%v", r)
	}
	for _, n := range []string{"a", "c", "d"} {
		if got, err := os.ReadFile(filepath.Join(host, n)); string(got) != "body of "+n {
			t.Errorf("%s: %q, %v: the entries after the unreadable file were not fetched", n, got, err)
		}
	}
	if got, _ := os.ReadFile(filepath.Join(host, "b")); string(got) != "not haul's" {
		t.Errorf("b was changed to %q", got)
	}

	// -d itself not writable: nothing can be written, so the run stops at once.
	os.Chmod(out, 0o555)
	defer os.Chmod(out, 0o777)
	if os.Geteuid() != 0 && unix.Access(out, unix.W_OK) == nil {
		t.Skip("cannot make a directory read-only for this user")
	}
	r = run("-q", "-j", "1", "--layout", "flat", "-d", out, s.Add("/e", []byte("e")), s.Add("/f", []byte("f")))
	wantCode(t, r, 3)
	if !strings.Contains(r.stderr, "permission denied") {
		t.Errorf("no clear message:\n%v", r)
	}
}

// A failed entry leaves no empty directories behind (as wget -x): they would
// stay in the mirror, and one could block a later file of the same name.
func TestE2EFailedEntriesLeaveNoDirectories(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	s.Add("/a", []byte("file a"))
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, hostDir(s), "kept"), 0o755) // the user's: never removed
	r := runHaul(t, nil, "-q", "-j", "1", "--retries", "0", "-d", dir,
		s.URL+"/a/b/missing", s.URL+"/a", s.URL+"/kept/missing", "http://127.0.0.1:1/refused/x")
	wantCode(t, r, 1)
	if got, err := os.ReadFile(filepath.Join(dir, hostDir(s), "a")); string(got) != "file a" {
		t.Errorf("a: %q, %v: blocked by the directory a failed entry left", got, err)
	}
	var left []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && p != dir {
			left = append(left, strings.TrimPrefix(p, dir+"/"))
		}
		return nil
	})
	want := []string{hostDir(s), hostDir(s) + "/a", hostDir(s) + "/kept"}
	if !slices.Equal(left, want) {
		t.Errorf("left in -d: %q, want %q", left, want)
	}
}
