package main

// Interruption tests: the real binary is stopped with SIGINT, SIGTERM, SIGHUP or
// SIGKILL in the middle of a large download, of a many-file list, or while its
// list is still being written, then run again. Nothing partial ever appears at a
// final name, every file ends up identical, and the re-run fetches far less than
// everything.

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/haul/haul/download/downloadtest"
	"github.com/haul/haul/internal/testutil"
)

// startHaul starts haul in the background; wait returns its result.
func startHaul(t *testing.T, args ...string) (*os.Process, func() result) {
	t.Helper()
	ctx, cancel := haulContext(t)
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

// checkpointed reports whether the staging file records a resume state.
func checkpointed(part string) bool {
	buf := make([]byte, 1024)
	n, err := unix.Getxattr(part, "user.haul.resume", buf)
	return err == nil && n > 0
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
	data := testutil.Payload(1, size)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			s := downloadtest.New(t)
			// The first response stalls at 40 MiB: the signal comes before
			// the end however slow the machine is to notice the checkpoint.
			url := s.Add("/big.bin", data, downloadtest.Stall(40<<20, time.Hour, 1))
			dir := t.TempDir()
			part := filepath.Join(dir, hostDir(s), "big.bin.part")
			// One connection: this is about its checkpoints (split_test.go
			// has those of pieces).
			proc, wait := startHaul(t, "-q", "-d", dir, "--split", "1", "--limit-rate", "24M", url)
			// Past the 32 MiB checkpoint, and it recorded (its flush runs on
			// another goroutine: a kill before it ends loses it, and the whole
			// file is fetched again, as the README says).
			if !waitFor(t, func() bool { return fileSize(part) >= 36<<20 && checkpointed(part) }) {
				t.Fatalf("partial file did not reach 36 MiB with its checkpoint: %d\n%v", fileSize(part), wait())
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
			wantCode(t, runHaul(t, nil, "-q", "-d", dir, "--split", "1", url), exitOK)
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
		sig      syscall.Signal
		requests int // the signal comes once the server has had this many
	}{
		{syscall.SIGINT, 40},
		{syscall.SIGKILL, 25},
		{syscall.SIGKILL, 80},
	} {
		t.Run(fmt.Sprintf("%s-after-%d-requests", tc.sig, tc.requests), func(t *testing.T) {
			s := downloadtest.New(t)
			release := make(chan struct{})
			want := map[string][]byte{}
			var lines []string
			for i := range n {
				b := testutil.Payload(uint64(100+i), 20_000+i*100)
				p := fmt.Sprintf("/f/%03d.bin", i)
				if i >= n-4 {
					// The last files are held until the signal was sent: the
					// run cannot end before it.
					lines = append(lines, s.Handle(p, heldUntil(release, b)))
				} else {
					lines = append(lines, s.Add(p, b, downloadtest.Delay(30*time.Millisecond)))
				}
				want[hostDir(s)+p] = b
			}
			list := writeList(t, lines...)
			dir := t.TempDir()
			proc, wait := startHaul(t, "-q", "-j", "4", "-i", list, "-d", dir)
			if !waitFor(t, func() bool { return s.TotalRequests() >= tc.requests }) {
				proc.Kill()
				t.Fatalf("only %d requests\n%v", s.TotalRequests(), wait())
			}
			proc.Signal(tc.sig)
			r := wait()
			close(release)
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
			if first < tc.requests || len(done) == n {
				t.Fatalf("interrupted run made %d requests and finished %d files: the signal came too early or too late", first, len(done))
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

// SIGINT, SIGTERM or SIGHUP mid-run: haul stops with exit 130 (at once: its
// stalled transfers would last an hour), says to run again, leaves nothing
// partial at a final name, and a re-run completes the rest.
func TestE2EInterrupt(t *testing.T) {
	t.Parallel()
	for _, sig := range []os.Signal{os.Interrupt, syscall.SIGTERM, syscall.SIGHUP} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			s := downloadtest.New(t)
			h := hostDir(s)
			want := map[string][]byte{}
			var fast, slow, lines []string
			for i := range 8 {
				p := fmt.Sprintf("/fast/%d.bin", i)
				b := testutil.Payload(uint64(1100+i), 2000)
				lines = append(lines, s.Add(p, b))
				want[h+p] = b
				fast = append(fast, p)
			}
			for i := range 4 {
				p := fmt.Sprintf("/slow/%d.bin", i)
				b := testutil.Payload(uint64(1200+i), 256<<10)
				// The first request of each sends 64 KiB, then stalls until the
				// client goes away (--timeout 1h); later requests are served
				// normally.
				lines = append(lines, s.Add(p, b, downloadtest.Stall(64<<10, time.Hour, 1)))
				want[h+p] = b
				slow = append(slow, p)
			}
			list := writeList(t, lines...)
			dir := filepath.Join(t.TempDir(), "out")
			man := filepath.Join(t.TempDir(), "m.jsonl")

			cmd, _, stderr := haulCmd(t.Context(), nil, "-i", list, "-d", dir, "-j", "16", "--timeout", "1h", "--manifest", man)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			ready := waitFor(t, func() bool {
				for _, p := range fast {
					if _, err := os.Stat(filepath.Join(dir, h, p)); err != nil {
						return false
					}
				}
				for _, p := range slow {
					fi, err := os.Stat(filepath.Join(dir, h, p) + ".part")
					if err != nil || fi.Size() < 64<<10 {
						return false
					}
				}
				return true
			})
			if !ready {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("the fast files and the slow files' first 64 KiB did not arrive:\n%s", stderr)
			}
			t0 := time.Now()
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			waited := make(chan struct{})
			go func() { cmd.Wait(); close(waited) }()
			select {
			case <-waited:
			case <-time.After(testutil.Patience(t)):
				cmd.Process.Kill()
				<-waited
				t.Fatalf("haul still running long after %v:\n%s", sig, stderr)
			}
			t.Logf("stopped %v after %v", time.Since(t0), sig)
			if code := cmd.ProcessState.ExitCode(); code != 130 {
				t.Errorf("exit code %d after %v, want 130\n%s", code, sig, stderr)
			}
			if !regexp.MustCompile(`(?i)interrupt`).MatchString(stderr.String()) ||
				!regexp.MustCompile(`(?i)resume|again`).MatchString(stderr.String()) {
				t.Errorf("stderr does not say it was interrupted and how to resume:\n%s", stderr)
			}
			// Nothing partial at a final name: every final file is the whole file.
			for name, b := range files(t, dir) {
				if strings.HasSuffix(name, ".part") {
					continue
				}
				if w, ok := want[name]; !ok || !bytes.Equal(w, b) {
					t.Errorf("after %v, %s holds %d bytes that are not the %d served", sig, name, len(b), len(w))
				}
			}
			for _, p := range slow {
				if _, err := os.Stat(filepath.Join(dir, h, p)); err == nil {
					t.Errorf("%s is at its final name though it never finished", p)
				}
			}
			for _, m := range readManifest(t, man) {
				if m.Status == "failed" && !strings.Contains(str(m.Error), "interrupt") {
					t.Errorf("an entry failed for another reason than the interrupt: %+v", m)
				}
			}

			r := runHaul(t, nil, "-i", list, "-d", dir, "-j", "16")
			wantCode(t, r, 0)
			checkFiles(t, dir, want)
			for _, p := range fast {
				if n := s.Requests(p); n != 1 {
					t.Errorf("%s, finished before the interrupt, requested %d times", p, n)
				}
			}
		})
	}
}

// Ctrl-C while the list is still being written (a pipe held open, as with
// `tail -f list | haul` or a slow producer) stops haul all the same.
func TestE2EInterruptWhileReadingInput(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	b := testutil.Payload(1900, 1000)
	u := s.Add("/first.bin", b)
	dir := filepath.Join(t.TempDir(), "out")
	cmd, w, stderr := startPiped(t, "-d", dir)
	defer w.Close()
	fmt.Fprintln(w, u)
	if !waitFor(t, func() bool { _, err := os.Stat(filepath.Join(dir, hostDir(s), "first.bin")); return err == nil }) {
		t.Fatalf("the first entry never arrived:\n%s", stderr)
	}
	t0 := time.Now()
	cmd.Process.Signal(os.Interrupt)
	waited := make(chan struct{})
	go func() { cmd.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(testutil.Patience(t)):
		t.Errorf("haul still running long after SIGINT while stdin is open (it only stops when stdin closes)")
		w.Close()
		select {
		case <-waited:
			t.Logf("it stopped once stdin was closed, exit %d", cmd.ProcessState.ExitCode())
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-waited
		}
		return
	}
	t.Logf("stopped %v after SIGINT", time.Since(t0))
	if code := cmd.ProcessState.ExitCode(); code != 130 {
		t.Errorf("exit code %d, want 130\n%s", code, stderr)
	}
}

// A second Ctrl-C ends haul at once, even while the first one is being handled
// (here: a transfer stalled and the list still open on a pipe).
func TestE2ESecondInterrupt(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	u := s.Add("/stuck.bin", testutil.Payload(1901, 256<<10), downloadtest.Stall(64<<10, time.Minute, downloadtest.Always))
	dir := filepath.Join(t.TempDir(), "out")
	cmd, w, stderr := startPiped(t, "-d", dir)
	defer w.Close()
	fmt.Fprintln(w, u)
	part := filepath.Join(dir, hostDir(s), "stuck.bin.part")
	if !waitFor(t, func() bool { fi, err := os.Stat(part); return err == nil && fi.Size() >= 64<<10 }) {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("no progress:\n%s", stderr)
	}
	waited := make(chan struct{})
	go func() { cmd.Wait(); close(waited) }()
	cmd.Process.Signal(os.Interrupt)
	select {
	case <-waited:
		t.Logf("the first SIGINT was enough")
	case <-time.After(300 * time.Millisecond):
		t0 := time.Now()
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-waited:
			t.Logf("stopped %v after the second SIGINT", time.Since(t0))
		case <-time.After(testutil.Patience(t)):
			cmd.Process.Kill()
			<-waited
			t.Fatalf("haul survived a second SIGINT")
		}
	}
	if code := cmd.ProcessState.ExitCode(); code != 130 && code != -1 {
		t.Errorf("exit code %d, want 130 or killed by the signal", code)
	}
	if _, err := os.Stat(filepath.Join(dir, hostDir(s), "stuck.bin")); err == nil {
		t.Errorf("a partial file is at the final name")
	}
}

// kill -9 mid-run: nothing partial at a final name, and a re-run finishes.
func TestE2EKill9(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	want := map[string][]byte{}
	var lines []string
	for i := range 6 {
		p := fmt.Sprintf("/k/%d.bin", i)
		b := testutil.Payload(uint64(1950+i), 200<<10)
		var opts []downloadtest.FileOption
		if i%2 == 1 {
			opts = append(opts, downloadtest.Stall(100<<10, time.Minute, 1))
		}
		lines = append(lines, s.Add(p, b, opts...))
		want[hostDir(s)+p] = b
	}
	list := writeList(t, lines...)
	dir := filepath.Join(t.TempDir(), "out")
	cmd, _, stderr := haulCmd(t.Context(), nil, "-i", list, "-d", dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if !waitFor(t, func() bool {
		for i := 1; i < 6; i += 2 {
			fi, err := os.Stat(filepath.Join(dir, hostDir(s), "k", fmt.Sprint(i, ".bin.part")))
			if err != nil || fi.Size() < 100<<10 {
				return false
			}
		}
		return true
	}) {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("no progress:\n%s", stderr)
	}
	cmd.Process.Kill()
	cmd.Wait()
	for name, b := range files(t, dir) {
		if !strings.HasSuffix(name, ".part") && !bytes.Equal(b, want[name]) {
			t.Errorf("after kill -9, %s holds %d bytes that are not the file", name, len(b))
		}
	}
	r := runHaul(t, nil, "-i", list, "-d", dir)
	wantCode(t, r, 0)
	checkFiles(t, dir, want)
}

// Ctrl-C with entries read but not started (--per-host 1 holds three of the
// four workers, and two entries wait in the channel): every line of the list,
// which was read to the end, is in the manifest, and the summary counts them,
// so that a list filtered to the failures is the rest of the work.
func TestE2EInterruptReportsEntriesNotStarted(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	var lines []string
	for i := range 6 {
		lines = append(lines, s.Add(fmt.Sprintf("/s%d", i), testutil.Payload(uint64(1300+i), 200<<10),
			downloadtest.Stall(16<<10, time.Minute, downloadtest.Always)))
	}
	list := writeList(t, lines...)
	dir := t.TempDir()
	man := filepath.Join(t.TempDir(), "m.jsonl")
	// Plain progress says when the list was read to the end ("N/6 files",
	// no "+").
	cmd, _, _ := haulCmd(t.Context(), nil, "-i", list, "-d", dir, "-j", "4", "--per-host", "1", "--manifest", man,
		"--progress", "plain", "--progress-interval", "20ms")
	stderr := new(syncBuffer)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if !waitFor(t, func() bool { return s.TotalRequests() >= 1 && strings.Contains(stderr.String(), "/6 files") }) {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("no request started, or the list was not read:\n%s", stderr)
	}
	cmd.Process.Signal(os.Interrupt)
	cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != exitInterrupted {
		t.Fatalf("exit %d, want %d\n%s", code, exitInterrupted, stderr)
	}
	got := byURL(t, readManifest(t, man))
	for _, u := range lines {
		if m, ok := got[u]; !ok || m.Status != "failed" || !strings.Contains(str(m.Error), "interrupted") {
			t.Errorf("%s: %+v, want failed as interrupted", u, m)
		}
	}
	if !strings.Contains(stderr.String(), "interrupted: 6 stopped unfinished") {
		t.Errorf("the summary does not count them:\n%s", stderr)
	}
}

// heldUntil serves body once release is closed (or nothing, if the client
// goes away first).
func heldUntil(release <-chan struct{}, body []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	})
}
