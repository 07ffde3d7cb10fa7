package download_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/haul/haul/download"
	"github.com/haul/haul/download/checksums"
	"github.com/haul/haul/download/downloadtest"
	"github.com/haul/haul/internal/testutil"
)

func TestEngineVerify(t *testing.T) {
	t.Parallel()
	body := testutil.Payload(8, 50_000)
	sum := testutil.SHA256Hex(body)
	wrongSum := testutil.SHA256Hex([]byte("something else"))
	tests := []struct {
		name    string
		fields  string // after the URL on the line
		opts    []downloadtest.FileOption
		hashAll bool
		wantErr error // nil: ok
		wantSum string
	}{
		{"size= too big", fmt.Sprintf("size=%d", len(body)+1), nil, false, download.ErrBadLength, ""},
		{"size= too small", fmt.Sprintf("size=%d", len(body)-1), nil, false, download.ErrBadLength, ""},
		// Without Content-Length the mismatch shows only at the end of the body.
		{"size= mismatch without Content-Length", fmt.Sprintf("size=%d", len(body)+1),
			[]downloadtest.FileOption{downloadtest.NoContentLength()}, false, download.ErrBadLength, ""},
		{"size= too small without Content-Length", fmt.Sprintf("size=%d", len(body)-1),
			[]downloadtest.FileOption{downloadtest.NoContentLength()}, false, download.ErrBadLength, ""},
		{"size= matches", fmt.Sprintf("size=%d", len(body)), nil, false, nil, ""},
		{"sha256= mismatch", "sha256=" + wrongSum, nil, false, download.ErrBadChecksum, ""},
		{"sha256= matches", "sha256=" + sum, nil, false, nil, sum},
		{"sha256= uppercase matches", "sha256=" + strings.ToUpper(sum), nil, false, nil, sum},
		{"sha256= after a resume", "sha256=" + sum,
			[]downloadtest.FileOption{downloadtest.DropAfter(20_000, 1)}, false, nil, sum},
		{"sha256= after a restart", "sha256=" + sum,
			[]downloadtest.FileOption{downloadtest.DropAfter(20_000, 1), downloadtest.IgnoreRange()}, false, nil, sum},
		{"HashAll computes the sum", "", nil, true, nil, sum},
		{"no hash unless asked", "", nil, false, nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, h, r := fetchOne(t, body, download.Options{HashAll: tc.hashAll, Retries: 2}, " "+tc.fields, tc.opts...)
			if tc.wantErr != nil {
				if r.Status != download.StatusFailed || !errors.Is(r.Err, tc.wantErr) {
					t.Fatalf("status %s err %v, want %v", r.Status, r.Err, tc.wantErr)
				}
				if r.Attempts != 1 {
					t.Errorf("attempts %d: a verification failure is not retried", r.Attempts)
				}
				h.checkAbsent(r.Name)
				h.checkNoPartFiles()
				return
			}
			if r.Status != download.StatusOK || r.Err != nil {
				t.Fatalf("status %s err %v", r.Status, r.Err)
			}
			if r.SHA256 != tc.wantSum {
				t.Errorf("Result.SHA256 %q, want %q", r.SHA256, tc.wantSum)
			}
			h.checkFile(r.Name, body)
		})
	}
}

// size= bounds a body without a length as it arrives: an endless one fails at
// once instead of filling the disk.
func TestEngineSizeBoundsEndlessBody(t *testing.T) {
	t.Parallel()
	var sent atomic.Int64
	s := downloadtest.New(t)
	u := s.Handle("/endless", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 32<<10)
		for sent.Load() < 256<<20 { // bounded, so that a regression fails instead of hanging
			n, err := w.Write(chunk)
			sent.Add(int64(n))
			if err != nil {
				return
			}
		}
	}))
	h := newHarness(t)
	r := h.run(download.Options{}, u+" out=e size=1000").get(u)
	if r.Status != download.StatusFailed || !errors.Is(r.Err, download.ErrBadLength) {
		t.Fatalf("status %s err %v, want a length mismatch", r.Status, r.Err)
	}
	if got := sent.Load(); got > 32<<20 {
		t.Errorf("the server sent %d MiB before haul gave up on a size=1000 entry", got>>20)
	}
	h.checkAbsent("e")
	h.checkNoPartFiles()
}

func TestEngineStoredAsServed(t *testing.T) {
	// Content-Encoding: gzip is stored as the gzip bytes the server published,
	// and the client does not ask for compression.
	t.Parallel()
	gz := testutil.Payload(71, 5000) // stands for gzip data: it must not be touched
	s := downloadtest.New(t)
	u := s.Add("/f.gz", gz, downloadtest.Header("Content-Encoding", "gzip"))
	h := newHarness(t)
	r := h.run(download.Options{}, u).get(u)
	if r.Status != download.StatusOK {
		t.Fatalf("status %s err %v", r.Status, r.Err)
	}
	h.checkFile(r.Name, gz)
	req := s.Log("/f.gz")[0]
	if ae := req.Header.Get("Accept-Encoding"); ae != "" {
		t.Errorf("Accept-Encoding %q sent, want none", ae)
	}
	if ua := req.Header.Get("User-Agent"); ua != "haul-test" {
		t.Errorf("User-Agent %q, want the Options.Header one", ua)
	}
}

