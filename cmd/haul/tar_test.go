package main

// --tar: WebDataset samples (KEY.EXT, KEY.json) in tar files of about
// --tar-size, read back with archive/tar, Python's tarfile and tar -t; keys,
// extensions and the KEY.json of a CSV list; re-runs that skip what a tar
// holds; rotation and shards; a body too big for memory; the usage errors;
// --dry-run; two processes on one directory; and kill -9 at random moments.

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/haul/haul/download/downloadtest"
	"github.com/haul/haul/internal/testutil"
	"github.com/haul/haul/sink"
)

// tarSample is one sample read back from a finished tar file.
type tarSample struct {
	tar    string // the tar file's name in its directory
	member string // KEY.EXT
	body   []byte
	info   []byte // KEY.json
}

// bytesInTar is how many bytes of its tar file the sample takes: two
// headers and both members padded to whole blocks.
func (s tarSample) bytesInTar() int64 {
	pad := func(n int) int64 { return int64((n + 511) &^ 511) }
	return 2*512 + pad(len(s.body)) + pad(len(s.info))
}

// readTar reads the finished tar file name whole with archive/tar: it must
// hold samples only (KEY.EXT then KEY.json, regular files, whole), and end
// with exactly its two zero end-of-archive blocks.
func readTar(name string) ([]tarSample, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	base := filepath.Base(name)
	if len(data) < 1024 || len(data)%512 != 0 {
		return nil, fmt.Errorf("%s: %d bytes, not whole 512-byte blocks with the end-of-archive blocks", base, len(data))
	}
	if !allZero(data[len(data)-1024:]) {
		return nil, fmt.Errorf("%s: its last 1024 bytes are not the two zero end-of-archive blocks", base)
	}
	r := bytes.NewReader(data)
	tr := tar.NewReader(r)
	var out []tarSample
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: after %d samples: %w", base, len(out), err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", base, h.Name, err)
		}
		key, ext, ok := strings.Cut(h.Name, ".")
		if h.Typeflag != tar.TypeReg || !ok || key == "" || ext == "" || ext == "json" || strings.Contains(h.Name, "/") {
			return nil, fmt.Errorf("%s: member %q (type %c) is not a sample's body", base, h.Name, h.Typeflag)
		}
		if int64(len(body)) != h.Size {
			return nil, fmt.Errorf("%s: %s: %d bytes, its header says %d", base, h.Name, len(body), h.Size)
		}
		j, err := tr.Next()
		if err != nil {
			return nil, fmt.Errorf("%s: after %s: %w", base, h.Name, err)
		}
		if j.Name != key+".json" || j.Typeflag != tar.TypeReg {
			return nil, fmt.Errorf("%s: %q follows %s, want %s.json", base, j.Name, h.Name, key)
		}
		info, err := io.ReadAll(tr)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", base, j.Name, err)
		}
		if !json.Valid(info) {
			return nil, fmt.Errorf("%s: %s is not JSON: %q", base, j.Name, info)
		}
		out = append(out, tarSample{tar: base, member: h.Name, body: body, info: info})
	}
	if r.Len() != 0 {
		return nil, fmt.Errorf("%s: %d bytes after the end-of-archive blocks", base, r.Len())
	}
	return out, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// finishedTars returns the names of the finished tar files in dir, sorted.
