package main

import (
	"bufio"
	"hash/fnv"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// limitsSample is real limits.sh output (LIMITS_RUNS=1), trimmed, plus a skipped section.
const limitsSample = `== limits  2026-11-21 23:00:04  runs=1  load: 2.17 2.26 1.82
measure                                          median       best       unit   all runs / notes
(a) loopback HTTP, curl -o /dev/null x1            1466       1466       MB/s   1466 (nginx CPU% 94)
(b) disk write dd 4 GiB bs=1M (cache)              1443       1443       MB/s   1443
(c) create+write+close 10000x4KiB, j=1            78262      79793    files/s   74948 78262 79793
(c) create+write+close 10000x4KiB, j=16           83867      91023    files/s   65479 91023 83867
(d) nginx small-file req/s, wrk -t2 -c64          57744      57744      req/s   57744 (239.61MB/s; nginx CPU% 53)
(d) wrk not installed: skipped
(e) loopback HTTPS --http2, curl x4                 669        669       MB/s   669 (nginx CPU% 49; curl CPU% 55)
(f) ... wrk h1.1 -c16 Connection: close             678        678      req/s   678 (2.81MB/s; nginx CPU% 36)
(f) nginx TLS req/s, h2load h2 -t2 -c16 -m10      53900      53900      req/s   53900 (217.54MB/s; nginx CPU% 61)
`

const peersSample = "tool\trun\tstatus\trc\twall_s\tuser_s\tsys_s\tmaxrss_kb\tsrv_cpu_s\tfiles\tmissing\textra\n" +
	"haul\t1\tok\t0\t2.00\t0.5\t0.5\t20480\t1.0\t10000\t0\t0\n" +
	"curl\t1\tok\t0\t1.00\t0.2\t0.2\t10240\t0.5\t10000\t0\t0\n" +
	"haul\t2\tFAILED\t1\t0.50\t0.1\t0.1\t40960\t0.1\t9999\t1\t0\n" +
	"curl\t2\tok\t0\t3.00\t0.4\t0.4\t12288\t0.5\t10000\t0\t0\n" +
	"haul\t3\tok\t0\t4.00\t1.5\t0.5\t30720\t2.0\t10000\t0\t0\n" +
	"aria2c\t1\tTIMEOUT\t124\t600\t1\t1\t1024\t1\t3\t9997\t0\n"

func TestParseLimits(t *testing.T) {
	ls, err := parseLimits(strings.NewReader(limitsSample))
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 8 {
		t.Fatalf("got %d rows, want 8: %+v", len(ls), ls)
	}
	want := limit{label: "(f) nginx TLS req/s, h2load h2 -t2 -c16 -m10", unit: "req/s", median: 53900, best: 53900,
		notes: "53900 (217.54MB/s; nginx CPU% 61)"}
	if ls[7] != want {
		t.Errorf("last row = %+v, want %+v", ls[7], want)
	}
	if l := ls[2]; l.label != "(c) create+write+close 10000x4KiB, j=1" || l.median != 78262 || l.best != 79793 || l.unit != "files/s" {
		t.Errorf("(c) row = %+v", l)
	}
	got := map[string]line{}
	for _, l := range chartLines(ls) {
		got[l.name] = l
	}
	for _, w := range []line{
		{"loopback HTTP x1", 'b', 1466, 0, 0}, {"page-cache write", 'b', 1443, 2, 0},
		{"file create floor j=16", 'f', 83867, 2, 0}, {"nginx req/s c64", 'f', 57744, 0, 64},
		{"HTTPS h2 x4", 'b', 669, 1, 0}, {"TLS new conn/req c16", 'f', 678, 1, 0}, {"h2load -c16 -m10", 'f', 53900, 1, 0},
	} {
		if got[w.name] != w {
			t.Errorf("chart line %q = %+v, want %+v", w.name, got[w.name], w)
		}
	}
	if len(got) != 7 {
		t.Errorf("got %d chart lines, want 7: %v", len(got), got)
	}
}

func TestSummarize(t *testing.T) {
	rows, err := readTSV(strings.NewReader(peersSample))
	if err != nil {
		t.Fatal(err)
	}
	ss := summarize(rows, "tool")
	if len(ss) != 3 || ss[0].tool != "aria2c" || ss[1].tool != "curl" || ss[2].tool != "haul" {
		t.Fatalf("order: %+v", ss)
	}
	h := ss[2]
	want := stat{tool: "haul", ok: 2, n: 3, wall: 3, cpu: 1.5, rssMiB: 30, srvPct: 50, walls: "2.00 0.50! 4.00"}
	if h != want {
		t.Errorf("haul = %+v, want %+v", h, want)
	}
	if a := ss[0]; a.ok != 0 || a.wall != 0 || a.walls != "600!" {
		t.Errorf("aria2c = %+v", a)
	}
	if name, best := fastestPeer(ss); name != "curl" || best != 2 {
		t.Errorf("fastest peer = %s %v, want curl 2", name, best)
	}
	if _, err := readTSV(strings.NewReader("a\tb\n1\n")); err == nil {
		t.Error("short row accepted")
	}
}

func TestReport(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"workloads.txt":                       "small\t10000\t40960000\n",
		"limits.txt":                          limitsSample,
		"peers/small-c16-20260101T000000.tsv": "tool\trun\tstatus\trc\twall_s\tuser_s\tsys_s\tmaxrss_kb\tsrv_cpu_s\tfiles\tmissing\textra\n",
		"peers/small-c16-20260102T000000.tsv": peersSample, // newer: wins
		"extra.tsv": "measure\trun\tstatus\trc\twall_s\tuser_s\tsys_s\tmaxrss_kb\tlines\tfiles\texpected\n" +
			"stream\t1\tok\t0\t10.00\t9\t1\t20480\t10000000\t10094\t10094\n",
		"meta.txt": "date: today\n",
	}
	for name, data := range files {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	md, svg := filepath.Join(dir, "b.md"), filepath.Join(dir, "b.svg")
	if err := report(dir, filepath.Join(dir, "limits.txt"), md, svg); err != nil {
		t.Fatal(err)
	}
	m, _ := os.ReadFile(md)
	s, _ := os.ReadFile(svg)
	for _, want := range []string{
		"- date: today", "(b.svg)", "| small | 16 | 3.00 | 3333 | 13.7 | 30 | curl | 2.00 | **1.50** | 0.17 | 17.32 |",
		"| **haul** | 2/3 | 3.00 | 3333 | 13.7 | 1.50 | 36.6 | 30 | 50 | 1.50 | 2.00 0.50! 4.00 |",
		"| aria2c | 0/1 | - |", "10000000 lines", "| 1/1 | 10.00 | 1000000 | 10.00 | 20 |", "| (d) nginx small-file req/s, wrk -t2 -c64 | 57744 |",
	} {
		if !strings.Contains(string(m), want) {
			t.Errorf("markdown lacks %q:\n%s", want, m)
		}
	}
	for _, want := range []string{"<svg ", "small: 10000 × 4 KiB, HTTP/1.1", "file create floor j=16", "✗", "</svg>"} {
		if !strings.Contains(string(s), want) {
			t.Errorf("svg lacks %q", want)
		}
	}
	if strings.Contains(string(s), "HTTPS h2") || strings.Contains(string(s), "page-cache") {
		t.Error("svg draws a TLS or byte-rate limit on the plain small-file panel")
	}
}

func TestGenList(t *testing.T) {
	path := filepath.Join(t.TempDir(), "list")
	var printed strings.Builder
	if err := genList(path, 20000, "http://h:1", "3/7", &printed); err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(path)
	defer f.Close()
	sc := bufio.NewScanner(f)
	seen, kept := map[string]bool{}, 0
	for sc.Scan() {
		h := fnv.New64a()
		h.Write(sc.Bytes())
		if h.Sum64()%7 == 3 {
			kept++
		}
		seen[sc.Text()] = true
	}
	if len(seen) != 20000 || !seen["http://h:1/small/d99/f9999.bin?r=19999"] {
		t.Errorf("%d distinct lines, or the last one is wrong", len(seen))
	}
	if printed.String() != strconv.Itoa(kept)+"\n" {
		t.Errorf("printed %q, counted %d", printed.String(), kept)
	}
}

// wanOut is the head of wan.sh's output for capped-huge (its format, as wan.sh prints it).
const wanOut = `== wan: profile=capped-huge files=1 bytes=268435456 concurrency=16 runs=3  2026-12-02 01:00:00  load: 0.1 0.1 0.1
   wan nginx http://127.0.0.1:18180, limit_rate 16m per request, no added latency
   limit = bytes / min(C x 16m/s, L) = 268435456 / min(16 x 16777216, 1500e6) B/s = 1.000 s (C connections, ranged requests allowed; L = loopback/page-cache 1500 MB/s: 4 parallel uncapped curls of large/ to files, best of 2)
   one connection per file: bytes / min(min(files, C) x 16m/s, L) = 16.000 s; aria2c-x16 may open min(files, C) x 16 connections, so x_limit < 1 is possible for it
   haul       $HAUL -i ...
`

const wanTSV = "tool\trun\tstatus\trc\twall_s\tuser_s\tsys_s\tmaxrss_kb\tsrv_cpu_s\tprx_cpu_s\tconns\tfiles\tmissing\textra\n" +
	"aria2c-x16\t1\tok\t0\t1.25\t0.5\t0.5\t10240\t0.2\t0.00\t-\t1\t0\t0\n" +
	"haul\t1\tok\t0\t4.20\t0.3\t0.3\t20480\t0.2\t0.00\t-\t1\t0\t0\n" +
	"haul\t2\tok\t0\t4.00\t0.3\t0.3\t20480\t0.2\t0.00\t-\t1\t0\t0\n" +
	"haul-split16\t1\tok\t0\t1.10\t0.4\t0.4\t30720\t0.2\t0.00\t-\t1\t0\t0\n"

const wanSmallTSV = "tool\trun\tstatus\trc\twall_s\tuser_s\tsys_s\tmaxrss_kb\tsrv_cpu_s\tprx_cpu_s\tconns\tfiles\tmissing\textra\n" +
	"curl\t1\tok\t0\t5.40\t0.2\t0.2\t10240\t0.2\t0.50\t50\t2000\t0\t0\n" +
	"haul\t1\tok\t0\t5.30\t0.5\t0.5\t20480\t0.2\t0.50\t52\t2000\t0\t0\n" +
	"haul\t2\tok\t0\t5.20\t0.5\t0.5\t20480\t0.2\t0.50\t48\t2000\t0\t0\n"

func TestWAN(t *testing.T) {
	dir := t.TempDir()
	for name, data := range map[string]string{
		"workloads.txt":                   "",
		"wan/capped-huge-c16.tsv":         wanTSV,
		"wan/capped-huge-c16.out":         wanOut,
		"wan/capped-huge-c16.split16.out": "(not read)",
		"wan/many-hosts-c16.tsv":          wanSmallTSV,
		"wan/many-hosts-c16.out":          "   limit = ceil(files/C) x RTT = ceil(2000/16) x 41.5 ms = 5.188 s (C requests in flight, one per RTT; connection setup not counted)\n",
	} {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ps, err := readWAN(filepath.Join(dir, "wan"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 2 || ps[0].name != "many-hosts" || ps[1].name != "capped-huge" || ps[1].limit != 1 || ps[0].limit != 5.188 {
		t.Fatalf("profiles: %+v", ps)
	}
	if !strings.Contains(ps[1].limitTxt, "one connection per file") {
		t.Errorf("capped-huge limit text lacks the one-connection limit: %q", ps[1].limitTxt)
	}
	md, svg := filepath.Join(dir, "b.md"), filepath.Join(dir, "b.svg")
	if err := report(dir, filepath.Join(dir, "limits.txt"), md, svg); err != nil {
		t.Fatal(err)
	}
	m, _ := os.ReadFile(md)
	s, _ := os.ReadFile(svg)
	for _, want := range []string{
		"| many-hosts | 16 | 5.19 | 5.25 | 1.01 | 50 | - | curl | 5.40 | **0.97** |",
		"| capped-huge | 16 | 1.00 | 4.10 | 4.10 | - | 1.10 | aria2c-x16 | 1.25 | **3.28** |",
		"| **haul-split16** | 1/1 | 1.10 | 1.10 | 0.80 | 30 | - | 0.88 | 1.10 |",
	} {
		if !strings.Contains(string(m), want) {
			t.Errorf("markdown lacks %q:\n%s", want, m)
		}
	}
	for _, want := range []string{"WAN profiles (wan.sh)", "capped-huge -j 16", "haul-split16 capped-huge -j 16: wall 1.10 s, 1.10× the limit", "</svg>"} {
		if !strings.Contains(string(s), want) {
			t.Errorf("svg lacks %q", want)
		}
	}
}

// The limit of a workload is its binding bound: files for small files (the server's request rate
// below the file-creation rate), bytes for big ones (the page cache below loopback), one stream
// for a single file, the TLS rows for -tls workloads.
func TestMachineLimit(t *testing.T) {
	ls, err := parseLimits(strings.NewReader(limitsSample + "(a) loopback HTTP, curl -o /dev/null x4   2000  2000  MB/s   2000\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		w    string
		wl   workload
		want float64
	}{
		{"small", workload{10000, 40960000}, 10000.0 / 57744},
		{"large", workload{4, 1 << 30}, float64(1<<30) / 1443e6},
		{"huge", workload{1, 1 << 31}, float64(1<<31) / 1443e6},
		{"small-tls", workload{10000, 40960000}, 10000.0 / 53900},
		{"large-tls", workload{4, 1 << 30}, float64(1<<30) / 669e6},
		{"huge-tls", workload{1, 1 << 31}, float64(1<<31) / 1443e6}, // no one-stream HTTPS row: the page cache alone
	} {
		got := machineLimit(c.w, c.wl, ls)
		if math.Abs(got-c.want) > 1e-9 {
			t.Errorf("%s: limit %.6f s, want %.6f", c.w, got, c.want)
		}
	}
	if got := machineLimit("small", workload{10, 10}, nil); got != 0 {
		t.Errorf("no limits measured: %v, want 0", got)
	}
}
