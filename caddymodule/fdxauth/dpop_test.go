package fdxauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	jose "github.com/go-jose/go-jose/v4"

	"github.com/mxgate/mxgate/caddymodule/internal/store"
	"github.com/mxgate/mxgate/internal/testkit/handlertest"
	"github.com/mxgate/mxgate/internal/testkit/redistest"
)

// dpopKey is a client's DPoP key pair.
type dpopKey struct {
	priv *ecdsa.PrivateKey
	jwk  map[string]any
	jkt  string
}

func newDPoPKey(t testing.TB) *dpopKey {
	t.Helper()
	k := &dpopKey{priv: ecKey(t)}
	raw, _ := json.Marshal(jose.JSONWebKey{Key: &k.priv.PublicKey})
	_ = json.Unmarshal(raw, &k.jwk)
	tp, err := (&jose.JSONWebKey{Key: &k.priv.PublicKey}).Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	k.jkt = base64.RawURLEncoding.EncodeToString(tp)
	return k
}

func ecKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func b64json(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

// proof is an ES256 DPoP proof by k for method and url, with the token's
// hash, at iat now; edit changes its claims first.
func (k *dpopKey) proof(t testing.TB, method, url, token string, edit func(map[string]any)) string {
	t.Helper()
	var jti [16]byte
	_, _ = rand.Read(jti[:])
	sum := sha256.Sum256([]byte(token))
	claims := map[string]any{"jti": base64.RawURLEncoding.EncodeToString(jti[:]),
		"htm": method, "htu": url, "iat": time.Now().Unix(), "ath": base64.RawURLEncoding.EncodeToString(sum[:])}
	if edit != nil {
		edit(claims)
	}
	input := b64json(map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": k.jwk}) + "." + b64json(claims)
	h := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, k.priv, h[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...)
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// dpopRequest is a GET of path with a DPoP-scheme token and proof, over
// TLS for example.com without a client certificate (cert nil) or with
// one.
func dpopRequest(path, token, proof string, cert *tls.ConnectionState) *http.Request {
	r := request(path, "", nil)
	r.Header.Set("Authorization", "DPoP "+token)
	if proof != "" {
		r.Header.Set("DPoP", proof)
	}
	r.TLS = cert
	if r.TLS == nil {
		r.TLS = &tls.ConnectionState{ServerName: "example.com"}
	}
	return r
}

const site = "https://example.com"

// dpopBound mints a token bound to k.
func (a *authServer) dpopBound(t testing.TB, k *dpopKey, override map[string]any) string {
	t.Helper()
	o := map[string]any{"cnf": map[string]string{"jkt": k.jkt}}
	for key, v := range override {
		o[key] = v
	}
	return a.mint(t, nil, o)
}

func challenges(w http.Header) []string { return w.Values("WWW-Authenticate") }

// TestFDXAuthDPoP: with dpop allowed and client_cert optional, a
// DPoP-bound token is accepted with a valid proof, once; certificate-bound
// tokens keep working as Bearer; each misuse is refused with the RFC's
// code on the right challenge, before the upstream.
func TestFDXAuthDPoP(t *testing.T) {
	as := newAuthServer(t)
	cert := clientCert(t, "recipient-1")
	a, _ := newFDXAuth(t, &FDXAuth{JWKSURL: as.URL + "/jwks", ClientCert: ClientCertOptional, DPoP: DPoPAllowed})
	k, other := newDPoPKey(t), newDPoPKey(t)
	const path = "/fdx/v6/core/accounts/acc-1/transactions"
	tok := as.dpopBound(t, k, nil)

	good := k.proof(t, "GET", site+path, tok, nil)
	next := &userNext{}
	w, err := handlertest.Serve(t, a, dpopRequest(path, tok, good, nil), next)
	if err != nil || w.Code != 200 || next.Calls != 1 || next.user != "recipient-1" {
		t.Fatalf("a good proof: %d %v %s %v", w.Code, err, w.Body, w.Header())
	}
	// the same over a connection that verified a certificate (cert_bound
	// on: a DPoP-bound token needs none)
	r := dpopRequest(path, tok, k.proof(t, "GET", site+path, tok, nil), nil)
	r.TLS = request(path, "", cert).TLS
	if w, _ := handlertest.Serve(t, a, r, &handlertest.Next{}); w.Code != 200 {
		t.Fatalf("with a certificate too: %d %s", w.Code, w.Body)
	}
	// a certificate-bound token still works as Bearer
	if w, _ := handlertest.Serve(t, a, request(path, as.mint(t, cert, nil), cert), &handlertest.Next{}); w.Code != 200 {
		t.Fatalf("a certificate-bound token: %d %s", w.Code, w.Body)
	}

	twoProofs := dpopRequest(path, tok, k.proof(t, "GET", site+path, tok, nil), nil)
	twoProofs.Header.Add("DPoP", k.proof(t, "GET", site+path, tok, nil))
	bearer := request(path, tok, nil)
	bearer.TLS = &tls.ConnectionState{ServerName: "example.com"}
	certTok := as.mint(t, cert, nil)
	certAsDPoP := dpopRequest(path, certTok, k.proof(t, "GET", site+path, certTok, nil), request(path, "", cert).TLS)
	introspectedOK := as.mint(t, nil, nil) // unbound, cert_bound on
	unbound := dpopRequest(path, introspectedOK, k.proof(t, "GET", site+path, introspectedOK, nil), nil)
	otherHost := dpopRequest(path, tok, k.proof(t, "GET", site+path, tok, nil), nil)
	otherHost.Host, otherHost.TLS.ServerName = "other.example", "other.example"
	for _, c := range []struct {
		name   string
		r      *http.Request
		code   string
		debug  string
		onDPoP bool // the error is on the DPoP challenge, first
	}{
		{"the proof replayed", dpopRequest(path, tok, good, nil), "invalid_dpop_proof", "the proof's jti was used before", true},
		{"no proof", dpopRequest(path, tok, "", nil), "invalid_dpop_proof", "no DPoP proof (the DPoP header)", true},
		{"two proofs", twoProofs, "invalid_dpop_proof", "more than one DPoP header", true},
		{"a DPoP-bound token as Bearer", bearer, "invalid_token", "the token is DPoP-bound: send it as Authorization: DPoP, with its proof", true},
		{"wrong htm", dpopRequest(path, tok, k.proof(t, "POST", site+path, tok, nil), nil), "invalid_dpop_proof", "the proof's htm is not the request's method", true},
		{"wrong htu", dpopRequest(path, tok, k.proof(t, "GET", site+"/fdx/v6/core/accounts/acc-9/transactions", tok, nil), nil), "invalid_dpop_proof", "the proof's htu is not the request's URL", true},
		{"a proof for another host", otherHost, "invalid_dpop_proof", "the proof's htu is not the request's URL", true},
		{"stale iat", dpopRequest(path, tok, k.proof(t, "GET", site+path, tok, func(c map[string]any) { c["iat"] = time.Now().Add(-2 * time.Minute).Unix() }), nil),
			"invalid_dpop_proof", "the proof is older than its maximum age (iat)", true},
		{"no ath", dpopRequest(path, tok, k.proof(t, "GET", site+path, tok, func(c map[string]any) { delete(c, "ath") }), nil), "invalid_dpop_proof", "the proof has no ath", true},
		{"another key", dpopRequest(path, tok, other.proof(t, "GET", site+path, tok, nil), nil), "invalid_token", "the proof's key is not the one the token is bound to", true},
		{"a certificate-bound token as DPoP", certAsDPoP, "invalid_token", "the token is not DPoP-bound (no cnf.jkt): send it as a Bearer token", true},
		{"an unbound token as DPoP", unbound, "invalid_token", "the token is not DPoP-bound (no cnf.jkt): send it as a Bearer token", true},
		{"an unbound token as Bearer", func() *http.Request {
			r := request(path, introspectedOK, nil)
			r.TLS = &tls.ConnectionState{ServerName: "example.com"}
			return r
		}(), "invalid_token", "no verified client certificate to bind the token to", false},
	} {
		next := &handlertest.Next{}
		w, err := handlertest.Serve(t, a, c.r, next)
		if err != nil || w.Code != 401 || next.Calls != 0 {
			t.Errorf("%s: %d %v %s", c.name, w.Code, err, w.Body)
			continue
		}
		want := []string{`Bearer realm="fdx", error="` + c.code + `", error_description="` + c.debug + `"`, `DPoP realm="fdx", algs="ES256 PS256"`}
		if c.onDPoP {
			want = []string{`DPoP realm="fdx", error="` + c.code + `", error_description="` + c.debug + `", algs="ES256 PS256"`, `Bearer realm="fdx"`}
		}
		if got := challenges(w.Header()); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s: challenges\n got %q\nwant %q", c.name, got, want)
		}
		var b fdxBody
		if json.Unmarshal(w.Body.Bytes(), &b) != nil || b.DebugMessage != c.debug {
			t.Errorf("%s: body %s", c.name, w.Body)
		}
	}
}

// TestFDXAuthDPoPOff: a DPoP-bound token is refused when dpop is off,
// whatever cert_bound says: never a bearer token.
func TestFDXAuthDPoPOff(t *testing.T) {
	as := newAuthServer(t)
	cert := clientCert(t, "recipient-1")
	k := newDPoPKey(t)
	off := false
	for name, a := range map[string]*FDXAuth{
		"cert_bound on":                        {JWKSURL: as.URL + "/jwks"},
		"cert_bound off":                       {JWKSURL: as.URL + "/jwks", CertBound: &off},
		"client_cert optional, cert_bound off": {JWKSURL: as.URL + "/jwks", CertBound: &off, ClientCert: ClientCertOptional},
	} {
		a, _ := newFDXAuth(t, a)
		const path = "/fdx/v6/core/accounts"
		tok := as.dpopBound(t, k, nil)
		next := &handlertest.Next{}
		w, _ := handlertest.Serve(t, a, request(path, tok, cert), next)
		if w.Code != 401 || next.Calls != 0 || w.Header().Get("WWW-Authenticate") !=
			`Bearer realm="fdx", error="invalid_token", error_description="the token is DPoP-bound (cnf.jkt), and this resource server does not accept DPoP"` {
			t.Errorf("%s, as Bearer: %d %v", name, w.Code, w.Header())
		}
		r := dpopRequest(path, tok, k.proof(t, "GET", site+path, tok, nil), request(path, "", cert).TLS)
		if w, _ := handlertest.Serve(t, a, r, next); w.Code != 401 || next.Calls != 0 ||
			!strings.Contains(w.Header().Get("WWW-Authenticate"), "the Authorization header is not one Bearer token") {
			t.Errorf("%s, as DPoP: %d %v", name, w.Code, w.Header())
		}
		// a token naming another confirmation method is no bearer token either
		jwk := as.mint(t, nil, map[string]any{"cnf": map[string]any{"jwk": k.jwk}})
		if w, _ := handlertest.Serve(t, a, request(path, jwk, cert), next); w.Code != 401 || next.Calls != 0 ||
			!strings.Contains(w.Header().Get("WWW-Authenticate"), "cnf names a confirmation method other than x5t#S256 and jkt") {
			t.Errorf("%s, cnf.jwk: %d %v", name, w.Code, w.Header())
		}
	}
}

// TestFDXAuthDPoPRequired: only DPoP-bound tokens, with the DPoP challenge
// alone; and proofs checked for introspected tokens as for JWTs.
func TestFDXAuthDPoPRequired(t *testing.T) {
	as := newAuthServer(t)
	cert := clientCert(t, "recipient-1")
	k := newDPoPKey(t)
	as.active["opaque-dpop"] = map[string]any{"active": true, "iss": issuer, "aud": audience, "sub": "user-1", "client_id": "recipient-9",
		"scope": "fdx:accountbasic:read", "exp": time.Now().Add(time.Hour).Unix(), "cnf": map[string]string{"jkt": k.jkt}}
	a, _ := newFDXAuth(t, &FDXAuth{JWKSURL: as.URL + "/jwks", ClientCert: ClientCertOptional, DPoP: DPoPRequired, DPoPAlgorithms: []string{"ES256"},
		Introspection: &FDXIntrospection{URL: as.URL + "/introspect", ClientID: "rs-client", ClientSecret: "rs-s3cret"}})
	const path = "/fdx/v6/core/accounts"
	next := &handlertest.Next{}
	w, _ := handlertest.Serve(t, a, request(path, as.mint(t, cert, nil), cert), next)
	if w.Code != 401 || next.Calls != 0 || strings.Join(challenges(w.Header()), "\n") !=
		`DPoP realm="fdx", error="invalid_token", error_description="DPoP is required: send a DPoP-bound token as Authorization: DPoP, with its proof", algs="ES256"` {
		t.Errorf("a certificate-bound token: %d %v", w.Code, w.Header())
	}
	w, _ = handlertest.Serve(t, a, request(path, "", nil), next)
	if w.Code != 401 || strings.Join(challenges(w.Header()), "\n") != `DPoP realm="fdx", algs="ES256"` {
		t.Errorf("no token: %d %v", w.Code, w.Header())
	}
	w, _ = handlertest.Serve(t, a, dpopRequest(path, "opaque-dpop", k.proof(t, "GET", site+path, "opaque-dpop", nil), nil), next)
	if w.Code != 200 || next.Calls != 1 {
		t.Errorf("an introspected DPoP-bound token: %d %s", w.Code, w.Body)
	}
	w, _ = handlertest.Serve(t, a, dpopRequest(path, "opaque-dpop", newDPoPKey(t).proof(t, "GET", site+path, "opaque-dpop", nil), nil), next)
	if w.Code != 401 || next.Calls != 1 || !strings.Contains(w.Header().Get("WWW-Authenticate"), "not the one the token is bound to") {
		t.Errorf("an introspected DPoP-bound token, another key: %d %v", w.Code, w.Header())
	}
}

// TestFDXAuthDPoPNonce: with dpop_nonce on, a proof without a nonce gets
// use_dpop_nonce and a nonce, which the next proof carries; a nonce of the
// last period is accepted with a fresh one in the response; two gateways
// given the same key accept each other's nonces.
func TestFDXAuthDPoPNonce(t *testing.T) {
	as := newAuthServer(t)
	k := newDPoPKey(t)
	key := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("n", 32)))
	now := time.Now()
	clock := func() time.Time { return now }
	mk := func() *FDXAuth {
		a, _ := newFDXAuth(t, &FDXAuth{JWKSURL: as.URL + "/jwks", ClientCert: ClientCertOptional, DPoP: DPoPAllowed, DPoPNonce: true, DPoPNonceKey: key})
		a.now = clock
		return a
	}
	a, b := mk(), mk()
	const path = "/fdx/v6/core/accounts"
	tok := as.dpopBound(t, k, nil)
	next := &handlertest.Next{}
	w, _ := handlertest.Serve(t, a, dpopRequest(path, tok, k.proof(t, "GET", site+path, tok, nil), nil), next)
	nonce := w.Header().Get("DPoP-Nonce")
	if w.Code != 401 || next.Calls != 0 || nonce == "" ||
		w.Header().Get("WWW-Authenticate") != `DPoP realm="fdx", error="use_dpop_nonce", error_description="a server nonce is required", algs="ES256 PS256"` {
		t.Fatalf("no nonce: %d %v", w.Code, w.Header())
	}
	withNonce := func(n string) func(map[string]any) {
		return func(c map[string]any) { c["nonce"], c["iat"] = n, now.Unix() }
	}
	w, _ = handlertest.Serve(t, b, dpopRequest(path, tok, k.proof(t, "GET", site+path, tok, withNonce(nonce)), nil), next)
	if w.Code != 200 || next.Calls != 1 || w.Header().Get("DPoP-Nonce") != "" {
		t.Fatalf("the nonce at the other gateway: %d %v %s", w.Code, w.Header(), w.Body)
	}
	now = now.Add(time.Minute) // the next period: accepted, and a fresh one given
	w, _ = handlertest.Serve(t, a, dpopRequest(path, tok, k.proof(t, "GET", site+path, tok, withNonce(nonce)), nil), next)
	if fresh := w.Header().Get("DPoP-Nonce"); w.Code != 200 || fresh == "" || fresh == nonce {
		t.Fatalf("a nonce of the last period: %d %v", w.Code, w.Header())
	}
	now = now.Add(2 * time.Minute)
	w, _ = handlertest.Serve(t, a, dpopRequest(path, tok, k.proof(t, "GET", site+path, tok, withNonce(nonce)), nil), next)
	if w.Code != 401 || w.Header().Get("DPoP-Nonce") == "" || !strings.Contains(w.Header().Get("WWW-Authenticate"), `error="use_dpop_nonce"`) {
		t.Fatalf("an expired nonce: %d %v", w.Code, w.Header())
	}
}

// TestFDXAuthDPoPOrigin: behind a balancer that terminates TLS, htu is
// dpop_origin and the path, whatever the Host.
func TestFDXAuthDPoPOrigin(t *testing.T) {
	as := newAuthServer(t)
	k := newDPoPKey(t)
	a, _ := newFDXAuth(t, &FDXAuth{JWKSURL: as.URL + "/jwks", ClientCert: ClientCertOptional, DPoP: DPoPRequired, DPoPOrigin: "HTTPS://FDX.Bank.Example:443"})
	const path = "/fdx/v6/core/accounts"
	tok := as.dpopBound(t, k, nil)
	for htu, want := range map[string]int{"https://fdx.bank.example" + path: 200, "http://example.com" + path: 401, site + path: 401} {
		r := dpopRequest(path, tok, k.proof(t, "GET", htu, tok, nil), nil)
		r.TLS = nil // plain HTTP from the balancer
		if w, _ := handlertest.Serve(t, a, r, &handlertest.Next{}); w.Code != want {
			t.Errorf("htu %s: %d %s", htu, w.Code, w.Body)
		}
	}
}

// TestFDXAuthDPoPReplicas: two gateways sharing a Redis (one namespace)
// refuse a proof used at the other.
func TestFDXAuthDPoPReplicas(t *testing.T) {
	srv := redistest.Start(t)
	as := newAuthServer(t)
	k := newDPoPKey(t)
	mk := func() *FDXAuth {
		a, _ := newFDXAuth(t, &FDXAuth{JWKSURL: as.URL + "/jwks", ClientCert: ClientCertOptional, DPoP: DPoPAllowed,
			Config: store.Config{Store: store.Redis, RedisURL: srv.URL(), OnStoreError: store.OnErrorDeny, Namespace: "fdx-dpop-replicas"}})
		return a
	}
	a, b := mk(), mk()
	const path = "/fdx/v6/core/accounts"
	tok := as.dpopBound(t, k, nil)
	p := k.proof(t, "GET", site+path, tok, nil)
	next := &handlertest.Next{}
	if w, _ := handlertest.Serve(t, a, dpopRequest(path, tok, p, nil), next); w.Code != 200 {
		t.Fatalf("first: %d %s", w.Code, w.Body)
	}
	// the other replica's own memory has never seen it: Redis refuses it
	if w, _ := handlertest.Serve(t, b, dpopRequest(path, tok, p, nil), next); w.Code != 401 || next.Calls != 1 ||
		!strings.Contains(w.Header().Get("WWW-Authenticate"), "jti was used before") {
		t.Fatalf("replayed at the other replica: %d %v", w.Code, w.Header())
	}
	srv.Stop()
	w, _ := handlertest.Serve(t, b, dpopRequest(path, tok, k.proof(t, "GET", site+path, tok, nil), nil), next)
	if w.Code != 503 || next.Calls != 1 || w.Header().Get("Retry-After") != "1" {
		t.Fatalf("Redis down, on_store_error deny: %d %v %s", w.Code, w.Header(), w.Body)
	}
}

