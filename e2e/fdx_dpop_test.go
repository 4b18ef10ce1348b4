package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	stdhmac "crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/mxgate/mxgate/internal/testkit/redistest"
)

// The DPoP (RFC 9449) and grant tests put fdx_auth in front of the real
// authorization server of the interop tests (oidc-provider, which binds a
// token to the key of the DPoP proof of its token request, and adds
// claims and RFC 9396 authorization_details to tokens), with proofs made
// by a real client library (the npm package dpop, run by the same
// harness) and hostile ones crafted here, against two replicas sharing a
// Redis for the proofs' jtis.

const dpopClientSecret = "dpop-client-secret-for-tests-only"

// dpopASConfig is asConfig with a data recipient that holds no
// certificate (client_secret_basic; its tokens are DPoP-bound), the
// grants of every recipient's consent as claims, and the fdx_consent type
// of authorization_details.
func (p *interopPKI) dpopASConfig(keys ...map[string]any) map[string]any {
	cfg := p.asConfig(keys...)
	cfg["clients"] = append(cfg["clients"].([]map[string]any), map[string]any{
		"client_id": "recipient-dpop", "client_secret": dpopClientSecret, "token_endpoint_auth_method": "client_secret_basic",
		"grant_types": []string{"client_credentials"}, "response_types": []string{}, "redirect_uris": []string{}, "scope": interopScopes})
	for _, c := range cfg["clients"].([]map[string]any) {
		if strings.HasPrefix(c["client_id"].(string), "recipient-") {
			c["authorization_details_types"] = []string{"fdx_consent"}
			c["scope"] = interopScopes + " fdx:notifications:subscribe"
		}
	}
	for _, rs := range cfg["resources"].(map[string]any) {
		r := rs.(map[string]any)
		r["scope"] = r["scope"].(string) + " fdx:notifications:subscribe"
	}
	grants := map[string]any{"fdx_accounts": []string{"acc-1", "acc 2", "café"}, "fdx_consent_id": "consent-1"}
	cfg["claims"] = map[string]any{"recipient-dpop": grants, "recipient-a": grants}
	cfg["rar"] = []string{"fdx_consent"}
	return cfg
}

// dpopKey makes a key pair in the harness (the dpop package) and returns
// its thumbprint.
func (a *realAS) dpopKey(t *testing.T, name string) string {
	t.Helper()
	v := a.command(t, map[string]any{"op": "dpop-key", "name": name, "alg": "ES256"})
	jkt, _ := v["jkt"].(string)
	if jkt == "" {
		t.Fatalf("dpop-key: %v", v)
	}
	return jkt
}

// dpopProof is a proof by the harness's key for htm and htu, with the
// token's hash when token is not empty.
func (a *realAS) dpopProof(t *testing.T, key, htm, htu, token string) string {
	t.Helper()
	cmd := map[string]any{"op": "dpop-proof", "key": key, "htm": htm, "htu": htu}
	if token != "" {
		cmd["accessToken"] = token
	}
	proof, _ := a.command(t, cmd)["proof"].(string)
	if proof == "" {
		t.Fatal("dpop-proof made nothing")
	}
	return proof
}

// tokenRequest obtains a token by the client credentials grant, DPoP-bound
// when the request carries proof (made for POST <issuer>/token); cert,
// when not nil, is presented (tls_client_auth), else recipient-dpop's
// secret. extra adds to the form (authorization_details).
func (a *realAS) tokenRequest(t *testing.T, proof string, cert *tls.Certificate, clientID, scope, resource string, extra url.Values) string {
	t.Helper()
	cfg := &tls.Config{RootCAs: a.ca.pool()}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {clientID}, "scope": {scope}, "resource": {resource}}
	for k, v := range extra {
		form[k] = v
	}
	req, _ := http.NewRequest(http.MethodPost, a.issuer+"/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if cert == nil {
		req.SetBasicAuth(clientID, dpopClientSecret)
	}
	if proof != "" {
		req.Header.Set("DPoP", proof)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var v struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(body, &v) != nil || v.AccessToken == "" {
		t.Fatalf("token for %s: %d %s\n%s", clientID, resp.StatusCode, body, a.stderr)
	}
	if proof != "" && v.TokenType != "DPoP" {
		t.Fatalf("token type %q for a DPoP token request", v.TokenType)
	}
	return v.AccessToken
}

