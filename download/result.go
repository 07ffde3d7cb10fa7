package download

import (
	"encoding/json"
	"errors"
	"sync/atomic"
	"time"
)

// Status is the outcome of one entry, as the manifest spells it.
type Status string

// The statuses an entry can end in.
const (
	StatusOK      Status = "ok"      // downloaded and verified
	StatusSkipped Status = "skipped" // already on disk (or listed twice)
	StatusFailed  Status = "failed"  // gave up; Err says why
	StatusInvalid Status = "invalid" // the input line could not be used
	// StatusUnchanged: --update asked the server, which said the file has not
	// changed (304); it was not rewritten.
	StatusUnchanged Status = "unchanged"
	// StatusPlanned: --dry-run: a run would fetch, resume or replace it
	// (Result.Plan and Result.Reason say which and why). Nothing was asked
	// or written.
	StatusPlanned Status = "planned"
	// StatusExcluded: --robots: the host's robots.txt disallows it for
	// haul's User-Agent; nothing was asked for it (Err says which rule). It
	// counts as done.
	StatusExcluded Status = "excluded"
)

// Result is the outcome of one entry (or one bad input line).
type Result struct {
	Entry      Entry
	Name       string // path relative to --dir, slash-separated; "" if none was derived
	Status     Status
	Size       int64  // bytes stored (from disk for skipped entries)
	SHA256     string // hex SHA-256 of the stored bytes where computed, else ""
	HTTPStatus int    // last HTTP status received, 0 if none
	Err        error
	Attempts   int
	Duration   time.Duration
	// CloseDelimited: the body had no length and no chunked framing, so it
	// ended when the server closed the connection; a connection cut by the
	// network ends it the same way. Only size= or sha256= confirm it whole.
	CloseDelimited bool
	// Sample is the entry's sample key where it is stored as a sample of a
	// tar file (Options.Tar), and Tar and Member where it is: the tar
	// file's name and its body's member (KEY.EXT). Its Name is then the
	// key, not a path: its manifest line's out is null.
	Sample, Tar, Member string
	// Plan is what a run would do, with --dry-run: "fetch", "resume",
	// "replace" or "check" (--update: ask the server); Reason says why.
	Plan, Reason string
}

// MarshalJSON writes the manifest line for r. Its keys match the input's JSON
// lines, so a manifest filtered to failed entries is a valid input list.
func (r *Result) MarshalJSON() ([]byte, error) {
	if r.Status == StatusInvalid {
		// A table's row: its number, and the line it starts on (none in
		// a Parquet file).
		var le *LineError
		row := 0
		if errors.As(r.Err, &le) {
			row = le.Row
		}
		return json.Marshal(struct {
			Line   int    `json:"line,omitempty"`
			Row    int    `json:"row,omitempty"`
			Status Status `json:"status"`
			Error  string `json:"error"`
		}{r.Entry.Line, row, r.Status, r.Err.Error()})
	}
	type manifestLine struct {
		URL        string  `json:"url"`
		Out        *string `json:"out"`
		Status     Status  `json:"status"`
		Size       *int64  `json:"size"`
		SHA256     *string `json:"sha256"`
		HTTPStatus *int    `json:"http_status"`
		Error      *string `json:"error"`
		Attempts   int     `json:"attempts"`
		DurationMS int64   `json:"duration_ms"`
		// Present (true) only where the end of the body was the server's
		// word alone: jq 'select(.close_delimited)' finds those files.
		CloseDelimited bool `json:"close_delimited,omitempty"`
		// The entry's key (key=, a key column) and a table row's other
		// columns, when it has them: a failed line keeps them for the retry.
		Key  string          `json:"key,omitempty"`
		Meta json.RawMessage `json:"meta,omitempty"`
		// A sample's tar file and member.
		Tar    string `json:"tar,omitempty"`
		Member string `json:"member,omitempty"`
	}
	m := manifestLine{URL: r.Entry.URL, Status: r.Status, Attempts: r.Attempts,
		DurationMS: r.Duration.Milliseconds(), CloseDelimited: r.CloseDelimited && r.Status == StatusOK,
		Key: r.Entry.Key}
	if r.Entry.Meta != "" {
		m.Meta = json.RawMessage(r.Entry.Meta)
	}
	if r.Sample != "" {
		// Its key, even a position in the list: a list made of failed
		// lines names each sample as before.
		m.Key = r.Sample
		if r.Status == StatusOK || r.Status == StatusSkipped {
			m.Tar, m.Member = r.Tar, r.Member
		}
	} else if r.Name != "" {
		m.Out = &r.Name
	}
	switch {
	case r.Status != StatusFailed && r.Status != StatusExcluded:
		m.Size = &r.Size
		if r.SHA256 != "" {
			m.SHA256 = &r.SHA256
		}
	// A failed line is an input line for the retry: it carries what was
	// expected (size=, sha256=), never what came, or the retry would accept
	// the bytes this run rejected. What came is in the error. An excluded
	// line (nothing came) carries what was expected too.
	case r.Entry.Size >= 0:
		m.Size = &r.Entry.Size
		fallthrough
	default:
		if r.Entry.SHA256 != "" {
			m.SHA256 = &r.Entry.SHA256
		}
	}
	if r.HTTPStatus != 0 {
		m.HTTPStatus = &r.HTTPStatus
	}
	if r.Err != nil {
		s := r.Err.Error()
		m.Error = &s
	}
	return json.Marshal(m)
}

// Stats are the run's live counters, updated atomically by the workers and read
// by progress displays at their own pace.
type Stats struct {
	Queued    atomic.Int64 // entries accepted into the pool so far (the known total)
	OK        atomic.Int64
	Skipped   atomic.Int64
	Failed    atomic.Int64
	Invalid   atomic.Int64
	Unchanged atomic.Int64 // --update: the server said 304
	Planned   atomic.Int64 // --dry-run: entries a run would do something for
	Excluded  atomic.Int64 // --robots: entries robots.txt disallows
	Bytes     atomic.Int64 // body bytes received in this run
	InFlight  atomic.Int64
	// InputDone is set once the whole list has been read (not when a stop cut
	// the reading short): Queued is then final.
	InputDone atomic.Bool
}

func (s *Stats) count(st Status) {
	switch st {
	case StatusOK:
		s.OK.Add(1)
	case StatusSkipped:
		s.Skipped.Add(1)
	case StatusFailed:
		s.Failed.Add(1)
	case StatusInvalid:
		s.Invalid.Add(1)
	case StatusUnchanged:
		s.Unchanged.Add(1)
	case StatusPlanned:
		s.Planned.Add(1)
	case StatusExcluded:
		s.Excluded.Add(1)
	}
}
