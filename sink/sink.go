// Package sink is where the bytes of one entry go: a staging file that becomes visible
// under its final name only when it is complete.
//
// A Sink never writes outside its directory: every path it is given is resolved with
// os.Root, so "..", absolute paths and symbolic links that point outside fail instead of
// escaping. The download engine depends on this package, never the reverse.
package sink

import (
	"errors"
	"io"
	"time"
)

// Sink stores the bytes of entries under relative, slash-separated names.
// Implementations are safe for concurrent use by many workers, provided no two
// workers use the same name at the same time (the engine guarantees that).
type Sink interface {
	// Stat describes the final file for name. It returns an error satisfying
	// errors.Is(err, fs.ErrNotExist) when there is none.
	Stat(name string) (Info, error)
	// Create opens the staging file for name, for this process alone, recording
	// origin (the source URL) with it. If an earlier, interrupted run left bytes
	// for the same origin, the Writer is positioned after them and Partial says
	// so; otherwise it starts empty. The final file, if any, is left alone until
	// Commit. Create returns ErrLocked if another process is writing name.
	Create(name, origin string) (Writer, error)
	// Open opens the final file for name for reading, e.g. to verify its hash.
	Open(name string) (io.ReadCloser, error)
	// Flush waits until every Commit issued before it has called its done.
	Flush()
	// Staged reports what Create would resume for name and origin (Offset 0:
	// nothing), without creating, locking or changing anything.
	Staged(name, origin string) (Partial, error)
}

// Info describes a final file.
type Info struct {
	// Size is the number of bytes stored under the final name.
	Size int64
	// ModTime is when the file was last written.
	ModTime time.Time
	// Origin is the source URL recorded when the file was written, or "" when the
	// file carries none (written by another tool, or a filesystem without extended
	// attributes).
	Origin string
	// RunTag is the FileOptions.RunTag the file was written with, "" if none (or
	// if this sink has no RunTag: it is not read then).
	RunTag string
	// ETag and LastModified are the validators of the response the file was
	// written from (Writer.SetCacheValidators), "" where none was recorded.
	// haul sets a file's ModTime to the response's Last-Modified, and records
	// them only where that is not enough or costs nothing: files over 64 KiB,
	// and small ones whose response had an ETag and no Last-Modified.
	ETag, LastModified string
	// Tar and Member say where a Tar sink holds the sample: its tar file's
	// name in the directory and its body's member; "" for a file.
	Tar, Member string
	// Changed: the file's length differs from the one haul committed, so it
	// was changed on disk since (truncated, or rewritten by another tool) and
	// its recorded validators no longer describe it. Known only where they
	// were recorded.
	Changed bool
}

// Partial describes the bytes an earlier run left in a staging file.
type Partial struct {
	Offset    int64  // bytes kept; the next Write appends after them
	Validator string // the ETag or Last-Modified that guards them ("" if Offset is 0)
	Total     int64  // full length announced by the server, -1 if unknown
	// Done lists the ranges past Offset that are kept too (a file fetched over
	// several connections, see RangeWriter): sorted, disjoint, none touching
	// Offset. nil for a file written in order.
	Done []Range
}

// Range is the byte range [Start, End) of a body.
type Range struct{ Start, End int64 }

// RangeWriter is what a Writer of a plain file offers besides Writer, for a
// body fetched in pieces over several connections (the compressed sink, which
// needs its bytes in order, does not). Its methods are called by one goroutine
// at a time, except WriteAt.
type RangeWriter interface {
	// WriteAt writes p at off; safe to call concurrently for disjoint ranges.
	WriteAt(p []byte, off int64) (int, error)
	// ReadAt reads back bytes written (to hash them in order).
	ReadAt(p []byte, off int64) (int, error)
	// SetRanges records which ranges of the body hold its bytes (from 0, all of
	// them): the writer is then in ranged mode. When a checkpoint's worth of
	// bytes arrived since the last one, it makes the file durable and then
	// records these ranges (on another goroutine, one checkpoint at a time);
	// Abort records the last ranges given.
	SetRanges(done []Range)
	// EndRanges leaves ranged mode: the body's bytes are in order up to prefix,
	// and the next Write appends there (bytes past it may be overwritten).
	EndRanges(prefix int64) error
}