// jwtClaims decodes a JWT's claims, unverified, to see what the server
// issued.
func jwtClaims(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	var v map[string]any
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %d parts", len(parts))
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil || json.Unmarshal(raw, &v) != nil {
		t.Fatal("not a JWT")
	}
	return v
}

// goKey is a DPoP key held by the test, to craft proofs the harness's
// library never would.
type goKey struct {
	priv *ecdsa.PrivateKey
	jwk  map[string]any
}

func newGoKey(t *testing.T) *goKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	g := &goKey{priv: k}
	raw, _ := json.Marshal(jose.JSONWebKey{Key: &k.PublicKey})
	_ = json.Unmarshal(raw, &g.jwk)
	return g
}

func b64url(v any) string {
	if b, ok := v.([]byte); ok {
		return base64.RawURLEncoding.EncodeToString(b)
	}
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

func tokenHash(tok string) string {
	s := sha256.Sum256([]byte(tok))
	return base64.RawURLEncoding.EncodeToString(s[:])
}

// proof crafts a proof: header and claims over good defaults (nil
// removes a member), signed as the header's alg says: ES256 by the key,
// HS256 with hmacKey, none unsigned.
func (k *goKey) proof(t *testing.T, htm, htu, token string, header, claims map[string]any, hmacKey []byte) string {
	t.Helper()
	var jti [16]byte
	_, _ = rand.Read(jti[:])
	h := map[string]any{"typ": "dpop+jwt", "alg": "ES256", "jwk": k.jwk}
	c := map[string]any{"jti": b64url(jti[:]), "htm": htm, "htu": htu, "iat": time.Now().Unix()}
	if token != "" {
		c["ath"] = tokenHash(token)
	}
	for dst, src := range map[*map[string]any]map[string]any{&h: header, &c: claims} {
		for name, v := range src {
			if v == nil {
				delete(*dst, name)
			} else {
				(*dst)[name] = v
			}
		}
	}
	input := b64url(h) + "." + b64url(c)
	var sig []byte
	switch h["alg"] {
	case "ES256":
		sum := sha256.Sum256([]byte(input))
		r, s, err := ecdsa.Sign(rand.Reader, k.priv, sum[:])
		if err != nil {
			t.Fatal(err)
		}
		sig = append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...)
	case "HS256":
		m := stdhmac.New(sha256.New, hmacKey)
		m.Write([]byte(input))
		sig = m.Sum(nil)
	}
	return input + "." + b64url(sig)
}

// dpopSite is a site of one or more gateway replicas, reached at
// https://localhost:<port>, each replica bound to its own loopback
// address.
type dpopSite struct {
	port int
	ca   *x509.CertPool
}

func (s dpopSite) url(path string) string { return fmt.Sprintf("https://localhost:%d%s", s.port, path) }

// fdxReply is an answer of the gateway.
type fdxReply struct {
	status int
	header http.Header
	body   string
}

// challenge is the answer's first WWW-Authenticate challenge.
func (r fdxReply) challenge() string { return r.header.Get("WWW-Authenticate") }

