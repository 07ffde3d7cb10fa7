package download

import (
	"errors"
	"fmt"
	"net/http"
	"syscall"
	"time"

	"github.com/haul/haul/download/internal/retry"
	"github.com/haul/haul/internal/urlid"
	"github.com/haul/haul/sink"
)

// Sentinel errors that callers and tests branch on.
var (
	// ErrCollision: another URL already owns the file this entry would write.
	ErrCollision = errors.New("name collision")
	// ErrStoredDiffers: a sample stored in a tar file fails the entry's
	// size= or sha256=.
	ErrStoredDiffers = errors.New("stored sample differs")
	// ErrBadLength: the body's length differs from Content-Length or size=.
	ErrBadLength = errors.New("length mismatch")
	// ErrBadChecksum: the body's SHA-256 differs from sha256=.
	ErrBadChecksum = errors.New("sha256 mismatch")
	// ErrStalled: no bytes arrived for --timeout.
	ErrStalled = errors.New("transfer stalled")
	// ErrInterrupted: the run was cancelled (Ctrl-C, SIGTERM) before the entry finished.
	ErrInterrupted = errors.New("interrupted")
	// ErrHostDown: the entry's host got --host-fail-limit attempts in a row
	// without a response in this run; its entries fail without a request.
	ErrHostDown = errors.New("host down")
)

// Error is the error of one entry: what was being done, to which URL, and why.
// It is the only error type that leaves a job, so every message names its URL.
type Error struct {
	Op  string // "get", "write", "verify", "name", ...
	URL string
	Err error
}

func (e *Error) Error() string { return e.Op + " " + urlid.Redact(e.URL) + ": " + e.Err.Error() }

func (e *Error) Unwrap() error { return e.Err }

// StatusError is an HTTP response that was not a success.
type StatusError struct {
	Code       int
	RetryAfter time.Duration // from the Retry-After header, 0 if none
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("server returned %d %s", e.Code, http.StatusText(e.Code))
}

// statusError is the error of a response that is not a success, with the
// wait its Retry-After asks for.
func statusError(resp *http.Response) *StatusError {
	return &StatusError{Code: resp.StatusCode, RetryAfter: retry.After(resp.Header.Get("Retry-After"), time.Now())}
}

// FatalError stops the whole run: the output cannot be written (disk full,
// read-only filesystem, no permission), so no further entry can succeed.
type FatalError struct{ Err error }

func (e *FatalError) Error() string { return e.Err.Error() }
func (e *FatalError) Unwrap() error { return e.Err }

// fatalSinkError reports whether err from the sink means no entry can be written.
// A permission error (EACCES) may concern one file or subdirectory only: see
// Engine.writable.
func fatalSinkError(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) ||
		errors.Is(err, syscall.EROFS) || errors.Is(err, sink.ErrUnavailable)
}

// retryable decides, once, whether a failed attempt is worth another: connection
// errors, timeouts, stalls, short bodies, 408, 429 and 5xx are; other statuses,
// collisions, checksum mismatches, local I/O errors and what the network
// policy (retry.Retryable) calls final are not.
func retryable(err error) bool {
	var se *StatusError
	if errors.As(err, &se) {
		return retry.Status(se.Code)
	}
	var le *localError
	if errors.As(err, &le) || errors.Is(err, ErrCollision) || errors.Is(err, ErrBadChecksum) {
		return false
	}
	if errors.Is(err, ErrBadLength) {
		// A body that ended early is a dropped connection; one that was longer
		// than promised or than size= will be just as wrong the next time.
		return errors.Is(err, errShortBody)
	}
	return retry.Retryable(err)
}

// localError marks a failure of the local side (sink I/O), never retried.
type localError struct{ err error }

func (e *localError) Error() string { return e.err.Error() }
func (e *localError) Unwrap() error { return e.err }

var (
	errShortBody = fmt.Errorf("%w: body ended early", ErrBadLength)
)
