package fdx

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

var testNow = time.Unix(1_800_000_000, 0)

// authServer is a stand-in authorization server: it signs tokens and
// serves its JWKS and an introspection endpoint.
type authServer struct {
	*httptest.Server
	keys       []jose.JSONWebKey // private
	jwksCalls  atomic.Int32      // JWKS fetches answered
	jwksTries  atomic.Int32      // JWKS fetches, answered or not
	down       atomic.Bool
	active     map[string]map[string]any
	introCalls atomic.Int32
}

func newAuthServer(t testing.TB) *authServer {
	a := &authServer{active: map[string]map[string]any{}}
	a.addKey(t, "es-1", jose.ES256)
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/jwks" {
			a.jwksTries.Add(1)
		}
		if a.down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		switch r.URL.Path {
		case "/jwks":
			a.jwksCalls.Add(1)
			var set jose.JSONWebKeySet
			for _, k := range a.keys {
				set.Keys = append(set.Keys, k.Public())
			}
			json.NewEncoder(w).Encode(set)
		case "/introspect":
			a.introCalls.Add(1)
			id, secret, _ := r.BasicAuth()
			if id != "rs-client" || secret != "rs-secret" {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			r.ParseForm()
			v, ok := a.active[r.PostForm.Get("token")]
			if !ok {
				v = map[string]any{"active": false}
			}
			json.NewEncoder(w).Encode(v)
		}
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *authServer) addKey(t testing.TB, kid string, alg jose.SignatureAlgorithm) {
	var key any
	switch alg {
	case jose.ES256:
		key, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		key, _ = rsa.GenerateKey(rand.Reader, 2048)
	}
	a.keys = append(a.keys, jose.JSONWebKey{Key: key, KeyID: kid, Algorithm: string(alg), Use: "sig"})
}

