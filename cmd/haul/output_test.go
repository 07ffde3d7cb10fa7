package main

// Output tests: usage errors and exit codes, what is printed (quiet, plain,
// progress bar on a terminal, summary), and the manifest: on stdout, as an input
// list, and when its reader leaves.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/haul/haul/download/downloadtest"
	"github.com/haul/haul/internal/testutil"
)

// Usage errors exit 2 and touch nothing; an output directory that cannot be
// created exits 3 with a clear message.
func TestE2EUsageErrors(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	u := s.Add("/u.bin", []byte("x"))
	list := writeList(t, u)
	tmp := t.TempDir()
	regular := filepath.Join(tmp, "regular")
	if err := os.WriteFile(regular, []byte("a file"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args  []string
		codes []int
		want  string // in stderr
	}{
		{[]string{"--no-such-flag", u}, []int{2}, "no-such-flag"},
		{[]string{"--shard", "3/3", u}, []int{2}, "shard"},
		{[]string{"--shard", "-1/3", u}, []int{2}, "shard"},
		{[]string{"--shard", "1", u}, []int{2}, "shard"},
		{[]string{"--layout", "nope", u}, []int{2}, "layout"},
		{[]string{"-i", "/nonexistent/list.txt"}, []int{2}, "/nonexistent/list.txt"},
		{[]string{"-i", list, u}, []int{2}, "not both"},
		{[]string{"-j", "0", u}, []int{2}, "jobs"},
		{[]string{"--streams", "0", u}, []int{2}, "streams"},
		{[]string{"--retries", "-1", u}, []int{2}, "retries"},
		{[]string{"--timeout", "soon", u}, []int{2}, "timeout"},
		{[]string{"--timeout", "0s", u}, []int{2}, "timeout"},
		{[]string{"--limit-rate", "fast", u}, []int{2}, "limit-rate"},
		{[]string{"-H", "no colon", u}, []int{2}, "header"},
		{[]string{"-H", "Bad(Name): v", u}, []int{2}, "header"},
		{[]string{"-H", "X: a\x01b", u}, []int{2}, "header"},
		{[]string{"--limit-rate", "NaN", u}, []int{2}, "limit-rate"},
		{[]string{"-d", "", u}, []int{2}, "--dir is empty"},
		{[]string{"--compress-level", "9", u}, []int{2}, "--compress-level needs --compress"},
		{[]string{u, ""}, []int{2}, "argument 2"},
		{[]string{u, "-d"}, []int{2}, "needs an argument"},
		{[]string{u + "\n" + u}, []int{2}, "argument 1"},
		{[]string{"--cacert", "/nonexistent/ca.pem", u}, []int{2}, "cacert"},
		{[]string{"--cacert", regular, u}, []int{2}, "no PEM certificates"},
		{[]string{"--user-agent", "a\x01b", u}, []int{2}, "--user-agent"},
		{[]string{"--manifest", "/nonexistent/dir/m.jsonl", u}, []int{2, 3}, "manifest"},
		{[]string{"-d", filepath.Join(regular, "sub"), u}, []int{3}, "output directory"},
		{[]string{"-d", regular, u}, []int{3}, "output directory"},
	} {
		t.Run(strings.Join(tc.args[:len(tc.args)-1], " "), func(t *testing.T) {
			t.Parallel()
			args := tc.args
			if !slices.Contains(args, "-d") {
				args = append([]string{"-d", filepath.Join(t.TempDir(), "out")}, args...)
			}
			r := runHaul(t, nil, args...)
			if !slices.Contains(tc.codes, r.code) {
				t.Errorf("exit code %d, want %v\n%v", r.code, tc.codes, r)
			}
			if !strings.Contains(r.stderr, "haul: ") || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("stderr does not say haul: ... %s:\n%s", tc.want, r.stderr)
			}
			if r.stdout != "" {
				t.Errorf("stdout: %q", r.stdout)
			}
			if _, err := os.Stat(args[1]); err == nil && r.code == 2 {
				// Noted, not failed: run() creates --dir
				// before it opens --manifest.
				t.Logf("NOTE: the usage error left the output directory %s created", args[1])
			}
			t.Logf("%v: exit %d: %s", tc.args, r.code, strings.TrimSpace(lastLine(r.stderr)))
		})
	}
	t.Cleanup(func() {
		if n := s.TotalRequests(); n != 0 {
			t.Errorf("usage errors made %d requests", n)
		}
		if b, err := os.ReadFile(regular); err != nil || string(b) != "a file" {
			t.Errorf("the regular file given as -d was changed: %q %v", b, err)
		}
	})
}

