package main

// Tests of --shard auto and --shard-by: the scheduler's variables read by the
// real binary, and a Kubernetes Indexed Job simulated with N processes.

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/haul/haul/download/downloadtest"
	"github.com/haul/haul/internal/testutil"
)

func TestShardFromEnv(t *testing.T) {
	t.Parallel()
	slurm := func(id, lo, count string, more ...string) map[string]string {
		m := map[string]string{"SLURM_JOB_ID": "7", envSlurmID: id, envSlurmMin: lo, envSlurmCount: count}
		for i := 0; i+1 < len(more); i += 2 {
			m[more[i]] = more[i+1]
		}
		return m
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		k, n int
		err  string // in the error; "" for none
	}{
		{"slurm first", slurm("0", "0", "4", envSlurmMax, "3", envSlurmStep, "1"), 0, 4, ""},
		{"slurm last", slurm("3", "0", "4", envSlurmMax, "3"), 3, 4, ""},
		{"slurm offset", slurm("12", "10", "4"), 2, 4, ""}, // --array=10-13
		{"slurm step", slurm("20", "0", "4", envSlurmMax, "30", envSlurmStep, "10"), 2, 4, ""},
		{"slurm one task", slurm("5", "5", "1"), 0, 1, ""},
		{"slurm no count", map[string]string{envSlurmID: "1", envSlurmMin: "0"}, 0, 0, envSlurmCount},
		{"slurm no min, no count", map[string]string{envSlurmID: "1"}, 0, 0, envSlurmMin + " and " + envSlurmCount},
		{"slurm id past count", slurm("4", "0", "4"), 0, 0, "inconsistent"},
		{"slurm id below min", slurm("1", "2", "4"), 0, 0, "inconsistent"},
		{"slurm not a range", slurm("7", "1", "3", envSlurmMax, "7"), 0, 0, "not a range"}, // --array=1,2,7
		{"slurm off step", slurm("5", "0", "4", envSlurmStep, "10"), 0, 0, "inconsistent"},
		{"slurm not a number", slurm("x", "0", "4"), 0, 0, envSlurmID + `="x"`},
		{"slurm zero count", slurm("0", "0", "0"), 0, 0, "inconsistent"},
		{"slurm job, no array", map[string]string{"SLURM_JOB_ID": "7"}, 0, 0, "not an array"},
		{"k8s", map[string]string{envK8sIndex: "2", envShards: "5"}, 2, 5, ""},
		{"k8s first", map[string]string{envK8sIndex: "0", envShards: "1"}, 0, 1, ""},
		{"k8s no shards", map[string]string{envK8sIndex: "2"}, 0, 0, envShards},
		{"k8s index past shards", map[string]string{envK8sIndex: "5", envShards: "5"}, 0, 0, "inconsistent"},
		{"k8s bad shards", map[string]string{envK8sIndex: "0", envShards: "four"}, 0, 0, "inconsistent"},
		{"shards, no index", map[string]string{envShards: "4"}, 0, 0, envK8sIndex},
		{"both", map[string]string{envK8sIndex: "0", envShards: "2", envSlurmID: "0", envSlurmMin: "0", envSlurmCount: "2"}, 0, 0, "both"},
		{"neither", map[string]string{"HOME": "/root"}, 0, 0, envSlurmID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lookup := func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok }
			k, n, from, err := shardFromEnv(lookup)
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("error %v, want shard %d/%d", err, tc.k, tc.n)
			case tc.err != "" && err == nil:
				t.Fatalf("shard %d/%d, want an error with %q", k, n, tc.err)
			case tc.err != "" && !strings.Contains(err.Error(), tc.err):
				t.Fatalf("error %q, want one with %q", err, tc.err)
			case tc.err == "" && (k != tc.k || n != tc.n || from == ""):
				t.Fatalf("shard %d/%d from %q, want %d/%d", k, n, from, tc.k, tc.n)
			}
		})
	}
	// The message for neither names every variable a user can set.
	_, _, _, err := shardFromEnv(func(string) (string, bool) { return "", false })
	for _, v := range []string{envSlurmID, envSlurmMin, envSlurmCount, envK8sIndex, envShards, "--shard K/N"} {
		if err == nil || !strings.Contains(err.Error(), v) {
			t.Errorf("the error %v does not name %s", err, v)
		}
	}
}

