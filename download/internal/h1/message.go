package h1

import (
	"bufio"
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/net/http/httpguts"
)

const (
	maxHeadBytes = 1 << 20 // a response head (status line and fields) or a trailer
	max1xx       = 5       // informational responses skipped before the final one
	maxDrain     = 4 << 10 // unread body bytes a Close may skip to keep the connection
)

var (
	errHeadTooLarge = errors.New("h1: response head larger than 1 MiB")
	errClosedBody   = errors.New("http: read on closed response body")
	errIdle408      = errors.New("h1: 408 Request Timeout on an idle connection")
)

// exchange writes req on cn and reads the response head. On failure cn is
// closed, and stale reports a failure before any byte of the response on a
// reused connection, which another connection may not have.
func (c *Client) exchange(ctx context.Context, p *hostPool, cn *conn, req *http.Request) (resp *http.Response, stale bool, err error) {
	var stop func() bool
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, cn.expire)
	}
	fail := func(err error, early bool) (*http.Response, bool, error) {
		if stop != nil {
			stop()
		}
		cn.nc.Close()
		return nil, early && cn.reused && (err == errIdle408 || isStale(err)), err
	}
	if err := writeRequest(cn.bw, req); err != nil {
		return fail(err, false)
	}
	if err := cn.bw.Flush(); err != nil {
		return fail(err, true)
	}
	if _, err := cn.br.Peek(1); err != nil {
		return fail(err, true)
	}
	r := &response{}
	if err := r.read(cn, req); err != nil {
		return fail(err, false)
	}
	if r.StatusCode == http.StatusRequestTimeout && cn.reused {
		// Most likely sent before the server closed the idle connection, not
		// an answer to this request (net/http ignores it likewise).
		return fail(errIdle408, true)
	}
	b := &r.body
	b.c, b.p, b.cn, b.ctx, b.stop, b.resp = c, p, cn, ctx, stop, &r.Response
	if r.Body == nil { // no body to read: the connection is free now
		r.Body = http.NoBody
		b.release(true)
	}
	return &r.Response, false, nil
}

// isStale reports whether err is how a connection that the server closed while
// idle fails.
func isStale(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED)
}

