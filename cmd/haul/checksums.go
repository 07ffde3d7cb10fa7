package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/haul/haul/download"
	"github.com/haul/haul/download/checksums"
	"github.com/haul/haul/download/input"
)

// maxChecksumsBody bounds a --checksums URL's body: it is held in memory.
const maxChecksumsBody = 256 << 20

// loadChecksums reads --checksums from a file or, for an http(s) URL, with the
// run's client (one GET, its own redirects; a failure is the run's usage
// error). Bad lines are reported with warn and skipped.
func loadChecksums(ctx context.Context, arg string, client download.HTTPClient, hdr http.Header, warn func(string, ...any)) (*checksums.Set, error) {
	var r io.Reader
	if strings.HasPrefix(arg, "http://") || strings.HasPrefix(arg, "https://") {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, arg, nil)
		if err != nil {
			return nil, fmt.Errorf("--checksums %s: %w", arg, err)
		}
		if hdr != nil {
			req.Header = hdr.Clone()
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("--checksums: %w", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("--checksums %s: server returned %s", arg, resp.Status)
		}
		r = io.LimitReader(resp.Body, maxChecksumsBody)
	} else {
		f, err := os.Open(arg)
		if err != nil {
			return nil, fmt.Errorf("--checksums: %w", err)
		}
		defer f.Close()
		r = f
	}
	set, bad, err := checksums.Parse(r)
	for _, b := range bad {
		warn("--checksums %s: %v", arg, b)
	}
	if err != nil {
		return nil, fmt.Errorf("--checksums %s: %w", arg, err)
	}
	return set, nil
}

// twice makes the list readable twice, for the pass over its names that
// --checksums needs before the run (see download.Engine.Names): a file is read
// again from its start; standard input and pipes are spooled to an unlinked
// temporary file first. It returns the source for the first pass, and a
// function that returns the source for the run.
func twice(ctx context.Context, o *options, stdin io.Reader) (first download.Source, again func() (download.Source, error), closeAll func(), err error) {
	var f *os.File
	if len(o.urls) > 0 {
		list := strings.Join(o.urls, "\n")
		return input.NewScanner(strings.NewReader(list)),
			func() (download.Source, error) { return input.NewScanner(strings.NewReader(list)), nil }, func() {}, nil
	}
	in := stdin
	if o.input != "" && o.input != "-" {
		_, closeInput, err := openInput(o, stdin) // its checks: a directory, the manifest
		if err != nil {
			return nil, nil, nil, err
		}
		closeInput()
		lf, err := os.Open(o.input)
		if err != nil {
			return nil, nil, nil, err
		}
		if fi, err := lf.Stat(); err == nil && fi.Mode().IsRegular() {
			f = lf
		} else {
			defer lf.Close()
			in = lf // a FIFO: spooled as stdin is
		}
	} else if sf, ok := stdin.(*os.File); ok && isTerminal(sf) && o.input == "" {
		_, _, err := openInput(o, stdin) // the usage error for a terminal
		return nil, nil, nil, err
	}
	if f == nil {
		if f, err = os.CreateTemp("", "haul-list-"); err != nil {
			return nil, nil, nil, fmt.Errorf("spooling the list for --checksums: %w", err)
		}
		os.Remove(f.Name()) // unlinked: gone with the process
		if err := copyCtx(ctx, f, in); err != nil {
			f.Close()
			return nil, nil, nil, fmt.Errorf("spooling the list for --checksums: %w", err)
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			f.Close()
			return nil, nil, nil, err
		}
	}
	listName := o.input
	if listName == "-" {
		listName = ""
	}
	var closeLists []func()
	closeAll = func() {
		for _, c := range closeLists {
			c()
		}
		f.Close()
	}
	again = func() (download.Source, error) {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return nil, fmt.Errorf("reading the list again: %w", err)
		}
		src, closeList, err := openList(o, f, listName, false)
		if err != nil {
			return nil, err
		}
		closeLists = append(closeLists, closeList)
		return src, nil
	}
	first, closeList, err := openList(o, f, listName, false)
	if err != nil {
		f.Close()
		return nil, nil, nil, err
	}
	closeLists = append(closeLists, closeList)
	return first, again, closeAll, nil
}

// copyCtx copies r to w until EOF or ctx ends (Ctrl-C while a pipe is read:
// the read itself cannot be interrupted, so it goes on a goroutine of its own,
// which ends with the process).
func copyCtx(ctx context.Context, w io.Writer, r io.Reader) error {
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(w, r)
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
