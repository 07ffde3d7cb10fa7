package main

// End-to-end tests: the real haul binary (built once by TestMain) run as a
// subprocess against downloadtest servers on 127.0.0.1, checked by the files it
// leaves, its exit code, its stderr and its manifest. They are split by feature:
// input_test.go, naming_test.go, resume_test.go, network_test.go, disk_test.go,
// output_test.go, compress_test.go and interrupt_test.go. This file holds what
// they share.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"golang.org/x/sys/unix"

	"github.com/haul/haul/download/downloadtest"
	"github.com/haul/haul/internal/testutil"
)

// haulBin is the path of the haul binary built by TestMain.
var haulBin string

// TestMain serves two purposes. Started as "haul" (by a script of TestScript),
// this test binary is haul: testscript.Main runs main(), which exits with
// haul's exit code. Otherwise it installs itself as "haul" in the PATH of the
// scripts, and buildHaul builds the binary the Go tests run before the tests.
func TestMain(m *testing.M) {
	testscript.Main(buildHaul{m}, map[string]func(){"haul": main})
}

// buildHaul runs the tests once haulBin is built.
type buildHaul struct{ m *testing.M }

func (b buildHaul) Run() int { return testMain(b.m) }

func testMain(m *testing.M) int {
	if slices.ContainsFunc(os.Args, func(a string) bool { return strings.HasPrefix(a, "-test.fuzzworker") }) {
		// A fuzzing worker runs only the fuzz target, over and over in
		// processes of its own: no binary to build.
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "haul-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	// Everything the tests and their haul processes put in the temporary
	// directory (t.TempDir, the spill directories of a killed run) goes
	// under dir, and so away with it.
	// Open to all as /tmp is (a test runs haul as another user).
	tmp := filepath.Join(dir, "tmp")
	if err := errors.Join(os.Mkdir(tmp, 0o700), os.Chmod(tmp, 0o1777), os.Chmod(dir, 0o755)); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	os.Setenv("TMPDIR", tmp)
	haulBin = filepath.Join(dir, "haul")
	// go test puts its own GOROOT/bin first in PATH, so "go" is this toolchain.
	build := exec.Command("go", "build", "-o", haulBin, "github.com/haul/haul/cmd/haul")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building haul:", err)
		return 1
	}
	return m.Run()
}

// result is what one haul run did.
type result struct {
	code           int
	stdout, stderr string
	dur            time.Duration
}

func (r result) String() string {
	return fmt.Sprintf("exit %d after %v\n--- stderr:\n%s--- stdout:\n%s", r.code, r.dur.Round(time.Millisecond),
		clip(r.stderr), clip(r.stdout))
}

func clip(s string) string {
	if len(s) > 4000 {
		return s[:2000] + "\n[...]\n" + s[len(s)-2000:]
	}
	return s
}

// haulContext is the context a haul process of t runs under. It ends with the
// test's patience (testutil.Patience: a little before go test's -timeout), so
// that a hung process is a test failure with its output, not a stuck suite,
// and a slow machine is not one.
func haulContext(t *testing.T) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), testutil.Patience(t))
}

// haulCmd returns an unstarted haul command with args; stdin may be nil
// (/dev/null, which is not a terminal).
func haulCmd(ctx context.Context, stdin io.Reader, args ...string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	cmd := exec.CommandContext(ctx, haulBin, args...)
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	return cmd, &stdout, &stderr
}

// startPiped starts haul with args and its standard input on a pipe that stays
// open until the caller closes w: a list still being written.
// haulProc is a haul process spawnHaul started (startHaul, in interrupt_test.go,
// gives only its process and a wait).
type haulProc struct {
	cmd            *exec.Cmd
	stdout, stderr *bytes.Buffer
	exited         chan struct{} // closed once it exited (cmd.ProcessState is set)
}

// spawnHaul starts haul with args under ctx (calling cancel if it cannot
// start), and waits for its exit on a goroutine of its own.
func spawnHaul(t *testing.T, ctx context.Context, cancel context.CancelFunc, args ...string) *haulProc {
	t.Helper()
	return spawnHaulEnv(t, ctx, cancel, nil, args...)
}