func finishedTars(t *testing.T, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.tar"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}

// storedSamples reads every finished tar in dir and returns its samples by
// key; a key in two samples fails the test.
func storedSamples(t *testing.T, dir string) map[string]tarSample {
	t.Helper()
	out := map[string]tarSample{}
	for _, name := range finishedTars(t, dir) {
		ss, err := readTar(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range ss {
			key := sampleKey(s.member)
			if o, dup := out[key]; dup {
				t.Errorf("sample %s is stored twice: %s in %s and %s in %s", key, o.member, o.tar, s.member, s.tar)
			}
			out[key] = s
		}
	}
	return out
}

func sampleKey(member string) string {
	k, _, _ := strings.Cut(member, ".")
	return k
}

// noPartTars fails if an unfinished tar file is left in dir.
func noPartTars(t *testing.T, dir string) {
	t.Helper()
	parts, _ := filepath.Glob(filepath.Join(dir, "*.tar.part"))
	if len(parts) > 0 {
		t.Errorf("unfinished tar files left: %q", parts)
	}
}

// noStagingFiles fails if .haul-tar in dir holds a file other than the lock
// files.
func noStagingFiles(t *testing.T, dir string) {
	t.Helper()
	if left := stagingFiles(t, dir); len(left) > 0 {
		t.Errorf("staging files left in .haul-tar: %q", left)
	}
}

// stagingFiles lists the regular files in DIR/.haul-tar (recursively) that
// are not lock files.
func stagingFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	root := filepath.Join(dir, ".haul-tar")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && !strings.HasSuffix(d.Name(), "lock") {
			rel, _ := filepath.Rel(root, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// pythonTarList is run by python3 with tar files as arguments: it lists each
// member as "TAR<tab>NAME<tab>SIZE<tab>SHA256" from the bytes tarfile reads.
const pythonTarList = `
import hashlib, os, sys, tarfile
for p in sys.argv[1:]:
    with tarfile.open(p, "r:") as tf:
        for m in tf:
            if not m.isfile():
                sys.exit("%s: %s is not a regular file" % (p, m.name))
            data = tf.extractfile(m).read()
            if len(data) != m.size:
                sys.exit("%s: %s: read %d of %d bytes" % (p, m.name, len(data), m.size))
            print("%s\t%s\t%d\t%s" % (os.path.basename(p), m.name, m.size, hashlib.sha256(data).hexdigest()))
`

// goTarList is pythonTarList's listing made from what archive/tar read.
func goTarList(t *testing.T, tars []string) string {
	t.Helper()
	var b strings.Builder
	for _, name := range tars {
		ss, err := readTar(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range ss {
			sum := sha256.Sum256(s.body)
			fmt.Fprintf(&b, "%s\t%s\t%d\t%x\n", s.tar, s.member, len(s.body), sum)
			sum = sha256.Sum256(s.info)
			fmt.Fprintf(&b, "%s\t%s.json\t%d\t%x\n", s.tar, sampleKey(s.member), len(s.info), sum)
		}
	}
	return b.String()
}

// checkPythonReads fails unless Python's tarfile reads each of tars whole,
// member for member as archive/tar does. It reports false if there is no
// python3 to ask.
func checkPythonReads(t *testing.T, tars []string) bool {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		return false
	}
	out, err := exec.Command(py, append([]string{"-c", pythonTarList}, tars...)...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("python3 tarfile: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("python3 tarfile: %v", err)
	}
	if want := goTarList(t, tars); string(out) != want {
		t.Errorf("Python's tarfile reads:\n%s\narchive/tar reads:\n%s", out, want)
	}
	return true
}

// checkTarLists fails unless tar -t lists each of tars, member for member as
// archive/tar reads it. It reports false if there is no tar command.
func checkTarLists(t *testing.T, tars []string) bool {
	t.Helper()
	bin, err := exec.LookPath("tar")
	if err != nil {
		return false
	}
	for _, name := range tars {
		out, err := exec.Command(bin, "-tf", name).CombinedOutput()
		if err != nil {
			t.Fatalf("tar -tf %s: %v\n%s", name, err, out)
		}
		ss, err := readTar(name)
		if err != nil {
			t.Fatal(err)
		}
		var want strings.Builder
		for _, s := range ss {
			fmt.Fprintf(&want, "%s\n%s.json\n", s.member, sampleKey(s.member))
		}
		if string(out) != want.String() {
			t.Errorf("tar -tf %s lists:\n%s\nwant:\n%s", name, out, want.String())
		}
	}
	return true
}

// tarLine is a manifest line of a --tar run.
type tarLine map[string]json.RawMessage

func (m tarLine) str(k string) string { return rawString(m, k) }

// tarManifest parses a manifest of a --tar run, indexing its entries (not
// its bad lines) by URL.
func tarManifest(t *testing.T, data string) (byURL map[string]tarLine, invalid []tarLine) {
	t.Helper()
	byURL = map[string]tarLine{}
	for _, m := range manifestObjects(t, data) {
		if m := tarLine(m); m.str("status") == "invalid" {
			invalid = append(invalid, m)
			continue
		}
		u := tarLine(m).str("url")
		if _, dup := byURL[u]; dup {
			t.Errorf("the manifest lists %s twice", u)
		}
		byURL[u] = m
	}
	return byURL, invalid
}

// checkStoredLine fails unless m is the manifest line of a sample stored as
// s: out null, its key, tar and member.
func checkStoredLine(t *testing.T, m tarLine, status string, s tarSample) {
	t.Helper()
	if m == nil {
		t.Errorf("no manifest line for sample %s", s.member)
		return
	}
	if m.str("status") != status || string(m["out"]) != "null" || m.str("key") != sampleKey(s.member) ||
		m.str("tar") != s.tar || m.str("member") != s.member {
		t.Errorf("manifest line %s, want status %s, out null, key %q, tar %q, member %q",
			jsonLine(m), status, sampleKey(s.member), s.tar, s.member)
	}
}

func jsonLine(m tarLine) string {
	b, _ := json.Marshal(map[string]json.RawMessage(m))
	return string(b)
}

// sortedLines returns the lines of s sorted, each ending in a newline.
func sortedLines(s string) string {
	ls := strings.SplitAfter(s, "\n")
	if ls[len(ls)-1] == "" {
		ls = ls[:len(ls)-1]
	}
	slices.Sort(ls)
	return strings.Join(ls, "")
}

// hashFiles returns the SHA-256 of every regular file under dir, by relative
// path.
func hashFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for name, b := range files(t, dir) {
		sum := sha256.Sum256(b)
		out[name] = hex.EncodeToString(sum[:])
	}
	return out
}

// A CSV list (RFC 4180 quoting in a column carried as meta) into --tar: each
// sample once, its body as served under the extension the URL path, else the
// Content-Type, gives; its KEY.json says what the list and the response
// said; the manifest names its tar and member.
func TestE2ETarSamplesFromCSVList(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	type entry struct {
		path, ctype, key, caption, width string
		member                           string
	}
	entries := []entry{
		{"/img/Photo.JPG", "image/jpeg", "photo", "a cat, \"Tom\", on a mat\nsecond line", "640", "photo.jpg"},
		{"/img/picture", "image/png", "pic", "no extension: from Content-Type", "320", "pic.png"},
		{"/data/record.json", "application/json", "rec", "a body at a .json URL", "0", "rec.body.json"},
		{"/blob/raw", "application/x-unknown", "raw", "nothing known", "1", "raw.bin"},
		{"/doc/notes.toolongext", "text/plain; charset=utf-8", "notes", `"quoted whole"`, "12", "notes.txt"},
		{"/v/clip.MP4?as=x.png", "video/mp4", "clip", "the query's dot is not the path's", "1920", "clip.mp4"},
	}
	bodies := map[string][]byte{}
	urls := map[string]string{}
	var csv strings.Builder
	csv.WriteString("url,key,caption,width\r\n")
	quote := func(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
	for i, e := range entries {
		body := testutil.Payload(uint64(7100+i), 500+300*i)
		u := s.Add(e.path, body, downloadtest.Header("Content-Type", e.ctype))
		bodies[e.key], urls[e.key] = body, u
		fmt.Fprintf(&csv, "%s,%s,%s,%s\r\n", u, e.key, quote(e.caption), e.width)
	}
	list := writeFile(t, "list.csv", []byte(csv.String()))

	for _, hashed := range []bool{false, true} {
		t.Run(fmt.Sprintf("sha256=%v", hashed), func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "out")
			args := []string{"--tar", "-d", dir, "-i", list, "--manifest", "-"}
			if hashed {
				args = append(args, "--sha256")
			}
			r := runHaul(t, nil, args...)
			wantCode(t, r, exitOK)
			got := storedSamples(t, dir)
			if len(got) != len(entries) {
				t.Errorf("%d samples stored, want %d: %v", len(got), len(entries), slices.Sorted(maps.Keys(got)))
			}
			man, invalid := tarManifest(t, r.stdout)
			if len(invalid) > 0 {
				t.Errorf("bad lines: %v", invalid)
			}
			for _, e := range entries {
				smp, ok := got[e.key]
				if !ok {
					t.Errorf("no sample %s", e.key)
					continue
				}
				if smp.member != e.member {
					t.Errorf("sample %s: member %s, want %s", e.key, smp.member, e.member)
				}
				if !bytes.Equal(smp.body, bodies[e.key]) {
					t.Errorf("%s: %d bytes differ from the %d served", smp.member, len(smp.body), len(bodies[e.key]))
				}
				var info map[string]any
				if err := json.Unmarshal(smp.info, &info); err != nil {
					t.Fatal(err)
				}
				var sum any
				if hashed {
					h := sha256.Sum256(bodies[e.key])
					sum = hex.EncodeToString(h[:])
				}
				want := map[string]any{
					"url": urls[e.key], "key": e.key, "size": float64(len(bodies[e.key])), "sha256": sum,
					"http_status": float64(200), "content_type": e.ctype,
					"meta": map[string]any{"caption": e.caption, "width": e.width},
				}
				if !reflect.DeepEqual(info, want) {
					t.Errorf("%s.json:\n%s\nwant:\n%v", e.key, smp.info, want)
				}
				m := man[urls[e.key]]
				checkStoredLine(t, m, "ok", smp)
				if m != nil {
					if hashed && m.str("sha256") != sum {
						t.Errorf("manifest sha256 %s, want %v", m["sha256"], sum)
					}
					var meta map[string]any
					if err := json.Unmarshal(m["meta"], &meta); err != nil || !reflect.DeepEqual(meta, want["meta"]) {
						t.Errorf("manifest meta %s, want %v", m["meta"], want["meta"])
					}
				}
			}
			noPartTars(t, dir)
			noStagingFiles(t, dir)
		})
	}
}

// An entry without a key is named by its 0-based position among the list's
// entries, in nine digits: blank and comment lines do not count, bad lines
// and repeats do (a URL listed twice is two samples).
func TestE2ETarKeysArePositionsInTheList(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	u := func(i int) string { return s.Add(fmt.Sprintf("/p/%d", i), testutil.Payload(uint64(7200+i), 100+i)) }
	u0, u2, u3, u5, u6 := u(0), u(2), u(3), u(5), u(6)
	list := writeList(t,
		"# a comment",
		"",
		u0,                    // 0
		"ftp://example.com/x", // 1: a bad line
		u2+" key=named",       // 2
		"   ",
		"# another comment",
		u3,                             // 3
		u0,                             // 4: listed twice
		`{"url": "`+u5+`"}`,            // 5
		`{"url": "`+u6+`", "key": 17}`, // 6, named 17
	)
	dir := t.TempDir()
	r := runHaul(t, nil, "--tar", "-d", dir, "-i", list, "--manifest", "-")
	wantCode(t, r, exitFailed)
	if !strings.Contains(r.stderr, "input line 4: ") {
		t.Errorf("stderr does not name the bad line 4:\n%s", r.stderr)
	}
	got := storedSamples(t, dir)
	want := map[string][]byte{
		"000000000.bin": testutil.Payload(7200, 100),
		"named.bin":     testutil.Payload(7202, 102),
		"000000003.bin": testutil.Payload(7203, 103),
		"000000004.bin": testutil.Payload(7200, 100),
		"000000005.bin": testutil.Payload(7205, 105),
		"17.bin":        testutil.Payload(7206, 106),
	}
	for _, smp := range got {
		if w, ok := want[smp.member]; !ok {
			t.Errorf("unexpected sample %s", smp.member)
		} else if !bytes.Equal(smp.body, w) {
			t.Errorf("%s differs from what was served", smp.member)
		}
	}
	for m := range want {
		if _, ok := got[sampleKey(m)]; !ok {
			t.Errorf("no sample %s; stored: %v", m, slices.Sorted(maps.Keys(got)))
		}
	}
	// By key: u0 is listed twice, and its second line, the repeat, is
	// skipped under its own key.
	byKey := map[string]tarLine{}
	var invalid []string
	for _, m := range manifestObjects(t, r.stdout) {
		m := tarLine(m)
		if m.str("status") == "invalid" {
			invalid = append(invalid, string(m["line"]))
			continue
		}
		byKey[m.str("key")] = m
	}
	if !slices.Equal(invalid, []string{"4"}) {
		t.Errorf("bad lines in the manifest %q, want line 4", invalid)
	}
	for url, key := range map[string]string{u0: "000000000", u2: "named", u3: "000000003", u5: "000000005", u6: "17"} {
		checkStoredLine(t, byKey[key], "ok", got[key])
		if m := byKey[key]; m.str("url") != url {
			t.Errorf("sample %s: url %s, want %s", key, m.str("url"), url)
		}
	}
	// The repeat is an entry of its own, under its own key.
	checkStoredLine(t, byKey["000000004"], "ok", got["000000004"])
	if len(byKey) != 6 {
		t.Errorf("%d entries in the manifest, want 6: %v", len(byKey), slices.Sorted(maps.Keys(byKey)))
	}
}

// A key holding a "." or a "/" is a bad row, named by its number; the other
// rows are stored.
func TestE2ETarKeyWithDotOrSlashIsABadRow(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	var rows []string
	for i, key := range []string{"a", "b.c", "d/e", "f"} {
		rows = append(rows, s.Add(fmt.Sprintf("/k/%d", i), testutil.Payload(uint64(7300+i), 200))+","+key)
	}
	list := writeFile(t, "list.csv", []byte("url,key\n"+strings.Join(rows, "\n")+"\n"))
	dir := t.TempDir()
	r := runHaul(t, nil, "--tar", "-d", dir, "-i", list, "--manifest", "-")
	wantCode(t, r, exitFailed)
	for _, want := range []string{
		`haul: input row 2 (line 3): key "b.c" holds a . or a /`,
		`haul: input row 3 (line 4): key "d/e" holds a . or a /`,
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr does not say %q:\n%s", want, r.stderr)
		}
	}
	man, invalid := tarManifest(t, r.stdout)
	var rowsBad []string
	for _, m := range invalid {
		rowsBad = append(rowsBad, string(m["row"]))
	}
	if !slices.Equal(rowsBad, []string{"2", "3"}) && !slices.Equal(rowsBad, []string{"3", "2"}) {
		t.Errorf("bad rows in the manifest %q, want 2 and 3", rowsBad)
	}
	got := storedSamples(t, dir)
	if keys := slices.Sorted(maps.Keys(got)); !slices.Equal(keys, []string{"a", "f"}) {
		t.Errorf("samples %q, want a and f", keys)
	}
	if len(man) != 2 {
		t.Errorf("%d entries in the manifest, want 2", len(man))
	}
}

// Every finished tar is read whole by Python's tarfile and listed by tar -t,
// member for member as archive/tar reads it, and ends with its two zero
// end-of-archive blocks.
func TestE2ETarFilesReadByPythonAndTar(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("no python3 here")
	}
	s := downloadtest.New(t)
	var lines []string
	for i := range 12 {
		// Sizes on and off the 512-byte blocks.
		n := []int{0, 1, 511, 512, 513, 4096, 10000}[i%7] + i
		lines = append(lines, s.Add(fmt.Sprintf("/r/%d.dat", i), testutil.Payload(uint64(7400+i), n)))
	}
	dir := t.TempDir()
	r := runHaul(t, nil, "--tar", "--tar-size", "10K", "-d", dir, "-i", writeList(t, lines...))
	wantCode(t, r, exitOK)
	tars := finishedTars(t, dir)
	if len(tars) < 2 {
		t.Fatalf("%d tar files, want several", len(tars))
	}
	if got := len(storedSamples(t, dir)); got != 12 {
		t.Errorf("%d samples, want 12", got)
	}
	checkPythonReads(t, tars)
	if !checkTarLists(t, tars) {
		t.Log("no tar command here: tar -t not tried")
	}
}

// A re-run skips every stored sample without a request, leaves the tars as
// they are, and names each entry's tar and member in its manifest line.
func TestE2ETarRerunSkipsStoredSamplesWithoutARequest(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	var lines []string
	for i := range 20 {
		lines = append(lines, s.Add(fmt.Sprintf("/s/%d.png", i), testutil.Payload(uint64(7500+i), 1000+500*i)))
	}
	list := writeList(t, lines...)
	dir := t.TempDir()
	args := []string{"--tar", "--tar-size", "16K", "-d", dir, "-i", list, "--manifest", "-"}
	r := runHaul(t, nil, args...)
	wantCode(t, r, exitOK)
	first, _ := tarManifest(t, r.stdout)
	before := hashFiles(t, dir)
	stored := storedSamples(t, dir)
	if len(stored) != 20 || len(finishedTars(t, dir)) < 2 {
		t.Fatalf("%d samples in %d tars, want 20 in several", len(stored), len(finishedTars(t, dir)))
	}
	reqs := s.TotalRequests()

	r = runHaul(t, nil, args...)
	wantCode(t, r, exitOK)
	if n := s.TotalRequests() - reqs; n != 0 {
		t.Errorf("the re-run made %d requests, want none", n)
	}
	if after := hashFiles(t, dir); !maps.Equal(before, after) {
		t.Errorf("the re-run changed the directory:\nbefore %v\nafter  %v", before, after)
	}
	man, _ := tarManifest(t, r.stdout)
	if len(man) != 20 {
		t.Errorf("%d manifest lines, want 20", len(man))
	}
	for i, u := range lines {
		key := fmt.Sprintf("%09d", i)
		checkStoredLine(t, first[u], "ok", stored[key])
		checkStoredLine(t, man[u], "skipped", stored[key])
		if m := man[u]; m != nil && string(m["size"]) != fmt.Sprint(1000+500*i) {
			t.Errorf("skipped %s: size %s, want %d", key, m["size"], 1000+500*i)
		}
	}
}

// With --tar-size 20K the samples go into 00000.tar, 00001.tar, ..., each
// finished once it reaches 20K, none past it by more than its last sample.
func TestE2ETarRotatesAtTarSize(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	var lines []string
	for i := range 30 {
		lines = append(lines, s.Add(fmt.Sprintf("/t/%d.jpg", i), testutil.Payload(uint64(7600+i), 3<<10)))
	}
	dir := t.TempDir()
	r := runHaul(t, nil, "--tar", "--tar-size", "20K", "-j", "4", "-d", dir, "-i", writeList(t, lines...))
	wantCode(t, r, exitOK)
	tars := finishedTars(t, dir)
	if len(tars) < 3 {
		t.Fatalf("%d tar files, want several", len(tars))
	}
	n := 0
	for i, name := range tars {
		if want := fmt.Sprintf("%05d.tar", i); filepath.Base(name) != want {
			t.Errorf("tar file %d is %s, want %s", i, filepath.Base(name), want)
		}
		ss, err := readTar(name)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		last := ss[len(ss)-1].bytesInTar()
		if fi.Size() >= 20<<10+last {
			t.Errorf("%s: %d bytes, past --tar-size 20K by more than its last sample (%d bytes)", filepath.Base(name), fi.Size(), last)
		}
		if i < len(tars)-1 && fi.Size() < 20<<10 {
			t.Errorf("%s: finished at %d bytes, short of --tar-size 20K, and another tar follows", filepath.Base(name), fi.Size())
		}
		n += len(ss)
	}
	if n != 30 || len(storedSamples(t, dir)) != 30 {
		t.Errorf("%d samples, want 30", n)
	}
	noPartTars(t, dir)
	checkPythonReads(t, tars)
}

// --shard 0/2 and --shard 1/2 into one directory at once write
// 0-of-2-NNNNN.tar and 1-of-2-NNNNN.tar: each entry in exactly one of them,
// its shard's.
func TestE2ETarShardsShareADirectory(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	var lines []string
	bodies := map[string][]byte{}
	for i := range 30 {
		body := testutil.Payload(uint64(7700+i), 3<<10)
		lines = append(lines, s.Add(fmt.Sprintf("/sh/%d.jpg", i), body))
		bodies[fmt.Sprintf("%09d", i)] = body
	}
	list := writeList(t, lines...)
	dir := t.TempDir()
	var wg sync.WaitGroup
	res := make([]result, 2)
	for k := range 2 {
		wg.Go(func() {
			res[k] = runHaul(t, nil, "--tar", "--tar-size", "20K", "--shard", fmt.Sprintf("%d/2", k), "-d", dir, "-i", list, "--manifest", "-")
		})
	}
	wg.Wait()
	names := regexp.MustCompile(`^([01])-of-2-[0-9]{5}\.tar$`)
	seen := map[string]bool{}
	for _, name := range finishedTars(t, dir) {
		m := names.FindStringSubmatch(filepath.Base(name))
		if m == nil {
			t.Errorf("tar file %s is not named K-of-2-NNNNN.tar", filepath.Base(name))
			continue
		}
		seen[m[1]] = true
	}
	for k := range 2 {
		wantCode(t, res[k], exitOK)
		if !seen[fmt.Sprint(k)] {
			t.Errorf("no tar file of shard %d", k)
		}
		if _, err := os.Stat(filepath.Join(dir, fmt.Sprintf("%d-of-2-00000.tar", k))); err != nil {
			t.Error(err)
		}
	}
	got := storedSamples(t, dir)
	for key, body := range bodies {
		if smp, ok := got[key]; !ok {
			t.Errorf("no sample %s", key)
		} else if !bytes.Equal(smp.body, body) {
			t.Errorf("%s differs from what was served", smp.member)
		}
	}
	if len(got) != len(bodies) {
		t.Errorf("%d samples, want %d", len(got), len(bodies))
	}
	// Each shard's manifest names its own tars.
	for k := range 2 {
		man, _ := tarManifest(t, res[k].stdout)
		if len(man) == 0 {
			t.Errorf("shard %d did nothing", k)
		}
		for _, m := range man {
			smp := got[m.str("key")]
			checkStoredLine(t, m, "ok", smp)
			if !strings.HasPrefix(smp.tar, fmt.Sprintf("%d-of-2-", k)) {
				t.Errorf("shard %d stored %s in %s", k, smp.member, smp.tar)
			}
		}
	}
	noPartTars(t, dir)
	noStagingFiles(t, dir)
}

// A body too big for memory (6 MiB), fetched in four pieces, is staged in
// .haul-tar and lands in the tar byte for byte; the staging file is gone
// after the run.
func TestE2ETarBigBodyGoesThroughStaging(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	body := testutil.Payload(7800, 6<<20)
	release := make(chan struct{})
	var first, held atomic.Bool
	u := s.Handle("/big.bin", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Every response comes at 4 MiB/s, slow enough for haul to split
		// the body; the first one stalls after its first MiB until the
		// test has seen the staging file and a piece asked for.
		bw := &stallingWriter{ResponseWriter: w, rate: 4 << 20, after: 1 << 20, hold: func() {
			if !first.CompareAndSwap(false, true) {
				return
			}
			http.NewResponseController(w).Flush()
			held.Store(true)
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}}
		w.Header().Set("ETag", `"big"`)
		http.ServeContent(bw, r, "", time.Time{}, bytes.NewReader(body))
	}))
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	dir := t.TempDir()
	ctx, cancel := haulContext(t)
	defer cancel()
	h := spawnHaul(t, ctx, cancel, "--tar", "-d", dir, "--split", "4", "--min-split-size", "1M", "--manifest", "-", u)
	cmd, stdout, stderr, exited := h.cmd, h.stdout, h.stderr, h.exited
	// While a response is held after its first MiB, the body is in a
	// staging file, and the rest is asked for in pieces.
	staged := waitFor(t, func() bool {
		select {
		case <-exited:
			return true
		default:
		}
		return held.Load() && len(stagingFiles(t, dir)) > 0 && closedRanges(s.RangeRequests("/big.bin")) > 0
	})
	select {
	case <-exited:
		t.Fatalf("haul ended while a response was held\n%s", stderr)
	default:
	}
	if !staged {
		t.Fatal("no staging file in .haul-tar, or no piece asked for, while the body was half fetched")
	}
	close(release)
	<-exited
	if code := cmd.ProcessState.ExitCode(); code != exitOK {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	if closedRanges(s.RangeRequests("/big.bin")) < 2 {
		t.Errorf("the body was not fetched in pieces: ranges %q", s.RangeRequests("/big.bin"))
	}
	got := storedSamples(t, dir)
	smp, ok := got["000000000"]
	if !ok || len(got) != 1 {
		t.Fatalf("samples %v, want 000000000", slices.Sorted(maps.Keys(got)))
	}
	if smp.member != "000000000.bin" || !bytes.Equal(smp.body, body) {
		t.Errorf("%s: %d bytes, not the %d served", smp.member, len(smp.body), len(body))
	}
	man, _ := tarManifest(t, stdout.String())
	checkStoredLine(t, man[u], "ok", smp)
	noPartTars(t, dir)
	noStagingFiles(t, dir)
}

