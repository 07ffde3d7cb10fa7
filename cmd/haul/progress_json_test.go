package main

// Tests of --progress: the JSON stream (every stderr line one object), the
// plain line's fields, and the flag's usage errors.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/haul/haul/download/downloadtest"
	"github.com/haul/haul/internal/testutil"
)

// progressKeys are the keys of every progress object; the final one adds
// exit_code.
var progressKeys = []string{"bytes", "done", "elapsed", "failed", "in_flight", "input_done", "invalid", "ok", "queued", "rate", "skipped", "type", "unchanged"}

type progressLine struct {
	Type      string   `json:"type"`
	Level     string   `json:"level"`
	Message   string   `json:"message"`
	Elapsed   float64  `json:"elapsed"`
	Done      int64    `json:"done"`
	Queued    int64    `json:"queued"`
	InputDone bool     `json:"input_done"`
	OK        int64    `json:"ok"`
	Skipped   int64    `json:"skipped"`
	Failed    int64    `json:"failed"`
	Invalid   int64    `json:"invalid"`
	InFlight  int64    `json:"in_flight"`
	Bytes     int64    `json:"bytes"`
	Rate      int64    `json:"rate"`
	ExitCode  *int     `json:"exit_code"`
	keys      []string // the object's keys, sorted
}

// parseJSONStream parses every line of stderr as one JSON object.
func parseJSONStream(t *testing.T, stderr string) []progressLine {
	t.Helper()
	if !strings.HasSuffix(stderr, "\n") {
		t.Fatalf("stderr does not end in a newline:\n%s", clip(stderr))
	}
	var out []progressLine
	for i, s := range strings.Split(strings.TrimSuffix(stderr, "\n"), "\n") {
		var raw map[string]json.RawMessage
		var p progressLine
		if err := json.Unmarshal([]byte(s), &raw); err != nil {
			t.Fatalf("stderr line %d is not a JSON object: %v\n%q", i+1, err, s)
		}
		if err := json.Unmarshal([]byte(s), &p); err != nil {
			t.Fatalf("stderr line %d: %v\n%s", i+1, err, s)
		}
		for k := range raw {
			p.keys = append(p.keys, k)
		}
		slices.Sort(p.keys)
		out = append(out, p)
	}
	return out
}

func TestE2EProgressJSON(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	var lines []string
	var total int64
	const n = 40
	for i := range n {
		b := testutil.Payload(uint64(3000+i), 20<<10)
		total += int64(len(b))
		// 40 files at 2 at a time, 50 ms each: about a second, ten intervals.
		lines = append(lines, s.Add(fmt.Sprintf("/p/%02d", i), b, downloadtest.Delay(50*time.Millisecond)))
	}
	lines = append(lines, "ftp://127.0.0.1/bad", s.Add("/gone", nil, downloadtest.Status(404, downloadtest.Always)))
	list := writeList(t, lines...)
	dir := filepath.Join(t.TempDir(), "out")
	r := runHaul(t, nil, "-i", list, "-d", dir, "-j", "2", "--progress", "json", "--progress-interval", "100ms")
	wantCode(t, r, exitFailed)
	objs := parseJSONStream(t, r.stderr)

	var progress []progressLine
	var messages []string
	for i, p := range objs {
		switch p.Type {
		case "progress":
			if !slices.Equal(p.keys, progressKeys) {
				t.Errorf("progress object %d has keys %q, want %q", i, p.keys, progressKeys)
			}
			progress = append(progress, p)
		case "message":
			if !slices.Equal(p.keys, []string{"level", "message", "type"}) || p.Message == "" {
				t.Errorf("message object %d: keys %q, message %q", i, p.keys, p.Message)
			}
			messages = append(messages, p.Level+": "+p.Message)
		case "final":
			if i != len(objs)-1 {
				t.Errorf("the final object is line %d of %d, want the last", i+1, len(objs))
			}
		default:
			t.Errorf("object %d has type %q", i, p.Type)
		}
	}
	if len(progress) < 3 {
		t.Errorf("%d progress objects over %v at 100ms, want several", len(progress), r.dur)
	}
	for i := 1; i < len(progress); i++ {
		a, b := progress[i-1], progress[i]
		if b.Elapsed < a.Elapsed || b.Done < a.Done || b.Bytes < a.Bytes || b.Queued < a.Queued || a.InputDone && !b.InputDone {
			t.Errorf("progress went backwards: %+v then %+v", a, b)
		}
	}
	for _, p := range progress {
		// In flight: started, not finished (fetching, or waiting for the
		// flush before its final name), so at most what was read and not done.
		if p.Done != p.OK+p.Skipped+p.Failed || p.Done > p.Queued || p.InFlight < 0 || p.InFlight > p.Queued-p.Done {
			t.Errorf("inconsistent progress object: %+v", p)
		}
	}
	if len(progress) > 0 && progress[0].Done == n+1 {
		t.Errorf("the first progress object came after the run was done: %+v", progress[0])
	}

	final := objs[len(objs)-1]
	if final.Type != "final" {
		t.Fatalf("the last line is not the final object: %+v", final)
	}
	wantKeys := append(slices.Clone(progressKeys), "exit_code")
	slices.Sort(wantKeys)
	if !slices.Equal(final.keys, wantKeys) {
		t.Errorf("final object keys %q, want %q", final.keys, wantKeys)
	}
	if final.OK != n || final.Failed != 1 || final.Invalid != 1 || final.Skipped != 0 || final.Queued != n+1 ||
		final.Done != n+1 || !final.InputDone || final.InFlight != 0 || final.Bytes != total || final.ExitCode == nil || *final.ExitCode != exitFailed {
		t.Errorf("final object %+v, want %d ok, 1 failed, 1 invalid, %d bytes, exit_code 1", final, n, total)
	}
	if final.Rate <= 0 || final.Elapsed <= 0 {
		t.Errorf("final rate %d, elapsed %v", final.Rate, final.Elapsed)
	}
	joined := strings.Join(messages, "\n")
	if !strings.Contains(joined, "error: input line 41:") || !strings.Contains(joined, "404") {
		t.Errorf("the messages do not carry the bad line and the 404:\n%s", joined)
	}
}

