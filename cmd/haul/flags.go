package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/net/http/httpguts"

	"github.com/haul/haul/download"
	"github.com/haul/haul/download/httpclient"
	"github.com/haul/haul/download/naming"
)

// The values of the flags that take one of a few words; completion offers them.
var (
	progressModes = []string{"auto", "bar", "plain", "json", "none"}
	shardByValues = []string{"url", "host"}
	layoutValues  = []string{"tree", "flat", "hash"}
	compressAlgs  = []string{"gzip", "zstd"}
	httpClients   = []string{"haul", "net/http"}
)

// options is everything the flags say, as plain values; run() never sees cli.
type options struct {
	urls           []string
	input          string // "" none, "-" stdin
	dir            string
	jobs, perHost  int
	streams        int // --streams
	maxStreams     int // files in flight over HTTP/2 in all (0: jobs x streams)
	retries        int
	timeout        time.Duration
	connectTimeout time.Duration
	limitRate      int64
	split          int   // --split
	minSplit       int64 // --min-split-size
	header         http.Header
	layout         naming.Layout
	manifest       string
	quiet          bool
	force          bool
	hashAll        bool
	noSync         bool
	checkpoint     int64  // --checkpoint
	namedStaging   bool   // --named-staging
	compress       string // "", gzip, zstd
	compressLevel  int
	decode         bool // --compressed
	shardK, shardN int
	shardFrom      string // where --shard auto found the shard, for the log
	shardBy        download.ShardBy
	progress       string        // one of progressModes
	progressEvery  time.Duration // plain and json: one report per interval
	s3             s3Options     // -d s3://BUCKET/PREFIX
	cacert         string
	insecure       bool
	http11         bool
	netHTTP        bool // --http-client net/http
	mirror         mirrorOptions
	polite         politeOptions
	hostFailLimit  int // download.Options.HostFailLimit
	netrc          *httpclient.Netrc
	jar            http.CookieJar
	dns            dnsOptions          // --dns-server, --dns-concurrency
	proxies        *httpclient.Proxies // --proxy and the environment's
	table          tableOptions        // --input-format, --col
	tar            tarOptions          // --tar, --tar-size
}

func newApp(stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	// --version goes to stdout, as with curl and wget: $(haul --version).
	cli.VersionPrinter = func(*cli.Context) { fmt.Fprintln(stdout, versionLine()) }
	return &cli.App{
		Name:  "haul",
		Usage: "stream lists of URLs to disk, fast, in bounded memory, resumable",
		UsageText: "haul [flags] [URL...]   (URLs from arguments, -i FILE, -i -, or piped stdin; flags may follow URLs, -- ends them)\n" +
			"haul completion bash|zsh|fish\n" +
			"haul man",
		Version:   version(),
		Writer:    stderr,
		ErrWriter: stderr,
		Flags:     flags(),
		Commands:  commands(stdout),
		// haul maps errors to exit codes itself (main.exitCode).
		ExitErrHandler:  func(*cli.Context, error) {},
		HideHelpCommand: true,
		Action: func(c *cli.Context) error {
			o, err := parseOptions(c)
			if err != nil {
				return cli.Exit(err.Error(), exitUsage)
			}
			return run(c.Context, o, stdin, stdout, stderr)
		},
	}
}

// maxStreamsInFlight caps the files in flight over HTTP/2 unless --streams
// is given: -j 16 x 32 streams, and no more at -j 64 (on as few connections).
const maxStreamsInFlight = 512