// closedRanges counts the requests for a piece of a body: a closed range.
func closedRanges(ranges []string) int {
	n := 0
	for _, r := range ranges {
		if !strings.HasSuffix(r, "-") {
			n++
		}
	}
	return n
}

// stallingWriter sends a body at rate bytes a second, in flushed chunks, and
// calls hold once after bytes of it.
type stallingWriter struct {
	http.ResponseWriter
	rate  int
	after int
	n     int
	hold  func()
}

func (w *stallingWriter) Write(p []byte) (int, error) {
	const chunk = 8 << 10
	total := 0
	for len(p) > 0 {
		c := p[:min(len(p), chunk)]
		if w.n < w.after && w.n+len(c) > w.after {
			c = c[:w.after-w.n]
		}
		time.Sleep(time.Duration(len(c)) * time.Second / time.Duration(w.rate)) // the link's pace
		n, err := w.ResponseWriter.Write(c)
		w.n += n
		total += n
		if err != nil {
			return total, err
		}
		http.NewResponseController(w.ResponseWriter).Flush()
		if w.n == w.after {
			w.hold()
		}
		p = p[n:]
	}
	return total, nil
}

// --tar with a flag that would rewrite or rename what it stores, and a bad
// --tar-size, are usage errors that say why, before anything is written.
func TestE2ETarUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--tar", "--update"}, "--update cannot go with --tar: a sample in a finished tar file is never replaced"},
		{[]string{"--tar", "--force"}, "--force cannot go with --tar: a sample in a finished tar file is never replaced"},
		{[]string{"--tar", "--compress", "gzip"}, "--compress cannot go with --tar: samples are stored as published"},
		{[]string{"--tar", "-r"}, "-r cannot go with --tar: a walk names files by their path"},
		{[]string{"--tar-size", "1M"}, "--tar-size needs --tar"},
		{[]string{"--tar", "--tar-size", "lots"}, `--tar-size "lots": want a size like`},
		{[]string{"--tar", "--tar-size", "1K"}, `--tar-size "1K": want a size like 1M or 16M (at least 10K)`},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "out")
			r := runHaul(t, nil, append(tt.args, "-d", dir, "http://127.0.0.1:1/x")...)
			wantCode(t, r, exitUsage)
			if !strings.Contains(r.stderr, tt.want) {
				t.Errorf("stderr does not say %q:\n%s", tt.want, r.stderr)
			}
			if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("--dir was created by a usage error: %v", err)
			}
		})
	}
}

