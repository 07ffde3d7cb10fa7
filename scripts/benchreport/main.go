// Command benchreport writes docs/benchmarks.md (tables) and docs/benchmarks.svg (a chart) from a
// scripts/bench.sh run directory, using only the numbers measured there:
//
//	go run ./scripts/benchreport -dir bench-out/bench-STAMP -out docs/benchmarks.md -svg docs/benchmarks.svg
//
// DIR/peers/W-cC-STAMP.tsv: peers.sh's raw runs (tool run status rc wall_s user_s sys_s maxrss_kb
// srv_cpu_s files missing extra; the newest file per W-cC wins). DIR/workloads.txt: "W FILES BYTES"
// lines. DIR/limits.txt: limits.sh's output. DIR/extra.tsv: bench.sh's haul-only runs (measure run
// status rc wall_s user_s sys_s maxrss_kb lines files expected). DIR/meta.txt: "key: value" lines
// for the header. Medians are over verified runs, MB/s is 10^6 B/s, "× fastest peer" is wall ÷ the
// median wall of the fastest tool other than haul.
//
// With -genlist FILE it instead writes bench.sh's streaming-input list (the small workload's URLs
// with ?r=LINE, all distinct) and prints how many lines haul's --shard K/N keeps (FNV-1a 64 mod N).
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// stat is one tool (or haul-only measure) in one cell; times are medians over verified runs.
type stat struct {
	tool                      string
	ok, n                     int
	wall, cpu, rssMiB, srvPct float64 // wall 0: no verified run; rssMiB: max
	conns                     float64 // median TCP connections (wan.sh's conns column), 0: not counted
	walls                     string  // every run's wall, "!" after a failed one
}

type cell struct { // one workload at one concurrency
	w     string
	c     int
	stats []stat
}

type workload struct{ files, bytes float64 }

type limit struct { // one row of limits.sh's output
	label, unit, notes string
	median, best       float64
}

// line is a limit drawn on the chart: kind 'f' (files/s) or 'b' (MB/s); tls 0 plain, 1 TLS, 2 both;
// conc > 0: drawn over that -j's bars only.
type line struct {
	name      string
	kind      byte
	value     float64
	tls, conc int
}

// peerOrder is peers.sh's tool order with haul last: it fixes bar order and colours.
// wan.sh's tools (aria2c-x16, curl-imm, rclone) and haul's variants (haul-split16) come in too.
var peerOrder = []string{"aria2c", "aria2c-x1", "aria2c-x16", "curl", "curl-imm", "wget2", "wget", "rclone", "xargs-curl",
	"py-aiohttp", "py-threads", "haul", "haul-split16"}
var colors = map[string]string{"aria2c": "#7f96b2", "aria2c-x1": "#4e6a8c", "aria2c-x16": "#34506f", "curl": "#95bf85",
	"curl-imm": "#6f9f60", "wget2": "#5e9150", "wget": "#c9b47c", "rclone": "#d08fa8", "xargs-curl": "#b39dc6",
	"py-aiohttp": "#98c7cb", "py-threads": "#5f9ea4", "haul": "#e8590c", "haul-split16": "#a33d00"}

// isHaul: haul itself or a variant of it (haul-split16), never a peer.
func isHaul(tool string) bool { return tool == "haul" || strings.HasPrefix(tool, "haul-") }

