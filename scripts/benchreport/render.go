package main

import (
	"fmt"
	"math"
	"strings"
)

// markdown renders the report: run metadata, chart, haul vs the fastest peer, limits, haul-only
// runs, then one table per workload × concurrency.
func markdown(run, meta, svg string, cl []*cell, wls map[string]workload, lims []limit, extra []map[string]string) string {
	var b strings.Builder
	p := func(f string, a ...any) { fmt.Fprintf(&b, f, a...) }
	p("# haul benchmarks\n\nRegenerate this page and its chart with `sudo scripts/bench.sh` from a clone, on an idle"+
		" machine (it sets up nginx, the dataset and the peers with `scripts/bench/setup.sh`, then runs"+
		" `scripts/bench/limits.sh`, `loopback.sh` and `wan.sh`; `scripts/bench/README.md` says how to run one"+
		" workload), or from saved data with `go run ./scripts/benchreport -dir bench-out/%s`. Do not"+
		" edit by hand. Loopback workloads: nginx on 127.0.0.1 serves a fixed dataset, every tool writes to a fresh directory,"+
		" and a run counts only if the files it wrote hash to the dataset's. Compare ratios within this"+
		" page, not absolute numbers across runs or machines. The WAN profiles (last section, and the chart's bottom panel) run the"+
		" same tools through toxiproxy (latency), over 50 hosts, and against a server that caps each connection.\n\n", run)
	for _, l := range strings.Split(meta, "\n") {
		if l != "" {
			p("- %s\n", l)
		}
	}
	p("\n![files/s and MB/s per tool and workload](%s)\n\nOne panel per workload; bars = median of the verified runs at"+
		" each `-j`, left axis files/s, right axis MB/s (the same bars), log scale where a panel spans more than 10×."+
		" Dashed lines: the machine's limits from `scripts/bench/limits.sh` (a line over one `-j` group applies to that concurrency).\n", svg)

	p("\n## haul against the fastest peer\n\nlimit: the shortest wall the machine's limits below allow (the larger of files ÷" +
		" min(the server's best request rate, the file-creation rate) and bytes ÷ min(the loopback rate, the page-cache write" +
		" rate), each over the workload's protocol); it counts neither the client's own CPU nor durability.\n\n" +
		"| workload | -j | haul wall s | files/s | MB/s | peak RSS MiB | fastest peer | its wall s | haul ÷ fastest peer | limit s | haul ÷ limit |\n" +
		"|---|--:|--:|--:|--:|--:|---|--:|--:|--:|--:|\n")
	for _, c := range cl {
		name, best := fastestPeer(c.stats)
		wl := wls[c.w]
		lim := machineLimit(c.w, wl, lims)
		for _, s := range c.stats {
			if s.tool == "haul" {
				p("| %s | %d | %s | %s | %s | %.0f | %s | %s | **%s** | %s | %s |\n", c.w, c.c, f2(s.wall), perSec(wl.files, s.wall),
					perSec(wl.bytes/1e6, s.wall), s.rssMiB, name, f2(best), ratio(s.wall, best), f2(lim), ratio(s.wall, lim))
			}
		}
	}
	if len(lims) > 0 {
		p("\n## Physical limits (`scripts/bench/limits.sh`)\n\n| measure | median | best | unit | runs / notes |\n|---|--:|--:|---|---|\n")
		for _, l := range lims {
			p("| %s | %.0f | %.0f | %s | %s |\n", l.label, l.median, l.best, l.unit, strings.ReplaceAll(l.notes, "|", "/"))
		}
	}
	if len(extra) > 0 {
		p("\n## haul only: streaming input and re-run\n\n| measurement | ok | wall s | input lines/s | cpu s | RSS MiB | walls |\n|---|--:|--:|--:|--:|--:|---|\n")
		desc := map[string]string{
			"stream": "`haul -i LIST -d OUT --shard 0/1000 -q`, LIST = %s lines (small files + `?r=LINE`), %s of them in the shard",
			"first":  "`haul -i small.txt -d OUT -q` into an empty dir (%s lines, %s files)",
			"rerun":  "the same again into the finished dir (%s lines, %s files, all skipped)",
		}
		info := map[string]map[string]string{}
		for _, r := range extra {
			info[r["measure"]] = r
		}
		for _, s := range summarize(extra, "measure") {
			d, in := desc[s.tool], info[s.tool]
			if d == "" {
				d = s.tool + " (%s lines, %s files)"
			}
			p("| %s | %d/%d | %s | %s | %.2f | %.0f | %s |\n", fmt.Sprintf(d, in["lines"], in["expected"]), s.ok, s.n,
				f2(s.wall), perSec(num(in, "lines"), s.wall), s.cpu, s.rssMiB, s.walls)
		}
	}

	p("\n## Every tool, per workload\n\nok = verified runs/runs; wall s, cpu s = medians over verified runs (cpu = user+sys of" +
		" the tool and its children); CPU s/GB = cpu s per 10^9 bytes; RSS = max RSS of its largest process; srv%% = nginx" +
		" worker CPU ÷ wall (near 100: the server is the ceiling); × fastest peer = wall ÷ the fastest peer's median wall;" +
		" walls = every run, `!` = failed.\n")
	for _, c := range cl {
		wl := wls[c.w]
		_, best := fastestPeer(c.stats)
		p("\n### %s, -j %d (%.0f files, %s MB)\n\n| tool | ok | wall s | files/s | MB/s | cpu s | CPU s/GB | RSS MiB | srv%% |"+
			" × fastest peer | walls |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n", c.w, c.c, wl.files, f1(wl.bytes/1e6))
		for _, s := range c.stats {
			name, cpu, cpg, rss, srv := strings.ReplaceAll(s.tool, "haul", "**haul**"), "-", "-", "-", "-"
			if s.wall > 0 {
				cpu, cpg, rss, srv = f2(s.cpu), f1(s.cpu/(wl.bytes/1e9)), fmt.Sprintf("%.0f", s.rssMiB), fmt.Sprintf("%.0f", s.srvPct)
			}
			p("| %s | %d/%d | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", name, s.ok, s.n, f2(s.wall), perSec(wl.files, s.wall),
				perSec(wl.bytes/1e6, s.wall), cpu, cpg, rss, srv, ratio(s.wall, best), s.walls)
		}
	}
	return b.String()
}

