package realserver

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// Each function below writes one server's configuration for s.Port into
// s.Work and returns its command, in the foreground, as one process where
// the server can be told so (a child left by a killed parent would keep
// serving).

func nginx(t testing.TB, s *Server, o Options, bin string, tls tlsFiles) *exec.Cmd {
	listen, certs := "", ""
	if o.TLS {
		listen = " ssl http2"
		certs = fmt.Sprintf("ssl_certificate %s;\n\t\tssl_certificate_key %s;", tls.cert, tls.key)
	}
	listing := ""
	if o.Listing {
		// "index" names no file: a directory holding index.html is listed.
		listing = "autoindex on;\n\tindex no-such-index-file;"
	}
	conf := writeConf(t, s, "nginx.conf", fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 256; }
http {
	access_log off;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	%[2]s
%[3]s
	server {
		listen 127.0.0.1:%[4]d%[5]s;
		%[6]s
		root %[7]s;
	}
}
`, s.Work, listing, o.Config, s.Port, listen, certs, o.Dir))
	return exec.Command(bin, "-p", s.Work, "-c", conf)
}

// apacheModules is where Debian's apache2 keeps its modules.
const apacheModules = "/usr/lib/apache2/modules"

func apache(t testing.TB, s *Server, o Options, bin string, _ tlsFiles) *exec.Cmd {
	if _, err := os.Stat(filepath.Join(apacheModules, "mod_autoindex.so")); err != nil {
		missing(t, "apache2's modules are not in "+apacheModules+" (Debian package apache2)")
	}
	// Apache refuses to serve as root. Its User directive would make it
	// setuid, which clears the parent-death signal: it is started as
	// www-data instead, and its work directory is www-data's.
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("www-data")
		if err != nil {
			missing(t, "running as root and no user www-data to run apache2 as")
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(s.Work, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	mimeTypes := writeConf(t, s, "mime.types", "text/plain txt log\ntext/html html\n")
	index, options := "", "FollowSymLinks"
	if o.Listing {
		index, options = "DirectoryIndex disabled", "Indexes FollowSymLinks"
	}
	conf := writeConf(t, s, "httpd.conf", fmt.Sprintf(`ServerRoot %[1]s
Listen 127.0.0.1:%[2]d
PidFile %[1]s/httpd.pid
ErrorLog %[1]s/error.log
Mutex file:%[1]s
LoadModule mpm_event_module %[3]s/mod_mpm_event.so
LoadModule authz_core_module %[3]s/mod_authz_core.so
LoadModule dir_module %[3]s/mod_dir.so
LoadModule mime_module %[3]s/mod_mime.so
LoadModule autoindex_module %[3]s/mod_autoindex.so
LoadModule alias_module %[3]s/mod_alias.so
ServerName 127.0.0.1
TypesConfig %[4]s
DocumentRoot %[5]s
%[6]s
<Directory %[5]s>
	Options %[7]s
	Require all granted
</Directory>
%[8]s
`, s.Work, s.Port, apacheModules, mimeTypes, o.Dir, index, options, o.Config))
	// -X: one process, no children.
	cmd := exec.Command(bin, "-f", conf, "-X")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	return cmd
}

func lighttpd(t testing.TB, s *Server, o Options, bin string, _ tlsFiles) *exec.Cmd {
	listing := ""
	if o.Listing {
		listing = "server.modules += ( \"mod_dirlisting\" )\ndir-listing.activate = \"enable\"\nindex-file.names = ( )"
	}
	conf := writeConf(t, s, "lighttpd.conf", fmt.Sprintf(`server.document-root = %q
server.bind = "127.0.0.1"
server.port = %d
server.errorlog = %q
mimetype.assign = ( ".txt" => "text/plain", ".html" => "text/html" )
%s
%s
`, o.Dir, s.Port, filepath.Join(s.Work, "error.log"), listing, o.Config))
	return exec.Command(bin, "-D", "-f", conf)
}

func caddy(t testing.TB, s *Server, o Options, bin string, tls tlsFiles) *exec.Cmd {
	site, certs := "http", ""
	if o.TLS {
		site, certs = "https", fmt.Sprintf("tls %s %s", tls.cert, tls.key)
	}
	browse := ""
	if o.Listing {
		browse = " browse {\n\t\tindex no-such-index-file\n\t}"
	}
	// No admin endpoint (it would take localhost:2019 from anyone else's
	// Caddy), no automatic HTTPS, no HTTP/3 (a UDP port of its own), and
	// state under the work directory, not $HOME.
	conf := writeConf(t, s, "Caddyfile", fmt.Sprintf(`{
	admin off
	auto_https off
	storage file_system %[1]s/data
	servers {
		protocols h1 h2
	}
}
%[2]s://127.0.0.1:%[3]d {
	bind 127.0.0.1
	%[4]s
	root * %[5]s
	file_server%[6]s
%[7]s
}
`, s.Work, site, s.Port, certs, o.Dir, browse, o.Config))
	cmd := exec.Command(bin, "run", "--config", conf, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "HOME="+s.Work, "XDG_DATA_HOME="+s.Work, "XDG_CONFIG_HOME="+s.Work)
	return cmd
}

func h2o(t testing.TB, s *Server, o Options, bin string, tls tlsFiles) *exec.Cmd {
	ssl := ""
	if o.TLS {
		ssl = fmt.Sprintf("  ssl:\n    certificate-file: %s\n    key-file: %s\n", tls.cert, tls.key)
	}
	// Started as root, h2o wants to be told whom to run as.
	runAs := ""
	if os.Geteuid() == 0 {
		runAs = "user: root\n"
	}
	listing := ""
	if o.Listing {
		listing = "        file.dirlisting: ON\n        file.index: []\n"
	}
	conf := writeConf(t, s, "h2o.conf", fmt.Sprintf(`listen:
  host: 127.0.0.1
  port: %[1]d
%[2]s%[3]serror-log: %[4]s/error.log
pid-file: %[4]s/h2o.pid
%[5]s
hosts:
  default:
    paths:
      /:
        file.dir: %[6]s
%[7]s`, s.Port, ssl, runAs, s.Work, o.Config, o.Dir, listing))
	return exec.Command(bin, "-c", conf)
}

func python(_ testing.TB, s *Server, o Options, bin string, _ tlsFiles) *exec.Cmd {
	return exec.Command(bin, "-u", "-m", "http.server", "--bind", "127.0.0.1", "--directory", o.Dir, strconv.Itoa(s.Port))
}