func (a *authServer) sign(t testing.TB, kid string, claims map[string]any, typ string) string {
	t.Helper()
	var k jose.JSONWebKey
	for _, kk := range a.keys {
		if kk.KeyID == kid {
			k = kk
		}
	}
	opts := (&jose.SignerOptions{}).WithHeader(jose.HeaderType, typ).WithHeader("kid", kid)
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(k.Algorithm), Key: k.Key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func goodClaims() map[string]any {
	return map[string]any{
		"iss": "https://as.example", "aud": []string{"https://fdx.example"}, "sub": "user-1",
		"client_id": "recipient-1", "iat": testNow.Add(-time.Minute).Unix(), "exp": testNow.Add(5 * time.Minute).Unix(),
		"jti": "j-1", "scope": "fdx:accountbasic:read fdx:transactions:read",
		"cnf": map[string]any{"x5t#S256": "thumb"},
	}
}

func validator(a *authServer) *Validator {
	return &Validator{
		Issuer: "https://as.example", Audiences: []string{"https://fdx.example"},
		Algorithms: []jose.SignatureAlgorithm{jose.PS256, jose.ES256}, Leeway: 30 * time.Second,
		Keys: &JWKS{URL: a.URL + "/jwks", MinRefresh: time.Minute, Now: func() time.Time { return testNow }},
		Now:  func() time.Time { return testNow },
	}
}

func TestValidateGood(t *testing.T) {
	a := newAuthServer(t)
	v := validator(a)
	for _, typ := range []string{"at+jwt", "application/at+jwt", "AT+JWT"} {
		c, err := v.Validate(context.Background(), a.sign(t, "es-1", goodClaims(), typ))
		if err != nil {
			t.Fatalf("typ %s: %v", typ, err)
		}
		if c.Subject != "user-1" || c.ClientID != "recipient-1" || strings.Join(c.Scopes, " ") != "fdx:accountbasic:read fdx:transactions:read" || c.CertThumbprint != "thumb" {
			t.Fatalf("claims %+v", c)
		}
	}
	// scp as a list is accepted too
	cl := goodClaims()
	delete(cl, "scope")
	cl["scp"] = []string{"fdx:transactions:read"}
	if c, err := v.Validate(context.Background(), a.sign(t, "es-1", cl, "at+jwt")); err != nil || c.Scopes[0] != "fdx:transactions:read" {
		t.Fatalf("scp: %v %v", c, err)
	}
}

func TestValidateRefusals(t *testing.T) {
	a := newAuthServer(t)
	v := validator(a)
	with := func(edit func(c map[string]any)) map[string]any { c := goodClaims(); edit(c); return c }
	cases := map[string]struct {
		token  string
		reason string
	}{
		"expired":                  {a.sign(t, "es-1", with(func(c map[string]any) { c["exp"] = testNow.Add(-31 * time.Second).Unix() }), "at+jwt"), "expired"},
		"within leeway":            {"", ""},
		"not yet valid":            {a.sign(t, "es-1", with(func(c map[string]any) { c["nbf"] = testNow.Add(time.Minute).Unix() }), "at+jwt"), "not yet valid"},
		"issued in future":         {a.sign(t, "es-1", with(func(c map[string]any) { c["iat"] = testNow.Add(time.Minute).Unix() }), "at+jwt"), "issued in the future"},
		"wrong issuer":             {a.sign(t, "es-1", with(func(c map[string]any) { c["iss"] = "https://evil.example" }), "at+jwt"), "wrong issuer"},
		"wrong audience":           {a.sign(t, "es-1", with(func(c map[string]any) { c["aud"] = "https://other.example" }), "at+jwt"), "wrong audience"},
		"no exp":                   {a.sign(t, "es-1", with(func(c map[string]any) { delete(c, "exp") }), "at+jwt"), "exp missing"},
		"no sub":                   {a.sign(t, "es-1", with(func(c map[string]any) { delete(c, "sub") }), "at+jwt"), "sub missing"},
		"no client_id":             {a.sign(t, "es-1", with(func(c map[string]any) { delete(c, "client_id") }), "at+jwt"), "client_id missing"},
		"no iat":                   {a.sign(t, "es-1", with(func(c map[string]any) { delete(c, "iat") }), "at+jwt"), "iat missing"},
		"id token typ":             {a.sign(t, "es-1", goodClaims(), "JWT"), "typ must be at+jwt"},
		"garbage":                  {"a.b.c", "malformed token"},
		"alg none":                 {noneToken(goodClaims()), "signature algorithm not allowed"},
		"hmac with the public key": {hmacWithPublicKey(t, a), "signature algorithm not allowed"},
		"tampered payload":         {tamper(a.sign(t, "es-1", goodClaims(), "at+jwt")), "signature does not verify"},
	}
	for name, c := range cases {
		if c.token == "" {
			continue
		}
		_, err := v.Validate(context.Background(), c.token)
		if !errors.Is(err, ErrInvalidToken) || !strings.HasSuffix(err.Error(), c.reason) {
			t.Errorf("%s: %v, want %q", name, err, c.reason)
		}
	}
	// just inside the leeway passes
	if _, err := v.Validate(context.Background(), a.sign(t, "es-1", with(func(c map[string]any) { c["exp"] = testNow.Add(-29 * time.Second).Unix() }), "at+jwt")); err != nil {
		t.Errorf("within leeway: %v", err)
	}
}

func noneToken(claims map[string]any) string {
	enc := base64.RawURLEncoding.EncodeToString
	h, _ := json.Marshal(map[string]string{"alg": "none", "typ": "at+jwt", "kid": "es-1"})
	p, _ := json.Marshal(claims)
	return enc(h) + "." + enc(p) + "."
}

// hmacWithPublicKey is the classic confusion attack: an HS256 token whose
// secret is the server's public key.
func hmacWithPublicKey(t testing.TB, a *authServer) string {
	pub := a.keys[0].Public()
	der, _ := x509.MarshalPKIXPublicKey(pub.Key)
	s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: der}, (&jose.SignerOptions{}).WithHeader(jose.HeaderType, "at+jwt").WithHeader("kid", "es-1"))
	tok, _ := jwt.Signed(s).Claims(goodClaims()).Serialize()
	return tok
}

