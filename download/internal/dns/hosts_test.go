package dns

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseHosts(t *testing.T) {
	h, err := ParseHosts(strings.NewReader(`# The following lines are desirable for IPv6 capable hosts
127.0.0.1	localhost
127.0.1.1	box.example.org	box # a comment after the names
::1     localhost ip6-localhost ip6-loopback
fe00::0 ip6-localnet
10.0.0.5 Mirror.Example.ORG. mirror
10.0.0.6 mirror.example.org
not-an-address some.name
10.0.0.7
fe80::1%eth0 linklocal.test
::ffff:10.0.0.8 mapped.test
#10.0.0.9 commented.test
`))
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string][]string{
		"localhost":          {"127.0.0.1", "::1"},
		"LOCALHOST.":         {"127.0.0.1", "::1"},
		"box":                {"127.0.1.1"},
		"mirror.example.org": {"10.0.0.5", "10.0.0.6"},
		"mirror":             {"10.0.0.5"},
		"linklocal.test":     {"fe80::1%eth0"},
		"mapped.test":        {"10.0.0.8"},
		"some.name":          nil,
		"commented.test":     nil,
		"a":                  nil,
		"#":                  nil,
	} {
		var got []string
		for _, a := range h.Lookup(host, "ip") {
			got = append(got, a.String())
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", host, got, want)
		}
	}
	if got := h.Lookup("localhost", "ip4"); len(got) != 1 || got[0] != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("localhost, ip4: %v, want 127.0.0.1 only", got)
	}
	if got := h.Lookup("ip6-localhost", "ip4"); len(got) != 1 || got[0] != netip.IPv6Loopback() {
		t.Errorf("ip6-localhost, ip4: %v, want ::1 (a name of the table is never asked elsewhere)", got)
	}
	if h.Len() != 10 {
		t.Errorf("%d names, want 10", h.Len())
	}
	var none *Hosts
	if none.Lookup("localhost", "ip") != nil || none.Len() != 0 {
		t.Error("a nil table holds names")
	}
}

func TestReadHostsFile(t *testing.T) {
	h, err := ReadHostsFile(filepath.Join(t.TempDir(), "missing"))
	if err != nil || h.Len() != 0 {
		t.Errorf("a missing file: %d names, %v; want an empty table", h.Len(), err)
	}
	name := filepath.Join(t.TempDir(), "hosts")
	long := "10.0.0.1 first.test\n10.0.0.2 " + strings.Repeat("x", maxHostsLine) + "\n10.0.0.3 after.test\n"
	if err := os.WriteFile(name, []byte(long), 0o644); err != nil {
		t.Fatal(err)
	}
	h, err = ReadHostsFile(name)
	if err == nil || h.Lookup("first.test", "ip") == nil {
		t.Errorf("a line over the limit: %v, first.test %v; want an error and the lines before it", err, h.Lookup("first.test", "ip"))
	}
}

func FuzzParseHosts(f *testing.F) {
	for _, s := range []string{
		"127.0.0.1 localhost\n::1 localhost ip6-localhost\n",
		"10.0.0.5 Mirror.Example.ORG. mirror # c\n#x\n\n",
		"fe80::1%eth0 ll\n::ffff:1.2.3.4 m\nbad a\n1.2.3.4\n",
		"1.2.3.4\ta\tb\r\n5.6.7.8 a",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := ParseHosts(strings.NewReader(s))
		if err != nil {
			return
		}
		var b strings.Builder
		for name, addrs := range h.names {
			if name == "" || name != hostKey(name) || strings.ContainsAny(name, "# \t\r\n") {
				t.Fatalf("name %q kept", name)
			}
			if len(addrs) == 0 {
				t.Fatalf("%q: no address", name)
			}
			for _, a := range addrs {
				if !a.IsValid() || a.Is4In6() {
					t.Fatalf("%q: address %v", name, a)
				}
				fmt.Fprintf(&b, "%s %s\n", a, name)
			}
			if got := h.Lookup(asciiUpper(name)+".", "ip"); !slices.Equal(got, addrs) {
				t.Fatalf("Lookup(%q) = %v, want %v", name, got, addrs)
			}
		}
		// The table written out one address and name a line reads back the
		// same.
		again, err := ParseHosts(strings.NewReader(b.String()))
		if err != nil {
			t.Fatal(err)
		}
		if len(again.names) != len(h.names) {
			t.Fatalf("%d names read back, want %d", len(again.names), len(h.names))
		}
		for name, addrs := range h.names {
			if got := again.names[name]; !slices.Equal(got, addrs) {
				t.Fatalf("%q read back as %v, want %v", name, got, addrs)
			}
		}
	})
}

func asciiUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}
