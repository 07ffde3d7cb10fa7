// Command slurmcheck is scripts/slurm-test.sh's server and checker: it serves
// generated files on 127.0.0.1 (optionally slowly), logs every response, and
// checks what a sharded haul run left in a directory against the list, the
// manifests and the log. It computes shards itself with hash/fnv, as docs/reference.md
// defines them, not with haul's code.
//
//	slurmcheck serve -dir WWW -gen N -list LIST -log LOG [-rate BYTES/S] [-min B -max B]
//	    writes N files into WWW and LIST (URL sha256=HEX size=N), prints the base URL
//	    once listening, then serves; LOG gets one JSON line per finished response.
//	slurmcheck partial -list LIST -dir DIR -shard K/N [-min-bytes B]
//	    exits 0 when DIR holds a partial file (NAME.part of at least B bytes) of shard K.
//	slurmcheck snapshot -list LIST -dir DIR -log LOG -shard K/N > SNAP
//	    records which files of shard K are at their final names, and the log's length.
//	slurmcheck check -list LIST -dir DIR -log LOG -shards N [-resumed SNAP]
//	    every listed file present once and byte-correct (sha256), nothing else but the
//	    manifests; manifest-K.jsonl holds exactly shard K's entries, each once, ok or
//	    skipped; without -resumed every file was requested exactly once; with it, the
//	    shard in SNAP fetched after it only what it lacked then, resuming with Range.
//	    Prints the figures on one line.
package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("slurmcheck: ")
	if len(os.Args) < 2 {
		log.Fatal("want serve, partial, snapshot or check")
	}
	cmd, args := os.Args[1], os.Args[2:]
	fl := flag.NewFlagSet(cmd, flag.ExitOnError)
	dir := fl.String("dir", "", "directory (served, or haul's -d)")
	listName := fl.String("list", "", "the list")
	logName := fl.String("log", "", "the response log")
	gen := fl.Int("gen", 0, "files to generate")
	minSize := fl.Int("min", 1, "smallest generated file")
	maxSize := fl.Int("max", 64<<10, "largest generated file")
	rate := fl.Int64("rate", 0, "bytes per second per response (0: no limit)")
	shard := fl.String("shard", "", "K/N")
	shards := fl.Int("shards", 0, "N")
	minBytes := fl.Int64("min-bytes", 64<<10, "partial: least size of the partial file")
	resumed := fl.String("resumed", "", "check: the snapshot taken before the shard was restarted")
	fl.Parse(args)
	switch cmd {
	case "serve":
		serve(*dir, *listName, *logName, *gen, *minSize, *maxSize, *rate)
	case "partial":
		k, n := parseShard(*shard)
		if !partial(readList(*listName), *dir, k, n, *minBytes) {
			os.Exit(1)
		}
	case "snapshot":
		k, n := parseShard(*shard)
		snapshot(readList(*listName), *dir, *logName, k, n)
	case "check":
		if !check(readList(*listName), *dir, *logName, *shards, *resumed) {
			os.Exit(1)
		}
	default:
		log.Fatalf("unknown command %q", cmd)
	}
}

func parseShard(s string) (k, n int) {
	a, b, ok := strings.Cut(s, "/")
	k, err1 := strconv.Atoi(a)
	n, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || n < 1 || k < 0 || k >= n {
		log.Fatalf("-shard %q: want K/N", s)
	}
	return k, n
}

// shardOf is --shard's function as documented: FNV-1a 64 of the URL as
// written, modulo n.
func shardOf(u string, n int) int {
	h := fnv.New64a()
	h.Write([]byte(u))
	return int(h.Sum64() % uint64(n))
}

// ---- serve

// entry is one response as the log records it.
type entry struct {
	Path   string `json:"path"`
	Range  string `json:"range,omitempty"`
	Status int    `json:"status"`
	Bytes  int64  `json:"bytes"` // body bytes written
}

func serve(dir, listName, logName string, n, minSize, maxSize int, rate int64) {
	if dir == "" || listName == "" || logName == "" || n < 1 {
		log.Fatal("serve needs -dir, -list, -log and -gen")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	var list strings.Builder
	for i := range n {
		name := fmt.Sprintf("d%d/f%04d.bin", i%8, i)
		var seed [32]byte
		binary.LittleEndian.PutUint64(seed[:], uint64(i))
		src := rand.NewChaCha8(seed)
		b := make([]byte, minSize+rand.New(src).IntN(maxSize-minSize+1))
		src.Read(b)
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			log.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			log.Fatal(err)
		}
		sum := sha256.Sum256(b)
		fmt.Fprintf(&list, "%s/%s sha256=%s size=%d\n", base, name, hex.EncodeToString(sum[:]), len(b))
	}
	if err := os.WriteFile(listName, []byte(list.String()), 0o644); err != nil {
		log.Fatal(err)
	}
	lf, err := os.OpenFile(logName, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		log.Fatal(err)
	}
	var mu sync.Mutex
	files := http.FileServer(http.Dir(dir))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cw := &countingWriter{ResponseWriter: w, rate: rate, status: 200}
		files.ServeHTTP(cw, r)
		b, _ := json.Marshal(entry{Path: r.URL.Path, Range: r.Header.Get("Range"), Status: cw.status, Bytes: cw.n})
		mu.Lock()
		lf.Write(append(b, '\n'))
		mu.Unlock()
	})
	fmt.Println(base) // after Listen: a reader of this line can connect at once
	log.Fatal(http.Serve(ln, h))
}

