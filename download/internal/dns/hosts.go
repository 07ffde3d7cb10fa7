package dns

import (
	"bufio"
	"errors"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"slices"
	"strings"
)

// Hosts is a hosts file (hosts(5), /etc/hosts): the addresses it gives each
// name. A nil *Hosts holds no name.
type Hosts struct {
	names map[string][]netip.Addr // by hostKey, in the file's order
}

// maxHostsLine is the longest line ParseHosts reads; a longer one ends the
// table there, with an error.
const maxHostsLine = 1 << 20

// ParseHosts reads a hosts file: on each line an IP address and the names
// it has, separated by blanks; "#" starts a comment. A line whose first field
// is not an IP address, or that names nothing, is skipped, as the C library
// does. Names are matched in any case, with or without a trailing dot. The
// table is what was read even when the error (from r, or a line over 1 MiB)
// is not nil.
func ParseHosts(r io.Reader) (*Hosts, error) {
	h := &Hosts{names: map[string][]netip.Addr{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxHostsLine)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		a, err := netip.ParseAddr(fields[0])
		if err != nil {
			continue
		}
		a = a.Unmap()
		for _, name := range fields[1:] {
			k := hostKey(name)
			if k == "" || slices.Contains(h.names[k], a) {
				continue
			}
			h.names[k] = append(h.names[k], a)
		}
	}
	return h, sc.Err()
}

// ReadHostsFile parses the hosts file at path; one that does not exist is an
// empty table.
func ReadHostsFile(path string) (*Hosts, error) {
	h, err := parseFile(path, ParseHosts)
	if errors.Is(err, fs.ErrNotExist) {
		return &Hosts{}, nil
	}
	if h == nil {
		h = &Hosts{}
	}
	return h, err
}

// parseFile is parse of the file at path.
func parseFile[T any](path string, parse func(io.Reader) (T, error)) (T, error) {
	f, err := os.Open(path)
	if err != nil {
		var zero T
		return zero, err
	}
	defer f.Close()
	return parse(f)
}

// Lookup returns the addresses the table gives host: for network "ip4" its
// IPv4 ones, or all of them where it has none (a name of the table is never
// asked of a server); nil if the table does not hold host.
func (h *Hosts) Lookup(host, network string) []netip.Addr {
	if h == nil || len(h.names) == 0 {
		return nil
	}
	all := h.names[hostKey(host)]
	if network != "ip4" {
		return slices.Clone(all)
	}
	var v4 []netip.Addr
	for _, a := range all {
		if a.Is4() {
			v4 = append(v4, a)
		}
	}
	if len(v4) == 0 {
		return slices.Clone(all)
	}
	return v4
}

// Len is how many names the table holds.
func (h *Hosts) Len() int {
	if h == nil {
		return 0
	}
	return len(h.names)
}

// hostKey is name as the table keeps it: ASCII lower case, without
// trailing dots.
func hostKey(name string) string {
	name = strings.TrimRight(name, ".")
	for i := 0; i < len(name); i++ {
		if 'A' <= name[i] && name[i] <= 'Z' {
			b := []byte(name)
			for j := i; j < len(b); j++ {
				b[j] = lower(b[j])
			}
			return string(b)
		}
	}
	return name
}
