package main

// --per-host-rate and --robots, end to end: what the manifest, the summary
// and the exit code say.

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/haul/haul/download/downloadtest"
)

func TestParsePerHostRate(t *testing.T) {
	for s, want := range map[string]float64{
		"0": 0, "2": 2, "0.5": 0.5, "2/s": 2, "30/m": 0.5, "100/h": 100.0 / 3600, " 3 / m ": 0.05,
	} {
		got, err := parsePerHostRate(s)
		if err != nil || got != want {
			t.Errorf("parsePerHostRate(%q) = %v, %v, want %v", s, got, err, want)
		}
	}
}

func TestE2EPerHostRateUsageErrors(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"fast", "-1", "-0.5/s", "2/d", "2/", "/s", "NaN", "inf", "1e999", ""} {
		r := runHaul(t, nil, "-d", t.TempDir(), "--per-host-rate", v, "http://127.0.0.1:1/x")
		wantCode(t, r, exitUsage)
		if !strings.Contains(r.stderr, "--per-host-rate") {
			t.Errorf("--per-host-rate %q: the error does not name the flag:\n%s", v, r.stderr)
		}
	}
}

// robotsSite serves robots and two files, /a and /private/b.
func robotsSite(t *testing.T, status int, robots string) (s *downloadtest.Server, a, b string) {
	s = downloadtest.New(t)
	s.Handle("/robots.txt", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if status != http.StatusOK {
			http.Error(w, "no", status)
			return
		}
		w.Write([]byte(robots))
	}))
	return s, s.Add("/a", []byte("a")), s.Add("/private/b", []byte("b"))
}

// An entry robots.txt disallows is excluded: not fetched, in the manifest as
// excluded with the rule, counted in the summary, exit 0; a re-run leaves it
// out again (and skips the rest, on disk).
func TestE2ERobotsExcluded(t *testing.T) {
	t.Parallel()
	s, a, b := robotsSite(t, 200, "User-agent: *\nDisallow: /private\n")
	dir := t.TempDir()
	man := filepath.Join(t.TempDir(), "m.jsonl")
	for run := 1; run <= 2; run++ {
		r := runHaul(t, nil, "-d", dir, "--robots", "--progress", "none", "--manifest", man, a, b)
		wantCode(t, r, exitOK)
		m := byURL(t, readManifest(t, man))
		want := map[int]string{1: "ok", 2: "skipped"}[run]
		if m[a].Status != want {
			t.Errorf("run %d: %s is %s, want %s", run, a, m[a].Status, want)
		}
		if m[b].Status != "excluded" || !strings.Contains(str(m[b].Error), "Disallow: /private") {
			t.Errorf("run %d: %s is %s (%s), want excluded by Disallow: /private", run, b, m[b].Status, str(m[b].Error))
		}
		if !strings.Contains(r.stderr, "1 excluded") {
			t.Errorf("run %d: the summary does not count the excluded entry:\n%s", run, r.stderr)
		}
	}
	if n := s.Requests("/private/b"); n != 0 {
		t.Errorf("the disallowed file was asked %d times", n)
	}
	if n := s.Requests("/robots.txt"); n != 2 {
		t.Errorf("robots.txt asked %d times in two runs, want 2", n)
	}
	checkFiles(t, dir, map[string][]byte{hostDir(s) + "/a": []byte("a")})
}

// The JSON summary counts the excluded entries; --user-agent's product
// token picks the group.
func TestE2ERobotsUserAgentJSON(t *testing.T) {
	t.Parallel()
	s, a, b := robotsSite(t, 200, "User-agent: foo\nDisallow: /a\n\nUser-agent: *\nDisallow: /private\n")
	r := runHaul(t, nil, "-d", t.TempDir(), "--robots", "--user-agent", "foo/1.0", "--progress", "json", a, b)
	wantCode(t, r, exitOK)
	var final struct {
		Type     string `json:"type"`
		OK       int    `json:"ok"`
		Excluded int    `json:"excluded"`
	}
	if err := json.Unmarshal([]byte(lastLine(r.stderr)), &final); err != nil || final.Type != "final" {
		t.Fatalf("last line of stderr is not the final object (%v):\n%s", err, r.stderr)
	}
	if final.OK != 1 || final.Excluded != 1 {
		t.Errorf("final object says %d ok, %d excluded; want 1 and 1:\n%s", final.OK, final.Excluded, r.stderr)
	}
	if s.Requests("/a") != 0 || s.Requests("/private/b") != 1 {
		t.Errorf("foo's group not obeyed: /a asked %d times, /private/b %d", s.Requests("/a"), s.Requests("/private/b"))
	}
}

// A robots.txt that cannot be had fetches nothing from its host: its entries
// fail, saying why, and the run exits 1 (a re-run asks again).
func TestE2ERobotsUnavailable(t *testing.T) {
	t.Parallel()
	s, a, b := robotsSite(t, 503, "")
	man := filepath.Join(t.TempDir(), "m.jsonl")
	r := runHaul(t, nil, "-d", t.TempDir(), "--robots", "--retries", "0", "--manifest", man, a, b)
	wantCode(t, r, exitFailed)
	for u, m := range byURL(t, readManifest(t, man)) {
		if m.Status != "failed" || !strings.Contains(str(m.Error), "robots.txt") || !strings.Contains(str(m.Error), "503") {
			t.Errorf("%s is %s (%s), want failed for robots.txt's 503", u, m.Status, str(m.Error))
		}
	}
	if s.Requests("/a")+s.Requests("/private/b") != 0 {
		t.Error("entries were fetched from a host whose robots.txt could not be had")
	}
}
