package main

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/haul/haul/download/downloadtest"
	"github.com/haul/haul/internal/testutil"
)

// A real terminal: under tmux, a run of 2,000 files draws a progress bar that
// moves (two looks at the screen during the run), a failure's message appears
// above it whole, and the run ends clean: the final bar once, the summary,
// nothing left of earlier bars.
func TestE2EProgressBarTmux(t *testing.T) {
	t.Parallel()
	const n = 2000
	s := downloadtest.New(t)
	var lines []string
	for i := range n {
		// 2,000 x 15 ms at -j 16: about two seconds.
		lines = append(lines, s.Add(fmt.Sprintf("/tty/%04d.bin", i), testutil.Payload(uint64(i), 512), downloadtest.Delay(15*time.Millisecond)))
		if i == n/2 {
			lines = append(lines, s.Add("/tty/gone", nil, downloadtest.Status(404, downloadtest.Always)))
		}
	}
	// Paths relative to the list's directory: the command fits on one line
	// of the screen wherever the temporary directory is.
	list := writeList(t, lines...)
	send, screen := tmuxShell(t, nil, "bash", "--norc", "--noprofile")
	send(fmt.Sprintf("cd %s && PS1='$ ' && clear", filepath.Dir(list)), "Enter")
	waitScreen(t, screen, `(?m)^\$ ?$`)
	send("haul -i list.txt -d out -j 16; echo EXIT=$?", "Enter")

	bar := regexp.MustCompile(`(?m)^(\d+)/(\d+) files \[[=> ]*\] .*B/s`)
	look := func() (done int, shown string) {
		t.Helper()
		shown = waitScreen(t, screen, bar.String())
		m := bar.FindAllStringSubmatch(shown, -1)
		if len(m) != 1 {
			t.Errorf("%d bar lines on the screen, want 1:\n%s", len(m), shown)
		}
		done, _ = strconv.Atoi(m[len(m)-1][1])
		return done, shown
	}
	first, shown1 := look()
	var second int
	var shown2 string
	waitFor(t, func() bool { second, shown2 = look(); return second != first })
	if first >= n || second <= first {
		t.Errorf("the bar did not move during the run: %d, then %d files\n%s\n%s", first, second, shown1, shown2)
	}
	t.Logf("during the run:\n%s\n%s", bar.FindString(shown1), bar.FindString(shown2))
	end := waitScreen(t, screen, `(?m)^EXIT=\d+$`)
	// Every line on the screen is one of these; anything else is debris.
	want := []*regexp.Regexp{
		regexp.MustCompile(`^\$ (clear|haul -i .*; echo EXIT=\$\?)$`),
		regexp.MustCompile(`^haul: get http://127\.0\.0\.1:\d+/tty/gone: .*404.*$`),
		regexp.MustCompile(`^2001/2001 files \[=+\] [0-9.]+ [kM]?B [0-9.]+ [kM]?B/s in \S+$`),
		regexp.MustCompile(`^haul: 2000 ok, 0 skipped, 1 failed, 0 invalid; .* in .*$`),
		regexp.MustCompile(`^haul: 1 failed:$`),
		regexp.MustCompile(`^  get http://127\.0\.0\.1:\d+/tty/gone: .*404.*$`),
		regexp.MustCompile(`^EXIT=1$`),
		regexp.MustCompile(`^\$$`),
	}
	seen := make([]int, len(want))
	for _, l := range strings.Split(end, "\n") {
		l = strings.TrimRight(l, " ")
		if l == "" {
			continue
		}
		matched := false
		for i, re := range want {
			if re.MatchString(l) {
				seen[i]++
				matched = true
				break
			}
		}
		if !matched {
			t.Errorf("unexpected line on the screen at the end: %q", l)
		}
	}
	for i, c := range seen {
		if c != 1 && i != 0 { // the $ lines: clear's and the command's
			t.Errorf("%d lines on the screen match %s, want 1", c, want[i])
		}
	}
	if t.Failed() {
		t.Logf("the screen at the end:\n%s", end)
	}
}
