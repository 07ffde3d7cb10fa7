package sink_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/haul/haul/sink"
)

// A file appears under its name only once it is complete and durable: written
// to a staging file, then committed.
func ExampleFile() {
	dir, _ := os.MkdirTemp("", "sink-example-")
	defer os.RemoveAll(dir)
	s, err := sink.NewFile(dir, sink.FileOptions{})
	if err != nil {
		panic(err)
	}
	defer s.Close()

	w, err := s.Create("data/hello.txt", "https://example.com/hello.txt")
	if err != nil {
		panic(err)
	}
	fmt.Fprintln(w, "hello")
	if _, err := os.Stat(filepath.Join(dir, "data/hello.txt")); os.IsNotExist(err) {
		fmt.Println("not there before the commit")
	}
	done := make(chan error, 1)
	w.Commit(func(err error) { done <- err })
	if err := <-done; err != nil {
		panic(err)
	}
	info, _ := s.Stat("data/hello.txt")
	fmt.Println(info.Size, info.Origin)
	// Output:
	// not there before the commit
	// 6 https://example.com/hello.txt
}

// Compressed wraps a File: the bytes are stored as NAME.zst, and read back
// decompressed.
func ExampleNewCompressed() {
	dir, _ := os.MkdirTemp("", "sink-example-")
	defer os.RemoveAll(dir)
	f, err := sink.NewFile(dir, sink.FileOptions{NoSync: true})
	if err != nil {
		panic(err)
	}
	defer f.Close()
	s, err := sink.NewCompressed(f, sink.Zstd, 0)
	if err != nil {
		panic(err)
	}
	w, _ := s.Create("log.txt", "https://example.com/log.txt")
	fmt.Fprintln(w, "line one")
	done := make(chan error, 1)
	w.Commit(func(err error) { done <- err })
	<-done
	_, err = os.Stat(filepath.Join(dir, "log.txt.zst"))
	fmt.Println(err == nil)
	// Output:
	// true
}
