//go:build unix

package testutil

import (
	"fmt"
	"syscall"
	"testing"
)

// RefusedAddr returns "127.0.0.1:PORT" of a TCP port that refuses connections
// until the test ends: a socket is bound to it but does not listen, so no
// other test can take the port meanwhile (a port closed after use may be
// handed to the next listener on port 0).
func RefusedAddr(t testing.TB) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
}
