package s3test

import "syscall"

// dieWithParent has the server killed when the test binary dies.
func dieWithParent(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
