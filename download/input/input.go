package input

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/haul/haul/download/naming"
	"github.com/haul/haul/internal/urlid"
	"github.com/haul/haul/sink"
)

// MaxLineLen is the longest accepted input line (64 KiB), excluding the newline.
const MaxLineLen = 64 << 10

// LineError reports a bad input line or table row. Error() returns "input
// line N: reason" for a line, "input row N (line L): reason" for a CSV or TSV
// row and "input row N: reason" for a Parquet row.
type LineError struct {
	Line   int // the line (for a CSV or TSV row: the line it starts on), 0 for a Parquet row
	Row    int // the table's data row, from 1; 0 for a line
	Reason string
}

func (e *LineError) Error() string {
	switch {
	case e.Row == 0:
		return fmt.Sprintf("input line %d: %s", e.Line, e.Reason)
	case e.Line == 0:
		return fmt.Sprintf("input row %d: %s", e.Row, e.Reason)
	}
	return fmt.Sprintf("input row %d (line %d): %s", e.Row, e.Line, e.Reason)
}

// MaxKeyLen is the longest accepted key, in bytes: a sample's longest member
// name, KEY.body.json, then fits in a file name of 255 bytes with room to
// spare.
const MaxKeyLen = 200

// CheckKey reports why k cannot name a sample, or nil (see
// Options.SampleKeys): WebDataset cuts a member's name at its first dot, and a
// member name is a file name once extracted, so a key holds no "." nor "/",
// no control character, is valid UTF-8, not empty and at most MaxKeyLen bytes.
func CheckKey(k string) error {
	switch {
	case k == "":
		return errors.New("empty key")
	case strings.ContainsAny(k, "./"):
		return fmt.Errorf("key %s holds a . or a / (a sample's members are named KEY.EXT)", quoteShort(k))
	case hasControl(k) || strings.ContainsFunc(k, func(r rune) bool { return unicode.IsControl(r) || r == '\u2028' || r == '\u2029' }):
		// C1 controls and line separators too: a member's name is a file
		// name once extracted, and a line of a listing.
		return fmt.Errorf("key %s contains a control character", quoteShort(k))
	case !utf8.ValidString(k):
		return fmt.Errorf("key %s is not valid UTF-8", quoteShort(k))
	case len(k) > MaxKeyLen:
		return fmt.Errorf("key %s: %d bytes (at most %d)", quoteShort(k), len(k), MaxKeyLen)
	}
	return nil
}

// ParseLine parses one input line (without its newline; a trailing \r is tolerated).
// It returns ok=false and a nil error for blank lines and comment lines (first non-blank char '#').
// On a bad line it returns a *LineError whose Line is lineNo.
func ParseLine(line []byte, lineNo int) (e Entry, ok bool, err error) {
	fail := func(err error) (Entry, bool, error) {
		return Entry{}, false, &LineError{Line: lineNo, Reason: err.Error()}
	}
	if len(bytes.TrimSuffix(line, []byte("\r"))) > MaxLineLen {
		return fail(errors.New("line longer than 64 KiB"))
	}
	if bytes.IndexByte(line, 0) >= 0 {
		return fail(errors.New("NUL byte in line"))
	}
	s := strings.Trim(string(line), " \t\r")
	if s == "" || s[0] == '#' {
		return Entry{}, false, nil
	}
	if s[0] == '{' {
		e, err = parseJSON(s)
	} else {
		e, err = parseFields(s)
	}
	if err != nil {
		return fail(err)
	}
	e.Line = lineNo
	return e, true, nil
}

// parseFields parses the "URL key=value..." form.
func parseFields(s string) (Entry, error) {
	if !strings.ContainsAny(s, " \t\r") { // the usual line: a URL alone
		if err := checkURL(s); err != nil {
			return Entry{}, err
		}
		return Entry{URL: s, Size: -1}, nil
	}
	f := strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '\t' || r == '\r' })
	e := Entry{URL: f[0], Size: -1}
	if err := checkURL(e.URL); err != nil {
		return Entry{}, err
	}
	seen := map[string]bool{}
	for _, kv := range f[1:] {
		k, v, found := strings.Cut(kv, "=")
		switch {
		case !found:
			return Entry{}, fmt.Errorf("field %s is not key=value", quoteShort(kv))
		case k != "out" && k != "sha256" && k != "size" && k != "key":
			return Entry{}, fmt.Errorf("unknown field %s", quoteShort(k))
		case seen[k]:
			return Entry{}, fmt.Errorf("duplicate field %q", k)
		}
		seen[k] = true
		if err := setField(&e, k, v); err != nil {
			return Entry{}, err
		}
	}
	return e, nil
}

