package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/haul/haul/download/downloadtest"
	"github.com/haul/haul/internal/s3test"
	"github.com/haul/haul/internal/testutil"
	"github.com/haul/haul/sink"
)

// bucketTars copies the tar objects under prefix to a directory and reads
// each whole (readTar): the samples by key, and each tar's ETag.
func bucketTars(t *testing.T, store *s3test.Server, prefix string) (samples map[string][]tarSample, etags map[string]string, files []string) {
	t.Helper()
	dir := t.TempDir()
	samples, etags = map[string][]tarSample{}, map[string]string{}
	for _, key := range store.Keys(t, "data", prefix) {
		if !strings.HasSuffix(key, ".tar") || strings.Contains(key, sink.TarMetaDir) {
			continue
		}
		name := filepath.Join(dir, filepath.Base(key))
		if err := os.WriteFile(name, store.Get(t, "data", key), 0o644); err != nil {
			t.Fatal(err)
		}
		ss, err := readTar(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range ss {
			samples[sampleKey(s.member)] = append(samples[sampleKey(s.member)], s)
		}
		oi, err := store.Client.StatObject(context.Background(), "data", key, minio.StatObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		etags[filepath.Base(key)] = oi.ETag
		files = append(files, name)
	}
	return samples, etags, files
}

// gatedTarList serves 200 bodies of 100 KiB and lists them with their
// sha256=; the last 20 are held until open is closed (a run cannot end the
// list before).
func gatedTarList(t *testing.T, src *downloadtest.Server, open <-chan struct{}) (list string, bodies map[string][]byte) {
	var lines []string
	bodies = map[string][]byte{}
	for i := range 200 {
		body := testutil.Payload(uint64(9000+i), 100<<10+i)
		path := fmt.Sprintf("/img/%d.png", i)
		var u string
		if i < 180 {
			u = src.Add(path, body)
		} else {
			// Held until the re-run: the killed run cannot end the list.
			u = src.Handle(path, gatedBody(body, fmt.Sprintf(`"g-%d"`, i), 0, open))
		}
		// Checked by the re-run: in the unfinished tar, against the
		// SHA-256 recorded as it was stored.
		lines = append(lines, fmt.Sprintf("%s sha256=%x", u, sha256.Sum256(body)))
		bodies[fmt.Sprintf("%09d", i)] = body
	}
	return writeList(t, lines...), bodies
}

// A list of 200 bodies of 100 KiB, with their sha256=, goes into tar objects of 12 MiB, each
// uploaded in parts of 5 MiB. A run killed (SIGKILL) once the first tar is
// complete and the second has a part stored is continued by the re-run:
// every entry lands once across the tars, the complete tar is not
// rewritten, the entries it holds are not fetched again, and no upload is
// left in progress once the list ends.
func TestE2ETarIntoBucketKilledHalfwayContinuesFromItsLastPart(t *testing.T) {
	store := s3test.Start(t)
	store.Bucket(t, "data")
	src := downloadtest.New(t)
	open := make(chan struct{})
	list, bodies := gatedTarList(t, src, open)
	args := []string{"-q", "--tar", "--tar-size", "12M", "--tar-part-size", "5M", "-i", list, "-d", "s3://data/ds"}

	ctx, cancel := haulContext(t)
	defer cancel()
	h := spawnHaulEnv(t, ctx, cancel, s3Env(store, store.Endpoint), args...)
	h.until(t, func() error {
		if !slices.Contains(store.Keys(t, "data", "ds/"), "ds/00000.tar") {
			return fmt.Errorf("ds/00000.tar not complete yet")
		}
		// The record comes after its part: both stored.
		if len(store.Keys(t, "data", "ds/"+sink.TarMetaDir+"00001.tar.part00001.json")) == 0 {
			return fmt.Errorf("ds/00001.tar: part 1 not recorded yet")
		}
		return nil
	})
	h.stop(syscall.SIGKILL)

	before, etags, _ := bucketTars(t, store, "ds/")
	if len(etags) != 1 || len(before) < 100 {
		t.Fatalf("after the kill: %d samples in tars %v, want 00000.tar complete", len(before), etags)
	}
	if n := storedParts(t, store, "data", "ds/00001.tar"); n < 5<<20 {
		t.Fatalf("after the kill: ds/00001.tar has %d bytes in parts, want a part of 5 MiB", n)
	}
	// --dry-run reads what the bucket holds and changes nothing: the
	// unfinished tar is neither continued nor given up.
	px := store.Proxy(t)
	reqs := src.TotalRequests()
	r := runHaulEnv(t, s3Env(store, px.Endpoint), nil, append(slices.Clone(args), "--dry-run")...)
	wantCode(t, r, exitFailed)
	if n := px.Count(http.MethodPut, nil) + px.Count(http.MethodPost, nil) + px.Count(http.MethodDelete, nil); n != 0 {
		t.Errorf("--dry-run: %d PUT, POST or DELETE requests to the store, want none", n)
	}
	if n := src.TotalRequests() - reqs; n != 0 {
		t.Errorf("--dry-run: %d requests to the origin, want none", n)
	}
	planned := strings.Count(r.stdout, "\n")
	if planned > 200-len(before)-45 {
		t.Errorf("--dry-run plans %d entries; %d are in 00000.tar, about 50 in 00001.tar's first part", planned, len(before))
	}

	close(open)
	reqs = src.TotalRequests()
	r = runHaulEnv(t, s3Env(store, store.Endpoint), nil, args...)
	wantCode(t, r, exitOK)
	after, etags2, files := bucketTars(t, store, "ds/")
	for key, body := range bodies {
		if ss := after[key]; len(ss) != 1 || !bytes.Equal(ss[0].body, body) {
			t.Errorf("sample %s: %d copies in the tars, want one with its body", key, len(ss))
		}
	}
	if len(after) != len(bodies) {
		t.Errorf("%d samples in the tars, want %d", len(after), len(bodies))
	}
	if etags2["00000.tar"] != etags["00000.tar"] {
		t.Errorf("00000.tar rewritten: ETag %s, then %s", etags["00000.tar"], etags2["00000.tar"])
	}
	if len(etags2) < 2 {
		t.Errorf("tars %v: want 00001.tar completed at the list's end", etags2)
	}
	// What 00000.tar and the stored part of 00001.tar hold is not fetched
	// again: at least the part's 5 MiB, about 50 samples.
	if n := src.TotalRequests() - reqs; n != planned {
		t.Errorf("the re-run made %d requests, want one for each of the %d entries --dry-run planned", n, planned)
	}
	if in := after["000000005"]; len(in) == 1 && in[0].tar != "00000.tar" {
		t.Errorf("sample 5 in %s, want 00000.tar", in[0].tar)
	}
	store.CheckDone(t, "data", "")
	for _, k := range store.Keys(t, "data", "ds/"+sink.TarMetaDir) {
		if !strings.HasSuffix(k, ".index.json") {
			t.Errorf("%s left behind", k)
		}
	}
	checkPythonReads(t, files)
}

func TestE2ETarIntoBucketUsageErrors(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--tar-part-size", "8M", "-d", "s3://data"}, "--tar-part-size needs --tar"},
		{[]string{"--tar", "--tar-part-size", "8M", "-d", "out"}, "--tar-part-size needs -d s3://"},
		{[]string{"--tar", "--tar-part-size", "1M", "-d", "s3://data"}, `--tar-part-size "1M"`},
		{[]string{"--tar", "--tar-part-size", "lots", "-d", "s3://data"}, `--tar-part-size "lots"`},
	}
	for _, c := range cases {
		args := append(slices.Clone(c.args), "http://127.0.0.1:9/a")
		r := runHaulEnv(t, nil, nil, args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, c.want) {
			t.Errorf("haul %q: exit %d, stderr %q; want %d and %q", args, r.code, r.stderr, exitUsage, c.want)
		}
	}
}

// Ctrl-C stores the bytes past the unfinished tar's last part as its tail:
// the re-run fetches only the entries the first run did not report stored,
// and continues the tar from there.
func TestE2ETarIntoBucketInterruptedContinuesFromItsTail(t *testing.T) {
	store := s3test.Start(t)
	store.Bucket(t, "data")
	src := downloadtest.New(t)
	open := make(chan struct{})
	list, bodies := gatedTarList(t, src, open)
	man := filepath.Join(t.TempDir(), "m.jsonl")
	args := []string{"-q", "--tar", "--tar-size", "12M", "--tar-part-size", "5M", "-i", list, "-d", "s3://data/ds"}

	ctx, cancel := haulContext(t)
	defer cancel()
	h := spawnHaulEnv(t, ctx, cancel, s3Env(store, store.Endpoint), append(slices.Clone(args), "--manifest", man)...)
	h.until(t, func() error {
		if !slices.Contains(store.Keys(t, "data", "ds/"), "ds/00000.tar") {
			return fmt.Errorf("ds/00000.tar not complete yet")
		}
		return nil
	})
	if code := h.stop(syscall.SIGINT); code != exitInterrupted {
		t.Fatalf("exit %d after Ctrl-C, want %d:\n%s", code, exitInterrupted, h.stderr)
	}
	if len(store.Keys(t, "data", "ds/"+sink.TarMetaDir+"00001.tar.tail")) != 1 {
		t.Fatalf("no tail object for ds/00001.tar: %q", store.Keys(t, "data", "ds/"))
	}
	data, err := os.ReadFile(man)
	if err != nil {
		t.Fatal(err)
	}
	lines, _ := tarManifest(t, string(data))
	ok := 0
	for _, m := range lines {
		if m.str("status") == "ok" {
			ok++
		}
	}
	close(open)
	reqs := src.TotalRequests()
	r := runHaulEnv(t, s3Env(store, store.Endpoint), nil, args...)
	wantCode(t, r, exitOK)
	if n := src.TotalRequests() - reqs; n != 200-ok {
		t.Errorf("the re-run made %d requests; the first run stored %d of 200", n, ok)
	}
	after, _, _ := bucketTars(t, store, "ds/")
	for key, body := range bodies {
		if ss := after[key]; len(ss) != 1 || !bytes.Equal(ss[0].body, body) {
			t.Errorf("sample %s: %d copies in the tars, want one with its body", key, len(ss))
		}
	}
	store.CheckDone(t, "data", "")
}
