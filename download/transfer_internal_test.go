package download

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"
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

// Forgetting idle hosts stays O(1) per new host even when most hosts are
// paused (and so cannot be forgotten): a list of many hosts answering 429.
func TestHostsSweepAmortized(t *testing.T) {
	hs := newHosts(0, 8, 1)
	const n = 5 * maxIdleHosts
	for i := range n {
		w := int64(1)
		h, err := hs.acquire(context.Background(), fmt.Sprintf("h%d:80", i), &w, nil)
		if err != nil {
			t.Fatal(err)
		}
		hs.pause(h, time.Hour)
		hs.release(h, 1)
	}
	if hs.swept > 4*n {
		t.Errorf("sweeps looked at %d hosts for %d new ones: quadratic", hs.swept, n)
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

// Per-host slots are counted in streams: an entry sent before its host was
// known to speak HTTP/2 takes a whole connection's worth, and once the host
// turns out to, it keeps one stream: the rest goes back to the host and to
// -j at once, and a waiter wakes.
func TestHostsMultiplexedLightensHeavy(t *testing.T) {
	hs := newHosts(1, 8, 4) // --per-host 1 x 4 streams
	var given int64
	hs.lighter = func(n int64) { given += n }
	granted := int64(4)
	x := &entry{weight: 4, granted: &granted}
	w := x.weight
	h, ok := hs.tryAcquire("h:443", &w, x, nil)
	if !ok || w != 4 {
		t.Fatalf("first entry: ok %v weight %d, want a whole connection (4)", ok, w)
	}
	woken := false
	w1 := int64(1)
	if _, ok := hs.tryAcquire("h:443", &w1, nil, func() bool { woken = true; return true }); ok {
		t.Fatal("a stream was free while the one connection's worth was taken")
	}
	hs.multiplexed(h)
	if x.weight != 1 || granted != 1 || given != 3 || h.used != 1 {
		t.Errorf("after multiplexed: weight %d granted %d given back %d used %d, want 1 1 3 1", x.weight, granted, given, h.used)
	}
	if !woken {
		t.Error("the waiter was not woken")
	}
	w = 4 // a later entry dispatched as heavy takes one stream
	if _, ok := hs.tryAcquire("h:443", &w, nil, nil); !ok || w != 1 {
		t.Errorf("later entry: ok %v weight %d, want a stream", ok, w)
	}
	hs.releaseEntry(h, x)
	hs.release(h, 1)
	if h.used != 0 {
		t.Errorf("%d slots still taken after every release", h.used)
	}
}
