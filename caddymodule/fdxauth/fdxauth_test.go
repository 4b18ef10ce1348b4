package fdxauth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mxgate/mxgate/fdx"
	"github.com/mxgate/mxgate/internal/testkit/handlertest"
)

const (
	issuer   = "https://as.fdx.example"
	audience = "https://fdx.example"
)

// authServer is a stand-in authorization server: its JWKS, and an
// introspection endpoint that knows the opaque tokens in active.
type authServer struct {
	*httptest.Server
	key    jose.JSONWebKey // private
	down   atomic.Bool
	active map[string]map[string]any
	jwks   atomic.Int32 // fetches of the JWKS
	intro  atomic.Int32 // introspection calls
}

func newAuthServer(t testing.TB) *authServer {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	a := &authServer{key: jose.JSONWebKey{Key: priv, KeyID: "as-1", Algorithm: string(jose.ES256), Use: "sig"}, active: map[string]map[string]any{}}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/jwks":
			a.jwks.Add(1)
		case "/introspect":
			a.intro.Add(1)
		}
		if a.down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		switch r.URL.Path {
		case "/jwks":
			_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{a.key.Public()}})
		case "/introspect":
			id, secret, _ := r.BasicAuth()
			if id != "rs-client" || secret != "rs-s3cret" {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			_ = r.ParseForm()
			v, ok := a.active[r.PostForm.Get("token")]
			if !ok {
				v = map[string]any{"active": false}
			}
			_ = json.NewEncoder(w).Encode(v)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(a.Close)
	return a
}

// mint signs claims (over good defaults) as an at+jwt.
func (a *authServer) mint(t testing.TB, cert *x509.Certificate, override map[string]any) string {
	t.Helper()
	now := time.Now()
	claims := map[string]any{
		"iss": issuer, "aud": audience, "sub": "user-1", "client_id": "recipient-1",
		"iat": now.Add(-time.Minute).Unix(), "exp": now.Add(10 * time.Minute).Unix(), "jti": "j-1",
		"scope": "fdx:accountbasic:read fdx:transactions:read",
	}
	if cert != nil {
		claims["cnf"] = map[string]string{"x5t#S256": fdx.Thumbprint(cert)}
	}
	for k, v := range override {
		if v == nil {
			delete(claims, k)
		} else {
			claims[k] = v
		}
	}
	opts := (&jose.SignerOptions{}).WithHeader(jose.HeaderType, "at+jwt").WithHeader("kid", a.key.KeyID)
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: a.key.Key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// clientCert makes a self-signed client certificate.
func clientCert(t testing.TB, name string) *x509.Certificate {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newFDXAuth(t testing.TB, a *FDXAuth) (*FDXAuth, *observer.ObservedLogs) {
	t.Helper()
	if a.Issuer == "" {
		a.Issuer = issuer
	}
	if len(a.Audiences) == 0 {
		a.Audiences = []string{audience}
	}
	handlertest.Provision(t, a)
	var logs *observer.ObservedLogs
	a.logger, logs = handlertest.Logs()
	return a, logs
}

// request is a GET of path with the bearer token, over mutual TLS with
// cert, which the connection verified (plain HTTP when nil), for the
// server name example.com, the request's Host.
func request(path, token string, cert *x509.Certificate) *http.Request {
	r := httptest.NewRequest("GET", path, nil)
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	if cert != nil {
		r.TLS = &tls.ConnectionState{ServerName: "example.com", PeerCertificates: []*x509.Certificate{cert},
			VerifiedChains: [][]*x509.Certificate{{cert}}}
	}
	return handlertest.Request(r, "198.51.100.9")
}

// unverified is r with its client certificate received but not verified
// (client_auth mode request or require, with no trust pool).
func unverified(r *http.Request) *http.Request {
	r.TLS.VerifiedChains = nil
	return r
}

// named is r over a TLS connection for server name sni, with Host host.
func named(r *http.Request, sni, host string) *http.Request {
	r.TLS.ServerName, r.Host = sni, host
	return r
}

// userNext records {http.auth.user.id} as the next handler sees it.
type userNext struct {
	handlertest.Next
	user string
}

func (u *userNext) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	u.user = r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer).ReplaceAll("{http.auth.user.id}", "")
	return u.Next.ServeHTTP(w, r)
}

