package main

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// --version reports the module version and the VCS revision of a binary made
// by `go install ./cmd/haul` in a clone. The clone is this module's sources
// committed to a fresh repository (the test's own tree may be a git worktree,
// which go does not stamp, or hold uncommitted changes).
func TestE2EVersionFromClone(t *testing.T) {
	t.Parallel()
	gitPath, err := exec.LookPath("git")
	if err != nil {
		t.Skip("no git")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	clone, home := t.TempDir(), t.TempDir() // home: no user's git or go config, nothing written into clone
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			if rel != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") && rel != "go.mod" && rel != "go.sum" {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		dst := filepath.Join(clone, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(gitPath, append([]string{"-C", clone, "-c", "user.name=haul test", "-c", "user.email=test@invalid"}, args...)...)
		cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+home)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %q: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("init", "-q")
	git("add", "-A")
	git("commit", "-q", "-m", "clone")
	rev := git("rev-parse", "HEAD")

	// install builds ./cmd/haul in the clone with go install, as a user would,
	// and returns what --version prints. GOFLAGS: this machine's go env may
	// say -buildvcs=false; the environment variable wins over it.
	install := func(goflags string) string {
		t.Helper()
		bin := t.TempDir()
		cmd := exec.Command("go", "install", "./cmd/haul")
		cmd.Dir = clone
		cmd.Env = append(os.Environ(), "GOBIN="+bin, "GOFLAGS="+goflags, "HOME="+home, "GIT_CONFIG_NOSYSTEM=1",
			"GOCACHE="+goEnv(t, "GOCACHE"), "GOMODCACHE="+goEnv(t, "GOMODCACHE"), "GOPROXY=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go install ./cmd/haul: %v\n%s", err, out)
		}
		out, err := exec.Command(filepath.Join(bin, "haul"), "--version").Output()
		if err != nil {
			t.Fatalf("haul --version: %v", err)
		}
		return strings.TrimSpace(string(out))
	}
	got := install("-buildvcs=true")
	// go 1.24+ derives a pseudo-version from the commit: v0.0.0-TIME-REV12.
	want := regexp.MustCompile(`^haul v0\.0\.0-\d{14}-` + rev[:12] + ` \(revision ` + rev + `; go1\.\S+ \w+/\w+\)$`)
	if !want.MatchString(got) {
		t.Errorf("--version of a clean clone says %q, want %s", got, want)
	}
	if err := os.WriteFile(filepath.Join(clone, "cmd/haul/zz_local.go"), []byte("package main\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := install("-buildvcs=true"); !strings.Contains(got, "(revision "+rev+", modified;") || !strings.Contains(got, "+dirty") {
		t.Errorf("--version with a local change says %q, want the revision marked modified", got)
	}
	if got := install("-buildvcs=false"); !regexp.MustCompile(`^haul dev \(revision unknown; go`).MatchString(got) {
		t.Errorf("--version of a build without VCS data says %q, want dev and revision unknown", got)
	}
}

func goEnv(t *testing.T, name string) string {
	t.Helper()
	out, err := exec.Command("go", "env", name).Output()
	if err != nil {
		t.Fatalf("go env %s: %v", name, err)
	}
	return strings.TrimSpace(string(out))
}

// --version goes to stdout, alone, and exits 0.
func TestE2EVersionStdout(t *testing.T) {
	t.Parallel()
	r := runHaul(t, nil, "--version")
	wantCode(t, r, exitOK)
	if !regexp.MustCompile(`^haul \S+ \(revision \S+(, modified)?; go1\.\S+ \w+/\w+\)\n$`).MatchString(r.stdout) || r.stderr != "" {
		t.Errorf("--version: stdout %q, stderr %q", r.stdout, r.stderr)
	}
}
