package naming

import (
	"crypto/sha256"
	"encoding/hex"
	"net/url"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseLayout(t *testing.T) {
	for _, l := range []Layout{LayoutTree, LayoutFlat, LayoutHash} {
		got, err := ParseLayout(l.String())
		if err != nil || got != l {
			t.Errorf("ParseLayout(%q) = %v, %v; want %v", l.String(), got, err, l)
		}
	}
	for _, s := range []string{"", "Tree", "wget", "flat "} {
		if _, err := ParseLayout(s); err == nil {
			t.Errorf("ParseLayout(%q): want error", s)
		}
	}
	if s := Layout(7).String(); s != "Layout(7)" {
		t.Errorf("Layout(7).String() = %q", s)
	}
}

var long = strings.Repeat("a", 1000)

func TestNameTree(t *testing.T) {
	tests := []struct{ name, url, want string }{
		{"simple", "http://h/a/b.txt", "h/a/b.txt"},
		{"uppercase host", "http://Example.COM/A/B.txt", "example.com/A/B.txt"},
		{"http default port", "http://h:80/x", "h/x"},
		{"https default port", "https://h:443/x", "h/x"},
		{"http on 443", "http://h:443/x", "h_443/x"},
		{"https on 80", "https://h:80/x", "h_80/x"},
		{"other port", "https://h:8443/x", "h_8443/x"},
		{"leading zeros port", "http://h:0080/x", "h/x"},
		{"port zero", "http://h:000/x", "h_0/x"},
		{"empty port", "http://h:/x", "h/x"},
		{"empty path", "http://h", "h/index.html"},
		{"root", "http://h/", "h/index.html"},
		{"trailing slash", "http://h/dir/", "h/dir/index.html"},
		{"double slashes", "http://h//a///b//", "h/a/b/index.html"},
		{"query", "http://h/page.php?id=1", "h/page.php%3Fid=1"},
		{"query on root", "http://h/?q=1", "h/index.html%3Fq=1"},
		{"query kept as written", "http://h/x?a=b%20c&d=/e", "h/x%3Fa=b%2520c&d=%2Fe"},
		{"empty query", "http://h/x?", "h/x"},
		{"fragment", "http://h/x#frag", "h/x"},
		{"query and fragment", "http://h/x?q#frag", "h/x%3Fq"},
		{"encoded slash", "http://h/a%2Fb/c", "h/a%2Fb/c"},
		{"encoded question mark", "http://h/a%3Fb", "h/a%3Fb"},
		{"literal percent", "http://h/a%253F", "h/a%253F"},
		{"dot dot", "http://h/../../etc/passwd", "h/etc/passwd"},
		{"encoded dot dot", "http://h/%2e%2e/%2e%2e/x", "h/x"},
		{"dot dot pops", "http://h/a/%2E%2E/b", "h/b"},
		{"mixed dot dot", "http://h/.%2e/x", "h/x"},
		{"dot", "http://h/a/./b/%2e/c", "h/a/b/c"},
		{"ends in dot dot", "http://h/a/b/..", "h/a/index.html"},
		{"ends in dot", "http://h/a/.", "h/a/index.html"},
		{"dot dot with query", "http://h/a/..?q=1", "h/index.html%3Fq=1"},
		{"backslashes", `http://h/..\..\x`, "h/..%5C..%5Cx"},
		{"encoded backslashes", "http://h/..%5c..%5cx", "h/..%5C..%5Cx"},
		{"nul", "http://h/a%00b", "h/a%00b"},
		{"newline", "http://h/a%0ab%0D", "h/a%0Ab%0D"},
		{"del and c1 control", "http://h/a%7Fb%C2%9B", "h/a%7Fb%C2%9B"},
		{"windows chars", "http://h/a%3Ab%2Ac%22d%3Ce%3Ef%7Cg", "h/a%3Ab%2Ac%22d%3Ce%3Ef%7Cg"},
		{"kept chars", "http://h/a~b!c$d&e'f(g)h+i,j;k=l@m%20n", "h/a~b!c$d&e'f(g)h+i,j;k=l@m n"},
		{"unicode", "http://h/日本/ファイル.txt", "h/日本/ファイル.txt"},
		{"encoded unicode", "http://h/%E6%97%A5%E6%9C%AC", "h/日本"},
		{"invalid utf-8", "http://h/a%FFb%C3", "h/a%FFb%C3"},
		{"ipv6 with port", "http://[::1]:8080/x", "%3A%3A1_8080/x"},
		{"ipv6", "http://[2001:DB8::1]/x", "2001%3Adb8%3A%3A1/x"},
		{"ipv6 zone", "http://[fe80::1%25en0]/x", "fe80%3A%3A1%25en0/x"},
		{"host dot dot", "http://../x", "%2E%2E/x"},
		{"host dot", "http://./x", "%2E/x"},
		{"host with windows chars", "http://a*b/x", "a%2Ab/x"},
		{"userinfo ignored", "http://user:pw@h/x", "h/x"},
		{"staging suffix on a directory", "http://h/d.part/x.part", "h/d%2Epart/x%2Epart"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LayoutTree.Name(tt.url)
			if err != nil || got != tt.want {
				t.Fatalf("Name(%q) = %q, %v; want %q", tt.url, got, err, tt.want)
			}
			checkName(t, LayoutTree, tt.url, got)
		})
	}
}

