package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/urfave/cli/v2"

	"github.com/haul/haul/download"
	"github.com/haul/haul/download/checksums"
	"github.com/haul/haul/download/index"
)

// mirrorOptions are the flags that keep a mirror current and verified.
type mirrorOptions struct {
	update         bool   // --update/-N
	dryRun         bool   // --dry-run
	checksums      string // --checksums FILE|URL
	recursive      bool   // -r
	accept, reject string // -A, -R: comma-separated
	filter         *index.Filter
}

func mirrorFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "update", Aliases: []string{"N"},
			Usage: "check files already on disk with the server (If-None-Match / If-Modified-Since) and replace those that changed"},
		&cli.BoolFlag{Name: "dry-run",
			Usage: "ask nothing, write nothing: print each entry a run would fetch, resume or replace, and why (exit 1 if any)"},
		&cli.StringFlag{Name: "checksums",
			Usage: "expected SHA-256 hashes from `FILE` or URL, in sha256sum (HEX  NAME) or BSD (SHA256 (NAME) = HEX) format"},
		&cli.BoolFlag{Name: "recursive", Aliases: []string{"r"},
			Usage: "a URL ending in / is a directory index: download the files it and the indexes below it list (as wget -r -np)"},
		&cli.StringSliceFlag{Name: "accept", Aliases: []string{"A"},
			Usage: "with -r, download only files whose name matches one of `LIST` (globs, or suffixes: -A iso,txt)"},
		&cli.StringSliceFlag{Name: "reject", Aliases: []string{"R"},
			Usage: "with -r, skip files whose name matches one of `LIST` (reject wins over accept)"},
	}
}

func parseMirror(c *cli.Context, o *options) error {
	o.mirror = mirrorOptions{update: c.Bool("update"), dryRun: c.Bool("dry-run"), checksums: c.String("checksums"),
		recursive: c.Bool("recursive"),
		// urfave splits each value on commas already; NewFilter takes one list.
		accept: strings.Join(c.StringSlice("accept"), ","), reject: strings.Join(c.StringSlice("reject"), ",")}
	if o.mirror.dryRun && o.manifest != "" {
		return fmt.Errorf("--dry-run writes nothing: it takes no --manifest (its lines go to stdout)")
	}
	if (o.mirror.accept != "" || o.mirror.reject != "") && !o.mirror.recursive {
		return fmt.Errorf("--accept and --reject filter what -r finds: they need -r")
	}
	if o.mirror.recursive {
		f, err := index.NewFilter(o.mirror.accept, o.mirror.reject)
		if err != nil {
			return err
		}
		o.mirror.filter = f
	}
	return nil
}

// prepareChecksums loads --checksums and, where it can read the list twice,
// notes every output path of the run first (see download.Engine.Names), so
// that a NAME two entries match fails both. It returns the source to run.
func prepareChecksums(ctx context.Context, o *options, eng *download.Engine, set *checksums.Set,
	src download.Source, stdin io.Reader) (download.Source, func(), error) {
	first, again, closeAll, err := twice(ctx, o, stdin)
	if err != nil {
		return nil, nil, err
	}
	if err := eng.Names(ctxSource{ctx, first}, set.Note); err != nil {
		closeAll()
		return nil, nil, fmt.Errorf("reading the list: %w", err)
	}
	run, err := again()
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	return run, closeAll, nil
}

// countedChecksums counts the entries --checksums has no hash for: they are
// not verified against the list, which a user verifying a mirror must know.
type countedChecksums struct {
	*checksums.Set
	missed atomic.Int64
}

func (c *countedChecksums) Lookup(p string) (string, error) {
	sum, err := c.Set.Lookup(p)
	if sum == "" && err == nil {
		c.missed.Add(1)
	}
	return sum, err
}

// walk wraps src for -r: lines ending in "/" become the files their indexes
// list (see package index). Index pages are fetched with the run's client and
// headers, and spooled to unlinked files in --dir (not /tmp, often a tmpfs).
func walk(ctx context.Context, o *options, client download.HTTPClient, src download.Source) (download.Source, func()) {
	if !o.mirror.recursive {
		return src, func() {}
	}
	tmp := o.dir
	if o.s3.on {
		tmp = "" // the system's temporary directory: a bucket is no place for it
	}
	w := index.Expand(ctx, client, src, index.Options{Header: o.header, Filter: o.mirror.filter, TempDir: tmp})
	return w, func() { w.Close() }
}

// loadChecksumsFor returns --checksums' set, nil without the flag.
func loadChecksumsFor(ctx context.Context, o *options, client download.HTTPClient, hdr http.Header, rep *reporter) (*checksums.Set, error) {
	if o.mirror.checksums == "" {
		return nil, nil
	}
	return loadChecksums(ctx, o.mirror.checksums, client, hdr, func(f string, a ...any) { rep.printf(levelWarning, f, a...) })
}

// planLine is --dry-run's line for a planned entry, on stdout: what a run
// would do, to which file, and why.
func planLine(w io.Writer, dir string, r *download.Result) {
	if r.Sample != "" {
		// --tar: a sample, named by its key and URL.
		fmt.Fprintf(w, "%s sample %s %s: %s\n", r.Plan, r.Sample, r.Entry.URL, r.Reason)
		return
	}
	if strings.HasPrefix(dir, "s3://") {
		fmt.Fprintf(w, "%s %s/%s: %s\n", r.Plan, strings.TrimSuffix(dir, "/"), r.Name, r.Reason)
		return
	}
	fmt.Fprintf(w, "%s %s: %s\n", r.Plan, filepath.Join(dir, filepath.FromSlash(r.Name)), r.Reason)
}

// dryRunDir is the directory the sink opens: --dir, except that --dry-run
// never creates it (it writes nothing): a --dir that does not exist is read as
// an empty one, through an empty temporary directory removed at the end.
func dryRunDir(o *options) (string, func(), error) {
	if !o.mirror.dryRun {
		return o.dir, func() {}, nil
	}
	if _, err := os.Stat(o.dir); !errors.Is(err, fs.ErrNotExist) {
		return o.dir, func() {}, nil
	}
	empty, err := os.MkdirTemp("", "haul-dry-run-")
	if err != nil {
		return "", nil, err
	}
	return empty, func() { os.RemoveAll(empty) }, nil
}

// ctxSource stops reading a list once ctx ends (Ctrl-C during the pass over
// its names).
type ctxSource struct {
	ctx context.Context
	download.Source
}

func (s ctxSource) Next() (download.Entry, error) {
	if err := s.ctx.Err(); err != nil {
		return download.Entry{}, err
	}
	return s.Source.Next()
}