// -q prints nothing on success; without it a non-terminal stderr gets plain
// lines (no bar, no escape codes) and a summary; --manifest - keeps stdout pure JSON.
func TestE2EReporting(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	b1, b2 := testutil.Payload(1301, 3000), testutil.Payload(1302, 4000)
	u1, u2 := s.Add("/r/1.bin", b1), s.Add("/r/2.bin", b2)
	missing := s.URL + "/r/missing.bin"
	t.Run("quiet success", func(t *testing.T) {
		t.Parallel()
		r := runHaul(t, nil, "-q", "-d", filepath.Join(t.TempDir(), "out"), u1, u2)
		wantCode(t, r, 0)
		if r.stderr != "" || r.stdout != "" {
			t.Errorf("-q printed something:\n%v", r)
		}
	})
	t.Run("quiet failure", func(t *testing.T) {
		t.Parallel()
		r := runHaul(t, nil, "-q", "-d", filepath.Join(t.TempDir(), "out"), u1, missing)
		wantCode(t, r, 1)
		if !strings.Contains(r.stderr, missing) || !strings.Contains(r.stderr, "404") {
			t.Errorf("-q hid the error:\n%v", r)
		}
		if strings.Contains(r.stderr, "skipped") || strings.Contains(r.stderr, u1) {
			t.Errorf("-q printed more than errors:\n%v", r)
		}
	})
	t.Run("plain", func(t *testing.T) {
		t.Parallel()
		r := runHaul(t, nil, "-d", filepath.Join(t.TempDir(), "out"), u1, u2)
		wantCode(t, r, 0)
		if r.stdout != "" {
			t.Errorf("stdout: %q", r.stdout)
		}
		if !regexp.MustCompile(`(?m)^haul: 2 ok, 0 skipped, 0 failed, 0 invalid; .* in .*$`).MatchString(r.stderr) {
			t.Errorf("no summary line on stderr:\n%s", r.stderr)
		}
		if strings.ContainsAny(r.stderr, "\r\x1b") {
			t.Errorf("terminal control characters on a non-terminal stderr: %q", r.stderr)
		}
	})
	t.Run("manifest on stdout", func(t *testing.T) {
		t.Parallel()
		r := runHaul(t, strings.NewReader(u1+"\nftp://x/y\n"+missing+"\n"+u2+"\n"),
			"-d", filepath.Join(t.TempDir(), "out"), "--manifest", "-")
		wantCode(t, r, 1)
		ms := parseManifest(t, r.stdout)
		var st []string
		for _, m := range ms {
			st = append(st, m.Status)
		}
		slices.Sort(st)
		if !slices.Equal(st, []string{"failed", "invalid", "ok", "ok"}) {
			t.Errorf("manifest statuses %q\n%s", st, r.stdout)
		}
		if !strings.Contains(r.stderr, "haul: input line 2: ") || !strings.Contains(r.stderr, missing) {
			t.Errorf("errors are not on stderr:\n%s", r.stderr)
		}
	})
}

