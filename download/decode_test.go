package download_test

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/haul/haul/download"
	"github.com/haul/haul/download/downloadtest"
	"github.com/haul/haul/internal/testutil"
)

// encodingHandler serves body encoded as the request's Accept-Encoding allows
// (zstd first, then gzip), and as is otherwise, like a server with compression on.
func encodingHandler(body []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ae := r.Header.Get("Accept-Encoding")
		var buf bytes.Buffer
		switch {
		case strings.Contains(ae, "zstd"):
			enc, _ := zstd.NewWriter(&buf)
			enc.Write(body)
			enc.Close()
			w.Header().Set("Content-Encoding", "zstd")
		case strings.Contains(ae, "gzip"):
			buf.Write(gzipped(body))
			w.Header().Set("Content-Encoding", "gzip")
		default:
			buf.Write(body)
		}
		w.Header().Set("ETag", `"enc"`)
		w.Write(buf.Bytes())
	})
}

// gzipped returns b as a gzip stream.
func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	enc := gzip.NewWriter(&buf)
	enc.Write(b)
	enc.Close()
	return buf.Bytes()
}

func TestEngineDecode(t *testing.T) {
	body := bytes.Repeat([]byte("compressible text "), 5000)
	s := downloadtest.New(t)
	url := s.Handle("/t.txt", encodingHandler(body))

	t.Run("StoredAsSentByDefault", func(t *testing.T) {
		// haul sends no Accept-Encoding: the publisher's bytes, not a re-encoding.
		h := newHarness(t)
		oc := h.run(download.Options{}, url+" out=a")
		if r := oc.get(url); r.Status != download.StatusOK {
			t.Fatalf("%s %v", r.Status, r.Err)
		}
		h.checkFile("a", body)
		if ae := s.Log("/t.txt")[0].Header.Get("Accept-Encoding"); ae != "" {
			t.Errorf("sent Accept-Encoding %q without --compressed", ae)
		}
	})
	t.Run("Compressed", func(t *testing.T) {
		// --compressed: zstd on the wire, decoded bytes on disk, hash of the decoded bytes.
		h := newHarness(t)
		oc := h.run(download.Options{Decode: true}, url+" out=b sha256="+testutil.SHA256Hex(body)+" size="+strconv.Itoa(len(body)))
		if r := oc.get(url); r.Status != download.StatusOK || r.Size != int64(len(body)) {
			t.Fatalf("%s %v size %d", r.Status, r.Err, r.Size)
		}
		h.checkFile("b", body)
	})
}

// An encoded transfer that breaks off resumes from the decoded bytes already
// stored: the retry asks for the identity representation from that offset, with
// If-Range on Last-Modified (the encoded variant's ETag does not name it).
func TestEngineDecodeResume(t *testing.T) {
	body := testutil.Payload(21, 1<<20) // incompressible: the encoded stream is about as long
	modtime := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	encoded := bytes.NewBuffer(gzipped(body))
	var drops atomic.Int32
	s := downloadtest.New(t)
	url := s.Handle("/r.bin", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			w.Header().Set("Content-Encoding", "gzip")
			w.Header().Set("ETag", `"gz-variant"`)
			w.Header().Set("Last-Modified", modtime.Format(http.TimeFormat))
			w.Write(encoded.Bytes()[:encoded.Len()/2])
			if drops.Add(1) == 1 {
				panic(http.ErrAbortHandler) // the connection drops mid-body
			}
			w.Write(encoded.Bytes()[encoded.Len()/2:])
			return
		}
		http.ServeContent(w, r, "", modtime, bytes.NewReader(body))
	}))
	h := newHarness(t)
	oc := h.run(download.Options{Decode: true}, url+" out=r sha256="+testutil.SHA256Hex(body))
	if r := oc.get(url); r.Status != download.StatusOK {
		t.Fatalf("%s %v", r.Status, r.Err)
	}
	h.checkFile("r", body)
	log := s.Log("/r.bin")
	if len(log) != 2 {
		t.Fatalf("%d requests, want 2", len(log))
	}
	second := log[1].Header
	rng := second.Get("Range")
	off, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(rng, "bytes="), "-"))
	if off < len(body)/4 || second.Get("Accept-Encoding") != "" || second.Get("If-Range") != modtime.Format(http.TimeFormat) {
		t.Errorf("second request: Range %q, Accept-Encoding %q, If-Range %q; want an identity range from the decoded bytes",
			rng, second.Get("Accept-Encoding"), second.Get("If-Range"))
	}
}

// A corrupt encoded body (here a zstd stream with one byte flipped: its
// checksum fails) is not resumed from what the decoder wrote before it noticed:
// the file starts over, and only the next, sound, response is stored.
func TestEngineDecodeCorruptStartsOver(t *testing.T) {
	body := testutil.Payload(23, 1<<20)
	modtime := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	var zbuf bytes.Buffer
	enc, _ := zstd.NewWriter(&zbuf, zstd.WithEncoderCRC(true))
	enc.Write(body)
	enc.Close()
	corrupt := bytes.Clone(zbuf.Bytes())
	corrupt[len(corrupt)/2] ^= 0xff
	var n atomic.Int32
	s := downloadtest.New(t)
	url := s.Handle("/c.bin", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.Header.Get("Accept-Encoding"), "zstd") {
			w.Header().Set("Content-Encoding", "zstd")
			w.Header().Set("Last-Modified", modtime.Format(http.TimeFormat))
			if n.Add(1) == 1 {
				w.Write(corrupt)
			} else {
				w.Write(zbuf.Bytes())
			}
			return
		}
		http.ServeContent(w, r, "", modtime, bytes.NewReader(body))
	}))
	h := newHarness(t)
	oc := h.run(download.Options{Decode: true}, url+" out=c")
	if r := oc.get(url); r.Status != download.StatusOK {
		t.Fatalf("%s %v", r.Status, r.Err)
	}
	h.checkFile("c", body)
	for i, req := range s.Log("/c.bin") {
		if rng := req.Header.Get("Range"); rng != "" {
			t.Errorf("request %d resumed (Range %q) after a corrupt encoded body", i+1, rng)
		}
	}
}

// A server that answers a resume with a range of the encoded body (as stores
// that keep files gzipped do) cannot extend the decoded bytes kept: the file
// starts over instead of failing on every attempt and every run.
func TestEngineDecodeEncodedRangeStartsOver(t *testing.T) {
	body := testutil.Payload(24, 1<<20)
	modtime := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	gz := bytes.NewBuffer(gzipped(body))
	var drops atomic.Int32
	s := downloadtest.New(t)
	url := s.Handle("/g.bin", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Always gzip, whatever is asked; Range applies to the gzip bytes.
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Last-Modified", modtime.Format(http.TimeFormat))
		if r.Header.Get("Range") == "" && drops.Add(1) == 1 {
			w.Header().Set("Content-Length", strconv.Itoa(gz.Len()))
			w.Write(gz.Bytes()[:gz.Len()/2])
			panic(http.ErrAbortHandler) // the connection drops mid-body
		}
		http.ServeContent(w, r, "", modtime, bytes.NewReader(gz.Bytes()))
	}))
	h := newHarness(t)
	oc := h.run(download.Options{Decode: true, Retries: 2}, url+" out=g")
	if r := oc.get(url); r.Status != download.StatusOK {
		t.Fatalf("%s %v", r.Status, r.Err)
	}
	h.checkFile("g", body)
}