// --dry-run --tar reports what a run would fetch and skips what the tars
// hold, without a request or a write; a --dir that does not exist is not
// created.
func TestE2ETarDryRunWritesNothing(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	var lines []string
	for i := range 6 {
		lines = append(lines, s.Add(fmt.Sprintf("/d/%d.png", i), testutil.Payload(uint64(7900+i), 700)))
	}
	t.Run("some samples stored", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		// A run interrupted after three entries, as far as the tars say:
		// the first three lines, then the whole list.
		r := runHaul(t, nil, "--tar", "-d", dir, "-i", writeList(t, lines[:3]...))
		wantCode(t, r, exitOK)
		before := hashFiles(t, dir)
		reqs := s.TotalRequests()
		r = runHaul(t, nil, "--tar", "--dry-run", "-d", dir, "-i", writeList(t, lines...))
		wantCode(t, r, exitFailed) // something would be fetched
		if n := s.TotalRequests() - reqs; n != 0 {
			t.Errorf("--dry-run made %d requests", n)
		}
		if after := hashFiles(t, dir); !maps.Equal(before, after) {
			t.Errorf("--dry-run changed the directory:\nbefore %v\nafter  %v", before, after)
		}
		var want strings.Builder
		for i := 3; i < 6; i++ {
			fmt.Fprintf(&want, "fetch sample %09d %s: missing\n", i, lines[i])
		}
		if got := sortedLines(r.stdout); got != want.String() {
			t.Errorf("--dry-run plans:\n%s\nwant:\n%s", got, want.String())
		}
		if !strings.Contains(r.stderr, "3 skipped, 3 to fetch") {
			t.Errorf("the summary does not count 3 stored and 3 to fetch:\n%s", r.stderr)
		}
	})
	t.Run("no directory", func(t *testing.T) {
		t.Parallel()
		dir := filepath.Join(t.TempDir(), "out")
		r := runHaul(t, nil, "--tar", "--dry-run", "-d", dir, "-i", writeList(t, lines...))
		wantCode(t, r, exitFailed)
		if n := strings.Count(r.stdout, "fetch "); n != len(lines) {
			t.Errorf("%d plan lines, want %d:\n%s", n, len(lines), r.stdout)
		}
		if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("--dry-run created --dir (or .haul-tar in it): %v", err)
		}
	})
}