// Writer receives the bytes of one entry. It is used by one goroutine at a time.
// Exactly one of Commit, Abort or Discard must be called, after which the Writer
// is unusable.
type Writer interface {
	io.Writer
	// Partial reports what was resumable when the Writer was opened.
	Partial() Partial
	// Prefix reads the Partial().Offset bytes already stored, e.g. to hash them.
	Prefix() io.Reader
	// SetValidator records the validator (strong ETag or Last-Modified) and full
	// length of the body being written, saved with the progress so that a later
	// run can resume it with If-Range.
	SetValidator(validator string, total int64)
	// SetCacheValidators records the response's ETag (weak ones too) and
	// Last-Modified with the file, for a later conditional request; they
	// reach the final name with it (Info.ETag, Info.LastModified).
	SetCacheValidators(etag, lastModified string)
	// Commit finishes the file: once its bytes are durable (unless the sink was
	// told not to sync), they are atomically moved to the final name and done is
	// called with nil, or with the error that prevented it (the staging file is
	// then removed). done is called exactly once, possibly before Commit returns,
	// possibly later from another goroutine. Commit blocks while too many commits
	// are pending, so memory stays bounded.
	Commit(done func(error))
	// Abort stops writing and keeps the staging file, with its progress saved,
	// for a later run to resume (a file with nothing resumable is removed).
	// Nothing appears at the final name.
	Abort() error
	// Discard removes the staging file (its bytes are known to be wrong).
	Discard() error
	// Restart discards the bytes written so far: the next Write starts the file
	// over (the server sent the whole body again instead of the rest of it).
	Restart() error
	// Replace lets Commit replace whatever is at the final name (the caller
	// looked at it and wants it gone: --force, or it failed size=/sha256=).
	// Without it, Commit replaces only a file with the same origin (another
	// process finished the same URL meanwhile) and otherwise fails with ErrTaken,
	// keeping the file that is there.
	Replace()
}

// HashWriter is what a Writer offers that stores a body's SHA-256 with it
// when it is known before the body is written (an object store's metadata
// is set when its upload begins).
type HashWriter interface {
	// SetSHA256 gives the SHA-256 (hex) the body is expected to have; the
	// caller checks the body against it before Commit.
	SetSHA256(hex string)
}

// CostlyWriter is a Writer whose kept bytes cost while they wait for a
// later run (an object store's multipart upload in progress): an entry that
// fails for good discards them rather than aborting; one interrupted aborts,
// keeping them to resume.
type CostlyWriter interface {
	Writer
	KeepingCosts()
}

// ErrUnavailable reports that no entry can be written any more (an object
// store lost the bucket, or refuses the credentials): the run stops.
var ErrUnavailable = errors.New("output unavailable")

// ErrNoPrefix reports that the bytes a Writer kept cannot be read back (the
// parts of an object store's upload in progress): a caller that needs them
// (to hash them) starts the body over.
var ErrNoPrefix = errors.New("the bytes kept cannot be read back")

// ErrLocked reports that another process is writing the staging file.
var ErrLocked = errors.New("staging file in use by another process")

// ErrFileInWay reports that a directory is needed where a file of the same name
// is being written, or was when a run stopped (its staging file is there).
var ErrFileInWay = errors.New("a file of this name is being downloaded, or was left partial (" + PartSuffix + ")")

// ErrTaken reports that a file from another origin (or one haul did not write)
// appeared at the final name while the entry was being written.
var ErrTaken = errors.New("final name taken meanwhile")

// ErrNotRegular reports that the final name exists but is not a regular file.
var ErrNotRegular = errors.New("exists and is not a regular file")
