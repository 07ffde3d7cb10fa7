package main

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// flagsFirst moves the flags in args (args[0] is the program) ahead of the
// positional arguments, keeping the order within each group, so that
// `haul URL -d out` works as it does with wget and curl: urfave/cli v2, like
// Go's flag package, stops at the first positional argument. A flag that takes
// a value keeps the argument after it (unless written --name=value); "--" ends
// the flags, and everything after it stays positional. Unknown flags move too,
// so that the parser reports them.
func flagsFirst(args []string, flags []cli.Flag) []string {
	if len(args) < 2 {
		return args
	}
	boolean := map[string]bool{"help": true, "h": true, "version": true, "v": true}
	for _, f := range flags {
		_, isBool := f.(*cli.BoolFlag)
		for _, n := range f.Names() {
			boolean[n] = isBool
		}
	}
	out := append(make([]string, 0, len(args)), args[0])
	var pos []string
	for i := 1; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' { // "-" alone is an argument
			pos = append(pos, a)
			continue
		}
		out = append(out, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		if isBool, known := boolean[name]; known && !isBool && i+1 < len(args) {
			i++
			out = append(out, args[i])
		}
	}
	return append(out, pos...)
}
