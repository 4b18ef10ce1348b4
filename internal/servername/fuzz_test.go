package servername

import (
	"strings"
	"testing"
)

func FuzzCheck(f *testing.F) {
	for _, s := range []string{"", "fdx.bank.example", "fdx.ban\u212a.example", "fdx\u017f.bank.example", "a.", ".a", "a..b",
		" a", "a\x00b", strings.Repeat("a", 64), strings.Repeat("a.", 127) + "a", "xn--ban-0k1a.example"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := Check(name)
		if (err == nil) != refCheck(name) {
			t.Fatalf("Check(%q) = %v; the reference says %v", name, err, refCheck(name))
		}
		if err == nil && strings.ToLower(name) != strings.Map(func(r rune) rune { return rune(lower(byte(r))) }, name) {
			t.Fatalf("Check admitted %q, which Unicode lower-cases otherwise than ASCII", name)
		}
	})
}

func FuzzMatchHost(f *testing.F) {
	for _, s := range [][2]string{
		{"fdx.bank.example", "fdx.bank.example"}, {"fdx.bank.example", "FDX.bank.example:443"},
		{"fdx.ban\u212a.example", "fdx.bank.example"}, {"fdx\u017f.bank.example", "fdxs.bank.example"},
		{"fdx.bank.example", "fdx.bank.example."}, {"", "127.0.0.1"}, {"a", "[::1]:1"}, {"a", "a:"}, {"a", "a:b"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, sni, host string) {
		err := MatchHost(sni, host)
		if (err == nil) != refMatch(sni, host) {
			t.Fatalf("MatchHost(%q, %q) = %v; the reference says %v", sni, host, err, refMatch(sni, host))
		}
		if err != nil {
			return
		}
		if Check(sni) != nil || sni == "" {
			t.Fatalf("MatchHost admitted the server name %q, which Check refuses", sni)
		}
		h, _ := hostname(host)
		if !strings.EqualFold(sni, h) {
			t.Fatalf("MatchHost(%q, %q): not even equal under Unicode folding", sni, host)
		}
	})
}
