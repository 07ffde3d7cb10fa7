package main

// Input tests: where the list comes from (arguments, -i FILE, -i -, a pipe, a
// terminal), its line formats, bad lines, the 64 KiB line limit, --shard, and
// memory that does not grow with the list.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/haul/haul/download/downloadtest"
	"github.com/haul/haul/internal/testutil"
)

// The list comes from a pipe on stdin (no -i), -i -, -i FILE or arguments,
// and is streamed: the first entry is downloaded before the list ends.
func TestE2EInputSources(t *testing.T) {
	t.Parallel()
	setup := func(t *testing.T) (s *downloadtest.Server, urls []string, want map[string][]byte, dir string) {
		s = downloadtest.New(t)
		want = map[string][]byte{}
		for i := range 3 {
			p := fmt.Sprintf("/src/%d.txt", i)
			b := testutil.Payload(uint64(100+i), 1000+i)
			urls = append(urls, s.Add(p, b))
			want[hostDir(s)+p] = b
		}
		return s, urls, want, filepath.Join(t.TempDir(), "out")
	}
	t.Run("stdin pipe without -i", func(t *testing.T) {
		t.Parallel()
		_, urls, want, dir := setup(t)
		r := runHaul(t, strings.NewReader(strings.Join(urls, "\n")+"\n"), "-d", dir)
		wantCode(t, r, 0)
		checkFiles(t, dir, want)
	})
	t.Run("-i -", func(t *testing.T) {
		t.Parallel()
		_, urls, want, dir := setup(t)
		r := runHaul(t, strings.NewReader(strings.Join(urls, "\n")), "-i", "-", "-d", dir)
		wantCode(t, r, 0)
		checkFiles(t, dir, want)
	})
	t.Run("-i FILE", func(t *testing.T) {
		t.Parallel()
		_, urls, want, dir := setup(t)
		r := runHaul(t, nil, "-i", writeList(t, urls...), "-d", dir)
		wantCode(t, r, 0)
		checkFiles(t, dir, want)
	})
	t.Run("arguments", func(t *testing.T) {
		t.Parallel()
		_, urls, want, dir := setup(t)
		r := runHaul(t, strings.NewReader("this stdin is ignored\n"), append([]string{"-d", dir}, urls...)...)
		wantCode(t, r, 0)
		checkFiles(t, dir, want)
	})
	t.Run("flags after arguments", func(t *testing.T) {
		t.Parallel()
		_, urls, want, dir := setup(t)
		manifest := filepath.Join(t.TempDir(), "m.jsonl")
		args := []string{urls[0], "-d", dir, urls[1], "--manifest=" + manifest, "-q", urls[2]}
		r := runHaul(t, nil, args...)
		wantCode(t, r, 0)
		checkFiles(t, dir, want)
		if b, err := os.ReadFile(manifest); err != nil || strings.Count(string(b), "\n") != 3 {
			t.Errorf("manifest after the URLs not honoured: %q, %v", b, err)
		}
	})
	t.Run("empty stdin", func(t *testing.T) {
		t.Parallel()
		dir := filepath.Join(t.TempDir(), "out")
		r := runHaul(t, nil, "-d", dir)
		wantCode(t, r, 0)
	})
	t.Run("streamed", func(t *testing.T) {
		t.Parallel()
		s, urls, want, dir := setup(t)
		cmd, w, stderr := startPiped(t, "-d", dir)
		fmt.Fprintln(w, urls[0])
		first := filepath.Join(dir, hostDir(s), "src", "0.txt")
		if !waitFor(t, func() bool { _, err := os.Stat(first); return err == nil }) {
			t.Errorf("the first entry was not downloaded while the list was still open")
		}
		fmt.Fprintln(w, urls[1])
		fmt.Fprintln(w, urls[2])
		w.Close()
		if err := cmd.Wait(); err != nil {
			t.Fatalf("haul: %v\n%s", err, stderr)
		}
		checkFiles(t, dir, want)
	})
}

