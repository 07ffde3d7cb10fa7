// Command mkfiles measures the small-file floor of a filesystem: how many files a second it takes
// to create, write and close, with no network in the way. It writes -n files of -size bytes,
// spread over -dirs subdirectories of -d (which must not exist), from -j goroutines, and prints
// "files seconds files/s". scripts/bench/limits.sh runs it.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	dir := flag.String("d", "", "directory to create and fill")
	n := flag.Int("n", 10000, "files")
	size := flag.Int("size", 4096, "bytes a file")
	dirs := flag.Int("dirs", 100, "subdirectories")
	workers := flag.Int("j", 1, "goroutines creating files")
	flag.Parse()
	if *dir == "" || *n < 1 || *dirs < 1 || *workers < 1 {
		fmt.Fprintln(os.Stderr, "usage: mkfiles -d DIR [-n FILES] [-size BYTES] [-dirs N] [-j WORKERS]")
		os.Exit(2)
	}
	if err := run(*dir, *n, *size, *dirs, *workers); err != nil {
		fmt.Fprintln(os.Stderr, "mkfiles:", err)
		os.Exit(1)
	}
}

func run(dir string, n, size, dirs, workers int) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	body := make([]byte, size)
	for i := range body {
		body[i] = byte(i * 7)
	}
	start := time.Now()
	for d := range dirs {
		if err := os.Mkdir(filepath.Join(dir, fmt.Sprintf("d%03d", d)), 0o755); err != nil {
			return err
		}
	}
	var next atomic.Int64
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				name := filepath.Join(dir, fmt.Sprintf("d%03d", i%dirs), fmt.Sprintf("f%07d", i))
				if err := os.WriteFile(name, body, 0o644); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	took := time.Since(start).Seconds()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	fmt.Printf("%d %.3f %.0f\n", n, took, float64(n)/took)
	return nil
}
