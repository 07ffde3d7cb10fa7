package urlid

import "testing"

func TestOriginWithoutCredentials(t *testing.T) {
	for in, want := range map[string]string{
		"http://h/a":                    "http://h/a",
		"http://user:pw@h:8080/a?b@c#d": "http://h:8080/a?b@c",
		"https://user@h/a":              "https://h/a",
		"http://h/a@b":                  "http://h/a@b", // '@' in the path is not userinfo
		"http://u:p@ss@h/x":             "http://h/x",
		"http://h/a?q#frag":             "http://h/a?q",
		"http://u@h/a#f@g":              "http://h/a",
	} {
		if got := Origin(in); got != want {
			t.Errorf("Origin(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLongOriginIsShort(t *testing.T) {
	long := "http://h/" + string(make([]byte, MaxOriginLen))
	o := Origin(long)
	if o != Short(long) || Short(o) != o {
		t.Fatalf("Origin of a long URL = %q; Short(Short(x)) must be Short(x)", o)
	}
	if !Same(o, long) || !Same(Short("http://h/a"), "http://h/a") || Same("http://h/b", "http://h/a") {
		t.Fatal("Same must match both forms and nothing else")
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"http://h/a":                  "http://h/a",
		"http://user:pw@h:8080/a?x@y": "http://user:xxxxx@h:8080/a?x@y",
		"http://user@h/a":             "http://user@h/a",
		"http://h/a:b@c":              "http://h/a:b@c",
		// Unparseable: masked all the same.
		"http://user:secret@[::1/x":       "http://user:xxxxx@[::1/x",
		"http://u:p%zz@h/x":               "http://u:xxxxx@h/x",
		"http://u:p@ss@h:99999999999/a b": "http://u:xxxxx@h:99999999999/a b",
		"http://user@[::1/x":              "http://user@[::1/x",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

// One server is one host for --per-host and pauses, however its URLs spell it.
func TestHostKey(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"http://h/x", "h:80"},
		{"http://H:80/x", "h:80"},
		{"http://u:p@h:0080/x?q#f", "h:80"},
		{"https://h/x", "h:443"},
		{"HTTPS://h:443", "h:443"},
		{"http://127.0.0.1:023001/x", "127.0.0.1:23001"},
		{"http://[::1]/x", "[::1]:80"},
		{"http://[::1]:8080/x", "[::1]:8080"},
		{"http://h:/x", "h:80"},
	} {
		if got := HostKey(tc.url); got != tc.want {
			t.Errorf("HostKey(%q) = %q, want %q", tc.url, got, tc.want)
		}
	}
}
