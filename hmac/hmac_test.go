package hmac

import (
	"bytes"
	stdhmac "crypto/hmac"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// The golden vector of PROTOCOLS.md and MDX On Demand v5's own example.
const (
	goldenKey  = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo3ODkwMTI="
	goldenMD5  = "e9a179f879165fd64bdeaa57032d342f"
	goldenHMAC = "e47928dcd29e494116961ad12884c8fd7aae07f2"
	mdxType    = "application/vnd.moneydesktop.mdx.v5+xml"
)

func goldenRequest(t testing.TB) (*Request, []byte) {
	t.Helper()
	body, err := os.ReadFile("testdata/golden_session.xml")
	if err != nil {
		t.Fatal(err)
	}
	return &Request{
		Method:      "POST",
		ContentMD5:  ContentMD5(body),
		ContentType: mdxType,
		Date:        "1382975431",
		Accept:      mdxType,
		SessionKey:  "",
		Resource:    "/sessions",
	}, body
}

func mustKey(t testing.TB, b64 string) Key {
	t.Helper()
	k, err := ParseKey(b64)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestGoldenVector(t *testing.T) {
	r, body := goldenRequest(t)
	if got := ContentMD5(body); got != goldenMD5 {
		t.Fatalf("Content-MD5 = %s, want %s", got, goldenMD5)
	}
	wantCanon := "POST\ne9a179f879165fd64bdeaa57032d342f\n" + mdxType + "\n1382975431\n" + mdxType + "\n\n/sessions"
	if got := r.Canonical(); got != wantCanon {
		t.Fatalf("canonical string = %q, want %q", got, wantCanon)
	}
	key := mustKey(t, goldenKey)
	sig, err := Sign(SHA1, key, r)
	if err != nil {
		t.Fatal(err)
	}
	if sig != goldenHMAC {
		t.Fatalf("MDX-HMAC = %s, want %s", sig, goldenHMAC)
	}
	v, err := NewVerifier(SHA1, key)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{goldenHMAC, strings.ToUpper(goldenHMAC)} {
		if err := v.Verify(r, s); err != nil {
			t.Errorf("Verify(%q): %v", s, err)
		}
	}
	// Using the base64 text itself as the key is a classic mistake and must
	// give a different signature.
	wrong := stdhmac.New(SHA1.hashFunc(), []byte(goldenKey))
	wrong.Write([]byte(wantCanon))
	if got := hex.EncodeToString(wrong.Sum(nil)); !strings.HasPrefix(got, "f0a7f2fc") {
		t.Fatalf("undecoded-key signature = %s, want f0a7f2fc…", got)
	}
	if err := v.Verify(r, hex.EncodeToString(wrong.Sum(nil))); !errors.Is(err, ErrSignatureMismatch) {
		t.Fatalf("undecoded-key signature verified: %v", err)
	}
}

// oracle computes the signature independently of AppendCanonical.
func oracle(alg Algorithm, key []byte, r *Request) string {
	canon := strings.Join([]string{r.Method, r.ContentMD5, r.ContentType, r.Date, r.Accept, r.SessionKey, r.Resource}, "\n")
	m := stdhmac.New(alg.hashFunc(), key)
	m.Write([]byte(canon))
	return hex.EncodeToString(m.Sum(nil))
}

func keyOf(n int, seed byte) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return base64.StdEncoding.EncodeToString(b)
}

func TestRoundTripEveryAlgorithm(t *testing.T) {
	r, _ := goldenRequest(t)
	for _, alg := range Algorithms() {
		for _, n := range []int{MinKeyLen, 48, MaxKeyLen} {
			t.Run(fmt.Sprintf("%s/%d", alg, n), func(t *testing.T) {
				b64 := keyOf(n, byte(alg))
				key := mustKey(t, b64)
				s, err := NewSigner(alg, key)
				if err != nil {
					t.Fatal(err)
				}
				sig := s.Sign(r)
				raw, _ := base64.StdEncoding.DecodeString(b64)
				if want := oracle(alg, raw, r); sig != want {
					t.Fatalf("Sign = %s, oracle %s", sig, want)
				}
				if len(sig) != 2*alg.Size() || sig != strings.ToLower(sig) {
					t.Fatalf("signature %q is not lowercase hex of %d bytes", sig, alg.Size())
				}
				v, err := NewVerifier(alg, key)
				if err != nil {
					t.Fatal(err)
				}
				if err := v.Verify(r, sig); err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if err := v.Verify(r, strings.ToUpper(sig)); err != nil {
					t.Fatalf("Verify upper case: %v", err)
				}
			})
		}
	}
}

func TestAnyFieldChangeFails(t *testing.T) {
	base, body := goldenRequest(t)
	key := mustKey(t, goldenKey)
	for _, alg := range Algorithms() {
		s, _ := NewSigner(alg, key)
		v, _ := NewVerifier(alg, key)
		sig := s.Sign(base)
		mutations := map[string]func(r *Request){
			"verb":         func(r *Request) { r.Method = "PUT" },
			"content-md5":  func(r *Request) { r.ContentMD5 = ContentMD5(append(append([]byte{}, body...), ' ')) },
			"content-type": func(r *Request) { r.ContentType = "application/xml" },
			"date":         func(r *Request) { r.Date = "1382975432" },
			"accept":       func(r *Request) { r.Accept = "application/vnd.moneydesktop.mdx.v4+xml" },
			"session-key":  func(r *Request) { r.SessionKey = "x" },
			"resource":     func(r *Request) { r.Resource = "/accounts" },
			// a field boundary moved: same bytes, different fields
			"boundary": func(r *Request) { r.ContentType, r.Date = r.ContentType+"\n"+r.Date, "" },
		}
		for name, mutate := range mutations {
			r := *base
			mutate(&r)
			if err := v.Verify(&r, sig); !errors.Is(err, ErrSignatureMismatch) {
				t.Errorf("%s: changing %s: Verify = %v, want mismatch", alg, name, err)
			}
		}
	}
}

func TestBodyByteChangeFailsMD5(t *testing.T) {
	_, body := goldenRequest(t)
	for i := range body {
		b := append([]byte{}, body...)
		b[i] ^= 0x01
		if err := CheckContentMD5(b, goldenMD5); !errors.Is(err, ErrContentMD5Mismatch) {
			t.Fatalf("byte %d flipped: CheckContentMD5 = %v", i, err)
		}
	}
	if err := CheckContentMD5(body, goldenMD5); err != nil {
		t.Fatal(err)
	}
	if err := CheckContentMD5(body, strings.ToUpper(goldenMD5)); err != nil {
		t.Fatalf("upper-case hex: %v", err)
	}
	if err := CheckContentMD5(body, ""); !errors.Is(err, ErrContentMD5Missing) {
		t.Fatalf("missing header on a body: %v", err)
	}
	b64 := base64.StdEncoding.EncodeToString([]byte{0xe9, 0xa1, 0x79, 0xf8, 0x79, 0x16, 0x5f, 0xd6, 0x4b, 0xde, 0xaa, 0x57, 0x03, 0x2d, 0x34, 0x2f})
	if err := CheckContentMD5(body, b64); !errors.Is(err, ErrContentMD5Mismatch) {
		t.Fatalf("base64 MD5 (RFC 1864 style) accepted: %v", err)
	}
}

func TestEmptyBodyMD5(t *testing.T) {
	if ContentMD5(nil) != EmptyBodyMD5 {
		t.Fatal("EmptyBodyMD5 is not the MD5 of the empty string")
	}
	for _, h := range []string{"", EmptyBodyMD5, strings.ToUpper(EmptyBodyMD5)} {
		if err := CheckContentMD5(nil, h); err != nil {
			t.Errorf("empty body with Content-MD5 %q: %v", h, err)
		}
	}
	if err := CheckContentMD5(nil, goldenMD5); !errors.Is(err, ErrContentMD5Mismatch) {
		t.Errorf("empty body with another MD5: %v", err)
	}
}

func TestKeyRotation(t *testing.T) {
	r, _ := goldenRequest(t)
	oldKey, newKey, otherKey := mustKey(t, keyOf(32, 1)), mustKey(t, keyOf(40, 2)), mustKey(t, keyOf(64, 3))
	v, err := NewVerifier(SHA256, oldKey, newKey)
	if err != nil {
		t.Fatal(err)
	}
	for name, k := range map[string]Key{"old": oldKey, "new": newKey} {
		sig, _ := Sign(SHA256, k, r)
		if err := v.Verify(r, sig); err != nil {
			t.Errorf("%s key: %v", name, err)
		}
	}
	sig, _ := Sign(SHA256, otherKey, r)
	if err := v.Verify(r, sig); !errors.Is(err, ErrSignatureMismatch) {
		t.Errorf("unknown key verified: %v", err)
	}
	// a signature made with the right key but another algorithm
	sig1, _ := Sign(SHA1, newKey, r)
	if err := v.Verify(r, sig1); !errors.Is(err, ErrMalformedSignature) {
		t.Errorf("sha1 signature under sha256: %v", err)
	}
}

func TestVerifyMalformed(t *testing.T) {
	r, _ := goldenRequest(t)
	v, _ := NewVerifier(SHA1, mustKey(t, goldenKey))
	cases := map[string]error{
		"":                      ErrMissingSignature,
		goldenHMAC[:39]:         ErrMalformedSignature,
		goldenHMAC + "0":        ErrMalformedSignature,
		"g" + goldenHMAC[1:]:    ErrMalformedSignature,
		" " + goldenHMAC[1:]:    ErrMalformedSignature,
		strings.Repeat("0", 40): ErrSignatureMismatch,
		goldenHMAC[:39] + "3":   ErrSignatureMismatch,
		base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xff}, 30)): ErrMalformedSignature,
	}
	for sig, want := range cases {
		if err := v.Verify(r, sig); !errors.Is(err, want) {
			t.Errorf("Verify(%q) = %v, want %v", sig, err, want)
		}
	}
}