// A manifest filtered to its failed lines is a valid input list.
func TestE2EManifestAsInput(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	b1, b2, b3 := testutil.Payload(1501, 100), testutil.Payload(1502, 200), testutil.Payload(1503, 300)
	u1 := s.Add("/m/1.bin", b1)
	u2 := s.URL + "/m/2.bin" // 404 at first
	u3 := s.Add("/m/3.bin", b3)
	want3 := testutil.SHA256Hex(testutil.Payload(1504, 300)) // the publisher's hash: what is served is wrong
	dir := filepath.Join(t.TempDir(), "out")
	man := filepath.Join(t.TempDir(), "m.jsonl")
	list := writeList(t, u1, u2, u3+" sha256="+want3+" size=300")
	r := runHaul(t, nil, "-d", dir, "--manifest", man, "-i", list)
	wantCode(t, r, 1)
	raw, err := os.ReadFile(man)
	if err != nil {
		t.Fatal(err)
	}
	var failed []string
	for _, l := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		if strings.Contains(l, `"status":"failed"`) {
			failed = append(failed, l)
		}
	}
	if len(failed) != 2 {
		t.Fatalf("failed lines: %q", failed)
	}
	// A failed line carries what was expected, never what came: fed back, it
	// checks the same.
	for _, l := range failed {
		if strings.Contains(l, u3) && (!strings.Contains(l, `"sha256":"`+want3+`"`) || strings.Contains(l, `"sha256":"`+testutil.SHA256Hex(b3))) {
			t.Errorf("failed line does not carry the expected hash %s:\n%s", want3, l)
		}
	}
	s.Add("/m/2.bin", b2)
	r = runHaul(t, strings.NewReader(strings.Join(failed, "\n")+"\n"), "-d", dir)
	wantCode(t, r, 1) // 3.bin is still not what its publisher hashed
	if !strings.Contains(r.stderr, "3.bin") || !strings.Contains(r.stderr, want3) {
		t.Errorf("the re-run does not report 3.bin's checksum:\n%s", r.stderr)
	}
	checkFiles(t, dir, map[string][]byte{hostDir(s) + "/m/1.bin": b1, hostDir(s) + "/m/2.bin": b2})
	if _, err := os.Stat(filepath.Join(dir, hostDir(s), "m", "3.bin")); err == nil {
		t.Error("3.bin is at its final name although its hash is wrong")
	}
	if n := s.Requests("/m/1.bin"); n != 1 {
		t.Errorf("the ok entry was fetched %d times", n)
	}
}

// With stderr on a terminal haul draws a progress bar there, and finishes as usual.
func TestE2EProgressBarOnTerminal(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	want := map[string][]byte{}
	var urls []string
	for i := range 20 {
		p := fmt.Sprintf("/bar/%d.bin", i)
		b := testutil.Payload(uint64(2000+i), 50<<10)
		urls = append(urls, s.Add(p, b, downloadtest.Delay(time.Duration(i)*10*time.Millisecond)))
		want[hostDir(s)+p] = b
	}
	master, tty := openPTY(t)
	var out bytes.Buffer
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			out.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}()
	dir := filepath.Join(t.TempDir(), "out")
	cmd, stdout, _ := haulCmd(t.Context(), nil, append([]string{"-d", dir, "-j", "4", "--manifest", "-"}, urls...)...)
	cmd.Stderr = tty
	if err := cmd.Run(); err != nil {
		t.Fatalf("haul: %v", err)
	}
	tty.Close()
	select {
	case <-copied:
	case <-time.After(2 * time.Second): // the master may not see EOF while other ends are open
	}
	master.Close()
	<-copied
	checkFiles(t, dir, want)
	if ms := parseManifest(t, stdout.String()); len(ms) != len(urls) {
		t.Errorf("manifest has %d lines, want %d", len(ms), len(urls))
	}
	term := out.String()
	if !strings.Contains(term, "20/20 files") || !strings.Contains(term, "20 ok, 0 skipped, 0 failed, 0 invalid") {
		t.Errorf("the terminal did not show the bar's final state and the summary:\n%q", clip(term))
	}
}

