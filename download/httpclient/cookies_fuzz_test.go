package httpclient

import (
	"bufio"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// plainCookieLine is a cookies.txt line whose cookie any jar keeps as written:
// a subdomain of example.com, a path of plain characters, a token name and
// value, and an expiry that is 0 (session) or a second of the years 2096 to
// 2128.
var plainCookieLine = regexp.MustCompile(`^(#HttpOnly_)?(\.?[a-z0-9]{1,20}\.example\.com)\t(TRUE|FALSE)\t(/[a-z0-9/]*)?\t(TRUE|FALSE)\t(0|4[0-9]{9})\t([A-Za-z0-9]{1,20})\t([A-Za-z0-9]{0,20})$`)

// FuzzLoadCookies: LoadCookies reads any file without panicking; an error
// names a line the file has (or says a line was too long); and a file it
// reads gives back, for each plain cookie line, that cookie (name and value)
// to a request for its host and path, unless a later line sets the same
// cookie again or an earlier one made the file fail.
func FuzzLoadCookies(f *testing.F) {
	for _, s := range []string{
		"# Netscape HTTP Cookie File\n.a.example.com\tTRUE\t/\tFALSE\t0\tsid\tabc\n",
		"b.example.com\tFALSE\t/x\tTRUE\t4102444800\tk\tv\r\n#HttpOnly_c.example.com\tFALSE\t/\tFALSE\t0\th\t1\n",
		"d.example.com\tFALSE\t/\tFALSE\t0\tempty\n",
		"co.uk\tTRUE\t/\tFALSE\t0\tbad\tx\n",
		"e.example.com\tFALSE\t/\tFALSE\t1\told\tx\n",
		"f.example.com\tFALSE\t/\tFALSE\tsoon\tn\tv\n",
		"\tFALSE\t/\tFALSE\t0\tn\tv\n",
		"one\ttwo\n",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		jar, err := LoadCookies(strings.NewReader(text))
		if err != nil {
			if errors.Is(err, bufio.ErrTooLong) {
				return
			}
			var n int
			if _, e := fmt.Sscanf(err.Error(), "cookies line %d:", &n); e != nil || n < 1 || n > strings.Count(text, "\n")+1 {
				t.Fatalf("error %q names no line of the file's %d", err, strings.Count(text, "\n")+1)
			}
			return
		}
		// What the plain lines set, the last line for a cookie winning; a
		// later line that is not plain but may name the same cookie (another
		// case, another spelling of its path) leaves it unknown.
		type key struct{ host, path, name string }
		type cookie struct {
			value  string
			secure bool
		}
		want := map[key]cookie{}
		for line := range strings.SplitSeq(text, "\n") {
			line = strings.TrimRight(line, "\r")
			if m := plainCookieLine.FindStringSubmatch(line); m != nil {
				path := m[4]
				if path == "" {
					path = "/"
				}
				want[key{strings.TrimPrefix(m[2], "."), path, m[7]}] = cookie{m[8], m[5] == "TRUE"}
				continue
			}
			f := strings.Split(strings.TrimPrefix(line, "#HttpOnly_"), "\t")
			if len(f) < 6 {
				continue
			}
			host := strings.ToLower(strings.TrimPrefix(f[0], "."))
			for k := range want {
				if k.name == f[5] && strings.EqualFold(k.host, host) {
					delete(want, k)
				}
			}
		}
		for k, c := range want {
			u := &url.URL{Scheme: "http", Host: k.host, Path: k.path}
			if c.secure {
				u.Scheme = "https"
			}
			found := false
			for _, got := range jar.Cookies(u) {
				found = found || got.Name == k.name && got.Value == c.value
			}
			if !found {
				t.Fatalf("cookie %s=%s for %s not in the jar (it holds %v)", k.name, c.value, u, jar.Cookies(u))
			}
		}
	})
}
