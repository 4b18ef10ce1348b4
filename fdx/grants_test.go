package fdx

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestConfirmation: cnf.jkt is read from JWTs and introspection answers
// alike; a cnf with another confirmation method, or an empty member, makes
// the token invalid rather than unbound.
func TestConfirmation(t *testing.T) {
	a := newAuthServer(t)
	v := validator(a)
	with := func(cnf any) map[string]any { c := goodClaims(); c["cnf"] = cnf; return c }
	c, err := v.Validate(context.Background(), a.sign(t, "es-1", with(map[string]any{"jkt": "key-thumb"}), "at+jwt"))
	if err != nil || c.KeyThumbprint != "key-thumb" || c.CertThumbprint != "" {
		t.Fatalf("jkt: %+v %v", c, err)
	}
	c, err = v.Validate(context.Background(), a.sign(t, "es-1", with(map[string]any{"jkt": "k", "x5t#S256": "x"}), "at+jwt"))
	if err != nil || c.KeyThumbprint != "k" || c.CertThumbprint != "x" {
		t.Fatalf("both: %+v %v", c, err)
	}
	for name, cnf := range map[string]any{
		"jwk":       map[string]any{"jwk": map[string]any{"kty": "EC"}},
		"kid":       map[string]any{"kid": "k1"},
		"empty jkt": map[string]any{"jkt": ""},
		"jkt 42":    map[string]any{"jkt": 42},
		"a string":  "jkt",
	} {
		if _, err := v.Validate(context.Background(), a.sign(t, "es-1", with(cnf), "at+jwt")); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("%s: %v", name, err)
		}
	}
	a.active["dpop"] = map[string]any{"active": true, "aud": "https://fdx.example", "exp": testNow.Add(time.Hour).Unix(), "cnf": map[string]any{"jkt": "key-thumb"}}
	a.active["jwk"] = map[string]any{"active": true, "aud": "https://fdx.example", "exp": testNow.Add(time.Hour).Unix(), "cnf": map[string]any{"jwk": "x"}}
	in := &Introspector{URL: a.URL + "/introspect", ClientID: "rs-client", ClientSecret: "rs-secret", Audiences: []string{"https://fdx.example"},
		Now: func() time.Time { return testNow }}
	if c, err := in.Introspect(context.Background(), "dpop"); err != nil || c.KeyThumbprint != "key-thumb" {
		t.Fatalf("introspected jkt: %+v %v", c, err)
	}
	if _, err := in.Introspect(context.Background(), "jwk"); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("introspected cnf.jwk: %v", err)
	}
}

