package fdxauth

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/mxgate/mxgate/caddymodule/internal/caddyfileopt"
	"github.com/mxgate/mxgate/caddymodule/internal/store"
)

func TestUnmarshalCaddyfile(t *testing.T) {
	input := `fdx_auth {
		issuer https://as.fdx.example
		audience https://fdx.example https://fdx.example/v6
		audience https://api.example
		jwks_url https://as.fdx.example/jwks
		jwks_min_refresh 1m
		introspection https://as.fdx.example/introspect rs-client {env.RS_SECRET}
		introspection_cache 45s
		algorithms PS256 ES256 RS256
		leeway 10s
		client_cert optional
		cert_bound off
		scopes {
			get /fdx/v6/core/accounts/{accountId}/statements fdx:statements:read
			POST /fdx/v6/payments fdx:payments:write|fdx:payments:admin
		}
		forward_claims {
			client_id X-Fdx-Client
			sub X-Fdx-Subject
		}
		realm bank
		error_format json
	}`
	h, err := caddyfileopt.UnmarshalHandler[FDXAuth](httpcaddyfile.Helper{Dispenser: caddyfile.NewTestDispenser(input)})
	if err != nil {
		t.Fatal(err)
	}
	off := false
	want := &FDXAuth{
		Issuer: "https://as.fdx.example", Audiences: []string{"https://fdx.example", "https://fdx.example/v6", "https://api.example"},
		JWKSURL: "https://as.fdx.example/jwks", JWKSMinRefresh: caddy.Duration(time.Minute),
		Introspection: &FDXIntrospection{URL: "https://as.fdx.example/introspect", ClientID: "rs-client", ClientSecret: "{env.RS_SECRET}", CacheFor: caddy.Duration(45 * time.Second)},
		Algorithms:    []string{"PS256", "ES256", "RS256"}, Leeway: caddy.Duration(10 * time.Second), ClientCert: "optional", CertBound: &off,
		Scopes: []FDXScope{{Method: "GET", Pattern: "/fdx/v6/core/accounts/{accountId}/statements", Scopes: "fdx:statements:read"},
			{Method: "POST", Pattern: "/fdx/v6/payments", Scopes: "fdx:payments:write|fdx:payments:admin"}},
		ForwardClaims: map[string]string{"client_id": "X-Fdx-Client", "sub": "X-Fdx-Subject"},
		Realm:         "bank", ErrorFormat: "json",
	}
	if !reflect.DeepEqual(h, want) {
		t.Errorf("got  %+v\nwant %+v", h, want)
	}
	// the connection to the authorization server, discovered from the issuer
	input = `fdx_auth {
		issuer https://as.fdx.example
		audience https://fdx.example
		jwks_max_age 10m
		introspection discover rs-client
		introspection_auth private_key_jwt /etc/mxgate/keys/rs-client.pem rs-key-1
		introspection_require_aud off
		tls_trust_pool file /etc/mxgate/as-ca.pem {
			pem_file /etc/mxgate/as-ca-next.pem
		}
		tls_client_auth /etc/mxgate/rs.pem /etc/mxgate/rs-key.pem
	}`
	h, err = caddyfileopt.UnmarshalHandler[FDXAuth](httpcaddyfile.Helper{Dispenser: caddyfile.NewTestDispenser(input)})
	if err != nil {
		t.Fatal(err)
	}
	got := h.(*FDXAuth)
	want = &FDXAuth{
		Issuer: "https://as.fdx.example", Audiences: []string{"https://fdx.example"}, JWKSMaxAge: caddy.Duration(10 * time.Minute),
		Introspection:   &FDXIntrospection{ClientID: "rs-client", Auth: "private_key_jwt", KeyFile: "/etc/mxgate/keys/rs-client.pem", KeyID: "rs-key-1", RequireAudience: &off},
		TLSTrustPoolRaw: got.TLSTrustPoolRaw,
		TLSClientAuth:   &FDXClientCertificate{CertFile: "/etc/mxgate/rs.pem", KeyFile: "/etc/mxgate/rs-key.pem"},
	}
	if !reflect.DeepEqual(got, want) || string(got.TLSTrustPoolRaw) != `{"pem_files":["/etc/mxgate/as-ca.pem","/etc/mxgate/as-ca-next.pem"],"provider":"file"}` {
		t.Errorf("got  %+v\nwant %+v\npool %s", got, want, got.TLSTrustPoolRaw)
	}
	// DPoP, its jti cache in Redis, and a consent's grants
	input = `fdx_auth {
		issuer https://as.fdx.example
		audience https://fdx.example
		client_cert optional
		dpop required
		dpop_algorithms ES256 PS256 EdDSA
		dpop_max_age 30s
		dpop_nonce on
		dpop_nonce_key {file./etc/mxgate/dpop-nonce.key}
		dpop_origin https://fdx.bank.example
		dpop_jti_cache_size 50000
		store redis redis+sentinel://s1,s2/mymaster
		on_store_error deny
		namespace fdx-dpop
		account_claim fdx_accounts
		consent_claim authorization_details fdx_consent consentId
	}`
	h, err = caddyfileopt.UnmarshalHandler[FDXAuth](httpcaddyfile.Helper{Dispenser: caddyfile.NewTestDispenser(input)})
	if err != nil {
		t.Fatal(err)
	}
	want = &FDXAuth{
		Issuer: "https://as.fdx.example", Audiences: []string{"https://fdx.example"}, ClientCert: "optional",
		DPoP: "required", DPoPAlgorithms: []string{"ES256", "PS256", "EdDSA"}, DPoPMaxAge: caddy.Duration(30 * time.Second),
		DPoPNonce: true, DPoPNonceKey: "{file./etc/mxgate/dpop-nonce.key}", DPoPOrigin: "https://fdx.bank.example", DPoPJTICacheSize: 50000,
		Config:       store.Config{Store: "redis", RedisURL: "redis+sentinel://s1,s2/mymaster", OnStoreError: "deny", Namespace: "fdx-dpop"},
		AccountClaim: &FDXGrantClaim{Claim: "fdx_accounts"},
		ConsentClaim: &FDXGrantClaim{Claim: "authorization_details", Type: "fdx_consent", Member: "consentId"},
	}
	if !reflect.DeepEqual(h, want) {
		t.Errorf("got  %+v\nwant %+v", h, want)
	}
	var on FDXAuth
	if err := on.UnmarshalCaddyfile(caddyfile.NewTestDispenser("fdx_auth {\n\tcert_bound on\n}")); err != nil || on.CertBound == nil || !*on.CertBound {
		t.Errorf("cert_bound on: %v %v", on.CertBound, err)
	}
}

