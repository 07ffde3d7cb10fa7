//go:build !linux

package s3test

import "syscall"

// dieWithParent: elsewhere the server is stopped by the test's cleanup only.
func dieWithParent(*syscall.SysProcAttr) {}
