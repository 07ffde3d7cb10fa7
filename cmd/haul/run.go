package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	"github.com/mattn/go-isatty"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/haul/haul/download"
	"github.com/haul/haul/download/httpclient"
	"github.com/haul/haul/download/input"
	"github.com/haul/haul/sink"
)

// Open files: each job may hold its connection, idle ones in the pool (up to
// twice --jobs in all) and its staging file; the sink keeps directory handles
// and commits waiting for the flush open; a few more go to stdio, the input,
// the manifest and the runtime. Over HTTP/2 each further stream of a job holds
// a staging file, and a connection when its host is another (fdsPerStream).
const (
	fdsPerJob    = 4
	fdsPerStream = 2
	fdReserve    = 64
	sinkMinFDs   = 64
)

// sinkBudget bounds the descriptors the sink keeps besides its writers'
// (sink.FileOptions.MaxOpen) so that a run holds at most 8 x jobs + 256
// whatever the number of hosts: each job a socket, a staging file and its
// directory (3 x jobs), the idle connections 2 x jobs + 64 (httpclient), the
// sink's cached directories and commits waiting for the flush 2 x jobs + 128,
// and the rest (standard streams, the poller, input, manifest, lookups) within
// jobs + 64. sinkFDs is what the limit on open files leaves it (0: no limit).
func sinkBudget(jobs, sinkFDs int) int {
	b := 2*jobs + 128
	if sinkFDs > 0 {
		b = min(b, sinkFDs)
	}
	return b
}

// fitStreams fits --streams into the descriptors left after jobs (see
// fitOpenFiles): fewer streams per connection rather than fewer jobs.
func fitStreams(jobs, streams, sinkFDs int) (int, int) {
	if sinkFDs == 0 || streams <= 1 {
		return streams, sinkFDs
	}
	spare := sinkFDs - sinkMinFDs
	fit := min(streams, 1+spare/(fdsPerStream*jobs))
	return max(fit, 1), sinkFDs - fdsPerStream*jobs*(max(fit, 1)-1)
}

// fitOpenFiles fits --jobs and the sink into the limit on open files
// (RLIMIT_NOFILE, which Go raises to the hard limit at start): it returns the
// jobs to run, the descriptors left for the sink (0: no limit to mind) and the
// limit. Past it, entries would fail with "too many open files".
func fitOpenFiles(jobs int) (int, int, int) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil || rl.Cur >= 1<<20 {
		return jobs, 0, 0
	}
	limit := int(rl.Cur)
	if most := (limit - fdReserve - sinkMinFDs) / fdsPerJob; jobs > most {
		jobs = max(most, 1)
	}
	return jobs, max(limit-fdReserve-fdsPerJob*jobs, sinkMinFDs), limit
}

// run is one haul invocation: open the input, build the sink and the engine, run
// them, report. It returns nil or a cli.ExitCoder carrying its exit code.
func run(ctx context.Context, o *options, stdin io.Reader, stdout, stderr io.Writer) error {
	rep := newReporter(stderr, o.quiet, o.progress, o.progressEvery, isTerminal(stderr))
	rep.force = o.force
	err := runWith(ctx, o, rep, stdin, stdout)
	var ec cli.ExitCoder
	if rep.mode == "json" && errors.As(err, &ec) && err.Error() != "" {
		// Every line is JSON, this one too (main would print it as text).
		rep.printf(levelError, "%s", err.Error())
		return cli.Exit("", ec.ExitCode())
	}
	return err
}

