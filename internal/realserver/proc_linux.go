package realserver

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// dieWithParent has the server killed when the test binary dies.
func dieWithParent(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }

// listens reports whether process pid holds a socket listening on port of
// 127.0.0.1 (or of every address, IPv4 or IPv6): a listening socket of
// /proc/net/tcp or tcp6 that is one of the process's descriptors.
func listens(pid, port int) bool {
	p := fmt.Sprintf(":%04X", port)
	addrs := map[string]bool{"0100007F" + p: true, "00000000" + p: true,
		"00000000000000000000000000000000" + p: true, "0000000000000000FFFF00000100007F" + p: true}
	inodes := map[string]bool{}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(table)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
			fields := strings.Fields(sc.Text())
			if len(fields) >= 10 && addrs[fields[1]] && fields[3] == "0A" {
				inodes["socket:["+fields[9]+"]"] = true
			}
		}
		f.Close()
	}
	if len(inodes) == 0 {
		return false
	}
	fdDir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
	fds, err := os.ReadDir(fdDir)
	if err != nil {
		return false
	}
	for _, fd := range fds {
		if l, err := os.Readlink(filepath.Join(fdDir, fd.Name())); err == nil && inodes[l] {
			return true
		}
	}
	return false
}
