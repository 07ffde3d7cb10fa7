//go:build !linux

package realserver

import "syscall"

// dieWithParent: only Linux can have a child killed with its parent;
// elsewhere a server outlives a test binary that is killed.
func dieWithParent(*syscall.SysProcAttr) {}

// listens cannot tell elsewhere which process listens on a port: a server
// is taken to be ready when the port answers.
func listens(pid, port int) bool { return true }
