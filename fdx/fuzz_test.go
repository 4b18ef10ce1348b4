package fdx

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// FuzzMatch: matching any method and path never panics, refuses every
// path that cleaning would change, and returns only a rule of the method.
func FuzzMatch(f *testing.F) {
	t := DefaultTable()
	f.Add("GET", "/fdx/v6/core/accounts/a1/transactions")
	f.Add("HEAD", "/fdx/v6/core/accounts/../accounts")
	f.Add("DELETE", "//fdx/v6/events/x/revocation/y")
	f.Add("", "")
	f.Fuzz(func(tt *testing.T, method, p string) {
		r, err := t.Match(method, p)
		if p == "" || path.Clean(p) != p {
			if !errors.Is(err, ErrPathNotCanonical) {
				tt.Fatalf("non-canonical %q: %v", p, err)
			}
			return
		}
		want := method
		if method == "HEAD" {
			want = "GET"
		}
		if r != nil && r.Method != want {
			tt.Fatalf("%s %s matched a %s rule", method, p, r.Method)
		}
	})
}

// FuzzCanonicalPath: whatever path Match lets reach a rule is one that
// every reader resolves alike; everything else is refused as not
// canonical, never matched.
func FuzzCanonicalPath(f *testing.F) {
	t := DefaultTable()
	for _, s := range []string{"/fdx/v6/core/accounts", "/fdx/v6/core/accounts\\a1", "/fdx/v6/core/accounts;x=1",
		"/fdx/v6/core/accounts%5ca1", "/fdx/v6/core/accounts%3bx", "/fdx/v6/core/accounts/a%2f..%2f..%2fconsents",
		"/fdx/v6/consents/%2e%2e", "/fdx/v6/core/accounts/", "/fdx/v6/core/accounts/a%20b/transactions"} {
		f.Add(s)
	}
	f.Fuzz(func(tt *testing.T, p string) {
		r, err := t.Match("GET", p)
		if err != nil {
			if !errors.Is(err, ErrPathNotCanonical) || r != nil {
				tt.Fatalf("Match(%q) = %v, %v", p, r, err)
			}
			return
		}
		d, uerr := url.PathUnescape(p)
		if uerr != nil || path.Clean(d) != d || strings.Count(d, "/") != strings.Count(p, "/") || strings.ContainsAny(d, "\\;%?#") {
			tt.Fatalf("Match(%q) let a non-canonical path through (rule %v)", p, r)
		}
		for i := 0; i < len(d); i++ {
			if d[i] < 0x20 || d[i] == 0x7f {
				tt.Fatalf("Match(%q) let a control byte through", p)
			}
		}
	})
}

// FuzzMetadata: any metadata document either is refused or names the
// configured issuer and only absolute http(s) endpoints, https ones for
// an https issuer.
func FuzzMetadata(f *testing.F) {
	const issuer = "https://as.example/t1"
	f.Add([]byte(`{"issuer":"https://as.example/t1","jwks_uri":"https://as.example/jwks","introspection_endpoint":"https://as.example/i"}`))
	f.Add([]byte(`{"issuer":"https://as.example/t1","mtls_endpoint_aliases":{"introspection_endpoint":"https://mtls.as.example/i"}}`))
	f.Add([]byte(`{"issuer":"https://as.example/t2","jwks_uri":"https://as.example/jwks"}`))
	f.Add([]byte(`{"issuer":"https://as.example/t1","jwks_uri":"http://as.example/jwks"}`))
	f.Add([]byte(`{"issuer":"https://as.example/t1","jwks_uri":"/jwks"}`))
	f.Add([]byte(`{"issuer":"https://as.example/t1","jwks_uri":42}`))
	f.Add([]byte(`null`))
	d := &Discovery{Issuer: issuer}
	f.Fuzz(func(t *testing.T, raw []byte) {
		md, err := d.parse(raw)
		if err != nil {
			return
		}
		if md.Issuer != issuer {
			t.Fatalf("issuer %q accepted", md.Issuer)
		}
		for _, ep := range []string{md.JWKSURI, md.TokenEndpoint, md.IntrospectionEndpoint, md.MTLSEndpointAliases.IntrospectionEndpoint, md.MTLSEndpointAliases.TokenEndpoint} {
			if ep == "" {
				continue
			}
			u, err := url.Parse(ep)
			if err != nil || u.Scheme != "https" || u.Host == "" {
				t.Fatalf("endpoint %q accepted", ep)
			}
		}
	})
}

