package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/cpuguy83/go-md2man/v2/md2man"
	"github.com/urfave/cli/v2"

	"github.com/haul/haul/download/input"
)

// The subcommands. haul's positional arguments are URLs, and a URL always has
// a scheme ("://"), so a first argument "completion" or "man" is never one.
func commands(stdout io.Writer) []*cli.Command {
	return []*cli.Command{
		{
			Name:      "completion",
			Usage:     "print the shell completion script for bash, zsh or fish",
			ArgsUsage: "bash|zsh|fish",
			Description: "bash: source <(haul completion bash), or save it as /etc/bash_completion.d/haul\n" +
				"zsh:  haul completion zsh > \"${fpath[1]}/_haul\" (or source <(haul completion zsh) after compinit)\n" +
				"fish: haul completion fish > ~/.config/fish/completions/haul.fish",
			Action: func(c *cli.Context) error {
				gen := map[string]func(*cli.App) string{"bash": bashCompletion, "zsh": zshCompletion, "fish": fishCompletion}[c.Args().First()]
				if c.NArg() != 1 || gen == nil {
					return cli.Exit(fmt.Sprintf("completion: want one of bash, zsh, fish (got %q)", c.Args().Slice()), exitUsage)
				}
				_, err := io.WriteString(stdout, gen(c.App))
				return err
			},
		},
		{
			Name:  "man",
			Usage: "print the man page (roff): haul man | man -l -",
			Action: func(c *cli.Context) error {
				if c.NArg() != 0 {
					return cli.Exit("man takes no arguments", exitUsage)
				}
				page, err := manPage(c.App)
				if err != nil {
					return err
				}
				_, err = io.WriteString(stdout, page)
				return err
			},
		},
	}
}

// flagValues are the words a flag's value may be, offered by completion.
var flagValues = map[string][]string{
	"layout":       layoutValues,
	"compress":     compressAlgs,
	"progress":     progressModes,
	"shard-by":     shardByValues,
	"shard":        {"auto"},
	"http-client":  httpClients,
	"input-format": input.FormatNames(),
}

// compFlag is one flag as the completion scripts see it.
type compFlag struct {
	long, short string // without dashes; short may be ""
	value       bool   // takes a value
	repeat      bool   // may be given more than once
	files, dirs bool   // its value is a file name, a directory
	words       []string
	usage       string // one line, no backquotes
}

// compFlags lists the app's visible flags, in their order, for the scripts.
func compFlags(app *cli.App) []compFlag {
	var out []compFlag
	for _, f := range app.VisibleFlags() {
		var cf compFlag
		for _, n := range f.Names() {
			switch {
			case len(n) == 1 && cf.short == "":
				cf.short = n
			case len(n) > 1 && cf.long == "":
				cf.long = n
			}
		}
		if cf.long == "" { // only a short name: treat it as the name
			cf.long, cf.short = cf.short, ""
		}
		if d, ok := f.(cli.DocGenerationFlag); ok {
			cf.value = d.TakesValue()
			cf.usage = strings.ReplaceAll(d.GetUsage(), "`", "")
		}
		switch f := f.(type) {
		case *cli.StringFlag:
			cf.files = f.TakesFile
		case *cli.StringSliceFlag:
			cf.repeat = true
		}
		cf.dirs = cf.long == "dir"
		cf.words = flagValues[cf.long]
		out = append(out, cf)
	}
	return out
}

func dash(n string) string {
	if len(n) == 1 {
		return "-" + n
	}
	return "--" + n
}

func (f compFlag) names() []string {
	if f.short == "" {
		return []string{dash(f.long)}
	}
	return []string{dash(f.short), dash(f.long)}
}

var shells = []string{"bash", "zsh", "fish"}

