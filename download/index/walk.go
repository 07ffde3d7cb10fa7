package index

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/html"

	"github.com/haul/haul/download/input"
	"github.com/haul/haul/download/internal/retry"
	"github.com/haul/haul/internal/urlid"
)

// HTTPClient is what the walker needs from an HTTP client: the engine's
// (download.HTTPClient) will do, and *http.Client. It follows redirects.
type HTTPClient interface {
	Do(*http.Request) (*http.Response, error)
}

// Source yields the entries of a list; *input.Scanner and download.Source
// are ones. Next returns io.EOF at the end.
type Source interface {
	Next() (input.Entry, error)
}

// Options configures a Walker. Zero values mean the defaults given per field.
type Options struct {
	// Header is sent with every index request (User-Agent, -H), but for
	// Accept, which asks for HTML: Caddy answers JSON to a client that
	// prefers it.
	Header http.Header
	// Filter chooses the files to give (--accept/--reject); nil gives all.
	Filter *Filter
	// MaxDepth is how many levels of subdirectories below a root are listed
	// (default 64). Deeper ones are reported as *DirError with ErrTooDeep: a
	// server that follows a symbolic link to a directory above it lists the
	// same tree again one level down, without end.
	MaxDepth int
	// MaxPage is the most bytes of one index page read (default 64 MiB, half
	// a million entries in nginx's markup). A page is streamed through a
	// temporary file, so its size costs disk, not memory: the bound is for a
	// server that never ends a page.
	MaxPage int64
	// Retries is how many more attempts a page gets after a connection
	// error, a stall, a body cut short, 408, 429 or 5xx (default 3; negative:
	// none). Backoff doubles from Options.Backoff (default 1 s); Retry-After
	// is honoured, up to 5 minutes (retry.MaxAfter).
	Retries int
	Backoff time.Duration
	// Timeout aborts an attempt at a page that receives nothing for this
	// long, waiting for its headers included (default 30 s).
	Timeout time.Duration
	// QueueLen is how many directories waiting to be listed are kept in
	// memory (default 1024); more spill to a temporary file.
	QueueLen int
	// TempDir holds the temporary files: the page being read and the
	// directories that spilled ("": os.TempDir(); where that is a tmpfs,
	// they cost memory after all: the output directory's disk is better).
	// Both are unlinked as soon as they are created.
	TempDir string
}

// Defaults of Options.
const (
	DefaultMaxDepth = 64
	DefaultMaxPage  = 64 << 20
	DefaultRetries  = 3
	DefaultBackoff  = time.Second
	DefaultTimeout  = 30 * time.Second
	DefaultQueueLen = 1024

	maxBackoff = time.Minute
)

// Errors a *DirError may wrap.
var (
	// ErrTooDeep: the directory is more than Options.MaxDepth levels below
	// its root, and was not listed.
	ErrTooDeep = errors.New("too many levels below the start (a symbolic link loop?): not listed")
	// ErrPageTooLarge: the page went on past Options.MaxPage; the entries
	// before that point were given.
	ErrPageTooLarge = errPageTooLarge
	// ErrOutside: the directory redirected outside the tree being walked
	// (above its start, or, for a subdirectory, out of the directory that
	// listed it), and was not listed.
	ErrOutside = errors.New("redirected outside the directory being walked")
	// ErrStalled: nothing arrived for Options.Timeout, on every attempt.
	ErrStalled = errStalled
)

// DirError is a directory that could not be listed, or listed only in part.
// Next returns it and may be called again: the walk goes on with the next
// directory. It is a download.SourceError: the engine reports it as a failed
// entry for URL.
type DirError struct {
	URL    string // the directory's URL
	Line   int    // the input line of the root it was found below
	Status int    // the HTTP status that failed it, 0 for none
	Err    error
}

func (e *DirError) Error() string { return "index " + urlid.Redact(e.URL) + ": " + e.Err.Error() }
func (e *DirError) Unwrap() error { return e.Err }

// SourceFailure returns what the engine reports of a directory that failed
// (download.SourceError).
func (e *DirError) SourceFailure() (url string, line, status int, cause error) {
	return e.URL, e.Line, e.Status, e.Err
}

