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

// A body past growAt that fills its reads moves to a big buffer while one
// is free; no more than cap big buffers ever exist, and each goes back to
// its own pool.
func TestTransferGrowsBuffer(t *testing.T) {
	d := &transferDeps{bufs: newBuffers(8, 4), big: newBuffers(64, 2)}
	xfer := func(written int64) *transfer {
		x := &transfer{d: d, written: written}
		x.buffer()
		return x
	}
	early := xfer(growAt - 1)
	early.grow()
	if early.from == d.big || len(early.buffer()) != 8 {
		t.Fatalf("grew before growAt: %d bytes", len(early.buffer()))
	}
	a, b, c := xfer(growAt), xfer(growAt), xfer(growAt)
	for _, x := range []*transfer{a, b, c} {
		x.grow()
	}
	if a.from != d.big || b.from != d.big || len(a.buffer()) != 64 || len(b.buffer()) != 64 {
		t.Fatalf("the first two did not grow: %v %v", a.from == d.big, b.from == d.big)
	}
	if c.from == d.big || len(c.buffer()) != 8 {
		t.Fatal("a third big buffer was made past the cap")
	}
	a.close()
	c.grow()
	if c.from != d.big || len(c.buffer()) != 64 {
		t.Fatal("a big buffer given back was not taken again")
	}
	if got := len(d.bufs.free); got != 3 {
		t.Errorf("%d small buffers given back, want 3 (those of a, b and c)", got)
	}
	if got := len(d.big.free); got != 0 {
		t.Errorf("%d big buffers idle, want 0", got)
	}
}

// A body known to fit a small buffer is read into one; an attempt whose body
// is longer (or of unknown length) takes a full-size buffer instead, and
// every buffer goes back to its own pool.
func TestTransferSmallBodyTakesSmallBuffer(t *testing.T) {
	d := &transferDeps{bufs: newBuffers(bufSize, 4), fit: newBuffers(smallBufSize, 4)}
	x := &transfer{d: d, total: 4 << 10}
	if got := len(x.buffer()); got != smallBufSize {
		t.Fatalf("a 4 KiB body got a %d-byte buffer, want %d", got, smallBufSize)
	}
	x.total, x.written = 1<<20, 1<<20-smallBufSize
	if got := len(x.buffer()); got != smallBufSize {
		t.Fatalf("the last %d bytes of a body got a %d-byte buffer, want %d", smallBufSize, got, smallBufSize)
	}
	x.written = 0
	if got := len(x.buffer()); got != bufSize {
		t.Fatalf("a 1 MiB body got a %d-byte buffer, want %d", got, bufSize)
	}
	if got := len(d.fit.free); got != 1 {
		t.Errorf("%d small buffers given back on the swap, want 1", got)
	}
	x.close()
	if got := len(d.bufs.free); got != 1 {
		t.Errorf("%d full-size buffers given back, want 1", got)
	}
	unknown := &transfer{d: d, total: -1}
	if got := len(unknown.buffer()); got != bufSize {
		t.Errorf("a body of unknown length got a %d-byte buffer, want %d", got, bufSize)
	}
	unknown.close()
	if got := len(d.fit.free); got != 1 {
		t.Errorf("%d small buffers idle, want 1", got)
	}
}