func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
	raw = []byte(strings.Replace(string(raw), "user-1", "user-2", 1))
	parts[1] = base64.RawURLEncoding.EncodeToString(raw)
	return strings.Join(parts, ".")
}

// TestKeyRotationAndRefreshLimit: a new kid is picked up by one refetch;
// refetches for unknown kids are rate-limited; keys survive an outage.
func TestKeyRotationAndRefreshLimit(t *testing.T) {
	a := newAuthServer(t)
	now := testNow
	jwks := &JWKS{URL: a.URL + "/jwks", MinRefresh: time.Minute, Now: func() time.Time { return now }}
	v := validator(a)
	v.Keys = jwks
	v.Now = func() time.Time { return now }
	ctx := context.Background()
	if _, err := v.Validate(ctx, a.sign(t, "es-1", goodClaims(), "at+jwt")); err != nil {
		t.Fatal(err)
	}
	a.addKey(t, "ps-2", jose.PS256) // rotation at the AS
	now = now.Add(2 * time.Minute)
	cl := goodClaims()
	cl["iat"], cl["exp"] = now.Unix(), now.Add(5*time.Minute).Unix()
	if _, err := v.Validate(ctx, a.sign(t, "ps-2", cl, "at+jwt")); err != nil {
		t.Fatalf("rotated key: %v", err)
	}
	if n := a.jwksCalls.Load(); n != 2 {
		t.Fatalf("%d JWKS fetches, want 2", n)
	}
	// a flood of unknown kids makes no further fetch within MinRefresh
	for range 100 {
		parts := strings.Split(a.sign(t, "ps-2", cl, "at+jwt"), ".")
		h, _ := json.Marshal(map[string]string{"alg": "PS256", "typ": "at+jwt", "kid": "nope"})
		parts[0] = base64.RawURLEncoding.EncodeToString(h)
		if _, err := v.Validate(ctx, strings.Join(parts, ".")); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("unknown kid: %v", err)
		}
	}
	if n := a.jwksCalls.Load(); n != 2 {
		t.Fatalf("%d JWKS fetches after the flood, want 2", n)
	}
	// outage: known keys keep working, unknown ones fail at once: one
	// fetch, no wait for another, and none again within the backoff
	jwks.sleep = func(context.Context, time.Duration) error {
		t.Error("a token waited for a refetch during the outage")
		return nil
	}
	a.down.Store(true)
	now = now.Add(2 * time.Minute)
	cl["iat"], cl["exp"] = now.Unix(), now.Add(5*time.Minute).Unix()
	if _, err := v.Validate(ctx, a.sign(t, "es-1", cl, "at+jwt")); err != nil {
		t.Fatalf("cached key during the outage: %v", err)
	}
	a.addKey(t, "es-3", jose.ES256)
	tries := a.jwksTries.Load()
	if _, err := v.Validate(ctx, a.sign(t, "es-3", cl, "at+jwt")); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("unknown kid during the outage: %v", err)
	}
	if n := a.jwksTries.Load() - tries; n != 1 {
		t.Fatalf("the unknown kid during the outage cost %d JWKS fetches, want 1", n)
	}
	now = now.Add(time.Second / 2) // within the backoff after the failed fetch
	if _, err := v.Validate(ctx, a.sign(t, "es-3", cl, "at+jwt")); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("unknown kid again during the outage: %v", err)
	}
	if n := a.jwksTries.Load() - tries; n != 1 {
		t.Fatalf("a second unknown kid within the backoff cost %d more JWKS fetches, want none", n-1)
	}
}

