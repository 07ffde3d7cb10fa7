package download

// robots.txt (--robots): before its first request to a host (scheme, host and
// port), the engine fetches the host's /robots.txt once, through the same
// client and under the host's rate, retried as any request; the entries of
// the host wait for that one fetch. Then:
//
//   - 2xx: its rules for haul's product token (the group that names it, else
//     the "*" group) decide each entry: one they disallow ends as
//     StatusExcluded, the rule in its error; its Crawl-delay lowers the
//     host's rate (hosts.crawlDelay).
//   - 4xx but 429 (none there, forbidden...): everything is allowed.
//   - 429, 5xx, no response (after the retries): nothing is fetched from the
//     host, its entries fail with the reason, so that a re-run asks again.
//
// The rules are kept with the host's state (hosts.robotsFor), forgotten with
// it. Only the listed URL's host is asked: a redirect to another host is
// followed without that host's robots.txt (the list named the URL, the server
// chose where it lives).
//
// Matching follows RFC 9309: user-agent lines match the product token
// case-insensitively, the groups that match are merged, the longest matching
// rule wins ("*" matches any run of characters, "$" at the end anchors it),
// Allow wins over Disallow at equal length, paths are compared with
// percent-escapes of unreserved characters decoded and other octets
// escaped, and /robots.txt itself is always allowed. The parser is haul's
// own: see parseRobots for why.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/haul/haul/download/internal/retry"
)

// ErrExcluded is the cause in the error of an entry that the host's
// robots.txt disallows (StatusExcluded).
var ErrExcluded = errors.New("disallowed by robots.txt")

// robotsFetch is one host's robots.txt, for one scheme: done is closed once
// rules or err is set.
type robotsFetch struct {
	done  chan struct{}
	rules *robotsRules // nil: everything allowed
	err   error        // it could not be had: the host's entries fail with it
}

// maxRobotsSize is how much of a robots.txt is read: RFC 9309 asks crawlers
// to parse at least 500 KiB.
const maxRobotsSize = 512 << 10

