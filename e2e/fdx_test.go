package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/mxgate/mxgate/fdx"
)

// fdxAS is a stand-in authorization server: signing keys, a JWKS endpoint
// that counts its fetches, and an introspection endpoint.
type fdxAS struct {
	*httptest.Server
	mu        sync.Mutex
	keys      []jose.JSONWebKey
	active    map[string]map[string]any
	jwksCalls atomic.Int32 // JWKS fetches answered
	jwksTries atomic.Int32 // JWKS fetches, answered or not
	down      atomic.Bool
}

func newFDXAS(t *testing.T) *fdxAS {
	a := &fdxAS{active: map[string]map[string]any{}}
	a.addKey("es-1", jose.ES256)
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/jwks" {
			a.jwksTries.Add(1)
		}
		if a.down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		switch r.URL.Path {
		case "/jwks":
			a.jwksCalls.Add(1)
			var set jose.JSONWebKeySet
			for _, k := range a.keys {
				set.Keys = append(set.Keys, k.Public())
			}
			json.NewEncoder(w).Encode(set)
		case "/introspect":
			if id, secret, _ := r.BasicAuth(); id != "fdx-rs" || secret != "introspection-secret" {
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

func (a *fdxAS) addKey(kid string, alg jose.SignatureAlgorithm) {
	var key any
	if alg == jose.ES256 {
		key, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	} else {
		key, _ = rsa.GenerateKey(rand.Reader, 2048)
	}
	a.mu.Lock()
	a.keys = append(a.keys, jose.JSONWebKey{Key: key, KeyID: kid, Algorithm: string(alg), Use: "sig"})
	a.mu.Unlock()
}

func (a *fdxAS) key(kid string) jose.JSONWebKey {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, k := range a.keys {
		if k.KeyID == kid {
			return k
		}
	}
	panic("no key " + kid)
}

// fdxEnv is a running FDX gateway with its PKI.
type fdxEnv struct {
	t        *testing.T
	as       *fdxAS
	up       *upstream
	base     string
	dir      string // fdx-dev output
	clientA  tls.Certificate
	clientB  tls.Certificate
	thumbA   string
	g        *gateway
	caPool   *x509.CertPool
	hostPort string
	clients  sync.Map // *tls.Certificate -> *http.Client, for keep-alive
}

func newFDXEnv(t *testing.T) *fdxEnv {
	e := &fdxEnv{t: t, as: newFDXAS(t), dir: filepath.Join(t.TempDir(), "pki")}
	if out, err := exec.Command(binary, "fdx-dev", "--dir", e.dir).CombinedOutput(); err != nil {
		t.Fatalf("fdx-dev: %v\n%s", err, out)
	}
	var err error
	if e.clientA, err = tls.LoadX509KeyPair(e.path("client.pem"), e.path("client-key.pem")); err != nil {
		t.Fatal(err)
	}
	if e.clientB, err = tls.LoadX509KeyPair(e.path("other-client.pem"), e.path("other-client-key.pem")); err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(e.clientA.Certificate[0])
	e.thumbA = fdx.Thumbprint(leaf)
	e.caPool = x509.NewCertPool()
	caPEM, _ := os.ReadFile(e.path("ca.pem"))
	e.caPool.AppendCertsFromPEM(caPEM)

	e.up = newUpstream(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{"ok":true}`)) })
	port := freePort(t)
	e.hostPort = fmt.Sprintf("127.0.0.1:%d", port)
	e.base = fmt.Sprintf("https://localhost:%d", port)
	e.g = startGateway(t, fmt.Sprintf(`{
	admin {ADMIN}
	auto_https disable_redirects
	skip_install_trust
}
https://localhost:%d {
	bind 127.0.0.1
	log {
		output stderr
	}
	tls %s %s {
		protocols tls1.2 tls1.3
		ciphers TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
		client_auth {
			mode require_and_verify
			trust_pool file %s
		}
	}
	fdx_auth {
		issuer https://as.test
		audience https://rs.test
		jwks_url %s/jwks
		jwks_min_refresh 10s
		introspection %s/introspect fdx-rs {env.E2E_INTROSPECTION_SECRET}
		forward_claims {
			sub X-FDX-Subject
			client_id X-FDX-Client
		}
		scopes {
			GET /fdx/v6/customers/current fdx:customerpersonal:read
		}
	}
	reverse_proxy %s
}
`, port, e.path("server.pem"), e.path("server-key.pem"), e.path("ca.pem"), e.as.URL, e.as.URL, e.up.hostPort()),
		"E2E_INTROSPECTION_SECRET=introspection-secret")
	return e
}

func (e *fdxEnv) path(name string) string { return filepath.Join(e.dir, name) }

// client speaks TLS to the gateway with the given client certificate
// (none when nil).
func (e *fdxEnv) client(cert *tls.Certificate) *http.Client {
	if c, ok := e.clients.Load(cert); ok && cert != nil {
		return c.(*http.Client)
	}
	cfg := &tls.Config{RootCAs: e.caPool, ServerName: "localhost"}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: cfg,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, e.hostPort)
		},
	}}
	if cert != nil {
		e.clients.Store(cert, c)
	}
	return c
}

// token mints an access token with the AS's key kid; edit changes claims.
func (e *fdxEnv) token(kid, scope string, edit func(c map[string]any)) string {
	now := time.Now()
	c := map[string]any{
		"iss": "https://as.test", "aud": "https://rs.test", "sub": "user-42", "client_id": "recipient-7",
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "jti": fmt.Sprint(now.UnixNano()),
		"scope": scope, "cnf": map[string]string{"x5t#S256": e.thumbA},
	}
	if edit != nil {
		edit(c)
	}
	k := e.as.key(kid)
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(k.Algorithm), Key: k.Key},
		(&jose.SignerOptions{}).WithHeader(jose.HeaderType, "at+jwt").WithHeader("kid", kid))
	if err != nil {
		e.t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(c).Serialize()
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

type fdxAnswer struct {
	status    int
	challenge string
	body      map[string]string
	ctype     string
	id        string
}

func (e *fdxEnv) do(cert *tls.Certificate, method, path, token string, hdr ...string) fdxAnswer {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.base+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.client(cert).Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var body map[string]string
	json.NewDecoder(resp.Body).Decode(&body)
	return fdxAnswer{resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body, resp.Header.Get("Content-Type"), resp.Header.Get("X-Fapi-Interaction-Id")}
}

const allFDX = "fdx:accountbasic:read fdx:accountdetailed:read fdx:transactions:read fdx:customercontact:read fdx:customerpersonal:read fdx:paymentsupport:read fdx:notifications:subscribe"

func TestFDXMutualTLSAndBinding(t *testing.T) {
	t.Parallel()
	e := newFDXEnv(t)
	// no client certificate: refused in the handshake
	req, _ := http.NewRequest("GET", e.base+"/fdx/v6/core/accounts", nil)
	if resp, err := e.client(nil).Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("a client without a certificate got %d", resp.StatusCode)
	}
	if n := len(e.up.Requests()); n != 0 {
		t.Fatalf("upstream reached %d times", n)
	}
	tok := e.token("es-1", allFDX, nil)
	// the right pairing passes; claims are forwarded; forged copies dropped
	a := e.do(&e.clientA, "GET", "/fdx/v6/core/accounts", tok, "X-FDX-Subject", "forged")
	if a.status != 200 || len(a.id) != 36 {
		t.Fatalf("bound token, right certificate: %+v", a)
	}
	got := e.up.Requests()[0]
	if got.Header.Get("X-Fdx-Subject") != "user-42" || got.Header.Get("X-Fdx-Client") != "recipient-7" || len(got.Header.Values("X-Fdx-Subject")) != 1 {
		t.Fatalf("forwarded claims: %v", got.Header)
	}
	if got.Header.Get("X-Fapi-Interaction-Id") != a.id {
		t.Fatalf("interaction id upstream %q, answer %q", got.Header.Get("X-Fapi-Interaction-Id"), a.id)
	}
	// an interaction id the client sends is echoed
	const id = "c770aef3-6784-41f7-8e0e-ff5f97bddb3a"
	if a := e.do(&e.clientA, "GET", "/fdx/v6/core/accounts", tok, "X-Fapi-Interaction-Id", id); a.id != id {
		t.Fatalf("interaction id not echoed: %q", a.id)
	}
	waitForLog(t, e.g, `"fapi_interaction_id":"`+id+`"`) // the access log line follows the answer
	// the token bound to A, presented with B
	b := e.do(&e.clientB, "GET", "/fdx/v6/core/accounts", tok)
	if b.status != 401 || b.challenge != `Bearer realm="fdx", error="invalid_token", error_description="token is not bound to this client certificate"` ||
		b.ctype != "application/json; charset=UTF-8" || b.body["code"] != "401" || b.body["message"] != "Unauthorized" || b.body["debugMessage"] == "" {
		t.Fatalf("token bound to A, certificate B: %+v", b)
	}
	// a token with no cnf at all
	unbound := e.token("es-1", allFDX, func(c map[string]any) { delete(c, "cnf") })
	if a := e.do(&e.clientA, "GET", "/fdx/v6/core/accounts", unbound); a.status != 401 {
		t.Fatalf("unbound token: %+v", a)
	}
}

func TestFDXTokenRefusals(t *testing.T) {
	t.Parallel()
	e := newFDXEnv(t)
	k := e.as.key("es-1")
	pubDER, _ := x509.MarshalPKIXPublicKey(k.Public().Key)
	hmacSigner, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})},
		(&jose.SignerOptions{}).WithHeader(jose.HeaderType, "at+jwt").WithHeader("kid", "es-1"))
	hmacTok, _ := jwt.Signed(hmacSigner).Claims(map[string]any{"iss": "https://as.test", "aud": "https://rs.test", "sub": "u", "client_id": "c",
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Minute).Unix(), "scope": allFDX, "cnf": map[string]string{"x5t#S256": e.thumbA}}).Serialize()
	enc := base64.RawURLEncoding.EncodeToString
	noneHdr, _ := json.Marshal(map[string]string{"alg": "none", "typ": "at+jwt", "kid": "es-1"})
	parts := strings.Split(e.token("es-1", allFDX, nil), ".")
	noneTok := enc(noneHdr) + "." + parts[1] + "."

	cases := []struct {
		name, token, reason string
	}{
		{"expired", e.token("es-1", allFDX, func(c map[string]any) { c["exp"] = time.Now().Add(-time.Minute).Unix() }), "expired"},
		{"not yet valid", e.token("es-1", allFDX, func(c map[string]any) { c["nbf"] = time.Now().Add(time.Minute).Unix() }), "not yet valid"},
		{"wrong issuer", e.token("es-1", allFDX, func(c map[string]any) { c["iss"] = "https://evil.test" }), "wrong issuer"},
		{"wrong audience", e.token("es-1", allFDX, func(c map[string]any) { c["aud"] = "https://other-rs.test" }), "wrong audience"},
		{"alg none", noneTok, "signature algorithm not allowed"},
		{"HMAC with the public key as secret", hmacTok, "signature algorithm not allowed"},
		{"not a JWT, not active", "opaque-unknown-token", "token is not active"},
	}
	for _, c := range cases {
		a := e.do(&e.clientA, "GET", "/fdx/v6/core/accounts", c.token)
		want := `Bearer realm="fdx", error="invalid_token", error_description="` + c.reason + `"`
		if a.status != 401 || a.challenge != want || a.body["debugMessage"] != c.reason {
			t.Errorf("%s: %+v", c.name, a)
		}
	}
	// no token: a bare challenge (RFC 6750 3.1)
	if a := e.do(&e.clientA, "GET", "/fdx/v6/core/accounts", ""); a.status != 401 || a.challenge != `Bearer realm="fdx"` || a.body["code"] != "401" {
		t.Errorf("no token: %+v", a)
	}
	// the token in the query string is refused, even alongside a good header
	good := e.token("es-1", allFDX, nil)
	for _, hdr := range []string{"", good} {
		a := e.do(&e.clientA, "GET", "/fdx/v6/core/accounts?access_token="+good, hdr)
		if a.status != 400 || !strings.Contains(a.challenge, `error="invalid_request"`) {
			t.Errorf("token in the query (header %v): %+v", hdr != "", a)
		}
	}
	if n := len(e.up.Requests()); n != 0 {
		t.Fatalf("upstream reached %d times", n)
	}
	// opaque tokens through introspection, bound to the certificate too
	e.as.mu.Lock()
	e.as.active["opaque-good"] = map[string]any{"active": true, "scope": "fdx:transactions:read", "client_id": "recipient-7", "sub": "user-42",
		"iss": "https://as.test", "aud": "https://rs.test", "exp": time.Now().Add(time.Hour).Unix(), "cnf": map[string]string{"x5t#S256": e.thumbA}}
	e.as.mu.Unlock()
	if a := e.do(&e.clientA, "GET", "/fdx/v6/core/accounts/a1/transactions", "opaque-good"); a.status != 200 {
		t.Fatalf("introspected token: %+v", a)
	}
	if a := e.do(&e.clientB, "GET", "/fdx/v6/core/accounts/a1/transactions", "opaque-good"); a.status != 401 {
		t.Fatalf("introspected token, other certificate: %+v", a)
	}
}

func TestFDXKeyRotationAndOutage(t *testing.T) {
	t.Parallel()
	e := newFDXEnv(t)
	if a := e.do(&e.clientA, "GET", "/fdx/v6/core/accounts", e.token("es-1", allFDX, nil)); a.status != 200 {
		t.Fatalf("first key: %+v", a)
	}
	before := e.as.jwksCalls.Load()
	e.as.addKey("ps-2", jose.PS256) // rotation, no restart
	// the key set was fetched a moment ago, but by no token naming an
	// unknown kid: the first such token fetches it again at once
	if a := e.do(&e.clientA, "GET", "/fdx/v6/core/accounts", e.token("ps-2", allFDX, nil)); a.status != 200 {
		t.Fatalf("rotated key: %+v", a)
	}
	if n := e.as.jwksCalls.Load() - before; n != 1 {
		t.Fatalf("%d JWKS fetches for the new kid, want 1", n)
	}
	// unknown kids within jwks_min_refresh (and more than a second before
	// its end, when they would wait for it): no further fetches
	e.as.addKey("es-unlisted", jose.ES256)
	tok := e.token("es-unlisted", allFDX, nil)
	e.as.mu.Lock()
	e.as.keys = e.as.keys[:2] // the AS does not publish it
	e.as.mu.Unlock()
	for range 10 {
		if a := e.do(&e.clientA, "GET", "/fdx/v6/core/accounts", tok); a.status != 401 || a.body["debugMessage"] != "unknown signing key" {
			t.Fatalf("unknown kid: %+v", a)
		}
	}
	if n := e.as.jwksCalls.Load() - before; n != 1 {
		t.Fatalf("%d JWKS fetches after a flood of unknown kids, want 1", n)
	}
	// outage: cached keys keep working; an unknown kid is a 401 (not a
	// 503: the keys are known), after one fetch at most (none within
	// jwks_min_refresh; one if the test ran past it), never a retry
	e.as.down.Store(true)
	if a := e.do(&e.clientA, "GET", "/fdx/v6/core/accounts", e.token("ps-2", allFDX, nil)); a.status != 200 {
		t.Fatalf("cached key during the outage: %+v", a)
	}
	tries := e.as.jwksTries.Load()
	if a := e.do(&e.clientA, "GET", "/fdx/v6/core/accounts", tok); a.status != 401 || a.body["debugMessage"] != "unknown signing key" {
		t.Fatalf("unknown kid during the outage: %+v", a)
	}
	if n := e.as.jwksTries.Load() - tries; n > 1 {
		t.Fatalf("an unknown kid during the outage cost %d JWKS fetches, want at most 1", n)
	}
}

// TestFDXScopeTable checks every row of the FDX tables, with a token that
// has the scope and one that lacks it.
func TestFDXScopeTable(t *testing.T) {
	t.Parallel()
	e := newFDXEnv(t)
	rows := []struct {
		method, path string
		scopes       []string // any one suffices; none: a valid token suffices
	}{
		{"GET", "/fdx/v6/core/accounts", []string{"fdx:accountbasic:read", "fdx:accountdetailed:read"}},
		{"GET", "/fdx/v6/core/accounts/acc-1", []string{"fdx:accountbasic:read", "fdx:accountdetailed:read"}},
		{"GET", "/fdx/v6/core/accounts/acc-1/transactions", []string{"fdx:transactions:read"}},
		{"GET", "/fdx/v6/core/accounts/acc-1/contact", []string{"fdx:customercontact:read"}},
		{"GET", "/fdx/v6/core/accounts/acc-1/payment-networks", []string{"fdx:paymentsupport:read"}},
		{"GET", "/fdx/v6/core/accounts/acc-1/asset-transfer-networks", []string{"fdx:paymentsupport:read"}},
		{"GET", "/fdx/v6/consents/con-1", nil},
		{"PATCH", "/fdx/v6/consents/con-1/revocation", nil},
		{"GET", "/fdx/v6/consents/con-1/revocation", nil},
		{"POST", "/fdx/v6/events/notification-subscriptions", []string{"fdx:notifications:subscribe"}},
		{"GET", "/fdx/v6/events/notification-subscriptions/sub-1", []string{"fdx:notifications:subscribe"}},
		{"DELETE", "/fdx/v6/events/con-1/revocation/sub-1", []string{"fdx:notifications:subscribe"}},
		{"GET", "/fdx/v6/customers/current", []string{"fdx:customerpersonal:read"}}, // a row the Caddyfile adds
	}
	for _, r := range rows {
		if len(r.scopes) == 0 {
			if a := e.do(&e.clientA, r.method, r.path, e.token("es-1", "", nil)); a.status != 200 {
				t.Errorf("%s %s with no scope: %+v", r.method, r.path, a)
			}
			continue
		}
		for _, s := range r.scopes {
			if a := e.do(&e.clientA, r.method, r.path, e.token("es-1", s, nil)); a.status != 200 {
				t.Errorf("%s %s with %s: %+v", r.method, r.path, s, a)
			}
		}
		lacking := allFDX
		for _, s := range r.scopes {
			lacking = strings.Join(strings.Fields(strings.ReplaceAll(lacking, s, "")), " ")
		}
		a := e.do(&e.clientA, r.method, r.path, e.token("es-1", lacking, nil))
		want := `Bearer realm="fdx", error="insufficient_scope", error_description="scope ` + strings.Join(r.scopes, " ") + ` required", scope="` + strings.Join(r.scopes, " ") + `"`
		if a.status != 403 || a.challenge != want || a.body["code"] != "403" || a.body["message"] != "Forbidden" {
			t.Errorf("%s %s without %v: %+v", r.method, r.path, r.scopes, a)
		}
	}
	// no row: denied, whatever the scopes; a path that is not canonical: a bad request
	for p, want := range map[string]int{"/fdx/v6/core/statements": 403, "/admin": 403, "/fdx/v6/core/accounts/acc-1/../../consents/x": 400} {
		if a := e.do(&e.clientA, "GET", p, e.token("es-1", allFDX, nil)); a.status != want {
			t.Errorf("GET %s: %+v", p, a)
		}
	}
}
