package naming

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"path"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/haul/haul/internal/urlid"
	"github.com/haul/haul/sink"
)

// Layout decides where an entry is saved under --dir.
type Layout int

const (
	LayoutTree Layout = iota // DIR/HOST[_PORT]/PATH, like wget -x
	LayoutFlat               // DIR/BASENAME
	LayoutHash               // DIR/H[0:2]/H[2:4]/H.EXT, H = hex SHA-256 of the URL string
)

// MaxComponent is the longest file name component haul produces (bytes); longer ones are
// shortened to a prefix + "~" + 16 hex chars of the SHA-256 of the full component, keeping the
// extension when it is short (<= 16 bytes), so the result stays unique and <= MaxComponent.
const MaxComponent = 200 // leaves room for ".part" suffixes etc. under the usual 255-byte limit

// MaxOutComponent is the longest name component an out= path may have (bytes):
// the staging name adds ".part", and --compress ".gz" or ".zst", and most
// filesystems allow 255 bytes. out= names are the user's, so they are refused,
// not shortened.
const MaxOutComponent = 240

// maxExt is the longest extension kept: by the hash layout (without the dot) and when
// shortening a long component (with the dot).
const maxExt = 16

// ParseLayout parses "tree", "flat" or "hash".
func ParseLayout(s string) (Layout, error) {
	switch s {
	case "tree":
		return LayoutTree, nil
	case "flat":
		return LayoutFlat, nil
	case "hash":
		return LayoutHash, nil
	}
	return 0, fmt.Errorf("unknown layout %q (want tree, flat or hash)", s)
}

// String returns the name ParseLayout accepts for l.
func (l Layout) String() string {
	switch l {
	case LayoutTree:
		return "tree"
	case LayoutFlat:
		return "flat"
	case LayoutHash:
		return "hash"
	}
	return fmt.Sprintf("Layout(%d)", int(l))
}

// Name returns the slash-separated path relative to --dir for rawURL (the URL string exactly as
// written in the input; it is already known to be a valid absolute http(s) URL with a host).
// The result is always non-empty, local (filepath.IsLocal), has no "." or ".." or empty components,
// no NUL or '/' inside components, and each component is at most MaxComponent bytes.
//
// Path segments are percent-decoded one by one (an encoded "%2F" never splits a component),
// "." and ".." are resolved like a browser does but never above the host directory, and each
// component is re-encoded (see escapeComponent), so every component is valid UTF-8. Tree and
// flat names normalize (they are not injective over URLs); hash names are.
func (l Layout) Name(rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("unsupported scheme %q", u.Scheme)
	}
	if u.Hostname() == "" {
		return "", errors.New("url has no host")
	}
	switch l {
	case LayoutHash:
		return hashName(rawURL, u)
	case LayoutTree, LayoutFlat:
	default:
		return "", fmt.Errorf("unknown layout %d", int(l))
	}
	segs, err := pathSegments(u)
	if err != nil {
		return "", err
	}
	if u.RawQuery != "" {
		segs[len(segs)-1] += "?" + u.RawQuery // kept as written, not decoded
	}
	if l == LayoutFlat {
		segs = segs[len(segs)-1:]
	} else {
		segs = append([]string{hostDir(u)}, segs...)
	}
	for i, s := range segs {
		segs[i] = component(s)
	}
	return strings.Join(segs, "/"), nil
}

// hostDir returns the tree layout's first component (unescaped): the ASCII-lower-cased host
// without IPv6 brackets, with "_PORT" when the port is not the scheme's default.
func hostDir(u *url.URL) string {
	host := asciiLower(u.Hostname())
	port := strings.TrimLeft(u.Port(), "0")
	if u.Port() == "" || (u.Scheme == "http" && port == "80") || (u.Scheme == "https" && port == "443") {
		return host
	}
	if port == "" {
		port = "0"
	}
	return host + "_" + port
}

