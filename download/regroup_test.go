package download_test

import (
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/haul/haul/download"
)

// A list that visits each of many hosts again only after all the others (line
// i to host i mod H) is served over about one connection per host: the
// entries read ahead wait for their host's connection, rather than the
// connection waiting (pushed out of the client's bounded idle pool, which
// holds fewer than H) for its host's next entry.
func TestHostsVisitedInTurnReuseTheirConnection(t *testing.T) {
	const hosts, rounds = 300, 4 // the harness's client keeps 80 idle connections
	var conns atomic.Int64
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s %s", r.Host, r.URL.Path)
		}),
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		},
	}
	t.Cleanup(func() { srv.Close() })
	addrs := make([]string, hosts)
	for i := range addrs {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs[i] = ln.Addr().String()
		go srv.Serve(ln)
	}
	var lines []string
	for r := range rounds {
		for _, a := range addrs {
			lines = append(lines, fmt.Sprintf("http://%s/r%d out=%s/r%d", a, r, a, r))
		}
	}
	h := newHarness(t)
	oc := h.run(download.Options{Jobs: 8}, lines...)
	if len(oc.results) != hosts*rounds {
		t.Fatalf("%d results, want %d", len(oc.results), hosts*rounds)
	}
	for _, r := range oc.results {
		if r.Status != download.StatusOK {
			t.Fatalf("%s: %s %v", r.Entry.URL, r.Status, r.Err)
		}
	}
	for _, a := range addrs {
		h.checkFile(a+"/r3", []byte(a+" /r3"))
	}
	// Each host's first entry opens its connection; a host's entries follow
	// each other on it (a few more where a hint is lost are allowed; a
	// connection per entry would be 1,200).
	if n := conns.Load(); n > hosts+hosts/10 {
		t.Errorf("%d connections for %d hosts x %d entries, want about one per host", n, hosts, rounds)
	}
}
