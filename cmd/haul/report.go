package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/cheggaaa/pb/v3"

	"github.com/haul/haul/download"
)

// reporter is everything haul tells a person or a log collector, all on
// stderr: bad lines and failures as they happen, progress (--progress: a pb/v3
// bar, a plain status line or a JSON object per interval, or none), and the
// summary at the end. With --progress json every line it writes is one JSON
// object, messages included, so that a collector parses stderr whole.
type reporter struct {
	w     io.Writer
	quiet bool
	mode  string        // bar, plain, json or none (auto resolved)
	every time.Duration // plain and json
	force bool          // --force: an interrupted run resumes without it
	began time.Time
	st    *download.Stats

	wmu sync.Mutex // one line at a time: messages, JSON and the bar's redraws

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
	barInterval   = 200 * time.Millisecond
)

// newReporter resolves --progress auto: a bar when stderr is a terminal,
// plain lines otherwise.
func newReporter(w io.Writer, quiet bool, mode string, every time.Duration, tty bool) *reporter {
	if mode == "auto" {
		mode = "plain"
		if tty {
			mode = "bar"
		}
	}
	if quiet {
		mode = "none"
	}
	return &reporter{w: w, quiet: quiet, mode: mode, every: every, began: time.Now(), stop: func() {}}
}

// Message levels, in JSON messages.
const (
	levelError   = "error"
	levelWarning = "warning"
	levelInfo    = "info"
)

// printf writes one message line, as "haul: MESSAGE" (clearing the progress
// bar's line first) or, with --progress json, as {"type":"message",...}.
func (r *reporter) printf(level, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if r.mode == "json" {
		r.writeJSON(struct {
			Type    string `json:"type"`
			Level   string `json:"level"`
			Message string `json:"message"`
		}{"message", level, msg})
		return
	}
	prefix := ""
	if r.bar != nil {
		prefix = "\r\033[K"
	}
	r.write([]byte(prefix + "haul: " + msg + "\n"))
}

// write writes b whole, never between another line's pieces.
func (r *reporter) write(b []byte) (int, error) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	return r.w.Write(b)
}

func (r *reporter) writeJSON(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // plain structs of numbers and strings
	}
	r.write(append(b, '\n'))
}

// lockedWriter is the bar's writer: its redraws take the reporter's line lock.
type lockedWriter struct{ r *reporter }

func (l lockedWriter) Write(b []byte) (int, error) { return l.r.write(b) }

