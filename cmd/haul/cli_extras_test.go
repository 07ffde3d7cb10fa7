package main

// Tests of the subcommands (completion, man), the generated docs under docs/,
// and of completion in real shells: bash and zsh under tmux, fish through
// its `complete -C`.

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/haul/haul/download/downloadtest"
	"github.com/haul/haul/internal/parquettest"
)

// haulOutput runs haul with args and returns its stdout, failing unless it
// exits 0 with nothing on stderr.
func haulOutput(t *testing.T, args ...string) string {
	t.Helper()
	r := runHaul(t, nil, args...)
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("haul %q: %v", args, r)
	}
	return r.stdout
}

func TestE2ESubcommands(t *testing.T) {
	t.Parallel()
	for sh, want := range map[string][]string{
		"bash": {"--retries", "--shard-by"}, "zsh": {"--retries=", "--shard-by="}, "fish": {"-l retries", "-l shard-by"},
	} {
		if out := haulOutput(t, "completion", sh); !strings.Contains(out, want[0]) || !strings.Contains(out, want[1]) {
			t.Errorf("haul completion %s does not offer the flags:\n%s", sh, clip(out))
		}
	}
	if out := haulOutput(t, "man"); !strings.HasPrefix(out, ".nh\n.TH haul 1") {
		t.Errorf("haul man is not a roff page of section 1:\n%s", clip(out))
	}
	for _, args := range [][]string{{"completion"}, {"completion", "tcsh"}, {"completion", "bash", "zsh"}, {"man", "x"}} {
		if r := runHaul(t, nil, args...); r.code != exitUsage || r.stdout != "" {
			t.Errorf("haul %q: exit %d (want 2), stdout %q", args, r.code, r.stdout)
		}
	}
	// A URL is never a subcommand, and a subcommand's name after a URL is a
	// (bad) list entry, not a subcommand.
	s := downloadtest.New(t)
	u := s.Add("/completion", []byte("c"))
	dir := filepath.Join(t.TempDir(), "out")
	r := runHaul(t, nil, "-d", dir, u, "man")
	wantCode(t, r, exitFailed)
	if !strings.Contains(r.stderr, "argument 2") && !strings.Contains(r.stderr, "input line 2") {
		t.Errorf("a second argument 'man' was not reported as a bad entry:\n%s", r.stderr)
	}
	checkFiles(t, dir, map[string][]byte{hostDir(s) + "/completion": []byte("c")})
}

// The files under docs/ are what the binary generates (scripts/gen-docs.sh).
func TestE2EDocsUpToDate(t *testing.T) {
	t.Parallel()
	for name, args := range map[string][]string{
		"haul.1":                []string{"man"},
		"completions/haul.bash": {"completion", "bash"},
		"completions/_haul":     {"completion", "zsh"},
		"completions/haul.fish": {"completion", "fish"},
	} {
		committed, err := os.ReadFile(filepath.Join("../../docs", name))
		if err != nil {
			t.Errorf("docs/%s: %v (run scripts/gen-docs.sh)", name, err)
			continue
		}
		if got := haulOutput(t, args...); got != string(committed) {
			t.Errorf("docs/%s differs from haul %s: run scripts/gen-docs.sh", name, strings.Join(args, " "))
		}
	}
}

// The flag list in docs/reference.md is haul --help's (scripts/gen-docs.sh).
func TestE2EReferenceFlagsUpToDate(t *testing.T) {
	t.Parallel()
	ref, err := os.ReadFile("../../docs/reference.md")
	if err != nil {
		t.Fatal(err)
	}
	r := runHaul(t, nil, "--help")
	if r.code != 0 {
		t.Fatalf("haul --help: %v", r)
	}
	help := r.stdout + r.stderr // human output: stderr
	_, opts, ok := strings.Cut(help, "GLOBAL OPTIONS:\n")
	if !ok {
		t.Fatalf("no GLOBAL OPTIONS in haul --help:\n%s", clip(help))
	}
	_, flags, ok := strings.Cut(string(ref), "\n## Flags\n")
	if !ok {
		t.Fatal("docs/reference.md has no Flags section")
	}
	_, block, ok := strings.Cut(flags, "\n```\n")
	block, _, ok2 := strings.Cut(block, "```\n")
	if !ok || !ok2 {
		t.Fatal("docs/reference.md's Flags section has no code block")
	}
	if block != opts {
		t.Errorf("docs/reference.md's flag list differs from haul --help: run scripts/gen-docs.sh")
	}
}

