package index

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/haul/haul/download/httpclient"
)

// The real-server tests serve one awkward tree with each server's own
// directory listing and walk it. Each server is started once for the whole
// run (startGroup's sync.Once) and stopped by TestMain; a server whose binary
// is missing is skipped, naming it.
//
// go test -run TestServers -update rewrites testdata/*.html (each server's
// listing of the tree's top) and the FuzzLinks seed corpus from them.

var update = flag.Bool("update", false, "rewrite testdata/*.html and testdata/fuzz/FuzzLinks from the real servers")

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	stopServers()
	if treeBase != "" {
		os.RemoveAll(treeBase)
	}
	os.Exit(code)
}

// longName is a name of 240 bytes: near the 255 that filesystems allow.
var longName = strings.Repeat("L", 236) + ".bin"

// treeFiles are the files of the served tree, slash-separated below its top.
// withindex/ holds an index.html, which python and Go's FileServer serve in
// place of the listing (the others are configured not to).
var treeFiles = []string{
	"100%.txt",
	"a file with spaces.txt",
	"hash#tag.txt",
	"what?.txt",
	"ünïcødé-日本.txt",
	"tom&jerry.txt",
	"quote'sq.txt",
	"plus+semi;eq=.txt",
	"2024-01-02T10:00:00.log", // a ':' that is no scheme
	"x:y.txt",                 // a ':' that would be one, written bare
	longName,
	"movie.mkv.part",
	"dq\"uote.txt",
	"back\\slash.txt",
	"lt<gt>.txt",
	"new\nline.txt",
	"tab\there.txt",
	"latin1-caf\xe9.txt", // not UTF-8
	"d1/one.txt",
	"d1/d 2/d3/deep.txt",
	"withindex/index.html",
	"withindex/sibling.txt",
}

// The tree also has an empty directory, and link/, a symbolic link to a
// directory outside it, which a server may follow (its files are then below
// the start, under link/) or not.
var (
	treeDirs     = []string{"empty"}
	outsideFiles = []string{"o2/inner.txt", "outside.txt"} // sorted
)

// indexHTML is withindex/index.html: where it is served as the listing, its
// links are the directory's: a sibling, and links that must be dropped.
const indexHTML = `<html><body><p>not a listing</p><a href="sibling.txt">sibling</a>
<a href="../">up</a> <a href="?C=N;O=D">sort</a> <a href="/">top</a></body></html>
`

var (
	treeOnce sync.Once
	treeBase string // holds www/ (the served tree), outside/ and one work dir per server
	treeErr  error
)

// makeTree creates the tree once. Every directory is world-readable: Apache's
// children run as www-data.
func makeTree() (string, error) {
	treeOnce.Do(func() {
		treeBase, treeErr = os.MkdirTemp("", "haul-index-servers-")
		if treeErr != nil {
			return
		}
		os.Chmod(treeBase, 0o755)
		www := filepath.Join(treeBase, "www")
		write := func(root, rel, body string) {
			p := filepath.Join(root, filepath.FromSlash(rel))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil && treeErr == nil {
				treeErr = err
			}
			if err := os.WriteFile(p, []byte(body), 0o644); err != nil && treeErr == nil {
				treeErr = err
			}
		}
		for _, f := range treeFiles {
			body := "file " + f + "\n"
			if f == "withindex/index.html" {
				body = indexHTML
			}
			write(www, f, body)
		}
		for _, d := range treeDirs {
			if err := os.MkdirAll(filepath.Join(www, d), 0o755); err != nil && treeErr == nil {
				treeErr = err
			}
		}
		outside := filepath.Join(treeBase, "outside")
		for _, f := range outsideFiles {
			write(outside, f, "outside "+f+"\n")
		}
		if err := os.Symlink(outside, filepath.Join(www, "link")); err != nil && treeErr == nil {
			treeErr = err
		}
	})
	return treeBase, treeErr
}