// bashCompletion is a static bash script: flags, their words, file and
// directory names where a flag takes one, and the subcommands. Nothing runs
// haul at Tab time, which could start a download of the URLs typed so far.
func bashCompletion(app *cli.App) string {
	var b strings.Builder
	fl := compFlags(app)
	var all []string
	cases := map[string][]string{}
	var order []string
	add := func(action string, f compFlag) {
		if _, ok := cases[action]; !ok {
			order = append(order, action)
		}
		cases[action] = append(cases[action], f.names()...)
	}
	for _, f := range fl {
		all = append(all, f.names()...)
		switch {
		case !f.value:
		case f.dirs:
			add(`COMPREPLY=($(compgen -d -- "$cur")); compopt -o filenames 2>/dev/null`, f)
		case f.files:
			add(`COMPREPLY=($(compgen -f -- "$cur")); compopt -o filenames 2>/dev/null`, f)
		case f.words != nil:
			add(fmt.Sprintf(`COMPREPLY=($(compgen -W %q -- "$cur"))`, strings.Join(f.words, " ")), f)
		default:
			add(`COMPREPLY=()`, f) // a number, a duration, a header: nothing to offer
		}
	}
	fmt.Fprintf(&b, `# bash completion for %[1]s, generated from its flags by '%[1]s completion bash'.
# Use: source <(%[1]s completion bash), or save it as /etc/bash_completion.d/%[1]s
_%[1]s() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    # --flag=value: bash splits at '=' (COMP_WORDBREAKS).
    if [[ $cur == = ]]; then
        cur=
    elif [[ $prev == = && $COMP_CWORD -ge 2 ]]; then
        prev=${COMP_WORDS[COMP_CWORD-2]}
    fi
    case $prev in
`, app.Name)
	for _, action := range order {
		fmt.Fprintf(&b, "        %s)\n            %s\n            return ;;\n", strings.Join(cases[action], "|"), action)
	}
	fmt.Fprintf(&b, `    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W %q -- "$cur"))
    elif [[ $COMP_CWORD -eq 1 ]]; then
        COMPREPLY=($(compgen -W "completion man" -- "$cur"))
    elif [[ $COMP_CWORD -eq 2 && ${COMP_WORDS[1]} == completion ]]; then
        COMPREPLY=($(compgen -W %q -- "$cur"))
    else
        COMPREPLY=() # a URL
    fi
}
complete -F _%s %s
`, strings.Join(all, " "), strings.Join(shells, " "), app.Name, app.Name)
	return b.String()
}

// zshQuote quotes s for a single-quoted zsh word inside _arguments' [...].
func zshQuote(s string) string {
	s = strings.NewReplacer("[", "(", "]", ")", ":", "\\:").Replace(s)
	return strings.ReplaceAll(s, "'", `'\''`)
}

// zshCompletion is an _arguments-based zsh function.
func zshCompletion(app *cli.App) string {
	var b strings.Builder
	fmt.Fprintf(&b, `#compdef %[1]s
# zsh completion for %[1]s, generated from its flags by '%[1]s completion zsh'.
# Use: save it as _%[1]s in a directory of $fpath, or source <(%[1]s completion zsh) after compinit.
_%[1]s() {
    if (( CURRENT == 3 )) && [[ ${words[2]} == completion ]]; then
        compadd -- %[2]s
        return
    fi
    local -a args
    args=(
`, app.Name, strings.Join(shells, " "))
	for _, f := range compFlags(app) {
		spec := "'"
		names := f.names()
		if f.repeat {
			spec += "*"
		} else if len(names) > 1 {
			spec += "(" + strings.Join(names, " ") + ")"
		}
		spec += "'"
		if f.value {
			for i, n := range names {
				if len(n) == 2 {
					names[i] = n + "+"
				} else {
					names[i] = n + "="
				}
			}
		}
		if len(names) > 1 {
			spec += "{" + strings.Join(names, ",") + "}"
		} else {
			spec += names[0]
		}
		spec += "'[" + zshQuote(f.usage) + "]"
		if f.value {
			action := " "
			switch {
			case f.dirs:
				action = "_files -/"
			case f.files:
				action = "_files"
			case f.words != nil:
				action = "(" + strings.Join(f.words, " ") + ")"
			}
			spec += ":" + strings.ToLower(f.long) + ":" + action
		}
		fmt.Fprintf(&b, "        %s'\n", spec)
	}
	fmt.Fprintf(&b, `    )
    _arguments -s -S $args '1:command or URL:(completion man)' '*:URL:_urls'
}
if [[ $funcstack[1] == _%[1]s ]]; then
    _%[1]s "$@" # autoloaded from $fpath
else
    compdef _%[1]s %[1]s # sourced
fi
`, app.Name)
	return b.String()
}

func fishQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, "'", `\'`).Replace(s) + "'"
}

// fishCompletion is a list of fish complete commands (as urfave/cli's
// ToFishCompletion, with the flags' words and directories too).
func fishCompletion(app *cli.App) string {
	var b strings.Builder
	n := app.Name
	fmt.Fprintf(&b, "# fish completion for %[1]s, generated from its flags by '%[1]s completion fish'.\n"+
		"# Use: %[1]s completion fish > ~/.config/fish/completions/%[1]s.fish\n"+
		"complete -c %[1]s -f\n", n)
	for _, c := range app.VisibleCommands() {
		fmt.Fprintf(&b, "complete -c %s -n __fish_use_subcommand -a %s -d %s\n", n, c.Name, fishQuote(c.Usage))
	}
	fmt.Fprintf(&b, "complete -c %s -n '__fish_seen_subcommand_from completion' -a %s\n", n, fishQuote(strings.Join(shells, " ")))
	for _, f := range compFlags(app) {
		line := "complete -c " + n
		if f.short != "" {
			line += " -s " + f.short
		}
		if len(f.long) > 1 {
			line += " -l " + f.long
		} else {
			line += " -s " + f.long
		}
		switch {
		case !f.value:
		case f.dirs:
			line += " -x -a '(__fish_complete_directories)'"
		case f.files:
			line += " -r -F"
		case f.words != nil:
			line += " -x -a " + fishQuote(strings.Join(f.words, " "))
		default:
			line += " -x"
		}
		fmt.Fprintf(&b, "%s -d %s\n", line, fishQuote(f.usage))
	}
	return b.String()
}

// manPage renders haul(1) from the flag definitions (urfave/cli's markdown)
// and the sections below, which the flags cannot say.
func manPage(app *cli.App) (string, error) {
	md, err := app.ToMarkdown()
	if err != nil {
		return "", err
	}
	md = "% " + app.Name + " 1\n\n" + md + manSections
	return string(md2man.Render([]byte(md))), nil
}

const manSections = `
# EXIT STATUS

**0** every entry ok or skipped; **1** some entries failed or were invalid; **2** usage error (bad flags, unreadable input file, **--shard auto** outside a job array or Indexed Job); **3** the run could not go on (output directory not writable, disk full); **130** interrupted (Ctrl-C, SIGTERM, SIGHUP) before the list was finished: run the same command again to resume.

# ENVIRONMENT

**SLURM_ARRAY_TASK_ID**, **SLURM_ARRAY_TASK_MIN**, **SLURM_ARRAY_TASK_COUNT** (and **SLURM_ARRAY_TASK_STEP**, **SLURM_ARRAY_TASK_MAX** where set)
: with **--shard auto** in a Slurm job array (sbatch --array=0-3): shard K = (ID - MIN) / STEP of N = COUNT.

**JOB_COMPLETION_INDEX**, **HAUL_SHARDS**
: with **--shard auto** in a Kubernetes Indexed Job: shard K = JOB_COMPLETION_INDEX of N = HAUL_SHARDS, which the Job must set to its completions.

**HTTP_PROXY**, **HTTPS_PROXY**, **NO_PROXY**
: proxies, as for every Go program.

**SSL_CERT_FILE**, **SSL_CERT_DIR**
: where to find the trusted CA certificates (see also **--cacert**).

# EXAMPLES

    cat urls.txt | haul -d mirror/
    haul -i urls.txt -d mirror/ -j 64 --manifest m.jsonl
    jq -c 'select(.status=="failed")' m.jsonl | haul -d mirror/
    haul --shard auto -i urls.txt -d /shared/out --manifest /shared/out/manifest-$SLURM_ARRAY_TASK_ID.jsonl
    source <(haul completion bash)

# SEE ALSO

curl(1), wget(1), aria2c(1), sbatch(1)
`
