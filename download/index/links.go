package index

import (
	"io"
	"net/url"
	"strings"

	"golang.org/x/net/html"
)

// Link is one entry of a directory listing.
type Link struct {
	// URL is absolute, with the page's scheme, user info and host as the page
	// spells them, and every path segment decoded and escaped again one way
	// (escapeSegment), so that two servers' spellings of one name give one URL.
	// It has no query and no fragment.
	URL string
	// Name is the entry's name: the last path segment, unescaped (what
	// --accept/--reject match).
	Name string
	// Dir is set when the link ends in "/": a subdirectory, to be listed.
	Dir bool
}

// maxToken bounds the tokenizer's buffer, which holds one tag or one run of
// text: a page is streamed, so this (and not the page's size) is what one
// page costs in memory. A longer tag or text fails the page.
const maxToken = 1 << 20

// Links calls yield with each entry of the directory listing read from r,
// the page at page (its final URL, after redirects), in page order, until
// yield returns false or the page ends. It streams the tokenizer: the page is
// never held whole.
//
// An entry is an <a href> that resolves (against the page, or the first
// <base href> seen) to a direct child of the page's directory: same scheme,
// host and port, the page's directory path plus exactly one segment (and a
// trailing "/" for a subdirectory), after dot segments are resolved. Every
// listing format names each entry by a link of that shape. Everything else
// is dropped: queries (Apache's ?C=N;O=D sort links, Caddy's ?sort=), fragments,
// the page itself, its parents, mailto: and javascript:, other hosts, and links
// two or more levels down (the page between lists those), which is what lets
// a walk reach each URL from one page only. A link repeating the one just
// given (an icon and a name linking to one entry) is given once.
//
// The error is the reader's or the tokenizer's (a tag or text run over 1 MiB);
// io.EOF is not an error.
func Links(page *url.URL, r io.Reader, yield func(Link) bool) error {
	p := newParser(page, r)
	for {
		l, err := p.next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if !yield(l) {
			return nil
		}
	}
}

// parser pulls the links of one page from its tokenizer, one at a time, so
// that the walker can give each to its caller before reading on.
type parser struct {
	z        *html.Tokenizer
	page     *url.URL
	base     *url.URL // what hrefs resolve against: the page or its <base href>
	baseSeen bool
	origin   string   // the page's scheme://host:port, normalized (originKey)
	dir      []string // the page directory's path segments, unescaped
	prefix   string   // the page's directory as a canonical URL, ending in "/"
	last     string   // the URL last given
	// slashed: the page has linked a directory of its own server with the
	// trailing "/" (a subdirectory, its parent "../", a breadcrumb): its
	// server's listings write directories so.
	slashed bool
}

func newParser(page *url.URL, r io.Reader) *parser {
	z := html.NewTokenizer(r)
	z.SetMaxBuf(maxToken)
	p := &parser{z: z, page: page, base: page, origin: originKey(page)}
	p.dir = dirSegments(page)
	var b strings.Builder
	b.WriteString(page.Scheme)
	b.WriteString("://")
	if page.User != nil {
		b.WriteString(page.User.String())
		b.WriteByte('@')
	}
	b.WriteString(page.Host)
	b.WriteByte('/')
	for _, s := range p.dir {
		b.WriteString(escapeSegment(s))
		b.WriteByte('/')
	}
	p.prefix = b.String()
	return p
}

// next returns the page's next entry, or io.EOF at its end.
func (p *parser) next() (Link, error) {
	for {
		switch p.z.Next() {
		case html.ErrorToken:
			return Link{}, p.z.Err()
		case html.StartTagToken, html.SelfClosingTagToken:
			name, hasAttr := p.z.TagName()
			if !hasAttr {
				continue
			}
			isBase := string(name) == "base"
			if string(name) != "a" && (!isBase || p.baseSeen) {
				continue
			}
			href, ok := p.href()
			if !ok {
				continue
			}
			if isBase {
				// Only the first <base href> counts (HTML's rule); it applies
				// from here on, since the links before it are already given.
				p.baseSeen = true
				if b, err := p.page.Parse(fixEscapes(trimHref(href))); err == nil {
					p.base = b
				}
				continue
			}
			if !p.slashed {
				p.noteSlash(href)
			}
			if l, ok := p.resolve(href); ok && l.URL != p.last {
				p.last = l.URL
				return l, nil
			}
		}
	}
}

// noteSlash sets slashed if href links a directory of the page's server
// with its trailing "/".
func (p *parser) noteSlash(href string) {
	h := trimHref(href)
	h, _, _ = strings.Cut(h, "#")
	h, _, _ = strings.Cut(h, "?")
	if !strings.HasSuffix(h, "/") {
		return
	}
	if u, err := p.base.Parse(fixEscapes(h)); err == nil && u.Opaque == "" && originKey(u) == p.origin {
		p.slashed = true
	}
}

// href returns the tag's first href attribute (HTML keeps the first of two),
// entities decoded by the tokenizer.
func (p *parser) href() (string, bool) {
	for more := true; more; {
		var k, v []byte
		k, v, more = p.z.TagAttr()
		if string(k) == "href" {
			return string(v), true
		}
	}
	return "", false
}