// FuzzIntrospectionAnswer: whatever the endpoint answers, a token is
// accepted only for an answer whose active is the boolean true and whose
// aud holds the audience; anything else is an invalid token or the
// endpoint failing, never a panic.
func FuzzIntrospectionAnswer(f *testing.F) {
	for _, s := range []string{`{"active":true,"aud":"https://rs.example"}`, `{"active":true}`, `{"active":"true"}`,
		`{"active":true,"aud":["x","https://rs.example"],"iss":"https://as.example"}`, `{"active":true,"aud":"https://rs.example","exp":"x"}`,
		`{"active":false}`, `null`, `[]`, `{"active":true,"aud":"https://rs.example","cnf":{"x5t#S256":1}}`} {
		f.Add([]byte(s))
	}
	var body atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(body.Load().([]byte)) }))
	f.Cleanup(srv.Close)
	f.Fuzz(func(t *testing.T, raw []byte) {
		body.Store(raw)
		in := &Introspector{URL: srv.URL, ClientID: "rs", ClientSecret: "s", Issuer: "https://as.example", Audiences: []string{"https://rs.example"}}
		c, err := in.Introspect(context.Background(), "tok")
		if err != nil {
			if !errors.Is(err, ErrInvalidToken) && !errors.Is(err, ErrUnavailable) {
				t.Fatalf("an error of no kind: %v", err)
			}
			return
		}
		var v struct {
			Active any             `json:"active"`
			Aud    json.RawMessage `json:"aud"`
		}
		if json.Unmarshal(raw, &v) != nil || v.Active != true || !audienceHolds(v.Aud, []string{"https://rs.example"}) || c == nil {
			t.Fatalf("accepted %q", raw)
		}
	})
}

