package cidr

import (
	"bufio"
	"errors"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
)

// testdataPresets reads testdata/ranges.txt, written independently of the
// presets in cidr.go.
func testdataPresets(t testing.TB) map[string][]netip.Prefix {
	t.Helper()
	f, err := os.Open("testdata/ranges.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]netip.Prefix{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		p := netip.MustParsePrefix(fields[0])
		for _, name := range fields[1:] {
			out[name] = append(out[name], p)
		}
	}
	return out
}

func TestPresetsMatchPublishedRanges(t *testing.T) {
	want := testdataPresets(t)
	if got := PresetNames(); !slices.Equal(got, []string{"mdx", "mx"}) {
		t.Fatalf("PresetNames = %v", got)
	}
	for name, prefixes := range want {
		got, ok := Preset(name)
		if !ok {
			t.Fatalf("preset %q missing", name)
		}
		cmp := func(a, b netip.Prefix) int { return strings.Compare(a.String(), b.String()) }
		slices.SortFunc(got, cmp)
		slices.SortFunc(prefixes, cmp)
		if !slices.Equal(got, prefixes) {
			t.Errorf("preset %s = %v, want %v", name, got, prefixes)
		}
	}
	if n := len(want["mx"]); n != 8 {
		t.Errorf("mx has %d ranges, want 8", n)
	}
	if n := len(want["mdx"]); n != 6 {
		t.Errorf("mdx has %d ranges, want 6", n)
	}
}

func prev(a netip.Addr) netip.Addr { return a.Prev() }

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr()
	b := a.AsSlice()
	hostBits := a.BitLen() - p.Bits()
	for i := len(b) - 1; hostBits > 0; i-- {
		n := min(hostBits, 8)
		b[i] |= byte(1<<n - 1)
		hostBits -= n
	}
	out, _ := netip.AddrFromSlice(b)
	return out
}

// TestPresetBoundaries checks, for every preset, the first and last address
// of each range (in), the addresses just outside each range (out unless
// another range of the preset holds them), and the same addresses written as
// IPv4-mapped IPv6.
func TestPresetBoundaries(t *testing.T) {
	for name, prefixes := range testdataPresets(t) {
		l, err := Parse(name)
		if err != nil {
			t.Fatal(err)
		}
		oracle := bruteList(prefixes)
		for _, p := range prefixes {
			first, last := p.Masked().Addr(), lastAddr(p)
			for _, a := range []netip.Addr{first, first.Next(), prev(last), last} {
				if !p.Contains(a) {
					continue // a /32 has no inner neighbours
				}
				if !l.Contains(a) {
					t.Errorf("%s: %s (in %s) not contained", name, a, p)
				}
				if !l.Contains(netip.AddrFrom16(a.As16())) {
					t.Errorf("%s: mapped %s not contained", name, netip.AddrFrom16(a.As16()))
				}
			}
			for _, a := range []netip.Addr{prev(first), last.Next()} {
				if got, want := l.Contains(a), oracle.Contains(a); got != want || got {
					t.Errorf("%s: %s just outside %s: Contains = %v (oracle %v)", name, a, p, got, want)
				}
			}
		}
	}
	// mdx is a strict subset of mx
	mdx, _ := Parse("mdx")
	mx, _ := Parse("mx")
	for _, a := range []string{"66.43.0.1", "66.43.3.254", "170.178.148.0", "170.178.151.255"} {
		if mdx.ContainsString(a) || !mx.ContainsString(a) {
			t.Errorf("%s: mdx %v, mx %v; want false, true", a, mdx.ContainsString(a), mx.ContainsString(a))
		}
	}
}

