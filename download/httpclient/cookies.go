package httpclient

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/publicsuffix"
)

// LoadCookies reads a Netscape cookies.txt (what curl -c and wget
// --save-cookies write, and browser extensions export) into a new cookie jar
// that knows the public suffixes (golang.org/x/net/publicsuffix), so a cookie
// for "co.uk" is refused as a browser refuses it. Lines are tab-separated:
// domain, include subdomains (TRUE/FALSE), path, secure (TRUE/FALSE), expiry
// (Unix seconds, 0 for a session cookie), name, value; "#HttpOnly_" before the
// domain marks an HttpOnly cookie; other lines starting with "#" are comments.
// Expired cookies are dropped. Cookies the servers set during the run go into
// the jar too (the file is not written back).
func LoadCookies(r io.Reader) (http.CookieJar, error) {
	jar, err := cookiejar.New(&cookiejar.Options{PublicSuffixList: publicsuffix.List})
	if err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	now := time.Now()
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimRight(sc.Text(), "\r")
		httpOnly := false
		if rest, ok := strings.CutPrefix(text, "#HttpOnly_"); ok {
			text, httpOnly = rest, true
		}
		if strings.TrimSpace(text) == "" || strings.HasPrefix(text, "#") {
			continue
		}
		f := strings.Split(text, "\t")
		if len(f) == 6 {
			f = append(f, "") // a cookie with an empty value, as some tools write it
		}
		if len(f) != 7 {
			return nil, fmt.Errorf("cookies line %d: want 7 tab-separated fields, got %d", line, len(f))
		}
		domain, sub, path, secure, exp, name, value := f[0], f[1], f[2], f[3], f[4], f[5], f[6]
		host := strings.TrimPrefix(domain, ".")
		if host == "" || name == "" {
			return nil, fmt.Errorf("cookies line %d: no domain or name", line)
		}
		secs, err := strconv.ParseInt(exp, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("cookies line %d: expiry %q is not a number", line, exp)
		}
		c := &http.Cookie{Name: name, Value: value, Path: path, Secure: strings.EqualFold(secure, "TRUE"), HttpOnly: httpOnly}
		if secs != 0 {
			c.Expires = time.Unix(secs, 0)
			if c.Expires.Before(now) {
				continue
			}
		}
		if strings.EqualFold(sub, "TRUE") {
			c.Domain = host // a domain cookie; without it, host-only
		}
		scheme := "http"
		if c.Secure {
			scheme = "https"
		}
		if path == "" {
			path = "/"
		}
		jar.SetCookies(&url.URL{Scheme: scheme, Host: host, Path: path}, []*http.Cookie{c})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return jar, nil
}
