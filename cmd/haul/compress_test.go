package main

// Compression tests: --compress gzip|zstd (stored compressed, checked on the
// uncompressed bytes, resumable) and --compressed (transfer encodings decoded).

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/haul/haul/download/downloadtest"
	"github.com/haul/haul/internal/testutil"
)

// --compress gzip|zstd stores NAME.gz / NAME.zst holding the body; sha256= is of
// the uncompressed bytes; a re-run skips them.
func TestE2ECompress(t *testing.T) {
	t.Parallel()
	text := bytes.Repeat([]byte("haul streams URL lists to disk. "), 20000)
	bs := map[string][]byte{"/c/text.txt": text, "/c/random.bin": testutil.Payload(2200, 100<<10), "/c/empty": nil, "/c/dropped.txt": text}
	// Each subtest has its own server: the re-run counts its requests.
	serve := func(t *testing.T) *downloadtest.Server {
		s := downloadtest.New(t)
		for p, b := range bs {
			if p == "/c/dropped.txt" {
				s.Add(p, b, downloadtest.DropAfter(200<<10, 1))
			} else {
				s.Add(p, b)
			}
		}
		return s
	}
	decoders := map[string]func(io.Reader) ([]byte, error){
		"gzip": func(r io.Reader) ([]byte, error) {
			zr, err := gzip.NewReader(r)
			if err != nil {
				return nil, err
			}
			return io.ReadAll(zr)
		},
		"zstd": func(r io.Reader) ([]byte, error) {
			zr, err := zstd.NewReader(r)
			if err != nil {
				return nil, err
			}
			defer zr.Close()
			return io.ReadAll(zr)
		},
	}
	for codec, ext := range map[string]string{"gzip": ".gz", "zstd": ".zst"} {
		t.Run(codec, func(t *testing.T) {
			t.Parallel()
			s := serve(t)
			h := hostDir(s)
			dir := filepath.Join(t.TempDir(), "out")
			man := filepath.Join(t.TempDir(), "m.jsonl")
			list := writeList(t,
				s.URL+"/c/text.txt sha256="+testutil.SHA256Hex(text),
				s.URL+"/c/random.bin size="+fmt.Sprint(100<<10),
				s.URL+"/c/empty",
				s.URL+"/c/dropped.txt",
			)
			r := runHaul(t, nil, "-i", list, "-d", dir, "--compress", codec, "--manifest", man, "--retries", "0")
			wantCode(t, r, 0)
			got := files(t, dir)
			if len(got) != len(bs) {
				t.Errorf("files: %q, want %d", slices.Sorted(maps.Keys(got)), len(bs))
			}
			for p, b := range bs {
				stored, ok := got[h+p+ext]
				if !ok {
					t.Errorf("%s%s missing", p, ext)
					continue
				}
				plain, err := decoders[codec](bytes.NewReader(stored))
				if err != nil || !bytes.Equal(plain, b) {
					t.Errorf("%s%s does not decompress to the body (%v)", p, ext, err)
				}
			}
			if len(got[h+"/c/text.txt"+ext]) > len(text)/10 {
				t.Errorf("text compressed to %d of %d bytes", len(got[h+"/c/text.txt"+ext]), len(text))
			}
			for _, m := range readManifest(t, man) {
				// out is the entry's name without the codec's extension, so that
				// a manifest line fed back with the same --compress names the same
				// file; either is accepted.
				name := strings.TrimPrefix(m.URL, s.URL)
				if m.Status != "ok" || (str(m.Out) != h+name && str(m.Out) != h+name+ext) {
					t.Errorf("manifest for %s: status %s, out %s", m.URL, m.Status, str(m.Out))
				}
				if strings.HasSuffix(m.URL, "text.txt") && str(m.SHA256) != testutil.SHA256Hex(text) {
					t.Errorf("manifest sha256 %s, want that of the uncompressed bytes", str(m.SHA256))
				}
			}
			before := s.TotalRequests()
			r = runHaul(t, nil, "-i", list, "-d", dir, "--compress", codec, "--manifest", man)
			wantCode(t, r, 0)
			if n := s.TotalRequests() - before; n != 0 {
				t.Errorf("re-run made %d requests", n)
			}
			for _, m := range readManifest(t, man) {
				if m.Status != "skipped" {
					t.Errorf("re-run manifest for %s: status %s, error %s", m.URL, m.Status, str(m.Error))
				}
			}
			// A stored file that no longer decompresses fails its sha256= check
			// and is fetched again, rather than failing every re-run.
			damaged := filepath.Join(dir, h, "c", "text.txt"+ext)
			if err := os.Truncate(damaged, 100); err != nil {
				t.Fatal(err)
			}
			r = runHaul(t, nil, "-i", list, "-d", dir, "--compress", codec)
			wantCode(t, r, 0)
			if n := s.Requests("/c/text.txt"); n != 2 {
				t.Errorf("damaged text.txt%s: %d requests in all, want 2", ext, n)
			}
			if plain, err := decoders[codec](bytes.NewReader(files(t, dir)[h+"/c/text.txt"+ext])); err != nil || !bytes.Equal(plain, text) {
				t.Errorf("text.txt%s after the re-fetch does not decompress to the body (%v)", ext, err)
			}
		})
	}
	t.Run("sha256 mismatch", func(t *testing.T) {
		t.Parallel()
		s := serve(t)
		dir := filepath.Join(t.TempDir(), "out")
		r := runHaul(t, nil, "-d", dir, "--compress", "gzip", s.URL+"/c/text.txt sha256="+testutil.SHA256Hex(nil))
		wantCode(t, r, 1)
		checkFiles(t, dir, map[string][]byte{})
	})
}

