// Package retry is the one retry policy of haul's network code: how long to
// wait before another attempt (Backoff, and a server's Retry-After), which
// network errors another attempt may fix (Retryable, Status), and a wait that
// ends with its context (Sleep). The engine's attempts at an entry, the
// pieces of a split body, the index walker and the HTTP/2 client's requests
// refused by a server all use it; each adds its own rules about its own
// errors on top of Retryable.
package retry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"time"
)

// Backoff is a schedule of waits between attempts: Base after the first
// failure counted, doubling with each one after it, up to Max, less a random
// part (jitter) so that clients that failed together do not come back
// together.
type Backoff struct {
	// Base is the wait after the first failure past Free; 0 or less waits Max.
	Base time.Duration
	// Max caps every wait; it must be positive.
	Max time.Duration
	// Jitter is the part of each wait, from 0 to 1, that is taken off at
	// random: with 0.5 a wait d is drawn from (d/2, d], with 0 it is d.
	Jitter float64
	// Free is how many failures are retried at once, before any wait.
	Free int
}

// Delay is the wait after the n-th failure in a row (n from 1).
func (b Backoff) Delay(n int) time.Duration {
	if n <= b.Free {
		return 0
	}
	d := b.Base
	if d <= 0 || d > b.Max {
		d = b.Max
	}
	// Doubled one step at a time: a shift by n-1 overflows for a large n or
	// Base, to a value that may look like a short wait.
	for i := b.Free + 1; i < n && d < b.Max; i++ {
		if d > b.Max/2 {
			d = b.Max
			break
		}
		d *= 2
	}
	if j := time.Duration(float64(d) * min(max(b.Jitter, 0), 1)); j > 0 {
		d -= rand.N(j)
	}
	return d
}

// MaxAfter caps the wait a server can ask for with Retry-After.
const MaxAfter = 5 * time.Minute

// After is the wait a Retry-After value asks for at now: delay-seconds (only
// digits) or an HTTP date, from 0 to MaxAfter; 0 when v is neither or in the
// past. A number of seconds too large for any integer is MaxAfter.
func After(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, ok := seconds(v); ok {
		return time.Duration(secs) * time.Second
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0
	}
	return min(max(t.Sub(now), 0), MaxAfter)
}

// seconds parses delay-seconds (RFC 9110, 10.2.3: 1*DIGIT), capped at
// MaxAfter in seconds however many digits follow.
func seconds(v string) (int64, bool) {
	const limit = int64(MaxAfter / time.Second)
	var n int64
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = min(n*10+int64(c-'0'), limit) // n stays at most limit: never overflows
	}
	return n, true
}

// Status reports whether another attempt may get another answer than a
// response with this status: 408 (the server gave up waiting), 429 (too many
// requests) and every 5xx.
func Status(code int) bool {
	return code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500
}

// Final marks err as one that another attempt cannot fix: Retryable is false
// for every error that wraps it. The message is err's.
func Final(err error) error { return &final{err} }

type final struct{ err error }

func (e *final) Error() string { return e.err.Error() }
func (e *final) Unwrap() error { return e.err }

// Retryable reports whether another attempt may succeed after the network
// error err: it may after a refused or dropped connection, a timeout, a
// resolver that failed or timed out; it may not after an error marked Final
// (such as the redirect policy's), a name the resolver says does not exist
// (NXDOMAIN: curl and wget give up at once too) or a certificate that does
// not verify. Callers decide about their own errors (statuses, local I/O)
// before they ask.
func Retryable(err error) bool {
	var f *final
	var de *net.DNSError
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	switch {
	case errors.As(err, &f):
		return false
	case errors.As(err, &de) && de.IsNotFound:
		return false
	case errors.As(err, &cv), errors.As(err, &ua), errors.As(err, &hn), errors.As(err, &ci):
		return false
	}
	return true
}

// Sleep waits d, or until ctx is done: then it returns ctx.Err(). A wait of
// 0 or less returns at once (ctx.Err(), nil while ctx is live).
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
