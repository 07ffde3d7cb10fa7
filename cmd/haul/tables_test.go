package main

// Dataset lists: compressed lists (gzip, zstd) on stdin and from a file,
// CSV, TSV and Parquet tables with their other columns carried into the
// manifest, and --shard over a table. (The usage errors and a CSV run are in
// testdata/script/tables.txtar.)

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/parquet-go/parquet-go"

	"github.com/haul/haul/download"
	"github.com/haul/haul/download/downloadtest"
	"github.com/haul/haul/internal/parquettest"
	"github.com/haul/haul/internal/testutil"
)

func gzipBytes(t *testing.T, s string) []byte {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write([]byte(s))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func zstdBytes(t *testing.T, s string) []byte {
	t.Helper()
	w, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	return w.EncodeAll([]byte(s), nil)
}

func writeFile(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// manifestObjects parses a manifest into one map per line.
func manifestObjects(t *testing.T, data string) []map[string]json.RawMessage {
	t.Helper()
	var out []map[string]json.RawMessage
	for _, s := range strings.Split(strings.TrimSuffix(data, "\n"), "\n") {
		if s == "" {
			continue
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			t.Fatalf("manifest line %q: %v", s, err)
		}
		out = append(out, m)
	}
	return out
}

func rawString(m map[string]json.RawMessage, k string) string {
	var s string
	json.Unmarshal(m[k], &s)
	return s
}

// gzip and zstd lists are read from stdin and from a file, text lists and
// tables alike, whatever their name.
func TestE2ECompressedLists(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	b := [][]byte{testutil.Payload(3001, 700), testutil.Payload(3002, 900)}
	u := []string{s.Add("/z/0.bin", b[0]), s.Add("/z/1.bin", b[1])}
	want := map[string][]byte{hostDir(s) + "/z/0.bin": b[0], hostDir(s) + "/z/1.bin": b[1]}
	text := u[0] + "\n# a comment\n" + u[1] + "\n"
	csv := "url,caption\n" + u[0] + ",zero\n" + u[1] + ",one\n"
	for _, tt := range []struct {
		name  string
		stdin []byte
		file  string // a file of this name holds data
		data  []byte
		args  []string
	}{
		{name: "gzip text on stdin", stdin: gzipBytes(t, text)},
		{name: "zstd text on stdin with -i -", stdin: zstdBytes(t, text), args: []string{"-i", "-"}},
		{name: "gzip text from a file", file: "list.txt.gz", data: gzipBytes(t, text)},
		{name: "zstd text from a file named as plain", file: "list.txt", data: zstdBytes(t, text)},
		{name: "gzip csv from a file", file: "list.csv.gz", data: gzipBytes(t, csv)},
		{name: "zstd csv on stdin", stdin: zstdBytes(t, csv), args: []string{"--input-format", "csv"}},
		{name: "zstd tsv from a file named without extension", file: "list", data: zstdBytes(t, strings.ReplaceAll(csv, ",", "\t")),
			args: []string{"--input-format", "tsv"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "out")
			args := append([]string{"-d", dir, "--manifest", "-"}, tt.args...)
			var stdin *bytes.Reader
			if tt.stdin != nil {
				stdin = bytes.NewReader(tt.stdin)
			} else {
				args = append(args, "-i", writeFile(t, tt.file, tt.data))
				stdin = bytes.NewReader(nil)
			}
			r := runHaul(t, stdin, args...)
			wantCode(t, r, 0)
			checkFiles(t, dir, want)
			ms := manifestObjects(t, r.stdout)
			if len(ms) != 2 {
				t.Fatalf("%d manifest lines, want 2:\n%s", len(ms), r.stdout)
			}
			if strings.Contains(tt.name, "csv") || strings.Contains(tt.name, "tsv") {
				for _, m := range ms {
					if got := string(m["meta"]); got != `{"caption":"zero"}` && got != `{"caption":"one"}` {
						t.Errorf("meta %s", got)
					}
				}
			}
		})
	}
}

// A compressed list that does not decompress from its start is an
// unreadable input (exit 2, naming it, before anything is done); one cut
// off midway fails the run (exit 3) after the entries before the cut.
func TestE2EBrokenCompressedLists(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	first := s.Add("/first.bin", []byte("first"))
	// Comments of random bytes: the compressed stream stays long, so a cut in
	// its middle falls well after the first line.
	var list strings.Builder
	list.WriteString(first + "\n")
	for i := range 20000 {
		fmt.Fprintf(&list, "# %x\n", testutil.Payload(uint64(i), 40))
	}
	list.WriteString(s.Add("/last.bin", []byte("last")) + "\n")
	gz := gzipBytes(t, list.String())
	zs := zstdBytes(t, list.String())

	t.Run("garbage after the gzip magic, from a file", func(t *testing.T) {
		t.Parallel()
		dir := filepath.Join(t.TempDir(), "out")
		name := writeFile(t, "list.gz", append([]byte{0x1f, 0x8b}, "not gzip at all"...))
		r := runHaul(t, nil, "-i", name, "-d", dir)
		wantCode(t, r, 2)
		if want := "haul: " + name + ": not a valid gzip stream (gzip: invalid header)\n"; r.stderr != want {
			t.Errorf("stderr %q, want %q", r.stderr, want)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("--dir was created for an unreadable list: %v", err)
		}
	})
	t.Run("garbage after the zstd magic, on stdin", func(t *testing.T) {
		t.Parallel()
		dir := filepath.Join(t.TempDir(), "out")
		r := runHaul(t, bytes.NewReader(append([]byte{0x28, 0xb5, 0x2f, 0xfd}, "not zstd at all"...)), "-d", dir)
		wantCode(t, r, 2)
		if !strings.Contains(r.stderr, "haul: reading input: standard input: not a valid zstd stream (") {
			t.Errorf("stderr does not name the unreadable list:\n%s", r.stderr)
		}
	})
	for _, tt := range []struct {
		name  string
		data  []byte
		stdin bool
	}{
		{"gzip cut off, from a file", gz[:len(gz)/2], false},
		{"zstd cut off, on stdin", zs[:len(zs)/2], true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "out")
			var r result
			if tt.stdin {
				r = runHaul(t, bytes.NewReader(tt.data), "-d", dir)
			} else {
				r = runHaul(t, nil, "-d", dir, "-i", writeFile(t, "list.gz", tt.data))
			}
			wantCode(t, r, 3)
			if !strings.Contains(r.stderr, ": the list is cut off or damaged after line ") {
				t.Errorf("stderr does not say the list is cut off:\n%s", r.stderr)
			}
			checkFiles(t, dir, map[string][]byte{hostDir(s) + "/first.bin": []byte("first")})
		})
	}
}