func claimsOf(t *testing.T, js string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(js), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestGrants(t *testing.T) {
	tb := DefaultTable().With(mustRule(t, "GET", "/fdx/v6/core/accounts/{accountId}/statements/{statementId}", "fdx:statements:read"))
	top := &Grants{Accounts: &GrantClaim{Claim: "fdx_accounts"}, Consent: &GrantClaim{Claim: "fdx_consent_id"}}
	rar := &Grants{Accounts: &GrantClaim{Claim: AuthorizationDetails, Type: "fdx_consent", Member: "accounts"},
		Consent: &GrantClaim{Claim: AuthorizationDetails, Type: "fdx_consent", Member: "consentId"}}
	topClaims := claimsOf(t, `{"fdx_accounts":["acc-1","acc 2","café","a+b"],"fdx_consent_id":"consent-1"}`)
	rarClaims := claimsOf(t, `{"authorization_details":[{"type":"other","accounts":["acc-9"],"consentId":"consent-9"},
		{"type":"fdx_consent","consentId":"consent-1","accounts":["acc-1","acc 2"]},{"type":"fdx_consent","accounts":["café","a+b"]}]}`)
	for _, tc := range []struct {
		method, path string
		want         string // "" granted, else the refusal's reason
	}{
		{"GET", "/fdx/v6/core/accounts", ""},
		{"GET", "/fdx/v6/core/accounts/acc-1", ""},
		{"GET", "/fdx/v6/core/accounts/acc-1/transactions", ""},
		{"GET", "/fdx/v6/core/accounts/acc-1/contact", ""},
		{"GET", "/fdx/v6/core/accounts/acc-1/payment-networks", ""},
		{"GET", "/fdx/v6/core/accounts/acc-1/asset-transfer-networks", ""},
		{"GET", "/fdx/v6/core/accounts/acc-1/statements/s-1", ""},
		{"GET", "/fdx/v6/core/accounts/acc%202/transactions", ""},
		{"GET", "/fdx/v6/core/accounts/caf%C3%A9", ""},
		{"GET", "/fdx/v6/core/accounts/caf%c3%a9", ""},
		{"GET", "/fdx/v6/core/accounts/a+b", ""},
		{"GET", "/fdx/v6/core/accounts/acc-9/transactions", "does not grant this {accountId}"},
		{"GET", "/fdx/v6/core/accounts/acc-9/statements/s-1", "does not grant this {accountId}"},
		{"GET", "/fdx/v6/core/accounts/ACC-1/transactions", "does not grant this {accountId}"},
		{"GET", "/fdx/v6/core/accounts/acc%2D1", "does not grant this {accountId}"}, // needless encoding: Param refuses
		{"GET", "/fdx/v6/core/accounts/a%2Bb", "does not grant this {accountId}"},   // "a+b" granted, and %2B decodes to it: see below
		{"GET", "/fdx/v6/core/accounts/acc-1%20", "does not grant this {accountId}"},
		{"GET", "/fdx/v6/consents/consent-1", ""},
		{"PATCH", "/fdx/v6/consents/consent-1/revocation", ""},
		{"GET", "/fdx/v6/consents/consent-1/revocation", ""},
		{"DELETE", "/fdx/v6/events/consent-1/revocation/sub-1", ""},
		{"GET", "/fdx/v6/consents/consent-7", "does not grant this {consentId}"},
		{"DELETE", "/fdx/v6/events/consent-7/revocation/sub-1", "does not grant this {consentId}"},
		{"GET", "/fdx/v6/consents/CONSENT-1", "does not grant this {consentId}"},
		{"POST", "/fdx/v6/events/notification-subscriptions", ""},
		{"GET", "/fdx/v6/events/notification-subscriptions/sub-1", ""},
	} {
		rule, err := tb.Match(tc.method, tc.path)
		if err != nil {
			if tc.want == "" || !errors.Is(err, ErrPathNotCanonical) {
				t.Errorf("%s %s: %v", tc.method, tc.path, err)
			}
			continue
		}
		if rule == nil {
			t.Fatalf("%s %s matches no rule", tc.method, tc.path)
		}
		for name, g := range map[string]struct {
			g      *Grants
			claims map[string]any
		}{"claim": {top, topClaims}, "authorization_details": {rar, rarClaims}} {
			err := g.g.Check(rule, tc.path, g.claims)
			want := tc.want
			if tc.path == "/fdx/v6/core/accounts/a%2Bb" {
				want = "" // %2B is "+" percent-encoded, which is no needless encoding ("+" is reserved): it decodes to a granted id
			}
			switch {
			case want == "" && err != nil:
				t.Errorf("%s: %s %s: %v", name, tc.method, tc.path, err)
			case want != "" && (!errors.Is(err, ErrNotGranted) || !strings.Contains(err.Error(), want)):
				t.Errorf("%s: %s %s: %v, want %q", name, tc.method, tc.path, err, want)
			}
		}
	}

	// a token without the claim, or with it in another shape, is refused
	// on the paths that need it; list endpoints pass
	rule, _ := tb.Match("GET", "/fdx/v6/core/accounts/acc-1")
	list, _ := tb.Match("GET", "/fdx/v6/core/accounts")
	for js, want := range map[string]string{
		`{}`:                                     "has no fdx_accounts claim",
		`{"fdx_accounts":null}`:                  "has no fdx_accounts claim",
		`{"fdx_accounts":"acc-1"}`:               "is not a list of strings",
		`{"fdx_accounts":["acc-1",7]}`:           "is not a list of strings",
		`{"fdx_accounts":{"acc-1":true}}`:        "is not a list of strings",
		`{"fdx_accounts":[],"fdx_consent_id":1}`: "does not grant",
	} {
		if err := top.Check(rule, "/fdx/v6/core/accounts/acc-1", claimsOf(t, js)); !errors.Is(err, ErrNotGranted) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", js, err, want)
		}
		if err := top.Check(list, "/fdx/v6/core/accounts", claimsOf(t, js)); err != nil {
			t.Errorf("%s on the list: %v", js, err)
		}
	}
	for js, want := range map[string]string{
		`{}`: "has no authorization_details[type=fdx_consent].accounts claim",
		`{"authorization_details":[{"type":"other","accounts":["acc-1"]}]}`:     "has no authorization_details",
		`{"authorization_details":{"type":"fdx_consent"}}`:                      "is not a list",
		`{"authorization_details":["fdx_consent"]}`:                             "not an object",
		`{"authorization_details":[{"type":"fdx_consent","accounts":"acc-1"}]}`: "is not a list of strings",
	} {
		if err := rar.Check(rule, "/fdx/v6/core/accounts/acc-1", claimsOf(t, js)); !errors.Is(err, ErrNotGranted) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", js, err, want)
		}
	}
	consent, _ := tb.Match("GET", "/fdx/v6/consents/consent-1")
	if err := top.Check(consent, "/fdx/v6/consents/consent-1", claimsOf(t, `{"fdx_consent_id":["consent-1"]}`)); !errors.Is(err, ErrNotGranted) || !strings.Contains(err.Error(), "is not a string") {
		t.Errorf("a list for the consent: %v", err)
	}
	// nothing configured: nothing enforced
	if err := (&Grants{}).Check(rule, "/fdx/v6/core/accounts/acc-9", nil); err != nil {
		t.Error(err)
	}

	for _, g := range []GrantClaim{{}, {Claim: AuthorizationDetails}, {Claim: AuthorizationDetails, Type: "t"}, {Claim: "x", Type: "t", Member: "m"}} {
		if g.Validate() == nil {
			t.Errorf("%+v validated", g)
		}
	}
}

func mustRule(t *testing.T, method, pattern, scopes string) Rule {
	t.Helper()
	r, err := NewRule(method, pattern, scopes)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestRuleParam: a parameter is read from a canonical path only, decoded
// once.
func TestRuleParam(t *testing.T) {
	r := mustRule(t, "GET", "/fdx/v6/core/accounts/{accountId}/transactions", "x")
	for p, want := range map[string]string{
		"/fdx/v6/core/accounts/a%20b/transactions":         "a b",
		"/fdx/v6/core/accounts/a%2541/transactions":        "", // encoded %: not canonical
		"/fdx/v6/core/accounts/a%2Fb/transactions":         "", // encoded /: not canonical
		"/fdx/v6/core/accounts/a/b/transactions":           "",
		"/fdx/v6/core/accounts/%C3%A9t%C3%A9/transactions": "été",
	} {
		got, ok := r.Param(p, "accountId")
		if got != want || ok != (want != "") {
			t.Errorf("Param(%q) = %q %v, want %q", p, got, ok, want)
		}
	}
	if _, ok := r.Param("/fdx/v6/core/accounts/a/transactions", "consentId"); ok || r.Has("consentId") || !r.Has("accountId") {
		t.Error("a parameter the pattern lacks")
	}
}
