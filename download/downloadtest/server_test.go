package downloadtest_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/haul/haul/download/downloadtest"
	"github.com/haul/haul/internal/testutil"
)

func get(t *testing.T, c *http.Client, url string, hdr ...string) (*http.Response, []byte, error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

func TestServer(t *testing.T) {
	t.Parallel()
	data := testutil.Payload(1, 10000)
	s := downloadtest.New(t)
	c := s.Client()

	t.Run("RangeWithIfRange", func(t *testing.T) {
		// A resume guarded by the ETag the server gave gets the rest of the file.
		u := s.Add("/r", data)
		resp, _, err := get(t, c, u)
		if err != nil {
			t.Fatal(err)
		}
		et := resp.Header.Get("ETag")
		resp, got, err := get(t, c, u, "Range", "bytes=100-", "If-Range", et)
		if err != nil || resp.StatusCode != http.StatusPartialContent || !bytes.Equal(got, data[100:]) {
			t.Fatalf("ranged GET: status %v err %v len %d", resp.StatusCode, err, len(got))
		}
		if got, want := s.RangeRequests("/r"), []string{"bytes=100-"}; len(got) != 1 || got[0] != want[0] {
			t.Errorf("RangeRequests = %q, want %q", got, want)
		}
	})

	t.Run("StatusThenOK", func(t *testing.T) {
		// Two 503s with Retry-After, then the file.
		u := s.Add("/s", data, downloadtest.Status(503, 2), downloadtest.RetryAfter("7"))
		for i := range 2 {
			resp, _, _ := get(t, c, u)
			if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "7" {
				t.Fatalf("request %d: %d %q", i, resp.StatusCode, resp.Header.Get("Retry-After"))
			}
		}
		resp, got, err := get(t, c, u)
		if err != nil || resp.StatusCode != 200 || !bytes.Equal(got, data) {
			t.Fatalf("third request: %v %v", resp.StatusCode, err)
		}
		if n := s.Requests("/s"); n != 3 {
			t.Errorf("Requests = %d, want 3", n)
		}
	})

	t.Run("DropAfter", func(t *testing.T) {
		// The connection dies after 1000 bytes once; the body is cut short.
		u := s.Add("/d", data, downloadtest.DropAfter(1000, 1))
		before := s.BodyBytes()
		_, got, err := get(t, c, u)
		if !errors.Is(err, io.ErrUnexpectedEOF) || len(got) != 1000 {
			t.Fatalf("dropped GET: err %v, %d bytes", err, len(got))
		}
		if n := s.BodyBytes() - before; n != 1000 {
			t.Errorf("BodyBytes grew by %d, want 1000", n)
		}
		_, got, err = get(t, c, u)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("second GET: err %v, %d bytes", err, len(got))
		}
	})

	t.Run("ShortBody", func(t *testing.T) {
		u := s.Add("/short", data, downloadtest.ShortBody(10, downloadtest.Always))
		for range 2 {
			resp, got, err := get(t, c, u)
			if !errors.Is(err, io.ErrUnexpectedEOF) || len(got) != 10 || resp.ContentLength != int64(len(data)) {
				t.Fatalf("short GET: err %v, %d bytes", err, len(got))
			}
		}
	})

	t.Run("StallUntilClientGivesUp", func(t *testing.T) {
		u := s.Add("/stall", data, downloadtest.Stall(500, time.Hour, 1))
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		// The 500 bytes before the stall arrive; then the client gives up
		// (for an hour, nothing more would come).
		got := make([]byte, 500)
		if _, err := io.ReadFull(resp.Body, got); err != nil {
			t.Fatalf("the bytes before the stall: %v", err)
		}
		cancel()
		rest, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil || len(rest) != 0 {
			t.Fatalf("stalled GET: err %v, %d bytes past the stall", err, len(rest))
		}
	})

	t.Run("ChangeAfterAndIgnoreRange", func(t *testing.T) {
		// The second request's If-Range no longer matches: the whole new body.
		nb := testutil.Payload(1, 3000)
		u := s.Add("/c", data, downloadtest.ChangeAfter(1, nb, ""))
		resp, _, _ := get(t, c, u)
		resp, got, err := get(t, c, u, "Range", "bytes=100-", "If-Range", resp.Header.Get("ETag"))
		if err != nil || resp.StatusCode != 200 || !bytes.Equal(got, nb) {
			t.Fatalf("changed: %d %v %d", resp.StatusCode, err, len(got))
		}
		u = s.Add("/i", data, downloadtest.IgnoreRange())
		resp, got, err = get(t, c, u, "Range", "bytes=100-")
		if err != nil || resp.StatusCode != 200 || !bytes.Equal(got, data) {
			t.Fatalf("ignore range: %d %v %d", resp.StatusCode, err, len(got))
		}
	})

	t.Run("Redirect", func(t *testing.T) {
		u := s.Add("/from", nil, downloadtest.Redirect("/to", downloadtest.Always))
		s.Add("/to", data)
		resp, got, err := get(t, c, u)
		if err != nil || resp.StatusCode != 200 || !bytes.Equal(got, data) {
			t.Fatalf("redirect: %v %v", resp.StatusCode, err)
		}
	})

	t.Run("NotFound", func(t *testing.T) {
		resp, _, _ := get(t, c, s.URL+"/nope")
		if resp.StatusCode != 404 || s.Requests("/nope") != 1 || s.Log("/nope")[0].Status != 404 {
			t.Fatalf("status %d, log %+v", resp.StatusCode, s.Log("/nope"))
		}
	})
}

func TestServerHTTP2Drop(t *testing.T) {
	t.Parallel()
	data := testutil.Payload(1, 100000)
	s := downloadtest.New(t, downloadtest.HTTP2())
	u := s.Add("/d", data, downloadtest.DropAfter(5000, 1))
	resp, got, err := get(t, s.Client(), u)
	if err == nil || resp.ProtoMajor != 2 || len(got) > 5000 {
		t.Fatalf("h2 drop: err %v proto %d, %d bytes", err, resp.ProtoMajor, len(got))
	}
	_, got, err = get(t, s.Client(), u)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("h2 second GET: %v", err)
	}
}