func TestFDXAuthAdmits(t *testing.T) {
	as := newAuthServer(t)
	cert := clientCert(t, "recipient-1")
	a, _ := newFDXAuth(t, &FDXAuth{JWKSURL: as.URL + "/jwks"})
	next := &userNext{}
	r := request("/fdx/v6/core/accounts/acct-1/transactions", as.mint(t, cert, nil), cert)
	w, err := handlertest.Serve(t, a, r, next)
	if err != nil || w.Code != 200 || next.Calls != 1 {
		t.Fatalf("%d %v %s", w.Code, err, w.Body)
	}
	if next.user != "recipient-1" {
		t.Errorf("{http.auth.user.id} = %q", next.user)
	}
	// once fetched, the keys outlive the key server
	as.down.Store(true)
	if w, _ := handlertest.Serve(t, a, request("/fdx/v6/core/accounts", as.mint(t, cert, nil), cert), &handlertest.Next{}); w.Code != 200 {
		t.Errorf("with cached keys, key server down: %d %s", w.Code, w.Body)
	}
}

type fdxBody struct{ Code, Message, DebugMessage string }

func TestFDXAuthRefuses(t *testing.T) {
	as := newAuthServer(t)
	cert, other := clientCert(t, "recipient-1"), clientCert(t, "someone-else")
	a, logs := newFDXAuth(t, &FDXAuth{JWKSURL: as.URL + "/jwks",
		Scopes: []FDXScope{{Method: "GET", Pattern: "/fdx/v6/core/accounts/{accountId}/statements", Scopes: "fdx:statements:read"}}})
	good := as.mint(t, cert, nil)
	twoAuth := request("/fdx/v6/core/accounts", good, cert)
	twoAuth.Header.Add("Authorization", "Bearer "+good)
	basic := request("/fdx/v6/core/accounts", "", cert)
	basic.Header.Set("Authorization", "Basic dXNlcjpwYXNz")
	for _, c := range []struct {
		name      string
		r         *http.Request
		status    int
		challenge string
		debug     string
	}{
		{"token in the query", request("/fdx/v6/core/accounts?access_token="+good, "", cert), 400,
			`Bearer realm="fdx", error="invalid_request", error_description="access tokens are accepted only in the Authorization header"`, "access tokens are accepted only in the Authorization header"},
		{"no token", request("/fdx/v6/core/accounts", "", cert), 401, `Bearer realm="fdx"`, "no access token"},
		{"two Authorization headers", twoAuth, 401, `Bearer realm="fdx", error="invalid_token", error_description="the Authorization header is not one Bearer token"`, "the Authorization header is not one Bearer token"},
		{"basic", basic, 401, `Bearer realm="fdx", error="invalid_token", error_description="the Authorization header is not one Bearer token"`, "the Authorization header is not one Bearer token"},
		{"expired", request("/fdx/v6/core/accounts", as.mint(t, cert, map[string]any{"exp": time.Now().Add(-time.Hour).Unix(), "iat": time.Now().Add(-2 * time.Hour).Unix()}), cert), 401,
			`Bearer realm="fdx", error="invalid_token", error_description="expired"`, "expired"},
		{"wrong audience", request("/fdx/v6/core/accounts", as.mint(t, cert, map[string]any{"aud": "https://elsewhere"}), cert), 401,
			`Bearer realm="fdx", error="invalid_token", error_description="wrong audience"`, "wrong audience"},
		{"opaque, no introspection", request("/fdx/v6/core/accounts", "opaque-token", cert), 401,
			`Bearer realm="fdx", error="invalid_token", error_description="not a JWT"`, "not a JWT"},
		{"no client certificate", request("/fdx/v6/core/accounts", good, nil), 400,
			`Bearer realm="fdx", error="invalid_request", error_description="no client certificate verified by the TLS connection"`, "no client certificate verified by the TLS connection"},
		{"a client certificate the connection did not verify", unverified(request("/fdx/v6/core/accounts", good, cert)), 400,
			`Bearer realm="fdx", error="invalid_request", error_description="no client certificate verified by the TLS connection"`, "no client certificate verified by the TLS connection"},
		{"another client's certificate", request("/fdx/v6/core/accounts", good, other), 401,
			`Bearer realm="fdx", error="invalid_token", error_description="token is not bound to this client certificate"`, "token is not bound to this client certificate"},
		{"unbound token", request("/fdx/v6/core/accounts", as.mint(t, nil, nil), cert), 401,
			`Bearer realm="fdx", error="invalid_token", error_description="token is not bound to this client certificate"`, "token is not bound to this client certificate"},
		{"insufficient scope", request("/fdx/v6/core/accounts/acct-1/contact", good, cert), 403,
			`Bearer realm="fdx", error="insufficient_scope", error_description="scope fdx:customercontact:read required", scope="fdx:customercontact:read"`, "scope fdx:customercontact:read required"},
		{"added row", request("/fdx/v6/core/accounts/acct-1/statements", good, cert), 403,
			`Bearer realm="fdx", error="insufficient_scope", error_description="scope fdx:statements:read required", scope="fdx:statements:read"`, "scope fdx:statements:read required"},
		{"no rule", request("/fdx/v6/core/secrets", good, cert), 403,
			`Bearer realm="fdx", error="insufficient_scope", error_description="no scope rule allows this endpoint"`, "no scope rule allows this endpoint"},
		{"not canonical", request("/fdx/v6/core//accounts", good, cert), 400,
			`Bearer realm="fdx", error="invalid_request", error_description="request path is not canonical: empty segment"`, "request path is not canonical: empty segment"},
	} {
		next := &handlertest.Next{}
		w, err := handlertest.Serve(t, a, c.r, next)
		if err != nil || w.Code != c.status || next.Calls != 0 {
			t.Errorf("%s: %d %v, next called %d times", c.name, w.Code, err, next.Calls)
			continue
		}
		if got := w.Header().Get("WWW-Authenticate"); got != c.challenge {
			t.Errorf("%s: challenge\n got %s\nwant %s", c.name, got, c.challenge)
		}
		var b fdxBody
		if err := json.Unmarshal(w.Body.Bytes(), &b); err != nil || b.Code != strconv.Itoa(c.status) || b.Message != http.StatusText(c.status) || b.DebugMessage != c.debug {
			t.Errorf("%s: body %s", c.name, w.Body)
		}
		if w.Header().Get("Content-Type") != "application/json; charset=UTF-8" || len(w.Header().Get("X-Fapi-Interaction-Id")) != 36 {
			t.Errorf("%s: headers %v", c.name, w.Header())
		}
	}
	entries := logs.FilterMessage("FDX request refused").All()
	if len(entries) != 15 {
		t.Errorf("%d refusals logged, want 15", len(entries))
	}
	for _, e := range entries {
		if e.Level != zap.DebugLevel { // a flood of bad requests must not flood the logs
			t.Errorf("a refusal logged at %v, want debug", e.Level)
		}
		f := e.ContextMap()
		if f["status"] == nil || f["reason"] == "" || len(f["fapi_interaction_id"].(string)) != 36 {
			t.Errorf("log fields %v", f)
		}
		if strings.Contains(toString(f), good[:40]) {
			t.Errorf("the log holds the token: %v", f)
		}
	}
}