// Comments, blank lines, JSON lines, key=value fields, tabs, CRLF and a last
// line without a newline are all honoured.
func TestE2EInputFormats(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	h := hostDir(s)
	b := make([][]byte, 10)
	u := make([]string, 10)
	for i := range b {
		b[i] = testutil.Payload(uint64(200+i), 500+i*10)
		u[i] = s.Add(fmt.Sprintf("/fmt/%d.dat", i), b[i])
	}
	jsonLine := func(m map[string]any) string {
		j, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return string(j)
	}
	list := strings.Join([]string{
		"# a comment " + u[9],
		"   \t# an indented comment",
		"",
		"  \t ",
		u[1],
		u[2] + " out=custom/dir/name.bin",
		u[3] + " sha256=" + strings.ToUpper(testutil.SHA256Hex(b[3])) + " size=" + fmt.Sprint(len(b[3])),
		jsonLine(map[string]any{"url": u[4], "out": "json/out.bin"}),
		jsonLine(map[string]any{"url": u[5], "sha256": testutil.SHA256Hex(b[5]), "size": len(b[5]), "extra": []int{1, 2}, "out": nil}),
		"  " + u[6] + " \t out=./tabbed//x/../t.bin  ",
		u[7] + "\r",
		// A manifest line is an input line: null and "" count as absent.
		jsonLine(map[string]any{"url": u[8], "out": "", "sha256": nil, "size": nil, "status": "failed",
			"http_status": 503, "error": "get: boom", "attempts": 6, "duration_ms": 12}),
		u[0] + " size=" + fmt.Sprint(len(b[0])), // no newline at the end
	}, "\n")
	listFile := filepath.Join(t.TempDir(), "list")
	if err := os.WriteFile(listFile, []byte(list), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "out")
	man := filepath.Join(t.TempDir(), "m.jsonl")
	r := runHaul(t, nil, "-i", listFile, "-d", dir, "--manifest", man)
	wantCode(t, r, 0)
	checkFiles(t, dir, map[string][]byte{
		h + "/fmt/0.dat":      b[0],
		h + "/fmt/1.dat":      b[1],
		"custom/dir/name.bin": b[2],
		h + "/fmt/3.dat":      b[3],
		"json/out.bin":        b[4],
		h + "/fmt/5.dat":      b[5],
		"tabbed/t.bin":        b[6],
		h + "/fmt/7.dat":      b[7],
		h + "/fmt/8.dat":      b[8],
	})
	if n := s.Requests("/fmt/9.dat"); n != 0 {
		t.Errorf("the URL in a comment was requested %d times", n)
	}
	ms := byURL(t, readManifest(t, man))
	if len(ms) != 9 {
		t.Errorf("manifest has %d entries, want 9", len(ms))
	}
	for _, i := range []int{3, 5} {
		if m := ms[u[i]]; str(m.SHA256) != testutil.SHA256Hex(b[i]) {
			t.Errorf("manifest sha256 for a line with sha256= is %s, want %s", str(m.SHA256), testutil.SHA256Hex(b[i]))
		}
	}
	if m := ms[u[1]]; m.SHA256 != nil {
		t.Errorf("manifest sha256 without sha256= or --sha256 is %s, want null", *m.SHA256)
	}

	t.Run("--sha256", func(t *testing.T) {
		t.Parallel()
		dir := filepath.Join(t.TempDir(), "out")
		r := runHaul(t, nil, "-d", dir, "--sha256", "--manifest", "-", u[1])
		wantCode(t, r, 0)
		ms := parseManifest(t, r.stdout)
		if len(ms) != 1 || str(ms[0].SHA256) != testutil.SHA256Hex(b[1]) {
			t.Errorf("--sha256 manifest: %s", r.stdout)
		}
	})
	t.Run("sha256 mismatch", func(t *testing.T) {
		t.Parallel()
		dir := filepath.Join(t.TempDir(), "out")
		r := runHaul(t, nil, "-d", dir, u[1]+" sha256="+testutil.SHA256Hex(b[2]))
		wantCode(t, r, 1)
		if !strings.Contains(r.stderr, "sha256") || !strings.Contains(r.stderr, u[1]) {
			t.Errorf("stderr does not explain the sha256 mismatch:\n%s", r.stderr)
		}
		checkFiles(t, dir, map[string][]byte{})
	})
	t.Run("size mismatch", func(t *testing.T) {
		t.Parallel()
		dir := filepath.Join(t.TempDir(), "out")
		r := runHaul(t, nil, "-d", dir, u[1]+" size="+fmt.Sprint(len(b[1])+1))
		wantCode(t, r, 1)
		if !strings.Contains(r.stderr, "length") || !strings.Contains(r.stderr, u[1]) {
			t.Errorf("stderr does not explain the size mismatch:\n%s", r.stderr)
		}
		checkFiles(t, dir, map[string][]byte{})
	})
}