func flags() []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{Name: "input", Aliases: []string{"i"}, TakesFile: true, Usage: "read URLs from `FILE` (- for stdin)"},
		&cli.StringFlag{Name: "dir", Aliases: []string{"d"}, Value: ".", Usage: "save under `DIR`"},
		&cli.IntFlag{Name: "jobs", Aliases: []string{"j"}, Value: 16, Usage: "concurrent downloads, in connections: over HTTP/2 each carries up to --streams files"},
		&cli.IntFlag{Name: "streams", Value: 32, Usage: "requests in flight on one HTTP/2 connection (the server's own limit wins; unless given, at most 512 in all)"},
		&cli.IntFlag{Name: "per-host", Usage: "cap concurrent connections to one host (0: no cap)"},
		&cli.StringFlag{Name: "layout", Value: "tree", Usage: "file naming: tree (HOST/PATH), flat (BASENAME) or hash"},
		&cli.IntFlag{Name: "retries", Value: 5, Usage: "retries of an attempt that received nothing"},
		&cli.DurationFlag{Name: "timeout", Value: 30 * time.Second, Usage: "abort a transfer that makes no progress for `D`"},
		&cli.DurationFlag{Name: "connect-timeout", Value: 10 * time.Second, Usage: "TCP connect and TLS handshake timeout"},
		&cli.StringFlag{Name: "limit-rate", Usage: "cap total bandwidth, e.g. 500K, 20M (bytes/s, K=1024)"},
		&cli.IntFlag{Name: "split", Value: 4, Usage: "fetch a big file over up to `N` connections at once (1: one)"},
		&cli.StringFlag{Name: "min-split-size", Value: "16M", Usage: "no piece of a split file is smaller than `SIZE` (K/M/G): a file is split only when at least twice that"},
		&cli.StringSliceFlag{Name: "header", Aliases: []string{"H"}, Usage: "extra request header 'Name: value' (repeatable)"},
		// DefaultText: the generated man page and completions must not change
		// with each build's version.
		&cli.StringFlag{Name: "user-agent", Value: "haul/" + version(), DefaultText: "haul/VERSION", Usage: "User-Agent header"},
		&cli.StringFlag{Name: "manifest", TakesFile: true, Usage: "write one JSON line per entry to `FILE` (- for stdout)"},
		&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "show errors only (no progress, no summary)"},
		&cli.StringFlag{Name: "progress", Value: "auto", Usage: "progress on stderr: auto (bar on a terminal, else plain), bar, plain, json (one object per line) or none"},
		&cli.DurationFlag{Name: "progress-interval", Value: plainInterval, Usage: "with --progress plain or json: one report every `D`"},
		&cli.BoolFlag{Name: "force", Usage: "download even what is already on disk"},
		&cli.BoolFlag{Name: "sha256", Usage: "compute the SHA-256 of every file (for the manifest)"},
		&cli.BoolFlag{Name: "no-sync", Usage: "do not flush files to stable storage before renaming (faster, not power-loss safe)"},
		&cli.StringFlag{Name: "checkpoint", Value: "32M", Usage: "record a partial file's progress durably every `SIZE` of body (K/M/G, at least 4K): after a crash at most that much is fetched again"},
		&cli.BoolFlag{Name: "named-staging", Usage: "stage every new file as NAME.part from its start, never unnamed (slower by a few percent on small files; for comparisons)"},
		&cli.StringFlag{Name: "compress", Usage: "store each file compressed: gzip (NAME.gz) or zstd (NAME.zst)"},
		&cli.IntFlag{Name: "compress-level", Usage: "compression level (gzip 1-9, zstd 1-22; default 6 / 3)"},
		&cli.BoolFlag{Name: "compressed", Usage: "ask servers for zstd/gzip transfer encoding and store the decoded bytes"},
		&cli.StringFlag{Name: "shard", Usage: "keep only shard `K/N` of the list (FNV-1a mod N), or auto: K and N from a Slurm job array or a Kubernetes Indexed Job (with HAUL_SHARDS)"},
		&cli.StringFlag{Name: "shard-by", Value: "url", Usage: "what --shard hashes: url (as written) or host (HOST[:PORT]: all of a host's entries in one shard)"},
		&cli.StringFlag{Name: "cacert", TakesFile: true, Usage: "also trust the CA certificates in PEM `FILE`"},
		&cli.BoolFlag{Name: "insecure", Aliases: []string{"k"}, Usage: "do not verify TLS certificates"},
		&cli.BoolFlag{Name: "http1.1", Usage: "use HTTP/1.1 over TLS too, even where the server offers HTTP/2"},
		&cli.StringFlag{Name: "http-client", Value: "haul", Usage: "haul (its own HTTP/1.1 and HTTP/2 clients: least CPU per request) or net/http (Go's standard client, for comparisons); requests through an HTTP proxy always go through net/http"},
	}, append(append(append(mirrorFlags(), networkFlags()...), politeFlags()...), append(append(tableFlags(), tarFlags()...), s3Flags()...)...)...)
}