// A stored sample whose size= or sha256= in the list now differs fails its
// entry, without a request: its tar is never rewritten; so does another URL
// under a stored sample's key.
func TestE2ETarStoredSampleThatDiffersFails(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	b := [][]byte{testutil.Payload(8000, 900), testutil.Payload(8001, 1100), testutil.Payload(8002, 1300)}
	var u []string
	for i := range b {
		u = append(u, s.Add(fmt.Sprintf("/x/%d.bin", i), b[i]))
	}
	intruder := s.Add("/x/other.bin", []byte("another URL"))
	dir := t.TempDir()
	r := runHaul(t, nil, "--tar", "-d", dir, "-i", writeList(t, u...))
	wantCode(t, r, exitOK)
	before := hashFiles(t, dir)
	reqs := s.TotalRequests()
	sum := sha256.Sum256(b[2])
	r = runHaul(t, nil, "--tar", "-d", dir, "--manifest", "-", "-i", writeList(t,
		fmt.Sprintf("%s size=%d", u[0], len(b[0])+1),
		u[1]+" sha256="+strings.Repeat("0", 64),
		fmt.Sprintf("%s size=%d sha256=%x", u[2], len(b[2]), sum),
		intruder+" key=000000001",
	))
	wantCode(t, r, exitFailed)
	if n := s.TotalRequests() - reqs; n != 0 {
		t.Errorf("%d requests, want none", n)
	}
	if after := hashFiles(t, dir); !maps.Equal(before, after) {
		t.Errorf("the directory changed:\nbefore %v\nafter  %v", before, after)
	}
	man, _ := tarManifest(t, r.stdout)
	for i, want := range []string{
		fmt.Sprintf("000000000.bin in 00000.tar holds %d bytes, size= says %d", len(b[0]), len(b[0])+1),
		"000000001.bin in 00000.tar holds sha256 ",
	} {
		m := man[u[i]]
		if m.str("status") != "failed" || !strings.Contains(m.str("error"), want) ||
			!strings.Contains(m.str("error"), "a finished tar file is never rewritten") {
			t.Errorf("manifest line %s, want failed saying %q and that the tar is never rewritten", jsonLine(m), want)
		}
		if !strings.Contains(r.stderr, u[i]) {
			t.Errorf("stderr does not name %s:\n%s", u[i], r.stderr)
		}
	}
	// A collision either way: with the sample stored from another URL, or,
	// when it comes while that URL's line holds the key, with that line.
	if m := man[intruder]; m.str("status") != "failed" || !strings.Contains(m.str("error"), "name collision: ") ||
		!strings.Contains(m.str("error"), "sample 000000001 in 00000.tar is from another URL") && !strings.Contains(m.str("error"), "000000001 is being written from "+u[1]) {
		t.Errorf("manifest line %s, want failed: the key names another URL's sample", jsonLine(m))
	}
	stored := storedSamples(t, dir)
	checkStoredLine(t, man[u[2]], "skipped", stored["000000002"])
	if got := man[u[2]].str("sha256"); got != hex.EncodeToString(sum[:]) {
		t.Errorf("skipped sample's sha256 %q, want %x", got, sum)
	}
}