// TestUnreachableAuthorizationServer: with no key ever fetched, or an
// introspection endpoint that is down, a token cannot be checked: that is
// ErrUnavailable (a 503 for the caller), never an invalid token.
func TestUnreachableAuthorizationServer(t *testing.T) {
	a := newAuthServer(t)
	a.down.Store(true)
	now := testNow
	v := validator(a)
	v.Keys = &JWKS{URL: a.URL + "/jwks", Now: func() time.Time { return now }}
	v.Now = func() time.Time { return now }
	ctx := context.Background()
	_, err := v.Validate(ctx, a.sign(t, "es-1", goodClaims(), "at+jwt"))
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrInvalidToken) {
		t.Fatalf("JWKS never fetched: %v", err)
	}
	in := &Introspector{URL: a.URL + "/introspect", ClientID: "rs-client", ClientSecret: "rs-secret", Now: func() time.Time { return now }}
	if _, err := in.Introspect(ctx, "opaque-good"); !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrInvalidToken) {
		t.Fatalf("introspection down: %v", err)
	}
	var te *TokenError
	if _, err := in.Introspect(ctx, "x"); errors.As(err, &te) {
		t.Fatalf("an outage became a token error %q", te.Reason)
	}
	a.down.Store(false)
	now = now.Add(2 * time.Second) // past the retry interval after a failure
	if _, err := v.Validate(ctx, a.sign(t, "es-1", goodClaims(), "at+jwt")); err != nil {
		t.Fatalf("after the outage: %v", err)
	}
}

func TestIntrospection(t *testing.T) {
	a := newAuthServer(t)
	a.active["opaque-good"] = map[string]any{"active": true, "scope": "fdx:transactions:read", "client_id": "recipient-1", "sub": "user-1",
		"iss": "https://as.example", "aud": "https://fdx.example", "exp": testNow.Add(time.Hour).Unix(), "cnf": map[string]any{"x5t#S256": "thumb"}}
	a.active["opaque-expired"] = map[string]any{"active": true, "exp": testNow.Add(-time.Minute).Unix()}
	a.active["opaque-other-aud"] = map[string]any{"active": true, "aud": []string{"x"}}
	now := testNow
	in := &Introspector{URL: a.URL + "/introspect", ClientID: "rs-client", ClientSecret: "rs-secret", Issuer: "https://as.example",
		Audiences: []string{"https://fdx.example"}, CacheFor: 30 * time.Second, Now: func() time.Time { return now }}
	ctx := context.Background()
	c, err := in.Introspect(ctx, "opaque-good")
	if err != nil || c.ClientID != "recipient-1" || c.CertThumbprint != "thumb" || c.Scopes[0] != "fdx:transactions:read" {
		t.Fatalf("good: %+v %v", c, err)
	}
	for range 10 {
		in.Introspect(ctx, "opaque-good")
	}
	if in.Calls() != 1 {
		t.Fatalf("%d introspection calls: not cached", in.Calls())
	}
	now = now.Add(31 * time.Second)
	in.Introspect(ctx, "opaque-good")
	if in.Calls() != 2 {
		t.Fatal("the cache outlived CacheFor")
	}
	for tok, reason := range map[string]string{"opaque-unknown": "token is not active", "opaque-expired": "expired", "opaque-other-aud": "wrong audience"} {
		if _, err := in.Introspect(ctx, tok); !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), reason) {
			t.Errorf("%s: %v", tok, err)
		}
	}
}