// A manifest on stdout whose reader leaves (haul --manifest - | head -1) stops
// the run cleanly with exit 3, as a manifest on a full disk does: haul is not
// killed by SIGPIPE half-way through committing files.
func TestE2EManifestReaderGone(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	var urls []string
	bodies := map[string][]byte{}
	// All files but the first are held until the reader has left: the run
	// cannot be over before. The last is held until haul has exited: a run
	// that did not stop when its manifest's reader left would wait for it
	// (and be killed when the test's time runs out), however fast it went.
	gone, exited := make(chan struct{}), make(chan struct{})
	for i := range 40 {
		b := []byte(strings.Repeat(fmt.Sprint(i), 1000))
		p := fmt.Sprintf("/p/%02d", i)
		u := s.Add(p, b)
		switch {
		case i == 39:
			u = s.Handle(p, heldUntil(exited, b))
		case i > 0:
			u = s.Handle(p, heldUntil(gone, b))
		}
		urls = append(urls, u)
		bodies[fmt.Sprintf("%02d", i)] = b
	}
	out := t.TempDir()
	ctx, cancel := haulContext(t)
	defer cancel()
	cmd, _, stderr := haulCmd(ctx, nil, append([]string{"-q", "-j", "2", "--manifest", "-", "-d", out}, urls...)...)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil || !strings.Contains(line, `"status":"ok"`) {
		t.Fatalf("first manifest line %q, %v", line, err)
	}
	pr.Close() // as head -1 does
	close(gone)
	err = cmd.Wait()
	close(exited)
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	if ws := cmd.ProcessState.Sys().(syscall.WaitStatus); ws.Signaled() || ws.ExitStatus() != exitFatal {
		t.Fatalf("haul ended with %v, want exit %d\n%s", cmd.ProcessState, exitFatal, stderr)
	}
	if !strings.Contains(stderr.String(), "manifest") || !strings.Contains(stderr.String(), "broken pipe") {
		t.Errorf("stderr does not say the manifest failed:\n%s", stderr)
	}
	for name, want := range bodies {
		got, err := os.ReadFile(filepath.Join(out, hostDir(s), "p", name))
		if err == nil && !bytes.Equal(got, want) {
			t.Errorf("%s: wrong bytes at the final name", name)
		}
	}
}

// The summary lists each failed URL with its reason up to 1000 of them, then
// counts the rest, which are in the lines above it (and in the manifest).
func TestE2ESummaryListsAtMost1000Failures(t *testing.T) {
	t.Parallel()
	const n = 1003
	var lines []string
	for i := range n {
		lines = append(lines, fmt.Sprintf("http://127.0.0.1:1/refused/%04d", i)) // nothing listens on port 1
	}
	r := runHaul(t, strings.NewReader(strings.Join(lines, "\n")+"\n"), "-q", "-j", "64", "--retries", "0",
		"-d", filepath.Join(t.TempDir(), "out"))
	wantCode(t, r, 1)
	above, list, found := strings.Cut(r.stderr, fmt.Sprintf("haul: %d failed:\n", n))
	if !found {
		t.Fatalf("no summary of %d failures:\n%s", n, clip(r.stderr))
	}
	printed := 0
	for _, l := range strings.Split(above, "\n") {
		if strings.HasPrefix(l, "haul: get http://127.0.0.1:1/refused/") {
			printed++
		}
	}
	if printed != n {
		t.Errorf("%d failures printed as they happened, want %d", printed, n)
	}
	listed := strings.Split(strings.TrimSuffix(list, "\n"), "\n")
	if len(listed) != 1001 || listed[1000] != "  ... and 3 more (see the lines above or --manifest)" {
		t.Fatalf("summary has %d lines after its head, want 1000 failures and a count of the 3 more; last: %q",
			len(listed), listed[len(listed)-1])
	}
	for _, l := range listed[:1000] {
		if !strings.HasPrefix(l, "  get http://127.0.0.1:1/refused/") || !strings.Contains(l, "connection refused") {
			t.Errorf("summary line %q does not name a failed URL and its reason", l)
			break
		}
	}
}
