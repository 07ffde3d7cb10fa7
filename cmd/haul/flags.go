package main

import (
	"fmt"
	"io"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/net/http/httpguts"

	"github.com/haul/haul/download/naming"
)

// options is everything the flags say, as plain values; run() never sees cli.
type options struct {
	urls           []string
	input          string // "" none, "-" stdin
	dir            string
	jobs, perHost  int
	retries        int
	timeout        time.Duration
	connectTimeout time.Duration
	limitRate      int64
	header         http.Header
	layout         naming.Layout
	manifest       string
	quiet          bool
	force          bool
	hashAll        bool
	noSync         bool
	compress       string // "", gzip, zstd
	compressLevel  int
	decode         bool // --compressed
	shardK, shardN int
	cacert         string
	insecure       bool
	http11         bool
	mirror         mirrorOptions
	hostFailLimit  int // download.Options.HostFailLimit
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

func newApp(stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:      "haul",
		Usage:     "stream lists of URLs to disk, fast, in bounded memory, resumable",
		UsageText: "haul [flags] [URL...]   (URLs from arguments, -i FILE, -i -, or piped stdin; flags may follow URLs, -- ends them)",
		Version:   version(),
		Writer:    stderr,
		ErrWriter: stderr,
		Flags:     flags(),
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

func flags() []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{Name: "input", Aliases: []string{"i"}, Usage: "read URLs from `FILE` (- for stdin)"},
		&cli.StringFlag{Name: "dir", Aliases: []string{"d"}, Value: ".", Usage: "save under `DIR`"},
		&cli.IntFlag{Name: "jobs", Aliases: []string{"j"}, Value: 16, Usage: "concurrent downloads"},
		&cli.IntFlag{Name: "per-host", Usage: "cap concurrent connections to one host (0: no cap)"},
		&cli.StringFlag{Name: "layout", Value: "tree", Usage: "file naming: tree (HOST/PATH), flat (BASENAME) or hash"},
		&cli.IntFlag{Name: "retries", Value: 5, Usage: "retries of an attempt that received nothing"},
		&cli.DurationFlag{Name: "timeout", Value: 30 * time.Second, Usage: "abort a transfer that makes no progress for `D`"},
		&cli.DurationFlag{Name: "connect-timeout", Value: 10 * time.Second, Usage: "TCP connect and TLS handshake timeout"},
		&cli.StringFlag{Name: "limit-rate", Usage: "cap total bandwidth, e.g. 500K, 20M (bytes/s, K=1024)"},
		&cli.StringSliceFlag{Name: "header", Aliases: []string{"H"}, Usage: "extra request header 'Name: value' (repeatable)"},
		&cli.StringFlag{Name: "user-agent", Value: "haul/" + version(), Usage: "User-Agent header"},
		&cli.StringFlag{Name: "manifest", Usage: "write one JSON line per entry to `FILE` (- for stdout)"},
		&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "show errors only"},
		&cli.BoolFlag{Name: "force", Usage: "download even what is already on disk"},
		&cli.BoolFlag{Name: "sha256", Usage: "compute the SHA-256 of every file (for the manifest)"},
		&cli.BoolFlag{Name: "no-sync", Usage: "do not flush files to stable storage before renaming (faster, not power-loss safe)"},
		&cli.StringFlag{Name: "compress", Usage: "store each file compressed: gzip (NAME.gz) or zstd (NAME.zst)"},
		&cli.IntFlag{Name: "compress-level", Usage: "compression level (gzip 1-9, zstd 1-22; default 6 / 3)"},
		&cli.BoolFlag{Name: "compressed", Usage: "ask servers for zstd/gzip transfer encoding and store the decoded bytes"},
		&cli.StringFlag{Name: "shard", Usage: "keep only shard `K/N` of the list (FNV-1a of the URL mod N)"},
		&cli.StringFlag{Name: "cacert", Usage: "also trust the CA certificates in PEM `FILE`"},
		&cli.BoolFlag{Name: "insecure", Aliases: []string{"k"}, Usage: "do not verify TLS certificates"},
		&cli.BoolFlag{Name: "http1.1", Usage: "use HTTP/1.1 over TLS too, even where the server offers HTTP/2"},
	}, append(mirrorFlags(), networkFlags()...)...)
}

func parseOptions(c *cli.Context) (*options, error) {
	o := &options{
		urls: c.Args().Slice(), input: c.String("input"), dir: c.String("dir"),
		jobs: c.Int("jobs"), perHost: c.Int("per-host"), retries: c.Int("retries"),
		timeout: c.Duration("timeout"), connectTimeout: c.Duration("connect-timeout"),
		manifest: c.String("manifest"), quiet: c.Bool("quiet"), force: c.Bool("force"),
		hashAll: c.Bool("sha256"), noSync: c.Bool("no-sync"),
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
	if o.shardK, o.shardN, err = parseShard(c.String("shard")); err != nil {
		return nil, err
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

// parseShard parses "K/N" with 0 <= K < N; "" means no sharding.
func parseShard(s string) (k, n int, err error) {
	if s == "" {
		return 0, 0, nil
	}
	a, b, ok := strings.Cut(s, "/")
	k, err1 := strconv.Atoi(a)
	n, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || n < 1 || k < 0 || k >= n {
		return 0, 0, fmt.Errorf("--shard %q: want K/N with 0 <= K < N", s)
	}
	return k, n, nil
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
