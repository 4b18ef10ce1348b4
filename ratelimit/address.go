package ratelimit

import (
	"fmt"
	"net/netip"
	"strings"
)

// Grouping says which client addresses share a budget: every address in
// one IPv4 prefix of IPv4Bits, or one IPv6 prefix of IPv6Bits. An IPv6
// client is commonly given a whole /64 (2^64 addresses), and often a /56
// or a /48; keyed by address, it would have as many budgets as it has
// addresses.
//
// The zero Grouping is invalid: use DefaultGrouping or set both fields.
type Grouping struct {
	IPv4Bits int // 1 to 32
	IPv6Bits int // 1 to 128
}

// DefaultGrouping gives each IPv4 address and each IPv6 /64 a budget.
var DefaultGrouping = Grouping{IPv4Bits: 32, IPv6Bits: 64}

// Validate checks g.
func (g Grouping) Validate() error {
	if g.IPv4Bits < 1 || g.IPv4Bits > 32 {
		return fmt.Errorf("ratelimit: IPv4 prefix length %d: want 1 to 32", g.IPv4Bits)
	}
	if g.IPv6Bits < 1 || g.IPv6Bits > 128 {
		return fmt.Errorf("ratelimit: IPv6 prefix length %d: want 1 to 128", g.IPv6Bits)
	}
	return nil
}

// Key returns the key for s: if s is a client address (as ClientAddr
// reads it), the canonical text of its group, the address itself when
// the group is one address ("192.0.2.1") and its prefix otherwise
// ("2001:db8:1:2::/64"); any other s is returned as it is. Every spelling
// of an address, and every address of a group, gives the same key, and
// two groups never do.
func (g Grouping) Key(s string) string {
	a, ok := ClientAddr(s)
	if !ok {
		return s
	}
	bits := g.IPv6Bits
	if a.Is4() {
		bits = g.IPv4Bits
	}
	if bits >= a.BitLen() {
		return a.String()
	}
	p, _ := a.Prefix(max(bits, 0)) // an invalid Grouping errs on sharing
	return p.String()
}

// ClientAddr reads s as servers and proxies write a client's address: an
// IPv4 address (192.0.2.1), an IPv6 address in any of its spellings
// (2001:DB8:0::1, ::ffff:192.0.2.1), either with a port (192.0.2.1:443,
// [2001:db8::1]:443), an IPv6 address in brackets, and a zone (%eth0)
// after the address, which it drops as Caddy does, whatever the family.
// It returns the address with an IPv4-mapped IPv6 address as the IPv4
// address it maps, so that every spelling of one address gives the same
// result. ok is false for anything else, IPv4 with leading zeros (which
// some readers take as octal) included.
func ClientAddr(s string) (a netip.Addr, ok bool) {
	if i := strings.IndexByte(s, '%'); i >= 0 {
		end := len(s)
		if j := strings.IndexByte(s[i:], ']'); j >= 0 {
			end = i + j
		}
		s = s[:i] + s[end:]
	}
	if s == "" {
		return a, false
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		if inner, found := strings.CutPrefix(s, "["); found && strings.HasSuffix(inner, "]") {
			// [2001:db8::1]: brackets are for IPv6 only
			if a, err = netip.ParseAddr(inner[:len(inner)-1]); err == nil && !a.Is6() {
				err = errNotClientAddr
			}
		} else {
			var ap netip.AddrPort
			ap, err = netip.ParseAddrPort(s)
			a = ap.Addr()
		}
		if err != nil {
			return netip.Addr{}, false
		}
	}
	return a.Unmap(), true
}

var errNotClientAddr = fmt.Errorf("ratelimit: not a client address")