// writeRequest buffers the request head: the request line, Host, User-Agent
// (net/http's default unless the header sets one, empty for none),
// Authorization from the URL's user info, then the header fields sorted by name.
func writeRequest(w *bufio.Writer, req *http.Request) error {
	u := req.URL
	host := req.Host
	if host == "" {
		host = u.Host
	}
	if i := strings.Index(host, "%25"); strings.HasPrefix(host, "[") && i > 0 {
		host = host[:i] + host[strings.LastIndexByte(host, ']'):] // RFC 6874: no zone on the wire
	}
	if !httpguts.ValidHostHeader(host) {
		host = "" // as net/http: an invalid Host is sent empty rather than altered
	}
	// The request-target is u.RequestURI(), written in pieces to save building it.
	path, query := u.EscapedPath(), u.RawQuery
	if u.Opaque != "" || u.ForceQuery {
		path, query = u.RequestURI(), ""
	} else if path == "" {
		path = "/"
	}
	if hasCTL(path) || hasCTL(query) {
		return errors.New("net/http: can't write control character in Request.URL")
	}
	w.WriteString("GET ")
	w.WriteString(path)
	if query != "" {
		w.WriteByte('?')
		w.WriteString(query)
	}
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(host)
	w.WriteString("\r\n")
	ua := "Go-http-client/1.1"
	if v, ok := req.Header["User-Agent"]; ok {
		ua = ""
		if len(v) > 0 {
			ua = v[0]
		}
	}
	if !httpguts.ValidHeaderFieldValue(ua) {
		return errors.New("net/http: invalid header field value for \"User-Agent\"")
	}
	if ua != "" {
		writeField(w, "User-Agent", ua)
	}
	if u.User != nil && req.Header.Get("Authorization") == "" {
		pw, _ := u.User.Password()
		writeField(w, "Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(u.User.Username()+":"+pw)))
	}
	if req.Close && !httpguts.HeaderValuesContainsToken(req.Header["Connection"], "close") {
		w.WriteString("Connection: close\r\n")
	}
	var buf [32]string
	keys := buf[:0]
	for k := range req.Header {
		switch k {
		case "Host", "User-Agent", "Content-Length", "Transfer-Encoding", "Trailer":
		default:
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("net/http: invalid header field name %q", k)
		}
		for _, v := range req.Header[k] {
			if !httpguts.ValidHeaderFieldValue(v) {
				return fmt.Errorf("net/http: invalid header field value for %q", k)
			}
			writeField(w, k, v)
		}
	}
	_, err := w.WriteString("\r\n")
	return err
}

func writeField(w *bufio.Writer, k, v string) {
	w.WriteString(k)
	w.WriteString(": ")
	w.WriteString(textproto.TrimString(v))
	w.WriteString("\r\n")
}

// response is a response and its body in one allocation.
type response struct {
	http.Response
	body body
}

// read reads the response head from cn, skipping informational responses, and
// sets up the body's framing (RFC 9112 section 6). r.Body stays nil when the
// response has no body.
func (r *response) read(cn *conn, req *http.Request) error {
	for n := 0; ; n++ {
		head, err := cn.readHead()
		if err != nil {
			return err
		}
		if err := r.parseHead(string(head)); err != nil {
			return err
		}
		if r.StatusCode == http.StatusSwitchingProtocols {
			return errors.New("h1: unexpected 101 Switching Protocols")
		}
		if r.StatusCode < 100 || r.StatusCode >= 200 {
			break
		}
		if n == max1xx {
			return errors.New("h1: too many 1xx informational responses")
		}
	}
	if cap(cn.head) > readBufSize {
		cn.head = nil // do not keep a huge head's buffer for the connection's life
	}
	h := r.Header
	r.Request, r.TLS = req, cn.tls
	b := &r.body
	b.keep = r.ProtoAtLeast(1, 1) && !httpguts.HeaderValuesContainsToken(h["Connection"], "close") &&
		!req.Close && !httpguts.HeaderValuesContainsToken(req.Header["Connection"], "close")
	r.Close = !b.keep
	// The framing fields are checked whatever the status, as net/http does:
	// a 304 with a bad Content-Length is as malformed as a 200.
	te, chunked := h["Transfer-Encoding"]
	if chunked {
		delete(h, "Transfer-Encoding")
		if !r.ProtoAtLeast(1, 1) {
			// RFC 9112 section 6.1: its framing is faulty, most likely chunks
			// forwarded by an HTTP/1.0 hop. net/http reads it to the close,
			// chunk sizes and all, which is not the body.
			return fmt.Errorf("h1: HTTP/1.0 response with Transfer-Encoding %q: faulty framing", te)
		}
		if len(te) != 1 || !equalFoldASCII(te[0], "chunked") {
			return fmt.Errorf("h1: unsupported Transfer-Encoding %q", te)
		}
		r.TransferEncoding = []string{"chunked"}
	}
	n := int64(-1)
	if cl := h["Content-Length"]; cl != nil {
		for _, v := range cl[1:] {
			if textproto.TrimString(v) != textproto.TrimString(cl[0]) {
				return fmt.Errorf("h1: conflicting Content-Length headers %q", cl)
			}
		}
		u, err := strconv.ParseUint(textproto.TrimString(cl[0]), 10, 63)
		if err != nil {
			return fmt.Errorf("h1: bad Content-Length %q", cl[0])
		}
		n = int64(u)
		if chunked {
			// RFC 9112 section 6.3: Transfer-Encoding wins, and the connection
			// is closed after the message. Both at once is how responses are
			// split or smuggled: where this one ends is in doubt, so nothing
			// after it is read as the next response.
			b.keep, r.Close = false, true
		}
	}
	switch {
	case r.StatusCode == http.StatusNoContent || r.StatusCode == http.StatusNotModified:
		return nil
	case chunked:
		delete(h, "Content-Length")
		r.ContentLength, b.n = -1, -1
		b.chunked = httputil.NewChunkedReader(cn.br)
	case n == 0:
		return nil
	case n > 0:
		r.ContentLength, b.n = n, n
	default: // the body ends when the server closes the connection
		r.ContentLength, b.n, b.keep, r.Close = -1, -1, false, true
	}
	r.Body = b
	return nil
}

// readHead reads a message head, the lines up to and including the empty one
// that ends it, into cn.head.
func (cn *conn) readHead() ([]byte, error) {
	cn.head = cn.head[:0]
	start := 0 // of the current line
	for {
		frag, err := cn.br.ReadSlice('\n')
		if len(cn.head)+len(frag) > maxHeadBytes {
			return nil, errHeadTooLarge
		}
		cn.head = append(cn.head, frag...)
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err == io.EOF && len(cn.head) > 0:
			return nil, io.ErrUnexpectedEOF
		case err != nil:
			return nil, err
		}
		if line := cn.head[start:]; len(line) == 1 || len(line) == 2 && line[0] == '\r' {
			return cn.head, nil
		}
		start = len(cn.head)
	}
}

