// Package input parses haul's URL lists: one entry per line, a URL with
// key=value fields (out=, sha256=, size=) or a JSON object with the same keys,
// streamed line by line (Scanner) so that a list of millions of lines is
// never held in memory.
//
// It owns the syntax of a line and its checks (scheme, out= that stays below
// the output directory, line length, NUL bytes, unknown keys) and the line
// numbers in its errors. It never opens a URL or a file, and keeps no state
// across lines but the line count: de-duplication is the engine's.
package input