// TestFDXAuthGrants: a path's {accountId} must be one of the token's
// accounts, its {consentId} the token's consent; list endpoints pass.
func TestFDXAuthGrants(t *testing.T) {
	as := newAuthServer(t)
	cert := clientCert(t, "recipient-1")
	a, _ := newFDXAuth(t, &FDXAuth{JWKSURL: as.URL + "/jwks", AccountClaim: &FDXGrantClaim{Claim: "fdx_accounts"}, ConsentClaim: &FDXGrantClaim{Claim: "fdx_consent_id"}})
	tok := as.mint(t, cert, map[string]any{"fdx_accounts": []string{"acc-1", "acc 2"}, "fdx_consent_id": "consent-1"})
	none := as.mint(t, cert, nil)
	for _, c := range []struct {
		method, path, tok string
		status            int
		debug             string
	}{
		{"GET", "/fdx/v6/core/accounts", tok, 200, ""},
		{"GET", "/fdx/v6/core/accounts", none, 200, ""},
		{"GET", "/fdx/v6/core/accounts/acc-1/transactions", tok, 200, ""},
		{"GET", "/fdx/v6/core/accounts/acc%202/transactions", tok, 200, ""},
		{"GET", "/fdx/v6/consents/consent-1", tok, 200, ""},
		{"GET", "/fdx/v6/core/accounts/acc-9/transactions", tok, 403, "the token's fdx_accounts does not grant this {accountId}"},
		{"GET", "/fdx/v6/core/accounts/ACC-1/transactions", tok, 403, "the token's fdx_accounts does not grant this {accountId}"},
		{"GET", "/fdx/v6/core/accounts/acc%2D1/transactions", tok, 400, "request path is not canonical: needless percent-encoding"},
		{"GET", "/fdx/v6/consents/consent-7", tok, 403, "the token's fdx_consent_id does not grant this {consentId}"},
		{"GET", "/fdx/v6/core/accounts/acc-1", none, 403, "the token has no fdx_accounts claim to grant {accountId}"},
	} {
		r := request(c.path, c.tok, cert)
		r.Method = c.method
		next := &handlertest.Next{}
		w, _ := handlertest.Serve(t, a, r, next)
		if w.Code != c.status || next.Calls != map[bool]int{true: 1, false: 0}[c.status == 200] {
			t.Errorf("%s %s: %d %s", c.method, c.path, w.Code, w.Body)
			continue
		}
		if c.status == 403 {
			if got := w.Header().Get("WWW-Authenticate"); got != `Bearer realm="fdx", error="insufficient_scope", error_description="`+c.debug+`"` {
				t.Errorf("%s: challenge %s", c.path, got)
			}
		}
		var b fdxBody
		if c.status != 200 && (json.Unmarshal(w.Body.Bytes(), &b) != nil || b.DebugMessage != c.debug) {
			t.Errorf("%s: body %s", c.path, w.Body)
		}
	}
}

