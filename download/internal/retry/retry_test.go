package retry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// The engine's schedule: doubling from Base, capped at Max, each wait in
// (d/2, d].
func TestBackoffDoublesWithJitter(t *testing.T) {
	b := Backoff{Base: time.Second, Max: time.Minute, Jitter: 0.5}
	for n, d := range map[int]time.Duration{
		1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 6: 32 * time.Second,
		7: time.Minute, 8: time.Minute, 1000: time.Minute, math.MaxInt: time.Minute,
	} {
		for range 200 {
			if got := b.Delay(n); got <= d/2 || got > d {
				t.Fatalf("Delay(%d) = %v, want in (%v, %v]", n, got, d/2, d)
			}
		}
	}
}

// Without jitter the schedule is exact; Free failures wait nothing (the
// HTTP/2 client's refusals: none for the first, then 10 ms doubling to 500 ms).
func TestBackoffFreeFailures(t *testing.T) {
	b := Backoff{Base: 10 * time.Millisecond, Max: 500 * time.Millisecond, Free: 1}
	ms := time.Millisecond
	for n, want := range []time.Duration{0, 0, 10 * ms, 20 * ms, 40 * ms, 80 * ms, 160 * ms, 320 * ms, 500 * ms, 500 * ms} {
		if got := b.Delay(n); got != want {
			t.Errorf("Delay(%d) = %v, want %v", n, got, want)
		}
	}
}

// A large Base or failure count never overflows into a short (or negative)
// wait: a shift of Base by n-1 did, for the walker's one-hour backoff base.
func TestBackoffNoOverflow(t *testing.T) {
	for _, b := range []Backoff{
		{Base: 1 << 40, Max: time.Duration(math.MaxInt64)},
		{Base: time.Hour, Max: 2 * time.Hour},
		{Base: time.Duration(math.MaxInt64), Max: time.Duration(math.MaxInt64), Jitter: 1},
		{Base: 0, Max: time.Minute},
		{Base: -time.Second, Max: time.Minute},
	} {
		prev := time.Duration(0)
		for n := 1; n < 200; n++ {
			got := b.Delay(n)
			if got <= 0 || got > b.Max {
				t.Fatalf("%+v: Delay(%d) = %v, want in (0, %v]", b, n, got, b.Max)
			}
			if b.Jitter == 0 && got < prev {
				t.Fatalf("%+v: Delay(%d) = %v, shorter than Delay(%d) = %v", b, n, got, n-1, prev)
			}
			prev = got
		}
	}
}

func TestAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"":                                 0,
		"3":                                3 * time.Second,
		"7":                                7 * time.Second,
		" 7 ":                              7 * time.Second,
		"0":                                0,
		"300":                              MaxAfter,
		"301":                              MaxAfter,
		"100000":                           MaxAfter,
		"9999999999":                       MaxAfter, // overflows time.Duration when multiplied
		"18446744074":                      MaxAfter, // overflows it to a small positive value
		"99999999999999999999":             MaxAfter, // more than 64 bits
		"-1":                               0,
		"-5":                               0,
		"+5":                               0,
		"5s":                               0,
		"1.5":                              0,
		"soon":                             0,
		"Thu, 01 Jan 2026 00:00:30 GMT":    30 * time.Second,
		"Thu, 01 Jan 2026 03:00:00 GMT":    MaxAfter,
		"Wed, 31 Dec 2025 23:00:00 GMT":    0,
		"Thursday, 01-Jan-26 00:01:00 GMT": time.Minute, // RFC 850, which HTTP dates allow
	} {
		if got := After(v, now); got != want {
			t.Errorf("After(%q) = %v, want %v", v, got, want)
		}
	}
	if got := After(time.Now().Add(time.Hour).UTC().Format(http.TimeFormat), time.Now()); got != MaxAfter {
		t.Errorf("a date an hour ahead: %v, want the cap", got)
	}
}

func TestStatus(t *testing.T) {
	for code, want := range map[int]bool{
		408: true, 429: true, 500: true, 502: true, 503: true, 599: true,
		400: false, 401: false, 403: false, 404: false, 410: false, 416: false,
	} {
		if got := Status(code); got != want {
			t.Errorf("Status(%d) = %v, want %v", code, got, want)
		}
	}
}