func toString(v any) string { b, _ := json.Marshal(v); return string(b) }

// TestFDXAuthUnavailable: a key server that cannot be reached, with no key
// ever fetched, or an introspection endpoint that is down, is 503 with
// Retry-After and no challenge: the token may well be valid.
func TestFDXAuthUnavailable(t *testing.T) {
	as := newAuthServer(t)
	cert := clientCert(t, "recipient-1")
	as.down.Store(true)
	jwks, _ := newFDXAuth(t, &FDXAuth{JWKSURL: as.URL + "/jwks"})
	intro, _ := newFDXAuth(t, &FDXAuth{Introspection: &FDXIntrospection{URL: as.URL + "/introspect", ClientID: "rs-client", ClientSecret: "rs-s3cret"}})
	for name, c := range map[string]struct {
		a   *FDXAuth
		tok string
	}{
		"jwks":          {jwks, as.mint(t, cert, nil)},
		"introspection": {intro, "opaque-token"},
	} {
		w, err := handlertest.Serve(t, c.a, request("/fdx/v6/core/accounts", c.tok, cert), &handlertest.Next{})
		if err != nil || w.Code != 503 || w.Header().Get("Retry-After") != "1" || w.Header().Get("WWW-Authenticate") != "" {
			t.Errorf("%s: %d %v %v", name, w.Code, err, w.Header())
		}
		var b fdxBody
		if json.Unmarshal(w.Body.Bytes(), &b) != nil || b.Code != "503" || b.DebugMessage != "the authorization server cannot be reached to check the token" {
			t.Errorf("%s: body %s", name, w.Body)
		}
	}
}

