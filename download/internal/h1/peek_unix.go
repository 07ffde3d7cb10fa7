//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd || solaris

package h1

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// setRaw keeps what quiet needs, made once per connection rather than per
// request: the socket under nc, and the function that peeks at it.
func (cn *conn) setRaw(nc net.Conn) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	cn.raw = rc
	cn.peek = func(fd uintptr) bool {
		var b [1]byte
		_, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		cn.peekQuiet = err == unix.EAGAIN || err == unix.EINTR // else bytes, end of stream or an error
		return true
	}
}
