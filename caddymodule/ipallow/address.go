package ipallow

import (
	"net/netip"
	"strings"

	"github.com/mxgate/mxgate/cidr"
)

// clientAddr returns the address mx_ip_allow decides on, from the TCP
// peer (remoteAddr, as net/http writes it: host:port) and the values of
// the client-address header (every line, in order).
//
// Without trusted proxies, or when the peer is not one of them, the
// client is the peer and the header is not read: anyone may write it.
// When the peer is a trusted proxy, the header's entries are read from
// the right (the last line's last entry first), each proxy's addition
// before the one it received, and the client is the first entry that is
// not itself a trusted proxy; entries to its left are the client's own
// writing and are never looked at. If every entry is a trusted proxy,
// the left-most one is the client.
//
// ok is false, and the request must be refused, when the peer does not
// parse or an entry that had to be read does not parse strictly (see
// parseEntry): an address that cannot be read is never guessed at.
func clientAddr(remoteAddr string, header []string, trusted *cidr.List) (addr netip.Addr, ok bool) {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return netip.Addr{}, false
	}
	// The peer's zone is the kernel's, not the client's: drop it.
	peer := ap.Addr().WithZone("").Unmap()
	if trusted == nil || !trusted.Contains(peer) {
		return peer, true
	}
	client := peer
	for i := len(header) - 1; i >= 0; i-- {
		line := header[i]
		end := len(line)
		for {
			start := strings.LastIndexByte(line[:end], ',') + 1
			a, ok := parseEntry(line[start:end])
			if !ok {
				return netip.Addr{}, false
			}
			if !trusted.Contains(a) {
				return a, true
			}
			client = a
			if start == 0 {
				break
			}
			end = start - 1
		}
	}
	return client, true
}

// parseEntry parses one entry of an X-Forwarded-For list, surrounded by
// optional spaces or tabs: an IPv4 address, optionally with a port
// (192.0.2.1:443), an IPv6 address (2001:db8::1), optionally in brackets
// with or without a port ([2001:db8::1]:443). An IPv4-mapped IPv6
// address (::ffff:192.0.2.1) is returned as IPv4. Anything else is
// refused: an empty entry, a zone (%eth0, which names an interface of the
// sender's host, not an address), a hostname, "unknown", an IPv4 address
// with leading zeros, a port outside 1-65535, quotes, brackets around an
// IPv4 address.
func parseEntry(s string) (netip.Addr, bool) {
	s = strings.Trim(s, " \t")
	if s == "" {
		return netip.Addr{}, false
	}
	if s[0] == '[' {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return netip.Addr{}, false
		}
		if rest := s[end+1:]; rest != "" && (rest[0] != ':' || !validPort(rest[1:])) {
			return netip.Addr{}, false
		}
		a, err := netip.ParseAddr(s[1:end])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return netip.Addr{}, false
		}
		return a.Unmap(), true
	}
	if i := strings.IndexByte(s, ':'); i >= 0 && strings.IndexByte(s[i+1:], ':') < 0 {
		// one colon: IPv4 with a port
		a, err := netip.ParseAddr(s[:i])
		if err != nil || !a.Is4() || !validPort(s[i+1:]) {
			return netip.Addr{}, false
		}
		return a, true
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// validPort reports whether s is a decimal port, 1 to 65535, digits only.
func validPort(s string) bool {
	if len(s) == 0 || len(s) > 5 {
		return false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + int(c-'0')
	}
	return n >= 1 && n <= 65535
}
