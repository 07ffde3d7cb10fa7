// Package input parses haul's URL lists, streamed so that a list of millions
// of entries is never held in memory: text lists, one entry per line (a URL
// with key=value fields, out=, sha256=, size= and key=, or a JSON object with
// the same keys; Scanner), and tables, one entry per row (CSV, TSV and
// Parquet, whose other columns are carried along as the entry's Meta; Open).
// A list may be compressed with gzip or zstd (Open recognises them by their
// first bytes).
//
// It owns the syntax of a line or row and its checks (scheme, out= that stays
// below the output directory, line length, NUL bytes, unknown keys) and the
// line and row numbers in its errors. It never opens a URL or a file, and
// keeps no state across lines but counts: de-duplication is the engine's.
package input
