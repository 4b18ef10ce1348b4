package fdxauth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/mxgate/mxgate/internal/testkit/handlertest"
)

const allScopes = "fdx:accountbasic:read fdx:transactions:read fdx:customercontact:read"

// testAS is a stand-in authorization server's key set.
type testAS struct {
	key  *ecdsa.PrivateKey
	srv  *httptest.Server
	down atomic.Bool
}

func newAS(t *testing.T) *testAS {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	as := &testAS{key: k}
	as.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if as.down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	}))
	t.Cleanup(as.srv.Close)
	return as
}

func (as *testAS) token(t *testing.T, edit func(c map[string]any)) string {
	t.Helper()
	now := time.Now()
	c := map[string]any{"iss": "https://as.test", "aud": "https://rs.test", "sub": "user-42", "client_id": "recipient-7",
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "scope": allScopes}
	if edit != nil {
		edit(c)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: as.key},
		(&jose.SignerOptions{}).WithHeader(jose.HeaderType, "at+jwt").WithHeader("kid", "k1"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(c).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func newAuth(t *testing.T, as *testAS) *FDXAuth {
	t.Helper()
	off := false
	a := &FDXAuth{Issuer: "https://as.test", Audiences: []string{"https://rs.test"}, JWKSURL: as.srv.URL,
		ClientCert: ClientCertOptional, CertBound: &off, ForwardClaims: map[string]string{"sub": "X-FDX-Subject"}} // the form rules, over plain HTTP
	handlertest.Provision(t, a)
	a.logger, _ = handlertest.Logs()
	return a
}

// request builds a request for target as the client sent it.
func rulesRequest(target, token string, hdr ...string) *http.Request {
	r := httptest.NewRequest("GET", "/", nil)
	r.RequestURI = target
	if u, err := r.URL.Parse(target); err == nil {
		r.URL = u
	}
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Add(hdr[i], hdr[i+1])
	}
	return handlertest.Request(r, "192.0.2.1")
}

type answer struct {
	status    int
	challenge string
	debug     string
	next      *handlertest.Next
	header    http.Header
}

func rulesServe(t *testing.T, a *FDXAuth, r *http.Request) answer {
	t.Helper()
	next := &handlertest.Next{}
	w, err := handlertest.Serve(t, a, r, next)
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]string
	_ = json.Unmarshal(w.Body.Bytes(), &body)
	return answer{w.Code, w.Header().Get("WWW-Authenticate"), body["debugMessage"], next, w.Header()}
}

func TestAccepts(t *testing.T) {
	as := newAS(t)
	a := newAuth(t, as)
	tok := as.token(t, nil)
	for _, target := range []string{"/fdx/v6/core/accounts", "/fdx/v6/core/accounts/a1/transactions?startTime=2024-01-01&limit=10",
		"/fdx/v6/core/accounts/a%20b/contact"} {
		if got := rulesServe(t, a, rulesRequest(target, tok, "X-FDX-Subject", "forged", "X_FDX_Subject", "forged-too")); got.status != 200 || got.next.Calls != 1 {
			t.Errorf("%s: %+v", target, got)
		} else if h := got.next.Received; h.Get("X-Fdx-Subject") != "user-42" || len(h.Values("X-Fdx-Subject")) != 1 || h.Get("X_fdx_subject") != "" {
			t.Errorf("%s: forwarded claim headers %v", target, h)
		}
	}
}