// countingWriter counts the body bytes written and, with rate, writes them at
// that many bytes per second, in slices of 8 KiB.
type countingWriter struct {
	http.ResponseWriter
	rate   int64
	status int
	n      int64
}

func (c *countingWriter) WriteHeader(code int) {
	c.status = code
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(b []byte) (int, error) {
	written := 0
	for len(b) > 0 {
		chunk := b
		if c.rate > 0 && len(chunk) > 8<<10 {
			chunk = chunk[:8<<10]
		}
		m, err := c.ResponseWriter.Write(chunk)
		written += m
		c.n += int64(m)
		if err != nil {
			return written, err
		}
		if c.rate > 0 {
			if f, ok := c.ResponseWriter.(http.Flusher); ok {
				f.Flush()
			}
			time.Sleep(time.Duration(int64(m) * int64(time.Second) / c.rate))
		}
		b = b[m:]
	}
	return written, nil
}

// ---- the list and the directory

type listed struct {
	url, path, rel string // rel: where haul's tree layout puts it under -d
	sha            string
	size           int64
}

func readList(name string) []listed {
	f, err := os.Open(name)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	var out []listed
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		u, err := url.Parse(fields[0])
		if err != nil {
			log.Fatal(err)
		}
		l := listed{url: fields[0], path: u.Path, rel: strings.Replace(u.Host, ":", "_", 1) + u.Path}
		for _, kv := range fields[1:] {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "sha256":
				l.sha = v
			case "size":
				l.size, _ = strconv.ParseInt(v, 10, 64)
			}
		}
		out = append(out, l)
	}
	if err := sc.Err(); err != nil {
		log.Fatal(err)
	}
	return out
}

func partial(list []listed, dir string, k, n int, minBytes int64) bool {
	for _, l := range list {
		if shardOf(l.url, n) != k {
			continue
		}
		if fi, err := os.Stat(filepath.Join(dir, l.rel+".part")); err == nil && fi.Size() >= minBytes {
			return true
		}
	}
	return false
}

// snap is what snapshot records.
type snap struct {
	K, N     int
	LogLines int
	Done     []string // paths of shard K at their final names
	Partial  []string // paths of shard K with a NAME.part
}

func snapshot(list []listed, dir, logName string, k, n int) {
	s := snap{K: k, N: n, LogLines: len(readLog(logName))}
	for _, l := range list {
		if shardOf(l.url, n) != k {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, l.rel)); err == nil {
			s.Done = append(s.Done, l.path)
		}
		if _, err := os.Stat(filepath.Join(dir, l.rel+".part")); err == nil {
			s.Partial = append(s.Partial, l.path)
		}
	}
	json.NewEncoder(os.Stdout).Encode(s)
}

func readLog(name string) []entry {
	b, err := os.ReadFile(name)
	if err != nil {
		log.Fatal(err)
	}
	var out []entry
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" {
			continue
		}
		var e entry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			log.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, e)
	}
	return out
}

// ---- check