func parseOptions(c *cli.Context) (*options, error) {
	o := &options{
		urls: c.Args().Slice(), input: c.String("input"), dir: c.String("dir"),
		jobs: c.Int("jobs"), perHost: c.Int("per-host"), streams: c.Int("streams"), retries: c.Int("retries"),
		split:   c.Int("split"),
		timeout: c.Duration("timeout"), connectTimeout: c.Duration("connect-timeout"),
		manifest: c.String("manifest"), quiet: c.Bool("quiet"), force: c.Bool("force"),
		hashAll: c.Bool("sha256"), noSync: c.Bool("no-sync"), namedStaging: c.Bool("named-staging"),
		compress: c.String("compress"), compressLevel: c.Int("compress-level"), decode: c.Bool("compressed"),
		cacert: c.String("cacert"), insecure: c.Bool("insecure"), http11: c.Bool("http1.1"),
	}
	for i, u := range o.urls {
		// Arguments become input lines, numbered as arguments: one must not
		// split into two, nor vanish as a blank line.
		if strings.TrimSpace(u) == "" || strings.ContainsAny(u, "\r\n") {
			return nil, fmt.Errorf("argument %d %q: want one URL", i+1, u)
		}
	}
	if o.jobs < 1 || o.perHost < 0 || o.retries < 0 {
		return nil, fmt.Errorf("--jobs must be >= 1, --per-host and --retries >= 0")
	}
	if o.split < 1 {
		return nil, fmt.Errorf("--split must be >= 1 (1: one connection per file)")
	}
	if o.streams < 1 {
		return nil, fmt.Errorf("--streams must be >= 1")
	}
	if !c.IsSet("streams") {
		// At most maxStreamsInFlight files in flight over HTTP/2 by
		// default: each holds a staging file, buffers and goroutines (2,048
		// at -j 64 took 104 MiB of RSS on small files over loopback).
		o.maxStreams = maxStreamsInFlight
	}
	if o.http11 {
		o.streams = 1 // nothing multiplexes: the engine counts whole connections
	}
	switch c.String("http-client") {
	case "haul":
	case "net/http":
		o.netHTTP = true
	default:
		return nil, fmt.Errorf("--http-client %q: want %s", c.String("http-client"), strings.Join(httpClients, " or "))
	}
	if o.dir == "" {
		return nil, fmt.Errorf("--dir is empty (use . for the current directory)")
	}
	if o.timeout <= 0 || o.connectTimeout <= 0 {
		return nil, fmt.Errorf("--timeout and --connect-timeout must be positive")
	}
	switch o.compress {
	case "", "gzip", "zstd":
	default:
		return nil, fmt.Errorf("--compress %q: want gzip or zstd", o.compress)
	}
	if c.IsSet("compress-level") && o.compress == "" {
		return nil, fmt.Errorf("--compress-level needs --compress gzip or zstd")
	}
	// Checked here, before the manifest or the directory is touched.
	if most := map[string]int{"gzip": 9, "zstd": 22}[o.compress]; c.IsSet("compress-level") &&
		(o.compressLevel < 1 || o.compressLevel > most) {
		return nil, fmt.Errorf("--compress-level %d: want 1-%d for %s", o.compressLevel, most, o.compress)
	}
	var err error
	if o.layout, err = naming.ParseLayout(c.String("layout")); err != nil {
		return nil, err
	}
	if o.limitRate, err = parseRate(c.String("limit-rate")); err != nil {
		return nil, err
	}
	if o.minSplit, err = parseSize("min-split-size", c.String("min-split-size"), 1<<10); err != nil {
		return nil, err
	}
	if o.checkpoint, err = parseSize("checkpoint", c.String("checkpoint"), 4<<10); err != nil {
		return nil, err
	}
	if o.shardK, o.shardN, o.shardFrom, err = parseShard(c.String("shard"), os.LookupEnv); err != nil {
		return nil, err
	}
	switch c.String("shard-by") {
	case "url":
		o.shardBy = download.ShardByURL
	case "host":
		o.shardBy = download.ShardByHost
	default:
		return nil, fmt.Errorf("--shard-by %q: want url or host", c.String("shard-by"))
	}
	if c.IsSet("shard-by") && c.String("shard") == "" {
		return nil, fmt.Errorf("--shard-by needs --shard K/N or --shard auto")
	}
	o.progress, o.progressEvery = c.String("progress"), c.Duration("progress-interval")
	if !slices.Contains(progressModes, o.progress) {
		return nil, fmt.Errorf("--progress %q: want one of %s", o.progress, strings.Join(progressModes, ", "))
	}
	if o.quiet && o.progress != "none" && o.progress != "auto" {
		return nil, fmt.Errorf("--quiet shows errors only: it cannot go with --progress %s", o.progress)
	}
	if o.progressEvery <= 0 {
		return nil, fmt.Errorf("--progress-interval must be positive")
	}
	if o.header, err = parseHeaders(c.String("user-agent"), c.StringSlice("header")); err != nil {
		return nil, err
	}
	if err := parseMirror(c, o); err != nil {
		return nil, err
	}
	if err := parseNetwork(c, o); err != nil {
		return nil, err
	}
	if err := parsePolite(c, o); err != nil {
		return nil, err
	}
	if err := parseTar(c, o); err != nil {
		return nil, err
	}
	if err := parseTable(c, o); err != nil {
		return nil, err
	}
	if err := parseS3(c, o, osGetenv); err != nil {
		return nil, err
	}
	return o, nil
}

