package main

// Resume tests: re-runs that skip what is done (checked by size= and sha256=
// where the line gives them), partial files resumed with Range and If-Range, and
// two processes sharing one directory.

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/haul/haul/download/downloadtest"
	"github.com/haul/haul/internal/testutil"
)

// A thousand files arrive byte-identical with -j 16; the manifest has one
// valid line per entry; a second run skips them all without a single request.
func TestE2EThousandFiles(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	const n = 1000
	var lines []string
	want := map[string][]byte{}
	paths := map[string]string{} // URL -> served path
	for i := range n {
		p := fmt.Sprintf("/d%02d/f%04d.bin", i%25, i)
		b := testutil.Payload(uint64(i), i*977%6000) // 0 to 6000 bytes, the first one empty
		u := s.Add(p, b)
		lines = append(lines, u)
		want[hostDir(s)+p] = b
		paths[u] = p
	}
	list := writeList(t, lines...)
	dir := filepath.Join(t.TempDir(), "out")
	man := filepath.Join(t.TempDir(), "m.jsonl")

	r := runHaul(t, nil, "-i", list, "-d", dir, "-j", "16", "--manifest", man)
	wantCode(t, r, 0)
	t.Logf("first run: %v", r.dur)
	checkFiles(t, dir, want)
	ms := readManifest(t, man)
	if len(ms) != n {
		t.Errorf("manifest has %d lines, want %d", len(ms), n)
	}
	for u, m := range byURL(t, ms) {
		p, ok := paths[u]
		if !ok {
			t.Errorf("manifest lists unknown URL %q", u)
			continue
		}
		b := want[hostDir(s)+p]
		if m.Status != "ok" || str(m.Out) != hostDir(s)+p || m.Size == nil || *m.Size != int64(len(b)) ||
			m.HTTPStatus == nil || *m.HTTPStatus != 200 || m.Error != nil || m.Attempts != 1 || m.DurationMS < 0 {
			t.Errorf("manifest line for %s: %+v (out %s)", u, m, str(m.Out))
		}
	}
	for u, p := range paths {
		if got := s.Requests(p); got != 1 {
			t.Errorf("%s requested %d times, want 1", u, got)
		}
	}

	before := s.TotalRequests()
	r = runHaul(t, nil, "-i", list, "-d", dir, "-j", "16", "--manifest", man)
	wantCode(t, r, 0)
	t.Logf("second run: %v", r.dur)
	if got := s.TotalRequests() - before; got != 0 {
		t.Errorf("second run made %d requests, want 0", got)
	}
	checkFiles(t, dir, want)
	ms = readManifest(t, man)
	if len(ms) != n {
		t.Errorf("second manifest has %d lines, want %d", len(ms), n)
	}
	for u, m := range byURL(t, ms) {
		b := want[hostDir(s)+paths[u]]
		if m.Status != "skipped" || m.Size == nil || *m.Size != int64(len(b)) || m.Error != nil {
			t.Errorf("second manifest line for %s: %+v", u, m)
		}
	}
	if !strings.Contains(r.stderr, "0 ok, 1000 skipped, 0 failed, 0 invalid") {
		t.Errorf("second run's summary does not count 1000 skipped:\n%s", r.stderr)
	}
}

// A re-run after Ctrl-C resumes partial files with Range requests
// guarded by the validator (If-Range) rather than fetching them again.
func TestE2EResumeAfterInterrupt(t *testing.T) {
	t.Parallel()
	for _, force := range []bool{false, true} {
		t.Run(fmt.Sprintf("force=%v", force), func(t *testing.T) {
			t.Parallel()
			resumeAfterInterrupt(t, force)
		})
	}
}

