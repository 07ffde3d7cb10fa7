package download_test

import (
	"fmt"
	"hash/fnv"
	"net/url"
	"strings"
	"testing"

	"github.com/haul/haul/download"
	"github.com/haul/haul/download/downloadtest"
	"github.com/haul/haul/internal/testutil"
)

func TestHostShardKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ url, want string }{
		{"http://example.com/a", "example.com"},
		{"https://example.com/a", "example.com"},
		{"http://EXAMPLE.com/a", "example.com"},
		{"HTTP://Example.COM:80/a", "example.com"},         // the scheme's default port is no port
		{"https://example.com:443/x?q#f", "example.com"},   // likewise for https
		{"http://example.com:443/a", "example.com:443"},    // 443 is not http's default
		{"https://example.com:80/a", "example.com:80"},     // nor 80 https's
		{"http://example.com:0080/a", "example.com"},       // leading zeros: still port 80
		{"http://example.com:08080/a", "example.com:8080"}, // ... and 8080
		{"http://example.com:/a", "example.com"},           // an empty port is none
		{"http://user:pass@Example.com:8443/a", "example.com:8443"},
		{"http://user@example.com/a@b", "example.com"}, // an @ in the path is not user info
		{"http://127.0.0.1:8080/x", "127.0.0.1:8080"},
		{"http://[::1]/x", "[::1]"},
		{"http://[::1]:80/x", "[::1]"},
		{"https://[2001:DB8::1]:8443/x", "[2001:db8::1]:8443"},
		{"http://example.com?q=1", "example.com"},
		{"http://example.com#frag", "example.com"},
	} {
		if got := download.HostShardKey(tc.url); got != tc.want {
			t.Errorf("HostShardKey(%q) = %q, want %q", tc.url, got, tc.want)
		}
	}
}

// The shard of a host key is fixed forever, like the URL's: literal values,
// computed once with hash/fnv and written down, catch any change of formula.
func TestShardByHostGolden(t *testing.T) {
	t.Parallel()
	for _, g := range []struct {
		url  string
		key  string
		sum  uint64 // FNV-1a 64 of key
		n    int
		want int
	}{
		{"https://Example.com/a/b", "example.com", 0x576846634e2714c6, 3, 2},
		{"http://example.com:80/", "example.com", 0x576846634e2714c6, 1000, 350},
		{"http://u:p@127.0.0.1:8080/x?y=1", "127.0.0.1:8080", 0x1cf0caae52b457cc, 16, 12},
		{"https://[::1]:8443/f", "[::1]:8443", 0x8d47d05651ebbcd3, 1000, 211},
		{"http://[::1]/f", "[::1]", 0xd93d38d09d6ea210, 1000, 512},
		{"https://CDN.example.net:443/data/part-00042.parquet", "cdn.example.net", 0xb43687263d4336ad, 1000, 997},
		{"https://example.com:8443/", "example.com:8443", 0x10959d1c128d650d, 16, 13},
	} {
		key := download.HostShardKey(g.url)
		if key != g.key {
			t.Errorf("HostShardKey(%q) = %q, want %q", g.url, key, g.key)
			continue
		}
		h := fnv.New64a()
		h.Write([]byte(key))
		if h.Sum64() != g.sum {
			t.Fatalf("hash/fnv of %q = %#x, the test's literal says %#x", key, h.Sum64(), g.sum)
		}
		if got := download.ShardOf(key, g.n); got != g.want {
			t.Errorf("ShardOf(%q, %d) = %d, want %d", key, g.n, got, g.want)
		}
	}
}

// With ShardByHost, every entry of one host goes to the one shard its host
// key hashes to, however its URLs spell the host; over the shards every file
// is fetched once.
func TestEngineShardByHost(t *testing.T) {
	t.Parallel()
	const perHost, n = 5, 3
	h := newHarness(t)
	var lines []string
	hostOf := map[string]string{} // URL -> its server's host:port
	want := map[string]int{}      // host:port -> shard
	used := map[int]bool{}
	var servers []*downloadtest.Server
	// At least 6 hosts, and more until they span two shards or more: the test
	// means something only then (ports are random).
	for i := 0; i < 6 || len(used) < 2; i++ {
		s := downloadtest.New(t)
		servers = append(servers, s)
		hp := strings.TrimPrefix(s.URL, "http://")
		want[hp] = fnvShard(hp, n) // the key of 127.0.0.1:PORT is itself
		used[want[hp]] = true
		for j := range perHost {
			u := s.Add(fmt.Sprintf("/h%d/f%d", i, j), testutil.Payload(uint64(100*i+j), 64+j))
			if j == 1 { // other spellings of the same host
				u = strings.Replace(u, "http://", "HTTP://user:pw@", 1)
			}
			lines = append(lines, u)
			hostOf[u] = hp
		}
	}
	seen := map[string]bool{}
	for k := range n {
		oc := h.run(download.Options{ShardK: k, ShardN: n, ShardBy: download.ShardByHost}, lines...)
		for _, r := range oc.results {
			hp := hostOf[r.Entry.URL]
			if want[hp] != k {
				t.Errorf("shard %d fetched %s, whose host %s is in shard %d", k, r.Entry.URL, hp, want[hp])
			}
			if r.Status != download.StatusOK {
				t.Errorf("shard %d: %s: %s %v", k, r.Entry.URL, r.Status, r.Err)
			}
			if seen[r.Entry.URL] {
				t.Errorf("%s fetched by two shards", r.Entry.URL)
			}
			seen[r.Entry.URL] = true
		}
	}
	if len(seen) != len(lines) {
		t.Errorf("%d of %d entries fetched over the shards", len(seen), len(lines))
	}
	for _, s := range servers {
		u, _ := url.Parse(s.URL)
		if got := s.TotalRequests(); got != perHost {
			t.Errorf("%s: %d requests over the shards, want %d", u.Host, got, perHost)
		}
	}
}