// spawnHaulEnv is spawnHaul with env added to haul's environment.
func spawnHaulEnv(t *testing.T, ctx context.Context, cancel context.CancelFunc, env []string, args ...string) *haulProc {
	t.Helper()
	cmd, stdout, stderr := haulCmd(ctx, nil, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	h := &haulProc{cmd: cmd, stdout: stdout, stderr: stderr, exited: make(chan struct{})}
	go func() { cmd.Wait(); close(h.exited) }()
	return h
}

// until waits for cond while the process runs: its exit first fails the test.
func (h *haulProc) until(t *testing.T, cond func() error) {
	t.Helper()
	testutil.Until(t, func() error {
		if h.ended() {
			t.Fatalf("haul ended (%v) before it was stopped:\n%s", h.cmd.ProcessState, h.stderr)
		}
		return cond()
	})
}

// stop sends sig and waits for the exit; it returns the exit code (-1 for a
// signal that killed it).
func (h *haulProc) stop(sig os.Signal) int {
	h.cmd.Process.Signal(sig)
	<-h.exited
	return h.cmd.ProcessState.ExitCode()
}

// ended reports, without waiting, whether the process exited.
func (h *haulProc) ended() bool {
	select {
	case <-h.exited:
		return true
	default:
		return false
	}
}

func startPiped(t *testing.T, args ...string) (cmd *exec.Cmd, w io.WriteCloser, stderr *bytes.Buffer) {
	t.Helper()
	cmd, _, stderr = haulCmd(t.Context(), nil, args...)
	w, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, w, stderr
}

// runHaul runs haul with args to the end.
func runHaul(t *testing.T, stdin io.Reader, args ...string) result {
	t.Helper()
	return runHaulEnv(t, nil, stdin, args...)
}

// runHaulEnv is runHaul with env ("KEY=value", which wins over the test's own
// environment) added to haul's environment.
func runHaulEnv(t *testing.T, env []string, stdin io.Reader, args ...string) result {
	t.Helper()
	ctx, cancel := haulContext(t)
	defer cancel()
	cmd, stdout, stderr := haulCmd(ctx, stdin, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	return runCmd(t, ctx, cmd, stdout, stderr, args)
}

// runCmd runs a haul command made by haulCmd to the end.
func runCmd(t *testing.T, ctx context.Context, cmd *exec.Cmd, stdout, stderr *bytes.Buffer, args []string) result {
	t.Helper()
	t0 := time.Now()
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String(), dur: time.Since(t0)}
	// No t.Fatal here: runHaul is also called from goroutines. A code of -1
	// fails every wantCode.
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Errorf("haul %q did not finish in the test's time: %v\n%v", args, err, r)
		r.code = -1
	case err == nil, errors.As(err, &ee):
		r.code = cmd.ProcessState.ExitCode()
	default:
		t.Errorf("running haul: %v", err)
		r.code = -1
	}
	return r
}

// wantCode fails the test unless r exited with code.
func wantCode(t *testing.T, r result, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit code %d, want %d\n%v", r.code, code, r)
	}
}

// hostDir is the tree layout's directory for s: "127.0.0.1_PORT".
func hostDir(s *downloadtest.Server) string {
	return strings.Replace(s.Host(), ":", "_", 1)
}