func main() {
	dir := flag.String("dir", "", "bench.sh run directory")
	limits := flag.String("limits", "", "limits.sh output (default DIR/limits.txt)")
	out := flag.String("out", "docs/benchmarks.md", "markdown report to write")
	svg := flag.String("svg", "docs/benchmarks.svg", "SVG chart to write")
	genlist := flag.String("genlist", "", "write the streaming-input list to this file instead")
	lines := flag.Int("lines", 10000000, "-genlist: number of lines")
	base := flag.String("base", "http://127.0.0.1:18080", "-genlist: server base URL")
	shard := flag.String("shard", "0/1000", "-genlist: shard K/N whose lines to count")
	flag.Parse()
	err := errors.New("-dir or -genlist is required")
	if *genlist != "" {
		err = genList(*genlist, *lines, *base, *shard, os.Stdout)
	} else if *dir != "" {
		if *limits == "" {
			*limits = filepath.Join(*dir, "limits.txt")
		}
		err = report(*dir, *limits, *out, *svg)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
}

func genList(path string, n int, base, shard string, count io.Writer) error {
	var k, m uint64
	if _, err := fmt.Sscanf(shard, "%d/%d", &k, &m); err != nil || k >= m {
		return fmt.Errorf("bad -shard %q", shard)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w, kept := bufio.NewWriterSize(f, 1<<20), 0
	for i := 0; i < n; i++ {
		u := fmt.Sprintf("%s/small/d%02d/f%04d.bin?r=%d\n", base, i%10000/100, i%10000, i)
		h := fnv.New64a()
		h.Write([]byte(u[:len(u)-1]))
		if h.Sum64()%m == k {
			kept++
		}
		w.WriteString(u)
	}
	if err := errors.Join(w.Flush(), f.Close()); err != nil {
		return err
	}
	_, err = fmt.Fprintln(count, kept)
	return err
}

// readTSV reads a tab-separated file with a header line into one map per row.
func readTSV(r io.Reader) ([]map[string]string, error) {
	sc := bufio.NewScanner(r)
	var head []string
	var rows []map[string]string
	for sc.Scan() {
		f := strings.Split(strings.TrimRight(sc.Text(), "\r"), "\t")
		if head == nil {
			head = f
			continue
		}
		if len(f) != len(head) {
			return nil, fmt.Errorf("row %d: %d fields, header has %d", len(rows)+1, len(f), len(head))
		}
		m := map[string]string{}
		for i, h := range head {
			m[h] = f[i]
		}
		rows = append(rows, m)
	}
	return rows, sc.Err()
}

func num(m map[string]string, k string) float64 { return atof(m[k]) }
func atof(s string) float64                     { v, _ := strconv.ParseFloat(s, 64); return v }

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return (s[(len(s)-1)/2] + s[len(s)/2]) / 2
}

// summarize groups rows by column key into stats, in peerOrder (others after, in input order).
func summarize(rows []map[string]string, key string) []stat {
	by := map[string]*stat{}
	var order []string
	wall, cpu, srv, conns := map[string][]float64{}, map[string][]float64{}, map[string][]float64{}, map[string][]float64{}
	for _, r := range rows {
		t, w := r[key], num(r, "wall_s")
		if by[t] == nil {
			by[t] = &stat{tool: t}
			order = append(order, t)
		}
		s := by[t]
		s.n++
		s.walls += " " + r["wall_s"]
		if r["status"] != "ok" {
			s.walls += "!"
			continue
		}
		s.ok++
		wall[t], cpu[t] = append(wall[t], w), append(cpu[t], num(r, "user_s")+num(r, "sys_s"))
		if w > 0 {
			srv[t] = append(srv[t], 100*num(r, "srv_cpu_s")/w)
		}
		s.rssMiB = math.Max(s.rssMiB, num(r, "maxrss_kb")/1024)
		if c, err := strconv.ParseFloat(r["conns"], 64); err == nil {
			conns[t] = append(conns[t], c)
		}
	}
	sort.SliceStable(order, func(i, j int) bool { return index(peerOrder, order[i]) < index(peerOrder, order[j]) })
	var out []stat
	for _, t := range order {
		s := by[t]
		s.wall, s.cpu, s.srvPct, s.conns, s.walls = median(wall[t]), median(cpu[t]), median(srv[t]), median(conns[t]), s.walls[1:]
		out = append(out, *s)
	}
	return out
}

// fastestPeer returns the tool other than haul with the smallest median wall ("", 0 if none).
func fastestPeer(ss []stat) (string, float64) {
	name, best := "", 0.0
	for _, s := range ss {
		if !isHaul(s.tool) && s.wall > 0 && (best == 0 || s.wall < best) {
			name, best = s.tool, s.wall
		}
	}
	return name, best
}

var limitRow = regexp.MustCompile(`^(\([a-f]\) .*?)\s+(-|[0-9.]+)\s+(-|[0-9.]+)\s+(MB/s|files/s|req/s)\s*(.*)$`)

// parseLimits reads the measurement rows of limits.sh's output; other lines are ignored.
func parseLimits(r io.Reader) ([]limit, error) {
	var ls []limit
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if m := limitRow.FindStringSubmatch(strings.TrimSpace(sc.Text())); m != nil {
			ls = append(ls, limit{label: m[1], median: atof(m[2]), best: atof(m[3]), unit: m[4], notes: m[5]})
		}
	}
	return ls, sc.Err()
}

var concFlag = regexp.MustCompile(`-c(\d+)\b`)

