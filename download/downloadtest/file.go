package downloadtest

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"time"
)

// FileOption configures how one file added with Server.Add is served.
type FileOption func(*file)

// file is a served file and its remaining faults. Guarded by Server.mu.
type file struct {
	body    []byte
	etag    string    // sent as ETag when non-empty
	modtime time.Time // sent as Last-Modified when non-zero
	header  http.Header

	hits int // requests received so far

	status      int
	statusLeft  int
	retryAfter  string
	redirect    string
	redirLeft   int
	drop        int64
	dropLeft    int
	short       int64
	shortLeft   int
	stallAt     int64
	stallFor    time.Duration
	stallLeft   int
	delay       time.Duration
	ignoreRange bool
	ignoreIf    bool
	noLength    bool

	changeAfter int // > 0: serve newBody from request changeAfter+1 on
	newBody     []byte
	newETag     string
}

// plan is what one request gets, decided under the lock.
type plan struct {
	body        []byte
	etag        string
	modtime     time.Time
	header      http.Header
	status      int // fault status, 0: serve the body
	retryAfter  string
	redirect    string
	drop, short int64 // -1: none
	stallAt     int64 // -1: none
	stallFor    time.Duration
	delay       time.Duration
	ignoreRange bool
	ignoreIf    bool
	noLength    bool
}

// fire reports whether a fault with *left firings remaining fires now, and
// consumes one firing.
func fire(left *int) bool {
	switch {
	case *left == Always:
		return true
	case *left > 0:
		*left--
		return true
	}
	return false
}

// next decides the answer to the file's next request.
func (f *file) next() plan {
	f.hits++
	p := plan{body: f.body, etag: f.etag, modtime: f.modtime, header: f.header,
		retryAfter: f.retryAfter, delay: f.delay, ignoreRange: f.ignoreRange,
		ignoreIf: f.ignoreIf, noLength: f.noLength, drop: -1, short: -1, stallAt: -1}
	if f.changeAfter > 0 && f.hits > f.changeAfter {
		p.body = f.newBody
		if f.etag != "" {
			p.etag = f.newETag
		}
		if !f.modtime.IsZero() {
			p.modtime = f.modtime.Add(time.Hour)
		}
	}
	switch {
	case fire(&f.redirLeft):
		p.redirect = f.redirect
		return p
	case fire(&f.statusLeft):
		p.status = f.status
		return p
	}
	if fire(&f.dropLeft) {
		p.drop = f.drop
	}
	if fire(&f.shortLeft) {
		p.short = f.short
	}
	if fire(&f.stallLeft) {
		p.stallAt, p.stallFor = f.stallAt, f.stallFor
	}
	return p
}

// Status answers code (with its status text as the body) to the first times
// requests, then serves the file normally. Use Redirect for 3xx.
func Status(code, times int) FileOption {
	return func(f *file) { f.status, f.statusLeft = code, times }
}

// RetryAfter adds "Retry-After: v" (seconds or an HTTP date) to the answers of
// Status.
func RetryAfter(v string) FileOption { return func(f *file) { f.retryAfter = v } }

// Redirect answers "302 Found" to the given location (absolute, or relative to the
// request) for the first times requests, then serves the file.
func Redirect(to string, times int) FileOption {
	return func(f *file) { f.redirect, f.redirLeft = to, times }
}

// DropAfter makes the first times responses that carry the body send their
// headers (with the response's full Content-Length), then n bytes of body, then
// close the connection abruptly (hijack and close; with HTTP/2, reset the stream).
func DropAfter(n int64, times int) FileOption {
	return func(f *file) { f.drop, f.dropLeft = n, times }
}

// ShortBody makes the first times responses that carry the body announce their
// full Content-Length but end the handler after n bytes of body; the server then
// closes the connection, as a crashed upstream behind a proxy would.
func ShortBody(n int64, times int) FileOption {
	return func(f *file) { f.short, f.shortLeft = n, times }
}

// Stall makes the first times responses that carry the body send n bytes of body,
// then send nothing for d (or until the client goes away or the server closes),
// then the rest.
func Stall(n int64, d time.Duration, times int) FileOption {
	return func(f *file) { f.stallAt, f.stallFor, f.stallLeft = n, d, times }
}

// Delay waits d before answering every request (time to first byte), or until the
// client goes away or the server closes.
func Delay(d time.Duration) FileOption { return func(f *file) { f.delay = d } }

// ETag sets the file's ETag (quoted if s is not already, e.g. `W/"x"` stays weak);
// "" sends none. By default a file has a strong ETag derived from its content.
func ETag(s string) FileOption { return func(f *file) { f.etag = quoteETag(s) } }

// LastModified sends Last-Modified: t, which If-Range may then carry.
func LastModified(t time.Time) FileOption { return func(f *file) { f.modtime = t } }

// NoValidator sends neither ETag nor Last-Modified (options after it may add one):
// a client cannot safely resume such a file.
func NoValidator() FileOption {
	return func(f *file) { f.etag, f.modtime = "", time.Time{} }
}