// A second haul on the same directory and tar files while the first runs
// fails at once, saying another process writes them; the first goes on.
func TestE2ETarSecondProcessOnTheSameTarsFails(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	body := testutil.Payload(8100, 5000)
	started := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	u := s.Handle("/held.bin", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { close(started) })
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		w.Write(body)
	}))
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	other := s.Add("/other.bin", []byte("other"))
	dir := t.TempDir()
	ctx, cancel := haulContext(t)
	defer cancel()
	cmd, stdout, stderr := haulCmd(ctx, nil, "--tar", "-d", dir, "--manifest", "-", u)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case <-started:
	case err := <-exited:
		t.Fatalf("the first haul ended before its request was answered: %v\n%s", err, stderr)
	}
	r := runHaul(t, nil, "--tar", "-d", dir, other)
	wantCode(t, r, exitFatal)
	if !strings.Contains(r.stderr, "another haul process writes these tar files") || !strings.Contains(r.stderr, dir) {
		t.Errorf("stderr does not say another process writes the tar files in %s:\n%s", dir, r.stderr)
	}
	if s.Requests("/other.bin") != 0 {
		t.Error("the second haul asked for its URL")
	}
	releaseOnce.Do(func() { close(release) })
	if err := <-exited; err != nil {
		t.Fatalf("the first haul: %v\n%s", err, stderr)
	}
	got := storedSamples(t, dir)
	if smp, ok := got["000000000"]; !ok || len(got) != 1 || !bytes.Equal(smp.body, body) {
		t.Fatalf("samples %v, want the first haul's alone", slices.Sorted(maps.Keys(got)))
	}
	man, _ := tarManifest(t, stdout.String())
	checkStoredLine(t, man[u], "ok", got["000000000"])
}

// Ctrl-C leaves the tar being written unfinished, its samples whole; a re-run
// fetches only what it lacks, appends to it under its own number, and leaves
// the finished tars as they were.
func TestE2ETarInterruptedRunAppendsToItsUnfinishedTar(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	const n, held = 20, 12
	bodies := map[string][]byte{}
	var lines []string
	var first atomic.Bool
	started := make(chan struct{})
	for i := range n {
		body := testutil.Payload(uint64(8200+i), 3<<10)
		bodies[fmt.Sprintf("%09d", i)] = body
		p := fmt.Sprintf("/c/%d.jpg", i)
		if i != held {
			lines = append(lines, s.Add(p, body))
			continue
		}
		// The first request for it is held until haul gives up on it.
		lines = append(lines, s.Handle(p, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if first.CompareAndSwap(false, true) {
				close(started)
				<-r.Context().Done()
				return
			}
			w.Write(body)
		})))
	}
	list := writeList(t, lines...)
	dir := t.TempDir()
	args := []string{"--tar", "--tar-size", "20K", "-j", "1", "-d", dir, "-i", list, "--manifest", "-"}
	ctx, cancel := haulContext(t)
	defer cancel()
	h := spawnHaul(t, ctx, cancel, args...)
	cmd, stderr, exited := h.cmd, h.stderr, h.exited
	select {
	case <-started:
	case <-exited:
		t.Fatalf("haul ended before its request for entry %d:\n%s", held, stderr)
	}
	cmd.Process.Signal(unix.SIGINT)
	<-exited
	if code := cmd.ProcessState.ExitCode(); code != exitInterrupted {
		t.Fatalf("exit %d after SIGINT, want %d\n%s", code, exitInterrupted, stderr)
	}
	before := hashFiles(t, dir)
	stored := storedSamples(t, dir)
	part := filepath.Join(dir, "00002.tar.part")
	data, err := os.ReadFile(part)
	if err != nil {
		t.Fatalf("no unfinished tar after the interruption: %v; tars %q", err, finishedTars(t, dir))
	}
	end, err := sink.ScanTar(bytes.NewReader(data), int64(len(data)), func(smp sink.StoredSample) {
		stored[smp.Key] = tarSample{tar: "00002.tar.part", member: smp.Member}
	})
	if err != nil || end != int64(len(data)) {
		t.Errorf("the unfinished tar holds %d bytes, whole samples up to %d (%v)", len(data), end, err)
	}
	if len(stored) != held {
		t.Errorf("%d samples stored before the interruption, want %d: %v", len(stored), held, slices.Sorted(maps.Keys(stored)))
	}
	reqs := map[string]int{}
	for i := range n {
		reqs[fmt.Sprintf("%09d", i)] = s.Requests(fmt.Sprintf("/c/%d.jpg", i))
	}

	r := runHaul(t, nil, args...)
	wantCode(t, r, exitOK)
	for i := range n {
		key := fmt.Sprintf("%09d", i)
		again := s.Requests(fmt.Sprintf("/c/%d.jpg", i)) - reqs[key]
		if _, ok := stored[key]; ok && again != 0 || !ok && again != 1 {
			t.Errorf("sample %s (stored before: %v) asked for %d times by the re-run", key, ok, again)
		}
	}
	for name, sum := range before {
		if strings.HasSuffix(name, ".tar") && hashFiles(t, dir)[name] != sum {
			t.Errorf("finished tar %s changed", name)
		}
	}
	got := storedSamples(t, dir)
	for key, body := range bodies {
		if smp, ok := got[key]; !ok || !bytes.Equal(smp.body, body) {
			t.Errorf("sample %s missing or not what was served", key)
		}
	}
	tars := finishedTars(t, dir)
	var names []string
	for _, name := range tars {
		names = append(names, filepath.Base(name))
	}
	// 4.5 KiB a sample: five to a tar of 20K.
	if want := []string{"00000.tar", "00001.tar", "00002.tar", "00003.tar"}; !slices.Equal(names, want) {
		t.Errorf("tar files %q, want %q", names, want)
	}
	ss, err := readTar(filepath.Join(dir, "00002.tar"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ss) != 5 || !bytes.HasPrefix(files(t, dir)["00002.tar"], data) {
		t.Errorf("00002.tar holds %d samples, and does not start with what the interrupted run wrote to it", len(ss))
	}
	noPartTars(t, dir)
	checkPythonReads(t, tars)
}

