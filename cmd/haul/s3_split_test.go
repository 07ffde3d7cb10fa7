package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/haul/haul/download/downloadtest"
	"github.com/haul/haul/internal/s3test"
	"github.com/haul/haul/internal/testutil"
)

// slowFirst serves body with ranges (If-Range on etag). A request without
// Range gets fast bytes up to fast, then slow ones (16 KiB every 20 ms) up
// to hold, where it waits for open (or the client to go): a first
// connection slow enough to be split, held inside a part. Range requests
// (the pieces, a resume) are served at once.
func slowFirst(body []byte, etag string, fast, hold int64, open <-chan struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", etag)
		if r.Header.Get("Range") != "" {
			http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
			return
		}
		w.Header().Set("Accept-Ranges", "bytes")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		if _, err := w.Write(body[:fast]); err != nil {
			return
		}
		for at := fast; at < hold; at += 16 << 10 {
			select {
			case <-time.After(20 * time.Millisecond):
			case <-r.Context().Done():
				return
			}
			if _, err := w.Write(body[at:min(at+16<<10, hold)]); err != nil {
				return
			}
			http.NewResponseController(w).Flush()
		}
		select {
		case <-open:
		case <-r.Context().Done():
			return
		}
		w.Write(body[hold:])
	})
}

// partNumbers lists the parts the upload in progress of key has stored.
func partNumbers(t *testing.T, store *s3test.Server, bucket, key string) []int {
	res, err := store.Client.ListMultipartUploads(t.Context(), bucket, key, "", "", "", 10)
	if err != nil || len(res.Uploads) == 0 {
		return nil
	}
	parts, err := store.Client.ListObjectParts(t.Context(), bucket, key, res.Uploads[0].UploadID, 0, 1000)
	if err != nil {
		return nil
	}
	var nums []int
	for _, p := range parts.ObjectParts {
		nums = append(nums, p.PartNumber)
	}
	slices.Sort(nums)
	return nums
}

// A body fetched in pieces (--split) into a bucket: each piece fills parts
// that are uploaded while the others go on, out of order (parts 3 to 6
// stored while the first connection is still inside part 2). Killed then,
// the re-run asks only for the part missing and completes the upload.
func TestS3SplitPiecesUploadAsPartsAndAKilledRunFetchesOnlyTheMissingPart(t *testing.T) {
	store := s3test.Start(t)
	store.Bucket(t, "data")
	src := downloadtest.New(t)
	const size = 48 << 20 // 6 parts of 8 MiB
	body := testutil.Payload(95, size)
	open := make(chan struct{})
	defer close(open)
	// Held at 13 MiB: part 1 whole, part 2 never.
	list := writeList(t, src.Handle("/s.bin", slowFirst(body, `"s-1"`, 12<<20, 13<<20, open)))
	key := hostDir(src) + "/s.bin"
	args := []string{"-q", "-i", list, "-d", "s3://data", "--split", "4", "--min-split-size", "4M"}

	ctx, cancel := haulContext(t)
	defer cancel()
	h := spawnHaulEnv(t, ctx, cancel, s3Env(store, store.Endpoint), args...)
	want := []int{1, 3, 4, 5, 6}
	h.until(t, func() error {
		if got := partNumbers(t, store, "data", key); !slices.Equal(got, want) {
			return fmt.Errorf("parts stored %v, waiting for %v", got, want)
		}
		return nil
	})
	h.stop(syscall.SIGKILL)
	if keys := store.Keys(t, "data", key); len(keys) != 0 {
		t.Fatalf("object there before its upload completed: %q", keys)
	}
	var pieces int
	for _, r := range src.RangeRequests("/s.bin") {
		if !strings.HasSuffix(r, "-") {
			pieces++ // a closed range: a piece
		}
	}
	if pieces < 2 {
		t.Errorf("%d pieces asked for, want several: %q", pieces, src.RangeRequests("/s.bin"))
	}

	// The re-run: part 2 ([8 MiB, 16 MiB)) alone is missing.
	before, asked := src.BodyBytes(), len(src.RangeRequests("/s.bin"))
	wantCode(t, runHaulEnv(t, s3Env(store, store.Endpoint), nil, args...), 0)
	if got := store.Get(t, "data", key); !bytes.Equal(got, body) {
		t.Fatalf("object: %d bytes, not the body", len(got))
	}
	for _, r := range src.RangeRequests("/s.bin")[asked:] {
		start, _, _ := strings.Cut(strings.TrimPrefix(r, "bytes="), "-")
		if n, err := strconv.ParseInt(start, 10, 64); err != nil || n < 8<<20 || n >= 16<<20 {
			t.Errorf("the re-run asked for %q, want only ranges of the missing part [8 MiB, 16 MiB)", r)
		}
	}
	fetched := src.BodyBytes() - before
	t.Logf("the re-run fetched %d bytes for the 8 MiB missing", fetched)
	if fetched < 8<<20 || fetched >= 24<<20 {
		t.Errorf("the re-run fetched %d bytes, want the 8 MiB missing (not the %d from the first missing byte on)", fetched, size-8<<20)
	}
	store.CheckDone(t, "data", "")
}