// parseHead parses a status line and header fields. The field values are
// substrings of s, which is one allocation for the whole head.
func (r *response) parseHead(s string) error {
	line, s := cutLine(s)
	proto, status, ok := strings.Cut(line, " ")
	if !ok {
		return fmt.Errorf("h1: malformed HTTP response %q", truncate(line))
	}
	status = strings.TrimLeft(status, " ")
	code, _, _ := strings.Cut(status, " ")
	if len(code) != 3 || code[0] < '1' || code[0] > '5' || code[1] < '0' || code[1] > '9' || code[2] < '0' || code[2] > '9' {
		return fmt.Errorf("h1: malformed HTTP status code %q", truncate(code))
	}
	major, minor, ok := http.ParseHTTPVersion(proto)
	if !ok || major != 1 {
		return fmt.Errorf("h1: malformed HTTP version %q", truncate(proto))
	}
	r.Status, r.StatusCode = status, int(code[0]-'0')*100+int(code[1]-'0')*10+int(code[2]-'0')
	r.Proto, r.ProtoMajor, r.ProtoMinor = proto, major, minor
	r.Header = make(http.Header, strings.Count(s, "\n")-1) // not the empty line
	return parseFields(s, r.Header)
}

// parseFields adds the header fields in s, up to its empty line, to h.
func parseFields(s string, h http.Header) error {
	vals := make([]string, strings.Count(s, "\n")) // one backing array for single values
	last := ""                                     // key of the previous field, for obs-fold
	for i := 0; ; i++ {
		var line string
		if line, s = cutLine(s); line == "" {
			return nil
		}
		if line[0] == ' ' || line[0] == '\t' { // obs-fold: continues the previous value
			if last == "" || !httpguts.ValidHeaderFieldValue(line) {
				return fmt.Errorf("h1: malformed header line %q", truncate(line))
			}
			// Joined by one space, and trimmed as a whole as net/textproto does:
			// an empty first line adds no leading space.
			vv := h[last]
			if v := &vv[len(vv)-1]; *v == "" {
				*v = textproto.TrimString(line)
			} else {
				*v += " " + textproto.TrimString(line)
			}
			continue
		}
		// A control byte in a value (a bare CR, a NUL) is malformed, as for
		// net/textproto: it is checked before trimming, which would drop a CR.
		k, v, ok := strings.Cut(line, ":")
		if !ok || !httpguts.ValidHeaderFieldName(k) || !httpguts.ValidHeaderFieldValue(v) {
			return fmt.Errorf("h1: malformed header line %q", truncate(line))
		}
		k, v = textproto.CanonicalMIMEHeaderKey(k), textproto.TrimString(v)
		if old, ok := h[k]; ok {
			h[k] = append(old, v)
		} else {
			vals[i] = v
			h[k] = vals[i : i+1 : i+1]
		}
		last = k
	}
}

