package download

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"
	"golang.org/x/time/rate"

	"github.com/haul/haul/download/input"
	"github.com/haul/haul/download/internal/retry"
	"github.com/haul/haul/download/naming"
	"github.com/haul/haul/internal/urlid"
	"github.com/haul/haul/sink"
)

// HTTPClient is what the engine needs from an HTTP client: *http.Client and
// httpclient.Client satisfy it.
type HTTPClient interface {
	Do(*http.Request) (*http.Response, error)
}

// Entry is one parsed line of the input list (see package input).
type Entry = input.Entry

// LineError is a bad line of the input list (see package input).
type LineError = input.LineError

// Source yields entries one at a time; *input.Scanner is one. Next returns io.EOF at the
// end, a *LineError for a bad line or a SourceError for an item that yields no
// entries (and may be called again after either), any other error to stop
// reading.
type Source interface {
	Next() (Entry, error)
}

// SourceError is an error a Source returns for one item of its list that it
// could not turn into entries, such as a directory of -r that could not be
// listed (*index.DirError is one). The engine reports it as a failed entry of
// its own, for the item's URL, and reads on.
type SourceError interface {
	error
	// SourceFailure returns the item's URL, the input line it came from, the
	// HTTP status that failed it (0 for none) and the cause.
	SourceFailure() (url string, line, status int, cause error)
}

// Options configures an Engine. Zero values mean the defaults documented per field.
type Options struct {
	// Jobs is how many connections' worth of downloads run at once (default
	// 16): over HTTP/1.1 that many files, over HTTP/2 up to Streams times as
	// many, Streams on each connection (see Streams).
	Jobs int
	// Streams is how many requests one HTTP/2 connection carries at once
	// (--streams; the server's own limit wins, in the client). A download
	// from a host known to speak HTTP/2 (a connection to it negotiated h2,
	// as the client tells an httptrace.ClientTrace's GotConn) counts as 1/Streams of a job, one over HTTP/1.1, or to a host not yet
	// known, as a whole job; the same for PerHost. Default 1: one request
	// per job whatever the protocol. The client must keep a host's HTTP/2
	// requests on ceil(in flight/Streams) connections (httpclient does).
	Streams int
	// MaxStreams caps the downloads in flight that take a stream (0: no cap
	// but Jobs*Streams): each holds a staging file, buffers and goroutines,
	// so -j 64 x 32 streams of small files would cost memory for little.
	MaxStreams int
	Retries    int           // extra attempts after one that received nothing (0: none)
	Timeout    time.Duration // abort an attempt that receives nothing for this long (default 30s)
	LimitRate  int64         // total bytes per second across all downloads, 0: unlimited
	Header     http.Header   // sent with every request (User-Agent included; Host replaces the URL's)
	Layout     naming.Layout
	Force      bool // download even when the final file exists
	// Update checks every existing final file with the server instead of
	// skipping it (--update): a conditional GET with the ETag recorded when
	// haul wrote it, else its Last-Modified, else its modification time; a 304
	// leaves it (StatusUnchanged), a 200 replaces it atomically once whole. A
	// line whose sha256= the file matches needs no request.
	Update bool
	// DryRun makes no request and no write: each entry is checked against the
	// disk and reported as skipped or StatusPlanned with what a run would do.
	DryRun bool
	// RunTag is the sink's FileOptions.RunTag: with Force, a file carrying it was
	// written by this run and is not fetched again.
	RunTag  string
	HashAll bool // compute SHA-256 of every file, not only when sha256= asks
	// Decode asks servers for zstd or gzip transfer encodings (--compressed) and
	// stores the decoded bytes; without it bodies are stored exactly as sent.
	Decode bool
	// ShardK/ShardN keep only entries whose shard key (see ShardBy) hashes to
	// shard K of N (N=0: all).
	ShardK, ShardN int
	ShardBy        ShardBy
	// PerHost caps concurrent connections to one host, a split file's pieces
	// included (0: no cap beyond Jobs), in connections' worth as Jobs: over
	// HTTP/2, PerHost*Streams files.
	PerHost int
	// Split is how many connections one file may be fetched over at once
	// (--split, default 4; 1: one). Only a file whose server serves ranges
	// under a strong validator, of known length at least twice MinSplitSize
	// (default 16 MiB), is split; no piece is smaller. See split.go.
	Split        int
	MinSplitSize int64
	// SplitBelow is the rate, in bytes a second, under which a file's first
	// connection must run before the file is split (default 64 MiB/s; < 0:
	// split at once): its rate since the body's start, from 50 ms on, until
	// the file ends or is split. A connection faster than that is not what
	// limits the download (on loopback or a fast LAN the disk or the CPU
	// is), and more connections would cost CPU for nothing; a link that caps
	// each connection gets its pieces 50 ms late.
	SplitBelow int64
	// PerHostRate caps the requests to one host, in requests a second
	// (--per-host-rate; 0: no limit): all its connections, split pieces,
	// retries and its robots.txt together, a token bucket with a burst of
	// one.
	PerHostRate float64
	// Robots fetches each host's /robots.txt before its first request (once
	// per scheme, host and port) and leaves the entries it disallows for the
	// product token of the User-Agent (see Header) as StatusExcluded. A
	// robots.txt answered 4xx (but 429) allows all; one that cannot be had
	// (5xx, 429, no response, after the retries) fails the host's entries.
	// Its Crawl-delay lowers the host's rate below PerHostRate.
	Robots bool
	// HostFailLimit is how many attempts in a row to one host may get no
	// response before its remaining entries fail at once, as ErrHostDown
	// (default 8; < 0: never).
	HostFailLimit int
	// RetryBase is the first backoff delay (default 1s); each retry doubles it, with
	// jitter, up to RetryMax (default 60s).
	RetryBase, RetryMax time.Duration
	// Checksums gives expected hashes by output path (--checksums): consulted
	// for an entry whose line gives no sha256= (the line's own wins).
	Checksums Checksums
	// Tar: the sink is a sink.Tar, the entries samples. An entry's name is
	// its sample key (input.Entry.SampleKey; out= and Layout do not apply);
	// Checksums is asked for the name LayoutTree gives it; a stored sample
	// is never replaced (Force and Update must not be set), and one that
	// fails size= or sha256= fails its entry.
	Tar bool
	// OnResult is called once for every entry and bad line as it finishes, from
	// any goroutine, possibly concurrently. It must not block for long.
	OnResult func(*Result)
}

