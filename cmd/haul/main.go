// Command haul streams lists of URLs to disk: fast, in bounded memory, resumable.
// See README.md for usage; this file only maps the outcome to an exit code.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"
)

// Exit codes, as docs/reference.md lists them.
const (
	exitOK          = 0
	exitFailed      = 1   // some entries failed or were invalid
	exitUsage       = 2   // bad flags, unreadable input file
	exitFatal       = 3   // the run could not go on (output not writable, disk full)
	exitInterrupted = 130 // Ctrl-C / SIGTERM / SIGHUP before the list was finished
)

func main() {
	// SIGHUP (the terminal or ssh session went away) stops cleanly too. SIGPIPE
	// is ignored: a manifest on stdout whose reader left (| head) fails its
	// write, which stops the run cleanly, instead of killing haul mid-commit.
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		// After the first signal, restore the default action so a second one
		// kills the process at once (nothing at a final name can be corrupt).
		<-ctx.Done()
		stop()
	}()
	stopProfile := startProfile()
	app := newApp(os.Stdin, os.Stdout, os.Stderr)
	args, err := flagsFirst(os.Args, app.Flags)
	if err == nil {
		err = app.RunContext(ctx, args)
	}
	stopProfile()
	os.Exit(exitCode(err))
}

func exitCode(err error) int {
	var ec cli.ExitCoder
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ec):
		if msg := err.Error(); msg != "" {
			fmt.Fprintln(os.Stderr, "haul:", msg)
		}
		return ec.ExitCode()
	default: // flag parsing errors from urfave/cli
		fmt.Fprintln(os.Stderr, "haul:", err)
		return exitUsage
	}
}
