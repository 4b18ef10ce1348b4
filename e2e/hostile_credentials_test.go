package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// churnAS is a stand-in authorization server for fdx_auth: one signing
// key in its JWKS, an introspection endpoint that knows no token, and a
// count of the calls to each.
type churnAS struct {
	*httptest.Server
	key        jose.JSONWebKey
	jwksCalls  atomic.Int32
	introCalls atomic.Int32
}

func newChurnAS(t *testing.T) *churnAS {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	a := &churnAS{key: jose.JSONWebKey{Key: priv, KeyID: "churn-1", Algorithm: string(jose.ES256), Use: "sig"}}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/jwks":
			a.jwksCalls.Add(1)
			_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{a.key.Public()}})
		case "/introspect":
			a.introCalls.Add(1)
			if id, secret, _ := r.BasicAuth(); id != "churn-rs" || secret != "churn-introspection-secret" {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			_, _ = io.WriteString(w, `{"active":false}`)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(a.Close)
	return a
}

// token signs an access token for the churn site with the AS's key, its
// header naming kid.
func (a *churnAS) token(t *testing.T, kid string) string {
	t.Helper()
	now := time.Now()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: a.key.Key},
		(&jose.SignerOptions{}).WithHeader(jose.HeaderType, "at+jwt").WithHeader("kid", kid))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(map[string]any{
		"iss": "https://as.churn.test", "aud": "https://rs.churn.test", "sub": "user-1", "client_id": "recipient-1",
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "scope": "fdx:accountbasic:read",
	}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// metricAt returns the value of the series line on the gateway's
// /metrics page (name and labels as Prometheus writes them), 0 if absent.
func metricAt(t *testing.T, metricsURL, series string) float64 {
	t.Helper()
	_, _, body := do(t, mustRequest(t, "GET", metricsURL))
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", l, err)
			}
			return f
		}
	}
	return 0
}

// concurrently runs f(i) for i in [0, n) at once and waits for them all.
func concurrently(n int, f func(i int)) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() { defer wg.Done(); f(i) }()
	}
	wg.Wait()
}

