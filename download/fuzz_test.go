package download

import (
	"fmt"
	"testing"
)

// FuzzContentRange: parseContentRange never panics on what a server sends,
// accepts only a range that makes sense (its start before its end, both
// before a known total), and reads back what it accepted when formatted as a
// server would; wholeRange accepts only a range from 0 to the end.
func FuzzContentRange(f *testing.F) {
	for _, s := range []string{
		"bytes 0-99/100", "bytes 10-19/*", "bytes 5-4/10", "bytes 0-99/99", "bytes -1-5/10",
		"bytes 0-9223372036854775807/9223372036854775807", "bytes +1-2/3", "bytes=0-1/2", "bytes 1-2/3/4", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		start, total, ok := parseContentRange(s)
		if ok {
			if start < 0 || total < -1 || total == 0 || (total >= 0 && start >= total) {
				t.Fatalf("%q: accepted start %d of total %d", s, start, total)
			}
			var end int64
			var tot string
			if _, err := fmt.Sscanf(s, "bytes %d-%d/%s", new(int64), &end, &tot); err == nil {
				canon := fmt.Sprintf("bytes %d-%d/%s", start, end, tot)
				if total >= 0 {
					canon = fmt.Sprintf("bytes %d-%d/%d", start, end, total)
				}
				if s2, t2, ok2 := parseContentRange(canon); !ok2 || s2 != start || t2 != total {
					t.Fatalf("%q: canonical %q read as %d/%d ok %v", s, canon, s2, t2, ok2)
				}
			}
		}
		if wholeRange(s, -1) && (!ok || start != 0 || total < 0) {
			t.Fatalf("%q: wholeRange for start %d total %d ok %v", s, start, total, ok)
		}
	})
}
