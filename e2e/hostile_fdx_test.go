package e2e

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// The hostile suite of fdx_auth: paths its scope table could be walked
// around by, tokens where they must not be, forged and confused tokens,
// and headers smuggled past it, against a real mxgate with mutual TLS in
// front of an upstream that records what reaches it. Requests the Go
// client would normalise are written by hand over TLS.

// rawTLS writes raw over a new TLS connection made with cert and reads
// one response.
func (e *fdxEnv) rawTLS(t *testing.T, cert *tls.Certificate, raw string) fdxAnswer {
	t.Helper()
	cfg := &tls.Config{RootCAs: e.caPool, ServerName: "localhost", Certificates: []tls.Certificate{*cert}}
	c, err := tls.Dial("tcp", e.hostPort, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	go io.WriteString(c, raw) // the gateway may answer before reading it all
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	defer resp.Body.Close()
	var body map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return fdxAnswer{resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body, resp.Header.Get("Content-Type"), resp.Header.Get("X-Fapi-Interaction-Id")}
}

// fdxHead writes a request head with Host and the lines given.
func (e *fdxEnv) fdxHead(method, target string, lines ...string) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, target, strings.TrimPrefix(e.base, "https://"))
	for _, l := range lines {
		sb.WriteString(l + "\r\n")
	}
	return sb.String() + "\r\n"
}

