// Command demoserver serves a directory over HTTP on the loopback interface, for
// scripts/demo.sh and for trying haul by hand without the network.
//
//	go run ./scripts/demoserver -dir /tmp/www -gen 200
//
// It prints its base URL (http://127.0.0.1:PORT) on stdout once it is listening, then
// serves until killed. http.FileServer gives Range, If-Range and Last-Modified for free,
// so resume can be tried too. With -gen N it first writes N deterministic files into
// -dir: sizes from 0 to 1 MiB (mostly small, every tenth large), a quarter of them in
// subdirectories, plain ASCII names (f000.bin ... docs/f002.bin ... img/2024/f003.bin).
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
)

func main() {
	dir := flag.String("dir", ".", "directory to serve")
	addr := flag.String("addr", "127.0.0.1:0", "listen address (port 0: pick a free one)")
	gen := flag.Int("gen", 0, "first write `N` deterministic files into -dir")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("demoserver: ")

	if *gen > 0 {
		if err := generate(*dir, *gen); err != nil {
			log.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	// Printed only after Listen succeeded: a reader of this line can connect at once.
	fmt.Printf("http://%s\n", ln.Addr())
	log.Fatal(http.Serve(ln, http.FileServer(http.Dir(*dir))))
}

// generate writes n files into dir. File i is the same on every run and machine:
// its bytes are a ChaCha8 stream seeded with i, its size a function of i.
func generate(dir string, n int) error {
	subdirs := []string{"", "", "docs", "img/2024"}
	for i := range n {
		size := fileSize(i)
		name := filepath.Join(dir, subdirs[i%len(subdirs)], fmt.Sprintf("f%03d.bin", i))
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			return err
		}
		var seed [32]byte
		binary.LittleEndian.PutUint64(seed[:], uint64(i))
		buf := make([]byte, size)
		_, _ = rand.NewChaCha8(seed).Read(buf) // never fails
		if err := os.WriteFile(name, buf, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// fileSize is 0 for file 0, up to 1 MiB for every tenth file, else up to 64 KiB.
func fileSize(i int) int {
	if i == 0 {
		return 0
	}
	h := uint64(i) * 0x9E3779B97F4A7C15 // Fibonacci hashing: spreads sizes evenly
	if i%10 == 0 {
		return int(h>>44)%(1<<20) + 1
	}
	return int(h>>48)%(64<<10) + 1
}