// TestHostileCredentialChurn makes clients try to multiply the fetches the
// gateway makes with the bank's credentials on their behalf: MX Connect
// tokens (mxconnect_token), the authorization server's JWKS and its
// introspection endpoint (fdx_auth). Each attack asserts what the callers
// got, how many calls reached the credential's issuer, what reached the
// upstream, and what /metrics counted.
func TestHostileCredentialChurn(t *testing.T) {
	t.Parallel()
	denyAll := newSecurityAPI(t) // its tokens are refused by every endpoint of denied
	rotating := newSecurityAPI(t)
	denied := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error":"this client may not use this endpoint"}`)
	})
	var mu sync.Mutex
	revoked := map[string]bool{}
	revocable := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		refused := revoked[r.Header.Get("Authorization")]
		mu.Unlock()
		if refused {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"error":"token revoked"}`)
			return
		}
		_, _ = io.WriteString(w, `{"ok":true}`)
	})
	fdxUp := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, `{"ok":true}`) })
	as := newChurnAS(t)
	deniedPort, rotatingPort, jwksPort, introPort, metricsPort := freePort(t), freePort(t), freePort(t), freePort(t), freePort(t)
	token := func(api string) string {
		return fmt.Sprintf(`mxconnect_token {
		endpoint %s/security/v1/apiKey/authenticate
		username {env.E2E_MXC_USER}
		password {env.E2E_MXC_PASS}
		api_key {env.E2E_MXC_KEY}
		min_refresh 10m
	}`, api)
	}
	g := startGateway(t, fmt.Sprintf(`{
	admin {ADMIN}
	log {
		level DEBUG
		format mxgate_redact
	}
}
http://127.0.0.1:%d {
	%s
	reverse_proxy %s
}
http://127.0.0.1:%d {
	%s
	reverse_proxy %s
}
http://127.0.0.1:%d {
	fdx_auth {
		issuer https://as.churn.test
		audience https://rs.churn.test
		jwks_url %s/jwks
		jwks_min_refresh 10m
		# plain HTTP, to count fetches: no client certificate to bind to
		cert_bound off
		client_cert optional
	}
	reverse_proxy %s
}
http://127.0.0.1:%d {
	fdx_auth {
		issuer https://as.churn.test
		audience https://rs.churn.test
		introspection %s/introspect churn-rs {env.E2E_CHURN_INTROSPECTION_SECRET}
		introspection_cache 10m
		# plain HTTP, to count fetches: no client certificate to bind to
		cert_bound off
		client_cert optional
	}
	reverse_proxy %s
}
http://127.0.0.1:%d {
	metrics
}
`, deniedPort, token(denyAll.URL), denied.hostPort(), rotatingPort, token(rotating.URL), revocable.hostPort(),
		jwksPort, as.URL, fdxUp.hostPort(), introPort, as.URL, fdxUp.hostPort(), metricsPort),
		"E2E_MXC_USER=mxc-user", "E2E_MXC_PASS=mxc-pass-secret", "E2E_MXC_KEY=API_mxc-key-secret",
		"E2E_CHURN_INTROSPECTION_SECRET=churn-introspection-secret")
	site := func(port int) string { return fmt.Sprintf("http://127.0.0.1:%d", port) }
	metricsURL := site(metricsPort) + "/metrics"
	fetches := func(directive, kind, outcome string) float64 {
		return metricAt(t, metricsURL, fmt.Sprintf(`mxgate_credential_fetches_total{directive=%q,kind=%q,outcome=%q}`, directive, kind, outcome))
	}

	// An endpoint that answers 401 to every token (one the credentials may
	// not use): a hundred requests at once, then a hundred one by one.
	// Before, each cost one or two Security API calls; now all of them
	// cost two, the first token and one forced refresh, and every caller
	// gets the upstream's 401 as it was.
	t.Run("endpoint_that_refuses_every_token", func(t *testing.T) {
		check := func(i int, method string) {
			req, _ := http.NewRequest(method, site(deniedPort)+"/members", strings.NewReader(`{"member":{}}`))
			status, _, body := do(t, req)
			if status != 401 || body != `{"error":"this client may not use this endpoint"}` {
				t.Errorf("%s %d: %d %q", method, i, status, body)
			}
		}
		concurrently(100, func(i int) { check(i, "GET") })
		for i := range 100 {
			method := "GET"
			if i%2 == 1 {
				method = "POST" // not replayable: answered at once, its 401 reported all the same
			}
			check(100+i, method)
		}
		if n := denyAll.calls.Load(); n != 2 {
			t.Fatalf("%d Security API calls for 200 refused requests, want 2", n)
		}
		// every request reached the upstream, none more than twice
		if n := len(denied.Requests()); n < 200 || n > 300 {
			t.Fatalf("the upstream received %d requests", n)
		}
		for _, r := range denied.Requests() {
			if a := r.Header.Values("Authorization"); len(a) != 1 || !strings.HasPrefix(a[0], "Bearer jwt-token-") {
				t.Fatalf("Authorization on the wire: %d values", len(a))
			}
		}
	})

	// A token revoked once (MX rotated it): the first requests to see the
	// 401, a hundred at once, cause exactly one refresh, and every one of
	// them is answered with the new token.
	t.Run("token_revoked_once", func(t *testing.T) {
		if status, _, _ := do(t, mustRequest(t, "GET", site(rotatingPort)+"/accounts")); status != 200 || rotating.calls.Load() != 1 {
			t.Fatalf("first request: %d, %d calls", status, rotating.calls.Load())
		}
		mu.Lock()
		revoked["Bearer jwt-token-1-secret"] = true
		mu.Unlock()
		before := len(revocable.Requests())
		concurrently(100, func(i int) {
			if status, _, body := do(t, mustRequest(t, "GET", site(rotatingPort)+"/accounts")); status != 200 || body != `{"ok":true}` {
				t.Errorf("request %d after the revocation: %d %q", i, status, body)
			}
		})
		if n := rotating.calls.Load(); n != 2 {
			t.Fatalf("%d Security API calls to recover from one revocation, want 2", n)
		}
		got := revocable.Requests()[before:]
		fresh := 0
		for _, r := range got {
			if r.Header.Get("Authorization") == "Bearer jwt-token-2-secret" {
				fresh++
			}
		}
		if fresh != 100 || len(got) > 200 {
			t.Fatalf("the upstream received %d requests, %d with the new token; want 100 with it", len(got), fresh)
		}
	})

	// Tokens naming random key ids, a hundred at once and a hundred one by
	// one: two JWKS fetches in all (the first, and one refetch within
	// jwks_min_refresh), each token a 401 that never reaches the upstream.
	t.Run("jwks_kid_flood", func(t *testing.T) {
		before := len(fdxUp.Requests())
		refused := func(i int) {
			req := mustRequest(t, "GET", site(jwksPort)+"/fdx/v6/core/accounts")
			req.Header.Set("Authorization", "Bearer "+as.token(t, fmt.Sprintf("random-%d", i)))
			status, hdr, _ := do(t, req)
			if status != 401 || !strings.Contains(hdr.Get("WWW-Authenticate"), `error_description="unknown signing key"`) {
				t.Errorf("kid %d: %d %q", i, status, hdr.Get("WWW-Authenticate"))
			}
		}
		concurrently(100, refused)
		for i := range 100 {
			refused(100 + i)
		}
		if n := as.jwksCalls.Load(); n != 2 {
			t.Fatalf("%d JWKS fetches for 200 unknown kids, want 2", n)
		}
		if n := len(fdxUp.Requests()) - before; n != 0 {
			t.Fatalf("the upstream received %d requests", n)
		}
		// the real key still works, without a fetch
		req := mustRequest(t, "GET", site(jwksPort)+"/fdx/v6/core/accounts")
		req.Header.Set("Authorization", "Bearer "+as.token(t, "churn-1"))
		if status, _, _ := do(t, req); status != 200 || as.jwksCalls.Load() != 2 || len(fdxUp.Requests())-before != 1 {
			t.Fatalf("good token: %d, %d JWKS fetches", status, as.jwksCalls.Load())
		}
	})

	// One bad opaque token, a hundred times at once and a hundred one by
	// one: one introspection call within introspection_cache.
	t.Run("introspection_of_a_repeated_bad_token", func(t *testing.T) {
		before := len(fdxUp.Requests())
		refused := func(i int) {
			req := mustRequest(t, "GET", site(introPort)+"/fdx/v6/core/accounts")
			req.Header.Set("Authorization", "Bearer opaque-bad-token-secret")
			status, hdr, _ := do(t, req)
			if status != 401 || !strings.Contains(hdr.Get("WWW-Authenticate"), `error_description="token is not active"`) {
				t.Errorf("request %d: %d %q", i, status, hdr.Get("WWW-Authenticate"))
			}
		}
		concurrently(100, refused)
		for i := range 100 {
			refused(100 + i)
		}
		if n := as.introCalls.Load(); n != 1 {
			t.Fatalf("%d introspection calls for 200 requests with one token, want 1", n)
		}
		if n := len(fdxUp.Requests()) - before; n != 0 {
			t.Fatalf("the upstream received %d requests", n)
		}
	})

	// /metrics counts what happened: the fetches made, exactly, and the
	// refreshes asked for in vain.
	t.Run("metrics_count_the_fetches", func(t *testing.T) {
		for _, c := range []struct {
			directive, kind, outcome string
			want                     float64 // at least, when atLeast
			atLeast                  bool
		}{
			{"mxconnect_token", "token", "ok", 4, false}, // two per site
			{"mxconnect_token", "token", "error", 0, false},
			{"mxconnect_token", "token", "suppressed", 100, true},
			{"fdx_auth", "jwks", "ok", 2, false},
			{"fdx_auth", "jwks", "error", 0, false},
			// of the kid flood, a request that came while a fetch was
			// under way, or found it just done, shares it instead: how
			// many did depends on the machine; the fetches are exact
			{"fdx_auth", "jwks", "suppressed", 1, true},
			{"fdx_auth", "introspection", "ok", 1, false},
			{"fdx_auth", "introspection", "error", 0, false},
		} {
			got := fetches(c.directive, c.kind, c.outcome)
			if (!c.atLeast && got != c.want) || (c.atLeast && got < c.want) {
				t.Errorf("%s %s %s: %v, want %v", c.directive, c.kind, c.outcome, got, c.want)
			}
		}
	})

	t.Run("no_credential_in_the_logs", func(t *testing.T) {
		logs := g.Stderr.String()
		for _, secret := range []string{"mxc-pass-secret", "API_mxc-key-secret", "jwt-token-1-secret", "jwt-token-2-secret",
			"churn-introspection-secret", "opaque-bad-token-secret", basicOf("mxc-user", "mxc-pass-secret")[6:]} {
			if strings.Contains(logs, secret) {
				for _, l := range strings.Split(logs, "\n") {
					if strings.Contains(l, secret) {
						t.Errorf("a credential (%.6s…) is in the logs: %s", secret, describeLine(l))
						break
					}
				}
			}
		}
		if strings.Contains(logs, "no MX Connect token") {
			t.Error("refused tokens were logged as a Security API outage")
		}
	})
}
