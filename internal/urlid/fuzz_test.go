package urlid_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/haul/haul/download/input"
	"github.com/haul/haul/internal/urlid"
)

// FuzzURLIdentity: the identity of a URL does not depend on its credentials
// or fragment, and is stable. Origin is idempotent and Same matches it in both
// forms; adding "user:password@" changes neither Origin nor HostKey; Redact is
// idempotent and changes nothing but the password; for a URL the input parser
// accepts, HostKey agrees with net/url's host and port.
func FuzzURLIdentity(f *testing.F) {
	for _, s := range []string{
		"http://h/a", "http://user:pw@h:8080/a?b@c#d", "https://user@h/a", "http://h/a@b",
		"http://u:p@ss@h/x", "http://h/a?q#frag", "HTTPS://H:0443/x", "http://[::1]:8080/x",
		"http://[fe80::1%25eth0]/x", "http://h:/x", "http://127.0.0.1:023001/x", "h/a", "",
		"http://u:p%zz@h/x", "http://user:secret@[::1/x", "http://h#a://b@c",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		o := urlid.Origin(s)
		if urlid.Origin(o) != o {
			t.Fatalf("Origin(%q) = %q, but Origin of that is %q", s, o, urlid.Origin(o))
		}
		if !urlid.Same(o, s) || !urlid.Same(urlid.Short(o), s) {
			t.Fatalf("Same does not match %q with its origin %q or its short form", s, o)
		}
		if sh := urlid.Short(o); urlid.Short(sh) != sh || !strings.HasPrefix(sh, "sha256:") {
			t.Fatalf("Short(%q) = %q is not its own short form", o, sh)
		}
		if len(o) <= urlid.MaxOriginLen && strings.Contains(o, "#") {
			t.Fatalf("Origin(%q) = %q keeps a fragment", s, o)
		}
		r := urlid.Redact(s)
		if urlid.Redact(r) != r || urlid.StripUserinfo(r) != urlid.StripUserinfo(s) {
			t.Fatalf("Redact(%q) = %q: not idempotent, or it changed more than the password", s, r)
		}
		if !strings.Contains(s, "@") && r != s {
			t.Fatalf("Redact(%q) = %q changed a URL with no credentials", s, r)
		}
		scheme, rest, ok := strings.Cut(s, "://")
		if !ok {
			return
		}
		withCreds := scheme + "://alice:s3cret@" + rest
		if o2 := urlid.Origin(withCreds); o2 != o {
			t.Fatalf("Origin(%q) = %q, but with credentials %q", s, o, o2)
		}
		if h1, h2 := urlid.HostKey(s), urlid.HostKey(withCreds); h1 != h2 {
			t.Fatalf("HostKey(%q) = %q, but with credentials %q", s, h1, h2)
		}
		if rc := urlid.Redact(withCreds); strings.Contains(rc, "s3cret") && !strings.Contains(s, "s3cret") {
			t.Fatalf("Redact(%q) = %q shows the password", withCreds, rc)
		}
		checkHostKey(t, s)
	})
}

// checkHostKey compares HostKey with net/url for a URL the input parser
// accepts (HostKey's precondition), where the authority holds no
// percent-escape (net/url decodes it, HostKey keeps it as written).
func checkHostKey(t *testing.T, s string) {
	if strings.ContainsAny(s, " \t") {
		return
	}
	if _, ok, err := input.ParseLine([]byte(s), 1); !ok || err != nil {
		return
	}
	u, err := url.Parse(s)
	if err != nil || strings.Contains(u.Host, "%") || strings.Contains(authority(s), "%") {
		return
	}
	host, port := u.Hostname(), u.Port()
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	switch {
	case port != "":
		if port = strings.TrimLeft(port, "0"); port == "" {
			port = "0"
		}
	case strings.EqualFold(u.Scheme, "https"):
		port = "443"
	default:
		port = "80"
	}
	if want := strings.ToLower(host) + ":" + port; urlid.HostKey(s) != want {
		t.Fatalf("HostKey(%q) = %q, net/url says %q", s, urlid.HostKey(s), want)
	}
}

// authority is the part of s between "://" and the path, query or fragment.
func authority(s string) string {
	_, rest, _ := strings.Cut(s, "://")
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	return rest
}
