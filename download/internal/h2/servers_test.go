//go:build linux

package h2

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/haul/haul/internal/realserver"
	"github.com/haul/haul/internal/testutil"
)

// The real-server tests run the client against the HTTP/2 servers users
// meet (nginx, Caddy, h2o, started by package realserver), configured to be
// awkward: a stream limit below Streams, a GOAWAY every few dozen requests,
// small frames. Every body must be its file's, over HTTP/2.

// realFiles writes n files of varied sizes (0 to 200 KiB) and a 12 MiB one
// (many windows' worth) under www, and returns their paths.
func realFiles(t *testing.T, www string, n int) []string {
	t.Helper()
	var paths []string
	for i := range n {
		paths = append(paths, fmt.Sprintf("/d%d/f%d.bin", i%10, i))
	}
	paths = append(paths, "/big.bin")
	for _, p := range paths {
		b := content(p)
		if p == "/big.bin" {
			b = bytes.Repeat(content(p), 12<<20/max(len(b), 1)+1)[:12<<20]
		} else {
			b = bytes.Repeat(b, 1+len(p)%3)
		}
		f := filepath.Join(www, filepath.FromSlash(p))
		os.MkdirAll(filepath.Dir(f), 0o755)
		if err := os.WriteFile(f, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return paths
}

func TestRealServers(t *testing.T) {
	for _, srv := range []struct {
		kind   realserver.Kind
		config string
	}{
		// nginx: 4 streams per connection (below Streams), a GOAWAY after 40
		// requests, 4 KiB DATA frames.
		{realserver.Nginx, "http2_max_concurrent_streams 4;\nkeepalive_requests 40;\nhttp2_chunk_size 4k;"},
		{realserver.Caddy, ""},
		{realserver.H2O, "http2-max-concurrent-requests-per-connection: 4"},
	} {
		t.Run(string(srv.kind), func(t *testing.T) {
			t.Parallel()
			www := t.TempDir()
			paths := realFiles(t, www, 300)
			s := realserver.Start(t, srv.kind, realserver.Options{Dir: www, TLS: true, Config: srv.config})
			c := New(Options{TLSConfig: s.Cert.ClientConfig(), Streams: 16, MaxConnsPerHost: 2})
			defer c.CloseIdleConnections()
			base := s.URL
			var wg sync.WaitGroup
			work1 := make(chan string)
			var mu sync.Mutex
			var failures []string
			for range 32 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for p := range work1 {
						if err := fetchCheck(t, c, base, p, filepath.Join(www, filepath.FromSlash(p))); err != nil {
							mu.Lock()
							failures = append(failures, err.Error())
							mu.Unlock()
						}
					}
				}()
			}
			for range 2 { // twice: the second round on connections kept
				for _, p := range paths {
					work1 <- p
				}
			}
			close(work1)
			wg.Wait()
			if len(failures) > 0 {
				t.Errorf("%d of %d failed, first: %s", len(failures), 2*len(paths), failures[0])
			}
		})
	}
}

// fetchCheck gets path and compares it with file. Its only time bound is the
// test binary's (testutil.Patience): a server under load may be slow, not
// wrong.
func fetchCheck(t *testing.T, c *Client, base, path, file string) error {
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Patience(t))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.RoundTrip(req)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s: body: %w", path, err)
	}
	want, _ := os.ReadFile(file)
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 || !bytes.Equal(got, want) {
		return fmt.Errorf("%s: %s %s, %d bytes, want 200 over HTTP/2 and its %d", path, resp.Proto, resp.Status, len(got), len(want))
	}
	return nil
}