// resolve turns an href into the entry it names, if it names one.
func (p *parser) resolve(href string) (Link, bool) {
	href = trimHref(href)
	if href == "" || strings.ContainsAny(href, "?#") {
		return Link{}, false // the page itself, a query or a fragment
	}
	if !p.baseSeen {
		if l, ok, simple := p.child(href); simple {
			return l, ok
		}
	}
	u, err := p.base.Parse(fixEscapes(href))
	if err != nil || u.Opaque != "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" ||
		originKey(u) != p.origin {
		return Link{}, false
	}
	segs := strings.Split(u.EscapedPath(), "/")
	if len(segs) < 2 || segs[0] != "" {
		return Link{}, false
	}
	segs = segs[1:]
	if len(segs) < len(p.dir)+1 {
		return Link{}, false
	}
	for i, s := range p.dir {
		if unescape(segs[i]) != s {
			return Link{}, false
		}
	}
	rest := segs[len(p.dir):]
	switch {
	case len(rest) == 1:
		return p.link(rest[0], false)
	case len(rest) == 2 && rest[1] == "":
		return p.link(rest[0], true)
	}
	return Link{}, false
}

// child is the fast path of resolve, for what every listing writes: a bare
// relative name, with or without "./" and a trailing "/". simple is false
// when href is anything else, for the general path to decide.
func (p *parser) child(href string) (l Link, ok, simple bool) {
	for strings.HasPrefix(href, "./") {
		href = href[2:]
	}
	dir := strings.HasSuffix(href, "/")
	name := strings.TrimSuffix(href, "/")
	if name == "" || strings.ContainsAny(name, "/\\") {
		return Link{}, false, false
	}
	if i := strings.IndexByte(name, ':'); i >= 0 && isScheme(name[:i]) {
		return Link{}, false, false // "mailto:", and "x:y" too, as a browser reads it
	}
	l, ok = p.link(name, dir)
	return l, ok, true
}

// link builds the entry for one escaped segment below the page's directory.
// A segment that decodes to "." or "..", or to a name holding "/" or NUL, is
// no file's name: a server that wrote it is trying something.
func (p *parser) link(seg string, dir bool) (Link, bool) {
	name := unescape(seg)
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return Link{}, false
	}
	u := p.prefix + escapeSegment(name)
	if dir {
		u += "/"
	}
	return Link{URL: u, Name: name, Dir: dir}, true
}

// isScheme reports whether s is a URL scheme: a letter, then letters, digits,
// '+', '-' or '.'. Before a ':' anything else ("2024-01-02T10:00.log") is
// part of a relative path, for browsers; url.Parse refuses it, so the fast
// path takes it.
func isScheme(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return s != ""
}

// trimHref strips what browsers strip from a URL: leading and trailing C0
// controls and spaces, and tabs and newlines anywhere.
func trimHref(s string) string {
	s = strings.TrimFunc(s, func(r rune) bool { return r <= ' ' })
	if strings.ContainsAny(s, "\t\n\r") {
		s = strings.NewReplacer("\t", "", "\n", "", "\r", "").Replace(s)
	}
	return s
}

// dirSegments returns the unescaped segments of u's directory: its path up to
// the last "/".
func dirSegments(u *url.URL) []string {
	p := u.EscapedPath()
	i := strings.LastIndexByte(p, '/')
	if i <= 0 {
		return nil
	}
	segs := strings.Split(p[1:i], "/")
	for i, s := range segs {
		segs[i] = unescape(s)
	}
	return segs
}

// originKey is u's scheme, host and port, lower-cased, with the scheme's
// default port spelled out: one value per origin however a link spells it.
func originKey(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	port := u.Port()
	if port == "" {
		switch scheme {
		case "http":
			port = "80"
		case "https":
			port = "443"
		}
	}
	return scheme + "://" + strings.ToLower(u.Hostname()) + ":" + port
}

// dirKey is the origin and the canonical path of u's directory: below the
// start means having the start's dirKey as a prefix.
func dirKey(u *url.URL) string {
	var b strings.Builder
	b.WriteString(originKey(u))
	b.WriteByte('/')
	for _, s := range dirSegments(u) {
		b.WriteString(escapeSegment(s))
		b.WriteByte('/')
	}
	return b.String()
}

const upperhex = "0123456789ABCDEF"

// keep reports whether c stands for itself in a canonical path segment:
// RFC 3986's unreserved characters and the sub-delimiters, ':' and '@' that
// a segment may hold. Static servers map a path to a file name by decoding it,
// so escaping them or not names the same file; one rule makes one URL.
func keep(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		strings.IndexByte("-._~!$&'()*+,;=:@", c) >= 0
}

// escapeSegment escapes a decoded path segment canonically: every byte that
// keep refuses (a space, '%', '?', '#', '/', every byte of a multi-byte
// character) as %XX in upper case.
func escapeSegment(s string) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if !keep(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	b := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		if c := s[i]; keep(c) {
			b = append(b, c)
		} else {
			b = append(b, '%', upperhex[c>>4], upperhex[c&15])
		}
	}
	return string(b)
}

func ishex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// unescape decodes %XX escapes, leaving a '%' that starts none as it is (as a
// browser sends it): a server that wrote "100%.txt" meant that file.
func unescape(s string) string {
	if strings.IndexByte(s, '%') < 0 {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && ishex(s[i+1]) && ishex(s[i+2]) {
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
			continue
		}
		b = append(b, s[i])
	}
	return string(b)
}

// fixEscapes escapes each '%' that starts no %XX escape, which url.Parse
// would refuse; unescape reads both spellings as the same name.
func fixEscapes(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && !(i+2 < len(s) && ishex(s[i+1]) && ishex(s[i+2])) {
			var b strings.Builder
			for j := 0; j < len(s); j++ {
				b.WriteByte(s[j])
				if s[j] == '%' && !(j+2 < len(s) && ishex(s[j+1]) && ishex(s[j+2])) {
					b.WriteString("25")
				}
			}
			return b.String()
		}
	}
	return s
}