// Checksums answers the expected SHA-256 for an output path (relative to the
// sink, slash-separated): "" if it has none, an error where the answer would be
// a guess. *checksums.Set is one.
type Checksums interface {
	Lookup(path string) (string, error)
}

// Engine downloads entries from a Source into a Sink over one shared HTTP client.
// It is used for one Run.
type Engine struct {
	opts    Options
	client  HTTPClient
	sink    sink.Sink
	stats   Stats
	hosts   *hosts
	claims  *claims
	limiter *rate.Limiter           // nil: unlimited
	cancel  context.CancelCauseFunc // ends the run early (fatal errors)
	// interrupted is set when an entry was cut short by cancellation.
	interrupted atomic.Bool
	bufs        *buffers
	parking     *parking
	xfer        transferDeps // what each transfer uses of the engine
	// xferSmall is the same for entries that take a stream of an HTTP/2
	// connection (weight 1): Streams times as many of them are in flight,
	// with smaller buffers (an HTTP/2 DATA frame is 16 KiB). Its bufs are
	// nil where Streams is 1.
	xferSmall transferDeps
	// jobs is Jobs*Streams: what the entries in flight weigh at most
	// (weight).
	jobs *semaphore.Weighted
	// streams caps the entries granted with weight 1 (MaxStreams; nil:
	// no cap).
	streams *semaphore.Weighted

	// agent is the product token of the User-Agent sent: the robots.txt
	// rules that apply are its group's (--robots).
	agent string

	// feedMu orders the list's reader against the end of the run: once
	// stopped is set (under it), every entry read is reported, none is sent.
	feedMu  sync.Mutex
	stopped bool
}

// bufSize is the chunk in which bodies are read and written: big enough for few
// syscalls on fast links, small enough that --jobs of them stay cheap.
const bufSize = 128 << 10

// bigBufSize is the chunk of a body that keeps the reads full past growAt
// bytes: a fast link's bytes wait in the socket, and every read and write of
// 1 MiB instead of 128 KiB saves seven pairs of syscalls (a fifth of the CPU
// of a 2 GiB file over loopback). Only bigBufs exist, whatever --jobs: a few
// bodies that fast fill a machine's disk or cores anyway.
const (
	bigBufSize = 1 << 20
	bigBufs    = 4
	growAt     = 4 << 20
)

// smallBufSize is bufSize for an entry on a stream of an HTTP/2 connection:
// --jobs*--streams of them may be in flight (2,048 at -j 64), and a read of
// the body returns at most a DATA frame's 16 KiB anyway.
const smallBufSize = 16 << 10

