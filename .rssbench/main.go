// Throwaway: peak RSS of haul streaming N files of SIZE into versitygw.
package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

type gen struct {
	r    *rand.ChaCha8
	left int64
}

func (g *gen) Read(p []byte) (int, error) {
	if g.left == 0 {
		return 0, fmt.Errorf("EOF")
	}
	n := min(int64(len(p)), g.left)
	g.r.Read(p[:n])
	g.left -= n
	return int(n), nil
}

func main() {
	haul, vgw, n, size := os.Args[1], os.Args[2], atoi(os.Args[3]), int64(atoi(os.Args[4]))<<20
	dir, _ := os.MkdirTemp("", "rss-vgw-")
	defer os.RemoveAll(dir)
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	v := exec.Command(vgw, "--quiet", "--access", "k", "--secret", "secretsecret", "--port", "127.0.0.1:"+strconv.Itoa(port), "posix", dir)
	v.Start()
	defer v.Process.Kill()
	c, _ := minio.NewCore("127.0.0.1:"+strconv.Itoa(port), &minio.Options{Creds: credentials.NewStaticV4("k", "secretsecret", ""), Region: "us-east-1"})
	for {
		if err := c.MakeBucket(context.Background(), "bench", minio.MakeBucketOptions{}); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	src, _ := net.Listen("tcp", "127.0.0.1:0")
	go http.Serve(src, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		w.Header().Set("ETag", `"x"`)
		var seed [32]byte
		copy(seed[:], r.URL.Path)
		g := &gen{r: rand.NewChaCha8(seed), left: size}
		buf := make([]byte, 256<<10)
		for {
			k, err := g.Read(buf)
			if k > 0 {
				if _, err := w.Write(buf[:k]); err != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}))
	var args []string
	for i := range n {
		args = append(args, fmt.Sprintf("http://%s/f/%d", src.Addr(), i))
	}
	cmd := exec.Command(haul, append([]string{"-q", "-j", "4", "--manifest", "/tmp/rss-man.jsonl", "-d", "s3://bench/x"}, args...)...)
	cmd.Env = append(os.Environ(), "AWS_ENDPOINT_URL=http://127.0.0.1:"+strconv.Itoa(port), "AWS_ACCESS_KEY_ID=k", "AWS_SECRET_ACCESS_KEY=secretsecret", "AWS_REGION=us-east-1")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	t0 := time.Now()
	err := cmd.Run()
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	fmt.Printf("haul exit %v; %d files of %d MiB; peak RSS %d MiB; %s\n", err, n, size>>20, ru.Maxrss>>10, time.Since(t0).Round(time.Second))
	for o := range c.Client.ListObjects(context.Background(), "bench", minio.ListObjectsOptions{Recursive: true}) {
		fmt.Println("listed", o.Key, o.Size, o.Err)
	}
	for i := range n {
		oi, err := c.StatObject(context.Background(), "bench", fmt.Sprintf("x/%s/f/%d", strings.Replace(fmt.Sprint(src.Addr()), ":", "_", 1), i), minio.StatObjectOptions{})
		fmt.Println(oi.Key, oi.Size, err)
	}
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }
