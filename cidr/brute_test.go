package cidr

import "net/netip"

// bruteList is the reference implementation the trie is tested against: a
// linear scan with the standard library's own prefix arithmetic.
type bruteList []netip.Prefix

func (b bruteList) Contains(addr netip.Addr) bool {
	if !addr.IsValid() {
		return false
	}
	addr = addr.Unmap().WithZone("")
	for _, p := range b {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}
