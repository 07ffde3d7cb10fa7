package main

// --dns-server against a real resolver: dnsmasq, started by the test on
// 127.0.0.1, answering every name under dns.test with 127.0.0.1 and logging
// each query it gets.

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/haul/haul/download/downloadtest"
	"github.com/haul/haul/internal/testutil"
)

// dnsmasq is a running dnsmasq.
type dnsmasq struct {
	addr   string // 127.0.0.1:PORT
	log    string // its log file: one line per query
	cmd    *exec.Cmd
	exited chan struct{}
}

// startDnsmasq starts dnsmasq on a free port of 127.0.0.1, answering A
// queries for the names under dns.test with 127.0.0.1 (TTL one hour), AAAA
// queries with no record (--local: without it, dnsmasq refuses them for want
// of an upstream server, and a refusal is asked again), and no other name:
// no upstream server, no hosts file. It is stopped when t ends.
// Without dnsmasq the test is skipped, but under CI (which installs it),
// where it fails.
func startDnsmasq(t *testing.T) *dnsmasq {
	t.Helper()
	return startDnsmasqAt(t, func(int) (string, int) { return "127.0.0.1", testutil.FreePort(t) })
}

// startDnsmasqAt is startDnsmasq listening where addr says for each try.
func startDnsmasqAt(t *testing.T, addr func(try int) (ip string, port int)) *dnsmasq {
	t.Helper()
	bin, err := exec.LookPath("dnsmasq")
	if err != nil {
		bin = "/usr/sbin/dnsmasq"
	}
	if _, err := os.Stat(bin); err != nil {
		if ci := os.Getenv("CI"); ci != "" && ci != "false" && ci != "0" {
			t.Fatalf("dnsmasq is not installed (Debian package dnsmasq-base), and CI is set: .ci/run installs it")
		}
		t.Skip("dnsmasq is not installed (Debian package dnsmasq-base): skipped")
	}
	dir := t.TempDir()
	for try := 1; ; try++ {
		ip, port := addr(try)
		d := &dnsmasq{addr: net.JoinHostPort(ip, strconv.Itoa(port)), log: filepath.Join(dir, fmt.Sprintf("queries-%d.log", try)),
			exited: make(chan struct{})}
		args := []string{"--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
			"--address=/dns.test/127.0.0.1", "--local=/dns.test/", "--local-ttl=3600", "-q", "--log-facility=" + d.log,
			"--listen-address=" + ip, "--bind-interfaces", "--port=" + strconv.Itoa(port), "--pid-file="}
		if os.Geteuid() == 0 {
			args = append(args, "--user=root") // else it drops to nobody, who cannot write its log here
		}
		var out bytes.Buffer
		d.cmd = exec.Command(bin, args...)
		d.cmd.Stdout, d.cmd.Stderr = &out, &out
		d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := d.cmd.Start(); err != nil {
			t.Fatalf("starting dnsmasq: %v", err)
		}
		go func() { d.cmd.Wait(); close(d.exited) }()
		err := d.waitReady(t)
		if err == nil {
			t.Cleanup(d.stop)
			return d
		}
		d.stop()
		if try == 5 {
			t.Fatalf("dnsmasq on %s: %v\n%s", d.addr, err, out.String())
		}
		t.Logf("dnsmasq on %s: %v; starting it on another port", d.addr, err)
	}
}

// waitReady waits until dnsmasq answers a query, or exits (another process
// took the port).
func (d *dnsmasq) waitReady(t *testing.T) error {
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var nd net.Dialer
		return nd.DialContext(ctx, network, d.addr)
	}}
	var last error
	deadline := time.Now().Add(testutil.Patience(t))
	for wait := time.Millisecond; time.Now().Before(deadline); wait = min(2*wait, 50*time.Millisecond) {
		select {
		case <-d.exited:
			return fmt.Errorf("exited before answering: %v", d.cmd.ProcessState)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, last = r.LookupNetIP(ctx, "ip4", "ready.dns.test.")
		cancel()
		if last == nil {
			return nil
		}
		time.Sleep(wait)
	}
	return fmt.Errorf("no answer: %v", last)
}

