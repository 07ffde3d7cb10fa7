package download

import "testing"

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"http://h/a":                  "http://h/a",
		"http://user:pw@h:8080/a?x@y": "http://user:xxxxx@h:8080/a?x@y",
		"http://user@h/a":             "http://user@h/a",
		"http://h/a:b@c":              "http://h/a:b@c",
	} {
		if got := redact(in); got != want {
			t.Errorf("redact(%q) = %q, want %q", in, got, want)
		}
	}
}