// resumeAfterInterrupt: the first run (with --force or not) is interrupted, and
// the re-run the summary advises resumes the partial file.
func resumeAfterInterrupt(t *testing.T, force bool) {
	s := downloadtest.New(t)
	b := testutil.Payload(1300, 512<<10)
	u := s.Add("/big.bin", b, downloadtest.Stall(128<<10, time.Minute, 1))
	dir := filepath.Join(t.TempDir(), "out")
	part := filepath.Join(dir, hostDir(s), "big.bin.part")
	args := []string{"-d", dir, u}
	if force {
		args = append(args, "--force")
	}
	cmd, _, stderr := haulCmd(t.Context(), nil, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if !waitFor(t, func() bool {
		fi, err := os.Stat(part)
		return err == nil && fi.Size() >= 128<<10
	}) {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("the first 128 KiB never arrived:\n%s", stderr)
	}
	cmd.Process.Signal(os.Interrupt)
	cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 130 {
		t.Errorf("exit code %d, want 130\n%s", code, stderr)
	}
	advice := "run the same command again"
	if force {
		advice = "run the same command without --force"
	}
	if !strings.Contains(stderr.String(), advice) {
		t.Errorf("stderr does not advise %q:\n%s", advice, stderr)
	}
	fi, err := os.Stat(part)
	if err != nil || fi.Size() != 128<<10 {
		t.Errorf("after Ctrl-C the partial file is gone or changed (%v): nothing left to resume", err)
	}
	sent := s.BodyBytes()
	r := runHaul(t, nil, "-d", dir, u)
	wantCode(t, r, 0)
	checkFiles(t, dir, map[string][]byte{hostDir(s) + "/big.bin": b})
	log := s.Log("/big.bin")
	if last := log[len(log)-1]; last.Range != "bytes=131072-" || last.IfRange == "" {
		t.Errorf("re-run asked for Range %q If-Range %q, want bytes=131072- guarded by the ETag", last.Range, last.IfRange)
	}
	if again := s.BodyBytes() - sent; again != int64(len(b)-128<<10) {
		t.Errorf("re-run fetched %d bytes, want the missing %d", again, len(b)-128<<10)
	}
}

// A re-run skips what is on disk only when it matches size=/sha256=; --force
// fetches everything again.
func TestE2ESkipChecks(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	b := testutil.Payload(1601, 5000)
	u := s.Add("/s.bin", b)
	final := filepath.Join(hostDir(s), "s.bin")
	dir := filepath.Join(t.TempDir(), "out")
	line := u + " size=" + fmt.Sprint(len(b)) + " sha256=" + testutil.SHA256Hex(b)
	wantCode(t, runHaul(t, nil, "-d", dir, line), 0)

	r := runHaul(t, nil, "-d", dir, "--manifest", "-", line)
	wantCode(t, r, 0)
	if ms := parseManifest(t, r.stdout); len(ms) != 1 || ms[0].Status != "skipped" || str(ms[0].SHA256) != testutil.SHA256Hex(b) {
		t.Errorf("skip with sha256= checked: %s", r.stdout)
	}
	if n := s.Requests("/s.bin"); n != 1 {
		t.Fatalf("requests: %d, want 1", n)
	}
	// Same size, other bytes: sha256= catches it.
	corrupt := bytes.Clone(b)
	corrupt[100] ^= 1
	if err := os.WriteFile(filepath.Join(dir, final), corrupt, 0o644); err != nil {
		t.Fatal(err)
	}
	wantCode(t, runHaul(t, nil, "-d", dir, line), 0)
	if n := s.Requests("/s.bin"); n != 2 {
		t.Errorf("a file whose sha256 differs was not fetched again (requests %d)", n)
	}
	checkFiles(t, dir, map[string][]byte{final: b})
	// Truncated: size= catches it.
	if err := os.WriteFile(filepath.Join(dir, final), b[:10], 0o644); err != nil {
		t.Fatal(err)
	}
	wantCode(t, runHaul(t, nil, "-d", dir, u+" size="+fmt.Sprint(len(b))), 0)
	if n := s.Requests("/s.bin"); n != 3 {
		t.Errorf("a file whose size differs was not fetched again (requests %d)", n)
	}
	checkFiles(t, dir, map[string][]byte{final: b})
	// Without size= or sha256=, existence is enough.
	wantCode(t, runHaul(t, nil, "-d", dir, u), 0)
	if n := s.Requests("/s.bin"); n != 3 {
		t.Errorf("an existing file was fetched again (requests %d)", n)
	}
	wantCode(t, runHaul(t, nil, "-d", dir, "--force", u), 0)
	if n := s.Requests("/s.bin"); n != 4 {
		t.Errorf("--force did not fetch again (requests %d)", n)
	}
}

// Two haul processes on one directory never corrupt each other's files.
func TestE2ETwoProcessesOneDir(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	var urls []string
	want := map[string][]byte{}
	for i := range 12 {
		p := fmt.Sprintf("/two/%d.bin", i)
		b := testutil.Payload(uint64(1800+i), 256<<10)
		urls = append(urls, s.Add(p, b, downloadtest.Stall(64<<10, 200*time.Millisecond, downloadtest.Always)))
		want[hostDir(s)+p] = b
	}
	list := writeList(t, urls...)
	dir := filepath.Join(t.TempDir(), "out")
	var wg sync.WaitGroup
	var res [2]result
	for i := range res {
		wg.Go(func() { res[i] = runHaul(t, nil, "-i", list, "-d", dir) })
	}
	wg.Wait()
	checkFiles(t, dir, want)
	for i, r := range res {
		if r.code != 0 {
			t.Errorf("process %d: %v", i, r)
		}
	}
}

// Two processes started at once on the same list and directory never write the
// same file together: both finish, every file is correct, and each file is
// fetched about once.
func TestTwoProcessesOneDirectory(t *testing.T) {
	const n = 60
	s := downloadtest.New(t)
	want := map[string][]byte{}
	var lines []string
	for i := range n {
		b := testutil.Payload(uint64(500+i), 200_000)
		p := fmt.Sprintf("/g/%02d.bin", i)
		lines = append(lines, s.Add(p, b, downloadtest.Delay(20*time.Millisecond)))
		want[hostDir(s)+p] = b
	}
	list := writeList(t, lines...)
	dir := t.TempDir()
	var wg sync.WaitGroup
	results := make([]result, 2)
	for i := range results {
		wg.Go(func() { results[i] = runHaul(t, nil, "-q", "-j", "4", "-i", list, "-d", dir) })
	}
	wg.Wait()
	for _, r := range results {
		wantCode(t, r, exitOK)
	}
	checkFiles(t, dir, want)
	if total := s.TotalRequests(); total > n+8 {
		t.Errorf("%d requests for %d files: files were fetched twice", total, n)
	}
}