// f2, f1, perSec and ratio print "-" for a missing (zero) value.
func f2(v float64) string {
	if v <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", v)
}
func f1(v float64) string {
	if v >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}
func perSec(n, wall float64) string {
	if wall <= 0 {
		return "-"
	}
	return f1(n / wall)
}
func ratio(a, b float64) string {
	if a <= 0 || b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", a/b)
}

var esc = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace

// Panel geometry: plot area pw × ph; margins left, right (MB/s ticks, limit labels), top, bottom.
const pw, ph, ml, mr, mt, mb, head = 380.0, 180.0, 58.0, 215.0, 34.0, 28.0, 76.0

// chart draws one panel per workload, plain HTTP in the left column and TLS in the right.
// The WAN profiles, if any, get one panel below them.
func chart(cl []*cell, wls map[string]workload, lines []line, wan []wanProfile) string {
	var rows []string
	byW, tools, cols := map[string][]*cell{}, map[string]bool{}, map[bool]bool{}
	for _, c := range cl {
		if base := strings.TrimSuffix(c.w, "-tls"); index(rows, base) == len(rows) {
			rows = append(rows, base)
		}
		byW[c.w] = append(byW[c.w], c)
		cols[strings.HasSuffix(c.w, "-tls")] = true
		for _, s := range c.stats {
			tools[s.tool] = true
		}
	}
	W, H := float64(max(1, len(cols)))*(ml+pw+mr)+10, head+float64(len(rows))*(mt+ph+mb)+10+wanHeight(wan)
	var b strings.Builder
	p := func(f string, a ...any) { fmt.Fprintf(&b, f, a...) }
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="Helvetica,Arial,sans-serif" font-size="11">`+"\n", W, H, W, H)
	p(`<rect width="100%%" height="100%%" fill="#fff"/>` + "\n")
	p(`<text x="10" y="22" font-size="16" font-weight="bold">haul vs peers: files/s (left axis) and MB/s (right axis), loopback, median of verified runs</text>` + "\n")
	p(`<text x="10" y="40" fill="#555">bars grouped by -j · dashed: physical limits from limits.sh · log scale where a panel spans more than 10× · ✗ = no verified run</text>` + "\n")
	x := 10.0
	for _, t := range peerOrder {
		if tools[t] {
			p(`<rect x="%.0f" y="52" width="12" height="12" fill="%s"/><text x="%.0f" y="62"%s>%s</text>`+"\n", x, color(t), x+16,
				map[bool]string{true: ` font-weight="bold" fill="#c24400"`}[t == "haul"], t)
			x += 24 + 6.5*float64(len(t))
		}
	}
	for r, base := range rows {
		for _, w := range []string{base, base + "-tls"} {
			col := map[bool]float64{true: 1}[w != base && cols[false]]
			if cs := byW[w]; len(cs) > 0 {
				panel(p, 10+col*(ml+pw+mr), head+float64(r)*(mt+ph+mb), w, wls[w], cs, lines)
			}
		}
	}
	if len(wan) > 0 {
		wanPanel(p, 10, head+float64(len(rows))*(mt+ph+mb), W-20, wan)
	}
	p("</svg>\n")
	return b.String()
}

// panel draws one workload's bars (files/s; the MB/s axis is the same scale times bytes per file)
// and the limits relevant to it as horizontal lines labelled in the right margin.
func panel(p func(string, ...any), x0, y0 float64, w string, wl workload, cs []*cell, lines []line) {
	k := wl.bytes / wl.files / 1e6 // MB/s per files/s
	tls, small := strings.HasSuffix(w, "-tls"), strings.TrimSuffix(w, "-tls") == "small"
	px, py := x0+ml, y0+mt
	var tools []string
	lo, hi := math.Inf(1), 0.0
	for _, c := range cs {
		for _, s := range c.stats {
			if index(tools, s.tool) == len(tools) {
				tools = append(tools, s.tool)
			}
			if s.wall > 0 {
				lo, hi = math.Min(lo, wl.files/s.wall), math.Max(hi, wl.files/s.wall)
			}
		}
	}
	type drawn struct {
		line
		fps, x1, x2 float64 // value in files/s, x extent
	}
	var ds []drawn
	gw := pw / float64(len(cs))
	for _, l := range lines {
		d := drawn{line: l, fps: l.value, x1: px, x2: px + pw}
		if l.kind == 'b' {
			d.fps = l.value / k
		}
		g := 0
		for g < len(cs) && l.conc > 0 && cs[g].c != l.conc {
			g++
		}
		if (l.tls != 2 && (l.tls == 1) != tls) || (l.kind == 'f') != small || g == len(cs) {
			continue
		}
		if l.conc > 0 {
			d.x1, d.x2 = px+float64(g)*gw, px+float64(g+1)*gw
		}
		lo, hi = math.Min(lo, d.fps), math.Max(hi, d.fps)
		ds = append(ds, d)
	}
	p(`<text x="%.0f" y="%.0f" font-size="13" font-weight="bold">%s: %.0f × %s, %s</text>`+"\n", px, y0+16, w, wl.files,
		iec(k*1e6), map[bool]string{false: "HTTP/1.1", true: "HTTPS"}[tls])
	p(`<text x="%.0f" y="%.0f" fill="#555" text-anchor="end">files/s</text><text x="%.0f" y="%.0f" fill="#555">MB/s</text>`+"\n", px-4, py-6, px+pw+4, py-6)
	if hi == 0 {
		return
	}
	logScale := hi/lo > 10
	ylo, yhi := 0.0, niceUp(hi*1.05)
	if logScale {
		ylo, yhi = math.Pow(10, math.Floor(math.Log10(lo))), math.Pow(10, math.Ceil(math.Log10(hi*1.05)))
	}
	yOf := func(v float64) float64 {
		if logScale {
			return py + ph - ph*math.Log10(v/ylo)/math.Log10(yhi/ylo)
		}
		return py + ph - ph*v/yhi
	}
	p(`<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="#fafafa" stroke="#999"/>`+"\n", px, py, pw, ph)
	for _, t := range ticks(ylo, yhi, logScale) {
		p(`<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#e4e4e4"/><text x="%.0f" y="%.1f" text-anchor="end" fill="#444">%s</text>`+"\n",
			px, px+pw, yOf(t), yOf(t), px-4, yOf(t)+4, fmtNum(t))
	}
	for _, t := range ticks(ylo*k, yhi*k, logScale) {
		p(`<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#999"/><text x="%.0f" y="%.1f" fill="#444">%s</text>`+"\n",
			px+pw, px+pw+3, yOf(t/k), yOf(t/k), px+pw+5, yOf(t/k)+4, fmtNum(t))
	}
	bw := gw * 0.86 / float64(len(tools))
	for g, c := range cs {
		gx := px + float64(g)*gw
		p(`<text x="%.0f" y="%.0f" text-anchor="middle" font-weight="bold">-j %d</text>`+"\n", gx+gw/2, py+ph+16, c.c)
		for _, s := range c.stats {
			bx, t := gx+gw*0.07+float64(index(tools, s.tool))*bw, s.tool
			if s.wall == 0 {
				p(`<text x="%.1f" y="%.0f" text-anchor="middle" fill="%s"><title>%s -j %d: no verified run (%s)</title>✗</text>`+"\n",
					bx+bw/2, py+ph-3, color(t), t, c.c, s.walls)
				continue
			}
			v := wl.files / s.wall
			p(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"%s><title>%s -j %d: %s files/s, %s MB/s, wall %.2f s</title></rect>`+"\n",
				bx, yOf(v), bw*0.88, py+ph-yOf(v), color(t), map[bool]string{true: ` stroke="#8a2e00"`}[t == "haul"], t, c.c, fmtNum(v), fmtNum(v*k), s.wall)
			if t == "haul" { // its value in the panel's natural unit
				p(`<text x="%.1f" y="%.1f" text-anchor="middle" font-size="10" font-weight="bold" fill="#c24400">%s</text>`+"\n",
					bx+bw*0.44, yOf(v)-3, map[bool]string{true: fmtNum(v) + "/s", false: fmtNum(v*k) + " MB/s"}[small])
			}
		}
	}
	// limit lines; labels sorted top to bottom and pushed at least 11 px apart
	for i := 1; i < len(ds); i++ {
		for j := i; j > 0 && ds[j].fps > ds[j-1].fps; j-- {
			ds[j], ds[j-1] = ds[j-1], ds[j]
		}
	}
	prev := math.Inf(-1)
	for _, d := range ds {
		y := yOf(d.fps)
		prev = math.Max(y, prev+11)
		p(`<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#222" stroke-width="1.2" stroke-dasharray="%s"/>`+"\n",
			d.x1, d.x2, y, y, map[byte]string{'f': "6 3", 'b': "2 2"}[d.kind])
		p(`<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#bbb"/><text x="%.0f" y="%.1f" font-size="10" fill="#222">%s %s%s</text>`+"\n",
			px+pw+36, px+pw+40, y, prev, px+pw+42, prev+3.5, esc(d.name), fmtNum(d.value), map[byte]string{'f': "/s", 'b': " MB/s"}[d.kind])
	}
}