func TestFDXAuthDPoPProvision(t *testing.T) {
	jwks := "http://as/jwks"
	base := func(f FDXAuth) *FDXAuth {
		f.Issuer, f.Audiences, f.JWKSURL = issuer, []string{audience}, jwks
		return &f
	}
	for name, c := range map[string]struct {
		a   *FDXAuth
		msg string
	}{
		"bad dpop":               {base(FDXAuth{DPoP: "on"}), `dpop must be off, allowed or required, not "on"`},
		"options without dpop":   {base(FDXAuth{DPoPMaxAge: caddy.Duration(time.Minute)}), "need dpop allowed or required"},
		"a store without dpop":   {base(FDXAuth{Config: store.Config{Store: "memory"}}), "need dpop allowed or required"},
		"hmac":                   {base(FDXAuth{DPoP: DPoPAllowed, DPoPAlgorithms: []string{"HS256"}}), "dpop_algorithms"},
		"none":                   {base(FDXAuth{DPoP: DPoPAllowed, DPoPAlgorithms: []string{"none"}}), "dpop_algorithms"},
		"short max age":          {base(FDXAuth{DPoP: DPoPAllowed, DPoPMaxAge: caddy.Duration(time.Millisecond)}), "dpop_max_age must be at least a second"},
		"nonce key, no nonce":    {base(FDXAuth{DPoP: DPoPAllowed, DPoPNonceKey: "x"}), "dpop_nonce_key needs dpop_nonce on"},
		"short nonce key":        {base(FDXAuth{DPoP: DPoPAllowed, DPoPNonce: true, DPoPNonceKey: base64.StdEncoding.EncodeToString([]byte("short"))}), "at least 32 bytes"},
		"unset nonce key":        {base(FDXAuth{DPoP: DPoPAllowed, DPoPNonce: true, DPoPNonceKey: "{env.MXGATE_TEST_UNSET_NONCE_KEY}"}), "dpop_nonce_key is empty"},
		"origin with a path":     {base(FDXAuth{DPoP: DPoPAllowed, DPoPOrigin: "https://fdx.bank.example/fdx"}), "dpop_origin must be scheme://host[:port]"},
		"origin without scheme":  {base(FDXAuth{DPoP: DPoPAllowed, DPoPOrigin: "fdx.bank.example"}), "dpop_origin"},
		"origin ftp":             {base(FDXAuth{DPoP: DPoPAllowed, DPoPOrigin: "ftp://fdx.bank.example"}), "dpop_origin"},
		"bad store":              {base(FDXAuth{DPoP: DPoPAllowed, Config: store.Config{Store: "disk"}}), "store must be memory or redis"},
		"account claim, empty":   {base(FDXAuth{AccountClaim: &FDXGrantClaim{}}), "account_claim: fdx: a grant claim needs a name"},
		"consent claim, no type": {base(FDXAuth{ConsentClaim: &FDXGrantClaim{Claim: "authorization_details", Member: "consentId"}}), "consent_claim"},
	} {
		if err := handlertest.TryProvision(t, c.a); err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %v, want %q", name, err, c.msg)
		}
	}
	a, _ := newFDXAuth(t, &FDXAuth{JWKSURL: jwks, DPoP: DPoPAllowed})
	if a.algsAttr != "ES256 PS256" || time.Duration(a.DPoPMaxAge) != time.Minute || a.proofs.ReplayWindow() != 91*time.Second || a.DPoP != DPoPAllowed {
		t.Errorf("defaults: %+v", a)
	}
	if off, _ := newFDXAuth(t, &FDXAuth{JWKSURL: jwks}); off.DPoP != DPoPOff || off.jti != nil {
		t.Errorf("dpop's default: %q", off.DPoP)
	}
}
