//go:build unix && !linux && !darwin

package sink

import "golang.org/x/sys/unix"

// renameExcl: no such rename here; renameNoReplace links instead.
func renameExcl(int, string, string) error { return unix.ENOSYS }