// laionRow is a row of the Parquet lists the tests write, in LAION's column
// names.
type laionRow struct {
	URL   *string `parquet:"URL,optional"`
	Text  *string `parquet:"TEXT,optional"`
	ID    int64   `parquet:"SAMPLE_ID"`
	Width *int32  `parquet:"WIDTH,optional"`
	Sim   float64 `parquet:"similarity"`
}

// A LAION-style Parquet list: --col maps URL and SAMPLE_ID, the other
// columns reach the manifest typed; a bad row is named by its number and is
// in the manifest as {"row": N, ...}; a re-run skips what is done.
func TestE2EParquetList(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	var rows []laionRow
	want := map[string][]byte{}
	for i := range 12 {
		p := fmt.Sprintf("/img/%02d.jpg", i)
		b := testutil.Payload(uint64(4000+i), 300+i)
		u := s.Add(p, b)
		r := laionRow{URL: &u, ID: int64(900 + i), Sim: 0.25 * float64(i)}
		if i%2 == 0 {
			txt := fmt.Sprintf("a \"photo\" %d", i)
			r.Text = &txt
		}
		if i != 7 {
			w := int32(100 + i)
			r.Width = &w
		}
		if i == 5 {
			r.URL = nil // row 6: no URL
		} else {
			want[hostDir(s)+p] = b
		}
		rows = append(rows, r)
	}
	list := parquettest.Write(t, "part-00000.parquet", rows, 5, parquet.Compression(&parquet.Zstd))
	dir := filepath.Join(t.TempDir(), "out")
	r := runHaul(t, nil, "-i", list, "-d", dir, "--manifest", "-", "--col", "url=URL", "--col", "key=SAMPLE_ID")
	wantCode(t, r, 1)
	checkFiles(t, dir, want)
	if !strings.Contains(r.stderr, "haul: input row 6: no URL (its url cell is empty)\n") {
		t.Errorf("stderr does not name the bad row:\n%s", r.stderr)
	}
	ms := manifestObjects(t, r.stdout)
	if len(ms) != 12 {
		t.Fatalf("%d manifest lines, want 12:\n%s", len(ms), r.stdout)
	}
	for _, m := range ms {
		if rawString(m, "status") == "invalid" {
			if got := fmt.Sprintf("%s %s %q", m["row"], m["line"], rawString(m, "error")); got != `6  "input row 6: no URL (its url cell is empty)"` {
				t.Errorf("invalid row's manifest line: %s", got)
			}
			continue
		}
		var i int
		fmt.Sscanf(rawString(m, "key"), "9%d", &i)
		text := "null"
		if i%2 == 0 {
			text = fmt.Sprintf(`"a \"photo\" %d"`, i)
		}
		width := fmt.Sprint(100 + i)
		if i == 7 {
			width = "null"
		}
		wantMeta := fmt.Sprintf(`{"TEXT":%s,"WIDTH":%s,"similarity":%v}`, text, width, 0.25*float64(i))
		if rawString(m, "status") != "ok" || string(m["meta"]) != wantMeta {
			t.Errorf("row with key %s: status %s, meta %s, want ok and %s", m["key"], m["status"], m["meta"], wantMeta)
		}
	}
	// Again: everything done is skipped, without a request.
	r = runHaul(t, nil, "-i", list, "-d", dir, "--manifest", "-", "--col", "url=URL", "--col", "key=SAMPLE_ID")
	wantCode(t, r, 1)
	if n := strings.Count(r.stdout, `"status":"skipped"`); n != 11 {
		t.Errorf("a re-run skipped %d entries, want 11:\n%s", n, r.stdout)
	}
	if n := s.Requests("/img/00.jpg"); n != 1 {
		t.Errorf("/img/00.jpg requested %d times over two runs, want 1", n)
	}
	// Parquet is read from its end: standard input will not do.
	pq, _ := os.ReadFile(list)
	r = runHaul(t, bytes.NewReader(pq), "-d", filepath.Join(t.TempDir(), "out2"))
	wantCode(t, r, 2)
	if !strings.Contains(r.stderr, "standard input: a Parquet file, read as lines: give it with -i FILE.parquet or --input-format parquet") {
		t.Errorf("a Parquet file on stdin is not named as such:\n%s", r.stderr)
	}
}

