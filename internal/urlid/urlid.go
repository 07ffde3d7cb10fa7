package urlid

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// MaxOriginLen is the longest URL whose origin value is the URL itself; a
// longer one is "sha256:" and its hash, since a filesystem limits an
// attribute's size (ext4: all of a file's attributes in one block).
const MaxOriginLen = 1024

// Origin is the origin value of rawURL: the URL without its user name and
// password (as curl --xattr stores it: the attribute is readable by anyone who
// can read the file) and without its #fragment (never sent: URLs that differ
// only there are one resource), or, for a URL longer than MaxOriginLen, its
// Short form. Two URLs with one Origin are one resource.
func Origin(rawURL string) string {
	rawURL = Public(rawURL)
	if len(rawURL) <= MaxOriginLen {
		return rawURL
	}
	return Short(rawURL)
}

// Public is rawURL as it may be shown to anyone (a dataset's KEY.json,
// an extended attribute): without its user name and password, and without
// its #fragment (never sent).
func Public(rawURL string) string {
	if i := strings.IndexByte(rawURL, '#'); i >= 0 {
		rawURL = rawURL[:i]
	}
	return StripUserinfo(rawURL)
}

// Short is the short form of an origin value: "sha256:" and the hex SHA-256
// of it. The short form of a short form is itself.
func Short(origin string) string {
	if strings.HasPrefix(origin, "sha256:") && len(origin) == len("sha256:")+2*sha256.Size {
		return origin
	}
	sum := sha256.Sum256([]byte(origin))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Same reports whether stored, an origin value read back from a file, names
// rawURL as the source. A value may have been stored in its short form where
// the filesystem had no room for it, so both forms match.
func Same(stored, rawURL string) bool {
	v := Origin(rawURL)
	return stored == v || stored == Short(v)
}

// StripUserinfo removes "user:password@" from an absolute URL's authority.
func StripUserinfo(rawURL string) string {
	i := strings.Index(rawURL, "://")
	if i < 0 {
		return rawURL
	}
	auth := rawURL[i+3:]
	if end := strings.IndexAny(auth, "/?#"); end >= 0 {
		auth = auth[:end]
	}
	at := strings.LastIndexByte(auth, '@')
	if at < 0 {
		return rawURL
	}
	return rawURL[:i+3] + rawURL[i+3+at+1:]
}

// Redact replaces the password in a URL with "xxxxx", as url.URL.Redacted
// does, so that messages do not print it; the rest stays as written. It
// parses nothing, so a URL that does not parse (a bad input line) is masked
// too: the password is what follows the userinfo's first ':', up to the
// authority's last '@'. Only for messages.
func Redact(rawURL string) string {
	if !strings.Contains(rawURL, "@") {
		return rawURL
	}
	i := strings.Index(rawURL, "://")
	if i < 0 {
		return rawURL
	}
	auth := rawURL[i+3:]
	if end := strings.IndexAny(auth, "/?#"); end >= 0 {
		auth = auth[:end]
	}
	at := strings.LastIndexByte(auth, '@')
	colon := strings.IndexByte(auth, ':')
	if at < 0 || colon < 0 || colon > at {
		return rawURL
	}
	return rawURL[:i+3+colon+1] + "xxxxx" + rawURL[i+3+at:]
}

// HostKey returns the URL's host:port, lower-cased, with the port as a number
// (leading zeros dropped) and the scheme's default when none is given: the key
// of per-host caps and pauses, so that one server is one host however its URLs
// spell it. rawURL must already be a checked absolute http(s) URL (the input
// parser's): slicing out the authority is enough, no url.Parse per entry.
func HostKey(rawURL string) string {
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return rawURL
	}
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		rest = rest[i+1:]
	}
	host, port := rest, ""
	if i := strings.LastIndexByte(rest, ':'); i >= 0 && !strings.Contains(rest[i:], "]") {
		host, port = rest[:i], rest[i+1:]
	}
	switch {
	case port != "":
		if port = strings.TrimLeft(port, "0"); port == "" {
			port = "0"
		}
	case strings.EqualFold(scheme, "https"):
		port = "443"
	default:
		port = "80"
	}
	return strings.ToLower(host) + ":" + port
}
