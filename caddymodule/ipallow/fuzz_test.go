package ipallow

import (
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/mxgate/mxgate/caddymodule/internal/client"
)

// refParseEntry is a plainer parseEntry, built on net.SplitHostPort, for
// the fuzzer to compare against.
func refParseEntry(s string) (netip.Addr, bool) {
	s = strings.Trim(s, " \t")
	bracketed := strings.HasPrefix(s, "[")
	host := s
	if h, p, err := net.SplitHostPort(s); err == nil {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 || len(p) > 5 || strings.Trim(p, "0123456789") != "" {
			return netip.Addr{}, false
		}
		host = h
	} else if bracketed {
		if !strings.HasSuffix(s, "]") {
			return netip.Addr{}, false
		}
		host = s[1 : len(s)-1]
	}
	a, err := netip.ParseAddr(host)
	if err != nil || a.Zone() != "" || (bracketed && !a.Is6()) {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// refClientAddr is a plainer clientAddr: split everything, walk backwards.
func refClientAddr(remoteAddr string, header []string, trusted interface{ Contains(netip.Addr) bool }) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return netip.Addr{}, false
	}
	peer := ap.Addr().WithZone("").Unmap()
	if !trusted.Contains(peer) {
		return peer, true
	}
	var entries []string
	for _, line := range header {
		entries = append(entries, strings.Split(line, ",")...)
	}
	client := peer
	for _, e := range slices.Backward(entries) {
		a, ok := refParseEntry(e)
		if !ok {
			return netip.Addr{}, false
		}
		if !trusted.Contains(a) {
			return a, true
		}
		client = a
	}
	return client, true
}

// FuzzClientAddr compares clientAddr with the plainer reference on peers
// and header lines ("\n" separates lines), and checks what any answer
// must be: never zoned, never IPv4-mapped, and never taken from the
// header when the peer is not a trusted proxy.
func FuzzClientAddr(f *testing.F) {
	for _, s := range [][2]string{
		{"10.0.0.5:1", "64.77.254.33"},
		{"10.0.0.5:1", "64.77.254.33, 203.0.113.9"},
		{"10.0.0.5:1", "64.77.254.33\n203.0.113.9, 10.0.0.6"},
		{"10.0.0.5:1", "::ffff:64.77.254.33"},
		{"10.0.0.5:1", "[::ffff:64.77.254.33]:443"},
		{"10.0.0.5:1", "64.77.254.33:443"},
		{"10.0.0.5:1", "64.77.254.33%eth0"},
		{"10.0.0.5:1", "fe80::1%eth0"},
		{"10.0.0.5:1", "[2001:db8::1]"},
		{"10.0.0.5:1", "unknown, garbage,,"},
		{"10.0.0.5:1", ""},
		{"[fd00::5]:1", "\t64.77.254.33 , 10.1.1.1"},
		{"[::ffff:10.0.0.5]:1", "[64.77.254.33]:80"},
		{"203.0.113.9:1", "64.77.254.33"},
		{"@", "64.77.254.33"},
		{"10.0.0.5:1", "064.77.254.33"},
		{"10.0.0.5:1", "64.77.254.33:0065535"},
	} {
		f.Add(s[0], s[1])
	}
	trusted, err := client.ParseRanges("10.0.0.0/8", "fd00::/8", "127.0.0.1")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, peer, header string) {
		lines := strings.Split(header, "\n")
		got, ok := clientAddr(peer, lines, trusted)
		want, wantOK := refClientAddr(peer, lines, trusted)
		if ok != wantOK || got != want {
			t.Fatalf("clientAddr(%q, %q) = %v %v, reference %v %v", peer, lines, got, ok, want, wantOK)
		}
		if !ok {
			return
		}
		if got.Zone() != "" || got.Is4In6() {
			t.Fatalf("clientAddr(%q, %q) = %v: zoned or mapped", peer, lines, got)
		}
		if ap, err := netip.ParseAddrPort(peer); err == nil && !trusted.Contains(ap.Addr().Unmap()) && got != ap.Addr().WithZone("").Unmap() {
			t.Fatalf("untrusted peer %q, but the answer %v came from the header", peer, got)
		}
		// without trusted proxies, the header is never read
		if got, ok := clientAddr(peer, lines, nil); ok {
			if ap, _ := netip.ParseAddrPort(peer); got != ap.Addr().WithZone("").Unmap() {
				t.Fatalf("no trusted proxies, peer %q: answer %v", peer, got)
			}
		}
	})
}
