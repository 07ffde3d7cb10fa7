package download

import (
	"net"
	"net/http"
	"net/url"
	"testing"
)

func TestSameKindValidator(t *testing.T) {
	h := http.Header{"Etag": {"xyz789"}, "Last-Modified": {"Mon, 02 Jan 2026 03:04:05 GMT"}}
	for stored, want := range map[string]string{
		`"abc"`:                         "xyz789",
		"abc123":                        "xyz789", // a bare ETag, as some servers send
		"Mon, 02 Jan 2026 03:04:05 GMT": "Mon, 02 Jan 2026 03:04:05 GMT",
	} {
		if got := sameKindValidator(h, stored); got != want {
			t.Errorf("stored %q: %q, want %q", stored, got, want)
		}
	}
}

// An ETag that cannot be sent back (a control byte, a line break) is no
// validator: Last-Modified is used if strong, else none.
func TestValidatorOfUnsendableETag(t *testing.T) {
	date := "Mon, 02 Jan 2026 03:04:05 GMT"
	later := "Mon, 02 Jan 2026 03:05:05 GMT"
	for etag, want := range map[string]string{
		`"ok"`:        `"ok"`,
		"\"a\x01b\"":  date,
		"\"a\x7fb\"":  date,
		"\"a\r\nb\"":  date,
		"W/\"weak\"":  date,
		" \"spaced\"": date,
	} {
		h := http.Header{"Etag": {etag}, "Last-Modified": {date}, "Date": {later}}
		if got := validatorOf(h); got != want {
			t.Errorf("ETag %q: validator %q, want %q", etag, got, want)
		}
	}
}

// A name that does not exist fails at once; a resolver that failed is retried.
func TestRetryableDNS(t *testing.T) {
	nx := &url.Error{Op: "Get", URL: "http://x.invalid/", Err: &net.OpError{Op: "dial", Err: &net.DNSError{Name: "x.invalid", IsNotFound: true}}}
	if retryable(nx) {
		t.Error("NXDOMAIN is retried")
	}
	tmp := &url.Error{Op: "Get", URL: "http://x.example/", Err: &net.OpError{Op: "dial", Err: &net.DNSError{Name: "x.example", IsTimeout: true}}}
	if !retryable(tmp) {
		t.Error("a resolver timeout is not retried")
	}
}