// stop ends dnsmasq, which writes out its log.
func (d *dnsmasq) stop() {
	d.cmd.Process.Signal(syscall.SIGTERM)
	<-d.exited
}

// queries stops dnsmasq and returns how many queries of each type ("A",
// "AAAA") it got for each name.
func (d *dnsmasq) queries(t *testing.T) map[string]map[string]int {
	t.Helper()
	d.stop()
	b, err := os.ReadFile(d.log)
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]map[string]int{}
	for _, m := range regexp.MustCompile(`query\[(\w+)\] (\S+) from`).FindAllStringSubmatch(string(b), -1) {
		name := strings.ToLower(m[2])
		if n[name] == nil {
			n[name] = map[string]int{}
		}
		n[name][m[1]]++
	}
	return n
}

// hasGlobalIPv6 is the rule haul asks AAAA records by (AI_ADDRCONFIG's): an
// interface has an IPv6 address that is neither loopback nor link-local.
func hasGlobalIPv6(t *testing.T) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok || n.IP.To4() != nil {
			continue
		}
		ip, _ := netip.AddrFromSlice(n.IP)
		if !ip.IsLoopback() && !ip.IsLinkLocalUnicast() {
			return true
		}
	}
	return false
}

// dnsFiles adds files under names of dns.test to s: three for each name,
// the URLs by those names and the files the tree layout makes of them.
func dnsFiles(s *downloadtest.Server, seed uint64, names ...string) (urls []string, want map[string][]byte) {
	_, port, _ := net.SplitHostPort(s.Host())
	want = map[string][]byte{}
	for i, name := range names {
		for j := range 3 {
			path := fmt.Sprintf("/%s/%d.bin", name, j)
			body := testutil.Payload(seed+uint64(10*i+j), 2000+j)
			s.Add(path, body)
			urls = append(urls, "http://"+name+":"+port+path)
			want[name+"_"+port+path] = body
		}
	}
	return urls, want
}

// checkQueries checks that each name was asked of dnsmasq once for A, and
// once for AAAA only where the machine has a global IPv6 address.
func checkQueries(t *testing.T, got map[string]map[string]int, names []string) {
	t.Helper()
	aaaa := 0
	if hasGlobalIPv6(t) {
		aaaa = 1
	}
	for _, name := range names {
		if q := got[name]; q["A"] != 1 || q["AAAA"] != aaaa || len(q) != min(2, 1+aaaa) {
			t.Errorf("%s: queries %v, want A once and AAAA %d times (global IPv6: %v)", name, q, aaaa, aaaa == 1)
		}
	}
}

// Every file right, with every name looked up through --dns-server once.
func TestE2EDNSServer(t *testing.T) {
	t.Parallel()
	dm := startDnsmasq(t)
	s := downloadtest.New(t)
	names := []string{"a.dns.test", "b.dns.test", "c.dns.test", "d.dns.test"}
	urls, want := dnsFiles(s, 500, names...)
	dir := filepath.Join(t.TempDir(), "out")
	r := runHaul(t, nil, append([]string{"-d", dir, "-j", "8", "--dns-server", dm.addr, "--dns-concurrency", "2"}, urls...)...)
	wantCode(t, r, 0)
	checkFiles(t, dir, want)
	checkQueries(t, dm.queries(t), names)
}

// withFiles returns a command maker that runs its args in a mount namespace
// of their own where each file of binds (the machine's path: the test's) is
// the test's; it skips t where that cannot be (not root, no unshare).
func withFiles(t *testing.T, binds map[string]string) func(ctx context.Context, args ...string) *exec.Cmd {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("not root: cannot bind other files over /etc in a mount namespace of haul's own; skipped")
	}
	script := ""
	var files []string
	for dst, src := range binds {
		files = append(files, src, dst)
		script += fmt.Sprintf(`mount --bind "$%d" "$%d" && `, len(files)-1, len(files))
	}
	script += fmt.Sprintf(`shift %d && exec "$@"`, len(files))
	cmd := func(ctx context.Context, args ...string) *exec.Cmd {
		return exec.CommandContext(ctx, "unshare", append(append([]string{"--mount", "--propagation", "private", "sh", "-c",
			script, "sh"}, files...), args...)...)
	}
	for dst, src := range binds {
		want, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if out, err := cmd(t.Context(), "cat", dst).CombinedOutput(); err != nil || !bytes.Equal(out, want) {
			t.Skipf("no mount namespace with another %s here (%v): %s; skipped", dst, err, out)
		}
	}
	return cmd
}