// parseRate parses a curl-style rate: bytes per second with an optional K, M or G
// suffix (powers of 1024). "" means unlimited.
func parseRate(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	mult := 1.0
	switch strings.ToUpper(s[len(s)-1:]) {
	case "K":
		mult = 1 << 10
	case "M":
		mult = 1 << 20
	case "G":
		mult = 1 << 30
	}
	num := s
	if mult > 1 {
		num = s[:len(s)-1]
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || !(v*mult >= 1 && v*mult <= 1<<50) { // NaN fails both
		return 0, fmt.Errorf("--limit-rate %q: want a rate like 500K or 20M", s)
	}
	return int64(v * mult), nil
}

// parseSize parses the SIZE of --flag: bytes with an optional K, M or G suffix
// (powers of 1024), at least least (a whole number of K).
func parseSize(flag, s string, least int64) (int64, error) {
	n, err := parseRate(s)
	if err != nil || n < least {
		return 0, fmt.Errorf("--%s %q: want a size like 1M or 16M (at least %dK)", flag, s, least>>10)
	}
	return n, nil
}

// parseHeaders builds the request headers: User-Agent first, then each -H, which
// may replace it (as with curl).
//
// An empty --user-agent sends none, as curl -A "" does (net/http and h1 both
// omit a User-Agent that is present but empty). A Host header replaces the
// URL's host in requests (see download.Options.Header).
func parseHeaders(ua string, hs []string) (http.Header, error) {
	h := http.Header{"User-Agent": {ua}}
	if !httpguts.ValidHeaderFieldValue(ua) {
		return nil, fmt.Errorf("--user-agent %q: control characters are not allowed", ua)
	}
	replaced := map[string]bool{}
	for _, s := range hs {
		name, value, ok := strings.Cut(s, ":")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if !ok || !httpguts.ValidHeaderFieldName(name) || !httpguts.ValidHeaderFieldValue(value) {
			return nil, fmt.Errorf("--header %q: want 'Name: value' (a name of letters, digits and !#$%%&'*+-.^_`|~; no control characters)", s)
		}
		key := http.CanonicalHeaderKey(name)
		if !replaced[key] {
			h.Del(key)
			replaced[key] = true
		}
		h.Add(key, value)
	}
	return h, nil
}
