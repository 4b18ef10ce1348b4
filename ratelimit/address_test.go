package ratelimit

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
)

func TestClientAddr(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":                               "192.0.2.1",
		"192.0.2.1:443":                           "192.0.2.1",
		"::ffff:192.0.2.1":                        "192.0.2.1",
		"::FFFF:192.0.2.1":                        "192.0.2.1",
		"::ffff:c000:201":                         "192.0.2.1",
		"0:0:0:0:0:ffff:c000:0201":                "192.0.2.1",
		"[::ffff:192.0.2.1]:443":                  "192.0.2.1",
		"::ffff:192.0.2.1%eth0":                   "192.0.2.1",
		"[::ffff:192.0.2.1%eth0]:8080":            "192.0.2.1",
		"2001:db8::1":                             "2001:db8::1",
		"2001:DB8::1":                             "2001:db8::1",
		"2001:0db8:0000:0000:0000:0000:0000:0001": "2001:db8::1",
		"2001:db8:0:0::1":                         "2001:db8::1",
		"2001:db8::0.0.0.1":                       "2001:db8::1",
		"2001:db8::1%eth0":                        "2001:db8::1",
		"[2001:db8::1]":                           "2001:db8::1",
		"[2001:db8::1%25eth0]":                    "2001:db8::1",
		"[2001:db8::1]:443":                       "2001:db8::1",
		"[2001:db8::1%eth0]:443":                  "2001:db8::1",
		"::1":                                     "::1",
		"192.0.2.1%eth0":                          "192.0.2.1", // as Caddy reads it
		"192.0.2.1%eth0:443":                      "192.0.2.1",
		"2001:db8::1%":                            "2001:db8::1",
		"::192.0.2.1":                             "::c000:201", // IPv4-compatible is IPv6, not IPv4
	} {
		a, ok := ClientAddr(in)
		if !ok || a.String() != want {
			t.Errorf("ClientAddr(%q) = %v, %v; want %s", in, a, ok, want)
		}
	}
	for _, in := range []string{
		"", " 192.0.2.1", "192.0.2.1 ", "192.0.2.01", "064.077.254.033", "192.0.2", "192.0.2.1.5",
		"[192.0.2.1]", "[192.0.2.1%eth0]", "%eth0", "%eth0]:443", "[192.0.2.1]:443", "192.0.2.1:", "192.0.2.1:65536", "192.0.2.1:-1",
		"2001:db8::1]", "[2001:db8::1", "[2001:db8::1]:", "2001:db8:::1",
		"2001:00db8::1", "unknown", "localhost", "0x7f000001", "2130706433", "192.0.2.1, 198.51.100.1",
		"2001:db8::/64", "192.0.2.0/24",
	} {
		if a, ok := ClientAddr(in); ok {
			t.Errorf("ClientAddr(%q) = %v, want not an address", in, a)
		}
	}
}