func runWith(ctx context.Context, o *options, rep *reporter, stdin io.Reader, stdout io.Writer) error {
	src, closeInput, err := openInput(o, stdin)
	if err != nil {
		return cli.Exit(err.Error(), exitUsage)
	}
	defer closeInput()
	if o.insecure {
		rep.printf(levelWarning, "warning: --insecure: TLS certificates are not verified")
	}
	if o.shardFrom != "" && !o.quiet {
		rep.printf(levelInfo, "--shard auto: shard %d/%d (%s)", o.shardK, o.shardN, o.shardFrom)
	}
	jobs, sinkFDs, limit := fitOpenFiles(o.jobs)
	if jobs < o.jobs {
		rep.printf(levelWarning, "warning: --jobs %d needs about %d open files and the limit is %d (ulimit -n): running %d at a time",
			o.jobs, fdsPerJob*o.jobs+fdReserve+sinkMinFDs, limit, jobs)
		o.jobs = jobs
	}
	streams, sinkFDs := fitStreams(o.jobs, o.streams, sinkFDs)
	if streams < o.streams {
		rep.printf(levelWarning, "warning: --streams %d at --jobs %d needs about %d more open files and the limit is %d (ulimit -n): %d streams per connection",
			o.streams, o.jobs, fdsPerStream*o.jobs*(o.streams-streams), limit, streams)
		o.streams = streams
	}
	client, err := httpclient.New(httpclient.Options{
		Jobs: o.jobs, PerHost: o.perHost, Streams: o.streams, ConnectTimeout: o.connectTimeout,
		Timeout: o.timeout, CACert: o.cacert, Insecure: o.insecure, HTTP11: o.http11, NetHTTP: o.netHTTP,
		Netrc: o.netrc, Jar: o.jar, Proxies: o.proxies,
		DNSServers: o.dns.servers, DNSConcurrency: o.dns.concurrency,
	})
	if err != nil {
		return cli.Exit(err.Error(), exitUsage)
	}
	// With --force, files are tagged with this run, so that a URL listed twice
	// (or a name two lines share) is not fetched again within the run.
	var runTag string
	if o.force {
		runTag = fmt.Sprintf("%d-%016x", os.Getpid(), rand.Uint64())
	}
	sinkDir, cleanup, err := dryRunDir(o)
	if err != nil {
		return cli.Exit(err.Error(), exitFatal)
	}
	defer cleanup()
	var out sink.Sink
	var tarSink *sink.Tar
	var file *sink.File // the plain files' sink, when it is one
	if o.s3.on {
		b, err := openBucket(ctx, o, runTag)
		if err != nil {
			return cli.Exit(err.Error(), exitFatal)
		}
		out = b
		if o.tar.on {
			if tarSink, err = openTarBucket(o, b); err != nil {
				return cli.Exit(err.Error(), exitFatal)
			}
			for _, name := range tarSink.ForeignUnfinished() {
				rep.printf(levelWarning, "warning: %s is unfinished, written without --shard or under another number of shards: its samples count as stored, but only a run like the one that wrote it completes the object", name)
			}
		}
	} else if o.tar.on {
		if tarSink, err = openTar(o, sinkDir); err != nil {
			return cli.Exit(fmt.Sprintf("output directory: %v", err), exitFatal)
		}
	} else {
		// --dry-run: no probe of unnamed staging (it opens a file) and no committer.
		file, err = sink.NewFile(sinkDir, sink.FileOptions{NoSync: o.noSync || o.mirror.dryRun, RunTag: runTag, MaxOpen: sinkBudget(o.jobs, sinkFDs),
			Named: o.namedStaging || o.mirror.dryRun, Checkpoint: o.checkpoint})
		if err != nil {
			return cli.Exit(fmt.Sprintf("output directory: %v", err), exitFatal)
		}
		defer file.Close()
		out = file
		if o.compress != "" {
			if out, err = sink.NewCompressed(file, o.compress, o.compressLevel); err != nil {
				return cli.Exit(err.Error(), exitUsage)
			}
		}
	}
	if tarSink != nil {
		defer func() {
			if tarSink != nil {
				tarSink.Close(false) // a return before the run: the tar stays unfinished
			}
		}()
		out = tarSink
	}
	// After the sink, which creates --dir: --manifest DIR/m.jsonl works with a
	// DIR that does not exist yet. The sink is told of it: a file it did not
	// make.
	if file != nil && o.manifest != "" && o.manifest != "-" {
		if rel, ok := inside(sinkDir, o.manifest); ok {
			file.Made(rel)
		}
	}
	man, err := openManifest(o.manifest, stdout)
	if err != nil {
		return cli.Exit(err.Error(), exitUsage)
	}
	defer man.close()
	// A manifest that cannot be written (disk full, its reader gone) stops the
	// run as Ctrl-C does: the lines it would lose are the record of the run.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	man.stop = cancel
	set, err := loadChecksumsFor(ctx, o, client, o.header, rep)
	if err != nil {
		return cli.Exit(err.Error(), exitUsage)
	}
	opts := download.Options{
		Jobs: o.jobs, PerHost: o.perHost, Streams: o.streams, MaxStreams: o.maxStreams, Retries: o.retries, Timeout: o.timeout,
		LimitRate: o.limitRate, Split: o.split, MinSplitSize: o.minSplit, Header: o.header, Layout: o.layout, Force: o.force,
		RunTag:  runTag,
		HashAll: o.hashAll, ShardK: o.shardK, ShardN: o.shardN, ShardBy: o.shardBy, Decode: o.decode,
		Update: o.mirror.update, DryRun: o.mirror.dryRun, HostFailLimit: o.hostFailLimit,
		PerHostRate: o.polite.perHostRate, Robots: o.polite.robots, Tar: o.tar.on,
		OnResult: func(r *download.Result) {
			if r.Status == download.StatusPlanned {
				planLine(stdout, o.dir, r)
			}
			man.write(r)
			rep.result(r)
		},
	}
	var counted *countedChecksums
	if set != nil {
		counted = &countedChecksums{Set: set}
		opts.Checksums = counted
	}
	eng := download.New(client, out, opts)
	if set != nil && !o.mirror.recursive {
		// Read twice to find ambiguous names first; a walk (-r) is not
		// repeated: there, the second entry a NAME matches fails.
		closeInput()
		var closeRun func()
		if src, closeRun, err = prepareChecksums(ctx, o, eng, set, src, stdin); err != nil {
			if ctx.Err() != nil {
				return cli.Exit("", exitInterrupted) // Ctrl-C while the list was read
			}
			return cli.Exit(err.Error(), exitUsage)
		}
		defer closeRun()
	}
	src, closeWalk := walk(ctx, o, client, src)
	defer closeWalk()
	rep.start(eng.Stats())
	runErr := eng.Run(ctx, src)
	if runErr == nil {
		runErr = o.table.cutErr() // a list cut off midway: what was read before ran
	}
	if tarSink != nil {
		// The list ended: its last tar is finished. Interrupted, it stays
		// unfinished, and the next run appends to it.
		err := tarSink.Close(runErr == nil)
		tarSink = nil
		if err != nil && runErr == nil {
			runErr = &download.FatalError{Err: err}
		}
	}
	rep.stop()
	if err := man.close(); err != nil {
		if runErr == nil || errors.Is(runErr, context.Canceled) && errors.Is(context.Cause(ctx), errManifest) {
			runErr = &download.FatalError{Err: fmt.Errorf("manifest: %w", err)}
		} else {
			rep.printf(levelError, "manifest %s: %v (it ends at the last whole line)", o.manifest, err)
		}
	}
	exit := outcome(runErr, eng.Stats())
	var ec cli.ExitCoder
	code := exitOK
	if errors.As(exit, &ec) {
		code = ec.ExitCode()
		if rep.mode == "json" && exit.Error() != "" {
			// Before the final object, which is the last line.
			rep.printf(levelError, "%s", exit.Error())
			exit = cli.Exit("", code)
		}
	}
	if counted != nil {
		if n := counted.missed.Load(); n > 0 {
			rep.printf(levelWarning, "warning: --checksums %s has no hash for %d entries: those were not checked against it", o.mirror.checksums, n)
		}
	}
	rep.summary(runErr, code)
	return exit
}