// --shard over a table keeps the rows whose URL is in the shard, as over a
// text list: each row fetched by one shard, with its meta; a bad row is
// reported by every shard.
func TestE2ETableShards(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	const n, shards = 120, 3
	var csv strings.Builder
	csv.WriteString("id,URL\n")
	want := map[string][]byte{}
	for i := range n {
		p := fmt.Sprintf("/t/%03d.txt", i)
		b := testutil.Payload(uint64(5000+i), 50+i)
		fmt.Fprintf(&csv, "%d,%s\n", i, s.Add(p, b))
		want[hostDir(s)+p] = b
		if i == 60 {
			csv.WriteString("bad,ftp://127.0.0.1/x\n") // row 62
		}
	}
	list := writeFile(t, "list.csv", []byte(csv.String()))
	dir := filepath.Join(t.TempDir(), "shared")
	var wg sync.WaitGroup
	res := make([]result, shards)
	for k := range shards {
		wg.Go(func() {
			res[k] = runHaul(t, nil, "-i", list, "-d", dir, "--shard", fmt.Sprintf("%d/%d", k, shards), "--manifest", "-")
		})
	}
	wg.Wait()
	seen := map[string]int{}
	for k := range shards {
		wantCode(t, res[k], 1)
		if !strings.Contains(res[k].stderr, "haul: input row 62 (line 63): unsupported scheme \"ftp\"") {
			t.Errorf("shard %d does not report the bad row:\n%s", k, res[k].stderr)
		}
		for _, m := range manifestObjects(t, res[k].stdout) {
			if rawString(m, "status") == "invalid" {
				continue
			}
			u := rawString(m, "url")
			seen[u]++
			if got := download.ShardOf(u, shards); got != k {
				t.Errorf("shard %d fetched %s of shard %d", k, u, got)
			}
			if !strings.HasPrefix(string(m["meta"]), `{"id":"`) {
				t.Errorf("shard %d: %s has meta %s", k, u, m["meta"])
			}
		}
	}
	if len(seen) != n {
		t.Errorf("%d rows fetched over the shards, want %d", len(seen), n)
	}
	for u, c := range seen {
		if c != 1 {
			t.Errorf("%s fetched by %d shards", u, c)
		}
	}
	checkFiles(t, dir, want)
}