// A failed entry gets no member, only its manifest line (with its key);
// a re-run asks for it again.
func TestE2ETarFailedEntryHasNoMember(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	ok := s.Add("/f/ok.png", []byte("fine"))
	gone := s.Add("/f/gone.png", nil, downloadtest.Status(http.StatusNotFound, downloadtest.Always))
	list := writeList(t, ok, gone+" key=lost")
	dir := t.TempDir()
	for run := range 2 {
		r := runHaul(t, nil, "--tar", "-d", dir, "-i", list, "--manifest", "-")
		wantCode(t, r, exitFailed)
		man, _ := tarManifest(t, r.stdout)
		m := man[gone]
		if m.str("status") != "failed" || m.str("key") != "lost" || m["tar"] != nil || m["member"] != nil || string(m["out"]) != "null" {
			t.Errorf("run %d: manifest line %s, want failed with key lost, no tar nor member, out null", run, jsonLine(m))
		}
		if got := s.Requests("/f/gone.png"); got < run+1 {
			t.Errorf("run %d: %d requests for the failed entry so far", run, got)
		}
		got := storedSamples(t, dir)
		if keys := slices.Sorted(maps.Keys(got)); !slices.Equal(keys, []string{"000000000"}) {
			t.Errorf("run %d: samples %q, want 000000000 alone", run, keys)
		}
	}
	if got := s.Requests("/f/ok.png"); got != 1 {
		t.Errorf("%d requests for the stored entry, want 1", got)
	}
}

// --checksums names an entry of --tar by the path --layout tree would give
// it: a body that matches is stored, one that does not fails with no member.
func TestE2ETarChecksumsByTreePath(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	a, b, c := testutil.Payload(8300, 2000), testutil.Payload(8301, 2100), testutil.Payload(8302, 2200)
	ua, ub, uc := s.Add("/ck/a.png", a), s.Add("/ck/b.png", b), s.Add("/ck/c.png", c)
	sumA := sha256.Sum256(a)
	sums := writeFile(t, "SHA256SUMS", fmt.Appendf(nil, "%x  a.png\n%s  %s/ck/b.png\n", sumA, strings.Repeat("ab", 32), hostDir(s)))
	dir := t.TempDir()
	r := runHaul(t, nil, "--tar", "-d", dir, "--checksums", sums, "--manifest", "-", "-i", writeList(t, ua, ub, uc))
	wantCode(t, r, exitFailed)
	man, _ := tarManifest(t, r.stdout)
	got := storedSamples(t, dir)
	if keys := slices.Sorted(maps.Keys(got)); !slices.Equal(keys, []string{"000000000", "000000002"}) {
		t.Fatalf("samples %q, want 000000000 and 000000002", keys)
	}
	checkStoredLine(t, man[ua], "ok", got["000000000"])
	checkStoredLine(t, man[uc], "ok", got["000000002"])
	if m := man[ua]; m.str("sha256") != hex.EncodeToString(sumA[:]) {
		t.Errorf("manifest line %s, want the sha256 checked", jsonLine(m))
	}
	if m := man[ub]; m.str("status") != "failed" || m["tar"] != nil || !strings.Contains(m.str("error"), "sha256") {
		t.Errorf("manifest line %s, want failed on its sha256 with no tar", jsonLine(m))
	}
	if !bytes.Equal(got["000000000"].body, a) || !bytes.Equal(got["000000002"].body, c) {
		t.Error("a stored body differs from what was served")
	}
}

