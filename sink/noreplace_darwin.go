package sink

import "golang.org/x/sys/unix"

// renameExcl renames from to to in dfd unless to exists (APFS and HFS+; other
// filesystems fail with ENOTSUP, and renameNoReplace links instead).
func renameExcl(dfd int, from, to string) error {
	return unix.RenameatxNp(dfd, from, dfd, to, unix.RENAME_EXCL)
}