// server is one listing format; several may share one process (group).
type server struct {
	name        string
	group       string
	servesIndex bool // serves a directory's index.html in place of its listing
	// symlinkAsFile: the listing writes link/ without its "/" (Go's FileServer
	// asks fs.DirEntry.IsDir, false for a symbolic link), so it is a file.
	symlinkAsFile bool
	// surrogates: a name that is not UTF-8 is written, and served only, with
	// Python's surrogate escapes: byte E9 as U+DCE9, %ED%B3%A9.
	surrogates bool
}

var servers = []server{
	{name: "nginx", group: "nginx"},
	{name: "apache", group: "apache"},       // mod_autoindex's plain list
	{name: "apache-fancy", group: "apache"}, // IndexOptions FancyIndexing: a <pre>
	{name: "apache-table", group: "apache"}, // Debian's autoindex.conf: FancyIndexing HTMLTable
	{name: "lighttpd", group: "lighttpd"},
	{name: "caddy", group: "caddy"},
	{name: "python", group: "python", servesIndex: true, surrogates: true},
	{name: "gofileserver", group: "gofileserver", servesIndex: true, symlinkAsFile: true},
}

// group is one server process (or in-process server) and the base URL of
// each listing format it serves.
type group struct {
	once  sync.Once
	bases map[string]string
	stop  func()
	skip  string // why it is skipped: a missing binary
	err   error
}

var (
	groupsMu sync.Mutex
	groups   = map[string]*group{}
)

func stopServers() {
	groupsMu.Lock()
	defer groupsMu.Unlock()
	for _, g := range groups {
		if g.stop != nil {
			g.stop()
		}
	}
}

// startGroup starts s's group once; it reports the outcome in the group.
func startGroup(s server) *group {
	groupsMu.Lock()
	g := groups[s.group]
	if g == nil {
		g = &group{}
		groups[s.group] = g
	}
	groupsMu.Unlock()
	g.once.Do(func() {
		base, err := makeTree()
		if err != nil {
			g.err = err
			return
		}
		work := filepath.Join(base, "run", s.group)
		if err := os.MkdirAll(work, 0o755); err != nil {
			g.err = err
			return
		}
		g.bases, g.stop, g.skip, g.err = starters[s.group](filepath.Join(base, "www"), work)
	})
	return g
}

// baseURL returns s's base URL (no trailing slash), starting its server if it
// is not running, or skips the test.
func baseURL(t *testing.T, s server) string {
	t.Helper()
	g := startGroup(s)
	if g.skip != "" {
		t.Skip(g.skip)
	}
	if g.err != nil {
		t.Fatalf("starting %s: %v", s.group, g.err)
	}
	return g.bases[s.name]
}

type starter func(www, work string) (bases map[string]string, stop func(), skip string, err error)

var starters = map[string]starter{
	"nginx":        startNginx,
	"apache":       startApache,
	"lighttpd":     startLighttpd,
	"caddy":        startCaddy,
	"python":       startPython,
	"gofileserver": startGoFileServer,
}

// lookBin finds a server binary in PATH or in the sbin directories Debian
// puts them in (not in a user's PATH).
func lookBin(name string) (string, string) {
	if p, err := exec.LookPath(name); err == nil {
		return p, ""
	}
	for _, d := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p, ""
		}
	}
	return "", name + " not installed (" + debianPackage[name] + "): skipped"
}