func TestUnmarshalErrors(t *testing.T) {
	for body, msg := range map[string]string{
		"issuer":                         "wrong argument count",
		"realm":                          "wrong argument count",
		"issuer a b":                     "too many arguments: 'b'",
		"audience":                       "wrong argument count",
		"introspection https://x":        "introspection takes a URL (or discover), a client id",
		"introspection https://x rs s t": "introspection takes a URL (or discover), a client id",
		"introspection_auth basic":       "introspection_auth needs introspection first",
		"introspection_require_aud off":  "introspection_require_aud needs introspection first",
		"introspection https://x rs\n\tintrospection_auth":                        "wrong argument count",
		"introspection https://x rs\n\tintrospection_auth mtls":                   "introspection_auth must be basic, tls_client_auth or private_key_jwt, not 'mtls'",
		"introspection https://x rs\n\tintrospection_auth basic /k.pem":           "introspection_auth basic takes no file",
		"introspection https://x rs\n\tintrospection_auth tls_client_auth /k.pem": "introspection_auth tls_client_auth takes no file",
		"introspection https://x rs\n\tintrospection_auth private_key_jwt":        "takes a key file",
		"introspection https://x rs\n\tintrospection_auth private_key_jwt /k a b": "takes a key file",
		"introspection https://x rs\n\tintrospection_require_aud maybe":           "introspection_require_aud must be on or off, not 'maybe'",
		"tls_trust_pool":         "wrong argument count",
		"tls_trust_pool nowhere": "tls.ca_pool.source.nowhere",
		"tls_trust_pool file /a.pem\n\ttls_trust_pool file /b.pem": "tls_trust_pool given twice",
		"tls_client_auth /c.pem":                                   "tls_client_auth takes a certificate file and a key file",
		"jwks_max_age 0s":                                          "jwks_max_age: invalid duration '0s'",
		"introspection_cache 30s":                                  "introspection_cache needs introspection first",
		"jwks_min_refresh 0s":                                      "jwks_min_refresh: invalid duration '0s'",
		"leeway soon":                                              "leeway: invalid duration 'soon'",
		"algorithms":                                               "wrong argument count",
		"algorithms ES256 none":                                    "none",
		"algorithms HS256":                                         "HS256",
		"client_cert":                                              "wrong argument count",
		"client_cert off":                                          "client_cert must be require or optional, not 'off'",
		"client_cert require optional":                             "too many arguments: 'optional'",
		"cert_bound":                                               "wrong argument count",
		"cert_bound maybe":                                         "cert_bound must be on or off, not 'maybe'",
		"cert_bound on off":                                        "too many arguments: 'off'",
		"scopes {\n\t\tGET /a\n\t}":                                "scope row: want <METHOD> <pattern> <scopes>, got GET /a",
		"scopes {\n\t\tGET a x\n\t}":                               "Testfile:",
		"forward_claims {\n\t\tsub\n\t}":                           "forward_claims: claim sub needs a header",
		"forward_claims {\n\t\tsub X-Sub X-Other\n\t}":             "wrong argument count",
		"error_format xml":                                         `unknown error_format "xml"`,
		"jwks https://as/jwks":                                     "unrecognized fdx_auth option 'jwks'",
		"dpop":                                                     "wrong argument count",
		"dpop on":                                                  "dpop must be off, allowed or required, not 'on'",
		"dpop allowed required":                                    "too many arguments: 'required'",
		"dpop_algorithms":                                          "wrong argument count",
		"dpop_algorithms ES256 HS256":                              "HS256",
		"dpop_max_age 0s":                                          "dpop_max_age: invalid duration",
		"dpop_nonce yes":                                           "dpop_nonce must be on or off",
		"dpop_nonce_key":                                           "wrong argument count",
		"dpop_origin a b":                                          "too many arguments: 'b'",
		"dpop_jti_cache_size 0":                                    "dpop_jti_cache_size: invalid number",
		"store disk":                                               "store takes `memory` or `redis <url>`",
		"on_store_error local extra":                               "too many arguments",
		"account_claim":                                            "account_claim takes a claim, or authorization_details <type> <member>",
		"account_claim a b":                                        "account_claim takes a claim",
		"account_claim authorization_details fdx_consent": "account_claim takes a claim",
		"consent_claim authorization_details":             "consent_claim takes a claim",
	} {
		var a FDXAuth
		err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser("fdx_auth {\n\t" + body + "\n}"))
		if err == nil || !strings.Contains(err.Error(), msg) || !strings.Contains(err.Error(), "Testfile:") {
			t.Errorf("%q: %v, want %q", body, err, msg)
		}
	}
	var a FDXAuth
	if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser("fdx_auth strict")); err == nil || !strings.Contains(err.Error(), "wrong argument count") {
		t.Errorf("an argument on the directive: %v", err)
	}
}