// send sends method path to the replica at addr (127.0.0.x) with the
// Authorization header auth (empty: none) and the DPoP headers proofs,
// over TLS with cert (nil: none).
func (s dpopSite) send(t *testing.T, addr string, cert *tls.Certificate, method, path, auth string, proofs ...string) fdxReply {
	t.Helper()
	cfg := &tls.Config{RootCAs: s.ca, ServerName: "localhost"}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{TLSClientConfig: cfg, DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return dialer.DialContext(ctx, network, fmt.Sprintf("%s:%d", addr, s.port))
	}}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(method, s.url(path), nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	for _, p := range proofs {
		req.Header.Add("DPoP", p)
	}
	resp, err := (&http.Client{Timeout: 15 * time.Second, Transport: tr}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return fdxReply{resp.StatusCode, resp.Header, string(body)}
}

// dpopEnv is two replicas (127.0.0.1 and 127.0.0.2) of a gateway whose
// FDX site accepts DPoP-bound and certificate-bound tokens (dpop
// allowed, client_cert optional, the TLS connection asking for a
// certificate but not requiring one), with the jtis in a shared Redis,
// in front of the real authorization server; replica A also has a site
// with dpop off and cert_bound off.
type dpopEnv struct {
	p        *interopPKI
	as       *realAS
	up       *upstream
	site     dpopSite
	off      dpopSite
	replicas [2]*gateway
}

const replicaA, replicaB = "127.0.0.1", "127.0.0.2"

func startDPoPEnv(t *testing.T) *dpopEnv {
	t.Helper()
	node := oidcProvider(t)
	e := &dpopEnv{p: newInteropPKI(t)}
	e.as = startRealAS(t, node, e.p.bank, e.p.dpopASConfig(signingKey(t, "k1")))
	redis := redistest.Start(t)
	e.up = newUpstream(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, `{"accounts":[]}`) })
	e.site = dpopSite{port: freePort(t), ca: e.p.bank.pool()}
	e.off = dpopSite{port: freePort(t), ca: e.p.bank.pool()}
	common := fmt.Sprintf(`issuer %s
		audience https://rs.test https://rs-opaque.test
		introspection discover rs-mtls
		introspection_auth tls_client_auth
		tls_trust_pool file %s
		tls_client_auth %s %s
		client_cert optional`, e.as.issuer, e.p.bank.file, e.p.gatewayAsClient.certFile, e.p.gatewayAsClient.keyFile)
	site := func(port int, bind, fdxAuth string) string {
		return fmt.Sprintf(`https://localhost:%d {
	bind %s
	tls %s %s {
		client_auth {
			mode verify_if_given
			trust_pool file %s
		}
	}
	fdx_auth {
		%s
	}
	reverse_proxy %s
}
`, port, bind, e.p.gateway.certFile, e.p.gateway.keyFile, e.p.clients.file, fdxAuth, e.up.hostPort())
	}
	for i, bind := range []string{replicaA, replicaB} {
		sites := site(e.site.port, bind, common+fmt.Sprintf(`
		dpop allowed
		store redis %s
		on_store_error deny`, redis.URL()))
		if i == 0 {
			sites += site(e.off.port, bind, common+`
		cert_bound off`)
		}
		e.replicas[i] = startGateway(t, `{
	admin {ADMIN}
	auto_https disable_redirects
	skip_install_trust
	log {
		format mxgate_redact
	}
}
`+sites)
	}
	return e
}

// reached is how many requests the upstream saw.
func (e *dpopEnv) reached() int { return len(e.up.Requests()) }