// Every kind of bad line is reported as "haul: input line N: reason" with the
// right N and listed in the manifest as invalid; the good lines still run; exit 1.
func TestE2EBadLines(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	h := hostDir(s)
	good := map[string][]byte{}
	add := func(p string) string {
		b := testutil.Payload(uint64(len(good)+300), 700)
		good[h+p] = b
		return s.Add(p, b)
	}
	bad := func(p string) string { return s.Add(p, []byte("must not be fetched")) }
	outside := t.TempDir()
	long := bad("/bad/long") + "?q=" + strings.Repeat("a", 70<<10)
	lines := []struct {
		text   string
		reason string // "" for a good line
	}{
		{add("/good/1"), ""},
		{"http://[::1/x", "URL"},
		{add("/good/2"), ""},
		{"ftp://127.0.0.1/x", "scheme"},
		{bad("/bad/abs") + " out=" + outside + "/abs", "absolute"},
		{bad("/bad/dotdot") + " out=../x", "escapes"},
		{bad("/bad/nul") + "\x00x", "NUL"},
		{bad("/bad/key") + " foo=bar", "unknown field"},
		{long, "64 KiB"},
		{add("/good/3"), ""},
		{"just-a-word", "absolute"},
		{`{"url": `, "JSON"},
		{`{"out": "x"}`, "missing url"},
		{bad("/bad/sha") + " sha256=xyz", "sha256"},
		{bad("/bad/size") + " size=-1", "size"},
		{bad("/bad/notkv") + " out", "key=value"},
		{`{"url": "gopher://127.0.0.1/x"}`, "scheme"},
		{add("/good/4"), ""},
		{long, "64 KiB"}, // the last line, over-long and without a newline
	}
	var text []string
	invalid := map[int]string{}
	for i, l := range lines {
		text = append(text, l.text)
		if l.reason != "" {
			invalid[i+1] = l.reason
		}
	}
	listFile := filepath.Join(t.TempDir(), "list")
	if err := os.WriteFile(listFile, []byte(strings.Join(text, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "out")
	man := filepath.Join(t.TempDir(), "m.jsonl")
	r := runHaul(t, nil, "-i", listFile, "-d", dir, "--manifest", man)
	wantCode(t, r, 1)
	checkFiles(t, dir, good)
	for _, p := range []string{"/bad/long", "/bad/abs", "/bad/dotdot", "/bad/nul", "/bad/key", "/bad/sha", "/bad/size", "/bad/notkv"} {
		if n := s.Requests(p); n != 0 {
			t.Errorf("%s (on a bad line) was requested %d times", p, n)
		}
	}
	if got := files(t, outside); len(got) != 0 {
		t.Errorf("files written outside --dir: %v", got)
	}
	reported := map[int]string{}
	for _, m := range regexp.MustCompile(`(?m)^haul: input line (\d+): (.*)$`).FindAllStringSubmatch(r.stderr, -1) {
		var n int
		fmt.Sscan(m[1], &n)
		if _, dup := reported[n]; dup {
			t.Errorf("line %d reported twice", n)
		}
		reported[n] = m[2]
	}
	for n, reason := range invalid {
		msg, ok := reported[n]
		switch {
		case !ok:
			t.Errorf("bad line %d (%s) not reported as \"haul: input line %d: ...\"", n, reason, n)
		case !strings.Contains(msg, reason):
			t.Errorf("line %d reported as %q, want a reason mentioning %q", n, msg, reason)
		}
		if len(msg) > 1000 {
			t.Errorf("line %d's message is %d bytes long: an over-long line must not be echoed whole", n, len(msg))
		}
	}
	for n, msg := range reported {
		if _, ok := invalid[n]; !ok {
			t.Errorf("good line %d reported as bad: %s", n, msg)
		}
	}
	ms := readManifest(t, man)
	inv := map[int]manLine{}
	ok := 0
	for _, m := range ms {
		switch m.Status {
		case "invalid":
			inv[m.Line] = m
			if m.Error == nil || !strings.Contains(*m.Error, fmt.Sprintf("input line %d", m.Line)) {
				t.Errorf("invalid manifest line for line %d: error %s", m.Line, str(m.Error))
			}
		case "ok":
			ok++
		default:
			t.Errorf("unexpected manifest line %+v", m)
		}
	}
	if ok != len(good) {
		t.Errorf("manifest has %d ok lines, want %d", ok, len(good))
	}
	for n := range invalid {
		if _, found := inv[n]; !found {
			t.Errorf("manifest has no invalid line for line %d", n)
		}
	}
	if len(inv) != len(invalid) {
		t.Errorf("manifest has %d invalid lines, want %d", len(inv), len(invalid))
	}
	if !strings.Contains(r.stderr, fmt.Sprintf("%d ok, 0 skipped, 0 failed, %d invalid", len(good), len(invalid))) {
		t.Errorf("summary does not count the invalid lines:\n%s", r.stderr)
	}
}

// --shard K/N over one list: every URL fetched exactly once across the shards,
// which split it by FNV-1a 64 of the URL; every shard reports the bad lines.
func TestE2EShards(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	const n, shards = 300, 3
	var lines []string
	want := map[string][]byte{}
	for i := range n {
		p := fmt.Sprintf("/shard/%03d.txt", i)
		b := testutil.Payload(uint64(1000+i), 64+i)
		lines = append(lines, s.Add(p, b))
		want[hostDir(s)+p] = b
		if i == 150 {
			lines = append(lines, "ftp://127.0.0.1/bad") // line 152
		}
	}
	list := writeList(t, lines...)
	dir := filepath.Join(t.TempDir(), "shared")
	var wg sync.WaitGroup
	res := make([]result, shards)
	man := make([]string, shards)
	for k := range shards {
		man[k] = filepath.Join(t.TempDir(), "m.jsonl")
		wg.Go(func() {
			res[k] = runHaul(t, nil, "-i", list, "-d", dir, "--shard", fmt.Sprintf("%d/%d", k, shards), "--manifest", man[k])
		})
	}
	wg.Wait()
	seen := map[string]int{}
	for k := range shards {
		wantCode(t, res[k], 1) // the bad line
		if !strings.Contains(res[k].stderr, "haul: input line 152: ") {
			t.Errorf("shard %d does not report the bad line 152:\n%s", k, res[k].stderr)
		}
		for _, m := range readManifest(t, man[k]) {
			if m.Status == "invalid" {
				continue
			}
			seen[m.URL]++
			if m.Status != "ok" {
				t.Errorf("shard %d: %+v", k, m)
			}
			h := fnv.New64a()
			h.Write([]byte(m.URL))
			if got := int(h.Sum64() % shards); got != k {
				t.Errorf("shard %d fetched %s, which FNV-1a puts in shard %d", k, m.URL, got)
			}
		}
	}
	for _, u := range lines {
		if strings.HasPrefix(u, "ftp:") {
			continue
		}
		if seen[u] != 1 {
			t.Errorf("%s in %d shards' manifests, want 1", u, seen[u])
		}
	}
	for p := range want {
		if got := s.Requests(strings.TrimPrefix(p, hostDir(s))); got != 1 {
			t.Errorf("%s requested %d times across the shards, want 1", p, got)
		}
	}
	checkFiles(t, dir, want)
}

// -i naming a directory is an unreadable input: exit 2.
func TestE2EInputIsADirectory(t *testing.T) {
	t.Parallel()
	man := filepath.Join(t.TempDir(), "m.jsonl")
	os.WriteFile(man, []byte("an earlier run's manifest\n"), 0o644)
	r := runHaul(t, nil, "-i", t.TempDir(), "-d", filepath.Join(t.TempDir(), "out"), "--manifest", man)
	if r.code != 2 {
		t.Errorf("exit %d, want 2\n%v", r.code, r)
	}
	if !strings.Contains(r.stderr, "haul: -i ") || !strings.Contains(r.stderr, "directory") {
		t.Errorf("no message:\n%v", r)
	}
	if b, _ := os.ReadFile(man); string(b) != "an earlier run's manifest\n" {
		t.Errorf("a usage error truncated the manifest: %q", b)
	}
}

// --manifest naming the input list is refused before either is touched.
func TestE2EManifestIsTheInput(t *testing.T) {
	t.Parallel()
	list := writeList(t, "http://127.0.0.1:1/a")
	r := runHaul(t, nil, "-i", list, "-d", filepath.Join(t.TempDir(), "out"), "--manifest", list)
	wantCode(t, r, 2)
	if b, _ := os.ReadFile(list); string(b) != "http://127.0.0.1:1/a\n" {
		t.Errorf("the list was overwritten: %q", b)
	}
}

// Peak memory does not grow with file size or list length.
func TestE2EMemoryBound(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	small, big := testutil.Payload(1980, 1<<20), testutil.Payload(1981, 48<<20)
	us := s.Add("/small.bin", small)
	// The run the others are held against is looked at late, whatever the
	// machine's load: its body's end waits for a look (a run that ended
	// between two looks had its peak read at its start, or not at all).
	baseEnd := newHeldEnd(small)
	base := s.Handle("/base.bin", baseEnd)
	// The stall near the end gives the sampler a look at the process late in the run.
	ub := s.Add("/big.bin", big, downloadtest.Stall(int64(len(big)-1000), 200*time.Millisecond, 1))
	// peak runs haul and returns its peak RSS in KiB, sampled from /proc
	// (rusage's Maxrss would count the test process's pages the child had
	// before exec), and at least once while held (if not nil) holds its
	// body's end.
	peak := func(held *heldEnd, stdin string, args ...string) int64 {
		dir := filepath.Join(t.TempDir(), "out")
		cmd, _, stderr := haulCmd(t.Context(), strings.NewReader(stdin), append([]string{"-d", dir, "--no-sync"}, args...)...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		var hwm int64
		status := fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)
		for {
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("haul %q: %v\n%s", args, err, stderr)
				}
				if held != nil && !held.wasLooked() {
					t.Fatalf("haul %q ended without a look at it while its body's end was held", args)
				}
				return hwm
			case <-time.After(2 * time.Millisecond):
			}
			holding := held != nil && held.holding()
			b, _ := os.ReadFile(status)
			// Before exec, the child is still the test binary: wait for haul.
			if !bytes.Contains(b, []byte("Name:\thaul")) {
				continue
			}
			if _, v, ok := bytes.Cut(b, []byte("VmHWM:")); ok {
				var kb int64
				fmt.Sscan(string(v), &kb)
				hwm = max(hwm, kb)
				if holding {
					held.looked()
				}
			}
		}
	}
	rs := peak(baseEnd, "", "--sha256", base)
	rb := peak(nil, "", "--sha256", ub)
	many := peak(nil, strings.Repeat(us+"\n", 100000))
	t.Logf("peak RSS: %d KiB for 1 MiB, %d KiB for 48 MiB, %d KiB for a 100,000-line list", rs, rb, many)
	if rb > rs+16<<10 {
		t.Errorf("peak RSS grew from %d KiB to %d KiB with the file size", rs, rb)
	}
	if many > rs+16<<10 {
		t.Errorf("peak RSS grew from %d KiB to %d KiB with the list length", rs, many)
	}
}