// outcome maps the run's end to haul's exit codes.
func outcome(err error, st *download.Stats) error {
	var fe *download.FatalError
	switch {
	case errors.As(err, &fe):
		return cli.Exit(fe.Error(), exitFatal)
	case errors.Is(err, context.Canceled):
		return cli.Exit("", exitInterrupted)
	case err != nil:
		return cli.Exit(fmt.Sprintf("reading input: %v", err), exitUsage)
	case st.Failed.Load() > 0 || st.Invalid.Load() > 0 || st.Planned.Load() > 0: // --dry-run: something to do
		return cli.Exit("", exitFailed)
	}
	return nil
}

// openInput returns the list's source: arguments, -i FILE, -i -, or stdin when
// it is not a terminal.
func openInput(o *options, stdin io.Reader) (download.Source, func(), error) {
	switch {
	case len(o.urls) > 0 && o.input != "":
		return nil, nil, errors.New("give URLs as arguments or with -i, not both")
	case len(o.urls) > 0:
		return input.NewScanner(strings.NewReader(strings.Join(o.urls, "\n"))), func() {}, nil
	case o.input == "-":
		return openList(o, stdin, "", false)
	case o.input != "":
		f, err := os.Open(o.input)
		if err != nil {
			return nil, nil, err
		}
		if fi, err := f.Stat(); err != nil || fi.IsDir() {
			f.Close()
			return nil, nil, fmt.Errorf("-i %s: is a directory", o.input)
		}
		if o.manifest != "" && o.manifest != "-" && sameFile(o.input, o.manifest) {
			f.Close()
			return nil, nil, fmt.Errorf("--manifest %s is the input list: it would be overwritten", o.manifest)
		}
		src, closeList, err := openList(o, f, o.input, isRegular(f))
		if err != nil {
			f.Close()
			return nil, nil, err
		}
		return src, func() { closeList(); f.Close() }, nil
	}
	if f, ok := stdin.(*os.File); ok && isTerminal(f) {
		return nil, nil, errors.New("no URLs: give them as arguments, with -i FILE, or on standard input (see haul --help)")
	}
	return openList(o, stdin, "", false)
}

// sameFile reports whether both names are one existing file.
func sameFile(a, b string) bool {
	fa, err := os.Stat(a)
	if err != nil {
		return false
	}
	fb, err := os.Stat(b)
	return err == nil && os.SameFile(fa, fb)
}

func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

// inside returns name's path relative to dir, if name is under dir.
func inside(dir, name string) (string, bool) {
	d, err := filepath.Abs(dir)
	if err != nil {
		return "", false
	}
	n, err := filepath.Abs(name)
	if err != nil {
		return "", false
	}
	rel, err := filepath.Rel(d, n)
	return rel, err == nil && filepath.IsLocal(rel)
}