// ticks returns axis values from lo to hi: 1-2-5 steps (log scale: 1-2-5 per decade, or decades).
func ticks(lo, hi float64, log bool) []float64 {
	var out []float64
	step, mult := niceUp(hi/5), []float64{1, 2, 5}
	if hi/lo > 1e3 {
		mult = []float64{1}
	}
	for v := 0.0; !log && v <= hi*1.0001; v += step {
		out = append(out, v)
	}
	for e := math.Floor(math.Log10(lo)); log && e <= math.Ceil(math.Log10(hi)); e++ {
		for _, m := range mult {
			if v := m * math.Pow(10, e); v >= lo*0.999 && v <= hi*1.001 {
				out = append(out, v)
			}
		}
	}
	return out
}

// niceUp rounds v up to 1, 2 or 5 × 10^k.
func niceUp(v float64) float64 {
	e := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5} {
		if m*e >= v {
			return m * e
		}
	}
	return 10 * e
}

func color(t string) string {
	if c, ok := colors[t]; ok {
		return c
	}
	return "#aaa"
}

// fmtNum prints v compactly: 1.23M, 12k, 1.2k, 340, 0.52.
func fmtNum(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.3gM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.0fk", v/1e3)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	case v >= 10:
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.2g", v)
}

// iec prints a byte count in B, KiB, MiB or GiB.
func iec(b float64) string {
	u := 0
	for ; b >= 1024 && u < 3; u++ {
		b /= 1024
	}
	return strings.TrimSuffix(fmt.Sprintf("%.1f", b), ".0") + " " + []string{"B", "KiB", "MiB", "GiB"}[u]
}
