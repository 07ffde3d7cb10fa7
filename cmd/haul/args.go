package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
)

// flagsFirst moves the flags in args (args[0] is the program) ahead of the
// positional arguments, keeping the order within each group, so that
// `haul URL -d out` works as it does with wget and curl: urfave/cli v2, like
// Go's flag package, stops at the first positional argument. A flag that takes
// a value keeps the argument after it (unless written --name=value); one with
// no argument after it is an error, never given a URL as its value. "--" ends
// the flags, and everything after it is positional; the result puts "--"
// before the positional arguments, so none is ever taken for a flag. Unknown
// flags move too, so that the parser reports them.
func flagsFirst(args []string, flags []cli.Flag) ([]string, error) {
	if len(args) < 2 {
		return args, nil
	}
	boolean := map[string]bool{"help": true, "h": true, "version": true, "v": true}
	for _, f := range flags {
		_, isBool := f.(*cli.BoolFlag)
		for _, n := range f.Names() {
			boolean[n] = isBool
		}
	}
	out := append(make([]string, 0, len(args)+1), args[0])
	var pos []string
	help := false
	for i := 1; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' { // "-" alone is an argument
			pos = append(pos, a)
			continue
		}
		out = append(out, a)
		name := strings.TrimLeft(a, "-")
		help = help || name == "help" || name == "h"
		if strings.Contains(name, "=") {
			continue
		}
		if isBool, known := boolean[name]; known && !isBool {
			if i+1 == len(args) {
				return nil, fmt.Errorf("flag needs an argument: %s", a)
			}
			i++
			out = append(out, args[i])
		}
	}
	if len(pos) > 0 && !help { // with --help, urfave/cli would take a URL for a help topic
		out = append(append(out, "--"), pos...)
	}
	return out, nil
}