// runIn runs haul with args through cmd (withFiles').
func runIn(t *testing.T, cmd func(ctx context.Context, args ...string) *exec.Cmd, args ...string) result {
	t.Helper()
	ctx, cancel := haulContext(t)
	defer cancel()
	c := cmd(ctx, append([]string{haulBin}, args...)...)
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	return runCmd(t, ctx, c, &stdout, &stderr, args)
}

// With the system's resolver pointing nowhere (haul in a mount namespace of
// its own where /etc/resolv.conf names a server that is not there), names
// resolve through --dns-server, and those of /etc/hosts from it without a
// query. Only root can make the namespace.
func TestE2EDNSServerWithoutSystemResolver(t *testing.T) {
	t.Parallel()
	isolated := withFiles(t, map[string]string{
		"/etc/resolv.conf": writeFile(t, "resolv.conf", []byte("nameserver 127.0.0.9\n")),
		"/etc/hosts":       writeFile(t, "hosts", []byte("127.0.0.1 localhost\n127.0.0.1 etc-hosts.dns.test\n")),
	})
	dm := startDnsmasq(t)
	s := downloadtest.New(t)
	names := []string{"ns-a.dns.test", "ns-b.dns.test"}
	urls, want := dnsFiles(s, 600, append(names, "etc-hosts.dns.test")...)
	dir := filepath.Join(t.TempDir(), "out")
	r := runIn(t, isolated, append([]string{"-d", dir, "-j", "4", "--dns-server", dm.addr}, urls...)...)
	wantCode(t, r, 0)
	checkFiles(t, dir, want)
	got := dm.queries(t)
	checkQueries(t, got, names)
	if q := got["etc-hosts.dns.test"]; len(q) != 0 {
		t.Errorf("a name of /etc/hosts asked of the server: %v", q)
	}
}

// Without --dns-server, names resolve through /etc/resolv.conf's name server
// (a real dnsmasq on port 53 of a loopback address), each asked once, those
// of /etc/hosts without a query, and a single-label name through the search
// domain.
func TestE2ESystemResolver(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("not root: cannot bind another /etc/resolv.conf in a mount namespace of haul's own; skipped")
	}
	// Port 53 of an address of 127.53.0.0/16 no one else uses.
	base := rand.Uint32N(1 << 16)
	dm := startDnsmasqAt(t, func(try int) (string, int) {
		n := (base + uint32(try)) % (1 << 16)
		return fmt.Sprintf("127.53.%d.%d", n>>8, n&0xff), 53
	})
	host, _, _ := net.SplitHostPort(dm.addr)
	isolated := withFiles(t, map[string]string{
		"/etc/resolv.conf":   writeFile(t, "resolv.conf", []byte("search dns.test\nnameserver "+host+"\noptions edns0\n")),
		"/etc/nsswitch.conf": writeFile(t, "nsswitch.conf", []byte("passwd: files\nhosts: files dns\n")),
		"/etc/hosts":         writeFile(t, "hosts", []byte("127.0.0.1 localhost\n127.0.0.1 etc-hosts.dns.test\n")),
	})
	s := downloadtest.New(t)
	urls, want := dnsFiles(s, 700, "sys-a.dns.test", "sys-b.dns.test", "etc-hosts.dns.test", "short")
	dir := filepath.Join(t.TempDir(), "out")
	r := runIn(t, isolated, append([]string{"-d", dir, "-j", "4"}, urls...)...)
	wantCode(t, r, 0)
	checkFiles(t, dir, want)
	got := dm.queries(t)
	checkQueries(t, got, []string{"sys-a.dns.test", "sys-b.dns.test", "short.dns.test"})
	if q := got["etc-hosts.dns.test"]; len(q) != 0 {
		t.Errorf("a name of /etc/hosts asked of the server: %v", q)
	}
}
