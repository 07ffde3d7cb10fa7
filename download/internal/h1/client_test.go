package h1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/haul/haul/internal/testutil"
)

func TestContentLengthBody(t *testing.T) {
	srv, conns := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"abc"`)
		w.Header().Add("X-Multi", "1")
		w.Header().Add("X-Multi", "2")
		w.Header().Set("Content-Length", "11")
		io.WriteString(w, "hello world")
	}))
	c := newClient(t, Options{})
	resp, body := mustGet(t, c, srv.URL+"/a?b=c")
	if body != "hello world" || resp.ContentLength != 11 || resp.StatusCode != 200 || resp.Status != "200 OK" {
		t.Fatalf("got %q, length %d, status %q", body, resp.ContentLength, resp.Status)
	}
	if resp.Proto != "HTTP/1.1" || resp.ProtoMajor != 1 || resp.ProtoMinor != 1 || resp.Close || resp.Uncompressed {
		t.Fatalf("proto %q %d.%d close %v", resp.Proto, resp.ProtoMajor, resp.ProtoMinor, resp.Close)
	}
	if got := resp.Header.Get("Etag"); got != `"abc"` {
		t.Errorf("ETag %q", got)
	}
	if got := resp.Header["X-Multi"]; len(got) != 2 || got[0] != "1" || got[1] != "2" {
		t.Errorf("X-Multi %q", got)
	}
	if resp.Request == nil || resp.Request.URL.Path != "/a" {
		t.Errorf("Request %v", resp.Request)
	}
	mustGet(t, c, srv.URL)
	if got, want := conns.Load(), int32(1); got != want {
		t.Errorf("%d connections, want %d", got, want)
	}
}

func TestChunkedBodyWithTrailer(t *testing.T) {
	srv, conns := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		io.WriteString(w, "part one, ")
		w.(http.Flusher).Flush()
		io.WriteString(w, strings.Repeat("x", 100000))
		w.Header().Set("X-Sum", "42")
	}))
	c := newClient(t, Options{})
	for range 3 {
		resp, body := mustGet(t, c, srv.URL)
		if !strings.HasPrefix(body, "part one, x") || len(body) != 100010 || resp.ContentLength != -1 {
			t.Fatalf("got %d bytes, length %d", len(body), resp.ContentLength)
		}
		if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" || resp.Header.Get("Transfer-Encoding") != "" {
			t.Errorf("TransferEncoding %q, header %q", resp.TransferEncoding, resp.Header.Get("Transfer-Encoding"))
		}
		if got := resp.Trailer.Get("X-Sum"); got != "42" {
			t.Errorf("trailer X-Sum %q", got)
		}
	}
	if got, want := conns.Load(), int32(1); got != want {
		t.Errorf("%d connections, want %d", got, want)
	}
}

// TestFraming runs crafted responses, each served twice on one connection when
// the connection may be kept, and checks the body and how many connections the
// two requests took.
func TestFraming(t *testing.T) {
	tests := []struct {
		name      string
		response  string
		close     bool // the server closes after each response
		body      string
		length    int64
		status    int
		wantConns int32
	}{
		{name: "ContentLength", response: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
			body: "hello", length: 5, status: 200, wantConns: 1},
		{name: "ContentLengthZero", response: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
			length: 0, status: 200, wantConns: 1},
		{name: "DuplicateEqualContentLength", response: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
			body: "ok", length: 2, status: 200, wantConns: 1},
		{name: "BareLF", response: "HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
			body: "ok", length: 2, status: 200, wantConns: 1},
		{name: "Chunked", response: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-T: 1\r\n\r\n",
			body: "abcde", length: -1, status: 200, wantConns: 1},
		{name: "ChunkedOverridesContentLength", response: "HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n",
			body: "ab", length: -1, status: 200, wantConns: 2},
		{name: "UntilClose", response: "HTTP/1.1 200 OK\r\n\r\nuntil the end", close: true,
			body: "until the end", length: -1, status: 200, wantConns: 2},
		{name: "HTTP10", response: "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nold",
			body: "old", length: 3, status: 200, wantConns: 2},
		{name: "HTTP10UntilClose", response: "HTTP/1.0 200 OK\r\n\r\nold", close: true,
			body: "old", length: -1, status: 200, wantConns: 2},
		{name: "ConnectionClose", response: "HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 2\r\n\r\nok",
			body: "ok", length: 2, status: 200, wantConns: 2},
		{name: "Informational", response: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
			body: "ok", length: 2, status: 200, wantConns: 1},
		{name: "NoContent", response: "HTTP/1.1 204 No Content\r\n\r\n", length: 0, status: 204, wantConns: 1},
		{name: "NotModified", response: "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", length: 0, status: 304, wantConns: 1},
		{name: "NoReason", response: "HTTP/1.1 404\r\nContent-Length: 1\r\n\r\nx", body: "x", length: 1, status: 404, wantConns: 1},
		{name: "ObsFold", response: "HTTP/1.1 200 OK\r\nX-Long: a\r\n  b\r\nContent-Length: 1\r\n\r\nx", body: "x", length: 1, status: 200, wantConns: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newRawServer(t, serveCanned(tt.close, tt.response))
			c := newClient(t, Options{})
			for range 2 {
				resp, body := mustGet(t, c, srv.url("/"))
				if body != tt.body || resp.ContentLength != tt.length || resp.StatusCode != tt.status {
					t.Fatalf("got %q, length %d, status %d; want %q, %d, %d", body, resp.ContentLength, resp.StatusCode, tt.body, tt.length, tt.status)
				}
			}
			if got := srv.conns.Load(); got != tt.wantConns {
				t.Errorf("%d connections, want %d", got, tt.wantConns)
			}
		})
	}
}

func TestObsFoldAndTrailerValues(t *testing.T) {
	srv := newRawServer(t, serveCanned(false,
		"HTTP/1.1 200 OK\r\nX-Long: a\r\n\tb\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\nX-T: 1\r\nx-t: 2\r\n\r\n"))
	resp, body := mustGet(t, newClient(t, Options{}), srv.url("/"))
	if body != "z" || resp.Header.Get("X-Long") != "a b" {
		t.Errorf("body %q, X-Long %q", body, resp.Header.Get("X-Long"))
	}
	if got := resp.Trailer["X-T"]; len(got) != 2 || got[0] != "1" || got[1] != "2" {
		t.Errorf("trailer %q", got)
	}
}

func TestMalformedResponses(t *testing.T) {
	tests := []struct{ name, response, want string }{
		{"NotHTTP", "SSH-2.0-OpenSSH_9.6\r\n\r\n", "malformed HTTP"},
		{"BadStatusCode", "HTTP/1.1 2x0 OK\r\n\r\n", "malformed HTTP status code"},
		{"StatusCodeUnder100", "HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n", "malformed HTTP status code"},
		{"HTTP2", "HTTP/2.0 200 OK\r\n\r\n", "malformed HTTP version"},
		{"NoColon", "HTTP/1.1 200 OK\r\nbogus\r\n\r\n", "malformed header line"},
		{"SpaceInKey", "HTTP/1.1 200 OK\r\nBad Key: v\r\n\r\n", "malformed header line"},
		{"FoldFirst", "HTTP/1.1 200 OK\r\n folded\r\n\r\n", "malformed header line"},
		{"BadContentLength", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "bad Content-Length"},
		{"ConflictingContentLength", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", "conflicting Content-Length"},
		{"UnsupportedTE", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "unsupported Transfer-Encoding"},
		{"HTTP10Chunked", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n0\r\n\r\n", "faulty framing"},
		{"SwitchingProtocols", "HTTP/1.1 101 Switching Protocols\r\n\r\n", "101"},
		{"TooMany1xx", strings.Repeat("HTTP/1.1 100 Continue\r\n\r\n", 6) + "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "too many 1xx"},
		{"HugeHead", "HTTP/1.1 200 OK\r\n" + strings.Repeat("X-Big: "+strings.Repeat("y", 1000)+"\r\n", 1100) + "\r\n", "larger than 1 MiB"},
		{"TruncatedHead", "HTTP/1.1 200 OK\r\nContent-Le", "unexpected EOF"},
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

func TestLongHeaderLine(t *testing.T) {
	// A field longer than the 64 KiB read buffer is still read whole.
	long := strings.Repeat("v", 100<<10)
	srv := newRawServer(t, serveCanned(false, "HTTP/1.1 200 OK\r\nX-Long: "+long+"\r\nContent-Length: 1\r\n\r\nx"))
	resp, body := mustGet(t, newClient(t, Options{}), srv.url("/"))
	if body != "x" || resp.Header.Get("X-Long") != long {
		t.Fatalf("body %q, X-Long of %d bytes", body, len(resp.Header.Get("X-Long")))
	}
}

func TestShortBody(t *testing.T) {
	for name, response := range map[string]string{
		"ContentLength": "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly this",
		"Chunked":       "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n100\r\nonly this",
		"ChunkedNoLast": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			srv := newRawServer(t, serveCanned(true, response))
			c := newClient(t, Options{})
			_, body, err := get(t, c, srv.url("/"))
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("error %v after %q, want io.ErrUnexpectedEOF", err, body)
			}
			if c.lru.Len() != 0 {
				t.Errorf("%d idle connections after a broken body", c.lru.Len())
			}
		})
	}
}

func TestKeepAliveReuse(t *testing.T) {
	data := strings.Repeat("z", 4096)
	srv, conns := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, data)
	}))
	c := newClient(t, Options{})
	for i := range 100 {
		if _, body := mustGet(t, c, srv.URL+fmt.Sprintf("/%d", i)); body != data {
			t.Fatalf("request %d: %d bytes", i, len(body))
		}
	}
	if got, want := conns.Load(), int32(1); got != want {
		t.Errorf("100 sequential requests took %d connections, want %d", got, want)
	}
}

func TestCloseUnreadBody(t *testing.T) {
	small, large := strings.Repeat("s", 1000), strings.Repeat("L", 1<<20)
	srv, conns := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		if r.URL.Path == "/large" {
			w.Header().Set("Content-Length", fmt.Sprint(len(large)))
			io.WriteString(w, large)
			return
		}
		io.WriteString(w, small)
	}))
	c := newClient(t, Options{})
	do := func(path string) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		resp, err := c.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		// The server wrote the small response's head and body in one write
		// (its 4 KiB buffer): the read of the head buffered the whole body.
		io.ReadFull(resp.Body, make([]byte, 10))
		resp.Body.Close()
	}
	do("/small")
	do("/small")
	if got := conns.Load(); got != 1 {
		t.Errorf("a small unread rest closed the connection: %d connections", got)
	}
	do("/large")
	do("/small")
	if got := conns.Load(); got != 2 {
		t.Errorf("after an unread large body: %d connections, want 2", got)
	}
}

func TestStaleIdleConnectionRetried(t *testing.T) {
	// The server answers one request per connection but does not say so, like
	// a server whose keep-alive timeout ran out.
	closed := make(chan struct{}, 5)
	canned := serveCanned(true, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	srv := newRawServer(t, func(conn net.Conn, br *bufio.Reader) {
		canned(conn, br)
		closed <- struct{}{}
	})
	c := newClient(t, Options{})
	for i := range 5 {
		if _, body := mustGet(t, c, srv.url("/")); body != "ok" {
			t.Fatalf("request %d: %q", i, body)
		}
		<-closed // the server closed the connection the client keeps idle
	}
	if got, want := srv.conns.Load(), int32(5); got != want {
		t.Errorf("%d connections, want %d", got, want)
	}
}

func TestIdle408Retried(t *testing.T) {
	// Like some servers when their keep-alive timeout runs out: a 408 on the
	// idle connection, then close. The request goes to a new connection; a 408
	// there is the answer.
	idle, sent := make(chan struct{}), make(chan struct{})
	var first sync.Once
	srv := newRawServer(t, func(conn net.Conn, br *bufio.Reader) {
		defer conn.Close()
		readRequest(br)
		io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		first.Do(func() {
			<-idle
			io.WriteString(conn, "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n")
			conn.Close()
			close(sent)
		})
	})
	c := newClient(t, Options{})
	mustGet(t, c, srv.url("/"))
	close(idle) // the client read the response: its connection is idle
	<-sent
	if _, body := mustGet(t, c, srv.url("/")); body != "ok" {
		t.Errorf("body %q", body)
	}
	if got := srv.conns.Load(); got != 2 {
		t.Errorf("%d connections, want 2", got)
	}
}

// Bytes a server sends on a connection while it is idle (a stray response, a
// stray CRLF) are never read as the answer to the next request: the connection
// is dropped before it is used, and the request goes to a new one.
func TestIdleUnsolicitedBytes(t *testing.T) {
	for name, extra := range map[string]string{
		"Response": "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL",
		"CRLF":     "\r\n",
		"Close":    "",
	} {
		t.Run(name, func(t *testing.T) {
			idle, sent := make(chan struct{}), make(chan struct{})
			var first sync.Once
			srv := newRawServer(t, func(conn net.Conn, br *bufio.Reader) {
				defer conn.Close()
				for readRequest(br) != "" {
					io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
					first.Do(func() {
						<-idle
						if extra == "" {
							conn.(*net.TCPConn).CloseWrite()
						}
						io.WriteString(conn, extra)
						close(sent)
					})
				}
			})
			c := newClient(t, Options{})
			mustGet(t, c, srv.url("/"))
			close(idle) // the client read the response: its connection is idle
			<-sent
			if _, body := mustGet(t, c, srv.url("/")); body != "ok" {
				t.Errorf("second response %q, want ok", body)
			}
			if got := srv.conns.Load(); got != 2 {
				t.Errorf("%d connections, want 2", got)
			}
		})
	}
}

func TestStaleRetryOnlyOnce(t *testing.T) {
	// The first connection answers once; every later one is closed at once, so
	// the retry on a new connection fails too, and that is the error.
	var n atomic.Int32
	closed := make(chan struct{})
	ok := serveCanned(true, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	srv := newRawServer(t, func(conn net.Conn, br *bufio.Reader) {
		if n.Add(1) == 1 {
			ok(conn, br)
			close(closed)
			return
		}
		conn.Close()
	})
	c := newClient(t, Options{})
	mustGet(t, c, srv.url("/"))
	<-closed // the server closed the connection the client keeps idle
	if _, _, err := get(t, c, srv.url("/")); err == nil {
		t.Fatal("no error")
	}
	if got := srv.conns.Load(); got != 2 {
		t.Errorf("%d connections, want 2 (one retry)", got)
	}
}

func TestCancelStalledBody(t *testing.T) {
	stallErr := errors.New("stalled")
	release := make(chan struct{})
	srv := newRawServer(t, func(conn net.Conn, br *bufio.Reader) {
		defer conn.Close()
		for {
			head := readRequest(br)
			if head == "" {
				return
			}
			if strings.HasPrefix(head, "GET /other ") {
				io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
				continue
			}
			io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
			<-release
			io.WriteString(conn, strings.Repeat("x", 990))
		}
	})
	defer close(release)
	c := newClient(t, Options{})
	ctx, cancel := context.WithCancelCause(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.url("/"), nil)
	resp, err := c.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	if n, err := resp.Body.Read(buf); n != 10 || err != nil {
		t.Fatalf("read %d, %v", n, err)
	}
	// The server sends nothing more until the test ends: only the
	// cancellation, while the read waits, ends the read.
	time.AfterFunc(50*time.Millisecond, func() { cancel(stallErr) })
	_, err = io.ReadAll(resp.Body)
	if !errors.Is(err, context.Canceled) || !errors.Is(err, stallErr) {
		t.Errorf("error %v, want context.Canceled and the cause", err)
	}
	resp.Body.Close()
	if c.lru.Len() != 0 {
		t.Errorf("the connection of a cancelled request went idle")
	}
	mustGet(t, c, srv.url("/other")) // on a new connection
	if got := srv.conns.Load(); got != 2 {
		t.Errorf("%d connections, want 2", got)
	}
}

func TestCancelWaitingForHead(t *testing.T) {
	srv := newRawServer(t, func(conn net.Conn, br *bufio.Reader) {
		defer conn.Close()
		readRequest(br)
		io.Copy(io.Discard, br) // never answer
	})
	c := newClient(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.url("/"), nil)
	_, err := c.RoundTrip(req) // the server never answers
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want context.DeadlineExceeded", err)
	}
}

func TestRequestHead(t *testing.T) {
	heads := make(chan string, 1)
	srv := newRawServer(t, func(conn net.Conn, br *bufio.Reader) {
		defer conn.Close()
		heads <- readRequest(br)
		io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	})
	c := newClient(t, Options{})
	u := strings.Replace(srv.url("/p%20q/r?s=t&u"), "http://", "http://user:pw@", 1)
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("X-B", "2")
	req.Header.Set("X-A", " 1 ")
	req.Header.Set("Accept", "*/*")
	req.Header["x-raw"] = []string{"kept as is"}
	if _, err := c.RoundTrip(req); err != nil {
		t.Fatal(err)
	}
	want := "GET /p%20q/r?s=t&u HTTP/1.1\r\nHost: " + srv.ln.Addr().String() + "\r\n" +
		"User-Agent: Go-http-client/1.1\r\nAuthorization: Basic dXNlcjpwdw==\r\n" +
		"Accept: */*\r\nX-A: 1\r\nX-B: 2\r\nx-raw: kept as is\r\n\r\n"
	if got := <-heads; got != want {
		t.Errorf("request head\n%q\nwant\n%q", got, want)
	}
}

func TestRequestHeadHostAndUserAgent(t *testing.T) {
	heads := make(chan string, 1)
	srv := newRawServer(t, func(conn net.Conn, br *bufio.Reader) {
		defer conn.Close()
		heads <- readRequest(br)
		io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	})
	req, _ := http.NewRequest(http.MethodGet, srv.url(""), nil)
	req.Host = "example.com"
	req.Header.Set("User-Agent", "")
	req.Close = true
	if _, err := newClient(t, Options{}).RoundTrip(req); err != nil {
		t.Fatal(err)
	}
	if got, want := <-heads, "GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"; got != want {
		t.Errorf("request head %q, want %q", got, want)
	}
}

func TestUnsupportedRequests(t *testing.T) {
	c := newClient(t, Options{})
	for _, tt := range []struct {
		method, url string
		body        io.Reader
		want        string
	}{
		{http.MethodPost, "http://127.0.0.1:1/", nil, "unsupported"},
		{http.MethodGet, "http://127.0.0.1:1/", strings.NewReader("x"), "unsupported"},
		{http.MethodGet, "http://bücher.example/", nil, "unsupported"},
		{http.MethodGet, "https://127.0.0.1:1/", nil, "no TLSConfig"},
		{http.MethodGet, "ftp://127.0.0.1:1/", nil, "unsupported protocol scheme"},
	} {
		req, _ := http.NewRequest(tt.method, tt.url, tt.body)
		_, err := c.RoundTrip(req)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s %s: error %v, want %q", tt.method, tt.url, err, tt.want)
		}
		if tt.want == "unsupported" && !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("%s %s: error %v is not errors.ErrUnsupported", tt.method, tt.url, err)
		}
	}
	srv := newRawServer(t, serveCanned(false, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
	req, _ := http.NewRequest(http.MethodGet, srv.url("/"), nil)
	req.Header.Set("X-Bad", "a\r\nInjected: 1")
	if _, err := c.RoundTrip(req); err == nil || !strings.Contains(err.Error(), "invalid header field value") {
		t.Errorf("header injection: %v", err)
	}
	req.Header = http.Header{"User-Agent": {"a\nInjected: 1"}}
	if _, err := c.RoundTrip(req); err == nil || !strings.Contains(err.Error(), "invalid header field value") {
		t.Errorf("User-Agent injection: %v", err)
	}
}

func TestDialError(t *testing.T) {
	addr := testutil.RefusedAddr(t) // refuses connections, and no other test's listener gets it
	_, _, err := get(t, newClient(t, Options{}), "http://"+addr+"/")
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "dial" {
		t.Fatalf("error %v, want a dial *net.OpError", err)
	}
}

func TestCancelDuringDial(t *testing.T) {
	dialing := make(chan struct{})
	c := newClient(t, Options{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		close(dialing)
		<-ctx.Done()
		return nil, &net.OpError{Op: "dial", Net: network, Err: ctx.Err()}
	}})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-dialing; cancel() }()
	_, err := c.RoundTrip(mustRequest(t, ctx, "http://example.invalid/"))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.hosts) != 0 {
		t.Errorf("%d pools left after a failed dial", len(c.hosts))
	}
}

func TestReadAfterClose(t *testing.T) {
	srv := newRawServer(t, serveCanned(false, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"))
	resp, err := newClient(t, Options{}).RoundTrip(mustRequest(t, context.Background(), srv.url("/")))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, err := resp.Body.Read(make([]byte, 1)); err == nil {
		t.Error("read after Close succeeded")
	}
	if err := resp.Body.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// RoundTrip tells a ClientTrace in the request's context the host:port it
// wants and the connection it got, as net/http's Transport does: the second
// request reuses the first one's connection, idle in between.
func TestTraceGetConnGotConn(t *testing.T) {
	srv, _ := countingServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	c := newClient(t, Options{})
	var log []string
	var conns []net.Conn
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		GetConn: func(hostPort string) { log = append(log, "get "+hostPort) },
		GotConn: func(ci httptrace.GotConnInfo) {
			log = append(log, fmt.Sprintf("got reused=%v idle=%v", ci.Reused, ci.WasIdle))
			conns = append(conns, ci.Conn)
		},
	})
	for range 2 {
		resp, err := c.RoundTrip(mustRequest(t, ctx, srv.URL+"/"))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	host := strings.TrimPrefix(srv.URL, "http://")
	want := []string{"get " + host, "got reused=false idle=false", "get " + host, "got reused=true idle=true"}
	if fmt.Sprint(log) != fmt.Sprint(want) {
		t.Errorf("trace %q, want %q", log, want)
	}
	if len(conns) != 2 || conns[0] == nil || conns[0] != conns[1] {
		t.Errorf("connections %v: want the same one twice", conns)
	}
}

// RoundTrip makes one exchange: a redirect is the response, for the
// http.Client above to follow.
func TestRedirectIsTheResponse(t *testing.T) {
	srv, _ := countingServer(t, http.RedirectHandler("/next", http.StatusFound))
	resp, body := mustGet(t, newClient(t, Options{}), srv.URL+"/first")
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/next" || resp.Request.URL.Path != "/first" {
		t.Errorf("%d Location %q for %v (%q)", resp.StatusCode, resp.Header.Get("Location"), resp.Request.URL, body)
	}
}