// With a fatal error or a usage error found once the run started, the message
// is a JSON object too, before the final object.
func TestE2EProgressJSONFatal(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	u := s.Add("/x", []byte("x"))
	r := runHaul(t, nil, "-i", "/nonexistent/list", "--progress", "json", "-d", t.TempDir())
	wantCode(t, r, exitUsage)
	objs := parseJSONStream(t, r.stderr)
	if len(objs) != 1 || objs[0].Type != "message" || objs[0].Level != "error" || !strings.Contains(objs[0].Message, "/nonexistent/list") {
		t.Errorf("want one error message object, got %+v", objs)
	}
	regular := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(regular, []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = runHaul(t, nil, "--progress", "json", "-d", regular, u)
	wantCode(t, r, exitFatal)
	objs = parseJSONStream(t, r.stderr)
	if len(objs) == 0 || !slices.ContainsFunc(objs, func(p progressLine) bool {
		return p.Type == "message" && strings.Contains(p.Message, "output directory")
	}) {
		t.Errorf("no message about the output directory: %+v", objs)
	}
}

// The plain status line carries the JSON object's fields, in words.
func TestE2EProgressPlain(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	var lines []string
	for i := range 30 {
		lines = append(lines, s.Add(fmt.Sprintf("/q/%02d", i), testutil.Payload(uint64(3100+i), 10<<10), downloadtest.Delay(50*time.Millisecond)))
	}
	lines = append(lines, "not a url")
	r := runHaul(t, nil, "-i", writeList(t, lines...), "-d", filepath.Join(t.TempDir(), "out"), "-j", "2",
		"--progress", "plain", "--progress-interval", "100ms")
	wantCode(t, r, exitFailed)
	re := regexp.MustCompile(`(?m)^haul: (\d+)/(\d+)(\+?) files \((\d+) ok, (\d+) skipped, (?:\d+ unchanged, )?(\d+) failed, (\d+) invalid\), (\d+) in flight, [0-9.]+ [kMG]?B, [0-9.]+ [kMG]?B/s, \d+s$`)
	ms := re.FindAllStringSubmatch(r.stderr, -1)
	if len(ms) < 3 {
		t.Fatalf("%d plain status lines, want several:\n%s", len(ms), r.stderr)
	}
	for _, m := range ms {
		v := make([]int, len(m))
		for i := range m {
			v[i], _ = strconv.Atoi(m[i])
		}
		if v[1] != v[4]+v[5]+v[6] || v[1] > v[2] || v[7] > 1 || v[8] > v[2]-v[1] {
			t.Errorf("inconsistent status line %q", m[0])
		}
	}
	if strings.Contains(r.stderr, `{"type"`) {
		t.Errorf("JSON in plain mode:\n%s", r.stderr)
	}
	// The summary is still there; none drops only the progress lines.
	r = runHaul(t, nil, "-d", filepath.Join(t.TempDir(), "out"), "--progress", "none", lines[0])
	wantCode(t, r, exitOK)
	if !strings.Contains(r.stderr, "1 ok, 0 skipped, 0 failed, 0 invalid") || strings.Contains(r.stderr, "in flight") {
		t.Errorf("--progress none:\n%s", r.stderr)
	}
}

func TestE2EProgressUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--progress", "fancy"},
		{"-q", "--progress", "json"},
		{"--progress", "plain", "--progress-interval", "0s"},
	} {
		r := runHaul(t, nil, append(args, "-d", t.TempDir(), "http://127.0.0.1:1/x")...)
		if r.code != exitUsage || !strings.Contains(r.stderr, "progress") {
			t.Errorf("haul %q: exit %d, want 2 and a message about --progress\n%s", args, r.code, r.stderr)
		}
	}
	// -q with --progress none is fine: errors only.
	r := runHaul(t, nil, "-q", "--progress", "none", "-d", t.TempDir(), "not a url")
	if r.code != exitFailed || !strings.Contains(r.stderr, "input line 1") || strings.Contains(r.stderr, "0 ok") {
		t.Errorf("-q --progress none: exit %d\n%s", r.code, r.stderr)
	}
}