func TestFDXAuthIntrospection(t *testing.T) {
	as := newAuthServer(t)
	cert := clientCert(t, "recipient-1")
	t.Setenv("MXGATE_TEST_RS_SECRET", "rs-s3cret")
	as.active["opaque-good"] = map[string]any{"active": true, "iss": issuer, "aud": audience, "sub": "user-1", "client_id": "recipient-9",
		"scope": "fdx:accountbasic:read", "exp": time.Now().Add(time.Hour).Unix(), "cnf": map[string]string{"x5t#S256": fdx.Thumbprint(cert)}}
	a, _ := newFDXAuth(t, &FDXAuth{Introspection: &FDXIntrospection{URL: as.URL + "/introspect", ClientID: "rs-client", ClientSecret: "{env.MXGATE_TEST_RS_SECRET}", CacheFor: caddy.Duration(time.Minute)}})
	next := &userNext{}
	if w, _ := handlertest.Serve(t, a, request("/fdx/v6/core/accounts", "opaque-good", cert), next); w.Code != 200 || next.user != "recipient-9" {
		t.Errorf("active token: %d %s, user %q", w.Code, w.Body, next.user)
	}
	w, _ := handlertest.Serve(t, a, request("/fdx/v6/core/accounts", "opaque-unknown", cert), &handlertest.Next{})
	if w.Code != 401 || !strings.Contains(w.Header().Get("WWW-Authenticate"), `error_description="token is not active"`) {
		t.Errorf("inactive token: %d %v", w.Code, w.Header())
	}
}