// heldEnd serves body, holding its last 1000 bytes until looked is called
// (or the client goes away).
type heldEnd struct {
	body    []byte
	reach   sync.Once
	reached chan struct{} // closed once a response holds its end
	see     sync.Once
	seen    chan struct{} // closed by looked
}

func newHeldEnd(body []byte) *heldEnd {
	return &heldEnd{body: body, reached: make(chan struct{}), seen: make(chan struct{})}
}

func (h *heldEnd) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Length", strconv.Itoa(len(h.body)))
	cut := len(h.body) - 1000
	if _, err := w.Write(h.body[:cut]); err != nil {
		return
	}
	if err := http.NewResponseController(w).Flush(); err != nil {
		return
	}
	h.reach.Do(func() { close(h.reached) })
	select {
	case <-h.seen:
	case <-r.Context().Done():
		return
	}
	w.Write(h.body[cut:])
}

// holding reports whether a response holds its end now.
func (h *heldEnd) holding() bool {
	select {
	case <-h.reached:
		select {
		case <-h.seen:
			return false
		default:
			return true
		}
	default:
		return false
	}
}

// looked lets the held end go: the process was looked at meanwhile.
func (h *heldEnd) looked() { h.see.Do(func() { close(h.seen) }) }

func (h *heldEnd) wasLooked() bool {
	select {
	case <-h.seen:
		return true
	default:
		return false
	}
}