// New returns an Engine. client is shared by every worker.
func New(client HTTPClient, s sink.Sink, o Options) *Engine {
	if o.Jobs <= 0 {
		o.Jobs = 16
	}
	if o.Streams <= 0 {
		o.Streams = 1
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.RetryBase <= 0 {
		o.RetryBase = time.Second
	}
	if o.RetryMax <= 0 {
		o.RetryMax = time.Minute
	}
	if o.Split <= 0 {
		o.Split = 4
	}
	if o.MinSplitSize <= 0 {
		o.MinSplitSize = 16 << 20
	}
	if o.SplitBelow == 0 {
		o.SplitBelow = defaultSplitBelow
	}
	if o.HostFailLimit == 0 {
		o.HostFailLimit = 8
	}
	if o.OnResult == nil {
		o.OnResult = func(*Result) {}
	}
	e := &Engine{opts: o, client: client, sink: s, hosts: newHosts(o.PerHost, o.HostFailLimit, o.Streams), claims: newClaims(),
		parking: newParking(max(64, 4*o.Jobs))}
	e.parking.down = e.hosts.downNamed
	if o.Tar {
		e.claims.flush = s.Flush
	}
	e.hosts.setPolite(o.PerHostRate, o.Jobs)
	e.agent = productToken(o.Header.Get("User-Agent"))
	if o.LimitRate > 0 {
		burst := int(min(max(o.LimitRate/10, 16<<10), bufSize))
		e.limiter = rate.NewLimiter(rate.Limit(o.LimitRate), burst)
	}
	// One buffer per worker, plus the hash rings of those that hash.
	e.bufs = newBuffers(bufSize, (1+hashRing)*o.Jobs)
	// The small buffers: for a body known to fit one, and for every entry
	// on a stream of an HTTP/2 connection (idle ones kept: as many as the
	// streams of -j connections use).
	small := newBuffers(smallBufSize, (1+hashRing)*o.Jobs*max(o.Streams, 1))
	e.xfer = transferDeps{client: client, header: o.Header, timeout: o.Timeout, decode: o.Decode,
		hashAll: o.HashAll, limiter: e.limiter, bufs: e.bufs, big: newBuffers(bigBufSize, bigBufs), fit: small, bytes: &e.stats.Bytes,
		split: o.Split, minSplit: o.MinSplitSize, splitBelow: o.SplitBelow, retries: o.Retries,
		backoff: retry.Backoff{Base: o.RetryBase, Max: o.RetryMax, Jitter: 0.5}}
	e.jobs = semaphore.NewWeighted(int64(o.Jobs) * int64(o.Streams))
	if o.Streams > 1 && o.MaxStreams > 0 && o.MaxStreams < o.Jobs*o.Streams {
		e.streams = semaphore.NewWeighted(int64(o.MaxStreams))
	}
	if o.Streams > 1 {
		e.xferSmall = e.xfer
		e.xferSmall.bufs = small
		e.xferSmall.big = nil // a stream's reads return a DATA frame at most
		e.xferSmall.fit = nil // its buffers are small already
	}
	return e
}

// inline reports whether x can only go over HTTP/1.1 (a plain http:// URL,
// or nothing multiplexes): its worker runs it (see pool).
func (e *Engine) inline(x *entry) bool {
	u := x.ent.URL
	return e.opts.Streams <= 1 || len(u) > 7 && strings.EqualFold(u[:7], "http://")
}

// weight is what x counts against Jobs and PerHost, in streams: one for a
// host known to speak HTTP/2 (a connection to it negotiated h2), a whole
// connection (Streams) otherwise. So over HTTP/1.1 Jobs files are in flight,
// as ever, and over HTTP/2 up to Jobs*Streams.
func (e *Engine) weight(x *entry) int64 {
	if e.opts.Streams > 1 && e.hosts.isMultiplexed(x.hostKey) {
		return 1
	}
	return int64(e.opts.Streams)
}

// Stats returns the live counters; safe to read while Run is going.
func (e *Engine) Stats() *Stats { return &e.stats }

// Run reads src to the end, downloading each entry with at most Jobs at a time.
// Failed entries are results (OnResult), not errors. Run returns ctx's error if it
// was cancelled before the list was finished (in-flight entries are stopped and
// reported as interrupted), a *FatalError if the output cannot be written, or a
// read error of src.
func (e *Engine) Run(parent context.Context, src Source) error {
	ctx, cancel := context.WithCancelCause(parent)
	e.cancel = cancel
	defer e.cancel(nil)
	g, gctx := errgroup.WithContext(ctx)
	// The list's entries go through regroup, which holds those read ahead and
	// hands them out to the workers host by host.
	read := make(chan Entry, 64)
	entries := make(chan *entry, min(e.opts.Jobs, 8))
	rg := newRegroup(read, entries, e.opts.Jobs, func(ent Entry, host string) *entry {
		return &entry{e: e, ent: ent, hostKey: host}
	}, (*entry).interrupted)
	// The list is read on a goroutine of its own, outside the group: a read from
	// a pipe cannot be interrupted, and Ctrl-C must not wait for the next line.
	// After a cancellation that goroutine ends at its next line (or at EOF).
	fed := make(chan error, 1)
	go func() {
		err := e.feed(gctx, src, read)
		if err == nil {
			e.stats.InputDone.Store(true) // read to the end, not stopped
		}
		fed <- err
	}()
	g.Go(func() error {
		select {
		case err := <-fed:
			return err
		case <-gctx.Done():
			return gctx.Err()
		}
	})
	g.Go(func() error {
		rg.run(gctx)
		return nil
	})
	g.Go(func() error {
		pl := &pool{parking: e.parking, jobs: e.jobs, streams: e.streams, weight: e.weight, inline: e.inline,
			workers: e.opts.Jobs, run: func(x *entry, g *grant) {
				x.aside.Store(false)
				x.run(ctx, g)
				// An entry set aside (its host paused, or not yet its turn under
				// --per-host-rate) is no sign to send the host its next one.
				if !x.aside.Load() {
					rg.end(x.hostKey)
				}
			}}
		pl.work(gctx, entries)
		return nil
	})
	err := g.Wait()
	// Entries read from the list that no worker took (still in a channel,
	// or parked) are reported as interrupted: a list filtered to the failures
	// then holds them. Those parked in their retry loop had their progress
	// saved when they were parked. (regroup reported those it held.)
	e.feedMu.Lock()
	e.stopped = true
	e.feedMu.Unlock()
	drain(entries, (*entry).interrupted)
	drain(read, func(ent Entry) { e.newEntry(ent).interrupted() })
	for _, x := range e.parking.stranded() {
		x.interrupted()
	}
	e.sink.Flush() // every result is reported before Run returns
	var fe *FatalError
	if errors.As(context.Cause(ctx), &fe) {
		return fe
	}
	if err == nil && e.interrupted.Load() {
		return parent.Err() // the list was read, but not every entry finished
	}
	return err
}

// drain gives fn what ch holds now, without waiting for more.
func drain[T any](ch <-chan T, fn func(T)) {
	for {
		select {
		case v, ok := <-ch:
			if !ok {
				return
			}
			fn(v)
		default:
			return
		}
	}
}

// feed streams entries from src into ch, reporting bad lines and dropping those
// of other shards. It holds no more than the channel's few entries. An
// entry read once Run has returned is dropped unreported: OnResult is never
// called after Run returns.
func (e *Engine) feed(ctx context.Context, src Source, ch chan<- Entry) error {
	defer func() {
		e.feedMu.Lock()
		defer e.feedMu.Unlock()
		if !e.stopped {
			close(ch)
		}
	}()
	for {
		ent, err := src.Next()
		if err == io.EOF {
			return nil
		}
		var le *LineError
		if errors.As(err, &le) {
			if !e.reportRead(&Result{Entry: Entry{Line: le.Line}, Status: StatusInvalid, Err: le}) {
				return ctx.Err()
			}
			continue
		}
		var se SourceError
		if errors.As(err, &se) {
			// An item that yields no entries (a directory of -r that could
			// not be listed): a failed entry of its own (its files are not
			// known), and the walk goes on.
			u, line, status, cause := se.SourceFailure()
			if !e.reportRead(&Result{Entry: Entry{URL: u, Line: line, Size: -1}, Status: StatusFailed,
				HTTPStatus: status, Err: &Error{Op: "list", URL: u, Err: cause}}) {
				return ctx.Err()
			}
			continue
		}
		if err != nil {
			return err
		}
		if !e.inShard(ent.URL) {
			continue
		}
		if !e.send(ctx, ch, ent) {
			return ctx.Err()
		}
	}
}

// reportRead reports r, a result of the list's reader itself (a bad line, an
// item that yielded no entries), unless Run has returned: it reports whether
// it did.
func (e *Engine) reportRead(r *Result) bool {
	e.feedMu.Lock()
	defer e.feedMu.Unlock()
	if e.stopped {
		return false
	}
	if r.Status != StatusInvalid {
		e.stats.Queued.Add(1)
	}
	e.stats.count(r.Status)
	e.opts.OnResult(r)
	return true
}

// send hands ent to the workers (through regroup); once the run is stopping it
// reports ent as interrupted, and once Run has returned it drops it.
func (e *Engine) send(ctx context.Context, ch chan<- Entry, ent Entry) bool {
	e.feedMu.Lock()
	defer e.feedMu.Unlock()
	if e.stopped {
		// Run has returned (its results are all reported): this entry is one
		// of those after the ones read, which the summary says were not
		// started.
		return false
	}
	// Counted before it is sent: the workers' "all done" (parking) must never
	// see zero while an entry is in the channel or being received.
	e.parking.add(1)
	select {
	case ch <- ent:
		e.stats.Queued.Add(1)
		return true
	case <-ctx.Done():
		e.parking.add(-1)
		e.stats.Queued.Add(1)
		e.newEntry(ent).interrupted()
		return false
	}
}

// ShardBy says what an entry's shard is computed from.
type ShardBy int

const (
	// ShardByURL: the URL as written (--shard-by url, the default).
	ShardByURL ShardBy = iota
	// ShardByHost: the URL's host (HostShardKey), so that all entries of one
	// host go to one shard and per-host caps and pauses hold across machines.
	ShardByHost
)

// inShard reports whether rawURL belongs to this run's shard: FNV-1a 64-bit
// of its shard key, modulo N. Fixed forever, so every version of haul splits
// a list the same way.
func (e *Engine) inShard(rawURL string) bool {
	if e.opts.ShardN <= 1 {
		return true
	}
	key := rawURL
	if e.opts.ShardBy == ShardByHost {
		key = HostShardKey(rawURL)
	}
	return ShardOf(key, e.opts.ShardN) == e.opts.ShardK
}

// ShardOf returns the shard (0..n-1) that key (a URL, or a HostShardKey)
// belongs to among n.
func ShardOf(key string, n int) int {
	// FNV-1a, 64 bit (hash/fnv's New64a), inline: no allocation per line.
	const offset64, prime64 = 14695981039346656037, 1099511628211
	h := uint64(offset64)
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= prime64
	}
	return int(h % uint64(n))
}