// chartLines picks the limits to draw (medians) and the panels they belong on: byte rates on the
// big-file panels, request and file-creation rates on the small-file ones.
func chartLines(ls []limit) []line {
	var out []line
	floor := line{kind: 'f', tls: 2}
	for _, l := range ls {
		lb, c, v := l.label, 0, l.median
		if m := concFlag.FindStringSubmatch(lb); m != nil {
			c, _ = strconv.Atoi(m[1])
		}
		tail := lb[strings.LastIndexAny(lb, " ,")+1:] // x1, x4, j=16, ...
		switch {
		case v <= 0:
		case strings.HasPrefix(lb, "(a)"):
			out = append(out, line{"loopback HTTP " + tail, 'b', v, 0, 0})
		case strings.HasPrefix(lb, "(b)") && strings.Contains(lb, "cache"):
			out = append(out, line{"page-cache write", 'b', v, 2, 0})
		case strings.HasPrefix(lb, "(b)"):
			out = append(out, line{"disk write+fdatasync", 'b', v, 2, 0})
		case strings.HasPrefix(lb, "(c)") && v > floor.value: // the best worker count
			floor.name, floor.value = "file create floor "+tail, v
		case strings.HasPrefix(lb, "(d)"):
			out = append(out, line{fmt.Sprintf("nginx req/s c%d", c), 'f', v, 0, c})
		case strings.HasPrefix(lb, "(e)"):
			p := map[bool]string{true: "h1.1", false: "h2"}[strings.Contains(lb, "http1.1")]
			out = append(out, line{"HTTPS " + p + " " + tail, 'b', v, 1, 0})
		case strings.Contains(lb, "Connection: close"):
			out = append(out, line{"TLS new conn/req c16", 'f', v, 1, 0})
		case strings.Contains(lb, "h2load h2 "):
			out = append(out, line{"h2load " + strings.TrimPrefix(lb[strings.Index(lb, "h2 ")+3:], "-t2 "), 'f', v, 1, 0})
		case strings.HasPrefix(lb, "(f)"):
			out = append(out, line{fmt.Sprintf("TLS req/s c%d", c), 'f', v, 1, c})
		}
	}
	if floor.value > 0 {
		out = append(out, floor)
	}
	return out
}

func report(dir, limitsFile, outMD, outSVG string) error {
	wls := map[string]workload{}
	var order []string // workloads in bench.sh's order
	data, err := os.ReadFile(filepath.Join(dir, "workloads.txt"))
	if err != nil {
		return err
	}
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) == 3 {
			wls[f[0]] = workload{atof(f[1]), atof(f[2])}
			order = append(order, f[0])
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "peers", "*.tsv"))
	sort.Strings(files) // W-cC-STAMP: the newest file of a W-cC comes last and wins
	tag := regexp.MustCompile(`^(.+)-c(\d+)(-\d{8}T\d{6})?\.tsv$`)
	cells := map[string]*cell{}
	for _, f := range files {
		m := tag.FindStringSubmatch(filepath.Base(f))
		if m == nil {
			continue
		}
		if _, ok := wls[m[1]]; !ok {
			return fmt.Errorf("%s: workload %s not in workloads.txt", f, m[1])
		}
		rows, err := readFile(f, readTSV)
		if err != nil {
			return err
		}
		c, _ := strconv.Atoi(m[2])
		cells[m[1]+" "+m[2]] = &cell{w: m[1], c: c, stats: summarize(rows, "tool")}
	}
	var cl []*cell
	for _, c := range cells {
		cl = append(cl, c)
	}
	sort.Slice(cl, func(i, j int) bool {
		a, b := index(order, cl[i].w), index(order, cl[j].w)
		return a < b || a == b && cl[i].c < cl[j].c
	})
	lims, err := readFile(limitsFile, parseLimits)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	extra, err := readFile(filepath.Join(dir, "extra.tsv"), readTSV)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	meta, _ := os.ReadFile(filepath.Join(dir, "meta.txt"))
	rel, err := filepath.Rel(filepath.Dir(outMD), outSVG)
	if err != nil {
		rel = outSVG
	}
	wan, err := readWAN(filepath.Join(dir, "wan"))
	if err != nil {
		return err
	}
	md := markdown(filepath.Base(dir), string(meta), rel, cl, wls, lims, extra) + wanMarkdown(wan)
	return errors.Join(os.WriteFile(outMD, []byte(md), 0o644),
		os.WriteFile(outSVG, []byte(chart(cl, wls, chartLines(lims), wan)), 0o644))
}

func readFile[T any](path string, parse func(io.Reader) (T, error)) (T, error) {
	f, err := os.Open(path)
	if err != nil {
		var zero T
		return zero, err
	}
	defer f.Close()
	v, err := parse(f)
	if err != nil {
		err = fmt.Errorf("%s: %w", path, err)
	}
	return v, err
}

func index(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return len(list)
}
