package mdx

import (
	"strings"
	"testing"
)

// FuzzAcceptsMDXv5 checks the Accept parser on arbitrary headers: it never
// panics, always admits a header that names v5 in XML, admits a header
// that names no MDX media type at all, and refuses one whose only media
// type is MDX in JSON.
func FuzzAcceptsMDXv5(f *testing.F) {
	f.Add("application/vnd.moneydesktop.mdx.v5+xml")
	f.Add("application/vnd.moneydesktop.mdx.v4+xml, */*;q=0.1")
	f.Add(",,;;")
	f.Add("application/vnd.moneydesktop.mdx.v5+json")
	f.Add("")
	f.Fuzz(func(t *testing.T, accept string) {
		got := acceptsMDXv5([]string{accept})
		lower := strings.ToLower(accept)
		if !got && strings.Contains(accept, "application/vnd.moneydesktop.mdx.v5+xml") {
			for _, part := range strings.Split(accept, ",") {
				mt, _, _ := strings.Cut(part, ";")
				if strings.TrimSpace(mt) == "application/vnd.moneydesktop.mdx.v5+xml" {
					t.Fatalf("%q names v5 but was refused", accept)
				}
			}
		}
		if !got && !strings.Contains(lower, "application/vnd.moneydesktop.mdx") {
			t.Fatalf("%q names no MDX type but was refused", accept)
		}
		mt, _, _ := strings.Cut(lower, ";")
		rest, mdx := strings.CutPrefix(strings.TrimSpace(mt), "application/vnd.moneydesktop.mdx")
		if got && !strings.Contains(accept, ",") && mdx && (strings.HasPrefix(rest, ".") || strings.HasPrefix(rest, "+")) &&
			strings.HasSuffix(rest, "+json") {
			t.Fatalf("%q names MDX in JSON only but was admitted", accept)
		}
	})
}