// TestFormRefusedBeforeToken: a request whose form could be read two ways
// is refused with 400 invalid_request, with or without a token, before the
// token is looked at and before the upstream.
func TestFormRefusedBeforeToken(t *testing.T) {
	as := newAS(t)
	a := newAuth(t, as)
	tok := as.token(t, nil)
	const id = "c770aef3-6784-41f7-8e0e-ff5f97bddb3a"
	cases := []struct {
		name, target string
		hdr          []string
		debug        string
	}{
		{"raw backslash", "/fdx/v6/core/accounts\\a1", nil, "request path is not canonical: backslash"},
		{"encoded backslash", "/fdx/v6/core/accounts/a1%5Ctransactions", nil, "request path is not canonical: backslash"},
		{"semicolon parameter", "/fdx/v6/core/accounts;x=1", nil, "request path is not canonical: path parameter (;)"},
		{"encoded semicolon", "/fdx/v6/core/accounts/a1%3btransactions", nil, "request path is not canonical: path parameter (;)"},
		{"dot segments", "/fdx/v6/core/accounts/a1/../../consents/c1", nil, "request path is not canonical: dot segment"},
		{"encoded dot segments", "/fdx/v6/core/accounts/%2e%2e/accounts", nil, "request path is not canonical: dot segment"},
		{"encoded slash", "/fdx/v6/core/accounts/a1%2ftransactions", nil, "request path is not canonical: encoded separator"},
		{"double slash", "/fdx/v6//core/accounts", nil, "request path is not canonical: empty segment"},
		{"trailing slash", "/fdx/v6/core/accounts/", nil, "request path is not canonical: trailing slash"},
		{"needless encoding", "/fdx/v6/core/%61ccounts", nil, "request path is not canonical: needless percent-encoding"},
		{"asterisk", "*", nil, "request path is not canonical: not a path"},
		{"two interaction ids", "/fdx/v6/core/accounts", []string{"X-Fapi-Interaction-Id", id, "X-Fapi-Interaction-Id", id}, "more than one x-fapi-interaction-id"},
		{"interaction id, second spelling", "/fdx/v6/core/accounts", []string{"X-Fapi-Interaction-Id", id, "X_Fapi_Interaction_Id", "other"}, "x-fapi-interaction-id sent under a second spelling"},
		{"trailer announced", "/fdx/v6/core/accounts", []string{"Trailer", "X-FDX-Subject"}, "trailers are not accepted"},
		{"semicolon in the query", "/fdx/v6/core/accounts?limit=1;access_token=x", nil, "semicolon in the query string"},
		{"token in the query", "/fdx/v6/core/accounts?access_token=x", nil, "access tokens are accepted only in the Authorization header"},
		{"token in the query, encoded name", "/fdx/v6/core/accounts?access%5Ftoken=x", nil, "access tokens are accepted only in the Authorization header"},
	}
	for _, c := range cases {
		for _, token := range []string{tok, ""} {
			got := rulesServe(t, a, rulesRequest(c.target, token, c.hdr...))
			want := `Bearer realm="fdx", error="invalid_request", error_description="` + c.debug + `"`
			if got.status != 400 || got.challenge != want || got.debug != c.debug || got.next.Calls != 0 {
				t.Errorf("%s (token %v): %d %q %q", c.name, token != "", got.status, got.challenge, got.debug)
			}
			if len(got.header.Get("X-Fapi-Interaction-Id")) != 36 {
				t.Errorf("%s: no interaction id on the refusal", c.name)
			}
		}
	}
	// a refused request with a body closes the connection (the body is
	// never read); one without keeps it
	r := rulesRequest("/fdx/v6/events/notification-subscriptions", "")
	r.Method, r.ContentLength, r.Body = "POST", 10, http.NoBody
	if got := rulesServe(t, a, r); got.status != 401 || got.header.Get("Connection") != "close" {
		t.Errorf("refused with a body unread: %d, Connection %q", got.status, got.header.Get("Connection"))
	}
	if got := rulesServe(t, a, rulesRequest("/fdx/v6/core/accounts", "")); got.status != 401 || got.header.Get("Connection") != "" {
		t.Errorf("refused without a body: %d, Connection %q", got.status, got.header.Get("Connection"))
	}
	// declared trailers (a chunked body announcing them)
	r = rulesRequest("/fdx/v6/core/accounts", tok)
	r.Trailer = http.Header{"X-Fdx-Subject": nil}
	if got := rulesServe(t, a, r); got.status != 400 || got.next.Calls != 0 {
		t.Errorf("declared trailer: %+v", got)
	}
	// the path is judged as the client sent it, not as a rewrite left it
	r = rulesRequest("/fdx/v6/core/accounts\\..\\..\\consents", tok)
	r.RequestURI, r.URL.Path = "/fdx/v6/core/accounts", "/fdx/v6/core/accounts"
	if got := rulesServe(t, a, r); got.status != 400 {
		t.Errorf("rewritten path: %+v", got)
	}
}