func TestScopeTable(t *testing.T) {
	tb := DefaultTable()
	if len(tb.Rules()) != 12 {
		t.Fatalf("%d rows", len(tb.Rules()))
	}
	cases := []struct {
		method, path, want string
	}{
		{"GET", "/fdx/v6/core/accounts", "fdx:accountbasic:read fdx:accountdetailed:read"},
		{"HEAD", "/fdx/v6/core/accounts/a1", "fdx:accountbasic:read fdx:accountdetailed:read"},
		{"GET", "/fdx/v6/core/accounts/a1/transactions", "fdx:transactions:read"},
		{"GET", "/fdx/v6/consents/c1", Authenticated},
		{"DELETE", "/fdx/v6/events/c1/revocation/s1", "fdx:notifications:subscribe"},
		{"POST", "/fdx/v6/core/accounts", ""},
		{"GET", "/fdx/v6/core/accounts/a1/statements", ""},
	}
	for _, c := range cases {
		r, err := tb.Match(c.method, c.path)
		got := ""
		if r != nil {
			got = r.Required()
		}
		if err != nil || got != c.want {
			t.Errorf("%s %s: %q %v, want %q", c.method, c.path, got, err, c.want)
		}
	}
	for _, p := range []string{"/fdx/v6/core/accounts/../accounts", "/fdx/v6//core/accounts", "/fdx/v6/core/accounts/", "/fdx/v6/core/./accounts",
		"/fdx/v6/core/accounts\\a1", "/fdx/v6/core/accounts/a1%5ctransactions", "/fdx/v6/core/accounts;a=1", "/fdx/v6/core/accounts%3Bx",
		"/fdx/v6/core/accounts/a1%2ftransactions", "/fdx/v6/core/accounts/%2e%2e/accounts", "/fdx/v6/core/%61ccounts", "/fdx/v6/core/accounts/a\x00"} {
		if _, err := tb.Match("GET", p); !errors.Is(err, ErrPathNotCanonical) {
			t.Errorf("%s: %v", p, err)
		}
	}
	// user rows: a literal beats a wildcard; same method+pattern replaces
	r1, _ := NewRule("GET", "/fdx/v6/core/accounts/special", "x:y")
	r2, _ := NewRule("GET", "/fdx/v6/core/accounts", "fdx:accountdetailed:read")
	tb2 := tb.With(r1, r2)
	if r, _ := tb2.Match("GET", "/fdx/v6/core/accounts/special"); r.Required() != "x:y" {
		t.Errorf("literal row: %s", r.Required())
	}
	if r, _ := tb2.Match("GET", "/fdx/v6/core/accounts"); r.Required() != "fdx:accountdetailed:read" || len(tb2.Rules()) != 13 {
		t.Errorf("replacing row: %s, %d rows", r.Required(), len(tb2.Rules()))
	}
	for _, bad := range [][3]string{{"GET", "fdx", "a"}, {"GET", "/a/{}", "a"}, {"GET", "/a/*", "a"}, {"GET", "/a/./b", "a"}, {"GET", "/a;x", "a"}, {"GET", "/a", "a b"}, {"GET", "/a", ""}, {"", "/a", "a"}} {
		if _, err := NewRule(bad[0], bad[1], bad[2]); err == nil {
			t.Errorf("NewRule%v accepted", bad)
		}
	}
}

func TestParseAlgorithm(t *testing.T) {
	for _, ok := range []string{"PS256", "ES256", "RS256", "EdDSA"} {
		if _, err := ParseAlgorithm(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"none", "HS256", "HS512", "", "ps256"} {
		if _, err := ParseAlgorithm(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func BenchmarkValidateCachedKey(b *testing.B) {
	a := newAuthServer(b)
	v := validator(a)
	tok := a.sign(b, "es-1", goodClaims(), "at+jwt")
	ctx := context.Background()
	if _, err := v.Validate(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Validate(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzValidate: arbitrary token text never panics and never validates.
func FuzzValidate(f *testing.F) {
	a := newAuthServer(f)
	v := validator(a)
	good := a.sign(f, "es-1", goodClaims(), "at+jwt")
	f.Add(good)
	f.Add(noneToken(goodClaims()))
	f.Add("a.b.c")
	f.Add("..")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := v.Validate(context.Background(), s)
		if err == nil && s != good {
			// only a token the server signed can pass
			t.Fatalf("forged token validated: %q -> %+v", s, c)
		}
	})
}