// IgnoreRange makes the server ignore Range and If-Range: every answer is
// "200 OK" with the whole body.
func IgnoreRange() FileOption { return func(f *file) { f.ignoreRange = true } }

// IgnoreIfRange makes the server honour Range but ignore If-Range, so a changed
// file is answered with "206 Partial Content" of the new body, under its new
// validator: only a client that checks the 206's validator avoids a splice.
func IgnoreIfRange() FileOption { return func(f *file) { f.ignoreIf = true } }

// NoContentLength sends the body without Content-Length (chunked, HTTP/1.1) and
// ignores Range, like a server streaming generated content.
func NoContentLength() FileOption { return func(f *file) { f.noLength = true } }

// Header adds a response header to every answer that serves the body, e.g.
// Header("Content-Encoding", "gzip").
func Header(key, value string) FileOption {
	return func(f *file) {
		if f.header == nil {
			f.header = make(http.Header)
		}
		f.header.Add(key, value)
	}
}

// ChangeAfter serves newBody with ETag newETag (derived from newBody when "";
// none if the file has no ETag) and a Last-Modified an hour later, from request
// attempts+1 on: the file changed on the server between attempts. A client
// resuming with If-Range then gets the whole new body.
func ChangeAfter(attempts int, newBody []byte, newETag string) FileOption {
	return func(f *file) {
		if newETag == "" {
			newETag = defaultETag(newBody)
		}
		f.changeAfter, f.newBody, f.newETag = attempts, newBody, quoteETag(newETag)
	}
}

func quoteETag(s string) string {
	if s == "" || strings.HasSuffix(s, `"`) {
		return s
	}
	return `"` + s + `"`
}

// serveFile answers r as p says, through a faultWriter for the body faults.
func (s *Server) serveFile(w http.ResponseWriter, r *http.Request, p plan) {
	if p.delay > 0 && !s.pause(r, p.delay) {
		return
	}
	if p.redirect != "" {
		http.Redirect(w, r, p.redirect, http.StatusFound)
		return
	}
	if p.status != 0 {
		if p.retryAfter != "" {
			w.Header().Set("Retry-After", p.retryAfter)
		}
		http.Error(w, http.StatusText(p.status), p.status)
		return
	}
	h := w.Header()
	for k, v := range p.header {
		h[k] = append([]string(nil), v...)
	}
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", "application/octet-stream")
	}
	if p.etag != "" {
		h.Set("ETag", p.etag)
	}
	if p.ignoreRange || p.noLength {
		r.Header.Del("Range")
		r.Header.Del("If-Range")
	}
	if p.ignoreIf {
		r.Header.Del("If-Range")
	}
	fw := &faultWriter{ResponseWriter: w, s: s, r: r, p: p}
	if p.noLength {
		if !p.modtime.IsZero() {
			h.Set("Last-Modified", p.modtime.UTC().Format(http.TimeFormat))
		}
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			for b := p.body; len(b) > 0; {
				n := min(len(b), 32<<10)
				if _, err := fw.Write(b[:n]); err != nil {
					return
				}
				http.NewResponseController(w).Flush()
				b = b[n:]
			}
		}
		return
	}
	http.ServeContent(fw, r, "", p.modtime, bytes.NewReader(p.body))
}

// pause waits d, the client going away or the server closing; it reports
// whether d elapsed.
func (s *Server) pause(r *http.Request, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
	case <-s.closing:
	}
	return false
}

var errFault = errors.New("downloadtest: injected fault")

// faultWriter passes the body through, stalling, cutting it short or dropping
// the connection at the planned offsets.
type faultWriter struct {
	http.ResponseWriter
	s    *Server
	r    *http.Request
	p    plan
	sent int64
	dead bool
}

func (w *faultWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *faultWriter) Write(b []byte) (int, error) {
	total := 0
	for len(b) > 0 {
		if w.dead {
			return total, errFault
		}
		// The next offset where something happens.
		limit := int64(len(b))
		for _, at := range []int64{w.p.stallAt, w.p.drop, w.p.short} {
			if at >= w.sent && at-w.sent < limit {
				limit = at - w.sent
			}
		}
		if limit > 0 {
			n, err := w.ResponseWriter.Write(b[:limit])
			total += n
			w.sent += int64(n)
			b = b[n:]
			if err != nil {
				return total, err
			}
			continue
		}
		rc := http.NewResponseController(w.ResponseWriter)
		switch w.sent {
		case w.p.stallAt:
			w.p.stallAt = -1
			rc.Flush()
			if !w.s.pause(w.r, w.p.stallFor) {
				w.dead = true
			}
		case w.p.short:
			rc.Flush()
			w.dead = true
		case w.p.drop:
			rc.Flush()
			w.dead = true
			conn, buf, err := rc.Hijack()
			if err != nil {
				// HTTP/2 cannot hijack: abort the handler, which resets the stream.
				panic(http.ErrAbortHandler)
			}
			buf.Flush()
			conn.Close()
		}
	}
	return total, nil
}