// signWith signs claims as a JWS with key under header fields hdr.
func signWith(t *testing.T, alg jose.SignatureAlgorithm, key any, claims map[string]any, hdr map[jose.HeaderKey]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithHeader(jose.HeaderType, "at+jwt")
	for k, v := range hdr {
		opts = opts.WithHeader(k, v)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestHostileFDX(t *testing.T) {
	t.Parallel()
	e := newFDXEnv(t)
	good := e.token("es-1", allFDX, nil)
	claims := func() map[string]any {
		now := time.Now()
		return map[string]any{"iss": "https://as.test", "aud": "https://rs.test", "sub": "attacker", "client_id": "recipient-7",
			"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "scope": allFDX, "cnf": map[string]string{"x5t#S256": e.thumbA}}
	}
	upstreamCount := func() int { return len(e.up.Requests()) }
	nothingReached := func(t *testing.T, before int) {
		t.Helper()
		if n := upstreamCount(); n != before {
			t.Fatalf("the upstream received %d request(s) it should not have", n-before)
		}
	}
	// refused checks an RFC 6750 refusal with an FDX body.
	refused := func(t *testing.T, a fdxAnswer, before, status int, oauth, debug string) {
		t.Helper()
		want := `Bearer realm="fdx"`
		if oauth != "" {
			want += `, error="` + oauth + `", error_description="` + debug + `"`
		}
		if a.status != status || a.challenge != want || a.body["debugMessage"] != debug || a.body["code"] != fmt.Sprint(status) || len(a.id) != 36 {
			t.Errorf("got %d %q %v; want %d %q", a.status, a.challenge, a.body, status, want)
		}
		nothingReached(t, before)
	}

	t.Run("baseline/good-token-passes", func(t *testing.T) {
		before := upstreamCount()
		if a := e.rawTLS(t, &e.clientA, e.fdxHead("GET", "/fdx/v6/core/accounts", "Authorization: Bearer "+good)); a.status != 200 || upstreamCount() != before+1 {
			t.Fatalf("%+v", a)
		}
	})

	// Paths the scope table must not be walked around by, with a token
	// good for every scope.
	for _, c := range []struct{ name, target, reason string }{
		{"raw-backslash", "/fdx/v6/core/accounts\\..\\..\\consents\\c1", "backslash"},
		{"raw-backslash-in-id", "/fdx/v6/core/accounts/a1\\transactions", "backslash"},
		{"encoded-backslash", "/fdx/v6/core/accounts/a1%5Ctransactions", "backslash"},
		{"raw-semicolon-parameter", "/fdx/v6/core/accounts;jsessionid=x", "path parameter (;)"},
		{"raw-semicolon-in-segment", "/fdx/v6/consents/c1;/../../core/accounts/a1/contact", "path parameter (;)"},
		{"encoded-semicolon", "/fdx/v6/core/accounts/a1%3Btransactions", "path parameter (;)"},
		{"dot-segments", "/fdx/v6/consents/c1/../../core/accounts/a1/transactions", "dot segment"},
		{"encoded-dot-segments", "/fdx/v6/consents/%2e%2e/core/accounts", "dot segment"},
		{"encoded-slash", "/fdx/v6/consents/c1%2F..%2F..%2Fcore%2Faccounts", "encoded separator"},
		{"double-slash", "/fdx/v6/core//accounts", "empty segment"},
		{"trailing-slash", "/fdx/v6/core/accounts/", "trailing slash"},
		{"needless-encoding", "/fdx/v6/core/%61ccounts", "needless percent-encoding"},
	} {
		t.Run("path/"+c.name, func(t *testing.T) {
			before := upstreamCount()
			a := e.rawTLS(t, &e.clientA, e.fdxHead("GET", c.target, "Authorization: Bearer "+good))
			refused(t, a, before, 400, "invalid_request", "request path is not canonical: "+c.reason)
		})
	}

	// Tokens where they must not be, and more than one.
	t.Run("token/in-the-query-and-the-header", func(t *testing.T) {
		before := upstreamCount()
		a := e.rawTLS(t, &e.clientA, e.fdxHead("GET", "/fdx/v6/core/accounts?access_token="+good, "Authorization: Bearer "+good))
		refused(t, a, before, 400, "invalid_request", "access tokens are accepted only in the Authorization header")
	})
	t.Run("token/in-the-query-only", func(t *testing.T) {
		before := upstreamCount()
		a := e.rawTLS(t, &e.clientA, e.fdxHead("GET", "/fdx/v6/core/accounts?access_token="+good))
		refused(t, a, before, 400, "invalid_request", "access tokens are accepted only in the Authorization header")
	})
	t.Run("token/in-the-query-behind-a-semicolon", func(t *testing.T) {
		before := upstreamCount()
		a := e.rawTLS(t, &e.clientA, e.fdxHead("GET", "/fdx/v6/core/accounts?limit=1;access_token="+good, "Authorization: Bearer "+good))
		refused(t, a, before, 400, "invalid_request", "semicolon in the query string")
	})
	t.Run("token/duplicate-authorization-good-then-bad", func(t *testing.T) {
		before := upstreamCount()
		a := e.rawTLS(t, &e.clientA, e.fdxHead("GET", "/fdx/v6/core/accounts", "Authorization: Bearer "+good, "Authorization: Bearer forged"))
		refused(t, a, before, 401, "invalid_token", "the Authorization header is not one Bearer token")
	})
	t.Run("token/duplicate-authorization-bad-then-good", func(t *testing.T) {
		before := upstreamCount()
		a := e.rawTLS(t, &e.clientA, e.fdxHead("GET", "/fdx/v6/core/accounts", "Authorization: Bearer forged", "Authorization: Bearer "+good))
		refused(t, a, before, 401, "invalid_token", "the Authorization header is not one Bearer token")
	})
	t.Run("token/alg-confusion-hs256-signed-with-the-public-key", func(t *testing.T) {
		before := upstreamCount()
		k := e.as.key("es-1")
		der, _ := x509.MarshalPKIXPublicKey(k.Public().Key)
		tok := signWith(t, jose.HS256, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), claims(), map[jose.HeaderKey]any{"kid": "es-1"})
		a := e.rawTLS(t, &e.clientA, e.fdxHead("GET", "/fdx/v6/core/accounts", "Authorization: Bearer "+tok))
		refused(t, a, before, 401, "invalid_token", "signature algorithm not allowed")
	})
	t.Run("token/alg-none", func(t *testing.T) {
		before := upstreamCount()
		hdr, _ := json.Marshal(map[string]string{"alg": "none", "typ": "at+jwt", "kid": "es-1"})
		payload, _ := json.Marshal(claims())
		tok := base64.RawURLEncoding.EncodeToString(hdr) + "." + base64.RawURLEncoding.EncodeToString(payload) + "."
		a := e.rawTLS(t, &e.clientA, e.fdxHead("GET", "/fdx/v6/core/accounts", "Authorization: Bearer "+tok))
		refused(t, a, before, 401, "invalid_token", "signature algorithm not allowed")
	})
	t.Run("token/invalid-curve-key-embedded-in-the-header", func(t *testing.T) {
		// a jwk header whose point is not on P-256, naming the AS's key id
		before := upstreamCount()
		x := base64.RawURLEncoding.EncodeToString(make([]byte, 32))
		y := base64.RawURLEncoding.EncodeToString(append(make([]byte, 31), 1))
		hdr, _ := json.Marshal(map[string]any{"alg": "ES256", "typ": "at+jwt", "kid": "es-1",
			"jwk": map[string]string{"kty": "EC", "crv": "P-256", "x": x, "y": y}})
		payload, _ := json.Marshal(claims())
		sig := make([]byte, 64)
		_, _ = rand.Read(sig)
		tok := base64.RawURLEncoding.EncodeToString(hdr) + "." + base64.RawURLEncoding.EncodeToString(payload) + "." + base64.RawURLEncoding.EncodeToString(sig)
		a := e.rawTLS(t, &e.clientA, e.fdxHead("GET", "/fdx/v6/core/accounts", "Authorization: Bearer "+tok))
		if a.status != 401 || !strings.Contains(a.challenge, `error="invalid_token"`) {
			t.Errorf("got %+v", a)
		}
		nothingReached(t, before)
	})
	t.Run("token/attacker-key-named-by-jku-and-embedded-jwk", func(t *testing.T) {
		// signed with the attacker's own key, which the token points at
		before := upstreamCount()
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		opts := (&jose.SignerOptions{EmbedJWK: true}).WithHeader(jose.HeaderType, "at+jwt").WithHeader("jku", "https://attacker.example/keys")
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k}, opts)
		if err != nil {
			t.Fatal(err)
		}
		tok, _ := jwt.Signed(s).Claims(claims()).Serialize()
		a := e.rawTLS(t, &e.clientA, e.fdxHead("GET", "/fdx/v6/core/accounts", "Authorization: Bearer "+tok))
		if a.status != 401 || !strings.Contains(a.challenge, `error="invalid_token"`) {
			t.Errorf("got %+v", a)
		}
		nothingReached(t, before)
	})
	t.Run("token/bound-to-another-certificate", func(t *testing.T) {
		before := upstreamCount()
		a := e.rawTLS(t, &e.clientB, e.fdxHead("GET", "/fdx/v6/core/accounts", "Authorization: Bearer "+good))
		refused(t, a, before, 401, "invalid_token", "token is not bound to this client certificate")
	})

	// Headers smuggled past the check.
	const id = "c770aef3-6784-41f7-8e0e-ff5f97bddb3a"
	t.Run("header/duplicate-interaction-id", func(t *testing.T) {
		before := upstreamCount()
		a := e.rawTLS(t, &e.clientA, e.fdxHead("GET", "/fdx/v6/core/accounts", "Authorization: Bearer "+good,
			"X-Fapi-Interaction-Id: "+id, "X-Fapi-Interaction-Id: 0d6c0b5e-0a43-4f5e-9c59-7a1fb2a3f0a1"))
		refused(t, a, before, 400, "invalid_request", "more than one x-fapi-interaction-id")
	})
	t.Run("header/interaction-id-and-claims-under-underscore-spellings-never-forwarded", func(t *testing.T) {
		// Caddy drops them before any handler (fdx_auth refuses the id and
		// drops claim headers should a site keep them)
		before := upstreamCount()
		a := e.rawTLS(t, &e.clientA, e.fdxHead("GET", "/fdx/v6/core/accounts", "Authorization: Bearer "+good,
			"X-Fapi-Interaction-Id: "+id, "X_Fapi_Interaction_Id: smuggled", "X_FDX_Subject: admin", "X.FDX.Subject: admin"))
		reqs := e.up.Requests()
		if a.status != 200 || len(reqs) != before+1 {
			t.Fatalf("%+v; the upstream got %d", a, len(reqs)-before)
		}
		for k, v := range reqs[before].Header {
			joined := strings.Join(v, ",")
			if strings.Contains(joined, "smuggled") || strings.Contains(joined, "admin") {
				t.Fatalf("the upstream got %s: %q", k, v)
			}
		}
		if got := reqs[before].Header.Values("X-Fapi-Interaction-Id"); len(got) != 1 || got[0] != id {
			t.Fatalf("the upstream got interaction ids %q", got)
		}
	})
	t.Run("header/forwarded-claim-in-an-announced-trailer", func(t *testing.T) {
		before := upstreamCount()
		body := `{"callbackUrl":"https://tpp.example/cb"}`
		raw := e.fdxHead("POST", "/fdx/v6/events/notification-subscriptions", "Authorization: Bearer "+good,
			"Content-Type: application/json", "Transfer-Encoding: chunked", "Trailer: X-FDX-Subject") +
			fmt.Sprintf("%x\r\n%s\r\n0\r\nX-FDX-Subject: admin\r\n\r\n", len(body), body)
		a := e.rawTLS(t, &e.clientA, raw)
		refused(t, a, before, 400, "invalid_request", "trailers are not accepted")
	})
	t.Run("header/forged-forwarded-claim", func(t *testing.T) {
		before := upstreamCount()
		a := e.rawTLS(t, &e.clientA, e.fdxHead("GET", "/fdx/v6/core/accounts", "Authorization: Bearer "+good, "X-FDX-Subject: admin", "X-FDX-Client: admin"))
		reqs := e.up.Requests()
		if a.status != 200 || len(reqs) != before+1 {
			t.Fatalf("%+v", a)
		}
		if h := reqs[before].Header; h.Get("X-Fdx-Subject") != "user-42" || len(h.Values("X-Fdx-Subject")) != 1 || h.Get("X-Fdx-Client") != "recipient-7" {
			t.Fatalf("the upstream got %v", h)
		}
	})
	t.Run("header/oversized-header-block", func(t *testing.T) {
		before := upstreamCount()
		a := e.rawTLS(t, &e.clientA, e.fdxHead("GET", "/fdx/v6/core/accounts", "Authorization: Bearer "+good, "X-Padding: "+strings.Repeat("p", 2<<20)))
		if a.status != 431 {
			t.Errorf("got %d", a.status)
		}
		nothingReached(t, before)
	})
	t.Run("header/oversized-token", func(t *testing.T) {
		before := upstreamCount()
		a := e.rawTLS(t, &e.clientA, e.fdxHead("GET", "/fdx/v6/core/accounts", "Authorization: Bearer "+strings.Repeat("a", 1<<20)+"."+"b."+"c"))
		if a.status != 401 && a.status != 431 {
			t.Errorf("got %d", a.status)
		}
		nothingReached(t, before)
	})
}
