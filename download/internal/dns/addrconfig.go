package dns

import (
	"net"
	"net/netip"
)

// HasGlobalIPv6 reports whether an interface of the machine has an IPv6
// address other than loopback and link-local: where getaddrinfo's
// AI_ADDRCONFIG asks for AAAA records (glibc counts unique local addresses,
// fc00::/7, as this does). Without one, an IPv6 address could not be
// reached, and asking for it only doubles the queries. An error reading the
// interfaces counts as having one: then both are asked for, as Go's resolver
// does.
func HasGlobalIPv6() bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return true
	}
	return hasGlobalIPv6(addrs)
}

func hasGlobalIPv6(addrs []net.Addr) bool {
	for _, a := range addrs {
		var ip net.IP
		switch v := a.(type) {
		case *net.IPNet:
			ip = v.IP
		case *net.IPAddr:
			ip = v.IP
		default:
			continue
		}
		if ip.To4() != nil {
			continue // IPv4, in either of its forms
		}
		na, ok := netip.AddrFromSlice(ip)
		if !ok || !na.Is6() || na.IsLoopback() || na.IsLinkLocalUnicast() || na.IsUnspecified() || na.IsMulticast() {
			continue
		}
		return true
	}
	return false
}
