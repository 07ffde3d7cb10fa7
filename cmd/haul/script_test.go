package main

// Script tests: the CLI cases that read best as a table of commands and their
// output (usage errors and their exit codes, --help, bad input lines, quiet
// mode, manifest lines), written as testscript files in testdata/script/*.txtar.
// TestMain (e2e_helpers_test.go) installs this test binary as the command
// "haul", which runs main(): the scripts run the real CLI, exit codes included.
//
// Besides testscript's own commands and conditions, a script has the condition
// [pty] (pseudo-terminals can be opened, for ttyin) and these commands:
//
//	exitcode N PROG [ARGS...]  run PROG as exec does; fail unless it exits with status N
//	expand FILE...             replace $VAR and ${VAR} in each file by the script's
//	                           environment (as cmpenv does), e.g. to put $URL in a list
//	serve DIR                  serve the files under DIR on 127.0.0.1 until the script ends;
//	                           sets $URL (http://127.0.0.1:PORT), $HOST (127.0.0.1:PORT) and
//	                           $HOSTDIR (127.0.0.1_PORT, the tree layout's directory), and
//	                           logs each request as "METHOD REQUEST-URI" in $WORK/access.log

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

func TestScript(t *testing.T) {
	t.Parallel()
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		RequireUniqueNames:  true,
		Condition: func(cond string) (bool, error) {
			if cond != "pty" {
				return false, fmt.Errorf("unknown condition %q", cond)
			}
			f, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
			if err == nil {
				f.Close()
			}
			return err == nil, nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exitcode": cmdExitcode,
			"expand":   cmdExpand,
			"serve":    cmdServe,
		},
	})
}

// cmdExitcode is "exitcode N PROG [ARGS...]": testscript's exec only tells
// success from failure, and haul's exit codes (1, 2, 3, 130) each mean
// something. Standard output and error are kept for stdout and stderr.
func cmdExitcode(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exitcode N program [args...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exitcode: %q is not a number", args[0])
	}
	got := 0
	var ee *exec.ExitError
	switch err := ts.Exec(args[1], args[2:]...); {
	case err == nil:
	case errors.As(err, &ee):
		got = ee.ExitCode() // -1 if a signal ended it
	default:
		ts.Fatalf("exitcode: %v", err)
	}
	if got != want {
		ts.Fatalf("%s exited with status %d, want %d", args[1], got, want)
	}
}

// cmdExpand is "expand FILE...": lists that name the script's server.
func cmdExpand(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) == 0 {
		ts.Fatalf("usage: expand FILE...")
	}
	for _, name := range args {
		text := os.Expand(ts.ReadFile(name), ts.Getenv)
		ts.Check(os.WriteFile(ts.MkAbs(name), []byte(text), 0o644))
	}
}

// cmdServe is "serve DIR": a plain file server, which is all the script cases
// need (200 for a file, 404 for anything else).
func cmdServe(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: serve DIR")
	}
	access, err := os.OpenFile(ts.MkAbs("access.log"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	ts.Check(err)
	var mu sync.Mutex
	files := http.FileServer(http.Dir(ts.MkAbs(args[0])))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		fmt.Fprintf(access, "%s %s\n", r.Method, r.RequestURI)
		mu.Unlock()
		files.ServeHTTP(w, r)
	}))
	ts.Defer(func() {
		srv.Close()
		access.Close()
	})
	host := strings.TrimPrefix(srv.URL, "http://")
	ts.Setenv("URL", srv.URL)
	ts.Setenv("HOST", host)
	ts.Setenv("HOSTDIR", strings.Replace(host, ":", "_", 1))
}