func TestParseKey(t *testing.T) {
	for _, n := range []int{0, 1, 16, 31, 65, 128} {
		_, err := ParseKey(keyOf(n, 9))
		if !errors.Is(err, ErrKeyLength) {
			t.Errorf("%d-byte key: %v, want ErrKeyLength", n, err)
		}
		if err != nil && strings.Contains(err.Error(), keyOf(n, 9)) && n > 0 {
			t.Errorf("error reveals the key: %v", err)
		}
	}
	for _, n := range []int{32, 33, 48, 63, 64} {
		if _, err := ParseKey(keyOf(n, 9)); err != nil {
			t.Errorf("%d-byte key: %v", n, err)
		}
	}
	if _, err := ParseKey("not base64!"); !errors.Is(err, ErrKeyEncoding) {
		t.Errorf("bad base64: %v", err)
	}
	if _, err := ParseKey(" " + goldenKey + "\n"); err != nil {
		t.Errorf("key with surrounding white space: %v", err)
	}
	if _, err := ParseKey(strings.TrimRight(goldenKey, "=")); err != nil {
		t.Errorf("unpadded key: %v", err)
	}
	k := mustKey(t, goldenKey)
	for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%v %+v %#v %s", k, k, k, k)} {
		if strings.Contains(s, "ABCDEF") || strings.Contains(s, goldenKey) {
			t.Errorf("printing a key reveals it: %s", s)
		}
	}
	if _, err := NewVerifier(SHA1); !errors.Is(err, ErrNoKeys) {
		t.Errorf("NewVerifier without keys: %v", err)
	}
	if _, err := NewVerifier(0, k); !errors.Is(err, ErrUnknownAlgorithm) {
		t.Errorf("NewVerifier with algorithm 0: %v", err)
	}
	if _, err := NewSigner(SHA1, Key{}); !errors.Is(err, ErrNoKeys) {
		t.Errorf("NewSigner with zero key: %v", err)
	}
}

func TestParseAlgorithm(t *testing.T) {
	for _, a := range Algorithms() {
		for _, s := range []string{a.String(), strings.ToUpper(a.String()), "SHA-" + strings.TrimPrefix(a.String(), "sha")} {
			got, err := ParseAlgorithm(s)
			if err != nil || got != a {
				t.Errorf("ParseAlgorithm(%q) = %v, %v", s, got, err)
			}
		}
	}
	for _, s := range []string{"", "md5", "sha3", "sha256x"} {
		if _, err := ParseAlgorithm(s); !errors.Is(err, ErrUnknownAlgorithm) {
			t.Errorf("ParseAlgorithm(%q) = %v", s, err)
		}
	}
}

func TestCheckDate(t *testing.T) {
	now := time.Unix(1382975431, 0)
	cases := []struct {
		date string
		skew time.Duration
		want error
	}{
		{"1382975431", 5 * time.Minute, nil},
		{"1382975731", 5 * time.Minute, nil},
		{"1382975131", 5 * time.Minute, nil},
		{"1382975732", 5 * time.Minute, ErrDateSkew},
		{"1382975130", 5 * time.Minute, ErrDateSkew},
		{"", 5 * time.Minute, ErrDateMissing},
		{"Tue, 29 Oct 2013 16:30:31 GMT", 5 * time.Minute, ErrDateMalformed},
		{"-1382975431", 5 * time.Minute, ErrDateMalformed},
		{"+1382975431", 5 * time.Minute, ErrDateMalformed},
		{"1382975431.5", 5 * time.Minute, ErrDateMalformed},
		{"99999999999999999999", 5 * time.Minute, ErrDateMalformed},
		{"1382975431", 0, ErrDateSkew},
		{"1382975431", -time.Second, ErrDateSkew},
	}
	for _, c := range cases {
		if err := CheckDate(c.date, now, c.skew); !errors.Is(err, c.want) {
			t.Errorf("CheckDate(%q, %v) = %v, want %v", c.date, c.skew, err, c.want)
		}
	}
	if FormatDate(now) != "1382975431" {
		t.Errorf("FormatDate = %s", FormatDate(now))
	}
}
