package main

// Network tests: retries and statuses, stalls and timeouts, short bodies and
// dropped connections, redirects, headers, TLS, HTTP/2, --per-host,
// --limit-rate, and --jobs fitted to the limit on open files.

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/haul/haul/download/downloadtest"
	"github.com/haul/haul/internal/testutil"
)

// Retries: 503 with Retry-After is honoured then succeeds; 404 fails at once.
func TestE2ERetries(t *testing.T) {
	t.Parallel()
	t.Run("503 Retry-After", func(t *testing.T) {
		t.Parallel()
		s := downloadtest.New(t)
		b := testutil.Payload(71, 5000)
		u := s.Add("/busy.bin", b, downloadtest.Status(503, 1), downloadtest.RetryAfter("1"))
		dir := filepath.Join(t.TempDir(), "out")
		r := runHaul(t, nil, "-d", dir, "--manifest", "-", u)
		wantCode(t, r, 0)
		checkFiles(t, dir, map[string][]byte{hostDir(s) + "/busy.bin": b})
		log := s.Log("/busy.bin")
		if len(log) != 2 {
			t.Fatalf("%d requests, want 2", len(log))
		}
		if gap := log[1].Time.Sub(log[0].Time); gap < 900*time.Millisecond {
			t.Errorf("retried after %v, Retry-After said 1s", gap)
		}
		ms := parseManifest(t, r.stdout)
		if len(ms) != 1 || ms[0].Status != "ok" || ms[0].Attempts != 2 || ms[0].HTTPStatus == nil || *ms[0].HTTPStatus != 200 {
			t.Errorf("manifest: %s", r.stdout)
		}
	})
	t.Run("404", func(t *testing.T) {
		t.Parallel()
		s := downloadtest.New(t)
		b := testutil.Payload(72, 5000)
		ok := s.Add("/ok.bin", b)
		missing := s.URL + "/missing.bin"
		dir := filepath.Join(t.TempDir(), "out")
		r := runHaul(t, nil, "-d", dir, "--manifest", "-", missing, ok)
		wantCode(t, r, 1)
		if n := s.Requests("/missing.bin"); n != 1 {
			t.Errorf("404 requested %d times, want 1 (no retries)", n)
		}
		_, summary, found := strings.Cut(r.stderr, "1 failed:")
		if !found || !strings.Contains(summary, missing) || !strings.Contains(summary, "404") {
			t.Errorf("summary does not list %s with its 404:\n%s", missing, r.stderr)
		}
		checkFiles(t, dir, map[string][]byte{hostDir(s) + "/ok.bin": b})
		ms := byURL(t, parseManifest(t, r.stdout))
		if m := ms[missing]; m.Status != "failed" || m.HTTPStatus == nil || *m.HTTPStatus != 404 ||
			!strings.Contains(str(m.Error), "404") || m.Attempts != 1 {
			t.Errorf("manifest for the 404: %+v", m)
		}
	})
	t.Run("500 until retries are spent", func(t *testing.T) {
		t.Parallel()
		s := downloadtest.New(t)
		u := s.Add("/broken.bin", testutil.Payload(73, 10), downloadtest.Status(500, downloadtest.Always))
		dir := filepath.Join(t.TempDir(), "out")
		r := runHaul(t, nil, "-d", dir, "--retries", "1", u)
		wantCode(t, r, 1)
		if n := s.Requests("/broken.bin"); n != 2 {
			t.Errorf("requested %d times with --retries 1, want 2", n)
		}
		if !strings.Contains(r.stderr, "500") {
			t.Errorf("stderr does not mention the 500:\n%s", r.stderr)
		}
		checkFiles(t, dir, map[string][]byte{})
	})
}

