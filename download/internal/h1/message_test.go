package h1

import (
	"bufio"
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
)

// A control byte in a field value (a bare CR, a NUL, an escape) makes the
// response malformed, as in net/textproto: a bare CR is a line end to some
// parsers and not to others, and such values should not reach a log or a
// terminal. Tab and obs-text (bytes >= 0x80) are allowed.
func TestHeaderValueControlBytes(t *testing.T) {
	for name, response := range map[string]string{
		"NUL":             "HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 0\r\n\r\n",
		"BareCR":          "HTTP/1.1 200 OK\r\nX-A: a\rInjected: 1\r\nContent-Length: 0\r\n\r\n",
		"CRBeforeCRLF":    "HTTP/1.1 200 OK\r\nETag: \"a\"\r\r\nContent-Length: 0\r\n\r\n",
		"Escape":          "HTTP/1.1 200 OK\r\nX-A: \x1b[2J\r\nContent-Length: 0\r\n\r\n",
		"DEL":             "HTTP/1.1 200 OK\r\nX-A: a\x7f\r\nContent-Length: 0\r\n\r\n",
		"InContentLength": "HTTP/1.1 200 OK\r\nContent-Length: 2\x00\r\n\r\nok",
		"InObsFold":       "HTTP/1.1 200 OK\r\nX-A: a\r\n b\x01\r\nContent-Length: 0\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			srv := newRawServer(t, serveCanned(true, response))
			_, _, err := get(t, newClient(t, Options{}), srv.url("/"))
			if err == nil || !strings.Contains(err.Error(), "malformed header line") {
				t.Fatalf("error %v, want a malformed header line", err)
			}
		})
	}
	t.Run("Trailer", func(t *testing.T) {
		srv := newRawServer(t, serveCanned(true, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\nX-T: a\x00\r\n\r\n"))
		_, _, err := get(t, newClient(t, Options{}), srv.url("/"))
		if err == nil || !strings.Contains(err.Error(), "malformed header line") {
			t.Fatalf("error %v, want a malformed header line", err)
		}
	})
	t.Run("Allowed", func(t *testing.T) {
		srv := newRawServer(t, serveCanned(true, "HTTP/1.1 200 OK\r\nX-A: a\tb \xe9\xff\r\nContent-Length: 0\r\n\r\n"))
		resp, _ := mustGet(t, newClient(t, Options{}), srv.url("/"))
		if got := resp.Header.Get("X-A"); got != "a\tb \xe9\xff" {
			t.Errorf("X-A %q", got)
		}
	})
}

// The request line and Host are checked as net/http checks them: a control
// byte (tab included) in the request-target fails the request, and a Host that
// is not a host[:port] is sent empty.
func TestRequestTargetAndHost(t *testing.T) {
	var mu sync.Mutex
	var last string // the last request head the server saw
	srv := newRawServer(t, func(conn net.Conn, br *bufio.Reader) {
		defer conn.Close()
		for {
			head := readRequest(br)
			if head == "" {
				return
			}
			mu.Lock()
			last = head
			mu.Unlock()
			io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		}
	})
	c := newClient(t, Options{})
	u := srv.url("/")
	req := mustRequest(t, context.Background(), u)
	req.URL.RawQuery = "a\tb"
	if resp, err := c.RoundTrip(req); err == nil || !strings.Contains(err.Error(), "control character") {
		if err == nil {
			resp.Body.Close()
		}
		t.Errorf("tab in the query: %v", err)
	}
	for _, host := range []string{"a b", "a/b", `a"b`, "a\r\nX: 1"} {
		req := mustRequest(t, context.Background(), u)
		req.Host = host
		resp, err := c.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		mu.Lock()
		got := last
		mu.Unlock()
		if !strings.Contains(got, "\r\nHost: \r\n") {
			t.Errorf("Host %q sent as %q", host, got)
		}
	}
}

// A response with both Transfer-Encoding and Content-Length is read as chunked,
// its Content-Length ignored, and its connection is closed rather than reused
// (RFC 9112 section 6.3), whatever its status.
func TestTransferEncodingWithContentLengthCloses(t *testing.T) {
	for name, response := range map[string]string{
		"Chunked":     "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n",
		"NotModified": "HTTP/1.1 304 Not Modified\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			srv := newRawServer(t, serveCanned(false, response))
			c := newClient(t, Options{})
			resp, body := mustGet(t, c, srv.url("/"))
			if name == "Chunked" && (body != "ab" || resp.ContentLength != -1 || resp.Header["Content-Length"] != nil) {
				t.Errorf("body %q, length %d, Content-Length %q", body, resp.ContentLength, resp.Header["Content-Length"])
			}
			if !resp.Close {
				t.Error("resp.Close is false")
			}
			c.mu.Lock()
			idle := c.lru.Len()
			c.mu.Unlock()
			if idle != 0 {
				t.Errorf("%d idle connections, want 0", idle)
			}
		})
	}
}

// Framing fields that net/http refuses are refused whatever the status, and a
// Transfer-Encoding is "chunked" in ASCII only.
func TestFramingFieldsChecked(t *testing.T) {
	tests := []struct{ name, response, want string }{
		{"NotModifiedBadContentLength", "HTTP/1.1 304 Not Modified\r\nContent-Length: x\r\n\r\n", "bad Content-Length"},
		{"NoContentConflictingContentLength", "HTTP/1.1 204 No Content\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", "conflicting Content-Length"},
		{"NotModifiedUnsupportedTE", "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: gzip\r\n\r\n", "unsupported Transfer-Encoding"},
		{"ChunkedBadContentLength", "HTTP/1.1 200 OK\r\nContent-Length: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n", "bad Content-Length"},
		{"KelvinSignChunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chun\u212aed\r\n\r\n2\r\nab\r\n0\r\n\r\n", "unsupported Transfer-Encoding"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newRawServer(t, serveCanned(true, tt.response))
			_, _, err := get(t, newClient(t, Options{}), srv.url("/"))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// An obs-fold continuing an empty value adds no leading space: the value is
// trimmed as a whole, as net/textproto does (found by FuzzResponseVsNetHTTP).
func TestObsFoldAfterEmptyValue(t *testing.T) {
	srv := newRawServer(t, serveCanned(true, "HTTP/1.1 200 OK\r\nETag:\r\n \"abc\"\r\nX-Empty:\r\n \r\nContent-Length: 0\r\n\r\n"))
	resp, _ := mustGet(t, newClient(t, Options{}), srv.url("/"))
	if got := resp.Header.Get("ETag"); got != `"abc"` {
		t.Errorf("ETag %q", got)
	}
	if got := resp.Header["X-Empty"]; len(got) != 1 || got[0] != "" {
		t.Errorf("X-Empty %q", got)
	}
}