// --compressed asks for an encoding and stores the decoded bytes; without it, an
// encoded body is stored as sent and resumes like any other.
func TestE2EContentEncoding(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	plain := bytes.Repeat([]byte("0123456789abcdef"), 40000)
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
	zw.Write(plain)
	zw.Close()
	enc := gz.Bytes()
	u := s.Add("/e/page.txt", enc, downloadtest.Header("Content-Encoding", "gzip"))
	t.Run("--compressed", func(t *testing.T) {
		t.Parallel()
		dir := filepath.Join(t.TempDir(), "out")
		r := runHaul(t, nil, "-d", dir, "--compressed", u+" sha256="+testutil.SHA256Hex(plain))
		wantCode(t, r, 0)
		checkFiles(t, dir, map[string][]byte{hostDir(s) + "/e/page.txt": plain})
		log := s.Log("/e/page.txt")
		if ae := log[len(log)-1].Header.Get("Accept-Encoding"); !strings.Contains(ae, "gzip") {
			t.Errorf("--compressed sent Accept-Encoding %q", ae)
		}
	})
	t.Run("stored as sent, resumed", func(t *testing.T) {
		t.Parallel()
		s := downloadtest.New(t)
		u := s.Add("/e/page.txt.gz", enc, downloadtest.Header("Content-Encoding", "gzip"),
			downloadtest.DropAfter(int64(len(enc)/2), 1))
		dir := filepath.Join(t.TempDir(), "out")
		r := runHaul(t, nil, "-d", dir, u)
		wantCode(t, r, 0)
		checkFiles(t, dir, map[string][]byte{hostDir(s) + "/e/page.txt.gz": enc})
		if rr := s.RangeRequests("/e/page.txt.gz"); len(rr) != 1 {
			t.Errorf("ranges %q: a body stored as sent was not resumed after a dropped connection", rr)
		}
	})
}

// Ctrl-C with --compress, then a re-run: the stored file decompresses to the body.
func TestE2ECompressInterrupted(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	b := testutil.Payload(2300, 512<<10)
	u := s.Add("/ci.bin", b, downloadtest.Stall(128<<10, time.Minute, 1))
	dir := filepath.Join(t.TempDir(), "out")
	cmd, _, stderr := haulCmd(t.Context(), nil, "-d", dir, "--compress", "zstd", u)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if !waitFor(t, func() bool { return s.BodyBytes() >= 128<<10 }) {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("no progress:\n%s", stderr)
	}
	// Some of it is stored: the re-run has a compressed staging file to go on from.
	part := filepath.Join(dir, hostDir(s), "ci.bin.zst.part")
	if !waitFor(t, func() bool { return fileSize(part) > 0 }) {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("nothing stored:\n%s", stderr)
	}
	cmd.Process.Signal(os.Interrupt)
	cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 130 {
		t.Errorf("exit %d, want 130\n%s", code, stderr)
	}
	r := runHaul(t, nil, "-d", dir, "--compress", "zstd", u)
	wantCode(t, r, 0)
	got := files(t, dir)
	stored, ok := got[hostDir(s)+"/ci.bin.zst"]
	if len(got) != 1 || !ok {
		t.Fatalf("files: %q", slices.Sorted(maps.Keys(got)))
	}
	zr, err := zstd.NewReader(bytes.NewReader(stored))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	if plain, err := io.ReadAll(zr); err != nil || !bytes.Equal(plain, b) {
		t.Errorf("the stored file does not decompress to the body: %d bytes, %v", len(plain), err)
	}
}
