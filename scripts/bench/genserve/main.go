// Command genserve serves deterministic, incompressible bytes, so that a
// benchmark can fetch big sources that take no disk: GET /SIZE/NAME (SIZE in
// bytes, or with a K, M or G suffix) is SIZE bytes of NAME's AES-CTR
// keystream, with Range, If-Range and a strong ETag (http.ServeContent).
//
//	genserve -listen 127.0.0.1:18090
package main

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"strconv"
	"strings"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18090", "address to serve on")
	flag.Parse()
	log.Fatal(http.ListenAndServe(*listen, http.HandlerFunc(serve)))
}

func serve(w http.ResponseWriter, r *http.Request) {
	sizeText, name, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	size, err := parseSize(sizeText)
	if !ok || name == "" || err != nil {
		http.Error(w, "want /SIZE/NAME", http.StatusNotFound)
		return
	}
	key := sha256.Sum256([]byte(name))
	block, err := aes.NewCipher(key[:16])
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("ETag", fmt.Sprintf(`"%x-%d"`, key[:8], size))
	http.ServeContent(w, r, "", time.Time{}, &keystream{block: block, size: size})
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, strings.TrimSuffix(s, "K")
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, strings.TrimSuffix(s, "M")
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, strings.TrimSuffix(s, "G")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, errors.New("bad size")
	}
	return n * mult, nil
}

// keystream is an io.ReadSeeker over the AES-CTR keystream of block, size
// bytes long.
type keystream struct {
	block     cipher.Block
	size, off int64
}

func (k *keystream) Read(p []byte) (int, error) {
	if k.off >= k.size {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), k.size-k.off)]
	var iv [16]byte
	binary.BigEndian.PutUint64(iv[8:], uint64(k.off/16))
	ctr := cipher.NewCTR(k.block, iv[:])
	var skip [16]byte
	ctr.XORKeyStream(skip[:k.off%16], skip[:k.off%16])
	clear(p)
	ctr.XORKeyStream(p, p)
	k.off += int64(len(p))
	return len(p), nil
}

func (k *keystream) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += k.off
	case io.SeekEnd:
		offset += k.size
	}
	if offset < 0 {
		return 0, errors.New("negative position")
	}
	k.off = offset
	return offset, nil
}
