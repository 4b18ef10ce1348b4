package secrethash

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
)

const machineSecret = "mxk_7Qp2ZfV9rT4sLw8yBn3HdK6cJx1A" // 32 characters, four classes

func TestRoundTrip(t *testing.T) {
	h, err := New([]byte(machineSecret), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s := h.String()
	if !strings.HasPrefix(s, Prefix) || strings.Contains(s, machineSecret) || strings.Contains(s, "=") {
		t.Fatalf("hash %q", s)
	}
	p, err := Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	if p.String() != s || !p.Verify([]byte(machineSecret)) {
		t.Fatal("the parsed hash does not verify its secret")
	}
	for _, wrong := range []string{"", machineSecret[:31], machineSecret + "x", strings.ToUpper(machineSecret), " " + machineSecret} {
		if p.Verify([]byte(wrong)) {
			t.Errorf("%q verified", wrong)
		}
	}
	// a fresh salt each time: two hashes of one secret differ
	h2, _ := New([]byte(machineSecret), rand.Reader)
	if h2.String() == s {
		t.Fatal("two hashes of one secret are equal: the salt is not random")
	}
}

// TestKnownVector pins the format: HMAC-SHA256 keyed with the salt
// (the value computed independently, with Python's hmac module).
func TestKnownVector(t *testing.T) {
	salt := bytes.Repeat([]byte{0x01}, 16)
	h, err := New([]byte(machineSecret), bytes.NewReader(salt))
	if err != nil {
		t.Fatal(err)
	}
	const want = "$hmac-sha256$AQEBAQEBAQEBAQEBAQEBAQ$JnmC28aKy6KXgtDXMjY2ZOcfVuUbLGdETzwY5jzD2gI"
	if h.String() != want {
		t.Fatalf("got %s", h.String())
	}
}

func TestParseRefuses(t *testing.T) {
	good, _ := New([]byte(machineSecret), bytes.NewReader(bytes.Repeat([]byte{7}, 16)))
	gs := good.String()
	salt, mac, _ := strings.Cut(strings.TrimPrefix(gs, Prefix), "$")
	for name, s := range map[string]string{
		"empty":         "",
		"prefix only":   Prefix,
		"other prefix":  "$hmac-sha512$" + salt + "$" + mac,
		"upper prefix":  "$HMAC-SHA256$" + salt + "$" + mac,
		"no mac":        Prefix + salt,
		"empty mac":     Prefix + salt + "$",
		"extra field":   gs + "$",
		"extra field 2": gs + "$x",
		"padded salt":   Prefix + salt + "==$" + mac,
		"padded mac":    Prefix + salt + "$" + mac + "=",
		"url alphabet":  Prefix + strings.NewReplacer("+", "-", "/", "_").Replace(salt) + "$" + strings.NewReplacer("+", "-", "/", "_").Replace(mac) + "-",
		"short salt":    Prefix + salt[:20] + "$" + mac,
		"long salt":     Prefix + strings.Repeat("A", 90) + "$" + mac,
		"short mac":     Prefix + salt + "$" + mac[:42],
		"long mac":      Prefix + salt + "$" + mac + "AA",
		"space":         " " + gs,
		"trailing nl":   gs + "\n",
		"cr in salt":    Prefix + salt[:10] + "\r" + salt[10:] + "$" + mac, // the decoder skips CR and LF
		"nl in mac":     Prefix + salt + "$" + mac[:20] + "\n" + mac[20:],
		"bcrypt":        "$2a$04$.3d55kpi.0vM7LgTsQuZ.erBtTRG6mxOvom8ELajDXVNDQI6AnUGa",
		"non-canonical": Prefix + salt[:len(salt)-1] + "B$" + mac, // trailing bits set
	} {
		if _, err := Parse(s); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %q parsed (%v)", name, s, err)
		}
	}
	var zero Hash
	if zero.Verify(nil) || zero.Verify([]byte("")) || zero.String() != "" {
		t.Fatal("the zero Hash matches something")
	}
}

func TestStrength(t *testing.T) {
	// the bound, spelt out
	for s, want := range map[string]float64{
		"":         0,
		"aaaa":     4 * 4.700439718141093,
		"aA1!":     4 * 6.554588851677638,
		"\xff\x00": 16,
	} {
		if got := Strength([]byte(s)); got < want-1e-9 || got > want+1e-9 {
			t.Errorf("Strength(%q) = %v, want %v", s, got, want)
		}
	}
	for _, weak := range []string{"hunter2", "API-KEY-4567", "short-secret-16b", "0123456789abcdef"} {
		if _, err := New([]byte(weak), rand.Reader); !errors.Is(err, ErrWeak) {
			t.Errorf("New(%q) accepted a weak secret", weak)
		}
	}
	for _, strong := range []string{machineSecret, "0123456789abcdef0123456789abcdef", "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f"} {
		if _, err := New([]byte(strong), rand.Reader); err != nil {
			t.Errorf("New(%q): %v", strong, err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	h, _ := New([]byte(machineSecret), rand.Reader)
	wrong := []byte(strings.ToUpper(machineSecret))
	b.ReportAllocs()
	for b.Loop() {
		if h.Verify(wrong) {
			b.Fatal("verified")
		}
	}
}