// A body with neither Content-Length nor chunked framing ends when the server
// closes the connection; a cut connection would end it the same way, so the
// result says so (the manifest's close_delimited) and size= still catches a
// short one.
func TestEngineCloseDelimitedMarked(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	body := testutil.Payload(14, 30_000)
	closed := s.Handle("/closed", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		buf.WriteString("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
		buf.Write(body[:20_000]) // cut short: the client cannot tell
		buf.Flush()
	}))
	chunked := s.Add("/chunked", body, downloadtest.NoContentLength())
	sized := s.Add("/sized", body)
	h := newHarness(t)
	oc := h.run(download.Options{}, closed+" out=c1", closed+" out=c2 size=30000", chunked, sized)
	for _, c := range []struct {
		url, out string
		status   download.Status
		marked   bool
	}{
		{closed, "c1", download.StatusOK, true},
		{closed, "c2", download.StatusFailed, false},
		{chunked, "", download.StatusOK, false},
		{sized, "", download.StatusOK, false},
	} {
		var r *download.Result
		for _, x := range oc.all(c.url) {
			if x.Entry.Out == c.out {
				r = x
			}
		}
		if r == nil || r.Status != c.status {
			t.Errorf("%s out=%s: %+v, want %s", c.url, c.out, r, c.status)
			continue
		}
		j, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if got := bytes.Contains(j, []byte(`"close_delimited":true`)); got != c.marked {
			t.Errorf("%s out=%s: manifest line %s; close_delimited want %v", c.url, c.out, j, c.marked)
		}
	}
	if r := oc.all(closed); len(r) == 2 && !errors.Is(r[0].Err, download.ErrBadLength) && !errors.Is(r[1].Err, download.ErrBadLength) {
		t.Errorf("size= did not catch the short close-delimited body: %v / %v", r[0].Err, r[1].Err)
	}
}

// --checksums: an entry whose line gives no sha256= is checked against the
// publisher's list, matched by trailing path components; the line's own hash
// wins; a NAME that two entries match fails the second rather than guess.
func TestEngineChecksums(t *testing.T) {
	t.Parallel()
	s := downloadtest.New(t)
	a, b, c := testutil.Payload(20, 3000), testutil.Payload(21, 3000), testutil.Payload(22, 3000)
	ua := s.Add("/pub/a.bin", a)
	ub := s.Add("/pub/b.bin", b)
	uc := s.Add("/pub/sub/c.bin", c)
	ud := s.Add("/other/a.bin", a)
	list := testutil.SHA256Hex(a) + "  a.bin\n" +
		strings.Repeat("0", 64) + "  b.bin\n" + // wrong: the publisher's list says otherwise
		testutil.SHA256Hex(c) + " *./sub/c.bin\n"
	set, bad, err := checksums.Parse(strings.NewReader(list))
	if err != nil || len(bad) > 0 {
		t.Fatal(err, bad)
	}
	h := newHarness(t)
	oc := h.run(download.Options{Jobs: 1, Checksums: set},
		ua, ub, uc, ub+" out=b-own sha256="+testutil.SHA256Hex(b), ud)
	if r := oc.get(ua); r.Status != download.StatusOK || r.SHA256 != testutil.SHA256Hex(a) {
		t.Errorf("a: %s %v sha %q", r.Status, r.Err, r.SHA256)
	}
	for _, r := range oc.all(ub) {
		switch r.Entry.Out {
		case "":
			if r.Status != download.StatusFailed || !errors.Is(r.Err, download.ErrBadChecksum) {
				t.Errorf("b: %s %v, want the list's hash to fail it", r.Status, r.Err)
			}
			h.checkAbsent(r.Name)
		default:
			if r.Status != download.StatusOK {
				t.Errorf("b with its own sha256=: %s %v", r.Status, r.Err)
			}
		}
	}
	if r := oc.get(uc); r.Status != download.StatusOK || r.SHA256 != testutil.SHA256Hex(c) {
		t.Errorf("c: %s %v sha %q", r.Status, r.Err, r.SHA256)
	}
	if r := oc.get(ud); r.Status != download.StatusFailed || !errors.Is(r.Err, checksums.ErrAmbiguous) {
		t.Errorf("other/a.bin (matches a.bin too): %s %v, want ambiguous", r.Status, r.Err)
	}
	if n := s.Requests("/other/a.bin"); n != 0 {
		t.Errorf("%d requests for an ambiguous entry", n)
	}
}