// nameOf is the entry's output path: out=, else what the layout makes of its
// URL.
func (e *Engine) nameOf(ent Entry) (string, error) {
	if e.opts.Tar {
		// The list's reader refuses such keys as bad lines; a source
		// that does not (URL arguments) must not name members so.
		k := ent.SampleKey()
		return k, input.CheckKey(k)
	}
	if ent.Out != "" {
		return ent.Out, nil
	}
	return e.opts.Layout.Name(ent.URL)
}

// checksumName is the path --checksums names the entry by: its output path,
// or, for a sample (Options.Tar), the one LayoutTree gives its URL.
func (e *Engine) checksumName(ent Entry) (string, error) {
	if e.opts.Tar {
		return naming.LayoutTree.Name(ent.URL)
	}
	return e.nameOf(ent)
}

// Names reads src as Run would, without a request or a write, and calls fn with
// the output path of each entry of this run's shard (bad lines and entries
// that cannot be named are passed over: Run reports them). A caller that can
// read its list twice gives it to Names first, so that what depends on the
// whole run is known before its first entry starts (--checksums: a NAME that
// two entries match fails both).
func (e *Engine) Names(src Source, fn func(name string)) error {
	for {
		ent, err := src.Next()
		if err == io.EOF {
			return nil
		}
		var le *LineError
		if errors.As(err, &le) {
			continue
		}
		var se SourceError
		if errors.As(err, &se) {
			continue
		}
		if err != nil {
			return err
		}
		if !e.inShard(ent.URL) {
			continue
		}
		if name, err := e.checksumName(ent); err == nil {
			fn(name)
		}
	}
}

// HostShardKey is the shard key of rawURL under --shard-by host: its host in
// lower case (user info dropped, IPv6 literals in brackets), followed by
// ":PORT" only when the URL names a port other than its scheme's default
// (leading zeros dropped): "example.com", "127.0.0.1:8080", "[::1]:8443". It is
// urlid.HostKey, the key of per-host caps and pauses, without the default
// port, so it slices the URL rather than parsing it: a sharded list of
// millions of lines costs no url.Parse per line. rawURL is an entry's URL,
// already checked by the input parser (which refuses percent-escapes in a
// host name; an IPv6 zone stays as written, "[fe80::1%25eth0]").
func HostShardKey(rawURL string) string {
	def := ":80"
	if scheme, _, _ := strings.Cut(rawURL, "://"); strings.EqualFold(scheme, "https") {
		def = ":443"
	}
	return strings.TrimSuffix(urlid.HostKey(rawURL), def)
}
