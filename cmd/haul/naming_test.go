package main

// Naming tests: the tree, flat and hash layouts, out=, escaping, names that
// never leave --dir, and collisions between URLs that would write one file.

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/haul/haul/download/downloadtest"
	"github.com/haul/haul/internal/testutil"
)

// No name ever escapes --dir: "..", encoded "%2e%2e", encoded slashes,
// out=../x, out=/abs, and symbolic links planted in the output directory.
func TestE2ETraversal(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	h := hostDir(s)
	base := t.TempDir()
	dir := filepath.Join(base, "out")
	outside := filepath.Join(base, "outside")
	if err := os.MkdirAll(filepath.Join(dir, h), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	outsideFiles := map[string][]byte{"keep": []byte("keep me"), "ptarget": []byte("part target")}
	for name, b := range outsideFiles {
		if err := os.WriteFile(filepath.Join(outside, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		"evil":        outside,                               // a directory link pointing outside
		"link.bin":    filepath.Join(outside, "keep"),        // a link at a final name
		"p.bin.part":  filepath.Join(outside, "ptarget"),     // a link at a staging name
		"gone.bin":    filepath.Join(outside, "nonexistent"), // a dangling link at a final name
		"upper":       "../..",                               // a relative link pointing above DIR
		"dirlink.bin": outside,
	} {
		if err := os.Symlink(target, filepath.Join(dir, h, link)); err != nil {
			t.Fatal(err)
		}
	}
	bx := [...][]byte{testutil.Payload(1, 100), testutil.Payload(2, 200), testutil.Payload(3, 300), testutil.Payload(4, 400)}
	s.Add("/../../x1", bx[0])
	s.Add("/../../x2", bx[1])
	s.Add("/a/../../x3", bx[2])
	pb := s.Add("/p.bin", bx[3])
	for _, p := range []string{"/evil/file", "/link.bin", "/gone.bin", "/upper/x5", "/dirlink.bin", "/x4"} {
		s.Add(p, []byte("evil"))
	}
	list := writeList(t,
		s.URL+"/../../x1",                   // 1 ok, HOST/x1
		s.URL+"/%2e%2e/%2e%2e/x2",           // 2 ok, HOST/x2
		s.URL+"/a%2F..%2F..%2Fx3",           // 3 ok, one component
		s.URL+"/x4 out=../x4",               // 4 invalid
		s.URL+"/x4 out="+outside+"/x4",      // 5 invalid
		s.URL+"/x4 out=a/../../x4",          // 6 invalid
		s.URL+"/evil/file",                  // 7 failed
		s.URL+"/link.bin",                   // 8 failed
		pb,                                  // 9 ok, the planted staging link is replaced
		s.URL+"/gone.bin",                   // 10 failed
		s.URL+"/upper/x5",                   // 11 failed
		s.URL+"/dirlink.bin",                // 12 failed
		s.URL+"/x4 out="+h+"/evil/x4",       // 13 failed
		s.URL+"/x4 out="+h+"/upper/out/x4b", // 14 failed
	)
	man := filepath.Join(t.TempDir(), "m.jsonl")
	r := runHaul(t, nil, "-i", list, "-d", dir, "--manifest", man)
	wantCode(t, r, 1)

	checkFiles(t, outside, outsideFiles)
	entries, err := os.ReadDir(base)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "out" && e.Name() != "outside" {
			t.Errorf("%s appeared beside --dir", e.Name())
		}
	}
	for _, name := range []string{"x1", "x2", "x3", "x4", "x4b", "x5"} {
		if _, err := os.Lstat(filepath.Join(filepath.Dir(base), name)); err == nil {
			t.Errorf("%s appeared two levels above --dir", name)
		}
	}
	got := files(t, dir)
	for name, b := range map[string][]byte{
		h + "/x1": bx[0], h + "/x2": bx[1], h + "/a%2F..%2F..%2Fx3": bx[2], h + "/p.bin": bx[3],
	} {
		if !bytes.Equal(got[name], b) {
			t.Errorf("%s: got %d bytes, want the %d served", name, len(got[name]), len(b))
		}
		delete(got, name)
	}
	if len(got) != 0 {
		t.Errorf("unexpected files under --dir: %q", slices.Sorted(maps.Keys(got)))
	}
	for _, link := range []string{"evil", "link.bin", "gone.bin", "upper", "dirlink.bin"} {
		if fi, err := os.Lstat(filepath.Join(dir, h, link)); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("the planted link %s was replaced or removed (%v)", link, err)
		}
	}
	ms := readManifest(t, man)
	status := map[string][]string{}
	for _, m := range ms {
		status[m.Status] = append(status[m.Status], fmt.Sprint(m.Line, m.URL))
	}
	if len(status["ok"]) != 4 || len(status["invalid"]) != 3 || len(status["failed"]) != 7 {
		t.Errorf("manifest statuses: ok %d, invalid %d, failed %d; want 4, 3, 7\n%v",
			len(status["ok"]), len(status["invalid"]), len(status["failed"]), r)
	}

	t.Run("flat", func(t *testing.T) {
		t.Parallel()
		dir := filepath.Join(t.TempDir(), "out")
		r := runHaul(t, nil, "-d", dir, "--layout", "flat",
			s.URL+"/../../x1", s.URL+"/%2e%2e/%2e%2e/x2", s.URL+"/a%2F..%2F..%2Fx3")
		wantCode(t, r, 0)
		checkFiles(t, dir, map[string][]byte{"x1": bx[0], "x2": bx[1], "a%2F..%2F..%2Fx3": bx[2]})
	})
}

// Two URLs that would write one file: the second fails with a clear error and
// the first stays intact. The same URL twice is fetched once.
func TestE2ECollisions(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	ba, bb := testutil.Payload(61, 3000), testutil.Payload(62, 4000)
	ua, ub := s.Add("/a/same.bin", ba), s.Add("/b/same.bin", bb)

	t.Run("flat, one run", func(t *testing.T) {
		t.Parallel()
		dir := filepath.Join(t.TempDir(), "out")
		man := filepath.Join(t.TempDir(), "m.jsonl")
		r := runHaul(t, nil, "--layout", "flat", "-j", "1", "-d", dir, "--manifest", man, ua, ub)
		wantCode(t, r, 1)
		checkFiles(t, dir, map[string][]byte{"same.bin": ba})
		if !regexp.MustCompile(`(?m)^haul: .*` + regexp.QuoteMeta(ub) + `.*collision`).MatchString(r.stderr) {
			t.Errorf("stderr does not report the collision of %s:\n%s", ub, r.stderr)
		}
		if !strings.Contains(r.stderr, "1 failed:") {
			t.Errorf("summary does not list the failure:\n%s", r.stderr)
		}
		ms := byURL(t, readManifest(t, man))
		if ms[ua].Status != "ok" || ms[ub].Status != "failed" || !strings.Contains(str(ms[ub].Error), "collision") {
			t.Errorf("manifest: %+v / %+v", ms[ua], ms[ub])
		}
	})
	t.Run("flat, concurrent", func(t *testing.T) {
		t.Parallel()
		dir := filepath.Join(t.TempDir(), "out")
		man := filepath.Join(t.TempDir(), "m.jsonl")
		r := runHaul(t, nil, "--layout", "flat", "-j", "16", "-d", dir, "--manifest", man, ua, ub)
		wantCode(t, r, 1)
		ms := byURL(t, readManifest(t, man))
		want := ba
		if ms[ub].Status == "ok" {
			want = bb
		}
		if (ms[ua].Status == "ok") == (ms[ub].Status == "ok") {
			t.Errorf("want exactly one ok: %+v / %+v", ms[ua], ms[ub])
		}
		checkFiles(t, dir, map[string][]byte{"same.bin": want})
	})
	t.Run("flat, across runs", func(t *testing.T) {
		t.Parallel()
		dir := filepath.Join(t.TempDir(), "out")
		wantCode(t, runHaul(t, nil, "--layout", "flat", "-d", dir, ua), 0)
		r := runHaul(t, nil, "--layout", "flat", "-d", dir, ub)
		wantCode(t, r, 1)
		if !strings.Contains(r.stderr, "collision") {
			t.Errorf("stderr does not report the collision:\n%s", r.stderr)
		}
		checkFiles(t, dir, map[string][]byte{"same.bin": ba})
	})
	t.Run("same URL listed three times", func(t *testing.T) {
		t.Parallel()
		s := downloadtest.New(t)
		b := testutil.Payload(63, 100<<10)
		u := s.Add("/dup.bin", b, downloadtest.Delay(100*time.Millisecond))
		dir := filepath.Join(t.TempDir(), "out")
		man := filepath.Join(t.TempDir(), "m.jsonl")
		r := runHaul(t, strings.NewReader(u+"\n"+u+"\n"+u+" size="+fmt.Sprint(len(b))+"\n"),
			"-j", "16", "-d", dir, "--manifest", man)
		wantCode(t, r, 0)
		if n := s.Requests("/dup.bin"); n != 1 {
			t.Errorf("a URL listed 3 times was requested %d times, want 1", n)
		}
		checkFiles(t, dir, map[string][]byte{hostDir(s) + "/dup.bin": b})
		ms := readManifest(t, man)
		var st []string
		for _, m := range ms {
			st = append(st, m.Status)
		}
		slices.Sort(st)
		if !slices.Equal(st, []string{"ok", "skipped", "skipped"}) {
			t.Errorf("manifest statuses %q, want ok, skipped, skipped", st)
		}
	})
	t.Run("same URL twice with --force", func(t *testing.T) {
		t.Parallel()
		s := downloadtest.New(t)
		b := testutil.Payload(64, 1000)
		u := s.Add("/dup.bin", b)
		dir := filepath.Join(t.TempDir(), "out")
		wantCode(t, runHaul(t, nil, "-d", dir, u), 0)
		// A file from before the run is fetched again whatever its mtime says
		// (clock skew, cp -p); the run's own file is not fetched twice.
		future := time.Now().Add(time.Hour)
		os.Chtimes(filepath.Join(dir, hostDir(s), "dup.bin"), future, future)
		r := runHaul(t, nil, "--force", "-d", dir, u, u)
		wantCode(t, r, 0)
		if n := s.Requests("/dup.bin"); n != 2 {
			t.Errorf("requested %d times in two runs, the second with --force, want 2", n)
		}
		checkFiles(t, dir, map[string][]byte{hostDir(s) + "/dup.bin": b})
	})
}

// Naming: index.html for directory URLs, query strings kept and escaped, long
// components shortened, the hash layout, and out= always winning.
func TestE2ENaming(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	h := hostDir(s)
	bs := [...][]byte{testutil.Payload(1401, 10), testutil.Payload(1402, 20), testutil.Payload(1403, 30), testutil.Payload(1404, 40), testutil.Payload(1405, 50), testutil.Payload(1406, 60)}
	long := strings.Repeat("n", 300) + ".txt"
	urls := []string{
		s.Add("/", bs[0]),
		s.Add("/dir/", bs[1]),
		s.Add("/page.php?id=1&x=a/b", bs[2]),
		s.Add("/sp ace%.txt", bs[3]),
		s.Add("/"+long, bs[4]),
		s.Add("/arch/file.tar.gz", bs[5]),
	}
	urls[3] = s.URL + "/sp%20ace%25.txt"
	t.Run("tree", func(t *testing.T) {
		t.Parallel()
		dir := filepath.Join(t.TempDir(), "out")
		r := runHaul(t, nil, append([]string{"-d", dir, "--manifest", "-"}, urls...)...)
		wantCode(t, r, 0)
		ms := byURL(t, parseManifest(t, r.stdout))
		longName := str(ms[urls[4]].Out)
		if c := strings.TrimPrefix(longName, h+"/"); len(c) > 200 || !strings.HasSuffix(c, ".txt") || !strings.HasPrefix(c, "nnn") {
			t.Errorf("a 304-byte component was saved as %q", longName)
		}
		checkFiles(t, dir, map[string][]byte{
			h + "/index.html":              bs[0],
			h + "/dir/index.html":          bs[1],
			h + "/page.php%3Fid=1&x=a%2Fb": bs[2],
			h + "/sp ace%25.txt":           bs[3],
			longName:                       bs[4],
			h + "/arch/file.tar.gz":        bs[5],
		})
		for i, u := range urls {
			if m := ms[u]; m.Status != "ok" {
				t.Errorf("url %d: %+v", i, m)
			}
		}
	})
	t.Run("hash", func(t *testing.T) {
		t.Parallel()
		dir := filepath.Join(t.TempDir(), "out")
		r := runHaul(t, nil, "-d", dir, "--layout", "hash", "--manifest", "-", urls[5], urls[2])
		wantCode(t, r, 0)
		h5, h2 := testutil.SHA256Hex([]byte(urls[5])), testutil.SHA256Hex([]byte(urls[2]))
		want := map[string][]byte{
			h5[:2] + "/" + h5[2:4] + "/" + h5 + ".gz":  bs[5],
			h2[:2] + "/" + h2[2:4] + "/" + h2 + ".php": bs[2],
		}
		checkFiles(t, dir, want)
		for _, m := range parseManifest(t, r.stdout) {
			if _, ok := want[str(m.Out)]; !ok {
				t.Errorf("manifest out %s is not where the file is", str(m.Out))
			}
		}
	})
	t.Run("out= wins over every layout", func(t *testing.T) {
		t.Parallel()
		for _, layout := range []string{"tree", "flat", "hash"} {
			dir := filepath.Join(t.TempDir(), "out")
			r := runHaul(t, nil, "-d", dir, "--layout", layout, urls[5]+" out=mine/x.bin")
			wantCode(t, r, 0)
			checkFiles(t, dir, map[string][]byte{"mine/x.bin": bs[5]})
		}
	})
	// A URL ending in .part must not be taken for another URL's staging file,
	// in one run (-j 1: /b.part finishes first) or across two runs.
	t.Run("names ending in .part", func(t *testing.T) {
		t.Parallel()
		s := downloadtest.New(t)
		h := hostDir(s)
		a, apart, b, bpart := testutil.Payload(1411, 3000), testutil.Payload(1412, 3100), testutil.Payload(1413, 3200), testutil.Payload(1414, 3300)
		ua, uapart := s.Add("/a", a), s.Add("/a.part", apart)
		ub, ubpart := s.Add("/b", b), s.Add("/b.part", bpart)
		dir := filepath.Join(t.TempDir(), "out")
		wantCode(t, runHaul(t, nil, "-d", dir, "-j", "1", ubpart, ub), 0)
		wantCode(t, runHaul(t, nil, "-d", dir, uapart), 0)
		wantCode(t, runHaul(t, nil, "-d", dir, ua), 0)
		checkFiles(t, dir, map[string][]byte{h + "/a": a, h + "/a%2Epart": apart, h + "/b": b, h + "/b%2Epart": bpart})
		if n := len(files(t, dir)); n != 4 {
			t.Errorf("%d files in the output, want 4", n)
		}
	})
}

// In the tree layout a URL can name a file where another needs a directory
// (/a and /a/b): whichever comes second fails clearly, the first stays intact.
func TestE2EFileDirectoryConflict(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	ba, bb := testutil.Payload(1960, 100), testutil.Payload(1961, 200)
	ua, ub := s.Add("/a", ba), s.Add("/a/b", bb)
	for _, tc := range []struct {
		name          string
		first, second string
		want          map[string][]byte
	}{
		{"file first", ua, ub, map[string][]byte{hostDir(s) + "/a": ba}},
		{"directory first", ub, ua, map[string][]byte{hostDir(s) + "/a/b": bb}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "out")
			r := runHaul(t, nil, "-j", "1", "-d", dir, tc.first, tc.second)
			wantCode(t, r, 1)
			if !strings.Contains(r.stderr, tc.second) {
				t.Errorf("the failure of %s is not reported:\n%s", tc.second, r.stderr)
			}
			checkFiles(t, dir, tc.want)
			t.Logf("%s", lastLine(r.stderr))
		})
	}
}
