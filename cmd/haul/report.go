package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/cheggaaa/pb/v3"

	"github.com/haul/haul/download"
)

// reporter is everything haul tells a person, all on stderr: bad lines and
// failures as they happen, progress (a pb/v3 bar on a terminal, a plain status
// line every few seconds otherwise), and the summary at the end.
type reporter struct {
	w     io.Writer
	quiet bool
	tty   bool
	force bool // --force: an interrupted run resumes without it
	began time.Time
	st    *download.Stats

	mu       sync.Mutex
	failures []string // kept for the summary, at most maxListed
	more     int      // failures beyond maxListed
	stopped  int      // failed because the run stopped (Ctrl-C, a fatal error)

	bar  *pb.ProgressBar
	stop func()
}

const (
	maxListed     = 1000
	plainInterval = 5 * time.Second
)

func newReporter(w io.Writer, quiet, tty bool) *reporter {
	return &reporter{w: w, quiet: quiet, tty: tty, began: time.Now(), stop: func() {}}
}

// printf writes one message line, clearing the progress bar's line first.
func (r *reporter) printf(format string, args ...any) {
	prefix := ""
	if r.bar != nil {
		prefix = "\r\033[K"
	}
	fmt.Fprintf(r.w, prefix+"haul: "+format+"\n", args...)
}

// result is called for every finished entry, from any worker.
func (r *reporter) result(res *download.Result) {
	switch res.Status {
	case download.StatusInvalid:
		r.printf("%v", res.Err)
	case download.StatusFailed:
		var fe *download.FatalError
		if errors.Is(res.Err, download.ErrInterrupted) || errors.As(res.Err, &fe) {
			// Counted and in the manifest; the summary says to re-run, and a
			// fatal error is haul's last word.
			r.mu.Lock()
			r.stopped++
			r.mu.Unlock()
			return
		}
		r.printf("%v", res.Err)
		r.mu.Lock()
		if len(r.failures) < maxListed {
			r.failures = append(r.failures, res.Err.Error())
		} else {
			r.more++
		}
		r.mu.Unlock()
	}
}

// start begins showing progress from st until stop.
func (r *reporter) start(st *download.Stats) {
	r.st = st
	if r.quiet {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	if r.tty {
		r.bar = pb.New64(0).SetWriter(r.w).SetTemplateString(
			`{{string . "files"}} {{bar . "[" "=" ">" " " "]"}} {{string . "bytes"}} {{string . "rate"}} {{rtime . "ETA %s"}}`)
		r.bar.Start()
		go r.loop(ctx, done, 200*time.Millisecond, r.updateBar)
	} else {
		go r.loop(ctx, done, plainInterval, func() { r.printf("%s", r.status()) })
	}
	r.stop = func() {
		cancel()
		<-done
		if r.bar != nil {
			r.updateBar()
			r.bar.Finish()
		}
	}
}

func (r *reporter) loop(ctx context.Context, done chan struct{}, every time.Duration, f func()) {
	defer close(done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}

func (r *reporter) updateBar() {
	st := r.st
	finished := finished(st)
	r.bar.SetTotal(st.Queued.Load())
	r.bar.SetCurrent(finished)
	r.bar.Set("files", fmt.Sprintf("%d/%d files", finished, st.Queued.Load()))
	r.bar.Set("bytes", formatBytes(st.Bytes.Load()))
	r.bar.Set("rate", formatBytes(int64(r.rate()))+"/s")
}

func (r *reporter) rate() float64 {
	return float64(r.st.Bytes.Load()) / max(time.Since(r.began).Seconds(), 1e-3)
}

func (r *reporter) status() string {
	st := r.st
	total := fmt.Sprint(st.Queued.Load())
	if !st.InputDone.Load() {
		total += "+"
	}
	return fmt.Sprintf("%d/%s files (%d ok, %d skipped, %d unchanged, %d failed), %s, %s/s",
		finished(st), total, st.OK.Load(), st.Skipped.Load(), st.Unchanged.Load(),
		st.Failed.Load(), formatBytes(st.Bytes.Load()), formatBytes(int64(r.rate())))
}

// summary prints counts, bytes, time and rate, then every failure with its reason.
func (r *reporter) summary(runErr error) {
	st := r.st
	if !r.quiet {
		el := time.Since(r.began)
		extra := ""
		if n := st.Unchanged.Load(); n > 0 {
			extra += fmt.Sprintf(", %d unchanged", n)
		}
		if n := st.Planned.Load(); n > 0 {
			extra += fmt.Sprintf(", %d to fetch, resume or replace (--dry-run: see stdout)", n)
		}
		r.printf("%d ok, %d skipped%s, %d failed, %d invalid; %s in %s (%s/s)",
			st.OK.Load(), st.Skipped.Load(), extra, st.Failed.Load(), st.Invalid.Load(),
			formatBytes(st.Bytes.Load()), el.Round(time.Millisecond), formatBytes(int64(r.rate())))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.failures) > 0 {
		r.printf("%d failed:", len(r.failures)+r.more)
		for _, f := range r.failures {
			fmt.Fprintf(r.w, "  %s\n", f)
		}
		if r.more > 0 {
			fmt.Fprintf(r.w, "  ... and %d more (see the lines above or --manifest)\n", r.more)
		}
	}
	switch {
	case errors.Is(runErr, context.Canceled) && r.force:
		r.printf("interrupted: %d stopped unfinished (failed, interrupted, in the manifest); run the same command without --force to resume (with it, partial files start over)", r.stopped)
	case errors.Is(runErr, context.Canceled):
		r.printf("interrupted: %d stopped unfinished (failed, interrupted, in the manifest); run the same command again to resume", r.stopped)
	case r.stopped > 0:
		r.printf("%d more stopped unfinished when the run stopped: run the same command again to resume them", r.stopped)
	}
	if runErr != nil && !st.InputDone.Load() {
		// Entries never read are in no count and no manifest: a retry of the
		// manifest's failed lines would miss them, the same command would not.
		r.printf("the list was not read to the end: the entries after the first %d were not started and are not in the manifest", st.Queued.Load())
	}
}

// finished counts the entries that are done, whatever their outcome.
func finished(st *download.Stats) int64 {
	return st.OK.Load() + st.Skipped.Load() + st.Unchanged.Load() + st.Planned.Load() + st.Failed.Load()
}

func formatBytes(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}