// A stalled transfer trips --timeout; nothing appears at the final name and
// no staging file is left. (An attempt that brought bytes does not count against
// --retries, so a server that stalls after some bytes every time is resumed, not
// given up on: the stalls here come before the first body byte.)
func TestE2EStall(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opt  downloadtest.FileOption
	}{
		// An hour: a run that ends gave up on the stall (else it would
		// hang, and fail when the test's time runs out).
		{"before the body", downloadtest.Stall(0, time.Hour, downloadtest.Always)},
		{"before the headers", downloadtest.Delay(time.Hour)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := downloadtest.New(t)
			u := s.Add("/slow.bin", testutil.Payload(81, 64<<10), tc.opt)
			dir := filepath.Join(t.TempDir(), "out")
			r := runHaul(t, nil, "-d", dir, "--timeout", "300ms", "--retries", "0", u)
			wantCode(t, r, 1)
			t.Logf("gave up on a 300ms stall after %v", r.dur)
			if !regexp.MustCompile(`(?i)stall|timeout|timed out`).MatchString(r.stderr) {
				t.Errorf("stderr does not mention the stall:\n%s", r.stderr)
			}
			if n := s.Requests("/slow.bin"); n != 1 {
				t.Errorf("requested %d times with --retries 0", n)
			}
			checkFiles(t, dir, map[string][]byte{})
		})
	}
	t.Run("mid-body, resumed", func(t *testing.T) {
		t.Parallel()
		s := downloadtest.New(t)
		b := testutil.Payload(82, 64<<10)
		u := s.Add("/slow.bin", b, downloadtest.Stall(1000, time.Hour, 1))
		dir := filepath.Join(t.TempDir(), "out")
		// 5 s: the first bytes come at once, and a loaded machine must not
		// look stalled before them (with --retries 0 that would fail the run).
		r := runHaul(t, nil, "-d", dir, "--timeout", "5s", "--retries", "0", u)
		wantCode(t, r, 0)
		if rr := s.RangeRequests("/slow.bin"); len(rr) != 1 || rr[0] != "bytes=1000-" {
			t.Errorf("ranges %q, want one resuming at 1000", rr)
		}
		checkFiles(t, dir, map[string][]byte{hostDir(s) + "/slow.bin": b})
	})
}

// A body shorter than its Content-Length never appears under the final name;
// with retries, the transfer resumes where it broke.
func TestE2EShortBody(t *testing.T) {
	t.Parallel()
	b := testutil.Payload(91, 20000)
	for _, tc := range []struct {
		name string
		opts []downloadtest.FileOption
	}{
		// Resuming needs a validator: without one every attempt starts over,
		// brings nothing new, and counts against --retries.
		{"not resumable", []downloadtest.FileOption{downloadtest.ShortBody(1000, downloadtest.Always), downloadtest.NoValidator()}},
		{"no body at all", []downloadtest.FileOption{downloadtest.ShortBody(0, downloadtest.Always)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := downloadtest.New(t)
			u := s.Add("/short.bin", b, tc.opts...)
			dir := filepath.Join(t.TempDir(), "out")
			r := runHaul(t, nil, "-d", dir, "--retries", "0", u)
			wantCode(t, r, 1)
			checkFiles(t, dir, map[string][]byte{})
			if !strings.Contains(r.stderr, u) {
				t.Errorf("stderr does not name the URL:\n%s", r.stderr)
			}
			t.Logf("%d requests; %s", s.Requests("/short.bin"), lastLine(r.stderr))
		})
	}
	t.Run("short every time, resumed to the end", func(t *testing.T) {
		t.Parallel()
		s := downloadtest.New(t)
		u := s.Add("/short.bin", b, downloadtest.ShortBody(4000, downloadtest.Always))
		dir := filepath.Join(t.TempDir(), "out")
		r := runHaul(t, nil, "-d", dir, "--retries", "0", u)
		wantCode(t, r, 0)
		checkFiles(t, dir, map[string][]byte{hostDir(s) + "/short.bin": b})
		if n := s.Requests("/short.bin"); n != 5 {
			t.Errorf("%d requests for 20000 bytes served 4000 at a time, want 5", n)
		}
	})
	for _, tc := range []struct {
		name string
		opt  downloadtest.FileOption
	}{
		{"short body, resumed", downloadtest.ShortBody(1000, 1)},
		{"dropped connection, resumed", downloadtest.DropAfter(5000, 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := downloadtest.New(t)
			u := s.Add("/f.bin", b, tc.opt)
			dir := filepath.Join(t.TempDir(), "out")
			r := runHaul(t, nil, "-d", dir, "--retries", "0", u)
			wantCode(t, r, 0)
			checkFiles(t, dir, map[string][]byte{hostDir(s) + "/f.bin": b})
			rr := s.RangeRequests("/f.bin")
			if s.Requests("/f.bin") != 2 || len(rr) != 1 || (rr[0] != "bytes=1000-" && rr[0] != "bytes=5000-") {
				t.Errorf("requests: %d, ranges %q; want a second request resuming where the first broke",
					s.Requests("/f.bin"), rr)
			}
		})
	}
}