// writeList writes lines (each followed by "\n") to a new file and returns its path.
func writeList(t *testing.T, lines ...string) string {
	t.Helper()
	name := filepath.Join(t.TempDir(), "list.txt")
	if err := os.WriteFile(name, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return name
}

// files returns every regular file under dir by slash-separated relative path,
// with its content. Symbolic links are not followed (nor listed).
func files(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = b
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkFiles fails unless the regular files under dir are exactly want (by
// relative path and content): nothing missing, nothing extra, no staging file.
func checkFiles(t *testing.T, dir string, want map[string][]byte) {
	t.Helper()
	got := files(t, dir)
	var bad []string
	for name, b := range want {
		g, ok := got[name]
		switch {
		case !ok:
			bad = append(bad, "missing "+name)
		case !bytes.Equal(g, b):
			bad = append(bad, fmt.Sprintf("%s: %d bytes differ from the %d served", name, len(g), len(b)))
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			bad = append(bad, "unexpected file "+name)
		}
	}
	if len(bad) > 0 {
		slices.Sort(bad)
		if len(bad) > 20 {
			bad = append(bad[:20], fmt.Sprintf("... and %d more", len(bad)-20))
		}
		t.Errorf("files under %s:\n  %s", dir, strings.Join(bad, "\n  "))
	}
}

// manLine is one manifest line. Raw keeps its keys for checking the key set.
type manLine struct {
	Raw        map[string]json.RawMessage `json:"-"`
	Line       int                        `json:"line"`
	URL        string                     `json:"url"`
	Out        *string                    `json:"out"`
	Status     string                     `json:"status"`
	Size       *int64                     `json:"size"`
	SHA256     *string                    `json:"sha256"`
	HTTPStatus *int                       `json:"http_status"`
	Error      *string                    `json:"error"`
	Attempts   int                        `json:"attempts"`
	DurationMS int64                      `json:"duration_ms"`
}

var (
	entryKeys   = []string{"attempts", "duration_ms", "error", "http_status", "out", "sha256", "size", "status", "url"}
	invalidKeys = []string{"error", "line", "status"}
)

// parseManifest parses data as a manifest: every line one JSON object with
// exactly the documented keys for its status.
func parseManifest(t *testing.T, data string) []manLine {
	t.Helper()
	var out []manLine
	if data == "" {
		return nil
	}
	if !strings.HasSuffix(data, "\n") {
		t.Errorf("manifest does not end in a newline: %q", clip(data))
	}
	for i, s := range strings.Split(strings.TrimSuffix(data, "\n"), "\n") {
		var m manLine
		if err := json.Unmarshal([]byte(s), &m.Raw); err != nil {
			t.Fatalf("manifest line %d is not a JSON object: %v\n%s", i+1, err, s)
		}
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			t.Fatalf("manifest line %d: %v\n%s", i+1, err, s)
		}
		keys := make([]string, 0, len(m.Raw))
		for k := range m.Raw {
			keys = append(keys, k)
		}
		// close_delimited is there (true) only for a body whose end was the
		// server's word alone.
		keys = slices.DeleteFunc(keys, func(k string) bool { return k == "close_delimited" && string(m.Raw[k]) == "true" })
		slices.Sort(keys)
		want := entryKeys
		if m.Status == "invalid" {
			want = invalidKeys
		}
		if !slices.Equal(keys, want) {
			t.Errorf("manifest line %d has keys %q, want %q\n%s", i+1, keys, want, s)
		}
		switch m.Status {
		case "ok", "skipped", "unchanged", "excluded", "failed", "invalid":
		default:
			t.Errorf("manifest line %d: status %q\n%s", i+1, m.Status, s)
		}
		out = append(out, m)
	}
	return out
}

func readManifest(t *testing.T, name string) []manLine {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return parseManifest(t, string(b))
}

// byURL indexes manifest entries by URL, failing on a URL listed twice.
func byURL(t *testing.T, ms []manLine) map[string]manLine {
	t.Helper()
	out := map[string]manLine{}
	for _, m := range ms {
		if m.Status == "invalid" {
			continue
		}
		if _, dup := out[m.URL]; dup {
			t.Errorf("manifest lists %s twice", m.URL)
		}
		out[m.URL] = m
	}
	return out
}

func str(p *string) string {
	if p == nil {
		return "<null>"
	}
	return *p
}

// waitFor polls cond every 10ms until it holds or the test's patience
// (testutil.Patience) runs out; it reports whether cond held.
func waitFor(t *testing.T, cond func() bool) bool {
	deadline := time.Now().Add(testutil.Patience(t))
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	return s[strings.LastIndexByte(s, '\n')+1:]
}

// openPTY returns a new pseudo-terminal's master and slave ends.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		t.Skipf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetUint32(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		t.Skipf("ptsname: %v", err)
	}
	sl, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		m.Close()
		t.Skipf("opening the pty slave: %v", err)
	}
	t.Cleanup(func() { m.Close(); sl.Close() })
	return m, sl
}

// syncBuffer is a bytes.Buffer that a process's output may be written to while
// the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