// schedulerVars are the variables --shard auto reads; cleanEnv drops them
// (the tests may run inside a Slurm job or a pod).
var schedulerVars = []string{envSlurmID, envSlurmMin, envSlurmMax, envSlurmStep, envSlurmCount, "SLURM_JOB_ID", envK8sIndex, envShards}

func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		keep := true
		for _, v := range schedulerVars {
			keep = keep && name != v
		}
		if keep {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// runHaulInEnv is runHaul with exactly the environment env (no stdin).
func runHaulInEnv(t *testing.T, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := haulContext(t)
	defer cancel()
	cmd, stdout, stderr := haulCmd(ctx, nil, args...)
	cmd.Env = env
	return runCmd(t, ctx, cmd, stdout, stderr, args)
}

// fnvMod is the shard of key among n (FNV-1a 64-bit mod n), from hash/fnv.
func fnvMod(key string, n int) int {
	h := fnv.New64a()
	h.Write([]byte(key))
	return int(h.Sum64() % uint64(n))
}

// --shard auto outside a job array or an Indexed Job, or with their variables
// inconsistent, is a usage error naming the variables, before any request.
func TestE2EShardAutoUsageErrors(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	u := s.Add("/a", []byte("a"))
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want []string
	}{
		{"neither", nil, nil, []string{envSlurmID, envSlurmCount, envK8sIndex, envShards}},
		{"k8s without HAUL_SHARDS", []string{envK8sIndex + "=1"}, nil, []string{envShards}},
		{"k8s index past shards", []string{envK8sIndex + "=4", envShards + "=4"}, nil, []string{"inconsistent", envK8sIndex}},
		{"slurm without count", []string{envSlurmID + "=1", envSlurmMin + "=0"}, nil, []string{envSlurmCount}},
		{"slurm not a range", []string{envSlurmID + "=7", envSlurmMin + "=1", envSlurmMax + "=7", envSlurmCount + "=3"}, nil, []string{"not a range"}},
		{"shard-by without shard", nil, []string{"--shard-by", "host"}, []string{"--shard-by needs --shard"}},
		{"shard-by unknown", []string{envK8sIndex + "=0", envShards + "=2"}, []string{"--shard-by", "path"}, []string{"--shard-by", "url or host"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"-d", filepath.Join(t.TempDir(), "out")}, tc.args...)
			if tc.args == nil {
				args = append(args, "--shard", "auto")
			}
			r := runHaulInEnv(t, cleanEnv(tc.env...), append(args, u)...)
			wantCode(t, r, exitUsage)
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("the message does not name %s:\n%s", w, r.stderr)
				}
			}
		})
	}
	if n := s.TotalRequests(); n != 0 {
		t.Errorf("%d requests from runs that were usage errors", n)
	}
}

// shardedList serves n files and returns the list (with sha256=) and what each
// file must hold under dir.
func shardedList(t *testing.T, s *downloadtest.Server, n int, prefix string, opts func(i int) []downloadtest.FileOption) (list string, urls []string, want map[string][]byte) {
	t.Helper()
	want = map[string][]byte{}
	var lines []string
	for i := range n {
		p := fmt.Sprintf("/%s/%03d.bin", prefix, i)
		b := testutil.Payload(uint64(7000+i), 1000+37*i)
		var o []downloadtest.FileOption
		if opts != nil {
			o = opts(i)
		}
		u := s.Add(p, b, o...)
		urls = append(urls, u)
		lines = append(lines, fmt.Sprintf("%s sha256=%s", u, testutil.SHA256Hex(b)))
		want[hostDir(s)+p] = b
	}
	return writeList(t, lines...), urls, want
}

// checkShardManifests checks that the manifests hold every URL exactly once,
// each in the manifest of the shard keyOf(URL) hashes to, all ok or skipped.
func checkShardManifests(t *testing.T, manifests []string, urls []string, keyOf func(string) string) {
	t.Helper()
	n := len(manifests)
	seen := map[string]int{}
	for k, m := range manifests {
		for _, e := range readManifest(t, m) {
			seen[e.URL]++
			if got := fnvMod(keyOf(e.URL), n); got != k {
				t.Errorf("manifest %d lists %s, whose key %q is in shard %d", k, e.URL, keyOf(e.URL), got)
			}
			if e.Status != "ok" && e.Status != "skipped" {
				t.Errorf("manifest %d: %s %s %s", k, e.URL, e.Status, str(e.Error))
			}
		}
	}
	for _, u := range urls {
		if seen[u] != 1 {
			t.Errorf("%s in %d manifests, want 1", u, seen[u])
		}
	}
}