// statusError is a response that was not a success.
type statusError struct{ code int }

func (e *statusError) Error() string {
	return fmt.Sprintf("server returned %d %s", e.code, http.StatusText(e.code))
}

// errClosed: the walk was stopped by Close.
var errClosed = errors.New("index: walker closed")

// Walker lists directory indexes and gives the files found, one entry per
// file: a Source for the engine. Next and Close are its only methods; Next
// is not for concurrent use, and Close may be called at any time.
//
// # What is walked
//
// Each entry of the source whose URL's path ends in "/" (or is empty) is a
// root: the walker lists it and every directory below it, breadth first (as
// wget -r), and gives each file found as an entry with Out "" (the layout
// names it), no checks, and the root's Line. Index pages are not given, nor
// is the root's own line, unless it turns out to be a file (below): out=,
// sha256= and size= on a root's line apply to no file of its tree and are
// ignored. Every other entry of the source, bad lines
// (*input.LineError) included, is given as it comes, in order, so a list may
// mix files and directories. Roots are walked one after the other, in the
// order of the list.
//
// Only a page's direct children are followed (see Links), so a walk never
// goes above its root nor to another host, and reaches each URL once: a
// tree is walked without a set of visited directories, which would grow
// with the tree. Only a server can make it revisit, by a symbolic link to a
// directory above (MaxDepth stops that chain) or a redirect (below).
//
// # Directories written without their "/"
//
// A listing that writes its directories with their trailing "/" (nginx,
// Apache, lighttpd, Caddy, python, Go's FileServer) is taken at its word: a
// link without one is a file. h2o's file.dirlisting writes directories
// without it (<A HREF="a">, and ".." for the parent), and a request for /a is
// redirected to /a/: saved as the file a, that is a listing, and the tree
// below it is lost. So, as wget -r does (it follows the redirect and lists
// what it finds), a link whose request the server redirects to the same
// path plus "/" is a directory, walked as one, and never given as a file.
//
// wget finds this out by fetching every link; the walker, which fetches no
// file, asks with a HEAD, and only where it has to: for a link without "/"
// on a page of a tree none of whose pages so far has linked a directory of
// its server with the "/" (a subdirectory, its parent "../", a breadcrumb). Every link of an h2o tree is asked about, one request each
// (--accept and --reject spare none: a name they refuse may be a
// directory's); nginx's and lighttpd's "../" and Caddy's breadcrumbs come
// before any entry, and cost none; a listing with no such link (Apache's and
// python's top, Go's FileServer) costs one for each file before its first
// subdirectory. It is the walker that asks, not the engine once it downloads
// the link: the engine would have to hand the directory back to a walk that
// may have ended by then. What a listing that marks directories writes
// without "/" is not asked about: Go's FileServer writes a symbolic link to a
// directory so, and it is given as a file.
//
// # Redirects
//
// The client follows them. Links resolve against the page's final URL, and
// a root's final URL is where its tree is (http:// → https://, /latest/ →
// /v2/, another host), unless it is above the root as written on the same
// host: that would widen -np's bound, so it fails with ErrOutside. A
// subdirectory whose final URL is not below the directory that listed it
// fails with ErrOutside too (a redirect there could loop); one redirected to
// a sibling is walked there, and its files may then be given twice (the
// engine fetches a URL listed twice once).
//
// # Answers that are not listings
//
// A 4xx (but 408 and 429) fails the directory at once with a *DirError, and
// so does anything else once the retries are spent; the walk goes on. An
// answer that is not HTML (by Content-Type, or by its first 512 bytes when
// it has none) is a file after all, as wget -r would save it: a root is
// given as its own entry, line and all, and a subdirectory as a file entry
// with its URL (if the filter keeps its name). A page cut short (the
// connection dropped, a stall) is fetched again and its first links, given
// already, are passed over: listings are sorted, so they are the same links
// unless the directory changed meanwhile.
//
// # Memory
//
// Bounded whatever the size of the tree: the page being read streams from
// the network to a temporary file on a goroutine of its own (so a consumer
// that stops pulling never leaves a connection unread) and back through the
// tokenizer, whose buffer holds one tag (at most 1 MiB); the directories
// waiting to be listed are a FIFO of at most QueueLen in memory, the rest in
// a second temporary file (see frontier); nothing is kept of a page once
// read but the count of its links, and nothing of a directory once listed.
// On disk: the largest page (at most MaxPage) and the widest stretch of
// waiting directories, one line each.
type Walker struct {
	ctx     context.Context
	cancel  context.CancelCauseFunc
	client  HTTPClient
	src     Source
	opts    Options
	header  http.Header
	retries int

	mu       sync.Mutex // held by Next; Close takes it only when free
	closing  atomic.Bool
	released bool
	end      error // what Next returns once released

	root  input.Entry // the line being walked
	scope string      // dirKey of its final URL: every page is below it
	// marked: a page of this root's tree has written a link to a directory
	// of its server with the trailing "/", so its server's listings mark
	// their directories, and a link written without one is a file.
	marked bool
	front  *frontier
	spool  *spool
	page   *page // the listing being read, nil between pages
}