// parseJSON parses the JSON object form; unknown keys are ignored and null means absent.
// Keys match exactly ("URL" is another, unknown key), unlike encoding/json's struct fields.
// "key" may be a string or an integer; "meta", an object, is carried as is
// (compacted), so that a manifest line keeps its row's other columns.
func parseJSON(s string) (Entry, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return Entry{}, fmt.Errorf("invalid JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	str := func(k string) (string, error) {
		raw, ok := m[k]
		if !ok || string(raw) == "null" {
			return "", nil
		}
		var v string
		if err := json.Unmarshal(raw, &v); err != nil {
			return "", fmt.Errorf("invalid JSON: %q is not a string", k)
		}
		return v, nil
	}
	u, err := str("url")
	if err != nil {
		return Entry{}, err
	}
	if u == "" {
		return Entry{}, errors.New("missing url")
	}
	e := Entry{URL: u, Size: -1}
	if err := checkURL(e.URL); err != nil {
		return Entry{}, err
	}
	// Empty strings count as absent, like null, so that manifests writing "" parse.
	var fields []struct{ k, v string }
	for _, k := range []string{"out", "sha256"} {
		v, err := str(k)
		if err != nil {
			return Entry{}, err
		}
		fields = append(fields, struct{ k, v string }{k, v})
	}
	if raw := m["size"]; len(raw) > 0 && string(raw) != "null" {
		fields = append(fields, struct{ k, v string }{"size", string(raw)})
	}
	if raw := m["key"]; len(raw) > 0 && string(raw) != "null" {
		k, err := jsonKey(raw)
		if err != nil {
			return Entry{}, err
		}
		fields = append(fields, struct{ k, v string }{"key", k})
	}
	for _, f := range fields {
		if f.v == "" {
			continue
		}
		if err := setField(&e, f.k, f.v); err != nil {
			return Entry{}, err
		}
	}
	if raw := m["meta"]; len(raw) > 0 && string(raw) != "null" {
		if raw[0] != '{' {
			return Entry{}, errors.New(`invalid JSON: "meta" is not an object`)
		}
		var b bytes.Buffer
		if err := json.Compact(&b, raw); err != nil {
			return Entry{}, fmt.Errorf("invalid JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
		}
		e.Meta = b.String()
	}
	return e, nil
}

// jsonKey returns a JSON line's "key": a string, or an integer as written.
func jsonKey(raw json.RawMessage) (string, error) {
	if raw[0] == '"' {
		var k string
		if err := json.Unmarshal(raw, &k); err != nil {
			return "", fmt.Errorf("invalid JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
		}
		return k, nil
	}
	digits := strings.TrimPrefix(string(raw), "-")
	if digits == "" || strings.IndexFunc(digits, notDigit) >= 0 {
		return "", errors.New(`invalid JSON: "key" is neither a string nor an integer`)
	}
	return string(raw), nil
}

// setField validates v and stores it in the field of e named by k (out, sha256, size or key).
func setField(e *Entry, k, v string) error {
	switch k {
	case "out":
		out, err := cleanOut(v)
		e.Out = out
		return err
	case "sha256":
		if len(v) != 64 || strings.IndexFunc(v, notHex) >= 0 {
			return fmt.Errorf("bad sha256 %s: want 64 hex digits", quoteShort(v))
		}
		e.SHA256 = strings.ToLower(v)
	case "size":
		n, err := strconv.ParseInt(v, 10, 64)
		if v == "" || strings.IndexFunc(v, notDigit) >= 0 || err != nil {
			return fmt.Errorf("bad size %s: want a non-negative integer", quoteShort(v))
		}
		e.Size = n
	case "key":
		// Checked as a sample's name only where it is one (Options.SampleKeys):
		// elsewhere a list's keys (an object store's paths, say) are carried
		// as they are.
		if v == "" {
			return errors.New("empty key=")
		}
		e.Key = v
	}
	return nil
}

func notHex(r rune) bool {
	return !('0' <= r && r <= '9' || 'a' <= r && r <= 'f' || 'A' <= r && r <= 'F')
}

func notDigit(r rune) bool { return r < '0' || r > '9' }

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// checkURL reports why s is not an absolute http or https URL with a host, or nil.
func checkURL(s string) error {
	if hasControl(s) {
		return fmt.Errorf("invalid URL %s: control character", quoteURL(s))
	}
	if !utf8.ValidString(s) {
		// The manifest (JSON) could not give it back as written; a URL's bytes
		// beyond ASCII are percent-encoded anyway.
		return fmt.Errorf("invalid URL %s: not valid UTF-8 (percent-encode such bytes)", quoteURL(s))
	}
	beforeFragment, _, _ := strings.Cut(s, "#")
	if _, query, ok := strings.Cut(beforeFragment, "?"); ok && strings.Contains(query, " ") {
		// A space in the path is sent encoded; in the query it would go as is,
		// breaking the request line (only a JSON line can hold one).
		return fmt.Errorf("invalid URL %s: a space in the query (write it as %%20)", quoteURL(s))
	}
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error's text repeats the URL, password and all
		}
		return fmt.Errorf("invalid URL %s: %v", quoteURL(s), err)
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "https":
	case "":
		return fmt.Errorf("invalid URL %s: not absolute (need http:// or https://)", quoteURL(s))
	default:
		return fmt.Errorf("unsupported scheme %s", quoteShort(u.Scheme))
	}
	if u.Hostname() == "" {
		return fmt.Errorf("invalid URL %s: missing host", quoteURL(s))
	}
	return nil
}

