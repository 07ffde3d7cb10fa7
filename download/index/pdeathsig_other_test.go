//go:build !linux

package index

import "syscall"

// dieWithParent: only Linux can have a child killed with its parent; elsewhere
// the servers are stopped by TestMain alone.
func dieWithParent(*syscall.SysProcAttr) {}