// A body with a SHA-256 to check is not split into a bucket (the parts
// cannot be read back to hash them): it comes in order, and the object
// carries the hash as metadata, a multipart upload too. --dry-run
// --checksums then reads the object's bytes to verify it.
func TestS3HashedBodyIsFetchedInOrderAndADryRunVerifiesTheObject(t *testing.T) {
	store := s3test.Start(t)
	store.Bucket(t, "data")
	src := downloadtest.New(t)
	const size = 20 << 20 // 3 parts
	body := testutil.Payload(96, size)
	open := make(chan struct{})
	close(open) // slow from 12 MiB to 14 MiB, then at once
	list := writeList(t, src.Handle("/pub/h.bin", slowFirst(body, `"h-1"`, 12<<20, 14<<20, open)))
	sums := filepath.Join(t.TempDir(), "SHA256SUMS")
	if err := os.WriteFile(sums, []byte(testutil.SHA256Hex(body)+"  "+hostDir(src)+"/pub/h.bin\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	key := "m/" + hostDir(src) + "/pub/h.bin"
	env := s3Env(store, store.Endpoint)
	wantCode(t, runHaulEnv(t, env, nil, "-q", "-i", list, "-d", "s3://data/m", "--checksums", sums,
		"--split", "4", "--min-split-size", "1M"), 0)
	if got := store.Get(t, "data", key); !bytes.Equal(got, body) {
		t.Fatalf("object: %d bytes, not the body", len(got))
	}
	if r := src.RangeRequests("/pub/h.bin"); len(r) != 0 {
		t.Errorf("a body to hash was asked for in ranges %q, want in order", r)
	}
	if oi, err := store.Client.StatObject(t.Context(), "data", key, minio.StatObjectOptions{}); err != nil ||
		oi.Metadata.Get("X-Amz-Meta-Haul-Sha256") != testutil.SHA256Hex(body) {
		t.Errorf("object's sha256 metadata %q (%v), want the body's", oi.Metadata.Get("X-Amz-Meta-Haul-Sha256"), err)
	}
	store.CheckDone(t, "data", "m/.haul-uploads/")

	px := store.Proxy(t)
	before := src.TotalRequests()
	r := runHaulEnv(t, s3Env(store, px.Endpoint), nil, "--dry-run", "--checksums", sums, "-i", list, "-d", "s3://data/m")
	wantCode(t, r, 0)
	if r.stdout != "" {
		t.Errorf("--dry-run of a verified object printed %q", r.stdout)
	}
	if n := px.Count(http.MethodGet, s3test.ObjectBody); n != 1 {
		t.Errorf("--dry-run: %d GETs of the object, want 1 (its bytes hashed)", n)
	}
	if n := src.TotalRequests() - before; n != 0 {
		t.Errorf("--dry-run: %d requests to the origin", n)
	}
	// Other bytes under the same metadata: the metadata is not trusted.
	meta := map[string]string{}
	oi, err := store.Client.StatObject(t.Context(), "data", key, minio.StatObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for k := range oi.Metadata {
		if name, ok := strings.CutPrefix(k, "X-Amz-Meta-"); ok {
			meta[name] = oi.Metadata.Get(k)
		}
	}
	rot := append(slices.Clone(body[:size-1]), body[size-1]^1)
	if _, err := store.Client.PutObject(t.Context(), "data", key, bytes.NewReader(rot), int64(len(rot)), "", "",
		minio.PutObjectOptions{UserMetadata: meta}); err != nil {
		t.Fatal(err)
	}
	r = runHaulEnv(t, env, nil, "--dry-run", "--checksums", sums, "-i", list, "-d", "s3://data/m")
	wantCode(t, r, exitFailed)
	if !strings.Contains(r.stdout, "sha256 differs") {
		t.Errorf("--dry-run of an object whose bytes changed printed %q, want that its sha256 differs", r.stdout)
	}
}