// kill -9 at random moments, round after round, on one directory and list:
// every finished tar is whole and valid when it appears and never changes
// after; a last run stores each entry in exactly one tar, byte for byte.
func TestE2ETarKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("50 rounds of kill -9")
	}
	const (
		rounds  = 50
		entries = 300
	)
	rng := rand.New(rand.NewPCG(19, 3))
	s := downloadtest.New(t)
	bodies := map[string][]byte{}
	var lines []string
	for i := range entries - 1 {
		n := 100 + rng.IntN(20<<10-100)
		if i%100 == 50 {
			n = 5 << 20 // staged in .haul-tar
		}
		body := testutil.Payload(uint64(9000+i), n)
		bodies[fmt.Sprintf("%09d", i)] = body
		// Delays make the requests end at scattered moments, and the work
		// last many rounds.
		lines = append(lines, s.Add(fmt.Sprintf("/kill/%d.bin", i), body,
			downloadtest.Delay(time.Duration(10+rng.IntN(60))*time.Millisecond)))
	}
	// The last entry is answered only once the rounds are over: no round
	// ends by itself, however fast the machine.
	last := testutil.Payload(9000+entries-1, 1000)
	bodies[fmt.Sprintf("%09d", entries-1)] = last
	release := make(chan struct{})
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	lines = append(lines, s.Handle("/kill/last.bin", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
			w.Write(last)
		case <-r.Context().Done():
		}
	})))
	list := writeList(t, lines...)
	dir := filepath.Join(t.TempDir(), "out")
	args := []string{"-q", "--tar", "--tar-size", "16K", "-j", "8", "-d", dir, "-i", list}

	seen := map[string]string{} // finished tar -> its SHA-256 when first seen
	// The unfinished tar's whole samples after the last round: the tar
	// (unfinished or finished) must start with them after the next.
	var kept struct {
		name string // without .part
		data []byte
	}
	kills, byTime, cut, staged := 0, 0, 0, 0
	manDir := t.TempDir()
	for round := 0; round < rounds; round++ {
		ctx, cancel := haulContext(t)
		man := filepath.Join(manDir, fmt.Sprintf("%d.jsonl", round))
		h := spawnHaul(t, ctx, cancel, append(args, "--manifest", man)...)
		cmd, stderr, exited, ended := h.cmd, h.stderr, h.exited, h.ended
		// Once the round has stored k more samples (their manifest lines
		// written) or asked for the last entry (nothing else is left).
		heldBefore := s.Requests("/kill/last.bin")
		storedK := func(k int) bool {
			b, _ := os.ReadFile(man)
			return ended() || bytes.Count(b, []byte(`"status":"ok"`)) >= k || s.Requests("/kill/last.bin") > heldBefore
		}
		if rng.IntN(5) == 0 {
			// At a random moment of the first 200 ms, before the first
			// sample is stored: the tars read, the unfinished one cut back
			// or finished.
			byTime++
			at := time.Now().Add(time.Duration(rng.IntN(200)) * time.Millisecond)
			waitFor(t, func() bool { return storedK(1) || time.Now().After(at) })
		} else {
			// Once 1 to 6 more samples are stored, and a random moment
			// more: mid-transfer, mid-append, mid-fsync or mid-rename,
			// whatever the machine's speed.
			k := 1 + rng.IntN(6)
			waitFor(t, func() bool { return storedK(k) })
			time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
		}
		if !ended() {
			kills++
		}
		cmd.Process.Signal(unix.SIGKILL)
		<-exited
		cancel()
		if ended := cmd.ProcessState.Exited(); ended && cmd.ProcessState.ExitCode() != exitOK {
			t.Fatalf("round %d: haul ended by itself with exit %d:\n%s", round, cmd.ProcessState.ExitCode(), stderr)
		}

		// Every finished tar is whole and holds the bytes served; one seen
		// before is unchanged.
		for _, name := range finishedTars(t, dir) {
			data, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(data)
			base := filepath.Base(name)
			if old, ok := seen[base]; ok {
				if old != hex.EncodeToString(sum[:]) {
					t.Fatalf("round %d: finished tar %s changed", round, base)
				}
				continue
			}
			seen[base] = hex.EncodeToString(sum[:])
			ss, err := readTar(name)
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			// Only its last sample may carry it past --tar-size.
			if below := int64(len(data)) - 1024 - ss[len(ss)-1].bytesInTar(); below+1024 >= 16<<10 {
				t.Errorf("round %d: finished tar %s held %d bytes before its last sample: it was past --tar-size 16K already", round, base, below+1024)
			}
			for _, smp := range ss {
				if !bytes.Equal(smp.body, bodies[sampleKey(smp.member)]) {
					t.Fatalf("round %d: %s in %s: %d bytes, not the %d served", round, smp.member, base, len(smp.body), len(bodies[sampleKey(smp.member)]))
				}
			}
		}
		if kept.name != "" {
			data, err := os.ReadFile(filepath.Join(dir, kept.name+".part"))
			if errors.Is(err, fs.ErrNotExist) {
				data, err = os.ReadFile(filepath.Join(dir, kept.name))
			}
			if err != nil {
				t.Fatalf("round %d: the unfinished tar of the round before: %v", round, err)
			}
			if !bytes.HasPrefix(data, kept.data) {
				t.Fatalf("round %d: %s no longer starts with the %d bytes of whole samples it held", round, kept.name, len(kept.data))
			}
			kept.name = ""
		}
		parts, _ := filepath.Glob(filepath.Join(dir, "*.tar.part"))
		if len(parts) > 1 {
			t.Fatalf("round %d: %d unfinished tar files: %q", round, len(parts), parts)
		}
		for _, p := range parts {
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			end, _ := sink.ScanTar(bytes.NewReader(data), int64(len(data)), func(sink.StoredSample) {})
			if end < int64(len(data)) {
				cut++ // a sample cut short, or the end-of-archive blocks of a tar not yet renamed
			}
			kept.name, kept.data = strings.TrimSuffix(filepath.Base(p), ".part"), data[:end]
		}
		if len(stagingFiles(t, dir)) > 0 {
			staged++
		}
	}
	storedBefore := len(storedSamples(t, dir))
	t.Logf("%d rounds: %d killed mid-run (%d of them at a random moment from the start), %d finished tars holding %d samples, %d requests; "+
		"%d kills left an unfinished tar with bytes past its last whole sample, %d a staging file",
		rounds, kills, byTime, len(seen), storedBefore, s.TotalRequests(), cut, staged)
	if kills != rounds {
		t.Errorf("only %d of %d rounds were killed before haul ended", kills, rounds)
	}

	// The last run completes the list.
	releaseOnce.Do(func() { close(release) })
	r := runHaul(t, nil, append(args, "--manifest", "-")...)
	wantCode(t, r, exitOK)
	got := storedSamples(t, dir)
	for key, body := range bodies {
		if smp, ok := got[key]; !ok {
			t.Errorf("no sample %s", key)
		} else if !bytes.Equal(smp.body, body) {
			t.Errorf("%s in %s: %d bytes, not the %d served", smp.member, smp.tar, len(smp.body), len(body))
		}
	}
	if len(got) != entries {
		t.Errorf("%d samples, want %d", len(got), entries)
	}
	man, _ := tarManifest(t, r.stdout)
	for i, u := range lines {
		m := man[u]
		if st := m.str("status"); st != "ok" && st != "skipped" {
			t.Errorf("manifest line %s", jsonLine(m))
			continue
		}
		checkStoredLine(t, m, m.str("status"), got[fmt.Sprintf("%09d", i)])
	}
	tars := finishedTars(t, dir)
	for i, name := range tars {
		if want := fmt.Sprintf("%05d.tar", i); filepath.Base(name) != want {
			t.Errorf("tar file %d is %s, want %s: the numbers have a gap", i, filepath.Base(name), want)
			break
		}
	}
	for _, name := range tars {
		sum, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.Sum256(sum)
		if old, ok := seen[filepath.Base(name)]; ok && old != hex.EncodeToString(h[:]) {
			t.Errorf("finished tar %s changed in the last run", filepath.Base(name))
		}
	}
	noPartTars(t, dir)
	noStagingFiles(t, dir)
	if !checkPythonReads(t, tars) {
		t.Log("no python3 here: Python's tarfile not tried")
	}
	checkTarLists(t, tars)
}
