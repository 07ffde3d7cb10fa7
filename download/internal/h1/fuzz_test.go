package h1

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http/httpguts"
)

// FuzzResponseVsNetHTTP reads the same bytes as the answer to a GET with h1 (a
// real request through Client, over a connection that serves the bytes) and
// with net/http's ReadResponse (skipping 1xx responses as its Transport does).
// When both accept the head, they must agree on the status, the version, the
// framing of the body (none, Content-Length, chunked, to the close), the
// fields haul uses (Content-Length, Transfer-Encoding, Content-Range, ETag),
// the body's bytes and whether reading it failed; h1 must not keep a
// connection net/http would close, and where h1 keeps it, both must agree
// where the message ended.
//
// Where exactly one of them accepts, the case must be one of these intentional
// differences (see knownDifference):
//   - h1 is stricter: a status code outside 100-599 ("099", "600", "+20"); an
//     HTTP major version other than 1; a field name that is not a token (net/http
//     keeps "Bad Key: v" as a key with a space); Transfer-Encoding on an
//     HTTP/1.0 response (net/http ignores it and reads to the close, chunk
//     sizes and all); 101 Switching Protocols (h1 makes no upgrades); a head
//     over 1 MiB.
//   - h1 is more lenient: it skips the framing fields of 1xx responses
//     unchecked, where net/http rejects a 1xx whose Content-Length or
//     Transfer-Encoding is bad; it ignores the Trailer field, where net/http
//     rejects one that names Content-Length, Transfer-Encoding or Trailer; it
//     reads a trailer ended by bare LFs, or one longer than net/http's 4 KiB
//     read buffer, where net/http fails the body.
//
// Not compared: Close where h1 closes and net/http keeps (h1 also closes after
// HTTP/1.0 and after Transfer-Encoding with Content-Length); a duplicated
// Content-Length field, which net/http folds into one (Get agrees); the
// trailer fields net/http declares from the Trailer field but never received
// (Get agrees).
func FuzzResponseVsNetHTTP(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: \"e\"\r\n\r\nhello",
		"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 2-4/10\r\nContent-Length: 3\r\n\r\nabc",
		"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
		"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1 2\r\n\r\nab",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-T: 1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabc\r\n",
		"HTTP/1.1 200 OK\r\nTrailer: X-T, ETag\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\nX-T: 1\r\nEtag: \"e\"\r\nx-t: 2\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTrailer: Content-Length\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 9\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nBad Key: 1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\n\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\nabc",
		"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\n\r\nuntil the close",
		"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\n\r\nok",
		"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nold",
		"HTTP/1.0 200 OK\r\n\r\nold until the close",
		"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nold",
		"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nold\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX-Long: a\r\n  b\r\n\tc\r\nContent-Length: 1\r\n\r\nx",
		"HTTP/1.1 200 OK\r\n folded first\r\nContent-Length: 1\r\n\r\nx",
		"HTTP/1.1 200 OK\r\nETag: \"a\"\r\n  \"b\"\r\nContent-Length: 1\r\n\r\nx",
		"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nX: a\rb\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nX: a\x00b\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nX: \xe9t\xe9\tok\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nBad Key: v\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\n: empty\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 100 Continue\r\nContent-Length: x\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		strings.Repeat("HTTP/1.1 100 Continue\r\n\r\n", 6) + "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
		"HTTP/0.9 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 100 Continue\r\nBad Key: v\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\n",
		"HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\nabc",
		"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n",
		"HTTP/1.1 304 Not Modified\r\nContent-Length: x\r\n\r\n",
		"HTTP/1.1 404\r\nContent-Length: 1\r\n\r\nx",
		"HTTP/1.1  200  OK\r\nContent-Length: 1\r\n\r\nx",
		"HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 600 Odd\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 +20 Odd\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 2x0 OK\r\n\r\n",
		"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
		"HTTP/0.9 200 OK\r\n\r\nx",
		"HTTP/1.2 200 OK\r\nContent-Length: 1\r\n\r\nx",
		"SSH-2.0-OpenSSH_9.6\r\n\r\n",
		"\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Le",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		a, b := readH1(t, in), readNetHTTP(in)
		if (a.err == nil) != (b.err == nil) {
			if knownDifference(a, b) {
				return
			}
			t.Fatalf("h1 error %v, net/http error %v", a.err, b.err)
		}
		if a.err != nil {
			return
		}
		if a.status != b.status || a.major != b.major || a.minor != b.minor {
			t.Errorf("status, version: h1 %d %d.%d, net/http %d %d.%d", a.status, a.major, a.minor, b.status, b.major, b.minor)
		}
		if a.framing != b.framing || a.length != b.length || a.chunked != b.chunked {
			t.Errorf("framing: h1 %s, length %d, chunked %v; net/http %s, length %d, chunked %v",
				a.framing, a.length, a.chunked, b.framing, b.length, b.chunked)
		}
		for _, k := range []string{"Content-Length", "Transfer-Encoding", "Content-Range", "Etag"} {
			if va, vb := a.header.Get(k), b.header.Get(k); va != vb {
				t.Errorf("%s: h1 %q, net/http %q", k, va, vb)
			}
		}
		if !bytes.Equal(a.body, b.body) {
			t.Errorf("body: h1 %q, net/http %q", a.body, b.body)
		}
		if (a.bodyErr == nil) != (b.bodyErr == nil) && !knownBodyDifference(a, b) {
			t.Errorf("reading the body: h1 error %v, net/http error %v", a.bodyErr, b.bodyErr)
		}
		if a.bodyErr == nil && b.bodyErr == nil {
			for _, h := range []http.Header{a.trailer, b.trailer} {
				for k := range h {
					if va, vb := a.trailer[k], b.trailer[k]; (len(va) > 0 || len(vb) > 0) && !slices.Equal(va, vb) {
						t.Errorf("trailer %s: h1 %q, net/http %q", k, va, vb)
					}
				}
			}
		}
		if b.close && !a.close {
			t.Errorf("h1 keeps a connection that net/http closes")
		}
		if a.kept && b.bodyErr == nil && a.consumed != b.consumed {
			t.Errorf("h1 kept the connection after %d bytes, net/http read %d", a.consumed, b.consumed)
		}
	})
}

