package checksums

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"sync"

	"github.com/haul/haul/download/naming"
)

// MaxLine is the longest line read; longer ones are bad lines.
const MaxLine = 64 << 10

// LineError is a line of the list that is not a SHA-256 record.
type LineError struct {
	Line   int
	Reason string
}

func (e *LineError) Error() string { return fmt.Sprintf("checksums line %d: %s", e.Line, e.Reason) }

// ErrAmbiguous: one NAME of the list matches two output paths of the run, or
// two NAMEs with different hashes match one path.
var ErrAmbiguous = errors.New("ambiguous checksums entry")

// Set is a parsed list. Lookup and Note are safe for concurrent use.
type Set struct {
	byBase map[string][]*record // by the NAME's last component
	n      int

	mu sync.Mutex
}

type record struct {
	name string // cleaned, slash-separated, no leading "./"
	// disk is name as the tree and flat layouts write it (each component
	// escaped, see naming.Component), "" when that is name itself: a publisher
	// names "a:b.log", haul saves it as "a%3Ab.log".
	disk string
	hex  string // lowercase
	line int
	// first and second are the first two distinct output paths that matched
	// (Note), under Set.mu.
	first, second string
}

// Len returns the number of records.
func (s *Set) Len() int { return s.n }

// Parse reads a list. Bad lines are returned in bad (one per line, with its
// number) and skipped; err is a read error, or a list with no record at all.
func Parse(r io.Reader) (s *Set, bad []*LineError, err error) {
	s = &Set{byBase: make(map[string][]*record)}
	br := bufio.NewReaderSize(r, MaxLine+2)
	for n := 1; ; n++ {
		line, rerr := br.ReadSlice('\n')
		if errors.Is(rerr, bufio.ErrBufferFull) {
			bad = append(bad, &LineError{n, "line too long"})
			for errors.Is(rerr, bufio.ErrBufferFull) {
				_, rerr = br.ReadSlice('\n')
			}
			if rerr == io.EOF {
				break
			}
			continue
		}
		if len(line) > 0 {
			if rec, lerr := parseLine(line, n); lerr != nil {
				bad = append(bad, lerr)
			} else if rec != nil {
				s.add(rec)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return nil, bad, rerr
		}
	}
	if s.n == 0 {
		return nil, bad, errors.New("no SHA-256 records found")
	}
	return s, bad, nil
}

func (s *Set) add(rec *record) {
	parts := strings.Split(rec.name, "/")
	for i, p := range parts {
		parts[i] = naming.Component(p)
	}
	if d := strings.Join(parts, "/"); d != rec.name {
		rec.disk = d
	}
	base := path.Base(rec.name)
	for _, o := range s.byBase[base] {
		if o.name == rec.name {
			if o.hex != rec.hex {
				// The same name twice with two hashes: nothing matching it can
				// be verified.
				o.hex = ""
			}
			return
		}
	}
	s.byBase[base] = append(s.byBase[base], rec)
	if rec.disk != "" {
		if db := path.Base(rec.disk); db != base {
			s.byBase[db] = append(s.byBase[db], rec)
		}
	}
	s.n++
}

// parseLine parses one line: nil, nil for a blank or comment line.
func parseLine(b []byte, n int) (*record, *LineError) {
	b = bytes.TrimRight(b, "\r\n")
	if n == 1 {
		b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf")) // a UTF-8 byte order mark
	}
	s := string(b)
	t := strings.TrimSpace(s)
	if t == "" || strings.HasPrefix(t, "#") {
		return nil, nil
	}
	if bytes.IndexByte(b, 0) >= 0 {
		return nil, &LineError{n, "NUL byte"}
	}
	var hex, name string
	escaped := false
	if strings.HasPrefix(s, "\\SHA256 (") || strings.HasPrefix(s, "\\SHA256(") {
		// sha256sum --tag escapes a name with "\\" or a newline so, too.
		escaped, s = true, s[1:]
	}
	switch {
	case strings.HasPrefix(s, "SHA256 (") || strings.HasPrefix(s, "SHA256("):
		// BSD: SHA256 (NAME) = HEX. NAME may hold ") = ", so cut at the last.
		rest := strings.TrimPrefix(strings.TrimPrefix(s, "SHA256"), " ")[1:]
		i := strings.LastIndex(rest, ") = ")
		if i < 0 {
			return nil, &LineError{n, "BSD line without ') = '"}
		}
		name, hex = rest[:i], rest[i+len(") = "):]
	case len(t) > 0 && !isHexByte(t[0]) && t[0] != '\\' && strings.Contains(t, " ("):
		alg, _, _ := strings.Cut(t, " (")
		return nil, &LineError{n, fmt.Sprintf("%s, not SHA256", alg)}
	default:
		// GNU: [\]HEX, a space, ' ' or '*' (text or binary mode), NAME.
		if strings.HasPrefix(s, "\\") {
			escaped, s = true, s[1:]
		}
		if len(s) < 66 || s[64] != ' ' {
			return nil, &LineError{n, "want HEX  NAME, HEX *NAME or SHA256 (NAME) = HEX"}
		}
		hex, name = s[:64], s[66:]
		if s[65] != ' ' && s[65] != '*' {
			name = s[65:] // "HEX NAME", one space, as some publishers write it
		}
	}
	hex = strings.ToLower(strings.TrimSpace(hex))
	if len(hex) != 64 || strings.IndexFunc(hex, func(r rune) bool { return !isHexByte(byte(r)) || r > 0x7f }) >= 0 {
		return nil, &LineError{n, fmt.Sprintf("%q is not a SHA-256 hex digest", truncate(hex))}
	}
	if escaped {
		var err error
		if name, err = unescape(name); err != nil {
			return nil, &LineError{n, err.Error()}
		}
	}
	clean, err := cleanName(name)
	if err != nil {
		return nil, &LineError{n, err.Error()}
	}
	return &record{name: clean, hex: hex, line: n}, nil
}

// unescape undoes GNU sha256sum's escaping of a name holding "\\" or a
// newline (the line then starts with "\\").
func unescape(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 == len(s) {
			return "", errors.New("name ends in a lone backslash")
		}
		i++
		switch s[i] {
		case '\\':
			b.WriteByte('\\')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		default:
			return "", fmt.Errorf("unknown escape \\%c in name", s[i])
		}
	}
	return b.String(), nil
}

