package cidr

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/yl2chen/cidranger"
)

// ErrInvalidEntry is wrapped by Parse's errors for an entry that is neither
// a preset name, a CIDR prefix nor a single address.
var ErrInvalidEntry = errors.New("cidr: not a preset, CIDR prefix or IP address")

// presets are MX's published ranges. Each /n is taken as the whole CIDR
// block, network and broadcast addresses included.
var presets = map[string][]string{
	// All MX data centres (MX Platform API, "MX IP Address Ranges").
	"mx": {
		"64.77.254.32/27",
		"66.43.0.0/22",
		"68.142.151.128/26",
		"97.75.178.32/27",
		"146.75.94.131/32",
		"170.178.148.0/22",
		"192.41.25.128/26",
		"192.41.58.128/26",
	},
	// The callers of an MDX On Demand endpoint (MDX On Demand v5, "IP Filtering").
	"mdx": {
		"64.77.254.32/27",
		"68.142.151.128/26",
		"146.75.94.131/32",
		"97.75.178.32/27",
		"192.41.25.128/26",
		"192.41.58.128/26",
	},
}

// PresetNames returns the names of the built-in presets, sorted.
func PresetNames() []string {
	names := make([]string, 0, len(presets))
	for n := range presets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Preset returns the prefixes of the named preset.
func Preset(name string) ([]netip.Prefix, bool) {
	src, ok := presets[strings.ToLower(name)]
	if !ok {
		return nil, false
	}
	out := make([]netip.Prefix, len(src))
	for i, s := range src {
		out[i] = netip.MustParsePrefix(s)
	}
	return out, true
}

// List is an immutable allow-list of prefixes. It is safe for concurrent
// use. The zero value is an empty list that contains nothing; build a useful
// one with New or Parse.
type List struct {
	ranger   cidranger.Ranger
	prefixes []netip.Prefix
}

// New returns a List of the given prefixes. Host bits are masked off, and
// IPv4-mapped IPv6 prefixes of /96 or longer become IPv4 prefixes.
func New(prefixes ...netip.Prefix) (*List, error) {
	l := &List{ranger: cidranger.NewPCTrieRanger()}
	for _, p := range prefixes {
		if !p.IsValid() {
			return nil, fmt.Errorf("%w: invalid prefix", ErrInvalidEntry)
		}
		p = normalize(p)
		if slices.Contains(l.prefixes, p) {
			continue
		}
		if err := l.ranger.Insert(cidranger.NewBasicRangerEntry(toIPNet(p))); err != nil {
			return nil, fmt.Errorf("cidr: inserting %s: %w", p, err)
		}
		l.prefixes = append(l.prefixes, p)
	}
	return l, nil
}

// Parse builds a List from entries, each a preset name ("mx", "mdx"), a CIDR
// prefix ("10.0.0.0/8", "2001:db8::/32") or a single address ("127.0.0.1",
// taken as /32 or /128).
func Parse(entries ...string) (*List, error) {
	var all []netip.Prefix
	for _, e := range entries {
		p, err := ParseEntry(e)
		if err != nil {
			return nil, err
		}
		all = append(all, p...)
	}
	return New(all...)
}

// ParseEntry returns the prefixes one entry stands for: a preset's ranges, a
// CIDR prefix, or a single address.
func ParseEntry(e string) ([]netip.Prefix, error) {
	if p, ok := Preset(e); ok {
		return p, nil
	}
	if strings.Contains(e, "/") {
		p, err := netip.ParsePrefix(e)
		if err != nil {
			return nil, fmt.Errorf("%w: %q (presets: %s)", ErrInvalidEntry, e, strings.Join(PresetNames(), ", "))
		}
		return []netip.Prefix{p}, nil
	}
	a, err := netip.ParseAddr(e)
	if err != nil {
		return nil, fmt.Errorf("%w: %q (presets: %s)", ErrInvalidEntry, e, strings.Join(PresetNames(), ", "))
	}
	a = a.WithZone("")
	return []netip.Prefix{netip.PrefixFrom(a, a.BitLen())}, nil
}

// Prefixes returns the list's prefixes, normalised, in insertion order.
func (l *List) Prefixes() []netip.Prefix { return slices.Clone(l.prefixes) }

// Len returns the number of distinct prefixes in the list.
func (l *List) Len() int { return len(l.prefixes) }

// ipBuf holds scratch net.IP buffers so that a lookup makes no allocation of
// its own (cidranger makes one small one per lookup).
var ipBuf = sync.Pool{New: func() any { return new([16]byte) }}

// Contains reports whether addr falls in one of the list's prefixes. An
// invalid addr is never contained.
func (l *List) Contains(addr netip.Addr) bool {
	if l == nil || l.ranger == nil || !addr.IsValid() {
		return false
	}
	addr = addr.Unmap()
	buf := ipBuf.Get().(*[16]byte)
	var ip net.IP
	if addr.Is4() {
		a := addr.As4()
		copy(buf[:4], a[:])
		ip = buf[:4]
	} else {
		*buf = addr.As16()
		ip = buf[:]
	}
	ok, err := l.ranger.Contains(ip)
	ipBuf.Put(buf)
	return ok && err == nil
}

// ContainsString parses s as an address (a zone is ignored) and reports
// whether the list contains it. An unparseable s is never contained.
func (l *List) ContainsString(s string) bool {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return false
	}
	return l.Contains(a)
}

func normalize(p netip.Prefix) netip.Prefix {
	a := p.Addr().WithZone("")
	bits := p.Bits()
	if a.Is4In6() && bits >= 96 {
		a, bits = a.Unmap(), bits-96
	}
	return netip.PrefixFrom(a, bits).Masked()
}

func toIPNet(p netip.Prefix) net.IPNet {
	return net.IPNet{
		IP:   net.IP(p.Addr().AsSlice()),
		Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen()),
	}
}