// cleanOut validates an out= path and returns it cleaned and slash-separated.
func cleanOut(p string) (string, error) {
	switch {
	case p == "":
		return "", errors.New("empty out= path")
	case hasControl(p):
		return "", fmt.Errorf("out= path %s contains a control character", quoteShort(p))
	case !utf8.ValidString(p):
		// As for URLs: the manifest (JSON) could not give it back as written.
		return "", fmt.Errorf("out= path %s is not valid UTF-8", quoteShort(p))
	case strings.Contains(p, `\`):
		return "", fmt.Errorf("out= path %s contains a backslash", quoteShort(p))
	case path.IsAbs(p):
		return "", fmt.Errorf("out= path %s is absolute", quoteShort(p))
	}
	c := path.Clean(p)
	if c == "." {
		return "", fmt.Errorf("out= path %s names no file", quoteShort(p))
	}
	if !filepath.IsLocal(filepath.FromSlash(c)) {
		return "", fmt.Errorf("out= path %s escapes --dir", quoteShort(p))
	}
	for _, comp := range strings.Split(c, "/") {
		if strings.HasSuffix(comp, sink.PartSuffix) {
			return "", fmt.Errorf("out= path %s: names ending in %s are haul's partial files", quoteShort(p), sink.PartSuffix)
		}
		if len(comp) > naming.MaxOutComponent {
			return "", fmt.Errorf("out= path %s: a name of %d bytes (at most %d: haul adds %s, and .zst with --compress, within the filesystem's 255)",
				quoteShort(p), len(comp), naming.MaxOutComponent, sink.PartSuffix)
		}
	}
	return c, nil
}

// quoteShort returns s quoted for an error message, shortened if long.
// quoteURL quotes a URL for a message, without its password.
func quoteURL(s string) string { return quoteShort(urlid.Redact(s)) }

func quoteShort(s string) string {
	if len(s) > 100 {
		return strconv.Quote(s[:100]) + "..."
	}
	return strconv.Quote(s)
}

// Scanner streams entries from r line by line, never holding more than one line
// (<= MaxLineLen+some) in memory.
type Scanner struct {
	r       *bufio.Reader
	n       int
	entries int   // lines that are neither blank nor a comment, so far
	err     error // sticky: io.EOF or a read error
}

// NewScanner returns a Scanner reading from r.
func NewScanner(r io.Reader) *Scanner {
	return &Scanner{r: bufio.NewReaderSize(r, MaxLineLen+2)} // room for the line, "\r" and "\n"
}

// Next returns the next entry. Blank/comment lines are skipped silently. A bad line
// returns a *LineError (the caller reports it and calls Next again). A line longer than
// MaxLineLen is a *LineError and its remainder is discarded without buffering it.
// At the end it returns io.EOF; a read error is returned as is (not a LineError).
func (s *Scanner) Next() (Entry, error) {
	for s.err == nil {
		line, err := s.r.ReadSlice('\n')
		if err != nil && err != io.EOF && err != bufio.ErrBufferFull {
			s.err = err // a partial line before a read error is dropped
			break
		}
		if len(line) == 0 {
			s.err = err
			break
		}
		s.n++
		if s.n == 1 {
			line = bytes.TrimPrefix(line, []byte("\xef\xbb\xbf")) // a UTF-8 byte order mark
		}
		if err == bufio.ErrBufferFull {
			s.entries++
			return Entry{}, s.skipLong()
		}
		s.err = err // nil, or io.EOF after a final line without newline
		e, ok, perr := ParseLine(bytes.TrimSuffix(line, []byte("\n")), s.n)
		if perr != nil || ok {
			if ok {
				e.Index = s.entries
			}
			s.entries++
			return e, perr
		}
	}
	return Entry{}, s.err
}

// skipLong discards the rest of an over-long line and returns its LineError.
// A read error while discarding is returned by the following Next.
func (s *Scanner) skipLong() error {
	for {
		_, err := s.r.ReadSlice('\n')
		if err != bufio.ErrBufferFull {
			if err != nil {
				s.err = err
			}
			return &LineError{Line: s.n, Reason: "line longer than 64 KiB"}
		}
	}
}

// Lines returns how many lines have been read so far.
func (s *Scanner) Lines() int { return s.n }