// --checksums reads the list twice (once for its names, once for the run):
// a gzip table on stdin (spooled) and a Parquet file are read the same both
// times.
func TestE2ETablesWithChecksums(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	b1, b2 := testutil.Payload(6001, 500), testutil.Payload(6002, 600)
	u1, u2 := s.Add("/c/one.bin", b1), s.Add("/c/two.bin", b2)
	// two.bin's published hash is stale: it fails, one.bin is verified.
	sums := writeFile(t, "SHA256SUMS", []byte(testutil.SHA256Hex(b1)+"  one.bin\n"+testutil.SHA256Hex(b1)+"  two.bin\n"))
	check := func(t *testing.T, r result) {
		t.Helper()
		wantCode(t, r, 1)
		for _, m := range manifestObjects(t, r.stdout) {
			st, u := rawString(m, "status"), rawString(m, "url")
			if u == u1 && (st != "ok" || rawString(m, "sha256") != testutil.SHA256Hex(b1)) ||
				u == u2 && (st != "failed" || !strings.Contains(rawString(m, "error"), "sha256")) {
				t.Errorf("%s: %s %s %s", u, st, m["sha256"], m["error"])
			}
			if string(m["meta"]) != `{"n":"1"}` && string(m["meta"]) != `{"n":"2"}` {
				t.Errorf("%s: meta %s", u, m["meta"])
			}
		}
	}
	t.Run("gzip CSV on stdin", func(t *testing.T) {
		t.Parallel()
		csv := gzipBytes(t, "URL,n\n"+u1+",1\n"+u2+",2\n")
		check(t, runHaul(t, bytes.NewReader(csv), "--input-format", "csv", "--checksums", sums,
			"-d", filepath.Join(t.TempDir(), "out"), "--manifest", "-"))
	})
	t.Run("Parquet file", func(t *testing.T) {
		t.Parallel()
		type row struct {
			URL string `parquet:"url"`
			N   string `parquet:"n"`
		}
		name := filepath.Join(t.TempDir(), "l.parquet")
		f, err := os.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		w := parquet.NewGenericWriter[row](f)
		w.Write([]row{{u1, "1"}, {u2, "2"}})
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		f.Close()
		check(t, runHaul(t, nil, "-i", name, "--checksums", sums, "-d", filepath.Join(t.TempDir(), "out"), "--manifest", "-"))
	})
}
