package h1

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkSmallGET compares h1.Client with net/http's client on 4 KiB
// responses over one keep-alive connection, reading each body into a 128 KiB
// buffer as haul does. With server=httptest the server's CPU time is in the
// numbers too; server=canned answers with a fixed response from one goroutine,
// which leaves mostly the client's cost.
func BenchmarkSmallGET(b *testing.B) {
	data := strings.Repeat("z", 4096)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", "4096")
		io.WriteString(w, data)
	}))
	defer hs.Close()
	canned := cannedServer(b, "HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Sat, 21 Nov 2026 23:00:00 GMT\r\n"+
		"Content-Type: application/octet-stream\r\nContent-Length: 4096\r\nLast-Modified: Sat, 21 Nov 2026 22:00:00 GMT\r\n"+
		"Connection: keep-alive\r\nETag: \"6737b2c0-1000\"\r\nAccept-Ranges: bytes\r\n\r\n"+data)

	clients := []struct {
		name string
		do   func(*http.Request) (*http.Response, error)
		stop func()
	}{
		{"client=h1", nil, nil},
		{"client=nethttp", nil, nil},
	}
	// h1 as haul uses it: the RoundTripper under an http.Client.
	h := New(Options{})
	clients[0].do, clients[0].stop = (&http.Client{Transport: h}).Do, h.CloseIdleConnections
	tr := &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 4, ReadBufferSize: 64 << 10}
	nc := &http.Client{Transport: tr}
	clients[1].do, clients[1].stop = nc.Do, tr.CloseIdleConnections
	defer h.CloseIdleConnections()
	defer tr.CloseIdleConnections()

	for _, srv := range []struct{ name, url string }{{"server=httptest", hs.URL}, {"server=canned", canned}} {
		for _, cl := range clients {
			b.Run(srv.name+"/"+cl.name, func(b *testing.B) {
				// As haul: a cancellable context per request and a shared header.
				hdr := http.Header{"User-Agent": {"haul/bench"}}
				buf := make([]byte, 128<<10)
				cpu0 := cpuTime()
				b.ReportAllocs()
				b.SetBytes(4096)
				for i := 0; b.Loop(); i++ {
					ctx, cancel := context.WithCancelCause(context.Background())
					req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.url+"/f/"+strconv.Itoa(i), nil)
					req.Header = hdr
					resp, err := cl.do(req)
					if err != nil {
						b.Fatal(err)
					}
					n, _ := io.ReadFull(resp.Body, buf[:4097])
					resp.Body.Close()
					cancel(nil)
					if n != 4096 {
						b.Fatalf("%d bytes", n)
					}
				}
				b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
			})
		}
	}
}

// cpuTime is the CPU time of the process (user and system), the server's
// included.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cannedServer answers every request on every connection with response.
func cannedServer(b *testing.B, response string) string {
	resp := []byte(response)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					// A request head ends with an empty line.
					for {
						line, err := br.ReadSlice('\n')
						if err != nil {
							return
						}
						if len(line) == 2 {
							break
						}
					}
					if _, err := c.Write(resp); err != nil {
						return
					}
				}
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}