func TestFDXAuthInteractionIDAndClaims(t *testing.T) {
	as := newAuthServer(t)
	a, _ := newFDXAuth(t, &FDXAuth{JWKSURL: as.URL + "/jwks", ClientCert: ClientCertOptional, CertBound: new(bool),
		ForwardClaims: map[string]string{"client_id": "x-fdx-client", "scope": "X-Fdx-Scope", "cnf": "X-Fdx-Cnf", "acr": "X-Fdx-Acr"}})
	tok := as.mint(t, nil, map[string]any{"cnf": map[string]string{"x5t#S256": "thumb"}, "scope": []string{"fdx:accountbasic:read"}})
	const id = "4c1a5f0e-6e8a-4c38-9c5a-2f3d0d6b7e10"

	r := request("/fdx/v6/core/accounts", tok, nil) // client_cert optional, cert_bound off: no certificate needed
	r.Header.Set("X-Fapi-Interaction-Id", id)
	r.Header.Set("X-Fdx-Client", "spoofed")
	r.Header.Set("X-Fdx-Acr", "spoofed")
	next := &handlertest.Next{}
	w, err := handlertest.Serve(t, a, r, next)
	if err != nil || w.Code != 200 {
		t.Fatalf("%d %v %s", w.Code, err, w.Body)
	}
	got := next.Received
	if w.Header().Get("X-Fapi-Interaction-Id") != id || got.Get("X-Fapi-Interaction-Id") != id {
		t.Errorf("interaction id not echoed: %q / %q", w.Header().Get("X-Fapi-Interaction-Id"), got.Get("X-Fapi-Interaction-Id"))
	}
	if got.Get("X-Fdx-Client") != "recipient-1" || got.Get("X-Fdx-Scope") != `["fdx:accountbasic:read"]` || got.Get("X-Fdx-Cnf") != `{"x5t#S256":"thumb"}` {
		t.Errorf("forwarded claims %v", got)
	}
	if _, ok := got["X-Fdx-Acr"]; ok {
		t.Errorf("a spoofed header for a claim the token lacks reached the upstream: %v", got)
	}

	// an id that is not a canonical UUID is replaced by a fresh one; a
	// refused request's spoofed claim headers are gone too
	for _, bad := range []string{"", "not-a-uuid", "{" + id + "}", "urn:uuid:" + id} {
		r := request("/fdx/v6/core/accounts", "", nil)
		if bad != "" {
			r.Header.Set("X-Fapi-Interaction-Id", bad)
		}
		r.Header.Set("X-Fdx-Client", "spoofed")
		w, _ := handlertest.Serve(t, a, r, &handlertest.Next{})
		fresh := w.Header().Get("X-Fapi-Interaction-Id")
		if fresh == bad || len(fresh) != 36 || fresh == id || r.Header.Get("X-Fapi-Interaction-Id") != fresh || r.Header.Get("X-Fdx-Client") != "" {
			t.Errorf("interaction id %q became %q", bad, fresh)
		}
	}
}

func TestFDXAuthHandleErrors(t *testing.T) {
	as := newAuthServer(t)
	a, _ := newFDXAuth(t, &FDXAuth{JWKSURL: as.URL + "/jwks", ErrorFormat: "handle_errors", Realm: "bank"})
	w := httptest.NewRecorder()
	err := a.ServeHTTP(w, request("/fdx/v6/core/accounts", "", clientCert(t, "recipient-1")), &handlertest.Next{})
	var he caddyhttp.HandlerError
	if !errors.As(err, &he) || he.StatusCode != 401 || w.Header().Get("WWW-Authenticate") != `Bearer realm="bank"` || w.Body.Len() != 0 {
		t.Errorf("%v %v %q", err, w.Header(), w.Body)
	}
}