// The network side: redirects, headers, bodies stored as served, TLS, --per-host.
func TestE2ENetwork(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	h := hostDir(s)
	t.Run("redirect", func(t *testing.T) {
		t.Parallel()
		b := testutil.Payload(1701, 1000)
		s.Add("/target.bin", b)
		u := s.Add("/moved.bin", nil, downloadtest.Redirect("/target.bin", downloadtest.Always))
		dir := filepath.Join(t.TempDir(), "out")
		wantCode(t, runHaul(t, nil, "-d", dir, u), 0)
		checkFiles(t, dir, map[string][]byte{h + "/moved.bin": b})
	})
	t.Run("redirect to ftp", func(t *testing.T) {
		t.Parallel()
		u := s.Add("/toftp.bin", nil, downloadtest.Redirect("ftp://127.0.0.1/x", downloadtest.Always))
		dir := filepath.Join(t.TempDir(), "out")
		r := runHaul(t, nil, "-d", dir, u)
		wantCode(t, r, 1)
		if !strings.Contains(r.stderr, "redirect") {
			t.Errorf("stderr does not explain the bad redirect:\n%s", r.stderr)
		}
		if n := s.Requests("/toftp.bin"); n != 1 {
			t.Errorf("a redirect to ftp was retried: %d requests", n)
		}
	})
	t.Run("redirect loop", func(t *testing.T) {
		t.Parallel()
		u := s.Add("/loop", nil, downloadtest.Redirect("/loop", downloadtest.Always))
		r := runHaul(t, nil, "-d", filepath.Join(t.TempDir(), "out"), u)
		wantCode(t, r, 1)
		if n := s.Requests("/loop"); n != 11 {
			t.Errorf("%d requests for a redirect loop, want 11 (10 redirects, no retries)", n)
		}
	})
	t.Run("503 pauses the whole host", func(t *testing.T) {
		t.Parallel()
		s := downloadtest.New(t)
		a := s.Add("/busy", []byte("a"), downloadtest.Status(503, 1), downloadtest.RetryAfter("1"))
		b := s.Add("/slow", []byte("b"), downloadtest.Delay(200*time.Millisecond))
		c := s.Add("/next", []byte("c"))
		// One worker: /slow and /next are taken only once /busy's 503 was
		// handled (and /busy set aside), whatever the machine's load; with
		// two, /next could be asked for before the 503 had come back.
		wantCode(t, runHaul(t, nil, "-d", filepath.Join(t.TempDir(), "out"), "-j", "1", a, b, c), 0)
		busy, next := s.Log("/busy"), s.Log("/next")
		if len(busy) != 2 || len(next) != 1 {
			t.Fatalf("requests: %d, %d", len(busy), len(next))
		}
		// The worker is free once /busy is set aside: only the host's pause
		// (/busy's 503, for 1s) holds /slow and /next back.
		if gap := next[0].Time.Sub(busy[0].Time); gap < 900*time.Millisecond {
			t.Errorf("the host was asked for /next %v after its 503 with Retry-After: 1", gap)
		}
	})
	t.Run("headers", func(t *testing.T) {
		t.Parallel()
		u := s.Add("/hdr.bin", []byte("h"))
		dir := filepath.Join(t.TempDir(), "out")
		wantCode(t, runHaul(t, nil, "-d", dir, "-H", "X-Test: one", "-H", "X-Test: two",
			"--user-agent", "tester/1", "-H", "Authorization: Bearer t", u), 0)
		log := s.Log("/hdr.bin")
		if len(log) != 1 {
			t.Fatalf("%d requests", len(log))
		}
		hd := log[0].Header
		if got := hd.Values("X-Test"); !slices.Equal(got, []string{"one", "two"}) || hd.Get("User-Agent") != "tester/1" ||
			hd.Get("Authorization") != "Bearer t" {
			t.Errorf("request headers: %v", hd)
		}
		// As with curl: -H 'Host: …' names the host, --user-agent '' sends none.
		for _, http11 := range []bool{false, true} {
			args := []string{"-d", filepath.Join(t.TempDir(), "out"), "-H", "Host: example.test", "--user-agent", ""}
			if http11 {
				args = append(args, "--http1.1")
			}
			u := s.Add(fmt.Sprintf("/host%v.bin", http11), []byte("h"))
			wantCode(t, runHaul(t, nil, append(args, u)...), 0)
			got := s.Log(fmt.Sprintf("/host%v.bin", http11))[0]
			if got.Host != "example.test" || got.Header.Get("User-Agent") != "" {
				t.Errorf("Host %q, User-Agent %q; want example.test and none", got.Host, got.Header.Get("User-Agent"))
			}
		}
	})
	t.Run("stored as served", func(t *testing.T) {
		t.Parallel()
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		zw.Write(testutil.Payload(1702, 10000))
		zw.Close()
		u := s.Add("/page.html", gz.Bytes(), downloadtest.Header("Content-Encoding", "gzip"))
		dir := filepath.Join(t.TempDir(), "out")
		wantCode(t, runHaul(t, nil, "-d", dir, u), 0)
		checkFiles(t, dir, map[string][]byte{h + "/page.html": gz.Bytes()})
	})
	t.Run("per-host", func(t *testing.T) {
		t.Parallel()
		s := downloadtest.New(t)
		var urls []string
		for i := range 8 {
			urls = append(urls, s.Add(fmt.Sprintf("/ph/%d", i), []byte("x"), downloadtest.Delay(100*time.Millisecond)))
		}
		wantCode(t, runHaul(t, nil, append([]string{"-d", filepath.Join(t.TempDir(), "out"), "--per-host", "2"}, urls...)...), 0)
		if n := s.MaxInFlight(); n > 2 {
			t.Errorf("--per-host 2: %d requests in flight at once", n)
		}
	})
	t.Run("HTTP/2 streams", func(t *testing.T) {
		t.Parallel()
		// Over HTTP/2, -j 2 keeps more than 2 files in flight (each request
		// waits a second, so those sent together overlap); --http1.1 keeps 2.
		s := downloadtest.New(t, downloadtest.HTTP2())
		var urls []string
		for i := range 12 {
			urls = append(urls, s.Add(fmt.Sprintf("/h2/%d", i), []byte("x"), downloadtest.Delay(time.Second)))
		}
		wantCode(t, runHaul(t, nil, append([]string{"-d", filepath.Join(t.TempDir(), "out"), "-j", "2", "--cacert", s.CAFile(t)}, urls...)...), 0)
		if n := s.MaxInFlight(); n <= 2 {
			t.Errorf("HTTP/2 at -j 2: at most %d requests in flight at once, want more", n)
		}
		s1 := downloadtest.New(t, downloadtest.HTTP2())
		urls = nil
		for i := range 6 {
			urls = append(urls, s1.Add(fmt.Sprintf("/h1/%d", i), []byte("x"), downloadtest.Delay(300*time.Millisecond)))
		}
		wantCode(t, runHaul(t, nil, append([]string{"-d", filepath.Join(t.TempDir(), "out"), "-j", "2", "--http1.1", "--cacert", s1.CAFile(t)}, urls...)...), 0)
		if n := s1.MaxInFlight(); n > 2 {
			t.Errorf("--http1.1 at -j 2: %d requests in flight at once", n)
		}
	})
	t.Run("TLS", func(t *testing.T) {
		t.Parallel()
		s := downloadtest.New(t, downloadtest.TLS())
		b := testutil.Payload(1703, 3000)
		u := s.Add("/tls.bin", b)
		want := map[string][]byte{hostDir(s) + "/tls.bin": b}

		dir := filepath.Join(t.TempDir(), "out")
		r := runHaul(t, nil, "-d", dir, "--retries", "0", u)
		wantCode(t, r, 1)
		if !strings.Contains(r.stderr, "certificate") {
			t.Errorf("an untrusted certificate is not explained:\n%s", r.stderr)
		}
		checkFiles(t, dir, map[string][]byte{})

		r = runHaul(t, nil, "-d", dir, "--cacert", s.CAFile(t), u)
		wantCode(t, r, 0)
		checkFiles(t, dir, want)

		dir = filepath.Join(t.TempDir(), "out")
		r = runHaul(t, nil, "-d", dir, "-k", u)
		wantCode(t, r, 0)
		if !strings.Contains(r.stderr, "insecure") {
			t.Errorf("-k does not say so on stderr:\n%s", r.stderr)
		}
		checkFiles(t, dir, want)
	})
	t.Run("HTTP/2, dropped stream resumed", func(t *testing.T) {
		t.Parallel()
		s := downloadtest.New(t, downloadtest.HTTP2())
		b := testutil.Payload(1704, 300<<10)
		u := s.Add("/h2.bin", b, downloadtest.DropAfter(100<<10, 1))
		dir := filepath.Join(t.TempDir(), "out")
		r := runHaul(t, nil, "-d", dir, "--cacert", s.CAFile(t), "--retries", "0", u)
		wantCode(t, r, 0)
		checkFiles(t, dir, map[string][]byte{hostDir(s) + "/h2.bin": b})
		log := s.Log("/h2.bin")
		if len(log) != 2 || log[1].Range == "" {
			t.Errorf("requests %d, ranges %q: want a resumed second request", len(log), s.RangeRequests("/h2.bin"))
		}
		for _, l := range log {
			if l.Header.Get("Accept-Encoding") != "" {
				t.Errorf("haul asked for Accept-Encoding %q", l.Header.Get("Accept-Encoding"))
			}
		}
	})
}

