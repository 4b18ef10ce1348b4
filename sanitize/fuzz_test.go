package sanitize

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzProcess: on any input, report mode writes the input unchanged, and
// mask mode writes the same length, changing bytes only to the mask
// character.
func FuzzProcess(f *testing.F) {
	f.Add(accounts("<id>4111111111111111</id>", "<name>Checking <![CDATA[1234]]>56789</name>"))
	f.Add(`<mdx><accounts><account><id>&#52;&#x31;11111111111111</id></account></accounts></mdx>`)
	f.Add(`<account><id>1 2 3 4 5 6 7 8 9 0 1 2 3</id></account>`)
	f.Add(`{"not":"xml"}`)
	f.Add(`<a><account><name>123456789<b>012</b></name></account></a>`)
	f.Fuzz(func(t *testing.T, in string) {
		var plain, masked bytes.Buffer
		if _, err := Process(&plain, strings.NewReader(in), Options{}); err != nil && plain.String() != in {
			t.Fatalf("report mode changed the input on error %v", err)
		}
		if plain.String() != in {
			t.Fatalf("report mode changed %q into %q", in, plain.String())
		}
		Process(&masked, strings.NewReader(in), Options{Mask: true})
		out := masked.Bytes()
		if len(out) != len(in) {
			t.Fatalf("mask mode changed the length: %q -> %q", in, out)
		}
		for i := range out {
			if out[i] != in[i] && out[i] != 'X' {
				t.Fatalf("byte %d changed to %q", i, out[i])
			}
		}
	})
}
