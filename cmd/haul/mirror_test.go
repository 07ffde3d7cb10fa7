package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/haul/haul/download/downloadtest"
	"github.com/haul/haul/internal/testutil"
)

func hexSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// The README's recipes for keeping a mirror: refresh it (--update), verify it
// against the publisher's SHA256SUMS (--dry-run --checksums), repair it.
func TestE2EMirrorRefreshAndVerify(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	var lines []string
	sums := ""
	bodies := map[string][]byte{}
	for i := range 4 {
		b := testutil.Payload(uint64(100+i), 2000+i)
		name := fmt.Sprintf("pub/f%d.bin", i)
		opts := []downloadtest.FileOption{downloadtest.ETag(fmt.Sprintf("v%d", i))}
		if i == 3 {
			// Changes once the first two runs have seen it.
			opts = append(opts, downloadtest.ChangeAfter(2, testutil.Payload(200, 3000), "v3b"))
		}
		lines = append(lines, s.Add("/"+name, b, opts...))
		bodies[name] = b
		sums += hexSum(b) + "  " + name + "\n"
	}
	sumsURL := s.Add("/pub/SHA256SUMS", []byte(sums))
	list := writeList(t, lines...)
	dir := t.TempDir()
	wantCode(t, runHaul(t, nil, "-q", "-i", list, "-d", dir), 0)

	// Nothing changed: every file is asked about and left alone.
	man := filepath.Join(t.TempDir(), "m.jsonl")
	wantCode(t, runHaul(t, nil, "-q", "-N", "-i", list, "-d", dir, "--manifest", man), 0)
	for _, m := range readManifest(t, man) {
		if m.Status != "unchanged" {
			t.Errorf("%s: %s, want unchanged", m.URL, m.Status)
		}
	}
	// Verify against the publisher's list (fetched by URL), then break a file.
	r := runHaul(t, nil, "--dry-run", "--checksums", sumsURL, "-i", list, "-d", dir)
	wantCode(t, r, 0)
	if r.stdout != "" {
		t.Errorf("a verified mirror printed %q", r.stdout)
	}
	broken := filepath.Join(dir, hostDir(s), "pub", "f1.bin")
	if err := os.WriteFile(broken, []byte("bit rot"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = runHaul(t, nil, "--dry-run", "--checksums", sumsURL, "-i", list, "-d", dir)
	wantCode(t, r, 1)
	if want := "replace " + broken + ": sha256 differs"; !strings.HasPrefix(r.stdout, want) || strings.Count(r.stdout, "\n") != 1 {
		t.Errorf("dry-run printed %q, want one line starting %q", r.stdout, want)
	}
	// A real run with the list repairs it. The published hashes pin the content,
	// so --update asks nothing about the files that match them (f3 changed
	// upstream, but the list still says the old bytes: kept).
	wantCode(t, runHaul(t, nil, "-q", "-N", "--checksums", sumsURL, "-i", list, "-d", dir, "--manifest", man), 0)
	got := map[string]string{}
	for _, m := range readManifest(t, man) {
		got[m.URL[len(s.URL)+1:]] = m.Status
	}
	want := map[string]string{"pub/f0.bin": "skipped", "pub/f1.bin": "ok", "pub/f2.bin": "skipped", "pub/f3.bin": "skipped"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %s, want %s", k, got[k], v)
		}
	}
	// Without the list, --update asks, and gets the changed f3.
	wantCode(t, runHaul(t, nil, "-q", "-N", "-i", list, "-d", dir, "--manifest", man), 0)
	for _, m := range readManifest(t, man) {
		if w := map[bool]string{true: "ok", false: "unchanged"}[strings.HasSuffix(m.URL, "/f3.bin")]; m.Status != w {
			t.Errorf("%s: %s, want %s", m.URL, m.Status, w)
		}
	}
	if b, _ := os.ReadFile(broken); string(b) != string(bodies["pub/f1.bin"]) {
		t.Error("f1.bin was not repaired")
	}
}

// --checksums with a piped list (spooled, read twice): a bare NAME that two
// entries match fails both instead of guessing; bad lines of the checksums file
// are named; --dry-run takes no --manifest.
func TestE2EChecksumsAmbiguousAndErrors(t *testing.T) {
	t.Parallel()
	a, b := downloadtest.New(t), downloadtest.New(t)
	ba, bb := testutil.Payload(1, 100), testutil.Payload(2, 100)
	ua, ub := a.Add("/x.iso", ba), b.Add("/x.iso", bb)
	sums := filepath.Join(t.TempDir(), "SHA256SUMS")
	if err := os.WriteFile(sums, []byte(hexSum(ba)+"  x.iso\nMD5 (y) = 00\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	man := filepath.Join(t.TempDir(), "m.jsonl")
	r := runHaul(t, strings.NewReader(ua+"\n"+ub+"\n"), "-q", "--checksums", sums, "-d", dir, "--manifest", man)
	wantCode(t, r, 1)
	if !strings.Contains(r.stderr, "checksums line 2: MD5") {
		t.Errorf("the bad checksums line is not reported: %s", r.stderr)
	}
	for _, m := range readManifest(t, man) {
		if m.Status != "failed" || !strings.Contains(str(m.Error), "ambiguous") {
			t.Errorf("%s: %s %s, want failed as ambiguous", m.URL, m.Status, str(m.Error))
		}
	}
	if a.TotalRequests()+b.TotalRequests() != 0 {
		t.Errorf("ambiguous entries were fetched")
	}
	wantCode(t, runHaul(t, nil, "--dry-run", "--manifest", man, ua), 2)
	wantCode(t, runHaul(t, nil, "--checksums", filepath.Join(dir, "none"), ua), 2)
}

// -r mirrors a published directory (Go's FileServer listing a real tree):
// every file below the start, none above, index pages not stored; -r -N keeps
// it current; -A filters; a directory that cannot be listed is a failed entry
// and the rest goes on.
func TestE2ERecursive(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	tree := map[string][]byte{
		"pub/a.iso":          testutil.Payload(400, 3000),
		"pub/notes.txt":      testutil.Payload(401, 100),
		"pub/sub/b.iso":      testutil.Payload(402, 2000),
		"pub/sub/deep/c.txt": testutil.Payload(403, 50),
		"other/secret.iso":   testutil.Payload(404, 10),
	}
	for name, b := range tree {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		// Published an hour ago: a file modified in the second haul fetched
		// it is one its modification time cannot vouch for (it is fetched
		// again by -N, see sink's readMeta).
		old := time.Now().Add(-time.Hour)
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(http.FileServer(http.Dir(root)))
	defer srv.Close()
	host := strings.ReplaceAll(strings.TrimPrefix(srv.URL, "http://"), ":", "_")
	dir := t.TempDir()
	man := filepath.Join(t.TempDir(), "m.jsonl")
	wantCode(t, runHaul(t, nil, "-q", "-r", "-d", dir, "--manifest", man, srv.URL+"/pub/"), 0)
	want := map[string][]byte{}
	for name, b := range tree {
		if strings.HasPrefix(name, "pub/") {
			want[host+"/"+name] = b
		}
	}
	checkFiles(t, dir, want)
	if n := len(readManifest(t, man)); n != 4 {
		t.Errorf("%d manifest lines, want 4 (one per file)", n)
	}
	wantCode(t, runHaul(t, nil, "-q", "-r", "-N", "-d", dir, "--manifest", man, srv.URL+"/pub/"), 0)
	for _, m := range readManifest(t, man) {
		if m.Status != "unchanged" {
			t.Errorf("-r -N: %s %s, want unchanged", m.URL, m.Status)
		}
	}
	only := t.TempDir()
	r := runHaul(t, nil, "-q", "-r", "-A", "iso", "-d", only, srv.URL+"/pub/", srv.URL+"/nothere/")
	wantCode(t, r, 1)
	checkFiles(t, only, map[string][]byte{host + "/pub/a.iso": tree["pub/a.iso"], host + "/pub/sub/b.iso": tree["pub/sub/b.iso"]})
	if !strings.Contains(r.stderr, "list "+srv.URL+"/nothere/: server returned 404") {
		t.Errorf("the directory that cannot be listed is not reported:\n%s", r.stderr)
	}
	wantCode(t, runHaul(t, nil, "-A", "iso", srv.URL+"/pub/"), 2) // -A needs -r
}

// Entries --checksums has no hash for are counted in a warning: a verify run
// must not pass silently over files the list does not cover (a name escaped
// on disk, "a:b.log" saved as "a%3Ab.log", is covered).
func TestE2EChecksumsUncovered(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	covered, other := testutil.Payload(500, 100), testutil.Payload(501, 100)
	u1, u2 := s.Add("/d/a:b.log", covered), s.Add("/d/other.bin", other)
	sums := filepath.Join(t.TempDir(), "SHA256SUMS")
	if err := os.WriteFile(sums, []byte(hexSum(covered)+"  a:b.log\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	r := runHaul(t, nil, "--checksums", sums, "-d", dir, "--sha256", "--manifest", "-", u1, u2)
	wantCode(t, r, 0)
	if !strings.Contains(r.stderr, "has no hash for 1 entries") {
		t.Errorf("no warning for the uncovered entry:\n%s", r.stderr)
	}
	if err := os.WriteFile(filepath.Join(dir, hostDir(s), "d", "a%3Ab.log"), []byte("bit rot"), 0o644); err != nil {
		t.Fatal(err)
	}
	r = runHaul(t, nil, "--dry-run", "--checksums", sums, "-d", dir, u1)
	wantCode(t, r, 1)
	if !strings.Contains(r.stdout, "a%3Ab.log: sha256 differs") {
		t.Errorf("the damaged escaped name is not found:\n%s", r.stdout)
	}
}
