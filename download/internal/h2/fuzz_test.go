package h2

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Fuzz scripts: frames a server sends in answer to a GET (stream 1). Each is
// a type, flags, a stream (0, 1, 3 or 2), a payload length and the payload.
// A HEADERS or CONTINUATION payload is text, one "name:value" per line, that
// the script encodes with HPACK (one encoder across the script, as a server
// has); any other payload is sent as it is.
type scriptFrame struct {
	typ     http2.FrameType
	flags   http2.Flags
	stream  byte // 0-3: stream 0, 1, 3, 2
	payload string
}

func script(frames ...scriptFrame) []byte {
	var b []byte
	for _, f := range frames {
		b = append(b, byte(f.typ), byte(f.flags), f.stream, byte(len(f.payload)))
		b = append(b, f.payload...)
	}
	return b
}

var streamOf = [4]uint32{0, 1, 3, 2}

// encodeScript turns fuzz input into the bytes the server writes.
func encodeScript(data []byte) []byte {
	var out, hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for len(data) >= 4 {
		typ, flags, sid, n := http2.FrameType(data[0]%10), http2.Flags(data[1]), streamOf[data[2]%4], int(data[3])
		data = data[4:]
		payload := data[:min(n, len(data))]
		data = data[len(payload):]
		if typ == http2.FrameHeaders || typ == http2.FrameContinuation {
			hb.Reset()
			for _, line := range strings.Split(string(payload), "\n") {
				if line == "" {
					continue
				}
				i := strings.IndexByte(line[1:], ':') + 1
				if i == 0 {
					i = len(line)
				}
				name, value := line[:i], strings.TrimPrefix(line[i:], ":")
				enc.WriteField(hpack.HeaderField{Name: name, Value: value})
			}
			payload = hb.Bytes()
			flags &= http2.FlagHeadersEndStream | http2.FlagHeadersEndHeaders
			if typ == http2.FrameContinuation {
				flags &= http2.FlagContinuationEndHeaders
			}
		}
		var hdr [9]byte
		hdr[0], hdr[1], hdr[2] = byte(len(payload)>>16), byte(len(payload)>>8), byte(len(payload))
		hdr[3], hdr[4] = byte(typ), byte(flags)
		binary.BigEndian.PutUint32(hdr[5:], sid)
		out.Write(hdr[:])
		out.Write(payload)
	}
	return out.Bytes()
}

// serveScript plays the server's side on nc: it reads the client's frames
// (discarding them) and, once the request's HEADERS came, writes SETTINGS and
// the script, then half-closes and reads until the client closes.
func serveScript(nc net.Conn, raw []byte) {
	defer nc.Close()
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(nc, preface); err != nil {
		return
	}
	fr := http2.NewFramer(io.Discard, nc)
	fr.SetMaxReadFrameSize(1 << 24)
	got := make(chan struct{})
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		sent := false
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				if !sent {
					close(got)
				}
				io.Copy(io.Discard, nc) // past a frame error, until the client closes
				return
			}
			if _, ok := f.(*http2.HeadersFrame); ok && !sent {
				sent = true
				close(got)
			}
		}
	}()
	// A server's SETTINGS first, then the script.
	nc.Write([]byte{0, 0, 0, 4, 0, 0, 0, 0, 0})
	select {
	case <-got:
	case <-time.After(2 * time.Second):
		return
	}
	nc.Write(raw)
	nc.(interface{ CloseWrite() error }).CloseWrite()
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
	}
}

type outcome struct {
	status int
	body   []byte
	err    error
}

// fetchOurs and fetchNetHTTP run inside a synctest bubble: the connection is
// in memory (the server half-closes it after its script, and the client may
// still write, a SETTINGS ACK or a WINDOW_UPDATE, while it reads the rest),
// and their time limits are on the bubble's clock: reached only when the
// client waits for something that never comes.
func fetchOurs(raw []byte) (outcome, bool) {
	port := uint16(20000)
	c := New(Options{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		a, b := memPipe(port)
		port++
		go serveScript(b, raw)
		return a, nil
	}})
	c.plain = true
	defer c.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	status, body, err := get(ctx, c, "https://fuzz.example/x")
	return outcome{status, body, err}, ctx.Err() == nil
}

