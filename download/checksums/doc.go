// Package checksums reads published lists of SHA-256 hashes (a SHA256SUMS
// file, in GNU sha256sum or BSD format) and answers, for an output path, the
// hash the publisher gives for it.
//
// It owns the two formats (`HEX  NAME`, `HEX *NAME`, GNU's backslash-escaped
// names, `SHA256 (NAME) = HEX`) and the matching rule: NAME matches an output
// path equal to it or ending in "/NAME" (whole path components; a leading
// "./" ignored), so a list of bare names works with every layout. A NAME that
// matches two different output paths of one run is ambiguous: both fail
// rather than guess. It never fetches anything and never reads the files.
//
// The whole list is held in memory (one record per line, indexed by its last
// path component): a publisher's list is a fraction of the size of the URL list
// that haul streams.
package checksums
