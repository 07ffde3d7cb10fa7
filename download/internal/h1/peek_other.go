//go:build !(darwin || dragonfly || freebsd || linux || netbsd || openbsd || solaris)

package h1

import "net"

// setRaw does nothing where x/sys/unix has no MSG_DONTWAIT peek (aix, zos)
// or no unix at all (windows, plan9, wasm): quiet then sees only what a
// tls.Conn buffers, and a connection the server closed while idle fails at
// its first read, which roundTrip retries on a new connection.
func (cn *conn) setRaw(nc net.Conn) {}