// cutLine splits s after its first line, dropping the line's LF or CRLF.
func cutLine(s string) (line, rest string) {
	i := strings.IndexByte(s, '\n')
	if i < 0 {
		return s, ""
	}
	line, rest = s[:i], s[i+1:]
	return strings.TrimSuffix(line, "\r"), rest
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// hasCTL reports whether s has a control byte or DEL, tab included, which
// net/http refuses in a request-target.
func hasCTL(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c == 0x7f {
			return true
		}
	}
	return false
}

// equalFoldASCII is strings.EqualFold without Unicode's folds, under which
// "chunKed" spelt with a Kelvin sign (U+212A) is "chunked": net/http and other
// parsers refuse it, and two parsers that disagree on the framing of a
// response are how responses are smuggled.
func equalFoldASCII(s, t string) bool {
	if len(s) != len(t) {
		return false
	}
	for i := 0; i < len(s); i++ {
		a, b := s[i], t[i]
		if 'A' <= a && a <= 'Z' {
			a += 'a' - 'A'
		}
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		if a != b {
			return false
		}
	}
	return true
}

// body is a response body framed by Content-Length (n >= 0), chunked encoding
// or the end of the connection. Once it is read to the end, or fails, or is
// closed, its connection goes back to the pool or is closed.
type body struct {
	c       *Client
	p       *hostPool
	cn      *conn // nil once released
	ctx     context.Context
	stop    func() bool // stops the context's AfterFunc; nil for a context that never ends
	resp    *http.Response
	chunked io.Reader
	n       int64 // bytes left with Content-Length, else -1
	keep    bool  // the connection may serve another request after this body
	err     error // sticky: io.EOF at the end
	closed  bool
}

// Read reads the body. A body shorter than its Content-Length ends with
// io.ErrUnexpectedEOF.
func (b *body) Read(p []byte) (int, error) {
	if b.closed {
		return 0, errClosedBody
	}
	if b.err != nil {
		return 0, b.err
	}
	var n int
	var err error
	switch {
	case b.n >= 0:
		if int64(len(p)) > b.n {
			p = p[:b.n]
		}
		n, err = b.cn.br.Read(p)
		b.n -= int64(n)
		if b.n == 0 {
			err = io.EOF
		} else if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
	case b.chunked != nil:
		n, err = b.chunked.Read(p)
		if err == io.EOF {
			err = b.readTrailer()
		}
	default:
		n, err = b.cn.br.Read(p)
	}
	if err != nil {
		if err != io.EOF {
			err = ctxErr(b.ctx, err)
		}
		b.err = err
		b.release(err == io.EOF)
	}
	return n, err
}

// readTrailer reads the trailer section that ends a chunked body into
// resp.Trailer. It returns io.EOF when all went well.
func (b *body) readTrailer() error {
	head, err := b.cn.readHead()
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if err != nil || len(head) <= 2 {
		return cmp.Or(err, io.EOF)
	}
	if b.resp.Trailer == nil {
		b.resp.Trailer = make(http.Header)
	}
	return cmp.Or(parseFields(string(head), b.resp.Trailer), io.EOF)
}

// Close releases the connection. One whose body was not read to the end is
// closed, unless the rest is a few bytes already buffered.
func (b *body) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	if b.cn == nil {
		return nil
	}
	if b.err == nil && b.n >= 0 && b.n <= maxDrain && int64(b.cn.br.Buffered()) >= b.n {
		b.cn.br.Discard(int(b.n))
		b.n = 0
		b.release(true)
		return nil
	}
	b.release(false)
	return nil
}

// release hands the connection back: to the idle pool when reuse is true and
// allowed, else to be closed. A connection the context may have poked is never
// reused.
func (b *body) release(reuse bool) {
	cn := b.cn
	if cn == nil {
		return
	}
	b.cn = nil
	if b.stop != nil && !b.stop() {
		reuse = false
	}
	b.c.finish(b.p, cn, reuse && b.keep)
}

var _ io.ReadCloser = (*body)(nil)
