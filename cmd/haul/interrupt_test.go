package main

// Process-level interruption tests: the real binary is stopped with SIGINT or
// SIGKILL in the middle of a large download and of a many-file list, then run
// again. Every file must end up identical, and the re-run must fetch far less
// than everything.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/haul/haul/download/downloadtest"
)

// startHaul starts haul in the background; wait returns its result.
func startHaul(t *testing.T, args ...string) (*os.Process, func() result) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runHaulTimeout)
	cmd, stdout, stderr := haulCmd(ctx, nil, args...)
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	return cmd.Process, func() result {
		defer cancel()
		cmd.Wait()
		return result{code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String(),
			dur: time.Since(t0)}
	}
}

func fileSize(name string) int64 {
	fi, err := os.Stat(name)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// A large download stopped after its first checkpoint (32 MiB) resumes from
// there, whether it was stopped cleanly (SIGINT: from where it stopped) or
// killed (SIGKILL: from the last checkpoint).
func TestInterruptLargeFile(t *testing.T) {
	const size = 48 << 20
	data := body(1, size)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			s := downloadtest.New(t)
			url := s.Add("/big.bin", data)
			dir := t.TempDir()
			part := filepath.Join(dir, hostDir(s), "big.bin.part")
			proc, wait := startHaul(t, "-q", "-d", dir, "--limit-rate", "24M", url)
			if !waitFor(20*time.Second, func() bool { return fileSize(part) >= 36<<20 }) {
				t.Fatalf("partial file did not reach 36 MiB: %d\n%v", fileSize(part), wait())
			}
			proc.Signal(sig)
			r := wait()
			if sig == syscall.SIGINT {
				wantCode(t, r, exitInterrupted)
			}
			if _, err := os.Stat(filepath.Join(dir, hostDir(s), "big.bin")); err == nil {
				t.Fatal("final name exists after the interruption")
			}
			sent := s.BodyBytes()
			wantCode(t, runHaul(t, nil, "-q", "-d", dir, url), exitOK)
			checkFiles(t, dir, map[string][]byte{hostDir(s) + "/big.bin": data})
			again := s.BodyBytes() - sent
			limit := int64(size - 32<<20 + 1<<20) // at most what followed the checkpoint
			if sig == syscall.SIGINT {
				limit = size - 36<<20 + 1<<20 // a clean stop keeps everything
			}
			if again > limit {
				t.Errorf("re-run fetched %d bytes, want at most %d of %d", again, limit, size)
			}
			if rs := s.RangeRequests("/big.bin"); len(rs) != 1 {
				t.Errorf("Range requests %q, want one", rs)
			}
		})
	}
}

// A many-file list stopped at several moments (some files done, some in flight,
// some being renamed) finishes correctly on a re-run, fetching each file about
// once in all.
func TestInterruptManyFiles(t *testing.T) {
	const n = 150
	for _, tc := range []struct {
		sig   syscall.Signal
		after time.Duration
	}{
		{syscall.SIGINT, 300 * time.Millisecond},
		{syscall.SIGKILL, 200 * time.Millisecond},
		{syscall.SIGKILL, 600 * time.Millisecond},
	} {
		t.Run(fmt.Sprintf("%s-after-%s", tc.sig, tc.after), func(t *testing.T) {
			s := downloadtest.New(t)
			want := map[string][]byte{}
			var lines []string
			for i := range n {
				b := body(uint64(100+i), 20_000+i*100)
				p := fmt.Sprintf("/f/%03d.bin", i)
				lines = append(lines, s.Add(p, b, downloadtest.Delay(30*time.Millisecond)))
				want[hostDir(s)+p] = b
			}
			list := writeList(t, lines...)
			dir := t.TempDir()
			proc, wait := startHaul(t, "-q", "-j", "4", "-i", list, "-d", dir)
			time.Sleep(tc.after)
			proc.Signal(tc.sig)
			r := wait()
			if tc.sig == syscall.SIGINT {
				wantCode(t, r, exitInterrupted)
				if !strings.Contains(r.stderr, "run the same command again") {
					t.Errorf("no resume hint on stderr:\n%s", r.stderr)
				}
			}
			// Whatever is at a final name is complete and correct. What is not
			// final is either a .part (in flight, or finished and waiting for the
			// group commit's sync) or was never started.
			done, parts := map[string]bool{}, 0
			for name, b := range files(t, dir) {
				if strings.HasSuffix(name, ".part") {
					parts++
					continue
				}
				done[name] = true
				if string(b) != string(want[name]) {
					t.Errorf("%s at its final name differs from the source after %s", name, tc.sig)
				}
			}
			first := s.TotalRequests()
			if first == 0 || first >= n {
				t.Fatalf("interrupted run made %d requests: the signal came too early or too late", first)
			}
			wantCode(t, runHaul(t, nil, "-q", "-j", "4", "-i", list, "-d", dir), exitOK)
			checkFiles(t, dir, want)
			// A file finished in the first run is never requested again. A file
			// requested twice was not final: it was in flight, or complete but
			// waiting for the batch's sync when the process died (staged as a
			// .part, or unnamed: small files are, see sink/tmpfile.go), so it
			// is among the first run's requests that did not end final.
			var twice []string
			for _, l := range lines {
				p := l[strings.Index(l, "/f/"):]
				k := s.Requests(p)
				if k > 1 {
					twice = append(twice, fmt.Sprintf("%s:%d", p, k))
				}
				if done[hostDir(s)+p] && k != 1 {
					t.Errorf("%s was final after the first run but requested %d times", p, k)
				}
			}
			if len(twice) > first-len(done) {
				t.Errorf("%d files requested more than once, but only %d of the first run's %d requests did not end final: %v",
					len(twice), first-len(done), first, twice)
			}
			t.Logf("first run: %d requests, %d final, %d .part; both runs: %d requests for %d files",
				first, len(done), parts, s.TotalRequests(), n)
		})
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
		b := body(uint64(500+i), 200_000)
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
