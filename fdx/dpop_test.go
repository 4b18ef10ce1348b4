package fdx

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	stdhmac "crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/mxgate/mxgate/replay"
)

var proofNow = time.Unix(1_750_000_000, 0)

const (
	proofURL   = "https://fdx.bank.example/fdx/v6/core/accounts/acc-1/transactions"
	proofToken = "the-access-token"
)

// b64 is base64url without padding of v's JSON (or of v's bytes).
func b64(v any) string {
	if b, ok := v.([]byte); ok {
		return base64.RawURLEncoding.EncodeToString(b)
	}
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

// publicJWK is key's public JWK as a map, to put in a header.
func publicJWK(t testing.TB, key crypto.Signer) map[string]any {
	t.Helper()
	raw, err := json.Marshal(jose.JSONWebKey{Key: key.Public()})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return m
}

func thumbprint(t testing.TB, key crypto.Signer) string {
	t.Helper()
	tp, err := (&jose.JSONWebKey{Key: key.Public()}).Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(tp)
}

// goodProofClaims are the claims of a proof for proofURL and proofToken
// at proofNow.
func goodProofClaims(jti string) map[string]any {
	return map[string]any{"jti": jti, "htm": "GET", "htu": proofURL, "iat": proofNow.Unix(), "ath": TokenHash(proofToken)}
}

// signProof signs header and claims with key by hand (so that any header
// can be made): ES256, PS256, EdDSA, HS256 (key's bytes), none.
func signProof(t testing.TB, key any, header, claims map[string]any) string {
	t.Helper()
	input := b64(header) + "." + b64(claims)
	sum := sha256.Sum256([]byte(input))
	var sig []byte
	var err error
	switch alg, _ := header["alg"].(string); alg {
	case "ES256":
		k := key.(*ecdsa.PrivateKey)
		var r, s *big.Int
		r, s, err = ecdsa.Sign(rand.Reader, k, sum[:])
		sig = append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...)
	case "PS256":
		sig, err = rsa.SignPSS(rand.Reader, key.(*rsa.PrivateKey), crypto.SHA256, sum[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	case "RS256":
		sig, err = rsa.SignPKCS1v15(rand.Reader, key.(*rsa.PrivateKey), crypto.SHA256, sum[:])
	case "EdDSA":
		sig = ed25519.Sign(key.(ed25519.PrivateKey), []byte(input))
	case "HS256":
		m := stdhmac.New(sha256.New, key.([]byte))
		m.Write([]byte(input))
		sig = m.Sum(nil)
	case "none":
	}
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + b64(sig)
}

func ecKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// proofFor is a good ES256 proof by key for jti.
func proofFor(t testing.TB, key *ecdsa.PrivateKey, jti string) string {
	return signProof(t, key, map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": publicJWK(t, key)}, goodProofClaims(jti))
}

func checker(t testing.TB) *ProofChecker {
	t.Helper()
	m, err := replay.NewMemory(time.Hour, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return &ProofChecker{MaxAge: time.Minute, Leeway: 5 * time.Second, Replay: m}
}

func parseAndCheck(c *ProofChecker, raw string, req ProofRequest, algs []jose.SignatureAlgorithm) (CheckResult, error) {
	p, err := ParseProof(raw, algs)
	if err != nil {
		return CheckResult{}, err
	}
	return c.Check(context.Background(), p, req, proofNow)
}

func TestDPoPProofGood(t *testing.T) {
	c := checker(t)
	ec := ecKey(t)
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, ek, _ := ed25519.GenerateKey(rand.Reader)
	all := []jose.SignatureAlgorithm{jose.ES256, jose.PS256, jose.EdDSA}
	for name, tc := range map[string]struct {
		key crypto.Signer
		alg string
	}{"ES256": {ec, "ES256"}, "PS256": {rk, "PS256"}, "EdDSA": {ek, "EdDSA"}} {
		raw := signProof(t, tc.key, map[string]any{"typ": "dpop+jwt", "alg": tc.alg, "jwk": publicJWK(t, tc.key)}, goodProofClaims("jti-"+name))
		req := ProofRequest{Method: "GET", URL: proofURL, AccessToken: proofToken, KeyThumbprint: thumbprint(t, tc.key)}
		if _, err := parseAndCheck(c, raw, req, all); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		// the same proof again is a replay
		_, err := parseAndCheck(c, raw, req, all)
		var pe *ProofError
		if !errors.As(err, &pe) || pe.Code != CodeInvalidProof || !strings.Contains(pe.Reason, "jti was used before") {
			t.Errorf("%s replayed: %v", name, err)
		}
	}
	// EdDSA is not in the default list
	raw := signProof(t, ek, map[string]any{"typ": "dpop+jwt", "alg": "EdDSA", "jwk": publicJWK(t, ek)}, goodProofClaims("ed-default"))
	if _, err := ParseProof(raw, DefaultProofAlgorithms); err == nil || !strings.Contains(err.Error(), "algorithm is not allowed") {
		t.Errorf("EdDSA under the default list: %v", err)
	}
}

// TestDPoPProofRefusals: every hostile proof is refused with its reason
// and code, and records no jti.
func TestDPoPProofRefusals(t *testing.T) {
	key, other := ecKey(t), ecKey(t)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	jwk := publicJWK(t, key)
	hdr := func(extra map[string]any) map[string]any {
		h := map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk}
		for k, v := range extra {
			if v == nil {
				delete(h, k)
			} else {
				h[k] = v
			}
		}
		return h
	}
	claims := func(jti string, extra map[string]any) map[string]any {
		c := goodProofClaims(jti)
		for k, v := range extra {
			if v == nil {
				delete(c, k)
			} else {
				c[k] = v
			}
		}
		return c
	}
	privJWK := map[string]any{}
	raw, _ := json.Marshal(jose.JSONWebKey{Key: key})
	_ = json.Unmarshal(raw, &privJWK)
	good := ProofRequest{Method: "GET", URL: proofURL, AccessToken: proofToken, KeyThumbprint: thumbprint(t, key)}
	ok := signProof(t, key, hdr(nil), claims("fine", nil))
	tampered := ok[:len(ok)-4] + "AAAA"
	for _, tc := range []struct {
		name   string
		raw    string
		req    ProofRequest
		code   string
		reason string
	}{
		{"none", signProof(t, nil, hdr(map[string]any{"alg": "none"}), claims("a", nil)), good, CodeInvalidProof, "algorithm is not allowed"},
		{"HS256 with the public key as secret", signProof(t, []byte(b64(jwk)), hdr(map[string]any{"alg": "HS256"}), claims("b", nil)), good, CodeInvalidProof, "algorithm is not allowed"},
		{"RS256 not in the list", signProof(t, small, hdr(map[string]any{"alg": "RS256", "jwk": publicJWK(t, small)}), claims("c", nil)), good, CodeInvalidProof, "algorithm is not allowed"},
		{"a private key in the header", signProof(t, key, hdr(map[string]any{"jwk": privJWK}), claims("d", nil)), good, CodeInvalidProof, "private key material"},
		{"jku", signProof(t, key, hdr(map[string]any{"jku": "https://evil.example/jwks"}), claims("e", nil)), good, CodeInvalidProof, "has jku"},
		{"x5c", signProof(t, key, hdr(map[string]any{"x5c": []string{"MII"}}), claims("f", nil)), good, CodeInvalidProof, "has x5c"},
		{"x5c in the jwk", signProof(t, key, hdr(map[string]any{"jwk": map[string]any{"kty": "EC", "crv": "P-256", "x": jwk["x"], "y": jwk["y"], "x5c": []string{"MII"}}}), claims("f2", nil)), good, CodeInvalidProof, "jwk has x5c"},
		{"no jwk", signProof(t, key, hdr(map[string]any{"jwk": nil}), claims("g", nil)), good, CodeInvalidProof, "no jwk"},
		{"typ JWT", signProof(t, key, hdr(map[string]any{"typ": "JWT"}), claims("h", nil)), good, CodeInvalidProof, "typ is not dpop+jwt"},
		{"no typ", signProof(t, key, hdr(map[string]any{"typ": nil}), claims("i", nil)), good, CodeInvalidProof, "typ is not dpop+jwt"},
		{"a 1024-bit RSA key", signProof(t, small, hdr(map[string]any{"alg": "PS256", "jwk": publicJWK(t, small)}), claims("j", nil)), good, CodeInvalidProof, "2048 to 4096 bits"},
		{"another key's jwk", signProof(t, key, hdr(map[string]any{"jwk": publicJWK(t, other)}), claims("k", nil)), good, CodeInvalidProof, "signature does not verify"},
		{"tampered signature", tampered, good, CodeInvalidProof, "signature does not verify"},
		{"a proof by another key", proofFor(t, other, "l"), good, CodeInvalidToken, "not the one the token is bound to"},
		{"wrong htm", signProof(t, key, hdr(nil), claims("m", map[string]any{"htm": "POST"})), good, CodeInvalidProof, "htm is not"},
		{"htm in lower case", signProof(t, key, hdr(nil), claims("m2", map[string]any{"htm": "get"})), good, CodeInvalidProof, "htm is not"},
		{"wrong htu path", signProof(t, key, hdr(nil), claims("n", map[string]any{"htu": "https://fdx.bank.example/fdx/v6/core/accounts/acc-9/transactions"})), good, CodeInvalidProof, "htu is not the request's URL"},
		{"wrong htu host", signProof(t, key, hdr(nil), claims("o", map[string]any{"htu": "https://fdx.evil.example/fdx/v6/core/accounts/acc-1/transactions"})), good, CodeInvalidProof, "htu is not the request's URL"},
		{"htu over http", signProof(t, key, hdr(nil), claims("o2", map[string]any{"htu": "http://fdx.bank.example/fdx/v6/core/accounts/acc-1/transactions"})), good, CodeInvalidProof, "htu is not the request's URL"},
		{"htu relative", signProof(t, key, hdr(nil), claims("p", map[string]any{"htu": "/fdx/v6/core/accounts/acc-1/transactions"})), good, CodeInvalidProof, "not an absolute http(s) URL"},
		{"htu with user information", signProof(t, key, hdr(nil), claims("q", map[string]any{"htu": "https://u:p@fdx.bank.example/fdx/v6/core/accounts/acc-1/transactions"})), good, CodeInvalidProof, "not an absolute http(s) URL"},
		{"stale iat", signProof(t, key, hdr(nil), claims("r", map[string]any{"iat": proofNow.Add(-61 * time.Second).Unix()})), good, CodeInvalidProof, "older than its maximum age"},
		{"future iat", signProof(t, key, hdr(nil), claims("s", map[string]any{"iat": proofNow.Add(10 * time.Second).Unix()})), good, CodeInvalidProof, "in the future"},
		{"iat as a string", signProof(t, key, hdr(nil), claims("t", map[string]any{"iat": "1750000000"})), good, CodeInvalidProof, "RFC 9449's types"},
		{"no iat", signProof(t, key, hdr(nil), claims("u", map[string]any{"iat": nil})), good, CodeInvalidProof, "no iat"},
		{"no jti", signProof(t, key, hdr(nil), claims("v", map[string]any{"jti": nil})), good, CodeInvalidProof, "no jti"},
		{"a long jti", signProof(t, key, hdr(nil), claims(strings.Repeat("j", 257), nil)), good, CodeInvalidProof, "longer than 256"},
		{"no ath", signProof(t, key, hdr(nil), claims("w", map[string]any{"ath": nil})), good, CodeInvalidProof, "no ath"},
		{"ath of another token", signProof(t, key, hdr(nil), claims("x", map[string]any{"ath": TokenHash("another-token")})), good, CodeInvalidProof, "ath is not"},
		{"larger than 8 KiB", signProof(t, key, hdr(map[string]any{"pad": strings.Repeat("x", 8<<10)}), claims("y", nil)), good, CodeInvalidProof, "larger than 8 KiB"},
		{"not a JWS", "not.a.jws", good, CodeInvalidProof, "header is not"},
		{"four parts", ok + ".x", good, CodeInvalidProof, "not a compact JWS"},
		{"null claims", signProof(t, key, hdr(nil), nil), good, CodeInvalidProof, "no jti"},
	} {
		c := checker(t)
		_, err := parseAndCheck(c, tc.raw, tc.req, DefaultProofAlgorithms)
		var pe *ProofError
		if !errors.As(err, &pe) || !errors.Is(err, ErrInvalidProof) || pe.Code != tc.code || !strings.Contains(pe.Reason, tc.reason) {
			t.Errorf("%s: %v, want %s %q", tc.name, err, tc.code, tc.reason)
		}
		if n := c.Replay.(*replay.Memory).Len(); n != 0 {
			t.Errorf("%s: %d jti recorded", tc.name, n)
		}
	}
	// the good proof passes, once
	c := checker(t)
	if _, err := parseAndCheck(c, ok, good, DefaultProofAlgorithms); err != nil {
		t.Fatalf("good: %v", err)
	}
}

// TestDPoPProofJTIScope: a jti is spent per key: another key's proof with
// the same jti is not a replay.
func TestDPoPProofJTIScope(t *testing.T) {
	c := checker(t)
	a, b := ecKey(t), ecKey(t)
	for _, k := range []*ecdsa.PrivateKey{a, b} {
		req := ProofRequest{Method: "GET", URL: proofURL, AccessToken: proofToken, KeyThumbprint: thumbprint(t, k)}
		if _, err := parseAndCheck(c, proofFor(t, k, "same-jti"), req, DefaultProofAlgorithms); err != nil {
			t.Fatal(err)
		}
	}
	if JTIKey("a", "bc") == JTIKey("ab", "c") {
		t.Error("the jti key is ambiguous")
	}
}

// TestDPoPProofStore: a replay store that cannot answer refuses the proof
// with its own error.
func TestDPoPProofStore(t *testing.T) {
	m, _ := replay.NewMemory(time.Hour, 1)
	c := &ProofChecker{MaxAge: time.Minute, Replay: m}
	key := ecKey(t)
	req := ProofRequest{Method: "GET", URL: proofURL, AccessToken: proofToken, KeyThumbprint: thumbprint(t, key)}
	if _, err := parseAndCheck(c, proofFor(t, key, "1"), req, DefaultProofAlgorithms); err != nil {
		t.Fatal(err)
	}
	if _, err := parseAndCheck(c, proofFor(t, key, "2"), req, DefaultProofAlgorithms); !errors.Is(err, replay.ErrFull) {
		t.Fatalf("a full store: %v", err)
	}
	if w := c.ReplayWindow(); w != time.Minute+time.Second {
		t.Errorf("replay window %v", w)
	}
}

func TestDPoPNonces(t *testing.T) {
	key := []byte(strings.Repeat("k", 32))
	n, err := NewNonces(key, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewNonces(key[:31], time.Minute); err == nil {
		t.Error("a short key accepted")
	}
	other, _ := NewNonces([]byte(strings.Repeat("o", 32)), time.Minute)
	at := proofNow.Truncate(time.Minute)
	issued := n.Issue(at)
	for _, tc := range []struct {
		name        string
		nonce       string
		now         time.Time
		ok, current bool
	}{
		{"its period", issued, at.Add(59 * time.Second), true, true},
		{"the next period", issued, at.Add(time.Minute + 30*time.Second), true, false},
		{"two periods on", issued, at.Add(2 * time.Minute), false, false},
		{"a clock behind", issued, at.Add(-time.Second), true, true},
		{"two periods behind", issued, at.Add(-61 * time.Second), false, false},
		{"another key's", other.Issue(at), at, false, false},
		{"garbage", strings.Repeat("A", 32), at, false, false},
		{"short", issued[:31], at, false, false},
	} {
		ok, current := n.Check(tc.nonce, tc.now)
		if ok != tc.ok || current != tc.current {
			t.Errorf("%s: %v %v", tc.name, ok, current)
		}
	}

	// in a proof: none, a foreign one, a stale one, a good one
	ek := ecKey(t)
	c := checker(t)
	c.Nonces = n
	req := ProofRequest{Method: "GET", URL: proofURL, AccessToken: proofToken, KeyThumbprint: thumbprint(t, ek)}
	sign := func(jti, nonce string) string {
		cl := goodProofClaims(jti)
		if nonce != "" {
			cl["nonce"] = nonce
		}
		return signProof(t, ek, map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": publicJWK(t, ek)}, cl)
	}
	for _, tc := range []struct {
		name, nonce, code string
		stale             bool
	}{
		{"no nonce", "", CodeUseNonce, false},
		{"another key's", other.Issue(proofNow), CodeUseNonce, false},
		{"expired", n.Issue(proofNow.Add(-3 * time.Minute)), CodeUseNonce, false},
		{"the last period's", n.Issue(proofNow.Add(-time.Minute)), "", true},
		{"this period's", n.Issue(proofNow), "", false},
	} {
		res, err := parseAndCheck(c, sign(tc.name, tc.nonce), req, DefaultProofAlgorithms)
		var pe *ProofError
		switch {
		case tc.code == "" && (err != nil || res.StaleNonce != tc.stale):
			t.Errorf("%s: %v %+v", tc.name, err, res)
		case tc.code != "" && (!errors.As(err, &pe) || pe.Code != tc.code):
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

func TestNormalizeHTU(t *testing.T) {
	for in, want := range map[string]string{
		"https://fdx.bank.example/fdx/v6/core/accounts":                  "https://fdx.bank.example/fdx/v6/core/accounts",
		"HTTPS://FDX.Bank.Example:443/fdx/v6/core/accounts?x=1#frag":     "https://fdx.bank.example/fdx/v6/core/accounts",
		"https://fdx.bank.example:8443/a":                                "https://fdx.bank.example:8443/a",
		"http://fdx.bank.example:80/a":                                   "http://fdx.bank.example/a",
		"http://fdx.bank.example:443/a":                                  "http://fdx.bank.example:443/a",
		"https://fdx.bank.example":                                       "https://fdx.bank.example/",
		"https://fdx.bank.example/%7Eacc/%c3%a9/%2f":                     "https://fdx.bank.example/~acc/%C3%A9/%2F",
		"https://fdx.bank.example/a/./b/../c/%2E%2E/d":                   "https://fdx.bank.example/a/d",
		"https://[::1]:443/a":                                            "https://[::1]/a",
		"https://[2001:DB8::1]:8443/a":                                   "https://[2001:db8::1]:8443/a",
		"https://127.0.0.1:8443/fdx/v6/core/accounts/acc-1/transactions": "https://127.0.0.1:8443/fdx/v6/core/accounts/acc-1/transactions",
	} {
		got, err := NormalizeHTU(in)
		if err != nil || got != want {
			t.Errorf("NormalizeHTU(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "/a", "ftp://x/a", "https:///a", "https://u@x/a", "https://x:0/a", "https://x:99999/a", "https://x:+1/a",
		"mailto:a@b", "https://x%41/a", "https://[::1/a", "https://a b/x", "https://:443/x"} {
		if got, err := NormalizeHTU(bad); err == nil {
			t.Errorf("NormalizeHTU(%q) = %q", bad, got)
		}
	}
	for _, tc := range []struct{ scheme, host, want string }{
		{"https", "FDX.bank.example:443", "https://fdx.bank.example"},
		{"https", "fdx.bank.example:8443", "https://fdx.bank.example:8443"},
		{"http", "localhost", "http://localhost"},
	} {
		if got, err := NormalizeOrigin(tc.scheme, tc.host); err != nil || got != tc.want {
			t.Errorf("NormalizeOrigin(%s, %s) = %q %v", tc.scheme, tc.host, got, err)
		}
	}
	for _, host := range []string{"a/b", "a?b", "a#b", "u@a", "a:b:c", "", "a b", "a\\b"} {
		if got, err := NormalizeOrigin("https", host); err == nil {
			t.Errorf("NormalizeOrigin(%q) = %q", host, got)
		}
	}
	if got := RequestHTU("https://fdx.bank.example", "/fdx/v6/core/accounts/caf%c3%a9"); got != "https://fdx.bank.example/fdx/v6/core/accounts/caf%C3%A9" {
		t.Errorf("RequestHTU: %q", got)
	}
}