func TestFDXAuthProvision(t *testing.T) {
	a, _ := newFDXAuth(t, &FDXAuth{JWKSURL: "{env.MXGATE_TEST_UNSET}http://as/jwks", Introspection: &FDXIntrospection{URL: "https://as/i", ClientID: "rs", ClientSecret: "s"}})
	if a.Realm != "fdx" || !*a.CertBound || a.ClientCert != "require" || strings.Join(a.Algorithms, ",") != "PS256,ES256" || time.Duration(a.Leeway) != 30*time.Second || a.introspect == nil || a.validator == nil {
		t.Errorf("defaults: %+v", a)
	}
	t.Setenv("MXGATE_TEST_EMPTY", "")
	jwks := "http://as/jwks"
	dir := t.TempDir()
	certFile, keyFile := writeKeyPair(t, dir, "rs")
	_, otherKeyFile := writeKeyPair(t, dir, "other")
	for name, c := range map[string]struct {
		a   FDXAuth
		msg string
	}{
		"no issuer":                       {FDXAuth{Audiences: []string{audience}, JWKSURL: jwks}, "issuer and at least one audience are required"},
		"no audience":                     {FDXAuth{Issuer: issuer, JWKSURL: jwks}, "issuer and at least one audience are required"},
		"no discovery":                    {FDXAuth{Issuer: "as.fdx.example", Audiences: []string{audience}}, "the issuer cannot be discovered, and jwks_url or the introspection URL is not given"},
		"no discovery, intro":             {FDXAuth{Issuer: "https://as.fdx.example?t=1", Audiences: []string{audience}, JWKSURL: jwks, Introspection: &FDXIntrospection{ClientID: "rs", ClientSecret: "s"}}, "query or fragment"},
		"negative max age":                {FDXAuth{Issuer: issuer, Audiences: []string{audience}, JWKSURL: jwks, JWKSMaxAge: -1}, "durations must be positive"},
		"hmac":                            {FDXAuth{Issuer: issuer, Audiences: []string{audience}, JWKSURL: jwks, Algorithms: []string{"HS256"}}, "HS256"},
		"negative leeway":                 {FDXAuth{Issuer: issuer, Audiences: []string{audience}, JWKSURL: jwks, Leeway: -1}, "durations must be positive"},
		"bad row":                         {FDXAuth{Issuer: issuer, Audiences: []string{audience}, JWKSURL: jwks, Scopes: []FDXScope{{Method: "GET", Pattern: "relative", Scopes: "x"}}}, ""},
		"introspection, bare":             {FDXAuth{Issuer: issuer, Audiences: []string{audience}, Introspection: &FDXIntrospection{URL: "http://as/i", ClientID: "rs"}}, "introspection needs a URL, a client id and a secret"},
		"introspection, env":              {FDXAuth{Issuer: issuer, Audiences: []string{audience}, Introspection: &FDXIntrospection{URL: "http://as/i", ClientID: "rs", ClientSecret: "{env.MXGATE_TEST_EMPTY}"}}, "introspection needs"},
		"bad header":                      {FDXAuth{Issuer: issuer, Audiences: []string{audience}, JWKSURL: jwks, ForwardClaims: map[string]string{"sub": "X Sub"}}, `bad forward_claims entry "sub" -> "X Sub"`},
		"empty claim":                     {FDXAuth{Issuer: issuer, Audiences: []string{audience}, JWKSURL: jwks, ForwardClaims: map[string]string{"": "X-Sub"}}, "bad forward_claims entry"},
		"format":                          {FDXAuth{Issuer: issuer, Audiences: []string{audience}, JWKSURL: jwks, ErrorFormat: "xml"}, "unknown error_format"},
		"client_cert":                     {FDXAuth{Issuer: issuer, Audiences: []string{audience}, JWKSURL: jwks, ClientCert: "off"}, `client_cert must be require or optional, not "off"`},
		"jwks, no scheme":                 {FDXAuth{Issuer: issuer, Audiences: []string{audience}, JWKSURL: "as.example/jwks"}, "jwks_url must be an http(s) URL"},
		"jwks, unset env":                 {FDXAuth{Issuer: issuer, Audiences: []string{audience}, JWKSURL: "{env.MXGATE_TEST_EMPTY}"}, "jwks_url must be an http(s) URL"},
		"issuer, unset env":               {FDXAuth{Issuer: "{env.MXGATE_TEST_EMPTY}", Audiences: []string{audience}, JWKSURL: jwks}, "issuer is empty (an unset {env.*}"},
		"audience, unset env":             {FDXAuth{Issuer: issuer, Audiences: []string{audience, "{env.MXGATE_TEST_EMPTY}"}, JWKSURL: jwks}, "audience 2 is empty"},
		"introspection, no id":            {FDXAuth{Issuer: issuer, Audiences: []string{audience}, Introspection: &FDXIntrospection{URL: "http://as/i", ClientSecret: "s"}}, "introspection needs a client id"},
		"introspection, auth":             {FDXAuth{Issuer: issuer, Audiences: []string{audience}, Introspection: &FDXIntrospection{URL: "http://as/i", ClientID: "rs", Auth: "mtls"}}, `introspection_auth must be basic, tls_client_auth or private_key_jwt, not "mtls"`},
		"tls_client_auth, no certificate": {FDXAuth{Issuer: issuer, Audiences: []string{audience}, Introspection: &FDXIntrospection{URL: "http://as/i", ClientID: "rs", Auth: AuthTLSClientAuth}}, "needs tls_client_auth <cert_file> <key_file>"},
		"tls_client_auth, a secret": {FDXAuth{Issuer: issuer, Audiences: []string{audience}, TLSClientAuth: &FDXClientCertificate{CertFile: certFile, KeyFile: keyFile},
			Introspection: &FDXIntrospection{URL: "http://as/i", ClientID: "rs", ClientSecret: "s", Auth: AuthTLSClientAuth}}, "introspection_auth tls_client_auth uses no client secret"},
		"private_key_jwt, no key":        {FDXAuth{Issuer: issuer, Audiences: []string{audience}, Introspection: &FDXIntrospection{URL: "http://as/i", ClientID: "rs", Auth: AuthPrivateKeyJWT}}, "private_key_jwt needs a key file"},
		"private_key_jwt, missing key":   {FDXAuth{Issuer: issuer, Audiences: []string{audience}, Introspection: &FDXIntrospection{URL: "http://as/i", ClientID: "rs", Auth: AuthPrivateKeyJWT, KeyFile: dir + "/none.pem"}}, "reading the key file"},
		"private_key_jwt, a certificate": {FDXAuth{Issuer: issuer, Audiences: []string{audience}, Introspection: &FDXIntrospection{URL: "http://as/i", ClientID: "rs", Auth: AuthPrivateKeyJWT, KeyFile: certFile}}, "no PEM private key found"},
		"key file with basic":            {FDXAuth{Issuer: issuer, Audiences: []string{audience}, Introspection: &FDXIntrospection{URL: "http://as/i", ClientID: "rs", ClientSecret: "s", KeyFile: keyFile}}, "a key file is for introspection_auth private_key_jwt only"},
		"trust pool, missing file":       {FDXAuth{Issuer: issuer, Audiences: []string{audience}, JWKSURL: jwks, TLSTrustPoolRaw: json.RawMessage(`{"provider":"file","pem_files":["` + dir + `/none.pem"]}`)}, "tls_trust_pool"},
		"trust pool, no certificate":     {FDXAuth{Issuer: issuer, Audiences: []string{audience}, JWKSURL: jwks, TLSTrustPoolRaw: json.RawMessage(`{"provider":"file","pem_files":["` + keyFile + `"]}`)}, "tls_trust_pool holds no certificate"},
		"client certificate, mismatched": {FDXAuth{Issuer: issuer, Audiences: []string{audience}, JWKSURL: jwks, TLSClientAuth: &FDXClientCertificate{CertFile: certFile, KeyFile: otherKeyFile}}, "tls_client_auth: tls: private key does not match public key"},
		"client certificate, half":       {FDXAuth{Issuer: issuer, Audiences: []string{audience}, JWKSURL: jwks, TLSClientAuth: &FDXClientCertificate{CertFile: certFile}}, "tls_client_auth needs a certificate file and a key file"},
		"introspection, url":             {FDXAuth{Issuer: issuer, Audiences: []string{audience}, Introspection: &FDXIntrospection{URL: "http://%zz/i", ClientID: "rs", ClientSecret: "s"}}, "the introspection URL must be an http(s) URL"},
	} {
		err := handlertest.TryProvision(t, &c.a)
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %v, want %q", name, err, c.msg)
		}
	}
}