func check(list []listed, dir, logName string, n int, resumed string) bool {
	ok := true
	fail := func(format string, args ...any) {
		if ok {
			fmt.Fprintln(os.Stderr, "slurmcheck: FAIL:")
		}
		ok = false
		fmt.Fprintf(os.Stderr, "  "+format+"\n", args...)
	}
	if n < 1 {
		log.Fatal("check needs -shards N")
	}

	// Every file present and right; nothing else but the manifests.
	want := map[string]listed{}
	var bytes int64
	for _, l := range list {
		want[l.rel] = l
		bytes += l.size
		b, err := os.ReadFile(filepath.Join(dir, l.rel))
		if err != nil {
			fail("%s: %v", l.rel, err)
			continue
		}
		if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != l.sha {
			fail("%s: %d bytes whose sha256 is not the list's", l.rel, len(b))
		}
	}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if _, listedFile := want[filepath.ToSlash(rel)]; !listedFile && !strings.HasPrefix(rel, "manifest-") {
			fail("unexpected file %s", rel)
		}
		return nil
	})

	// Each manifest holds its shard's entries, each URL in one manifest once.
	seen := map[string]int{}
	statuses := map[string]int{}
	for k := range n {
		name := filepath.Join(dir, fmt.Sprintf("manifest-%d.jsonl", k))
		b, err := os.ReadFile(name)
		if err != nil {
			fail("manifest of task %d: %v", k, err)
			continue
		}
		for i, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			var m struct {
				URL, Status string
				Error       *string
			}
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				fail("manifest-%d.jsonl line %d: %v", k, i+1, err)
				continue
			}
			seen[m.URL]++
			statuses[m.Status]++
			if got := shardOf(m.URL, n); got != k {
				fail("manifest-%d.jsonl lists %s, which is in shard %d", k, m.URL, got)
			}
			if m.Status != "ok" && m.Status != "skipped" {
				fail("manifest-%d.jsonl: %s %s", k, m.URL, m.Status)
			}
		}
	}
	for _, l := range list {
		if seen[l.url] != 1 {
			fail("%s is in %d manifests, want 1", l.url, seen[l.url])
		}
	}

	// What the server was asked.
	reqs := readLog(logName)
	perPath := map[string][]entry{}
	for _, e := range reqs {
		perPath[e.Path] = append(perPath[e.Path], e)
	}
	var sent int64
	for _, e := range reqs {
		sent += e.Bytes
	}
	figures := fmt.Sprintf("%d shards, %d files (%d bytes), manifests: %d ok, %d skipped; server: %d requests, %d body bytes",
		n, len(list), bytes, statuses["ok"], statuses["skipped"], len(reqs), sent)
	if resumed == "" {
		for _, l := range list {
			if got := perPath[l.path]; len(got) != 1 || got[0].Status != 200 || got[0].Bytes != l.size {
				fail("%s: requests %+v, want one 200 of %d bytes", l.path, got, l.size)
			}
		}
		fmt.Println(figures)
		return ok
	}

	b, err := os.ReadFile(resumed)
	if err != nil {
		log.Fatal(err)
	}
	var s snap
	if err := json.Unmarshal(b, &s); err != nil {
		log.Fatal(err)
	}
	if s.N != n {
		log.Fatalf("the snapshot is of %d shards, not %d", s.N, n)
	}
	done := map[string]bool{}
	for _, p := range s.Done {
		done[p] = true
	}
	shardPaths := map[string]bool{}
	for _, l := range list {
		shardPaths[l.path] = shardOf(l.url, n) == s.K
	}
	// What the restarted shard asked for (the other shards may still be
	// running too).
	after := map[string][]entry{}
	var afterBytes, missing int64
	ranged, afterReqs := 0, 0
	for _, e := range reqs[s.LogLines:] {
		if !shardPaths[e.Path] {
			continue
		}
		after[e.Path] = append(after[e.Path], e)
		afterBytes += e.Bytes
		afterReqs++
		if e.Range != "" && e.Status == http.StatusPartialContent {
			ranged++
		}
	}
	inShard := 0
	for _, l := range list {
		if shardOf(l.url, n) != s.K {
			if got := perPath[l.path]; len(got) != 1 || got[0].Status != 200 {
				fail("%s (shard %d, not restarted): requests %+v, want one 200", l.path, shardOf(l.url, n), got)
			}
			continue
		}
		inShard++
		switch a := after[l.path]; {
		case done[l.path] && len(a) > 0:
			fail("%s was done before the restart and was fetched again: %+v", l.path, a)
		case !done[l.path] && len(a) == 0:
			fail("%s was not done before the restart and was not requested after it", l.path)
		case !done[l.path]:
			missing += l.size
		}
	}
	if len(s.Done) == 0 || len(s.Done) == inShard {
		fail("%d of the %d files of shard %d were done when it was stopped: not mid-run", len(s.Done), inShard, s.K)
	}
	if afterBytes > missing {
		fail("after the restart the server sent %d bytes, more than the %d the shard lacked", afterBytes, missing)
	}
	switch {
	case len(s.Partial) == 0:
		fail("no partial file of shard %d at the restart: resuming was not tried", s.K)
	case ranged == 0:
		fail("%d partial files at the restart, and no Range request answered 206 after it", len(s.Partial))
	}
	fmt.Printf("%s; shard %d: %d files, %d done and %d partial at the restart, then %d requests (%d resumed with Range, 206), %d bytes of the %d it lacked\n",
		figures, s.K, inShard, len(s.Done), len(s.Partial), afterReqs, ranged, afterBytes, missing)
	return ok
}