// --limit-rate caps the bandwidth.
func TestE2ELimitRate(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	b := testutil.Payload(1970, 300<<10)
	u := s.Add("/rate.bin", b)
	dir := filepath.Join(t.TempDir(), "out")
	r := runHaul(t, nil, "-d", dir, "--limit-rate", "300K", u)
	wantCode(t, r, 0)
	checkFiles(t, dir, map[string][]byte{hostDir(s) + "/rate.bin": b})
	if r.dur < 700*time.Millisecond {
		t.Errorf("300 KiB at --limit-rate 300K took %v, want about 1s", r.dur)
	}
}

// With a low limit on open files (ulimit -n), --jobs is brought down to what
// fits, with a warning, instead of entries failing with "too many open files";
// the sink keeps fewer handles too.
func TestE2EOpenFileLimit(t *testing.T) {
	t.Parallel()
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Skip("no prlimit")
	}
	s := downloadtest.New(t)
	want := map[string][]byte{}
	var lines []string
	for i := range 400 {
		p := fmt.Sprintf("/fd/%03d", i)
		b := testutil.Payload(uint64(3000+i), 3000)
		lines = append(lines, s.Add(p, b, downloadtest.Delay(5*time.Millisecond)))
		want[hostDir(s)+p] = b
	}
	dir := t.TempDir()
	ctx, cancel := haulContext(t)
	defer cancel()
	cmd := exec.CommandContext(ctx, prlimit, "--nofile=200:200", haulBin, "-q", "-j", "150", "-i", writeList(t, lines...), "-d", dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("haul under ulimit -n 200: %v\n%s", err, clip(string(out)))
	}
	if !strings.Contains(string(out), "--jobs 150 needs about") {
		t.Errorf("no warning that --jobs was brought down:\n%s", clip(string(out)))
	}
	checkFiles(t, dir, want)
}