// With no URLs and a terminal on stdin, haul does not wait for typing: usage error.
func TestE2EStdinTerminal(t *testing.T) {
	t.Parallel()
	_, tty := openPTY(t)
	dir := filepath.Join(t.TempDir(), "out")
	ctx, cancel := haulContext(t)
	defer cancel()
	cmd, stdout, stderr := haulCmd(ctx, nil, "-d", dir)
	cmd.Stdin = tty
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("haul waited for input on a terminal")
	}
	if code := cmd.ProcessState.ExitCode(); code != 2 {
		t.Errorf("exit %d (%v), want 2\n%s%s", code, err, stdout, stderr)
	}
	if !strings.Contains(stderr.String(), "haul: ") {
		t.Errorf("no message:\n%s", stderr)
	}
}

// A line of exactly 64 KiB (with "\n" or "\r\n") is accepted; one byte more is
// not. The run keeps a shard none of the good lines falls in, so only parsing is
// tested here (see TestE2ELongURL for downloading such URLs).
func TestE2ELineLengthBoundary(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	u := s.Add("/len", testutil.Payload(2400, 10))
	line := func(n int, c string) string { // a line of n bytes
		prefix := u + "?q="
		return prefix + strings.Repeat(c, n-len(prefix))
	}
	good := []string{line(64<<10, "a"), line(64<<10, "b"), u}
	list := good[0] + "\n" + // 1: ok
		good[1] + "\r\n" + // 2: ok
		line(64<<10+1, "c") + "\n" + // 3: too long
		line(64<<10+1, "d") + "\r\n" + // 4: too long
		good[2] + "\n" // 5: ok
	const n = 1000
	used := map[int]bool{}
	for _, g := range good {
		h := fnv.New64a()
		h.Write([]byte(g))
		used[int(h.Sum64()%n)] = true
	}
	k := 0
	for used[k] {
		k++
	}
	dir := filepath.Join(t.TempDir(), "out")
	r := runHaul(t, strings.NewReader(list), "-d", dir, "--manifest", "-", "--shard", fmt.Sprintf("%d/%d", k, n))
	wantCode(t, r, 1)
	var st []string
	for _, m := range parseManifest(t, r.stdout) {
		st = append(st, fmt.Sprint(m.Line, m.Status))
	}
	slices.Sort(st)
	if want := []string{"3invalid", "4invalid"}; !slices.Equal(st, want) {
		t.Errorf("manifest: %q, want %q\n%s", st, want, clip(r.stderr))
	}
	for _, n := range []int{3, 4} {
		if !strings.Contains(r.stderr, fmt.Sprintf("haul: input line %d: line longer than 64 KiB", n)) {
			t.Errorf("line %d not reported as too long:\n%s", n, clip(r.stderr))
		}
	}
	if s.TotalRequests() != 0 {
		t.Errorf("%d requests from an empty shard", s.TotalRequests())
	}
}

