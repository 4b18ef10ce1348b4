package jwe

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

var (
	curves  = []Curve{P384, P256}
	ciphers = []Cipher{A256GCM, A128GCM}
)

func allSuites() []Suite { return []Suite{SuiteFor(A256GCM), SuiteFor(A128GCM)} }

func mustKey(t testing.TB, c Curve) *PrivateKey {
	t.Helper()
	k, err := GenerateKey(c)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustPub(t testing.TB, k *PrivateKey) *ecdsa.PublicKey {
	t.Helper()
	pub, c, err := ParsePublicKeyHeader(k.PublicKeyHeader())
	if err != nil || c != k.Curve() {
		t.Fatalf("ParsePublicKeyHeader: %v %v", c, err)
	}
	return pub
}

const sample = `{"users":[{"guid":"USR-1","email":"someone@example.com"}]}`

func TestRoundTrip(t *testing.T) {
	for _, c := range curves {
		for _, ci := range ciphers {
			t.Run(c.String()+"/"+ci.String(), func(t *testing.T) {
				k := mustKey(t, c)
				jwe, err := Encrypt(mustPub(t, k), SuiteFor(ci), []byte(sample))
				if err != nil {
					t.Fatal(err)
				}
				if !LooksCompact(jwe) {
					t.Fatalf("not compact: %s", jwe)
				}
				h := header(t, jwe)
				want := SuiteFor(ci)
				if h["alg"] != string(want.Key) || h["enc"] != string(want.Content) || h["zip"] != nil {
					t.Fatalf("header %v", h)
				}
				got, err := Decrypt(jwe, k, []Suite{want})
				if err != nil || string(got) != sample {
					t.Fatalf("Decrypt: %q %v", got, err)
				}
				// the other suite alone is not allowed
				other := SuiteFor(A256GCM)
				if ci == A256GCM {
					other = SuiteFor(A128GCM)
				}
				if _, err := Decrypt(jwe, k, []Suite{other}); !errors.Is(err, ErrDecrypt) {
					t.Fatalf("suite outside the allow-list decrypted: %v", err)
				}
				// another key cannot decrypt
				if _, err := Decrypt(jwe, mustKey(t, c), allSuites()); !errors.Is(err, ErrDecrypt) {
					t.Fatalf("another key decrypted: %v", err)
				}
			})
		}
	}
}

func header(t testing.TB, compact string) map[string]any {
	t.Helper()
	h, _, _ := strings.Cut(compact, ".")
	raw, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func b64flip(t testing.TB, seg string, i int) string {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil || len(raw) == 0 {
		t.Fatalf("segment %q: %v", seg, err)
	}
	raw[i%len(raw)] ^= 0x01
	return base64.RawURLEncoding.EncodeToString(raw)
}

func TestTamperingFails(t *testing.T) {
	k := mustKey(t, P384)
	jwe, _ := Encrypt(mustPub(t, k), SuiteFor(A256GCM), []byte(sample))
	parts := strings.Split(jwe, ".")
	mutate := func(i int, f func(string) string) string {
		p := append([]string(nil), parts...)
		p[i] = f(p[i])
		return strings.Join(p, ".")
	}
	reheader := func(edit func(m map[string]any)) string {
		m := header(t, jwe)
		edit(m)
		b, _ := json.Marshal(m)
		return mutate(0, func(string) string { return base64.RawURLEncoding.EncodeToString(b) })
	}
	cases := map[string]string{
		"tag":             mutate(4, func(s string) string { return b64flip(t, s, 3) }),
		"ciphertext":      mutate(3, func(s string) string { return b64flip(t, s, 10) }),
		"iv":              mutate(2, func(s string) string { return b64flip(t, s, 0) }),
		"wrapped key":     mutate(1, func(s string) string { return b64flip(t, s, 5) }),
		"header byte":     reheader(func(m map[string]any) { m["kid"] = "x" }),
		"alg none":        reheader(func(m map[string]any) { m["alg"] = "none" }),
		"alg dir":         reheader(func(m map[string]any) { m["alg"] = "dir" }),
		"alg RSA-OAEP":    reheader(func(m map[string]any) { m["alg"] = "RSA-OAEP" }),
		"enc swapped":     reheader(func(m map[string]any) { m["enc"] = "A128GCM" }),
		"zip":             reheader(func(m map[string]any) { m["zip"] = "DEF" }),
		"crit":            reheader(func(m map[string]any) { m["crit"] = []string{"exp"} }),
		"epk other curve": reheader(func(m map[string]any) { m["epk"].(map[string]any)["crv"] = "P-256" }),
		"epk not EC":      reheader(func(m map[string]any) { m["epk"].(map[string]any)["kty"] = "OKP" }),
		"no epk":          reheader(func(m map[string]any) { delete(m, "epk") }),
		"truncated":       jwe[:len(jwe)-10],
		"four parts":      strings.Join(parts[:4], "."),
		"json":            `{"protected":"` + parts[0] + `"}`,
		"whitespace":      jwe[:20] + " " + jwe[20:],
		"empty":           "",
		"header not json": mutate(0, func(string) string { return base64.RawURLEncoding.EncodeToString([]byte("[]")) }),
		"header not b64":  mutate(0, func(string) string { return "!!" }),
		"key on other curve": func() string {
			j, _ := Encrypt(mustPub(t, mustKey(t, P256)), SuiteFor(A256GCM), []byte(sample))
			return j
		}(),
	}
	for name, bad := range cases {
		if out, err := Decrypt(bad, k, allSuites()); err != ErrDecrypt || out != nil {
			t.Errorf("%s: %q %v, want exactly ErrDecrypt", name, out, err)
		}
	}
	// a compressed JWE made by go-jose itself is refused
	enc, _ := jose.NewEncrypter(jose.A256GCM, jose.Recipient{Algorithm: jose.ECDH_ES_A256KW, Key: mustPub(t, k)}, &jose.EncrypterOptions{Compression: jose.DEFLATE})
	obj, _ := enc.Encrypt([]byte(sample))
	zipped, _ := obj.CompactSerialize()
	if _, err := Decrypt(zipped, k, allSuites()); err != ErrDecrypt {
		t.Errorf("compressed JWE: %v", err)
	}
}

func TestParsePublicKeyHeader(t *testing.T) {
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	der521, _ := x509.MarshalPKIXPublicKey(&p521.PublicKey)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	der224, _ := x509.MarshalPKIXPublicKey(&p224.PublicKey)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	derRSA, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	for name, c := range map[string]struct {
		hdr   string
		err   error
		curve string
	}{
		"p521":        {base64.StdEncoding.EncodeToString(der521), ErrUnsupportedCurve, "secp521r1"},
		"p224":        {base64.StdEncoding.EncodeToString(der224), ErrUnsupportedCurve, "secp224r1"},
		"rsa":         {base64.StdEncoding.EncodeToString(derRSA), ErrInvalidPublicKey, ""},
		"not base64":  {"***", ErrInvalidPublicKey, ""},
		"empty":       {"", ErrInvalidPublicKey, ""},
		"garbage der": {base64.StdEncoding.EncodeToString([]byte("hello")), ErrInvalidPublicKey, ""},
		"pem":         {"-----BEGIN PUBLIC KEY-----", ErrInvalidPublicKey, ""},
	} {
		_, _, err := ParsePublicKeyHeader(c.hdr)
		if !errors.Is(err, c.err) {
			t.Errorf("%s: %v, want %v", name, err, c.err)
		}
		var uc *UnsupportedCurveError
		if c.curve != "" && (!errors.As(err, &uc) || uc.Name != c.curve) {
			t.Errorf("%s: curve name %v", name, err)
		}
	}
}

func TestCipherFromContentType(t *testing.T) {
	for ct, want := range map[string]struct {
		c    Cipher
		name string
		ok   bool
		err  error
	}{
		"application/encrypted.a256gcm+json":                {A256GCM, "a256gcm", true, nil},
		"Application/Encrypted.A128GCM+JSON; charset=utf-8": {A128GCM, "a128gcm", true, nil},
		"application/encrypted.a192gcm+json":                {0, "a192gcm", true, ErrUnknownCipher},
		"application/json":                                  {0, "", false, nil},
		"application/encrypted.a256gcm":                     {0, "", false, nil},
		"":                                                  {0, "", false, nil},
	} {
		c, name, ok, err := CipherFromContentType(ct)
		if c != want.c || name != want.name || ok != want.ok || !errors.Is(err, want.err) {
			t.Errorf("%q: %v %q %v %v", ct, c, name, ok, err)
		}
	}
}

func TestKeyNeverPrinted(t *testing.T) {
	k := mustKey(t, P384)
	raw, err := k.priv.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	d := new(big.Int).SetBytes(raw)
	for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%v %+v %#v %s", k, k, k, k)} {
		if strings.Contains(s, d.String()) || strings.Contains(s, d.Text(16)) || strings.Contains(s, hex.EncodeToString(raw)) {
			t.Fatalf("printing a key reveals it: %s", s)
		}
	}
}

func BenchmarkDecrypt4KiB(b *testing.B) {
	for _, c := range curves {
		b.Run(c.String(), func(b *testing.B) {
			k := mustKey(b, c)
			body := []byte(`{"data":"` + strings.Repeat("x", 4096-11) + `"}`)
			jwe, _ := Encrypt(mustPub(b, k), SuiteFor(A256GCM), body)
			allowed := []Suite{SuiteFor(A256GCM)}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Decrypt(jwe, k, allowed); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