func TestAuthorizationRefusals(t *testing.T) {
	as := newAS(t)
	a := newAuth(t, as)
	good := as.token(t, nil)
	pubDER, _ := x509.MarshalPKIXPublicKey(&as.key.PublicKey)
	hs, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})},
		(&jose.SignerOptions{}).WithHeader(jose.HeaderType, "at+jwt").WithHeader("kid", "k1"))
	hsTok, _ := jwt.Signed(hs).Claims(map[string]any{"iss": "https://as.test", "aud": "https://rs.test", "sub": "u", "client_id": "c",
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Minute).Unix(), "scope": allScopes}).Serialize()
	hdr, _ := json.Marshal(map[string]string{"alg": "none", "typ": "at+jwt", "kid": "k1"})
	noneTok := base64.RawURLEncoding.EncodeToString(hdr) + "." + strings.Split(good, ".")[1] + "."
	cases := []struct {
		name    string
		r       *http.Request
		status  int
		debug   string
		nextRan bool
	}{
		{"good then bad Authorization", rulesRequest("/fdx/v6/core/accounts", good, "Authorization", "Bearer forged"), 401, "the Authorization header is not one Bearer token", false},
		{"bad then good Authorization", func() *http.Request {
			r := rulesRequest("/fdx/v6/core/accounts", "")
			r.Header["Authorization"] = []string{"Bearer forged", "Bearer " + good}
			return r
		}(), 401, "the Authorization header is not one Bearer token", false},
		{"HS256 with the public key", rulesRequest("/fdx/v6/core/accounts", hsTok), 401, "signature algorithm not allowed", false},
		{"alg none", rulesRequest("/fdx/v6/core/accounts", noneTok), 401, "signature algorithm not allowed", false},
		{"no row", rulesRequest("/fdx/v6/admin", good), 403, "no scope rule allows this endpoint", false},
		{"scope too narrow", rulesRequest("/fdx/v6/core/accounts/a1/payment-networks", good), 403, "scope fdx:paymentsupport:read required", false},
	}
	for _, c := range cases {
		if got := rulesServe(t, a, c.r); got.status != c.status || got.debug != c.debug || (got.next.Calls != 0) != c.nextRan {
			t.Errorf("%s: %d %q, next called %d times", c.name, got.status, got.debug, got.next.Calls)
		}
	}
}

// TestKeyServerDown: a token that cannot be checked because the key set
// was never fetched is a 503 with Retry-After, never a 401; once fetched,
// the keys keep working through an outage.
func TestKeyServerDown(t *testing.T) {
	as := newAS(t)
	as.down.Store(true)
	a := newAuth(t, as)
	tok := as.token(t, nil)
	got := rulesServe(t, a, rulesRequest("/fdx/v6/core/accounts", tok))
	if got.status != 503 || got.header.Get("Retry-After") == "" || got.challenge != "" || got.next.Calls != 0 {
		t.Fatalf("key set never fetched: %+v", got)
	}
	as.down.Store(false)
	a.Cleanup()        // the configuration lets go of its key set, within its backoff
	a = newAuth(t, as) // a fresh key cache that can fetch at once
	if got := rulesServe(t, a, rulesRequest("/fdx/v6/core/accounts", tok)); got.status != 200 {
		t.Fatalf("key server back: %+v", got)
	}
	as.down.Store(true)
	if got := rulesServe(t, a, rulesRequest("/fdx/v6/core/accounts", as.token(t, nil))); got.status != 200 {
		t.Fatalf("cached key during an outage: %+v", got)
	}
}
