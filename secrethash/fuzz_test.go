package secrethash

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzParse feeds arbitrary text to Parse. It must never panic; what it
// accepts must print back as exactly the same text (one spelling per
// hash) and parse again to a hash that verifies the same secrets; and what
// it refuses must be ErrMalformed.
func FuzzParse(f *testing.F) {
	good, _ := New([]byte(machineSecret), bytes.NewReader(bytes.Repeat([]byte{1}, 16)))
	f.Add(good.String(), machineSecret)
	f.Add(Prefix+"AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "")
	f.Add(Prefix+"$", "x")
	f.Add("$2a$04$.3d55kpi.0vM7LgTsQuZ.erBtTRG6mxOvom8ELajDXVNDQI6AnUGa", "bcrypt-secret")
	f.Add("", "")
	f.Fuzz(func(t *testing.T, s, secret string) {
		h, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v", err)
			}
			if h.Verify([]byte(secret)) {
				t.Fatal("a refused hash verifies")
			}
			return
		}
		if h.String() != s {
			t.Fatalf("%q parsed and printed as %q", s, h.String())
		}
		again, err := Parse(h.String())
		if err != nil || again.Verify([]byte(secret)) != h.Verify([]byte(secret)) {
			t.Fatalf("round trip changed the hash: %v", err)
		}
		// a hash of the secret under this salt verifies it
		made := Hash{salt: h.salt, mac: mac(h.salt, []byte(secret))}
		if !made.Verify([]byte(secret)) || (made.mac != h.mac && h.Verify([]byte(secret))) {
			t.Fatal("Verify disagrees with the MAC")
		}
	})
}