func TestRetryable(t *testing.T) {
	wrap := func(err error) error {
		return &url.Error{Op: "Get", URL: "https://x.example/", Err: &net.OpError{Op: "dial", Err: err}}
	}
	redirect := Final(errors.New("stopped after 10 redirects"))
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused", wrap(errors.New("connect: connection refused")), true},
		{"resolver timeout", wrap(&net.DNSError{Name: "x.example", IsTimeout: true}), true},
		{"resolver failure", wrap(&net.DNSError{Name: "x.example", IsTemporary: true}), true},
		{"NXDOMAIN", wrap(&net.DNSError{Name: "x.invalid", IsNotFound: true}), false},
		{"unknown authority", wrap(x509.UnknownAuthorityError{}), false},
		{"wrong host", wrap(x509.HostnameError{Host: "x.example", Certificate: &x509.Certificate{}}), false},
		{"expired", wrap(x509.CertificateInvalidError{Reason: x509.Expired}), false},
		{"verification", wrap(&tls.CertificateVerificationError{Err: errors.New("bad")}), false},
		{"final", &url.Error{Op: "Get", URL: "https://x.example/", Err: fmt.Errorf("%w: ftp://x", redirect)}, false},
	} {
		if got := Retryable(tc.err); got != tc.want {
			t.Errorf("%s: Retryable(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

// Final keeps the message and the identity of what it marks.
func TestFinalWraps(t *testing.T) {
	base := errors.New("redirect to a non-http(s) URL")
	f := Final(base)
	if f.Error() != base.Error() || !errors.Is(f, base) {
		t.Errorf("Final(%v) = %v, not wrapping it", base, f)
	}
	sentinel := Final(errors.New("x"))
	if err := fmt.Errorf("%w: more", sentinel); !errors.Is(err, sentinel) || Retryable(err) {
		t.Errorf("a wrapped Final sentinel: Is %v, Retryable %v", errors.Is(err, sentinel), Retryable(err))
	}
}

func TestSleep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		if err := Sleep(context.Background(), time.Minute); err != nil || time.Since(start) != time.Minute {
			t.Errorf("Sleep(1m) = %v after %v", err, time.Since(start))
		}
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(time.Second, cancel)
		start = time.Now()
		if err := Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) || time.Since(start) != time.Second {
			t.Errorf("Sleep cancelled after 1s: %v after %v", err, time.Since(start))
		}
		if err := Sleep(ctx, 0); !errors.Is(err, context.Canceled) {
			t.Errorf("Sleep(0) on a done context: %v", err)
		}
		if err := Sleep(context.Background(), -time.Second); err != nil {
			t.Errorf("Sleep(-1s): %v", err)
		}
	})
}

// The parser never panics, never waits less than 0 or more than MaxAfter,
// and reads any run of digits as its seconds, capped.
func FuzzRetryAfter(f *testing.F) {
	for _, v := range []string{"", "0", "7", " 120 ", "301", "99999999999999999999", "-5", "1e3",
		"Thu, 01 Jan 2026 00:00:30 GMT", "Thursday, 01-Jan-26 00:01:00 GMT", "Thu Jan  1 00:02:00 2026"} {
		f.Add(v)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		got := After(v, now)
		if got < 0 || got > MaxAfter {
			t.Fatalf("After(%q) = %v, out of [0, %v]", v, got, MaxAfter)
		}
		digits := strings.TrimSpace(v)
		if digits == "" || strings.Trim(digits, "0123456789") != "" {
			return
		}
		want := MaxAfter
		if significant := strings.TrimLeft(digits, "0"); len(significant) < 10 {
			n, _ := strconv.ParseInt("0"+significant, 10, 64)
			want = min(time.Duration(n)*time.Second, MaxAfter)
		}
		if got != want {
			t.Fatalf("After(%q) = %v, want %v", v, got, want)
		}
		if got%time.Second != 0 {
			t.Fatalf("After(%q) = %v: not whole seconds", v, got)
		}
	})
}