// pathSegments splits the escaped path of u on '/', decodes each segment, drops empty and "."
// segments, lets ".." pop (never past the root), and appends "index.html" when the path is
// directory-like (empty, or ending in "/", "." or ".."). The result is never empty.
func pathSegments(u *url.URL) ([]string, error) {
	var segs []string
	dec := ""
	for _, raw := range strings.Split(u.EscapedPath(), "/") {
		var err error
		if dec, err = url.PathUnescape(raw); err != nil {
			return nil, fmt.Errorf("bad path: %w", err)
		}
		switch dec {
		case "", ".":
		case "..":
			if len(segs) > 0 {
				segs = segs[:len(segs)-1]
			}
		default:
			segs = append(segs, dec)
		}
	}
	if dec == "" || dec == "." || dec == ".." {
		segs = append(segs, "index.html")
	}
	return segs, nil
}

// hashName returns H[0:2]/H[2:4]/H.EXT for the hash layout. H is the hash of the
// URL as the origin records it (without #fragment and user:password@): URLs that
// differ only there are one resource, and share one name as in the other layouts.
func hashName(rawURL string, u *url.URL) (string, error) {
	sum := sha256.Sum256([]byte(urlid.Origin(rawURL)))
	h := hex.EncodeToString(sum[:])
	p := u.EscapedPath()
	last, err := url.PathUnescape(p[strings.LastIndexByte(p, '/')+1:])
	if err != nil {
		return "", fmt.Errorf("bad path: %w", err)
	}
	ext := path.Ext(last)
	// ".part" would make the name another entry's staging file (see component).
	if len(ext) < 2 || len(ext) > 1+maxExt || strings.IndexFunc(ext[1:], notAlnum) >= 0 || ext == sink.PartSuffix {
		ext = ""
	}
	return h[0:2] + "/" + h[2:4] + "/" + h + ext, nil
}

func notAlnum(r rune) bool {
	return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9')
}

// component turns a decoded name into a safe file name component: escaped, never "." or
// "..", never ending in sink.PartSuffix, and at most MaxComponent bytes.
//
// A final name ending in ".part" would be another entry's staging file (URLs /a and /a.part
// would share a.part), so its dot is escaped: /a.part is saved as a%2Epart. Since '%' is
// always escaped, this keeps the mapping injective.
func component(s string) string { return Component(s) }

// Component is the file name component haul saves a decoded URL path segment
// (or a query, as written) as, in the tree and flat layouts: what a
// publisher's bare file name becomes on disk (see package checksums).
func Component(s string) string {
	s = escapeComponent(s)
	if s == "." || s == ".." {
		s = strings.ReplaceAll(s, ".", "%2E")
	}
	if base, ok := strings.CutSuffix(s, sink.PartSuffix); ok {
		s = base + "%2E" + sink.PartSuffix[1:]
	}
	return shorten(s)
}

// escapeComponent percent-encodes (%XX, upper case) '/', '\\', '?', '%', the characters
// Windows rejects (: * " < > |), control characters (C0, DEL and C1), and every byte of
// invalid UTF-8, so the result is valid UTF-8 (it round-trips through JSON manifests).
// Since '%' itself is encoded, the mapping is injective.
func escapeComponent(s string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && n == 1) || unicode.IsControl(r) || strings.ContainsRune(`/\?%:*"<>|`, r) {
			for _, c := range []byte(s[i : i+n]) {
				b.Write([]byte{'%', hexDigits[c>>4], hexDigits[c&15]})
			}
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// shorten cuts a component longer than MaxComponent to a prefix + "~" + 16 hex digits of the
// SHA-256 of the whole component + its extension when that is at most 16 bytes. The cut
// never splits a UTF-8 sequence or a %XX escape.
func shorten(s string) string {
	if len(s) <= MaxComponent {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	ext := path.Ext(s)
	if len(ext) > maxExt {
		ext = ""
	}
	cut := MaxComponent - 1 - 16 - len(ext)
	for i := 0; i < utf8.UTFMax-1 && cut > 0 && !utf8.RuneStart(s[cut]); i++ {
		cut--
	}
	if i := strings.LastIndexByte(s[max(cut-2, 0):cut], '%'); i >= 0 {
		cut = max(cut-2, 0) + i
	}
	return s[:cut] + "~" + hex.EncodeToString(sum[:8]) + ext
}

// asciiLower lower-cases ASCII letters only, keeping every other byte as is.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
