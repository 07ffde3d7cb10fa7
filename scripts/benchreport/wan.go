package main

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// wanProfile is one wan.sh profile at one concurrency: DIR/wan/P-cC.tsv (wan.sh's raw runs, with
// haul's variants' rows added by bench.sh under their own tool names) and DIR/wan/P-cC.out (what
// wan.sh printed, for its limit).
type wanProfile struct {
	name     string
	c        int
	limit    float64 // seconds: wan.sh's limit at C connections (requests in flight)
	limitTxt string  // its "limit = ..." lines
	stats    []stat
}

// wanOrder is wan.sh's order of profiles.
var wanOrder = []string{"far-small", "far-small-tls", "many-hosts", "many-hosts-tls", "capped-large", "capped-huge"}

var wanTag = regexp.MustCompile(`^(.+)-c(\d+)\.tsv$`)

// wanLimit matches wan.sh's limit line: "limit = FORMULA = ... = 5.248 s (C requests ...".
var wanLimit = regexp.MustCompile(`(?m)^\s*(limit = .*?= ([0-9.]+) s \(.*)$`)

// readWAN reads dir's profiles in wanOrder (none if dir does not exist).
func readWAN(dir string) ([]wanProfile, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.tsv"))
	if err != nil {
		return nil, err
	}
	var out []wanProfile
	for _, f := range files {
		m := wanTag.FindStringSubmatch(filepath.Base(f))
		if m == nil {
			continue
		}
		rows, err := readFile(f, readTSV)
		if err != nil {
			return nil, err
		}
		p := wanProfile{name: m[1], stats: summarize(rows, "tool")}
		p.c, _ = strconv.Atoi(m[2])
		printed, err := os.ReadFile(strings.TrimSuffix(f, ".tsv") + ".out")
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		if l := wanLimit.FindSubmatch(printed); l != nil {
			p.limit, p.limitTxt = atof(string(l[2])), string(l[1])
			// capped-*: the line after it gives the limit with one connection per file
			if rest := printed[strings.Index(string(printed), p.limitTxt)+len(p.limitTxt):]; len(rest) > 0 {
				if next, _, _ := strings.Cut(strings.TrimLeft(string(rest), "\n"), "\n"); strings.Contains(next, "one connection per file") {
					p.limitTxt += " " + strings.TrimSpace(next)
				}
			}
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := index(wanOrder, out[i].name), index(wanOrder, out[j].name)
		return a < b || a == b && out[i].c < out[j].c
	})
	return out, nil
}

// xLimit is wall ÷ the profile's limit, 0 where either is missing.
func (p wanProfile) xLimit(s stat) float64 {
	if s.wall <= 0 || p.limit <= 0 {
		return 0
	}
	return s.wall / p.limit
}

func conns(s stat) string {
	if s.conns <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", s.conns)
}

// wanMarkdown renders the WAN section: a summary of haul against the fastest peer per profile,
// then every tool per profile.
func wanMarkdown(ps []wanProfile) string {
	if len(ps) == 0 {
		return ""
	}
	var b strings.Builder
	p := func(f string, a ...any) { fmt.Fprintf(&b, f, a...) }
	p("\n## WAN profiles (`scripts/bench/wan.sh`)\n\n`scripts/bench/wan.sh PROFILE C`: toxiproxy adds 20 + 20 ms in front of nginx" +
		" (about 41 ms round trip) for the far-* and many-hosts* profiles (2,000 small files; many-hosts* spread them" +
		" over 50 hosts, 127.0.0.2-51); capped-* fetch 256 MiB files from an nginx that caps every request at" +
		" 16 MiB/s. The limit is wan.sh's: ceil(files / C) round trips with C requests in flight (far-*, many-hosts*)," +
		" bytes ÷ min(C × 16 MiB/s, loopback) (capped-*); x_limit = wall ÷ limit, below 1 where a tool keeps more" +
		" than C requests or connections going (HTTP/2 streams, `--split`). conns = TCP connections toxiproxy" +
		" accepted (far-*, many-hosts*). `haul-split16` is haul with `--split 16`.\n\n" +
		"| profile | -j | limit s | haul wall s | x_limit | conns | haul-split16 wall s | fastest peer | its wall s | haul ÷ fastest peer |\n" +
		"|---|--:|--:|--:|--:|--:|--:|---|--:|--:|\n")
	for _, w := range ps {
		name, best := fastestPeer(w.stats)
		var h, h16 stat
		for _, s := range w.stats {
			switch s.tool {
			case "haul":
				h = s
			case "haul-split16":
				h16 = s
			}
		}
		p("| %s | %d | %s | %s | %s | %s | %s | %s | %s | **%s** |\n", w.name, w.c, f2(w.limit), f2(h.wall), f2(w.xLimit(h)),
			conns(h), f2(h16.wall), name, f2(best), ratio(h.wall, best))
	}
	for _, w := range ps {
		_, best := fastestPeer(w.stats)
		p("\n### %s, -j %d\n\n%s\n\n| tool | ok | wall s | x_limit | cpu s | RSS MiB | conns | × fastest peer | walls |\n"+
			"|---|--:|--:|--:|--:|--:|--:|--:|---|\n", w.name, w.c, "`"+w.limitTxt+"`")
		for _, s := range w.stats {
			name, cpu, rss := s.tool, "-", "-"
			if isHaul(name) {
				name = "**" + name + "**"
			}
			if s.wall > 0 {
				cpu, rss = f2(s.cpu), fmt.Sprintf("%.0f", s.rssMiB)
			}
			p("| %s | %d/%d | %s | %s | %s | %s | %s | %s | %s |\n", name, s.ok, s.n, f2(s.wall), f2(w.xLimit(s)), cpu, rss,
				conns(s), ratio(s.wall, best), s.walls)
		}
	}
	return b.String()
}