// page is the listing being read.
type page struct {
	it     item
	p      *parser
	cancel context.CancelCauseFunc
	stall  *stallTimer
	given  int // links taken from the page so far, counting earlier attempts
	skip   int // links of an earlier attempt, given already, to pass over
	tries  int // attempts made at the page
}

// Expand returns a Walker that gives src's entries, each root (a URL ending
// in "/") replaced by the files found below it. Cancelling ctx stops it:
// Next then returns the cause. Close must be called once it is no longer used.
func Expand(ctx context.Context, client HTTPClient, src Source, opts Options) *Walker {
	if opts.MaxDepth <= 0 {
		opts.MaxDepth = DefaultMaxDepth
	}
	if opts.MaxPage <= 0 {
		opts.MaxPage = DefaultMaxPage
	}
	if opts.Backoff <= 0 {
		opts.Backoff = DefaultBackoff
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.QueueLen <= 0 {
		opts.QueueLen = DefaultQueueLen
	}
	retries := opts.Retries
	switch {
	case retries == 0:
		retries = DefaultRetries
	case retries < 0:
		retries = 0
	}
	h := opts.Header.Clone()
	if h == nil {
		h = make(http.Header)
	}
	h.Set("Accept", "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1")
	ctx, cancel := context.WithCancelCause(ctx)
	return &Walker{ctx: ctx, cancel: cancel, client: client, src: src, opts: opts, header: h,
		retries: retries, front: newFrontier(opts.QueueLen, opts.TempDir), spool: newSpool(opts.TempDir)}
}

// NewSource returns a Walker over roots, as Expand over a list of those
// lines: root i is line i+1, checked as the input checks a line (a bad one
// is an *input.LineError; a blank one is skipped).
func NewSource(ctx context.Context, client HTTPClient, roots []string, opts Options) *Walker {
	return Expand(ctx, client, &sliceSource{lines: roots}, opts)
}

type sliceSource struct {
	lines []string
	i     int
}

func (s *sliceSource) Next() (input.Entry, error) {
	for s.i < len(s.lines) {
		s.i++
		if e, ok, err := input.ParseLine([]byte(s.lines[s.i-1]), s.i); ok || err != nil {
			return e, err
		}
	}
	return input.Entry{}, io.EOF
}

// IsIndex reports whether rawURL names a directory index: its path, before
// any query or fragment, ends in "/" or is empty ("http://host").
func IsIndex(rawURL string) bool {
	s, _, _ := strings.Cut(rawURL, "#")
	s, _, _ = strings.Cut(s, "?")
	i := strings.Index(s, "://")
	if i < 0 {
		return false
	}
	rest := s[i+3:]
	return !strings.Contains(rest, "/") || strings.HasSuffix(rest, "/")
}

// Next returns the next entry: a file found below a root, or an entry of the
// source given as it came. It returns a *DirError for a directory that could
// not be listed, and then may be called again, as after an *input.LineError
// of the source; io.EOF at the end. Any other error ends the walk (the
// context's cause, a temporary file that could not be written).
func (w *Walker) Next() (input.Entry, error) {
	w.mu.Lock()
	defer w.unlock()
	for {
		if w.released {
			return input.Entry{}, w.end
		}
		if err := context.Cause(w.ctx); err != nil {
			w.release(err)
			return input.Entry{}, err
		}
		if w.page != nil {
			if e, ok, err := w.readPage(); ok || err != nil {
				return e, err
			}
			continue
		}
		it, ok, err := w.front.pop()
		if err != nil {
			w.release(err)
			return input.Entry{}, err
		}
		if ok {
			if e, ok, err := w.open(it, 0, 0); ok || err != nil {
				return e, err
			}
			continue
		}
		e, err := w.src.Next()
		if err == io.EOF {
			w.release(io.EOF)
		}
		if err != nil || !IsIndex(e.URL) {
			return e, err
		}
		w.root, w.scope, w.marked = e, "", false
		u, _, _ := strings.Cut(e.URL, "#") // never sent
		w.front.push(item{url: u})         // cannot fail: the frontier is empty
	}
}

// Close stops the walk and frees its temporary files, at once if no Next is
// running, else as soon as it returns (a Next waiting on the source is not
// interrupted). Next then returns an error.
func (w *Walker) Close() error {
	w.cancel(errClosed)
	w.closing.Store(true)
	if w.mu.TryLock() {
		w.release(errClosed)
		w.mu.Unlock()
	}
	return nil
}

// unlock ends Next: a Close that came meanwhile found the lock taken and
// left the release to it. closing is stored before Close tries the lock and
// read after Next drops it, so one of the two always releases.
func (w *Walker) unlock() {
	w.mu.Unlock()
	if w.closing.Load() && w.mu.TryLock() {
		w.release(errClosed)
		w.mu.Unlock()
	}
}

func (w *Walker) release(end error) {
	if w.released {
		return
	}
	w.released, w.end = true, end
	w.endPage()
	w.spool.close()
	w.front.close()
	w.cancel(end)
}

// open fetches the directory it and starts reading its listing, passing
// over its first skip links. tries counts the attempts made at it already.
// It returns an entry when the directory is a file after all.
func (w *Walker) open(it item, skip, tries int) (input.Entry, bool, error) {
	resp, ctx, cancel, stall, err := w.fetch(http.MethodGet, it.url, &tries)
	if err != nil {
		return input.Entry{}, false, w.dirError(it.url, err)
	}
	// After redirects, the final request's URL is the page's.
	var u *url.URL
	if resp.Request != nil && resp.Request.URL != nil {
		u = resp.Request.URL
	} else {
		u, _ = url.Parse(it.url) // NewRequest parsed it
	}
	final := u.String()
	body := io.ReadCloser(resp.Body)
	isHTML, known := htmlType(resp.Header.Get("Content-Type"))
	if !known {
		br := bufio.NewReaderSize(resp.Body, 512)
		head, err := br.Peek(512)
		if err != nil && err != io.EOF {
			// Cut or stalled before 512 bytes: what it is cannot be told.
			stall.stop()
			if c := context.Cause(ctx); c != nil && c != context.Canceled {
				err = c
			}
			cancel(errAbandoned)
			resp.Body.Close()
			if retryable(err) && tries <= w.retries && w.ctx.Err() == nil {
				return w.open(it, skip, tries)
			}
			return input.Entry{}, false, w.dirError(it.url, err)
		}
		isHTML, _ = htmlType(http.DetectContentType(head))
		body = struct {
			io.Reader
			io.Closer
		}{br, resp.Body}
	}
	if !isHTML {
		stall.stop()
		cancel(errAbandoned)
		body.Close()
		if it.depth == 0 {
			return w.root, true, nil
		}
		if !w.opts.Filter.Match(lastName(it.url)) {
			return input.Entry{}, false, nil
		}
		return input.Entry{URL: it.url, Line: w.root.Line, Size: -1}, true, nil
	}
	if err := w.checkRedirect(it, u, final); err != nil {
		stall.stop()
		cancel(errAbandoned)
		body.Close()
		return input.Entry{}, false, err
	}
	if err := w.spool.start(ctx, cancel, body, w.opts.MaxPage, stall.reset); err != nil {
		stall.stop()
		cancel(errAbandoned)
		w.release(err)
		return input.Entry{}, false, err
	}
	w.page = &page{it: it, p: newParser(u, w.spool), cancel: cancel, stall: stall, skip: skip, tries: tries}
	return input.Entry{}, false, nil
}

// checkRedirect sets the scope from a root's final URL u, or checks a
// subdirectory's against the directory that listed it.
func (w *Walker) checkRedirect(it item, u *url.URL, final string) error {
	key := dirKey(u)
	written, err := url.Parse(it.url)
	if err != nil {
		return w.dirError(it.url, err)
	}
	wkey := dirKey(written)
	if it.depth == 0 {
		if len(key) < len(wkey) && strings.HasPrefix(wkey, key) {
			return w.dirError(it.url, fmt.Errorf("%w: above it, to %s", ErrOutside, urlid.Redact(final)))
		}
		w.scope = key
		return nil
	}
	if key == wkey {
		return nil
	}
	parent := wkey[:strings.LastIndexByte(wkey[:len(wkey)-1], '/')+1]
	if len(key) <= len(parent) || !strings.HasPrefix(key, parent) || !strings.HasPrefix(key, w.scope) {
		return w.dirError(it.url, fmt.Errorf("%w: to %s", ErrOutside, urlid.Redact(final)))
	}
	return nil
}

// readPage gives the next file of the page being read, and queues its
// subdirectories; ok is false when the page has ended (or failed: err).
func (w *Walker) readPage() (input.Entry, bool, error) {
	pg := w.page
	for {
		l, err := pg.p.next()
		if err != nil {
			w.endPage()
			if err == io.EOF {
				return input.Entry{}, false, nil
			}
			if c := context.Cause(w.ctx); c != nil {
				return input.Entry{}, false, c
			}
			if retryable(err) && pg.tries <= w.retries {
				// Cut short: again, from the start, passing over what was given.
				if retry.Sleep(w.ctx, w.backoff(pg.tries)) != nil {
					return input.Entry{}, false, context.Cause(w.ctx)
				}
				return w.open(pg.it, pg.given, pg.tries)
			}
			return input.Entry{}, false, w.dirError(pg.it.url, err)
		}
		if pg.given < pg.skip {
			pg.given++
			continue
		}
		pg.given++
		w.marked = w.marked || pg.p.slashed
		if !l.Dir && !w.marked {
			dir, err := w.probe(l.URL)
			if err != nil {
				return input.Entry{}, false, err
			}
			if dir {
				l.URL, l.Dir = l.URL+"/", true
			}
		}
		if l.Dir {
			if pg.it.depth >= w.opts.MaxDepth {
				return input.Entry{}, false, &DirError{URL: l.URL, Line: w.root.Line, Err: ErrTooDeep}
			}
			if err := w.front.push(item{url: l.URL, depth: pg.it.depth + 1}); err != nil {
				w.release(err)
				return input.Entry{}, false, err
			}
			continue
		}
		if !w.opts.Filter.Match(l.Name) {
			continue
		}
		return input.Entry{URL: l.URL, Line: w.root.Line, Size: -1}, true, nil
	}
}

func (w *Walker) endPage() {
	if w.page == nil {
		return
	}
	w.spool.stop()
	w.page.stall.stop()
	w.page.cancel(errAbandoned)
	w.page = nil
}

// probe reports whether the link u, written without a trailing "/" on a
// page whose server has not shown that its listings mark directories, is a
// directory: one whose request the server redirects to u plus "/", as every
// server does for a directory asked for without its "/" (wget -r follows
// that redirect and lists what it finds there). It asks with HEAD, which
// costs a file no transfer; anything but a success (after the retries of a
// page) leaves u a file, for the engine to fetch and report. The error is
// one that stops the walk.
func (w *Walker) probe(u string) (bool, error) {
	tries := 0
	resp, _, cancel, stall, err := w.fetch(http.MethodHead, u, &tries)
	if err != nil {
		if c := context.Cause(w.ctx); c != nil {
			return false, c
		}
		return false, nil
	}
	stall.stop()
	resp.Body.Close()
	cancel(nil)
	return resp.Request != nil && isDirRedirect(u, resp.Request.URL), nil
}

// isDirRedirect reports whether final, where a request for link ended, is
// link's own path plus "/" on its server, however either is escaped.
func isDirRedirect(link string, final *url.URL) bool {
	if final == nil || final.RawQuery != "" || final.ForceQuery || !strings.HasSuffix(final.EscapedPath(), "/") {
		return false
	}
	dir, err := url.Parse(link + "/")
	return err == nil && dirKey(final) == dirKey(dir)
}

// fetch asks for u (GET a directory, HEAD a probe), with retries; *tries
// counts the attempts. On success the response's body is the caller's, as
// are its request's context, the cancel of that context, and its stall timer.
func (w *Walker) fetch(method, u string, tries *int) (*http.Response, context.Context, context.CancelCauseFunc, *stallTimer, error) {
	waited := false // Retry-After replaced the backoff
	for {
		if *tries > 0 && !waited {
			if retry.Sleep(w.ctx, w.backoff(*tries)) != nil {
				return nil, nil, nil, nil, context.Cause(w.ctx)
			}
		}
		ctx, cancel := context.WithCancelCause(w.ctx)
		stall := newStallTimer(w.opts.Timeout, cancel)
		req, err := http.NewRequestWithContext(ctx, method, u, nil)
		if err != nil {
			stall.stop()
			cancel(nil)
			return nil, nil, nil, nil, err
		}
		req.Header = w.header.Clone()
		*tries++
		resp, err := w.client.Do(req)
		if err == nil && resp.StatusCode/100 == 2 {
			return resp, ctx, cancel, stall, nil
		}
		stall.stop()
		var wait time.Duration
		if err != nil {
			if c := context.Cause(ctx); c != nil && c != context.Canceled {
				err = c // a stall, not the transport's words for it
			}
		} else {
			// A small body is read so that the connection may be used again.
			io.CopyN(io.Discard, resp.Body, 2<<10)
			resp.Body.Close()
			err = &statusError{resp.StatusCode}
			wait = retry.After(resp.Header.Get("Retry-After"), time.Now())
		}
		cancel(nil)
		if c := context.Cause(w.ctx); c != nil {
			return nil, nil, nil, nil, c
		}
		if !retryable(err) || *tries > w.retries {
			return nil, nil, nil, nil, err
		}
		waited = wait > 0
		if waited {
			if retry.Sleep(w.ctx, wait) != nil {
				return nil, nil, nil, nil, context.Cause(w.ctx)
			}
		}
	}
}

// dirError wraps err as the failure of directory u, unless it stops the walk.
func (w *Walker) dirError(u string, err error) error {
	var le *localError
	if errors.As(err, &le) || w.ctx.Err() != nil {
		if c := context.Cause(w.ctx); c != nil {
			return c
		}
		return err
	}
	de := &DirError{URL: u, Line: w.root.Line, Err: err}
	var se *statusError
	if errors.As(err, &se) {
		de.Status = se.code
	}
	return de
}

// backoff is the wait before attempt n+1: Backoff doubling, up to a minute,
// less up to a quarter at random, so that walkers started together do not
// retry together.
func (w *Walker) backoff(n int) time.Duration {
	return retry.Backoff{Base: w.opts.Backoff, Max: maxBackoff, Jitter: 0.25}.Delay(n)
}

// retryable reports whether another attempt at a page may succeed: after a
// connection error, a stall, a body cut short, 408, 429 or 5xx; not after
// other statuses, a page too large, a tag too long, or what the network
// policy calls final (a bad redirect, a certificate that does not verify, a
// name that does not exist).
func retryable(err error) bool {
	var se *statusError
	if errors.As(err, &se) {
		return retry.Status(se.code)
	}
	var le *localError
	return !errors.As(err, &le) && !errors.Is(err, errPageTooLarge) && !errors.Is(err, errAbandoned) &&
		!errors.Is(err, html.ErrBufferExceeded) && retry.Retryable(err)
}

// htmlType reports whether a Content-Type is HTML; known is false when there
// is none to go by.
func htmlType(ct string) (isHTML, known bool) {
	if strings.TrimSpace(ct) == "" {
		return false, false
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false, true
	}
	return mt == "text/html" || mt == "application/xhtml+xml", true
}

// lastName is the unescaped last segment of a directory's URL.
func lastName(u string) string {
	u = strings.TrimSuffix(u, "/")
	return unescape(u[strings.LastIndexByte(u, '/')+1:])
}