// TLS trust from SSL_CERT_FILE or SSL_CERT_DIR works as --cacert does, and the
// protocol is HTTP/2 where the server offers it (through net/http's client
// too), HTTP/1.1 with --http1.1.
func TestE2ETLSFromTheEnvironmentAndHTTP11(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t, downloadtest.HTTP2())
	b := testutil.Payload(1706, 3000)
	ca := s.CAFile(t)
	for _, tc := range []struct {
		name  string
		env   []string
		args  []string
		proto string
	}{
		{"SSL_CERT_FILE", []string{"SSL_CERT_FILE=" + ca}, nil, "HTTP/2.0"},
		{"SSL_CERT_DIR", []string{"SSL_CERT_FILE=/nonexistent", "SSL_CERT_DIR=" + filepath.Dir(ca)}, nil, "HTTP/2.0"},
		{"--cacert --http1.1", nil, []string{"--cacert", ca, "--http1.1"}, "HTTP/1.1"},
		{"--cacert --http-client net", nil, []string{"--cacert", ca, "--http-client", "net/http"}, "HTTP/2.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := "/" + strings.NewReplacer(" ", "", "-", "").Replace(tc.name) + ".bin"
			u := s.Add(p, b)
			dir := filepath.Join(t.TempDir(), "out")
			r := runHaulEnv(t, tc.env, nil, append(append([]string{"-d", dir, "--retries", "0"}, tc.args...), u)...)
			wantCode(t, r, 0)
			checkFiles(t, dir, map[string][]byte{hostDir(s) + p: b})
			if log := s.Log(p); len(log) != 1 || log[0].Proto != tc.proto {
				t.Errorf("requests %+v, want one over %s", log, tc.proto)
			}
		})
	}
}

// --http-client takes haul or net/http: anything else is a usage error that
// names the flag.
func TestHTTPClientFlagChecked(t *testing.T) {
	t.Parallel()
	r := runHaul(t, nil, "--http-client", "curl", "-d", t.TempDir(), "http://127.0.0.1:1/x")
	wantCode(t, r, exitUsage)
	if !strings.Contains(r.stderr, `--http-client "curl": want haul or net/http`) {
		t.Errorf("stderr %q does not name the flag and its values", r.stderr)
	}
}
