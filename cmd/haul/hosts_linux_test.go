package main

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Over a list spread across far more hosts than -j, haul's open descriptors
// (sockets, idle connections, staging files, directories) stay within
// 8 x -j + 256 for the whole run, not growing with the hosts, and every file
// is right. The hosts are ports of one server on loopback; haul runs alone in
// its own process, whose /proc/PID/fd is polled.
func TestManyHostsKeepDescriptorsWithinTheBound(t *testing.T) {
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		t.Skip("no /proc/self/fd")
	}
	const hosts, jobs = 700, 4
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(r.Host + r.URL.Path))
	})}
	t.Cleanup(func() { srv.Close() })
	var lines []string
	for i := range hosts {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go srv.Serve(l)
		lines = append(lines, fmt.Sprintf("http://%s/f%d.bin", l.Addr(), i))
	}
	dir := filepath.Join(t.TempDir(), "out")
	ctx, cancel := haulContext(t)
	defer cancel()
	cmd, _, stderr := haulCmd(ctx, nil, "-q", "-j", strconv.Itoa(jobs), "--layout", "tree", "-i", writeList(t, lines...), "-d", dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	fds := fmt.Sprintf("/proc/%d/fd", cmd.Process.Pid)
	most, polls := 0, 0
	var err error
poll:
	for {
		select {
		case err = <-done:
			break poll
		default:
		}
		if ents, rerr := os.ReadDir(fds); rerr == nil {
			most = max(most, len(ents))
			polls++
		}
		time.Sleep(time.Millisecond)
	}
	if err != nil {
		t.Fatalf("haul: %v\n%s", err, stderr)
	}
	if bound := 8*jobs + 256; most > bound {
		t.Errorf("haul held %d descriptors at once over %d hosts at -j %d, above 8 x -j + 256 = %d", most, hosts, jobs, bound)
	}
	t.Logf("at most %d descriptors open over %d polls", most, polls)
	for i, u := range lines {
		host := u[len("http://") : len(u)-len(fmt.Sprintf("/f%d.bin", i))]
		name := filepath.Join(dir, hostDirName(host), fmt.Sprintf("f%d.bin", i))
		got, err := os.ReadFile(name)
		if want := []byte(fmt.Sprintf("%s/f%d.bin", host, i)); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: %q, %v; want %q", name, got, err, want)
		}
	}
}

// hostDirName is the tree layout's directory for host:port.
func hostDirName(hostport string) string {
	h, p, _ := net.SplitHostPort(hostport)
	return h + "_" + p
}