// TestInteropFDXDPoP: a data recipient without a certificate obtains
// DPoP-bound tokens from oidc-provider (a JWT, and an opaque token that
// is introspected) with proofs made by the dpop package, and uses them at
// either replica with fresh proofs made by the same library; a proof used
// at one replica is refused at the other (the jti is in the shared
// Redis); a certificate-bound token keeps working as Bearer on the same
// site.
func TestInteropFDXDPoP(t *testing.T) {
	t.Parallel()
	e := startDPoPEnv(t)
	const path = "/fdx/v6/core/accounts"
	jkt := e.as.dpopKey(t, "k1")
	tok := e.as.tokenRequest(t, e.as.dpopProof(t, "k1", "POST", e.as.issuer+"/token", ""), nil, "recipient-dpop", "fdx:accountbasic:read", "https://rs.test", nil)
	if cnf, _ := jwtClaims(t, tok)["cnf"].(map[string]any); cnf["jkt"] != jkt {
		t.Fatalf("oidc-provider bound the token to %v, not the proof's key %s", cnf, jkt)
	}
	want := 0
	admitted := func(r fdxReply, what string) {
		t.Helper()
		if want++; r.status != 200 || e.reached() != want {
			t.Fatalf("%s: %d %s %v; the upstream saw %d, want %d", what, r.status, r.body, r.header, e.reached(), want)
		}
	}
	proof := e.as.dpopProof(t, "k1", "GET", e.site.url(path), tok)
	admitted(e.site.send(t, replicaA, nil, "GET", path, "DPoP "+tok, proof), "a DPoP-bound JWT with the library's proof")
	r := e.site.send(t, replicaB, nil, "GET", path, "DPoP "+tok, proof)
	if r.status != 401 || !strings.HasPrefix(r.challenge(), `DPoP realm="fdx", error="invalid_dpop_proof", error_description="the proof's jti was used before"`) || e.reached() != want {
		t.Fatalf("the proof again, at the other replica: %d %v", r.status, r.header)
	}
	admitted(e.site.send(t, replicaB, nil, "GET", path, "DPoP "+tok, e.as.dpopProof(t, "k1", "GET", e.site.url(path), tok)), "a fresh proof at the other replica")
	// htu without the query: the same proof form for a request with one
	admitted(e.site.send(t, replicaA, nil, "GET", path+"?page=2", "DPoP "+tok, e.as.dpopProof(t, "k1", "GET", e.site.url(path), tok)), "a request with a query")

	opaque := e.as.tokenRequest(t, e.as.dpopProof(t, "k1", "POST", e.as.issuer+"/token", ""), nil, "recipient-dpop", "fdx:accountbasic:read", "https://rs-opaque.test", nil)
	if strings.Count(opaque, ".") == 2 {
		t.Fatal("a JWT for the opaque resource server")
	}
	admitted(e.site.send(t, replicaA, nil, "GET", path, "DPoP "+opaque, e.as.dpopProof(t, "k1", "GET", e.site.url(path), opaque)), "an introspected DPoP-bound token")
	r = e.site.send(t, replicaA, nil, "GET", path, "Bearer "+opaque)
	if r.status != 401 || !strings.Contains(r.challenge(), "the token is DPoP-bound: send it as Authorization: DPoP") || e.reached() != want {
		t.Fatalf("the introspected DPoP-bound token as Bearer: %d %v", r.status, r.header)
	}

	certTok := e.as.token(t, e.p.recipientA.pair, "recipient-a", "fdx:accountbasic:read", "https://rs.test")
	admitted(e.site.send(t, replicaA, &e.p.recipientA.pair, "GET", path, "Bearer "+certTok), "a certificate-bound token as Bearer")
	r = e.site.send(t, replicaA, &e.p.recipientB.pair, "GET", path, "Bearer "+certTok)
	if r.status != 401 || !strings.Contains(r.challenge(), "token is not bound to this client certificate") || e.reached() != want {
		t.Fatalf("a certificate-bound token from another certificate: %d %v", r.status, r.header)
	}
	r = e.site.send(t, replicaA, nil, "GET", path, "")
	if got := r.header.Values("WWW-Authenticate"); r.status != 401 || strings.Join(got, "|") != `Bearer realm="fdx"|DPoP realm="fdx", algs="ES256 PS256"` {
		t.Fatalf("no token: %d %q", r.status, got)
	}
	if strings.Contains(e.replicas[0].Stderr.String()+e.replicas[1].Stderr.String(), tok[:32]) {
		t.Error("a token reached a log")
	}
}

