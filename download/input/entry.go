package input

import "fmt"

// Entry is one parsed line (or table row) of the input list: a URL and what
// the list says about it. It is a plain value: comparable, printable, and
// cheap to copy.
type Entry struct {
	// URL is the URL exactly as written on the line (after trimming), the key used for
	// de-duplication, sharding and the manifest.
	URL string
	// Out is the cleaned, slash-separated path relative to --dir given by out=, or "".
	// ParseLine guarantees it is local (filepath.IsLocal) when non-empty.
	Out string
	// SHA256 is the expected lowercase hex SHA-256 of the stored (uncompressed) bytes, or "".
	SHA256 string
	// Size is the expected size in bytes, or -1 when the line does not give one.
	Size int64
	// Line is the 1-based line number in the input: for a CSV or TSV row, the
	// line it starts on; 0 for a Parquet row.
	Line int
	// Row is the 1-based data row of a table (the header not counted), 0 for a
	// text list.
	Row int
	// Key names the entry (key= on a line, "key" in a JSON line, a table's
	// key column), or "". Where it names a sample (Options.SampleKeys) the
	// reader has checked it with CheckKey.
	Key string
	// Index is the entry's 0-based position among the list's entries: every
	// line or row that is neither blank nor a comment counts, bad ones and
	// repeats too, before --shard. SampleKey names the entry by it when Key
	// is "".
	Index int
	// Meta is a JSON object, compact, of a table row's other columns in the
	// order of the table's columns (or a JSON line's "meta" object), or "".
	// Only rows that pass the reader's Keep carry it.
	Meta string
}

// SampleKey is the entry's name as a sample (a WebDataset key): its Key,
// else its Index in nine digits, zero-padded.
func (e Entry) SampleKey() string {
	if e.Key != "" {
		return e.Key
	}
	return fmt.Sprintf("%09d", e.Index)
}