// cleanName makes a NAME comparable with output paths: slash-separated,
// cleaned, without a leading "./"; an absolute name is matched by its
// components (sha256sum lists of absolute paths exist).
func cleanName(name string) (string, error) {
	if name == "" {
		return "", errors.New("empty name")
	}
	c := path.Clean(strings.TrimLeft(name, "/"))
	if c == "." || c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("name %q names no file below a directory", truncate(name))
	}
	return c, nil
}

func isHexByte(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// matches reports whether NAME rec.name matches output path p: p equals it or
// ends in "/" + it (whole components).
func (rec *record) matches(p string) bool {
	return suffixOf(p, rec.name) || rec.disk != "" && suffixOf(p, rec.disk)
}

// suffixOf reports whether p is name or ends in "/" + name.
func suffixOf(p, name string) bool {
	return p == name || strings.HasSuffix(p, name) && p[len(p)-len(name)-1] == '/'
}

// candidates returns the records whose NAME matches p.
func (s *Set) candidates(p string) []*record {
	var out []*record
	for _, rec := range s.byBase[path.Base(p)] {
		if rec.matches(p) {
			out = append(out, rec)
		}
	}
	return out
}

// Note records that output path p is in the run, before any Lookup: a NAME
// that matches two different paths is then ambiguous for both. A caller that
// can read the list twice notes every path first (so the first path fails
// too); one that cannot (a list streamed once) gets the ambiguity from the
// second path on.
func (s *Set) Note(p string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rec := range s.candidates(p) {
		switch {
		case rec.first == "":
			rec.first = p
		case rec.first != p && rec.second == "":
			rec.second = p
		}
	}
}

// Lookup returns the hash the list gives for output path p, "" if none. The
// error wraps ErrAmbiguous when the answer would be a guess: the NAME that
// matches p matches another path of the run too (see Note), two NAMEs with
// different hashes match p, or the list gives one NAME two hashes.
func (s *Set) Lookup(p string) (string, error) {
	s.Note(p)
	s.mu.Lock()
	defer s.mu.Unlock()
	hex := ""
	var names []string
	for _, rec := range s.candidates(p) {
		if rec.second != "" {
			other := rec.first
			if other == p {
				other = rec.second
			}
			return "", fmt.Errorf("%w: %q (line %d) matches %s and %s", ErrAmbiguous, rec.name, rec.line, p, other)
		}
		if rec.hex == "" {
			return "", fmt.Errorf("%w: %q is listed with two different hashes", ErrAmbiguous, rec.name)
		}
		if hex != "" && rec.hex != hex {
			return "", fmt.Errorf("%w: %q and %q both match %s, with different hashes", ErrAmbiguous, names[0], rec.name, p)
		}
		hex = rec.hex
		names = append(names, rec.name)
	}
	return hex, nil
}