// WAN panel geometry: height of the plot, and its top and bottom margins.
const wph, wmt, wmb = 200.0, 60.0, 44.0

// wanHeight is the height the WAN panel adds to the chart.
func wanHeight(ps []wanProfile) float64 {
	if len(ps) == 0 {
		return 0
	}
	return wmt + wph + wmb
}

// wanPanel draws x_limit (wall ÷ limit, log scale, lower is better) per tool, grouped by profile,
// with the limit (1) as a dashed line.
func wanPanel(p func(string, ...any), x0, y0, width float64, ps []wanProfile) {
	px, py, pwid := x0+ml, y0+wmt, width-ml-40
	p(`<text x="%.0f" y="%.0f" font-size="13" font-weight="bold">WAN profiles (wan.sh): wall ÷ limit, lower is better (below 1: more in flight than -j)</text>`+"\n", x0, y0+20)
	x := x0
	var tools []string
	lo, hi := 1.0, 1.0
	for _, w := range ps {
		for _, s := range w.stats {
			if index(tools, s.tool) == len(tools) {
				tools = append(tools, s.tool)
			}
			if v := w.xLimit(s); v > 0 {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
	}
	sort.SliceStable(tools, func(i, j int) bool { return index(peerOrder, tools[i]) < index(peerOrder, tools[j]) })
	for _, t := range tools {
		p(`<rect x="%.0f" y="%.0f" width="12" height="12" fill="%s"/><text x="%.0f" y="%.0f"%s>%s</text>`+"\n", x, y0+30,
			color(t), x+16, y0+40, map[bool]string{true: ` font-weight="bold" fill="#c24400"`}[isHaul(t)], t)
		x += 24 + 6.5*float64(len(t))
	}
	ylo, yhi := math.Pow(10, math.Floor(math.Log10(lo))), math.Pow(10, math.Ceil(math.Log10(hi*1.05)))
	yOf := func(v float64) float64 { return py + wph - wph*math.Log10(v/ylo)/math.Log10(yhi/ylo) }
	p(`<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="#fafafa" stroke="#999"/>`+"\n", px, py, pwid, wph)
	for _, t := range ticks(ylo, yhi, true) {
		p(`<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#e4e4e4"/><text x="%.0f" y="%.1f" text-anchor="end" fill="#444">%s×</text>`+"\n",
			px, px+pwid, yOf(t), yOf(t), px-4, yOf(t)+4, fmtNum(t))
	}
	gw := pwid / float64(len(ps))
	bw := gw * 0.86 / float64(max(1, len(tools)))
	for g, w := range ps {
		gx := px + float64(g)*gw
		p(`<text x="%.0f" y="%.0f" text-anchor="middle" font-weight="bold">%s -j %d</text>`+"\n", gx+gw/2, py+wph+16, w.name, w.c)
		p(`<text x="%.0f" y="%.0f" text-anchor="middle" fill="#555">limit %s s</text>`+"\n", gx+gw/2, py+wph+30, f2(w.limit))
		for _, s := range w.stats {
			bx, t, v := gx+gw*0.07+float64(index(tools, s.tool))*bw, s.tool, w.xLimit(s)
			if v == 0 {
				p(`<text x="%.1f" y="%.0f" text-anchor="middle" fill="%s"><title>%s %s: no verified run (%s)</title>✗</text>`+"\n",
					bx+bw/2, py+wph-3, color(t), t, w.name, s.walls)
				continue
			}
			p(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"%s><title>%s %s -j %d: wall %.2f s, %.2f× the limit</title></rect>`+"\n",
				bx, yOf(v), bw*0.88, py+wph-yOf(v), color(t), map[bool]string{true: ` stroke="#8a2e00"`}[isHaul(t)], t, w.name, w.c, s.wall, v)
			if isHaul(t) {
				p(`<text x="%.1f" y="%.1f" text-anchor="middle" font-size="9" font-weight="bold" fill="#c24400">%.2f</text>`+"\n",
					bx+bw*0.44, yOf(v)-3, v)
			}
		}
	}
	p(`<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#222" stroke-width="1.2" stroke-dasharray="6 3"/><text x="%.0f" y="%.1f" font-size="10">limit</text>`+"\n",
		px, px+pwid, yOf(1), yOf(1), px+pwid+3, yOf(1)+4)
}