// TestHostileFDXDPoP: one named attack per subtest on a DPoP-bound token
// that oidc-provider issued for a key held here, each refused with its
// status and challenge, none reaching the upstream.
func TestHostileFDXDPoP(t *testing.T) {
	t.Parallel()
	e := startDPoPEnv(t)
	const path = "/fdx/v6/core/accounts/acc-1/transactions"
	k, other := newGoKey(t), newGoKey(t)
	tok := e.as.tokenRequest(t, k.proof(t, "POST", e.as.issuer+"/token", "", nil, nil, nil), nil, "recipient-dpop", "fdx:transactions:read", "https://rs.test", nil)
	certTok := e.as.token(t, e.p.recipientA.pair, "recipient-a", "fdx:transactions:read", "https://rs.test")
	htu := e.site.url(path)
	good := func() string { return k.proof(t, "GET", htu, tok, nil, nil, nil) }
	privJWK := map[string]any{}
	raw, _ := json.Marshal(jose.JSONWebKey{Key: k.priv})
	_ = json.Unmarshal(raw, &privJWK)

	// a good proof is admitted, once per replica pair
	used := good()
	if r := e.site.send(t, replicaA, nil, "GET", path, "DPoP "+tok, used); r.status != 200 || e.reached() != 1 {
		t.Fatalf("a good proof: %d %s", r.status, r.body)
	}
	for _, c := range []struct {
		name   string
		site   dpopSite
		addr   string
		auth   string
		proofs []string
		status int
		want   string // the first challenge begins with it
	}{
		{"replayed_jti_same_replica", e.site, replicaA, "DPoP " + tok, []string{used}, 401,
			`DPoP realm="fdx", error="invalid_dpop_proof", error_description="the proof's jti was used before"`},
		{"replayed_jti_other_replica", e.site, replicaB, "DPoP " + tok, []string{used}, 401,
			`DPoP realm="fdx", error="invalid_dpop_proof", error_description="the proof's jti was used before"`},
		{"wrong_htm", e.site, replicaA, "DPoP " + tok, []string{k.proof(t, "DELETE", htu, tok, nil, nil, nil)}, 401,
			`DPoP realm="fdx", error="invalid_dpop_proof", error_description="the proof's htm is not the request's method"`},
		{"wrong_htu_path", e.site, replicaA, "DPoP " + tok, []string{k.proof(t, "GET", e.site.url("/fdx/v6/core/accounts/acc-2/transactions"), tok, nil, nil, nil)}, 401,
			`DPoP realm="fdx", error="invalid_dpop_proof", error_description="the proof's htu is not the request's URL"`},
		{"wrong_htu_host", e.site, replicaA, "DPoP " + tok, []string{k.proof(t, "GET", fmt.Sprintf("https://127.0.0.1:%d%s", e.site.port, path), tok, nil, nil, nil)}, 401,
			`DPoP realm="fdx", error="invalid_dpop_proof", error_description="the proof's htu is not the request's URL"`},
		{"htu_of_another_site", e.site, replicaA, "DPoP " + tok, []string{k.proof(t, "GET", e.off.url(path), tok, nil, nil, nil)}, 401,
			`DPoP realm="fdx", error="invalid_dpop_proof", error_description="the proof's htu is not the request's URL"`},
		{"stale_iat", e.site, replicaA, "DPoP " + tok, []string{k.proof(t, "GET", htu, tok, nil, map[string]any{"iat": time.Now().Add(-5 * time.Minute).Unix()}, nil)}, 401,
			`DPoP realm="fdx", error="invalid_dpop_proof", error_description="the proof is older than its maximum age (iat)"`},
		{"future_iat", e.site, replicaA, "DPoP " + tok, []string{k.proof(t, "GET", htu, tok, nil, map[string]any{"iat": time.Now().Add(5 * time.Minute).Unix()}, nil)}, 401,
			`DPoP realm="fdx", error="invalid_dpop_proof", error_description="the proof's iat is in the future"`},
		{"another_key", e.site, replicaA, "DPoP " + tok, []string{other.proof(t, "GET", htu, tok, nil, nil, nil)}, 401,
			`DPoP realm="fdx", error="invalid_token", error_description="the proof's key is not the one the token is bound to"`},
		{"another_key_in_the_header", e.site, replicaA, "DPoP " + tok, []string{k.proof(t, "GET", htu, tok, map[string]any{"jwk": other.jwk}, nil, nil)}, 401,
			`DPoP realm="fdx", error="invalid_dpop_proof", error_description="the proof's signature does not verify"`},
		{"missing_ath", e.site, replicaA, "DPoP " + tok, []string{k.proof(t, "GET", htu, tok, nil, map[string]any{"ath": nil}, nil)}, 401,
			`DPoP realm="fdx", error="invalid_dpop_proof", error_description="the proof has no ath"`},
		{"ath_of_another_token", e.site, replicaA, "DPoP " + tok, []string{k.proof(t, "GET", htu, certTok, nil, nil, nil)}, 401,
			`DPoP realm="fdx", error="invalid_dpop_proof", error_description="the proof's ath is not the access token's hash"`},
		{"alg_none", e.site, replicaA, "DPoP " + tok, []string{k.proof(t, "GET", htu, tok, map[string]any{"alg": "none"}, nil, nil)}, 401,
			`DPoP realm="fdx", error="invalid_dpop_proof", error_description="the proof's algorithm is not allowed"`},
		{"hmac_with_the_public_key", e.site, replicaA, "DPoP " + tok, []string{k.proof(t, "GET", htu, tok, map[string]any{"alg": "HS256"}, nil, []byte(b64url(k.jwk)))}, 401,
			`DPoP realm="fdx", error="invalid_dpop_proof", error_description="the proof's algorithm is not allowed"`},
		{"private_key_in_the_header", e.site, replicaA, "DPoP " + tok, []string{k.proof(t, "GET", htu, tok, map[string]any{"jwk": privJWK}, nil, nil)}, 401,
			`DPoP realm="fdx", error="invalid_dpop_proof", error_description="the proof's jwk holds private key material"`},
		{"jku_header", e.site, replicaA, "DPoP " + tok, []string{k.proof(t, "GET", htu, tok, map[string]any{"jku": "https://evil.example/jwks"}, nil, nil)}, 401,
			`DPoP realm="fdx", error="invalid_dpop_proof", error_description="the proof's header has jku: its key must be the jwk alone"`},
		{"typ_jwt", e.site, replicaA, "DPoP " + tok, []string{k.proof(t, "GET", htu, tok, map[string]any{"typ": "JWT"}, nil, nil)}, 401,
			`DPoP realm="fdx", error="invalid_dpop_proof", error_description="the proof's typ is not dpop+jwt"`},
		{"two_dpop_headers", e.site, replicaA, "DPoP " + tok, []string{good(), good()}, 401,
			`DPoP realm="fdx", error="invalid_dpop_proof", error_description="more than one DPoP header"`},
		{"no_proof", e.site, replicaA, "DPoP " + tok, nil, 401,
			`DPoP realm="fdx", error="invalid_dpop_proof", error_description="no DPoP proof (the DPoP header)"`},
		{"oversized_proof", e.site, replicaA, "DPoP " + tok, []string{k.proof(t, "GET", htu, tok, map[string]any{"pad": strings.Repeat("p", 9<<10)}, nil, nil)}, 401,
			`DPoP realm="fdx", error="invalid_dpop_proof", error_description="the proof is larger than 8 KiB"`},
		{"dpop_bound_token_as_bearer", e.site, replicaA, "Bearer " + tok, nil, 401,
			`DPoP realm="fdx", error="invalid_token", error_description="the token is DPoP-bound: send it as Authorization: DPoP, with its proof"`},
		{"dpop_bound_token_as_bearer_with_its_proof", e.site, replicaA, "Bearer " + tok, []string{good()}, 401,
			`DPoP realm="fdx", error="invalid_token", error_description="the token is DPoP-bound: send it as Authorization: DPoP, with its proof"`},
		{"certificate_bound_token_with_a_proof", e.site, replicaA, "DPoP " + certTok, []string{k.proof(t, "GET", htu, certTok, nil, nil, nil)}, 401,
			`DPoP realm="fdx", error="invalid_token", error_description="the token is not DPoP-bound (no cnf.jkt): send it as a Bearer token"`},
		{"dpop_bound_token_where_dpop_is_off", e.off, replicaA, "Bearer " + tok, nil, 401,
			`Bearer realm="fdx", error="invalid_token", error_description="the token is DPoP-bound (cnf.jkt), and this resource server does not accept DPoP"`},
		{"dpop_scheme_where_dpop_is_off", e.off, replicaA, "DPoP " + tok, []string{k.proof(t, "GET", e.off.url(path), tok, nil, nil, nil)}, 401,
			`Bearer realm="fdx", error="invalid_token", error_description="the Authorization header is not one Bearer token"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := e.reached()
			r := c.site.send(t, c.addr, nil, "GET", path, c.auth, c.proofs...)
			if r.status != c.status || !strings.HasPrefix(r.challenge(), c.want) {
				t.Errorf("%d %q, want %d %q", r.status, r.challenge(), c.status, c.want)
			}
			if e.reached() != before {
				t.Errorf("the upstream saw %d requests more", e.reached()-before)
			}
		})
	}
}

// TestHostileFDXGrants: with account_claim and consent_claim, a token
// reaches only the accounts and the consent its consent grants, named
// as oidc-provider issued them (a claim of its own, or RFC 9396
// authorization_details), for JWTs and introspected tokens alike;
// encoded and case-changed ids are compared as the application decodes
// them. Each attack asserts the status and what reached the upstream.
func TestHostileFDXGrants(t *testing.T) {
	t.Parallel()
	node := oidcProvider(t)
	p := newInteropPKI(t)
	as := startRealAS(t, node, p.bank, p.dpopASConfig(signingKey(t, "k1")))
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, `{}`) })
	claimPort, rarPort := freePort(t), freePort(t)
	common := fmt.Sprintf(`issuer %s
		audience https://rs.test https://rs-opaque.test
		introspection discover rs-mtls
		introspection_auth tls_client_auth
		tls_trust_pool file %s
		tls_client_auth %s %s`, as.issuer, p.bank.file, p.gatewayAsClient.certFile, p.gatewayAsClient.keyFile)
	startGateway(t, fmt.Sprintf(`{
	admin {ADMIN}
	auto_https disable_redirects
	skip_install_trust
}
%s
%s`, p.site(claimPort, common+`
		account_claim fdx_accounts
		consent_claim fdx_consent_id`, up.hostPort()), p.site(rarPort, common+`
		account_claim authorization_details fdx_consent accounts
		consent_claim authorization_details fdx_consent consentId`, up.hostPort())))
	claims := dpopSite{port: claimPort, ca: p.bank.pool()}
	rar := dpopSite{port: rarPort, ca: p.bank.pool()}
	a, b := &p.recipientA.pair, &p.recipientB.pair
	scopes := "fdx:accountbasic:read fdx:transactions:read fdx:notifications:subscribe"
	jwt := as.token(t, *a, "recipient-a", scopes, "https://rs.test")
	if got := jwtClaims(t, jwt)["fdx_accounts"]; fmt.Sprint(got) != "[acc-1 acc 2 café]" {
		t.Fatalf("oidc-provider issued fdx_accounts %v", got)
	}
	opaque := as.token(t, *a, "recipient-a", scopes, "https://rs-opaque.test")
	noClaims := as.token(t, *b, "recipient-b", scopes, "https://rs.test")
	details := url.Values{"authorization_details": {`[{"type":"fdx_consent","consentId":"consent-1","accounts":["acc-1","acc 2"]}]`}}
	rarJWT := as.tokenRequest(t, "", a, "recipient-a", scopes, "https://rs.test", details)
	if ad, _ := jwtClaims(t, rarJWT)["authorization_details"].([]any); len(ad) != 1 {
		t.Fatalf("oidc-provider issued authorization_details %v", jwtClaims(t, rarJWT)["authorization_details"])
	}
	rarOpaque := as.tokenRequest(t, "", a, "recipient-a", scopes, "https://rs-opaque.test", details)

	for _, c := range []struct {
		name   string
		site   dpopSite
		cert   *tls.Certificate
		method string
		path   string
		tok    string
		status int
		want   string // in the challenge, for a refusal
	}{
		{"granted_account", claims, a, "GET", "/fdx/v6/core/accounts/acc-1/transactions", jwt, 200, ""},
		{"granted_account_introspected", claims, a, "GET", "/fdx/v6/core/accounts/acc-1/transactions", opaque, 200, ""},
		{"granted_account_with_a_space", claims, a, "GET", "/fdx/v6/core/accounts/acc%202/transactions", jwt, 200, ""},
		{"granted_account_in_utf8", claims, a, "GET", "/fdx/v6/core/accounts/caf%C3%A9", jwt, 200, ""},
		{"granted_account_in_lower_case_hex", claims, a, "GET", "/fdx/v6/core/accounts/caf%c3%a9", jwt, 200, ""},
		{"the_account_list", claims, a, "GET", "/fdx/v6/core/accounts", jwt, 200, ""},
		{"the_account_list_without_the_claim", claims, b, "GET", "/fdx/v6/core/accounts", noClaims, 200, ""},
		{"granted_consent", claims, a, "GET", "/fdx/v6/consents/consent-1", jwt, 200, ""},
		{"another_account", claims, a, "GET", "/fdx/v6/core/accounts/acc-9/transactions", jwt, 403, "the token's fdx_accounts does not grant this {accountId}"},
		{"another_account_introspected", claims, a, "GET", "/fdx/v6/core/accounts/acc-9/transactions", opaque, 403, "the token's fdx_accounts does not grant this {accountId}"},
		{"another_account_detail", claims, a, "GET", "/fdx/v6/core/accounts/acc-9", jwt, 403, "does not grant this {accountId}"},
		{"case_changed_account", claims, a, "GET", "/fdx/v6/core/accounts/ACC-1/transactions", jwt, 403, "does not grant this {accountId}"},
		{"case_changed_utf8", claims, a, "GET", "/fdx/v6/core/accounts/CAF%C3%89", jwt, 403, "does not grant this {accountId}"},
		{"needlessly_encoded_account", claims, a, "GET", "/fdx/v6/core/accounts/acc%2D1/transactions", jwt, 400, "request path is not canonical: needless percent-encoding"},
		{"encoded_slash_in_the_account", claims, a, "GET", "/fdx/v6/core/accounts/acc-1%2Ftransactions", jwt, 400, "request path is not canonical: encoded separator"},
		{"double_encoded_account", claims, a, "GET", "/fdx/v6/core/accounts/acc%25202/transactions", jwt, 400, "request path is not canonical: encoded separator"},
		{"account_with_a_trailing_space", claims, a, "GET", "/fdx/v6/core/accounts/acc-1%20/transactions", jwt, 403, "does not grant this {accountId}"},
		{"another_consent", claims, a, "GET", "/fdx/v6/consents/consent-7", jwt, 403, "the token's fdx_consent_id does not grant this {consentId}"},
		{"another_consents_revocation", claims, a, "PATCH", "/fdx/v6/consents/consent-7/revocation", jwt, 403, "does not grant this {consentId}"},
		{"another_consents_events", claims, a, "DELETE", "/fdx/v6/events/consent-7/revocation/sub-1", jwt, 403, "does not grant this {consentId}"},
		{"a_token_without_the_claim", claims, b, "GET", "/fdx/v6/core/accounts/acc-1/transactions", noClaims, 403, "the token has no fdx_accounts claim to grant {accountId}"},
		{"rar_granted_account", rar, a, "GET", "/fdx/v6/core/accounts/acc%202/transactions", rarJWT, 200, ""},
		{"rar_granted_account_introspected", rar, a, "GET", "/fdx/v6/core/accounts/acc-1/transactions", rarOpaque, 200, ""},
		{"rar_granted_consent", rar, a, "GET", "/fdx/v6/consents/consent-1", rarJWT, 200, ""},
		{"rar_account_granted_by_another_claim_only", rar, a, "GET", "/fdx/v6/core/accounts/caf%C3%A9", rarJWT, 403,
			"the token's authorization_details[type=fdx_consent].accounts does not grant this {accountId}"},
		{"rar_another_account_introspected", rar, a, "GET", "/fdx/v6/core/accounts/acc-9/transactions", rarOpaque, 403, "does not grant this {accountId}"},
		{"rar_another_consent", rar, a, "GET", "/fdx/v6/consents/consent-7", rarJWT, 403, "does not grant this {consentId}"},
		{"rar_a_token_without_details", rar, a, "GET", "/fdx/v6/core/accounts/acc-1", jwt, 403,
			"the token has no authorization_details[type=fdx_consent].accounts claim to grant {accountId}"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := len(up.Requests())
			r := c.site.send(t, replicaA, c.cert, c.method, c.path, "Bearer "+c.tok)
			if r.status != c.status || (c.want != "" && !strings.Contains(r.challenge(), c.want)) {
				t.Fatalf("%d %q %s, want %d %q", r.status, r.challenge(), r.body, c.status, c.want)
			}
			seen := up.Requests()
			switch {
			case c.status != 200 && len(seen) != before:
				t.Errorf("the upstream saw %d requests more", len(seen)-before)
			case c.status == 200 && (len(seen) != before+1 || seen[before].URI != c.path):
				t.Errorf("the upstream saw %d requests more, the last %+v", len(seen)-before, seen[len(seen)-1].URI)
			}
		})
	}
}