// FuzzParseProof: whatever comes in a DPoP header, ParseProof refuses it
// with a *ProofError or returns a proof of the form RFC 9449 requires:
// within the size bound, typ dpop+jwt, an allowed asymmetric algorithm,
// a public jwk with a thumbprint; and checking it never panics nor
// accepts a proof that was not signed by its jwk for this request.
func FuzzParseProof(f *testing.F) {
	key := ecKey(f)
	jwk := publicJWK(f, key)
	good := proofFor(f, key, "seed")
	goodPayload, _ := json.Marshal(goodProofClaims("seed"))
	f.Add(good)
	f.Add(signProof(f, nil, map[string]any{"typ": "dpop+jwt", "alg": "none", "jwk": jwk}, goodProofClaims("n")))
	f.Add(signProof(f, []byte("secret"), map[string]any{"typ": "dpop+jwt", "alg": "HS256", "jwk": jwk}, goodProofClaims("h")))
	f.Add(signProof(f, key, map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk, "x5c": []string{"MIIB"}}, goodProofClaims("x")))
	f.Add(signProof(f, key, map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": map[string]any{"kty": "oct", "k": "c2VjcmV0"}}, goodProofClaims("o")))
	f.Add(signProof(f, key, map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": map[string]any{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}}, goodProofClaims("p")))
	f.Add("e30.e30.")
	f.Add("..")
	f.Add("")
	req := ProofRequest{Method: "GET", URL: proofURL, AccessToken: proofToken, KeyThumbprint: thumbprint(f, key)}
	f.Fuzz(func(t *testing.T, raw string) {
		p, err := ParseProof(raw, DefaultProofAlgorithms)
		if err != nil {
			var pe *ProofError
			if !errors.As(err, &pe) || pe.Code != CodeInvalidProof {
				t.Fatalf("an error of no kind: %v", err)
			}
			return
		}
		h := p.jws.Signatures[0].Header
		if len(raw) > MaxProofSize || p.Thumbprint == "" || !p.key.IsPublic() ||
			(h.Algorithm != "ES256" && h.Algorithm != "PS256") || !strings.EqualFold(h.ExtraHeaders["typ"].(string), "dpop+jwt") {
			t.Fatalf("accepted %q", raw)
		}
		c := &ProofChecker{MaxAge: time.Minute}
		if _, err := c.Check(context.Background(), p, req, proofNow); err == nil && !bytes.Equal(p.jws.UnsafePayloadWithoutVerification(), goodPayload) {
			// only the key's holder can sign other claims
			t.Fatalf("a proof no key holder made was accepted: %q", raw)
		}
	})
}

// FuzzProofClaims: whatever claims a key's holder signs, Check never
// panics, and accepts only claims naming this request, of RFC 9449's
// types, fresh, with the token's hash.
func FuzzProofClaims(f *testing.F) {
	key := ecKey(f)
	hdr := b64(map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": publicJWK(f, key)})
	good, _ := json.Marshal(goodProofClaims("seed"))
	f.Add(good)
	f.Add([]byte(`{"jti":"a","htm":"GET","htu":"HTTPS://FDX.BANK.EXAMPLE:443/fdx/v6/core/accounts/acc-1/transactions?x#y","iat":1750000000,"ath":"` + TokenHash(proofToken) + `"}`))
	f.Add([]byte(`{"jti":"a","htm":"GET","htu":"https://fdx.bank.example/fdx/v6/core/accounts/acc-1/../acc-1/transactions","iat":1750000000.5,"ath":"` + TokenHash(proofToken) + `"}`))
	f.Add([]byte(`{"jti":"a","htm":"GET","htu":"https://fdx.bank.example/fdx/v6/core/accounts/acc-1/transactions","iat":"1750000000"}`))
	f.Add([]byte(`[]`))
	req := ProofRequest{Method: "GET", URL: proofURL, AccessToken: proofToken, KeyThumbprint: thumbprint(f, key)}
	f.Fuzz(func(t *testing.T, payload []byte) {
		input := hdr + "." + b64(payload)
		sum := sha256.Sum256([]byte(input))
		r, s, err := ecdsa.Sign(rand.Reader, key, sum[:])
		if err != nil {
			t.Fatal(err)
		}
		raw := input + "." + b64(append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...))
		p, err := ParseProof(raw, DefaultProofAlgorithms)
		if err != nil {
			if len(raw) <= MaxProofSize {
				t.Fatalf("a well-formed proof refused: %v", err)
			}
			return
		}
		c := &ProofChecker{MaxAge: time.Minute}
		if _, err := c.Check(context.Background(), p, req, proofNow); err != nil {
			if !errors.Is(err, ErrInvalidProof) {
				t.Fatalf("an error of no kind: %v", err)
			}
			return
		}
		var v map[string]any
		if json.Unmarshal(payload, &v) != nil || v["htm"] != "GET" || v["ath"] != TokenHash(proofToken) || v["jti"] == "" {
			t.Fatalf("accepted %s", payload)
		}
		htu, _ := v["htu"].(string)
		iat, _ := v["iat"].(float64)
		if n, err := NormalizeHTU(htu); err != nil || n != proofURL || iat < float64(proofNow.Unix()-60) || iat > float64(proofNow.Unix()) {
			t.Fatalf("accepted %s", payload)
		}
	})
}

// FuzzNormalizeHTU: a normalised htu is its own normal form, an absolute
// http(s) URL with a host and no user information, query or fragment.
func FuzzNormalizeHTU(f *testing.F) {
	for _, s := range []string{proofURL, "HTTPS://X:443/a/./b/../%7e?q#f", "http://[::1]:80/", "https://x/%2e%2E/a", "https://x:/a", "https://x/a%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		n, err := NormalizeHTU(raw)
		if err != nil {
			return
		}
		again, err := NormalizeHTU(n)
		if err != nil || again != n {
			t.Fatalf("NormalizeHTU(%q) = %q, then %q %v", raw, n, again, err)
		}
		u, err := url.Parse(n)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || strings.Contains(n, "?") || strings.Contains(n, "#") {
			t.Fatalf("NormalizeHTU(%q) = %q", raw, n)
		}
	})
}