func fetchNetHTTP(raw []byte) (outcome, bool) {
	a, b := memPipe(30000)
	go serveScript(b, raw)
	defer a.Close()
	// x/net/http2's ClientConn on a connection given (net/http's own
	// NewClientConn dials): the same HTTP/2 client code net/http bundles.
	//lint:ignore SA1019 the comparison needs a client over a connection it is given
	cc, err := (&http2.Transport{}).NewClientConn(a)
	if err != nil {
		return outcome{err: err}, true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://fuzz.example/x", nil)
	resp, err := cc.RoundTrip(req)
	if err != nil {
		return outcome{err: err}, ctx.Err() == nil
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return outcome{resp.StatusCode, body, err}, ctx.Err() == nil
}

// FuzzFramesVsNetHTTP answers the same GET with the same frames, to this
// client and to x/net/http2's (net/http's HTTP/2 client). Whenever this
// client returns a response and reads its body to the end without an error,
// x/net/http2's must have too, with the same status and the same bytes: h2
// may refuse what net/http accepts (it is stricter on Content-Length, 101,
// and DATA on a 204 or 304), never the other way round, but for one
// intentional difference: a 204 or 304 that ends with its head is complete
// here whatever its Content-Length, where net/http waits for that many bytes
// (RFC 9110: neither has content). And it must always
// return, whatever the frames: the script ends with the connection's close.
func FuzzFramesVsNetHTTP(f *testing.F) {
	const (
		H, D, R, G, C = http2.FrameHeaders, http2.FrameData, http2.FrameRSTStream, http2.FrameGoAway, http2.FrameContinuation
		ES, EH        = http2.FlagHeadersEndStream, http2.FlagHeadersEndHeaders
	)
	for _, s := range [][]scriptFrame{
		{{H, EH, 1, ":status:200\ncontent-length:5"}, {D, ES, 1, "hello"}},
		{{H, EH, 1, ":status:200"}, {D, 0, 1, "hel"}, {D, ES, 1, "lo"}},
		{{H, EH, 1, ":status:200\ncontent-length:10"}, {D, ES, 1, "hello"}},
		{{H, EH, 1, ":status:200\ncontent-length:2"}, {D, ES, 1, "hello"}},
		{{H, EH, 1, ":status:103\nlink:</a>"}, {H, EH, 1, ":status:200"}, {D, ES, 1, "x"}},
		{{H, 0, 1, ":status:200"}, {C, EH, 1, "etag:\"e\""}, {D, ES, 1, "x"}},
		{{H, EH, 1, ":status:200"}, {D, 0, 1, "x"}, {H, ES | EH, 1, "x-t:1"}},
		{{H, EH | ES, 1, ":status:304\ncontent-length:9"}},
		{{H, EH, 1, ":status:206\ncontent-range:bytes 0-1/9"}, {D, http2.FlagDataPadded | ES, 1, "\x02abzz"}},
		{{H, EH, 1, ":status:200"}, {R, 0, 1, "\x00\x00\x00\x08"}},
		{{G, 0, 0, "\x00\x00\x00\x00\x00\x00\x00\x00"}, {H, EH, 1, ":status:200"}, {D, ES, 1, "late"}},
		{{H, EH, 3, ":status:200"}, {D, ES, 1, "x"}},
		{{D, ES, 1, "data first"}},
		{{H, EH, 1, ":status:200\nContent-Length:1"}, {D, ES, 1, "x"}},
	} {
		f.Add(script(s...))
	}
	f.Fuzz(func(t *testing.T, data []byte) { synctest.Test(t, func(t *testing.T) { compareFetches(t, data) }) })
}

func compareFetches(t *testing.T, data []byte) {
	raw := encodeScript(data)
	ours, done := fetchOurs(raw)
	if !done {
		t.Fatalf("h2 did not return on a script that ends: %v", ours.err)
	}
	if ours.err != nil {
		return
	}
	theirs, done := fetchNetHTTP(raw)
	if !done {
		return // net/http's trouble, not ours
	}
	if theirs.err != nil {
		if errors.Is(theirs.err, context.DeadlineExceeded) {
			return
		}
		if (ours.status == 204 || ours.status == 304) && len(ours.body) == 0 && errors.Is(theirs.err, io.ErrUnexpectedEOF) {
			return // net/http wants a Content-Length's bytes after a 304 too (RFC 9110 says none come)
		}
		t.Fatalf("h2 accepted %d with %q, net/http failed: %v", ours.status, ours.body, theirs.err)
	}
	if ours.status != theirs.status || !bytes.Equal(ours.body, theirs.body) {
		t.Fatalf("h2: %d %q; net/http: %d %q", ours.status, ours.body, theirs.status, theirs.body)
	}
}