func TestGroupingKey(t *testing.T) {
	for _, c := range []struct {
		g        Grouping
		in, want string
	}{
		{DefaultGrouping, "192.0.2.1", "192.0.2.1"},
		{DefaultGrouping, "::ffff:192.0.2.1", "192.0.2.1"},
		{DefaultGrouping, "2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{DefaultGrouping, "[2001:DB8:1:2:ffff::1%eth0]:443", "2001:db8:1:2::/64"},
		{DefaultGrouping, "::1", "::/64"},
		{DefaultGrouping, "user-42", "user-42"},
		{DefaultGrouping, "", ""},
		{DefaultGrouping, "192.0.2.01", "192.0.2.01"}, // not an address: a key like any other
		{Grouping{IPv4Bits: 24, IPv6Bits: 48}, "192.0.2.77", "192.0.2.0/24"},
		{Grouping{IPv4Bits: 24, IPv6Bits: 48}, "::ffff:192.0.2.77", "192.0.2.0/24"},
		{Grouping{IPv4Bits: 24, IPv6Bits: 48}, "2001:db8:1:2::1", "2001:db8:1::/48"},
		{Grouping{IPv4Bits: 32, IPv6Bits: 128}, "2001:db8:1:2::1%eth0", "2001:db8:1:2::1"},
		{Grouping{IPv4Bits: 1, IPv6Bits: 1}, "203.0.113.5", "128.0.0.0/1"},
	} {
		if got := c.g.Key(c.in); got != c.want {
			t.Errorf("%+v.Key(%q) = %q, want %q", c.g, c.in, got, c.want)
		}
	}
	for _, g := range []Grouping{{}, {IPv4Bits: 32}, {IPv6Bits: 64}, {0, 64}, {33, 64}, {32, 129}, {-1, 64}, {32, 0}} {
		if g.Validate() == nil {
			t.Errorf("%+v accepted", g)
		}
	}
	if err := DefaultGrouping.Validate(); err != nil {
		t.Error(err)
	}
}

// respell writes a in one of the many ways a client, a proxy or a server
// may write it.
func respell(r *rand.Rand, a netip.Addr) string {
	var s string
	if a.Is4() {
		v4 := a.As4()
		switch r.IntN(4) {
		case 0:
			s = a.String()
		case 1:
			s = "::ffff:" + a.String()
		case 2:
			s = fmt.Sprintf("0:0:0:0:0:ffff:%x:%x", uint16(v4[0])<<8|uint16(v4[1]), uint16(v4[2])<<8|uint16(v4[3]))
		case 3:
			s = fmt.Sprintf("0000::FFFF:%04X:%04x", uint16(v4[0])<<8|uint16(v4[1]), uint16(v4[2])<<8|uint16(v4[3]))
		}
	} else {
		b := a.As16()
		var groups []string
		for i := 0; i < 16; i += 2 {
			g := fmt.Sprintf("%x", uint16(b[i])<<8|uint16(b[i+1]))
			g = strings.Repeat("0", r.IntN(5-len(g))) + g // leading zeros
			if r.IntN(2) == 0 {
				g = strings.ToUpper(g)
			}
			groups = append(groups, g)
		}
		if r.IntN(3) == 0 { // the last 32 bits dotted
			groups = append(groups[:6], fmt.Sprintf("%d.%d.%d.%d", b[12], b[13], b[14], b[15]))
		}
		// one run of zero groups (never the dotted tail) written as ::
		if i := r.IntN(len(groups)); r.IntN(2) == 0 && strings.Trim(groups[i], "0") == "" && !strings.Contains(groups[i], ".") {
			j := i
			for j+1 < len(groups) && strings.Trim(groups[j+1], "0") == "" && !strings.Contains(groups[j+1], ".") && r.IntN(4) != 0 {
				j++
			}
			s = strings.Join(groups[:i], ":") + "::" + strings.Join(groups[j+1:], ":")
		} else {
			s = strings.Join(groups, ":")
		}
	}
	if !strings.Contains(s, ":") { // IPv4 as itself: a port at most
		if r.IntN(2) == 0 {
			s += fmt.Sprintf(":%d", r.IntN(65536))
		}
		return s
	}
	if r.IntN(3) == 0 {
		s += "%" + []string{"eth0", "1", "en0", "lo"}[r.IntN(4)]
	}
	switch r.IntN(3) {
	case 1:
		s = "[" + s + "]"
	case 2:
		s = fmt.Sprintf("[%s]:%d", s, r.IntN(65536))
	}
	return s
}

// referenceKey is Grouping.Key worked out bit by bit, for addresses only.
func referenceKey(g Grouping, a netip.Addr) string {
	a = a.Unmap()
	bits := g.IPv6Bits
	if a.Is4() {
		bits = g.IPv4Bits
	}
	b := a.AsSlice()
	for i := range b {
		switch keep := bits - 8*i; {
		case keep <= 0:
			b[i] = 0
		case keep < 8:
			b[i] &= 0xff << (8 - keep)
		}
	}
	m, _ := netip.AddrFromSlice(b)
	if bits == a.BitLen() {
		return m.String()
	}
	return m.String() + "/" + fmt.Sprint(bits)
}

// randomAddr is an IPv4 or IPv6 address, IPv6 often in a few /64s.
func randomAddr(r *rand.Rand) netip.Addr {
	if r.IntN(3) == 0 {
		return netip.AddrFrom4([4]byte{byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())})
	}
	var b [16]byte
	for i := range b {
		if r.IntN(3) != 0 { // zero groups, for :: to find
			b[i] = byte(r.Uint32())
		}
	}
	if r.IntN(2) == 0 {
		copy(b[:8], []byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 2})
	}
	return netip.AddrFrom16(b)
}

