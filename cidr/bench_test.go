package cidr

import (
	"net/netip"
	"testing"
)

func BenchmarkContainsMX(b *testing.B) {
	l, _ := Parse("mx")
	for _, c := range []struct{ name, addr string }{
		{"hit", "192.41.58.130"},
		{"miss", "203.0.113.9"},
		{"mapped_hit", "::ffff:192.41.58.130"},
		{"ipv6_miss", "2001:db8::1"},
	} {
		a := netip.MustParseAddr(c.addr)
		want := c.name == "hit" || c.name == "mapped_hit"
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if l.Contains(a) != want {
					b.Fatal("wrong answer")
				}
			}
		})
	}
}

// BenchmarkContainsStringMX includes parsing the address from the string
// Caddy hands over, as the gateway does per request.
func BenchmarkContainsStringMX(b *testing.B) {
	l, _ := Parse("mx")
	b.ReportAllocs()
	for b.Loop() {
		if !l.ContainsString("192.41.58.130") {
			b.Fatal("wrong answer")
		}
	}
}

func BenchmarkContainsParallel(b *testing.B) {
	l, _ := Parse("mx")
	a := netip.MustParseAddr("192.41.58.130")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if !l.Contains(a) {
				b.Fatal("wrong answer")
			}
		}
	})
}