func TestNameFlat(t *testing.T) {
	tests := []struct{ name, url, want string }{
		{"query", "http://h/a/b/c.txt?x=1", "c.txt%3Fx=1"},
		{"trailing slash", "http://h/dir/", "index.html"},
		{"empty path", "http://h", "index.html"},
		{"traversal", "http://h/a/../../..", "index.html"},
		{"encoded slash", "http://h/a%2Fb", "a%2Fb"},
		{"encoded dot dot", "http://h/%2e%2e", "index.html"},
		{"port ignored", "http://h:8080/a.txt", "a.txt"},
		{"unicode", "http://h/d/ファイル.txt", "ファイル.txt"},
		{"staging suffix", "http://h/d/a.part", "a%2Epart"},
		{"staging suffix in query", "http://h/a?x=.part", "a%3Fx=%2Epart"},
		{"encoded staging suffix", "http://h/a%252Epart", "a%252Epart"},
		{"suffix not at the end", "http://h/a.parts", "a.parts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LayoutFlat.Name(tt.url)
			if err != nil || got != tt.want {
				t.Fatalf("Name(%q) = %q, %v; want %q", tt.url, got, err, tt.want)
			}
			checkName(t, LayoutFlat, tt.url, got)
		})
	}
}

func TestNameHash(t *testing.T) {
	tests := []struct{ name, url, ext string }{
		{"ext", "http://h/a/file.txt", ".txt"},
		{"ext case kept", "http://h/file.TXT", ".TXT"},
		{"last ext only", "http://h/a.tar.gz", ".gz"},
		{"no ext", "http://h/a/file", ""},
		{"dir", "http://h/a.d/", ""},
		{"empty path", "http://h", ""},
		{"query ignored", "http://h/a.txt?x=1.html", ".txt"},
		{"fragment ignored", "http://h/a.txt#b.html", ".txt"},
		{"ext 16 bytes", "http://h/a.0123456789abcdef", ".0123456789abcdef"},
		{"ext 17 bytes", "http://h/a.0123456789abcdefg", ""},
		{"ext not alnum", "http://h/a.tx-t", ""},
		{"ext unicode", "http://h/a.tx%C3%A9", ""},
		{"lone dot", "http://h/a.", ""},
		{"encoded dot", "http://h/a%2Ebin", ".bin"},
		{"dot after encoded slash", "http://h/a.b%2Fc", ""},
		{"dot file", "http://h/.bashrc", ".bashrc"},
		{"staging suffix", "http://h/a.part", ""}, // H.part would be H's staging file
		{"dot dot", "http://h/a.txt/..", ""},
	}
	shape := regexp.MustCompile(`^([0-9a-f]{2})/([0-9a-f]{2})/([0-9a-f]{64})(.*)$`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LayoutHash.Name(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256([]byte(strings.Split(tt.url, "#")[0]))
			h := hex.EncodeToString(sum[:])
			if want := h[:2] + "/" + h[2:4] + "/" + h + tt.ext; got != want {
				t.Fatalf("Name(%q) = %q; want %q", tt.url, got, want)
			}
			if m := shape.FindStringSubmatch(got); m == nil || m[1] != m[3][:2] || m[2] != m[3][2:4] {
				t.Fatalf("Name(%q) = %q: bad shape", tt.url, got)
			}
			checkName(t, LayoutHash, tt.url, got)
		})
	}
	a, _ := LayoutHash.Name("http://h/x")
	b, _ := LayoutHash.Name("http://H/x")
	if a == b {
		t.Errorf("hash names of different URL strings are equal: %q", a)
	}
	// One resource, one name, as in the other layouts: the fragment is never
	// sent and the user name and password are not part of the resource.
	for _, u := range []string{"http://h/x#frag", "http://user:pw@h/x", "http://user@h/x#"} {
		if c, _ := LayoutHash.Name(u); c != a {
			t.Errorf("Name(%q) = %q, want %q as for http://h/x", u, c, a)
		}
	}
}