// The man page renders without warnings and documents every flag.
func TestE2EManPageRenders(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("groff"); err != nil {
		t.Skip("no groff")
	}
	cmd := exec.Command("groff", "-man", "-Tutf8", "-ww", "-z")
	cmd.Stdin = strings.NewReader(haulOutput(t, "man"))
	if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("groff -man -ww: %v\n%s", err, out)
	}
	cmd = exec.Command("groff", "-man", "-Tascii", "-P-cbou")
	cmd.Stdin = strings.NewReader(haulOutput(t, "man"))
	page, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range flags() {
		if n := f.Names()[0]; !bytes.Contains(page, []byte("--"+n)) {
			t.Errorf("the man page does not document --%s", n)
		}
	}
	for _, w := range []string{"EXIT STATUS", "HAUL_SHARDS", "JOB_COMPLETION_INDEX", "SLURM_ARRAY_TASK_ID", "completion", "130"} {
		if !bytes.Contains(page, []byte(w)) {
			t.Errorf("the man page does not mention %s", w)
		}
	}
}

// bashComplete runs the completion function of `haul completion bash` for the
// words typed (the last one being completed) and returns its candidates.
func bashComplete(t *testing.T, script string, words ...string) []string {
	t.Helper()
	var quoted []string
	for _, w := range words {
		quoted = append(quoted, "'"+w+"'")
	}
	prog := fmt.Sprintf("%s\nCOMP_WORDS=(%s); COMP_CWORD=%d; _haul; printf '%%s\\n' \"${COMPREPLY[@]}\"",
		script, strings.Join(quoted, " "), len(words)-1)
	cmd := exec.Command("bash", "--norc", "--noprofile", "-c", prog)
	cmd.Dir = t.TempDir()
	for _, d := range []string{"sub1", "sub2"} {
		os.Mkdir(filepath.Join(cmd.Dir, d), 0o755)
	}
	os.WriteFile(filepath.Join(cmd.Dir, "list.txt"), nil, 0o644)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bash: %v", err)
	}
	got := strings.Fields(string(out))
	slices.Sort(got) // compgen -f and -d list in directory order
	return got
}

func TestBashCompletionFunction(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	script := haulOutput(t, "completion", "bash")
	for _, tc := range []struct {
		words []string
		want  string // the candidates, space-separated
	}{
		{[]string{"haul", "--retr"}, "--retries"},
		{[]string{"haul", "--sh"}, "--sha256 --shard --shard-by"},
		{[]string{"haul", "--progress", ""}, "auto bar plain json none"},
		{[]string{"haul", "--progress", "j"}, "json"},
		{[]string{"haul", "--progress", "=", "p"}, "plain"}, // --progress=p, as bash splits it
		{[]string{"haul", "--shard-by", ""}, "url host"},
		{[]string{"haul", "--shard", ""}, "auto"},
		{[]string{"haul", "--layout", "f"}, "flat"},
		{[]string{"haul", "-d", "sub"}, "sub1 sub2"},
		{[]string{"haul", "-i", "li"}, "list.txt"},
		{[]string{"haul", "-j", ""}, ""},
		{[]string{"haul", ""}, "completion man"},
		{[]string{"haul", "completion", ""}, "bash zsh fish"},
		{[]string{"haul", "http://h/x", ""}, ""},
	} {
		want := strings.Fields(tc.want)
		slices.Sort(want)
		if got := bashComplete(t, script, tc.words...); !slices.Equal(got, want) {
			t.Errorf("completing %q: %q, want %q", tc.words, got, tc.want)
		}
	}
}

// tmuxShell starts shell (argv) in a detached tmux session on a server of its
// own, with haul on PATH, and returns functions to type into it and to read
// the screen. The server is killed at cleanup.
func tmuxShell(t *testing.T, env []string, argv ...string) (send func(keys ...string), screen func() string) {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("no tmux")
	}
	if _, err := exec.LookPath(argv[0]); err != nil {
		t.Skipf("no %s", argv[0])
	}
	sock := filepath.Join(t.TempDir(), "tmux.sock") // a server of our own: -S
	tmux := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("tmux", append([]string{"-S", sock}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %q: %v\n%s", args, err, out)
		}
		return string(out)
	}
	args := []string{"-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", "160", "-y", "40", "env",
		"PATH=" + filepath.Dir(haulBin) + ":" + os.Getenv("PATH"), "TERM=xterm"}
	tmux(append(append(args, env...), argv...)...)
	t.Cleanup(func() { exec.Command("tmux", "-S", sock, "kill-server").Run() })
	send = func(keys ...string) { tmux(append([]string{"send-keys", "-t", "t"}, keys...)...) }
	screen = func() string { return tmux("capture-pane", "-p", "-t", "t") }
	return send, screen
}

// waitScreen waits until the screen matches re, failing with what it shows.
func waitScreen(t *testing.T, screen func() string, re string) string {
	t.Helper()
	var s string
	if !waitFor(t, func() bool { s = screen(); return regexp.MustCompile(re).MatchString(s) }) {
		t.Fatalf("the screen never matched %s:\n%s", re, s)
	}
	return s
}