// A Slurm job array's tasks (here --array=10-13) split one list into one
// directory: every file once, each task's manifest only its shard.
func TestE2EShardAutoSlurm(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	list, urls, want := shardedList(t, s, 120, "slurm", nil)
	dir := filepath.Join(t.TempDir(), "out")
	const n, lo = 4, 10
	man := make([]string, n)
	res := make([]result, n)
	var wg sync.WaitGroup
	for k := range n {
		man[k] = filepath.Join(t.TempDir(), "m.jsonl")
		env := cleanEnv("SLURM_JOB_ID=99", fmt.Sprintf("%s=%d", envSlurmID, lo+k), fmt.Sprintf("%s=%d", envSlurmMin, lo),
			fmt.Sprintf("%s=%d", envSlurmMax, lo+n-1), envSlurmStep+"=1", fmt.Sprintf("%s=%d", envSlurmCount, n))
		wg.Go(func() {
			res[k] = runHaulInEnv(t, env, "--shard", "auto", "-i", list, "-d", dir, "--manifest", man[k], "-j", "4")
		})
	}
	wg.Wait()
	for k := range n {
		wantCode(t, res[k], exitOK)
		if w := fmt.Sprintf("shard %d/%d", k, n); !strings.Contains(res[k].stderr, w) {
			t.Errorf("task %d does not log %q:\n%s", lo+k, w, res[k].stderr)
		}
	}
	checkShardManifests(t, man, urls, func(u string) string { return u })
	checkFiles(t, dir, want)
	for p := range want {
		if got := s.Requests(strings.TrimPrefix(p, hostDir(s))); got != 1 {
			t.Errorf("%s requested %d times, want 1", p, got)
		}
	}
}

// --shard-by host: every entry of one host in the shard its host:port hashes
// to, whatever the spelling of its URLs (case, user info, the default port).
func TestE2EShardByHost(t *testing.T) {
	t.Parallel()
	const n = 2
	var servers []*downloadtest.Server
	var lines, urls []string
	want := map[string][]byte{}
	used := map[int]bool{}
	// Hosts until both shards have one (ports are random).
	for i := 0; i < 4 || len(used) < n; i++ {
		s := downloadtest.New(t)
		servers = append(servers, s)
		used[fnvMod(s.Host(), n)] = true
		for j := range 5 {
			p := fmt.Sprintf("/h%d/%d.bin", i, j)
			b := testutil.Payload(uint64(9000+10*i+j), 500+j)
			u := s.Add(p, b)
			if j == 0 {
				u = strings.Replace(u, "http://", "HTTP://someone@", 1)
			}
			lines = append(lines, u)
			urls = append(urls, u)
			want[hostDir(s)+p] = b
		}
	}
	list := writeList(t, lines...)
	dir := filepath.Join(t.TempDir(), "out")
	man := make([]string, n)
	for k := range n {
		man[k] = filepath.Join(t.TempDir(), "m.jsonl")
		r := runHaulInEnv(t, cleanEnv(), "--shard", fmt.Sprintf("%d/%d", k, n), "--shard-by", "host", "-i", list, "-d", dir, "--manifest", man[k])
		wantCode(t, r, exitOK)
	}
	checkShardManifests(t, man, urls, func(raw string) string {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		return u.Host // 127.0.0.1:PORT: a port, never the default
	})
	checkFiles(t, dir, want)
	for _, s := range servers {
		if got := s.TotalRequests(); got != 5 {
			t.Errorf("%s: %d requests over the shards, want 5", s.Host(), got)
		}
	}
}