func TestNameLong(t *testing.T) {
	tests := []struct{ name, url, prefix, suffix string }{
		{"plain", "http://h/d/" + long, "h/d/" + long[:183] + "~", ""},
		{"keeps ext", "http://h/" + long + ".txt", "h/" + long[:179] + "~", ".txt"},
		{"drops long ext", "http://h/x." + long, "h/x." + long[:181] + "~", ""},
		{"long query", "http://h/a.php?" + long, "h/a.php%3F" + long[:175] + "~", ""},
		{"long host", "http://" + long + "/x", long[:183] + "~", "/x"},
		{"unicode not split", "http://h/" + strings.Repeat("é", 500), "h/" + strings.Repeat("é", 91) + "~", ""},
		{"escape not split", "http://h/" + strings.Repeat("%00", 300), "h/" + strings.Repeat("%00", 61) + "~", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LayoutTree.Name(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(got, tt.prefix) || !strings.HasSuffix(got, tt.suffix) ||
				len(got) != len(tt.prefix)+16+len(tt.suffix) {
				t.Fatalf("Name(%q) = %q; want %q + 16 hex + %q", tt.url, got, tt.prefix, tt.suffix)
			}
			if again, _ := LayoutTree.Name(tt.url); again != got {
				t.Fatalf("not deterministic: %q then %q", got, again)
			}
			checkName(t, LayoutTree, tt.url, got)
		})
	}
	a, _ := LayoutFlat.Name("http://h/" + long + "b")
	b, _ := LayoutFlat.Name("http://h/" + long + "c")
	if a == b || len(a) != MaxComponent || len(b) != MaxComponent {
		t.Errorf("long names: %q and %q", a, b)
	}
}

func TestNameErrors(t *testing.T) {
	for _, u := range []string{"ftp://h/x", "http:///x", "http://:80/x", "http:x", "/x", "http://h/%zz", "http://h\x00/"} {
		for _, l := range []Layout{LayoutTree, LayoutFlat, LayoutHash} {
			if got, err := l.Name(u); err == nil {
				t.Errorf("%v.Name(%q) = %q; want error", l, u, got)
			}
		}
	}
	if _, err := Layout(9).Name("http://h/x"); err == nil {
		t.Error("Layout(9).Name: want error")
	}
}

// checkName asserts the guarantees Name documents for every result.
func checkName(t *testing.T, l Layout, rawURL, p string) {
	t.Helper()
	if p == "" || !filepath.IsLocal(p) || path.Clean(p) != p {
		t.Fatalf("%v.Name(%q) = %q: not a clean local path", l, rawURL, p)
	}
	if !strings.HasPrefix(filepath.Join("/base", p), "/base/") {
		t.Fatalf("%v.Name(%q) = %q: escapes the base", l, rawURL, p)
	}
	parts := strings.Split(p, "/")
	for _, c := range parts {
		if c == "" || c == "." || c == ".." || len(c) > MaxComponent || strings.HasSuffix(c, ".part") ||
			strings.ContainsAny(c, "\x00\\") || !utf8.ValidString(c) {
			t.Fatalf("%v.Name(%q) = %q: bad component %q", l, rawURL, p, c)
		}
	}
	switch {
	case l == LayoutFlat && len(parts) != 1, l == LayoutHash && len(parts) != 3:
		t.Fatalf("%v.Name(%q) = %q: %d components", l, rawURL, p, len(parts))
	}
}

func FuzzLayoutName(f *testing.F) {
	for _, s := range []string{
		"http://h/a/b.txt", "https://H:8443/dir/?q=1#f", "http://[::1]:8080/x",
		"http://h/%2e%2e/%2e%2e/x", "http://h/a/%2E%2E/b", "http://h/.%2e/x", `http://h/..\..\x`,
		"http://h/a%2Fb%00%0a%FF", "http://../..", "http://h/" + long + ".txt",
		"http://h/" + strings.Repeat("é", 500), "http://[fe80::1%25en0]/x.tar.gz",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return
		}
		var tree string
		for _, l := range []Layout{LayoutTree, LayoutFlat, LayoutHash} {
			p, err := l.Name(s)
			if err != nil {
				continue
			}
			checkName(t, l, s, p)
			if again, _ := l.Name(s); again != p {
				t.Fatalf("%v.Name(%q) not deterministic: %q then %q", l, s, p, again)
			}
			switch l {
			case LayoutTree:
				tree = p
			case LayoutFlat:
				if tree != "" && path.Base(tree) != p {
					t.Fatalf("flat name %q is not the base of tree name %q", p, tree)
				}
			}
		}
	})
}