// randomAddr draws addresses near the list's prefixes as often as far away,
// so that the comparison exercises the boundaries, and a share of IPv6 and
// IPv4-mapped addresses.
func randomAddr(r *rand.Rand, near []netip.Prefix) netip.Addr {
	switch r.IntN(6) {
	case 0: // anywhere in IPv4
		var b [4]byte
		for i := range b {
			b[i] = byte(r.UintN(256))
		}
		return netip.AddrFrom4(b)
	case 1: // anywhere in IPv6
		var b [16]byte
		for i := range b {
			b[i] = byte(r.UintN(256))
		}
		return netip.AddrFrom16(b)
	default: // within ±512 of a prefix's first address, sometimes mapped
		p := near[r.IntN(len(near))]
		a := p.Masked().Addr()
		steps := r.IntN(1024) - 512
		for ; steps > 0; steps-- {
			a = a.Next()
		}
		for ; steps < 0 && a.Prev().IsValid(); steps++ {
			a = a.Prev()
		}
		if a.Is4() && r.IntN(4) == 0 {
			return netip.AddrFrom16(a.As16())
		}
		return a
	}
}

func TestAgainstOracle(t *testing.T) {
	entries := []string{"mx", "10.0.0.0/8", "10.1.2.0/24", "172.16.0.0/12", "2001:db8::/32", "2001:db8:1::/48", "fe80::1", "::ffff:198.51.100.0/120", "203.0.113.7"}
	l, err := Parse(entries...)
	if err != nil {
		t.Fatal(err)
	}
	var prefixes []netip.Prefix
	for _, e := range entries {
		p, _ := ParseEntry(e)
		prefixes = append(prefixes, p...)
	}
	for i, p := range prefixes {
		prefixes[i] = normalize(p)
	}
	oracle := bruteList(prefixes)
	r := rand.New(rand.NewPCG(1, 2))
	n := 200000
	if testing.Short() {
		n = 20000
	}
	hits := 0
	for range n {
		a := randomAddr(r, prefixes)
		got, want := l.Contains(a), oracle.Contains(a)
		if got != want {
			t.Fatalf("Contains(%s) = %v, oracle %v", a, got, want)
		}
		if got {
			hits++
		}
	}
	if hits < n/10 || hits > n*9/10 {
		t.Fatalf("only %d of %d addresses hit: the comparison is lopsided", hits, n)
	}
}

func TestMappedAndZones(t *testing.T) {
	l, err := Parse("192.0.2.0/24", "2001:db8::/64", "::ffff:198.51.100.0/120")
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]bool{
		"192.0.2.1":             true,
		"::ffff:192.0.2.1":      true,
		"::ffff:c000:201":       true,
		"192.0.3.1":             false,
		"::192.0.2.1":           false, // IPv4-compatible, not mapped
		"2001:db8::1":           true,
		"2001:db8::1%eth0":      true,
		"2001:db8:0:1::1":       false,
		"198.51.100.255":        true,
		"::ffff:198.51.100.255": true,
		"":                      false,
		"not-an-ip":             false,
		"192.0.2.1:443":         false,
	}
	for s, want := range cases {
		if got := l.ContainsString(s); got != want {
			t.Errorf("ContainsString(%q) = %v, want %v", s, got, want)
		}
	}
	if got := l.Prefixes(); got[2] != netip.MustParsePrefix("198.51.100.0/24") {
		t.Errorf("mapped prefix normalised to %s", got[2])
	}
	if l.Contains(netip.Addr{}) {
		t.Error("invalid address contained")
	}
	var zero List
	if zero.ContainsString("192.0.2.1") {
		t.Error("zero List contains an address")
	}
}

func TestParseErrors(t *testing.T) {
	for _, e := range []string{"", "mxx", "10.0.0.0/33", "10.0.0/8", "2001:db8::/129", "host.example", "10.0.0.1-10.0.0.5"} {
		if _, err := Parse(e); !errors.Is(err, ErrInvalidEntry) {
			t.Errorf("Parse(%q) = %v, want ErrInvalidEntry", e, err)
		}
	}
	l, err := Parse("10.0.0.1/8", "10.0.0.0/8", "MX")
	if err != nil {
		t.Fatal(err)
	}
	if l.Len() != 9 {
		t.Errorf("duplicates and host bits: %d prefixes, want 9 (%v)", l.Len(), l.Prefixes())
	}
}
