package download

import (
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"
)

func TestRetryAfter(t *testing.T) {
	for v, want := range map[string]time.Duration{
		"":                     0,
		"7":                    7 * time.Second,
		" 7 ":                  7 * time.Second,
		"300":                  maxRetryAfter,
		"301":                  maxRetryAfter,
		"9999999999":           maxRetryAfter, // overflows time.Duration when multiplied
		"18446744074":          maxRetryAfter, // overflows it to a small positive value
		"99999999999999999999": maxRetryAfter, // more than 64 bits
		"-5":                   0,
		"soon":                 0,
	} {
		if got := retryAfter(http.Header{"Retry-After": {v}}); got != want {
			t.Errorf("Retry-After %q: %v, want %v", v, got, want)
		}
	}
	if got := retryAfter(http.Header{"Retry-After": {time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)}}); got != maxRetryAfter {
		t.Errorf("a date an hour ahead: %v, want the cap", got)
	}
}

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
