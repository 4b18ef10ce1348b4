package jwe

import (
	"strings"
	"testing"
)

// FuzzDecrypt feeds arbitrary input to the compact-JWE parser: it never
// panics, never returns plaintext with an error, and returns only
// ErrDecrypt on failure.
func FuzzDecrypt(f *testing.F) {
	k := mustKey(f, P256)
	good, _ := Encrypt(mustPub(f, k), SuiteFor(A256GCM), []byte(sample))
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add("a.b.c.d.e")
	f.Add("eyJhbGciOiJub25lIn0....")
	f.Add(strings.Repeat(".", 4))
	f.Fuzz(func(t *testing.T, s string) {
		out, err := Decrypt(s, k, allSuites())
		if err != nil && (err != ErrDecrypt || out != nil) {
			t.Fatalf("Decrypt(%q) = %q, %v", s, out, err)
		}
		if err == nil && s != good {
			// only a genuine JWE for this key can decrypt
			if !LooksCompact(s) {
				t.Fatalf("non-compact input decrypted: %q", s)
			}
		}
	})
}

// FuzzParsePublicKeyHeader: never panics; success means a supported curve.
func FuzzParsePublicKeyHeader(f *testing.F) {
	f.Add(mustKey(f, P384).PublicKeyHeader())
	f.Add("")
	f.Add("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE")
	f.Fuzz(func(t *testing.T, s string) {
		pub, c, err := ParsePublicKeyHeader(s)
		if err == nil && (pub == nil || (c != P384 && c != P256)) {
			t.Fatalf("accepted %q as %v", s, c)
		}
	})
}
