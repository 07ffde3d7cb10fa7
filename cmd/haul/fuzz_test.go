package main

import (
	"math/big"
	"strconv"
	"strings"
	"testing"
)

// FuzzSizeFlags: parseRate (--limit-rate) and parseSize (--min-split-size,
// --checkpoint) accept only what they can give back: an accepted value lies
// in [1, 2^50] (parseSize: at least its minimum) and reads back as itself
// written as plain digits, and as digits and a suffix where it is a whole
// number of K, M or G; the suffix's case does not matter; a plain number with
// or without a suffix means exactly digits x 1024^k (checked with big
// integers); what parseSize refuses names its flag.
func FuzzSizeFlags(f *testing.F) {
	for _, s := range []string{"500K", "20M", "1G", "1", "0", "1.5M", "16m", "-1K", "1e3", "0x10",
		"NaN", "Inf", "1125899906842624", "1125899906842625", "1048576K", "1048577K", "K", "", " 1M", "1KK"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseRate(s)
		if s == "" {
			if n != 0 || err != nil {
				t.Fatalf(`parseRate("") = %d, %v; want 0 (unlimited)`, n, err)
			}
			return
		}
		if err == nil {
			if n < 1 || n > 1<<50 {
				t.Fatalf("parseRate(%q) = %d, outside [1, 2^50]", s, n)
			}
			digits := strconv.FormatInt(n, 10)
			if back, err := parseRate(digits); back != n || err != nil {
				t.Fatalf("parseRate(%q) = %d, but %q reads as %d, %v", s, n, digits, back, err)
			}
			for _, u := range []struct {
				suffix string
				mult   int64
			}{{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}} {
				if n%u.mult == 0 {
					w := strconv.FormatInt(n/u.mult, 10) + u.suffix
					if back, err := parseRate(w); back != n || err != nil {
						t.Fatalf("parseRate(%q) = %d, but %q reads as %d, %v", s, n, w, back, err)
					}
				}
			}
		}
		// The suffix's case does not matter.
		last := s[len(s)-1:]
		if flipped := strings.ToLower(last); flipped != last || strings.ToUpper(last) != last {
			if flipped == last {
				flipped = strings.ToUpper(last)
			}
			n2, err2 := parseRate(s[:len(s)-1] + flipped)
			if strings.ContainsAny(last, "kmgKMG") && (n2 != n || (err2 == nil) != (err == nil)) {
				t.Fatalf("parseRate(%q) = %d, %v but with the suffix's case changed %d, %v", s, n, err, n2, err2)
			}
		}
		// Digits and an optional suffix: exactly digits x 1024^k, if in range.
		num, mult := s, int64(1)
		switch s[len(s)-1] {
		case 'k', 'K':
			num, mult = s[:len(s)-1], 1<<10
		case 'm', 'M':
			num, mult = s[:len(s)-1], 1<<20
		case 'g', 'G':
			num, mult = s[:len(s)-1], 1<<30
		}
		if num != "" && strings.Trim(num, "0123456789") == "" {
			want, _ := new(big.Int).SetString(num, 10)
			want.Mul(want, big.NewInt(mult))
			inRange := want.Sign() > 0 && want.Cmp(big.NewInt(1<<50)) <= 0
			if inRange != (err == nil) || inRange && want.Int64() != n {
				t.Fatalf("parseRate(%q) = %d, %v; want %v (in range: %v)", s, n, err, want, inRange)
			}
		}
		// parseSize is parseRate with a minimum, and names its flag.
		for _, least := range []int64{1 << 10, 4 << 10} {
			m, err3 := parseSize("checkpoint", s, least)
			switch {
			case err == nil && n >= least:
				if err3 != nil || m != n {
					t.Fatalf("parseSize(%q, %d) = %d, %v; parseRate gave %d", s, least, m, err3, n)
				}
			case err3 == nil:
				t.Fatalf("parseSize(%q, %d) = %d accepted; parseRate gave %d, %v", s, least, m, n, err)
			case !strings.HasPrefix(err3.Error(), "--checkpoint "):
				t.Fatalf("parseSize(%q) error %q does not name the flag", s, err3)
			}
		}
	})
}