// parsed is what either client made of a response.
type parsed struct {
	err          error // reading the head
	status       int
	major, minor int
	framing      string
	length       int64
	chunked      bool // Response.TransferEncoding says chunked
	header       http.Header
	body         []byte
	bodyErr      error
	trailer      http.Header
	close        bool
	kept         bool // h1 only: the connection went back to the pool
	consumed     int  // bytes of the input the response took
	failed1xx    bool // net/http only: the head it failed on was a 1xx one
	// net/http only, for any head read, 1xx ones included: a version other
	// than 1.x, a field name that is not a token.
	oddVersion, oddNames bool
	headTooLarge         bool
}

func (p parsed) atLeast11() bool { return p.major > 1 || p.major == 1 && p.minor >= 1 }

func framing(resp *http.Response) string {
	switch {
	case resp.StatusCode/100 == 1 || resp.StatusCode == 204 || resp.StatusCode == 304:
		return "none"
	case len(resp.TransferEncoding) > 0:
		return "chunked"
	case resp.ContentLength >= 0:
		return "length"
	}
	return "close"
}

// readH1 makes a GET through a Client whose one connection serves in.
func readH1(t *testing.T, in []byte) parsed {
	fc := &fuzzConn{r: bytes.NewReader(in)}
	dialed := false
	c := New(Options{DialContext: func(context.Context, string, string) (net.Conn, error) {
		if dialed {
			return nil, fmt.Errorf("second dial")
		}
		dialed = true
		return fc, nil
	}})
	defer c.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodGet, "http://fuzz.example/", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.roundTrip(req)
	if err != nil {
		return parsed{err: err, headTooLarge: err == errHeadTooLarge}
	}
	p := parsed{status: resp.StatusCode, major: resp.ProtoMajor, minor: resp.ProtoMinor,
		framing: framing(resp), length: resp.ContentLength, chunked: len(resp.TransferEncoding) > 0, header: resp.Header}
	p.body, p.bodyErr = io.ReadAll(resp.Body)
	resp.Body.Close()
	p.trailer, p.close = resp.Trailer, resp.Close
	c.mu.Lock()
	p.kept = c.lru.Len() == 1
	c.mu.Unlock()
	p.consumed = len(in) - fc.r.Len() // a kept connection has nothing buffered
	return p
}