// A Kubernetes Indexed Job, simulated: N haul processes with
// JOB_COMPLETION_INDEX=0..N-1 and HAUL_SHARDS=N over one list and one shared
// directory. One is killed (SIGKILL, as when a node dies) mid-run and started
// again with its index, as the Job's controller does: its shard completes,
// what it had finished is not fetched again, and every file is there once.
func TestE2EIndexedJobSimulation(t *testing.T) {
	t.Parallel()
	const n, victim, files = 4, 1, 160
	s := downloadtest.New(t)
	// Every file takes a little while, so the victim is mid-run when killed.
	list, urls, want := shardedList(t, s, files, "k8s", func(int) []downloadtest.FileOption {
		return []downloadtest.FileOption{downloadtest.Delay(40 * time.Millisecond)}
	})
	dir := filepath.Join(t.TempDir(), "shared")
	manDir := t.TempDir()
	man := make([]string, n)
	env := func(k int) []string {
		return cleanEnv(fmt.Sprintf("%s=%d", envK8sIndex, k), fmt.Sprintf("%s=%d", envShards, n))
	}
	args := func(k int) []string {
		man[k] = filepath.Join(manDir, fmt.Sprintf("manifest-%d.jsonl", k))
		return []string{"--shard", "auto", "-i", list, "-d", dir, "--manifest", man[k], "-j", "2"}
	}
	inShard := map[string]bool{} // paths of the victim's shard
	for _, u := range urls {
		if fnvMod(u, n) == victim {
			inShard[strings.TrimPrefix(u, s.URL)] = true
		}
	}
	if len(inShard) < 20 {
		t.Fatalf("only %d files in shard %d", len(inShard), victim)
	}

	res := make([]result, n)
	var wg sync.WaitGroup
	for k := range n {
		if k == victim {
			continue
		}
		wg.Go(func() { res[k] = runHaulInEnv(t, env(k), args(k)...) })
	}
	// The victim, killed once a few of its files are done.
	cmd, _, stderr := haulCmd(t.Context(), nil, args(victim)...)
	cmd.Env = env(victim)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := func() int { b, _ := os.ReadFile(man[victim]); return strings.Count(string(b), "\n") }
	if !waitFor(t, func() bool { return done() >= 8 }) {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("the victim did not get going:\n%s", stderr)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("the victim was not killed mid-run (it ended: %v):\n%s", err, stderr)
	}
	wg.Wait()

	// What the killed pod left: the files already at their final names.
	before := map[string]bool{}
	requestsBefore := map[string]int{}
	for p := range inShard {
		if _, err := os.Stat(filepath.Join(dir, hostDir(s)+p)); err == nil {
			before[p] = true
		}
		requestsBefore[p] = s.Requests(p)
	}
	if len(before) == 0 || len(before) == len(inShard) {
		t.Fatalf("%d of %d files of shard %d were done at the kill: not mid-run", len(before), len(inShard), victim)
	}
	bytesBefore := s.BodyBytes()

	// The restarted pod, same index.
	res[victim] = runHaulInEnv(t, env(victim), args(victim)...)
	for k := range n {
		wantCode(t, res[k], exitOK)
	}
	checkShardManifests(t, man, urls, func(u string) string { return u })
	checkFiles(t, dir, want)
	var missing int64
	for p := range inShard {
		again := s.Requests(p) - requestsBefore[p]
		switch {
		case before[p] && again != 0:
			t.Errorf("%s was done before the kill and was requested %d more times", p, again)
		case !before[p] && again == 0:
			t.Errorf("%s was not done before the kill and was not requested after it", p)
		case !before[p]:
			missing += int64(len(want[hostDir(s)+p]))
		}
	}
	if again := s.BodyBytes() - bytesBefore; again > missing {
		t.Errorf("the restarted pod fetched %d bytes, more than the %d its shard lacked", again, missing)
	}
	for p := range want {
		if q := strings.TrimPrefix(p, hostDir(s)); !inShard[q] && s.Requests(q) != 1 {
			t.Errorf("%s (another shard) requested %d times, want 1", q, s.Requests(q))
		}
	}
	m := byURL(t, readManifest(t, man[victim]))
	skipped := 0
	for _, e := range m {
		if e.Status == "skipped" {
			skipped++
		}
	}
	t.Logf("shard %d: %d files, %d done before the kill, %d skipped on restart, %d bytes fetched again of %d missing",
		victim, len(inShard), len(before), skipped, s.BodyBytes()-bytesBefore, missing)
	if skipped != len(before) {
		t.Errorf("the restarted pod's manifest has %d skipped entries, want the %d done before", skipped, len(before))
	}
}