// result is called for every finished entry, from any worker.
func (r *reporter) result(res *download.Result) {
	switch res.Status {
	case download.StatusInvalid:
		r.printf(levelError, "%v", res.Err)
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
		r.printf(levelError, "%v", res.Err)
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
	var every time.Duration
	var show func()
	switch r.mode {
	case "bar":
		r.bar = pb.New64(0).SetWriter(lockedWriter{r}).SetTemplateString(
			`{{string . "files"}} {{bar . "[" "=" ">" " " "]"}} {{string . "bytes"}} {{string . "rate"}} {{rtime . "ETA %s" "in %s"}}`)
		// pb finds the terminal through its writer's *os.File, which the
		// lock hides: redraw in place (\r, padded to the width) all the same.
		r.bar.Set(pb.Terminal, true).Set(pb.ReturnSymbol, "\r")
		r.bar.Start()
		every, show = barInterval, r.updateBar
	case "plain":
		every, show = r.every, func() { r.printf(levelInfo, "%s", r.status()) }
	case "json":
		every, show = r.every, func() { r.writeJSON(r.snapshot("progress")) }
	default:
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go r.loop(ctx, done, every, show)
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
	finished := st.OK.Load() + st.Skipped.Load() + st.Unchanged.Load() + st.Planned.Load() + st.Excluded.Load() + st.Failed.Load()
	r.bar.SetTotal(st.Queued.Load())
	r.bar.SetCurrent(finished)
	r.bar.Set("files", fmt.Sprintf("%d/%d files", finished, st.Queued.Load()))
	r.bar.Set("bytes", formatBytes(st.Bytes.Load()))
	r.bar.Set("rate", formatBytes(int64(r.rate()))+"/s")
}

func (r *reporter) rate() float64 {
	return float64(r.st.Bytes.Load()) / max(time.Since(r.began).Seconds(), 1e-3)
}

// progress is one JSON progress object: the plain status line's fields.
type progress struct {
	Type      string  `json:"type"`    // progress, or final for the last one
	Elapsed   float64 `json:"elapsed"` // seconds since the start
	Done      int64   `json:"done"`    // ok + skipped + unchanged + planned + excluded + failed
	Queued    int64   `json:"queued"`  // entries read from the list so far
	InputDone bool    `json:"input_done"`
	OK        int64   `json:"ok"`
	Skipped   int64   `json:"skipped"`
	Unchanged int64   `json:"unchanged"`          // --update: the server said 304
	Planned   int64   `json:"planned,omitempty"`  // --dry-run: entries a run would act on
	Excluded  int64   `json:"excluded,omitempty"` // --robots: entries robots.txt disallows
	Failed    int64   `json:"failed"`
	Invalid   int64   `json:"invalid"`
	InFlight  int64   `json:"in_flight"`
	Bytes     int64   `json:"bytes"` // body bytes received in this run
	Rate      int64   `json:"rate"`  // bytes per second, averaged over the run
	// Only in the final object: the exit code haul is about to return.
	ExitCode *int `json:"exit_code,omitempty"`
}

// snapshot reads the counters once, so that a line's figures agree.
func (r *reporter) snapshot(typ string) progress {
	st := r.st
	p := progress{Type: typ, InputDone: st.InputDone.Load(), Queued: st.Queued.Load(),
		OK: st.OK.Load(), Skipped: st.Skipped.Load(), Unchanged: st.Unchanged.Load(), Planned: st.Planned.Load(),
		Excluded: st.Excluded.Load(), Failed: st.Failed.Load(), Invalid: st.Invalid.Load(), InFlight: st.InFlight.Load(), Bytes: st.Bytes.Load()}
	el := time.Since(r.began)
	p.Done = p.OK + p.Skipped + p.Unchanged + p.Planned + p.Excluded + p.Failed
	p.Elapsed = el.Round(time.Millisecond).Seconds()
	p.Rate = int64(float64(p.Bytes) / max(el.Seconds(), 1e-3))
	return p
}

// status is the plain progress line: the JSON object's fields, in words.
func (r *reporter) status() string {
	p := r.snapshot("progress")
	total := fmt.Sprint(p.Queued)
	if !p.InputDone {
		total += "+" // more to read
	}
	excluded := ""
	if p.Excluded > 0 {
		excluded = fmt.Sprintf(", %d excluded", p.Excluded)
	}
	return fmt.Sprintf("%d/%s files (%d ok, %d skipped, %d unchanged%s, %d failed, %d invalid), %d in flight, %s, %s/s, %s",
		p.Done, total, p.OK, p.Skipped, p.Unchanged, excluded, p.Failed, p.Invalid, p.InFlight, formatBytes(p.Bytes),
		formatBytes(p.Rate), (time.Duration(p.Elapsed*1e3) * time.Millisecond).Round(time.Second))
}

// summary prints counts, bytes, time and rate, then every failure with its
// reason and what to do next; with --progress json, the notes as messages and
// the final object (carrying exitCode) last.
func (r *reporter) summary(runErr error, exitCode int) {
	st := r.st
	if !r.quiet && r.mode != "json" {
		el := time.Since(r.began)
		extra := ""
		if n := st.Unchanged.Load(); n > 0 {
			extra += fmt.Sprintf(", %d unchanged", n)
		}
		if n := st.Excluded.Load(); n > 0 {
			extra += fmt.Sprintf(", %d excluded (robots.txt: see --manifest)", n)
		}
		if n := st.Planned.Load(); n > 0 {
			extra += fmt.Sprintf(", %d to fetch, resume or replace (--dry-run: see stdout)", n)
		}
		r.printf(levelInfo, "%d ok, %d skipped%s, %d failed, %d invalid; %s in %s (%s/s)",
			st.OK.Load(), st.Skipped.Load(), extra, st.Failed.Load(), st.Invalid.Load(),
			formatBytes(st.Bytes.Load()), el.Round(time.Millisecond), formatBytes(int64(r.rate())))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.failures) > 0 && r.mode != "json" { // json: each was a message already
		r.printf(levelError, "%d failed:", len(r.failures)+r.more)
		for _, f := range r.failures {
			r.write([]byte("  " + f + "\n"))
		}
		if r.more > 0 {
			r.write([]byte(fmt.Sprintf("  ... and %d more (see the lines above or --manifest)\n", r.more)))
		}
	}
	switch {
	case errors.Is(runErr, context.Canceled) && r.force:
		r.printf(levelWarning, "interrupted: %d stopped unfinished (failed, interrupted, in the manifest); run the same command without --force to resume (with it, partial files start over)", r.stopped)
	case errors.Is(runErr, context.Canceled):
		r.printf(levelWarning, "interrupted: %d stopped unfinished (failed, interrupted, in the manifest); run the same command again to resume", r.stopped)
	case r.stopped > 0:
		r.printf(levelWarning, "%d more stopped unfinished when the run stopped: run the same command again to resume them", r.stopped)
	}
	if runErr != nil && !st.InputDone.Load() {
		// Entries never read are in no count and no manifest: a retry of the
		// manifest's failed lines would miss them, the same command would not.
		r.printf(levelWarning, "the list was not read to the end: the entries after the first %d were not started and are not in the manifest", st.Queued.Load())
	}
	if r.mode == "json" {
		p := r.snapshot("final")
		p.ExitCode = &exitCode
		r.writeJSON(p)
	}
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