// robots decides whether the host's robots.txt lets the entry be fetched,
// fetching it first if no entry of its host did: excluded is the reason it
// is not, err says the robots.txt could not be had (or the run stopped).
//
// The entries of a host whose robots.txt is being fetched wait on their
// workers: there is nothing they may do before it is known, and the fetch is
// one request per host, not per entry.
func (x *entry) robots(ctx context.Context) (excluded, err error) {
	e := x.e
	u, perr := url.Parse(x.ent.URL)
	if perr != nil {
		return nil, &Error{Op: "robots", URL: x.ent.URL, Err: perr}
	}
	h, rf, first := e.hosts.robotsFor(x.hostKey, strings.EqualFold(u.Scheme, "https"))
	if first {
		rf.rules, rf.err = e.fetchRobots(ctx, hostGate{e.hosts, h}, u.Scheme+"://"+u.Host+"/robots.txt")
		close(rf.done)
	} else {
		select {
		case <-rf.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if rf.err != nil {
		return nil, &Error{Op: "robots", URL: x.ent.URL, Err: rf.err}
	}
	if rule, ok := rf.rules.disallows(robotsPath(u)); ok {
		return fmt.Errorf("%w: %s has %q for %s", ErrExcluded, rf.rules.url, rule, rf.rules.agent()), nil
	}
	return nil, nil
}

// robotsPath is what robots.txt rules are matched against: the URL's path
// and query, as sent.
func robotsPath(u *url.URL) string {
	p := u.EscapedPath()
	if p == "" {
		p = "/"
	}
	if u.RawQuery != "" || u.ForceQuery {
		p += "?" + u.RawQuery
	}
	return p
}

// fetchRobots gets the robots.txt at rawURL for the host g, retried as an
// entry's attempts are (--retries, the backoff, Retry-After), and returns its
// rules for the engine's product token (nil: all allowed), its Crawl-delay
// applied to the host.
func (e *Engine) fetchRobots(ctx context.Context, g hostGate, rawURL string) (*robotsRules, error) {
	for failures := 1; ; failures++ {
		rules, err := e.getRobots(ctx, g, rawURL)
		if err == nil {
			if rules != nil {
				e.hosts.crawlDelay(g.h, rules.delay)
			}
			return rules, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if failures > e.opts.Retries || !retryable(err) {
			return nil, fmt.Errorf("%s: %w", rawURL, err)
		}
		delay := e.xfer.backoff.Delay(failures)
		var se *StatusError
		if errors.As(err, &se) && se.RetryAfter > 0 {
			delay = se.RetryAfter
		}
		if err := retry.Sleep(ctx, delay); err != nil {
			return nil, err
		}
	}
}

// getRobots makes one request for a robots.txt.
func (e *Engine) getRobots(ctx context.Context, g hostGate, rawURL string) (*robotsRules, error) {
	x, err := e.xfer.newExchange(ctx, rawURL, false)
	if err != nil {
		return nil, err
	}
	x.gate = g
	resp, err := x.do()
	if err != nil {
		x.end()
		return nil, err
	}
	body := x.body(resp.Body, resp.Body)
	defer body.Close()
	switch c := resp.StatusCode; {
	case c >= 200 && c < 300:
		b, err := io.ReadAll(io.LimitReader(body, maxRobotsSize))
		if err != nil {
			return nil, err
		}
		if len(b) == maxRobotsSize {
			// Cut at the last whole line: the rest is not read.
			b = b[:bytes.LastIndexByte(b, '\n')+1]
		}
		return parseRobots(b, e.agent, rawURL), nil
	case c == http.StatusTooManyRequests, c >= 500:
		return nil, statusError(resp)
	default:
		// 4xx: there is no robots.txt to obey (RFC 9309 2.3.1.3); what else
		// is left after the redirects the client follows is none either.
		return nil, nil
	}
}

// productToken is the product token of a User-Agent: its first name, before
// "/" or a space ("haul" for "haul/1.2 (+url)").
func productToken(ua string) string {
	ua = strings.TrimSpace(ua)
	if i := strings.IndexAny(ua, "/ \t"); i >= 0 {
		ua = ua[:i]
	}
	return ua
}

// robotsRules are the rules of one robots.txt that apply to one product
// token.
type robotsRules struct {
	url   string // where they were read, for the reasons
	token string // the product token they are for; "" for "*"
	rules []robotsRule
	delay time.Duration // Crawl-delay (0: none)
}

// robotsRule is one Allow or Disallow line, its path normalized
// (normalizeRobots).
type robotsRule struct {
	allow   bool
	pattern string
	line    string // as written, for the reason
}

func (r *robotsRules) agent() string {
	if r.token == "" {
		return "*"
	}
	return r.token
}

// parseRobots reads the rules of body that apply to token (the groups whose
// user-agent lines name it, merged; else those of "*"), as RFC 9309 says:
// lines it cannot read are passed over.
//
// haul parses robots.txt itself rather than with github.com/temoto/robotstxt,
// which gets RFC 9309 wrong where it matters to what is fetched: at equal
// length the first rule written wins, not Allow; a pattern with "$" is not
// anchored at the start ("Disallow: /a$" matches "/x/a"); user-agent names
// match as prefixes ("User-agent: hau" takes haul's rules); and one line it
// cannot read (a Crawl-delay that is not a number, a rule before any
// user-agent line) makes it reject the whole file (v1.1.2).
func parseRobots(body []byte, token, from string) *robotsRules {
	body = bytes.TrimPrefix(body, []byte("\xef\xbb\xbf"))
	named := &robotsRules{url: from, token: token}
	star := &robotsRules{url: from}
	var inNamed, inStar bool // the current group applies to token, to "*"
	namedSeen := false       // a group applies to token (even with no rules)
	agents := false          // the last line read was a user-agent line
	for len(body) > 0 {
		var line []byte
		if i := bytes.IndexAny(body, "\r\n"); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			line, body = body, nil
		}
		if i := bytes.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		key, value, ok := strings.Cut(string(line), ":")
		if !ok {
			continue
		}
		key, value = strings.ToLower(strings.TrimSpace(key)), strings.TrimSpace(value)
		switch key {
		case "user-agent":
			if !agents {
				inNamed, inStar = false, false // a new group starts
			}
			agents = true
			name := value
			if i := strings.IndexFunc(name, func(c rune) bool {
				return !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == '-')
			}); i >= 0 {
				name = name[:i]
			}
			switch {
			case value == "*":
				inStar = true
			case name != "" && token != "" && strings.EqualFold(name, token):
				inNamed, namedSeen = true, true
			}
		case "allow", "disallow", "crawl-delay":
			agents = false
			for _, g := range []*robotsRules{named, star} {
				if g == named && !inNamed || g == star && !inStar {
					continue
				}
				if key == "crawl-delay" {
					if s, err := strconv.ParseFloat(value, 64); err == nil && s > 0 && s < 1e6 {
						g.delay = max(g.delay, time.Duration(s*float64(time.Second)))
					}
					continue
				}
				if value == "" {
					continue // matches nothing
				}
				g.rules = append(g.rules, robotsRule{allow: key == "allow", pattern: normalizeRobots(value),
					line: strings.ToUpper(key[:1]) + key[1:] + ": " + value})
			}
		}
	}
	// Kept per host for the run: strings of their own, not of the body.
	r := star
	if namedSeen {
		r = named
	}
	for i := range r.rules {
		r.rules[i].pattern = strings.Clone(r.rules[i].pattern)
		r.rules[i].line = strings.Clone(r.rules[i].line)
	}
	return r
}

// disallows reports whether the rules forbid path, and the rule that does:
// the longest rule that matches wins, Allow at equal length. /robots.txt is
// always allowed.
func (r *robotsRules) disallows(path string) (rule string, ok bool) {
	if r == nil || len(r.rules) == 0 || path == "/robots.txt" {
		return "", false
	}
	path = normalizeRobots(path)
	best := -1
	var win *robotsRule
	for i := range r.rules {
		ru := &r.rules[i]
		if n := len(ru.pattern); n >= best && robotsMatch(ru.pattern, path) {
			if n > best || ru.allow {
				best, win = n, ru
			}
		}
	}
	if win == nil || win.allow {
		return "", false
	}
	return win.line, true
}

// robotsMatch reports whether pattern matches the start of path: "*" matches
// any run of octets, a "$" that ends the pattern the end of path. It keeps
// the set of path positions the pattern so far can end at (as Google's
// robots.txt parser does): no backtracking.
func robotsMatch(pattern, path string) bool {
	pos := make([]int, 1, len(path)+1)
	for i := 0; i < len(pattern); i++ {
		c := pattern[i]
		switch {
		case c == '$' && i == len(pattern)-1:
			return pos[len(pos)-1] == len(path)
		case c == '*':
			from := pos[0]
			pos = pos[:0]
			for j := from; j <= len(path); j++ {
				pos = append(pos, j)
			}
		default:
			n := 0
			for _, p := range pos {
				if p < len(path) && path[p] == c {
					pos[n] = p + 1
					n++
				}
			}
			if n == 0 {
				return false
			}
			pos = pos[:n]
		}
	}
	return true
}

// normalizeRobots writes a path (or a rule's pattern) the one way RFC 9309
// compares them: a percent-escape of an unreserved character decoded, other
// escapes with upper-case hex digits, octets outside US-ASCII (and, in a
// path, spaces and controls) escaped. A pattern's "*" and "$" stay as they
// are (they are its wildcards).
func normalizeRobots(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			v := unhex(s[i+1])<<4 | unhex(s[i+2])
			if isUnreserved(v) {
				b.WriteByte(v)
			} else {
				b.WriteByte('%')
				b.WriteByte(hex[v>>4])
				b.WriteByte(hex[v&15])
			}
			i += 2
		case c >= 0x80 || c <= ' ' || c == 0x7f:
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

// isUnreserved reports whether c is an unreserved character of RFC 3986.
func isUnreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}