// TestFDXAuthConnection: the Host must be the TLS server name, compared in
// ASCII only, and the connection must have verified a client certificate,
// whatever cert_bound says; both before the token is looked at.
func TestFDXAuthConnection(t *testing.T) {
	as := newAuthServer(t)
	cert := clientCert(t, "recipient-1")
	good := as.mint(t, cert, nil)
	unboundOff := false
	for _, c := range []struct {
		name   string
		a      *FDXAuth
		r      *http.Request
		status int
		debug  string
	}{
		{"ASCII case differs", &FDXAuth{}, named(request("/fdx/v6/core/accounts", good, cert), "FDX.Bank.Example", "fdx.bank.EXAMPLE:443"), 200, ""},
		{"KELVIN SIGN in the server name", &FDXAuth{}, named(request("/fdx/v6/core/accounts", good, cert), "fdx.ban\u212a.example", "fdx.bank.example"), 421,
			"the TLS server name or the Host is not plain ASCII"},
		{"long s in the server name", &FDXAuth{}, named(request("/fdx/v6/core/accounts", good, cert), "fdx\u017f.bank.example", "fdxs.bank.example"), 421,
			"the TLS server name or the Host is not plain ASCII"},
		{"KELVIN SIGN in the Host", &FDXAuth{}, named(request("/fdx/v6/core/accounts", good, cert), "fdx.bank.example", "fdx.ban\u212a.example"), 421,
			"the TLS server name or the Host is not plain ASCII"},
		{"no server name", &FDXAuth{}, named(request("/fdx/v6/core/accounts", good, cert), "", "fdx.bank.example"), 421,
			"the TLS connection named no server (SNI)"},
		{"another name", &FDXAuth{}, named(request("/fdx/v6/core/accounts", good, cert), "other.bank.example", "fdx.bank.example"), 421,
			"the Host is not the TLS server name"},
		{"trailing dot in the Host", &FDXAuth{}, named(request("/fdx/v6/core/accounts", good, cert), "fdx.bank.example", "fdx.bank.example."), 421,
			"the Host is not the TLS server name"},
		{"brackets around a name", &FDXAuth{}, named(request("/fdx/v6/core/accounts", good, cert), "fdx.bank.example", "[fdx.bank.example]"), 421,
			"the TLS server name or the Host is not a host name"},
		{"a name check whatever client_cert says", &FDXAuth{ClientCert: ClientCertOptional, CertBound: &unboundOff},
			named(request("/fdx/v6/core/accounts", good, cert), "fdx.ban\u212a.example", "fdx.bank.example"), 421, "the TLS server name or the Host is not plain ASCII"},
		{"no certificate, cert_bound off", &FDXAuth{CertBound: &unboundOff}, request("/fdx/v6/core/accounts", good, nil), 400,
			"no client certificate verified by the TLS connection"},
		{"an unverified certificate, cert_bound off", &FDXAuth{CertBound: &unboundOff}, unverified(request("/fdx/v6/core/accounts", good, cert)), 400,
			"no client certificate verified by the TLS connection"},
		{"an unverified certificate, client_cert optional", &FDXAuth{ClientCert: ClientCertOptional}, unverified(request("/fdx/v6/core/accounts", good, cert)), 401,
			"no verified client certificate to bind the token to"},
		{"no certificate, client_cert optional, cert_bound off", &FDXAuth{ClientCert: ClientCertOptional, CertBound: &unboundOff}, request("/fdx/v6/core/accounts", good, nil), 200, ""},
	} {
		c.a.JWKSURL = as.URL + "/jwks"
		a, _ := newFDXAuth(t, c.a)
		next := &handlertest.Next{}
		w, err := handlertest.Serve(t, a, c.r, next)
		if err != nil || w.Code != c.status {
			t.Errorf("%s: %d %v %s", c.name, w.Code, err, w.Body)
			continue
		}
		if c.status == 200 {
			if next.Calls != 1 {
				t.Errorf("%s: next called %d times", c.name, next.Calls)
			}
			continue
		}
		var b fdxBody
		if next.Calls != 0 || json.Unmarshal(w.Body.Bytes(), &b) != nil || b.Code != strconv.Itoa(c.status) || b.DebugMessage != c.debug {
			t.Errorf("%s: next called %d times, body %s", c.name, next.Calls, w.Body)
		}
		challenge := w.Header().Get("WWW-Authenticate")
		switch c.status {
		case 421: // not an authentication failure
			if challenge != "" || w.Header().Get("Connection") != "close" {
				t.Errorf("%s: headers %v", c.name, w.Header())
			}
		case 400:
			if challenge != `Bearer realm="fdx", error="invalid_request", error_description="`+c.debug+`"` {
				t.Errorf("%s: challenge %s", c.name, challenge)
			}
		}
	}
}