// bash, interactive, under tmux: source the completion, type `haul --retr` and
// Tab Tab; the line shows --retries. Then a flag's words: --progress j<Tab>.
func TestE2ECompletionBashTmux(t *testing.T) {
	t.Parallel()
	send, screen := tmuxShell(t, nil, "bash", "--norc", "--noprofile")
	send("PS1='$ '; source <(haul completion bash); echo sourced", "Enter")
	waitScreen(t, screen, `(?m)^sourced\n\$ ?$`) // the prompt: readline reads the keys from here on
	send("haul --retr", "Tab", "Tab")
	// (capture-pane drops the space completion adds)
	waitScreen(t, screen, `(?m)^\$ haul --retries *$`)
	send("C-u", "haul --progress j", "Tab")
	waitScreen(t, screen, `(?m)^\$ haul --progress json *$`)
	send("C-u", "haul --shard", "Tab", "Tab") // two: listed under the line
	waitScreen(t, screen, `(?m)^--shard\s+--shard-by\s*$`)
}

// zsh, interactive, under tmux, with compinit: the same.
func TestE2ECompletionZshTmux(t *testing.T) {
	t.Parallel()
	home := t.TempDir() // ZDOTDIR: no rc files, no new-user menu
	send, screen := tmuxShell(t, []string{"ZDOTDIR=" + home, "HOME=" + home}, "zsh", "-f")
	send("PS1='%% '; autoload -Uz compinit && compinit -u -d "+home+"/.zcompdump; source <(haul completion zsh); echo sourced", "Enter")
	waitScreen(t, screen, `(?m)^sourced\n% ?$`)
	send("haul --retr", "Tab")
	waitScreen(t, screen, `(?m)^% haul --retries=?$`) // zsh offers --flag= for a flag that takes a value
	send("C-u", "haul --shard-by h", "Tab")
	waitScreen(t, screen, `(?m)^% haul --shard-by host ?$`)
	send("C-u", "haul completion f", "Tab")
	waitScreen(t, screen, `(?m)^% haul completion fish ?$`)
}

// fish answers `complete -C LINE` with the candidates, one per line.
func TestE2ECompletionFish(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("fish"); err != nil {
		t.Skip("no fish")
	}
	script := filepath.Join(t.TempDir(), "haul.fish")
	if err := os.WriteFile(script, []byte(haulOutput(t, "completion", "fish")), 0o644); err != nil {
		t.Fatal(err)
	}
	for line, want := range map[string]string{
		"haul --retr":        "--retries",
		"haul --progress ":   "auto bar json none plain",
		"haul --shard-by ":   "host url",
		"haul ":              "completion man",
		"haul completion ":   "bash fish zsh",
		"haul -j 4 --layout": "--layout",
	} {
		cmd := exec.Command("fish", "--no-config", "-c", fmt.Sprintf("source %s; complete -C %q", script, line))
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "XDG_CONFIG_HOME="+t.TempDir(), "XDG_DATA_HOME="+t.TempDir())
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("fish: %v", err)
		}
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			c, _, _ := strings.Cut(l, "\t") // candidate TAB description
			got = append(got, c)
		}
		sorted := strings.Fields(strings.Join(got, " "))
		slices.Sort(sorted)
		if strings.Join(sorted, " ") != want {
			t.Errorf("fish completes %q with %q, want %q", line, sorted, want)
		}
	}
}

// Every word completion offers for a flag is one the flag takes: a run over an
// empty list with it exits 0.
func TestCompletionWordsParse(t *testing.T) {
	t.Parallel()
	env := cleanEnv(envK8sIndex+"=0", envShards+"=1") // for --shard auto
	for name, words := range flagValues {
		for _, w := range words {
			args := []string{"--" + name, w, "-d", t.TempDir(), "-i", writeList(t)}
			if name == "input-format" {
				args[len(args)-1] = emptyList(t, w)
			}
			if name == "shard-by" {
				args = append(args, "--shard", "0/2")
			}
			if r := runHaulInEnv(t, env, args...); r.code != exitOK {
				t.Errorf("completion offers --%s %s, which haul rejects: %v", name, w, r)
			}
		}
	}
}

// emptyList writes a list of no entries in format: a header alone for a
// table.
func emptyList(t *testing.T, format string) string {
	t.Helper()
	switch format {
	case "parquet":
		type row struct {
			URL string `parquet:"url"`
		}
		return parquettest.Write(t, "empty.parquet", []row{}, 1)
	case "csv", "tsv":
		return writeList(t, "url")
	}
	return writeList(t)
}