var debianPackage = map[string]string{
	"nginx": "Debian package nginx-light", "apache2": "Debian package apache2",
	"lighttpd": "Debian package lighttpd", "caddy": "Debian package caddy", "python3": "Debian package python3",
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// run starts cmd in a process group of its own (Apache forks), logging to
// work/log, and waits until every url answers. The process is killed if the
// test binary dies (Pdeathsig) and stopped, with its group, by stop.
func run(cmd *exec.Cmd, work string, urls ...string) (func(), error) {
	logf, err := os.Create(filepath.Join(work, "log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	dieWithParent(cmd.SysProcAttr)
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(exited) }()
	pgid := cmd.Process.Pid
	stop := func() {
		syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(3 * time.Second):
			syscall.Kill(-pgid, syscall.SIGKILL)
			<-exited
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for _, u := range urls {
		for {
			resp, err := http.Get(u)
			if err == nil {
				resp.Body.Close()
				break
			}
			select {
			case <-exited:
				log, _ := os.ReadFile(filepath.Join(work, "log"))
				return nil, fmt.Errorf("%s exited: %s", cmd.Path, log)
			case <-time.After(20 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				stop()
				log, _ := os.ReadFile(filepath.Join(work, "log"))
				return nil, fmt.Errorf("%s did not answer %s: %v\n%s", cmd.Path, u, err, log)
			}
		}
	}
	return stop, nil
}

func local(port int) string { return "http://127.0.0.1:" + strconv.Itoa(port) }

func writeConf(work, name, conf string) (string, error) {
	p := filepath.Join(work, name)
	return p, os.WriteFile(p, []byte(conf), 0o644)
}

func startNginx(www, work string) (map[string]string, func(), string, error) {
	bin, skip := lookBin("nginx")
	if skip != "" {
		return nil, nil, skip, nil
	}
	port, err := freePort()
	if err != nil {
		return nil, nil, "", err
	}
	// One process in the foreground; "index" names no file, so that
	// withindex/ is listed too.
	conf, err := writeConf(work, "nginx.conf", fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 64; }
http {
	access_log off;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	server {
		listen 127.0.0.1:%[2]d;
		root %[3]s;
		index no-such-index-file;
		autoindex on;
	}
}
`, work, port, www))
	if err != nil {
		return nil, nil, "", err
	}
	stop, err := run(exec.Command(bin, "-p", work, "-c", conf), work, local(port)+"/")
	return map[string]string{"nginx": local(port)}, stop, "", err
}

func startApache(www, work string) (map[string]string, func(), string, error) {
	bin, skip := lookBin("apache2")
	if skip != "" {
		return nil, nil, skip, nil
	}
	const mods = "/usr/lib/apache2/modules"
	if _, err := os.Stat(filepath.Join(mods, "mod_autoindex.so")); err != nil {
		return nil, nil, "apache2's modules are not in " + mods + " (Debian package apache2): skipped", nil
	}
	var ports [3]int
	for i := range ports {
		p, err := freePort()
		if err != nil {
			return nil, nil, "", err
		}
		ports[i] = p
	}
	// Apache refuses to serve as root. Its User directive would make it
	// setuid, which clears Pdeathsig: it is started as www-data instead.
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("www-data")
		if err != nil {
			return nil, nil, "running as root and no user www-data to run apache2 as: skipped", nil
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(work, uid, gid); err != nil {
			return nil, nil, "", err
		}
	}
	mimeTypes, err := writeConf(work, "mime.types", "text/plain txt log\ntext/html html\n")
	if err != nil {
		return nil, nil, "", err
	}
	// Three listings: mod_autoindex's plain list (no IndexOptions), its
	// FancyIndexing <pre>, and Debian's default (mods-available/autoindex.conf):
	// FancyIndexing HTMLTable. DirectoryIndex disabled lists withindex/ too.
	conf, err := writeConf(work, "httpd.conf", fmt.Sprintf(`ServerRoot %[1]s
Listen 127.0.0.1:%[2]d
Listen 127.0.0.1:%[3]d
Listen 127.0.0.1:%[4]d
PidFile %[1]s/httpd.pid
ErrorLog %[1]s/error.log
Mutex file:%[1]s
LoadModule mpm_event_module %[5]s/mod_mpm_event.so
LoadModule authz_core_module %[5]s/mod_authz_core.so
LoadModule dir_module %[5]s/mod_dir.so
LoadModule mime_module %[5]s/mod_mime.so
LoadModule autoindex_module %[5]s/mod_autoindex.so
LoadModule alias_module %[5]s/mod_alias.so
ServerName 127.0.0.1
TypesConfig %[6]s
DocumentRoot %[7]s
DirectoryIndex disabled
<Directory %[7]s>
	Options Indexes FollowSymLinks
	Require all granted
</Directory>
<VirtualHost 127.0.0.1:%[2]d>
</VirtualHost>
<VirtualHost 127.0.0.1:%[3]d>
	IndexOptions FancyIndexing
</VirtualHost>
<VirtualHost 127.0.0.1:%[4]d>
	IndexOptions FancyIndexing VersionSort HTMLTable NameWidth=* DescriptionWidth=* Charset=UTF-8
	AddIconByType (TXT,/icons/text.gif) text/*
	AddIcon /icons/back.gif ..
	AddIcon /icons/folder.gif ^^DIRECTORY^^
	AddIcon /icons/blank.gif ^^BLANKICON^^
	DefaultIcon /icons/unknown.gif
	IndexIgnore .??* *~ *# RCS CVS *,v *,t
</VirtualHost>
`, work, ports[0], ports[1], ports[2], mods, mimeTypes, www))
	if err != nil {
		return nil, nil, "", err
	}
	// -X: one process, no children, so that Pdeathsig leaves nothing behind
	// if the test binary dies (children of a killed parent keep serving).
	cmd := exec.Command(bin, "-f", conf, "-X")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	stop, err := run(cmd, work,
		local(ports[0])+"/", local(ports[1])+"/", local(ports[2])+"/")
	return map[string]string{"apache": local(ports[0]), "apache-fancy": local(ports[1]),
		"apache-table": local(ports[2])}, stop, "", err
}

func startLighttpd(www, work string) (map[string]string, func(), string, error) {
	bin, skip := lookBin("lighttpd")
	if skip != "" {
		return nil, nil, skip, nil
	}
	port, err := freePort()
	if err != nil {
		return nil, nil, "", err
	}
	conf, err := writeConf(work, "lighttpd.conf", fmt.Sprintf(`server.document-root = %q
server.bind = "127.0.0.1"
server.port = %d
server.modules += ( "mod_dirlisting" )
dir-listing.activate = "enable"
index-file.names = ( )
server.errorlog = %q
mimetype.assign = ( ".txt" => "text/plain", ".html" => "text/html" )
`, www, port, filepath.Join(work, "error.log")))
	if err != nil {
		return nil, nil, "", err
	}
	stop, err := run(exec.Command(bin, "-D", "-f", conf), work, local(port)+"/")
	return map[string]string{"lighttpd": local(port)}, stop, "", err
}

func startCaddy(www, work string) (map[string]string, func(), string, error) {
	bin, skip := lookBin("caddy")
	if skip != "" {
		return nil, nil, skip, nil
	}
	port, err := freePort()
	if err != nil {
		return nil, nil, "", err
	}
	// No admin endpoint (it would take localhost:2019 from anyone else's
	// Caddy), no HTTPS, and state under work, not $HOME.
	conf, err := writeConf(work, "Caddyfile", fmt.Sprintf(`{
	admin off
	auto_https off
	storage file_system %[1]s/data
}
http://127.0.0.1:%[2]d {
	root * %[3]s
	file_server browse {
		index no-such-index-file
	}
}
`, work, port, www))
	if err != nil {
		return nil, nil, "", err
	}
	cmd := exec.Command(bin, "run", "--config", conf, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "HOME="+work, "XDG_DATA_HOME="+work, "XDG_CONFIG_HOME="+work)
	stop, err := run(cmd, work, local(port)+"/")
	return map[string]string{"caddy": local(port)}, stop, "", err
}

func startPython(www, work string) (map[string]string, func(), string, error) {
	bin, skip := lookBin("python3")
	if skip != "" {
		return nil, nil, skip, nil
	}
	port, err := freePort()
	if err != nil {
		return nil, nil, "", err
	}
	cmd := exec.Command(bin, "-m", "http.server", "--bind", "127.0.0.1", "--directory", www, strconv.Itoa(port))
	stop, err := run(cmd, work, local(port)+"/")
	return map[string]string{"python": local(port)}, stop, "", err
}

func startGoFileServer(www, _ string) (map[string]string, func(), string, error) {
	s := httptest.NewServer(http.FileServer(http.Dir(www)))
	return map[string]string{"gofileserver": s.URL}, s.Close, "", nil
}

// wantFiles is the set of URLs a walk of s from start (a directory below
// the top, "" or ending in "/") must find, but those under link/.
func wantFiles(s server, base, start string) map[string]bool {
	want := map[string]bool{}
	for _, f := range treeFiles {
		if !strings.HasPrefix(f, start) || s.servesIndex && f == "withindex/index.html" {
			continue
		}
		if s.surrogates {
			f = surrogateEscape(f)
		}
		want[base+"/"+escapePath(f)] = true
	}
	if s.symlinkAsFile && start == "" {
		want[base+"/link"] = true
	}
	return want
}

// surrogateEscape writes each byte of s that is not UTF-8 as Python's
// surrogateescape and surrogatepass do: byte b as U+DC00+b, in UTF-8.
func surrogateEscape(s string) string {
	var b []byte
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			r = 0xDC00 + rune(s[i])
			b = append(b, byte(0xE0|r>>12), byte(0x80|r>>6&0x3F), byte(0x80|r&0x3F))
		} else {
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return string(b)
}

func escapePath(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i] = escapeSegment(s)
	}
	return strings.Join(segs, "/")
}

func TestServers(t *testing.T) {
	client, err := httpclient.New(httpclient.Options{Jobs: 4})
	if err != nil {
		t.Fatal(err)
	}
	// Start them all at once: most of a start is waiting.
	var wg sync.WaitGroup
	for _, s := range servers {
		wg.Go(func() { startGroup(s) })
	}
	wg.Wait()
	for _, s := range servers {
		t.Run(s.name, func(t *testing.T) {
			base := baseURL(t, s)
			if *update {
				capture(t, s, base)
			}
			for _, start := range []string{"", "d1/"} {
				t.Run("/"+start, func(t *testing.T) {
					checkWalk(t, client, s, base, start)
				})
			}
		})
	}
}

func checkWalk(t *testing.T, client HTTPClient, s server, base, start string) {
	w := NewSource(context.Background(), client, []string{base + "/" + escapePath(start)}, Options{})
	defer w.Close()
	got := map[string]bool{}
	var linked []string
	for {
		e, err := w.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		if e.Line != 1 || e.Out != "" || e.Size != -1 || e.SHA256 != "" {
			t.Errorf("entry %+v: want Line 1, no out=, size= or sha256=", e)
		}
		if got[e.URL] {
			t.Errorf("%s given twice", e.URL)
		}
		got[e.URL] = true
		if rest, ok := strings.CutPrefix(e.URL, base+"/link/"); ok {
			linked = append(linked, rest)
			delete(got, e.URL)
		}
	}
	want := wantFiles(s, base, start)
	for u := range got {
		if !want[u] {
			t.Errorf("found %s, not a file of the tree below /%s", u, start)
		}
	}
	for u := range want {
		if !got[u] {
			t.Errorf("missed %s", u)
		}
	}
	// Through link/, all of the outside directory or nothing, whichever
	// the server does with symbolic links.
	slices.Sort(linked)
	if len(linked) > 0 && !slices.Equal(linked, outsideFiles) {
		t.Errorf("through link/: %q, want %q or nothing", linked, outsideFiles)
	}
	if start == "" {
		t.Logf("%s: %d files, %d through the symbolic link", s.name, len(got), len(linked))
	}
}

// capture writes s's listing of the tree's top as testdata/NAME.html and as a
// seed of FuzzLinks.
func capture(t *testing.T, s server, base string) {
	req, _ := http.NewRequest(http.MethodGet, base+"/", nil)
	req.Header.Set("Accept", "text/html")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	page, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("testdata", s.name+".html"), page, 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzLinks")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	seed := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", page)
	if err := os.WriteFile(filepath.Join(dir, s.name), []byte(seed), 0o644); err != nil {
		t.Fatal(err)
	}
}