// TestGroupingSpellings: every spelling of an address gives the key of
// its group, as worked out bit by bit; addresses of one group give one
// key, of two groups two.
func TestGroupingSpellings(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, g := range []Grouping{DefaultGrouping, {IPv4Bits: 24, IPv6Bits: 48}, {IPv4Bits: 29, IPv6Bits: 61}, {IPv4Bits: 32, IPv6Bits: 128}} {
		for range 5_000 {
			a := randomAddr(r)
			want := referenceKey(g, a)
			s := respell(r, a)
			if got := g.Key(s); got != want {
				t.Fatalf("%+v.Key(%q) = %q, want %q (%v)", g, s, got, want, a)
			}
			// another address of the same group, and one of another group
			b := a.As16()
			bits := g.IPv6Bits
			if a.Is4() {
				bits = 96 + g.IPv4Bits
			}
			if bits < 128 {
				bit := bits + r.IntN(128-bits) // a host bit
				b[bit/8] ^= 0x80 >> (bit % 8)
				if got := g.Key(respell(r, netip.AddrFrom16(b).Unmap())); got != want {
					t.Fatalf("%v and %v, of one group, have keys %q and %q", a, netip.AddrFrom16(b), want, got)
				}
				b[bit/8] ^= 0x80 >> (bit % 8)
			}
			bit := r.IntN(bits) // a network bit
			if a.Is4() {
				bit = 96 + r.IntN(g.IPv4Bits)
			}
			b[bit/8] ^= 0x80 >> (bit % 8)
			if other := netip.AddrFrom16(b).Unmap(); g.Key(respell(r, other)) == want {
				t.Fatalf("%v and %v, of two groups, share the key %q", a, other, want)
			}
		}
	}
}

// FuzzGroupingKey: Key never fails; what is not an address is its own
// key; an address gives the key of its group, whichever way it is
// written, and that key does not read as another group's address.
func FuzzGroupingKey(f *testing.F) {
	for _, s := range []string{"192.0.2.1", "::ffff:192.0.2.1", "[2001:db8::1%eth0]:443", "2001:DB8:0::1", "192.0.2.1:80",
		"064.077.254.033", "user-1", "", "[::1]", "::", "fe80::1%25", "1.2.3.4%eth0", "2001:db8::/64"} {
		f.Add(s, uint8(32), uint8(64))
	}
	f.Fuzz(func(t *testing.T, s string, b4, b6 uint8) {
		g := Grouping{IPv4Bits: 1 + int(b4)%32, IPv6Bits: 1 + int(b6)%128}
		k := g.Key(s)
		a, ok := ClientAddr(s)
		if !ok {
			if k != s {
				t.Fatalf("Key(%q) = %q for what is not an address", s, k)
			}
			return
		}
		if want := referenceKey(g, a); k != want {
			t.Fatalf("Key(%q) = %q, want %q", s, k, want)
		}
		r := rand.New(rand.NewPCG(uint64(len(s)), uint64(b4)<<8|uint64(b6)))
		for range 8 {
			if s2 := respell(r, a); g.Key(s2) != k {
				t.Fatalf("Key(%q) = %q but Key(%q) = %q", s, k, s2, g.Key(s2))
			}
		}
		if k2, ok := ClientAddr(k); ok && referenceKey(g, k2) != k {
			t.Fatalf("the key %q of %q reads as the address %v of another group", k, s, k2)
		}
	})
}