// readNetHTTP reads in with http.ReadResponse, as net/http's Transport does:
// through a 4 KiB bufio.Reader, skipping up to five 1xx responses.
func readNetHTTP(in []byte) parsed {
	r := bytes.NewReader(in)
	br := bufio.NewReader(r)
	req, _ := http.NewRequest(http.MethodGet, "http://fuzz.example/", nil)
	var resp *http.Response
	oddVersion, oddNames := false, false
	for n := 0; ; n++ {
		is1xx := next1xx(br)
		var err error
		resp, err = http.ReadResponse(br, req)
		if err != nil {
			return parsed{err: err, failed1xx: is1xx, oddVersion: oddVersion, oddNames: oddNames}
		}
		oddVersion = oddVersion || resp.ProtoMajor != 1
		oddNames = oddNames || !allTokens(resp.Header)
		if resp.StatusCode < 100 || resp.StatusCode > 199 || resp.StatusCode == 101 {
			break
		}
		if n == 5 {
			return parsed{err: fmt.Errorf("too many 1xx informational responses")}
		}
	}
	p := parsed{status: resp.StatusCode, major: resp.ProtoMajor, minor: resp.ProtoMinor,
		framing: framing(resp), length: resp.ContentLength, chunked: len(resp.TransferEncoding) > 0, header: resp.Header,
		oddVersion: oddVersion, oddNames: oddNames}
	p.body, p.bodyErr = io.ReadAll(resp.Body)
	resp.Body.Close()
	p.trailer, p.close = resp.Trailer, resp.Close
	p.consumed = len(in) - r.Len() - br.Buffered()
	return p
}

// next1xx reports whether the status line br holds next has a 1xx code, as
// ReadResponse would parse it.
func next1xx(br *bufio.Reader) bool {
	br.Peek(1)
	buf, _ := br.Peek(br.Buffered())
	line, _, _ := bytes.Cut(buf, []byte("\n"))
	_, status, _ := strings.Cut(string(line), " ")
	code, _, _ := strings.Cut(strings.TrimLeft(status, " "), " ")
	return len(code) == 3 && code[0] == '1' && code[1] >= '0' && code[1] <= '9' && code[2] >= '0' && code[2] <= '9'
}

// knownDifference reports whether the head was accepted by only one of h1 (a)
// and net/http (b) for one of the reasons listed at FuzzResponseVsNetHTTP.
func knownDifference(a, b parsed) bool {
	if a.err != nil { // h1 is stricter
		msg := a.err.Error()
		switch {
		case a.headTooLarge:
			return true
		case strings.Contains(msg, "malformed HTTP status code"):
			return b.status < 100 || b.status > 599 // 1xx heads are in range
		case strings.Contains(msg, "malformed HTTP version"):
			return b.oddVersion
		case strings.Contains(msg, "malformed header line"):
			return b.oddNames
		case strings.Contains(msg, "unexpected 101"):
			return b.status == 101
		case strings.Contains(msg, "faulty framing"):
			return !b.atLeast11()
		}
		return false
	}
	return b.failed1xx || strings.Contains(b.err.Error(), "bad trailer key") // h1 is more lenient
}

// knownBodyDifference reports whether reading the body failed for only one of
// them for a reason listed at FuzzResponseVsNetHTTP: both read the same bytes,
// and they differ on the trailer.
func knownBodyDifference(a, b parsed) bool {
	if a.bodyErr != nil {
		return strings.Contains(a.bodyErr.Error(), "malformed header line") && !allTokens(b.trailer)
	}
	return a.framing == "chunked" && strings.Contains(b.bodyErr.Error(), "trailer")
}

func allTokens(h http.Header) bool {
	for k := range h {
		if !httpguts.ValidHeaderFieldName(k) {
			return false
		}
	}
	return true
}

// fuzzConn is a connection whose peer sends r, a byte at a time, and then
// closes. A byte at a time, h1's reads stop where the response ends, so the
// connection is kept (nothing buffered beyond it) wherever h1 would keep it,
// and where it ends is compared with net/http.
type fuzzConn struct{ r *bytes.Reader }

func (c *fuzzConn) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1]
	}
	return c.r.Read(p)
}

func (c *fuzzConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *fuzzConn) Close() error                     { return nil }
func (c *fuzzConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *fuzzConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *fuzzConn) SetDeadline(time.Time) error      { return nil }
func (c *fuzzConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fuzzConn) SetWriteDeadline(time.Time) error { return nil }
