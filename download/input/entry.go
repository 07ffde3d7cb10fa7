package input

// Entry is one parsed line of the input list: a URL and what the line says about it.
// It is a plain value: comparable, printable, and cheap to copy.
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
	// Line is the 1-based line number in the input.
	Line int
}