// URLs are valid up to the 64 KiB line limit: a long one (signed URLs can run to
// kilobytes) downloads like any other and does not stop the run.
func TestE2ELongURL(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	b := testutil.Payload(2401, 1000)
	short := s.Add("/short", b)
	var urls []string
	for _, n := range []int{2000, 4100, 8000, 60000} {
		urls = append(urls, s.URL+"/long?q="+strings.Repeat("x", n))
	}
	s.Add("/long", b)
	dir := filepath.Join(t.TempDir(), "out")
	man := filepath.Join(t.TempDir(), "m.jsonl")
	r := runHaul(t, strings.NewReader(strings.Join(append(urls, short), "\n")+"\n"), "-d", dir, "-j", "1", "--manifest", man)
	wantCode(t, r, 0)
	ms := byURL(t, readManifest(t, man))
	for _, u := range append(urls, short) {
		if m := ms[u]; m.Status != "ok" {
			t.Errorf("%s...: status %q", u[:40], m.Status)
		}
	}
	got := files(t, dir)
	if len(got) != 5 {
		t.Errorf("%d files, want 5", len(got))
	}
	// Downloaded again, they are skipped without requests.
	before := s.TotalRequests()
	r = runHaul(t, strings.NewReader(strings.Join(append(urls, short), "\n")+"\n"), "-d", dir)
	wantCode(t, r, 0)
	if n := s.TotalRequests() - before; n != 0 {
		t.Errorf("re-run made %d requests", n)
	}
}

// A manifest written inside the output directory is a file haul did not
// write: a URL whose name is the manifest's is skipped, as with any such
// file, not downloaded and then refused at its commit.
func TestE2EManifestInsideOutput(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	u := s.Add("/m.jsonl", testutil.Payload(9, 100))
	dir := t.TempDir()
	r := runHaul(t, nil, "-d", dir, "--layout", "flat", "--manifest", filepath.Join(dir, "m.jsonl"), u)
	wantCode(t, r, 0)
	if n := s.Requests("/m.jsonl"); n != 0 {
		t.Errorf("the URL named as the manifest was requested %d times", n)
	}
	ms := readManifest(t, filepath.Join(dir, "m.jsonl"))
	if len(ms) != 1 || ms[0].Status != "skipped" {
		t.Errorf("manifest %+v, want the URL skipped", ms)
	}
}
