package fdxauth

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/mxgate/mxgate/caddymodule/internal/metrics"
	"github.com/mxgate/mxgate/fdx"
	"github.com/mxgate/mxgate/internal/testkit/handlertest"
)

// clock is an injected, settable time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func fetches(t *testing.T, kind, outcome string) float64 {
	return handlertest.MetricValue(t, metrics.CredentialFetches,
		map[string]string{"directive": "fdx_auth", "kind": kind, "outcome": outcome})
}

// withKid returns tok with its header's kid replaced (the signature no
// longer matters: the key is looked up first).
func withKid(t *testing.T, tok, kid string) string {
	t.Helper()
	h, _ := json.Marshal(map[string]string{"alg": "ES256", "typ": "at+jwt", "kid": kid})
	_, rest, _ := strings.Cut(tok, ".")
	return base64.RawURLEncoding.EncodeToString(h) + "." + rest
}

// TestFDXAuthKidFlood: tokens naming random key ids, a hundred at once and
// a hundred after, cost one refetch of the JWKS within jwks_min_refresh,
// each refused 401; a failing JWKS is logged once, and its recovery once;
// the fetches are counted by outcome.
func TestFDXAuthKidFlood(t *testing.T) {
	as := newAuthServer(t)
	cert := clientCert(t, "recipient-1")
	a, logs := newFDXAuth(t, &FDXAuth{JWKSURL: as.URL + "/jwks", JWKSMinRefresh: caddy.Duration(time.Minute)})
	clk := &clock{t: time.Now()}
	a.validator.Keys.(*fdx.JWKS).Now = clk.Now // before the first use
	ok, suppressed, failed := fetches(t, "jwks", "ok"), fetches(t, "jwks", "suppressed"), fetches(t, "jwks", "error")
	good := as.mint(t, cert, nil)
	if w, _ := handlertest.Serve(t, a, request("/fdx/v6/core/accounts", good, cert), &handlertest.Next{}); w.Code != 200 {
		t.Fatalf("good token: %d %s", w.Code, w.Body)
	}
	refuse := func(i int) {
		w, _ := handlertest.Serve(t, a, request("/fdx/v6/core/accounts", withKid(t, good, fmt.Sprintf("kid-%d", i)), cert), &handlertest.Next{})
		if w.Code != 401 || !strings.Contains(w.Body.String(), "unknown signing key") {
			t.Errorf("kid %d: %d %s", i, w.Code, w.Body)
		}
	}
	var wg sync.WaitGroup
	for i := range 100 {
		wg.Add(1)
		go func() { defer wg.Done(); refuse(i) }()
	}
	wg.Wait()
	for i := range 100 {
		clk.Add(500 * time.Millisecond) // 50s: within jwks_min_refresh
		refuse(100 + i)
	}
	if n := as.jwks.Load(); n != 2 {
		t.Fatalf("%d JWKS fetches for 200 unknown kids, want 2", n)
	}
	if got := fetches(t, "jwks", "ok") - ok; got != 2 {
		t.Errorf("%v fetches counted ok", got)
	}
	if got := fetches(t, "jwks", "suppressed") - suppressed; got < 100 {
		t.Errorf("%v refetches counted suppressed", got)
	}

	// the key server fails: one refetch, logged once; the cached key works
	as.down.Store(true)
	clk.Add(10 * time.Second)
	for i := range 20 {
		refuse(200 + i)
	}
	if w, _ := handlertest.Serve(t, a, request("/fdx/v6/core/accounts", good, cert), &handlertest.Next{}); w.Code != 200 {
		t.Fatalf("cached key while the JWKS fails: %d", w.Code)
	}
	if n := as.jwks.Load(); n != 3 || fetches(t, "jwks", "error")-failed != 1 {
		t.Fatalf("%d JWKS fetches while it fails, want 3", n)
	}
	if n := logs.FilterMessageSnippet("JWKS could not be fetched").Len(); n != 1 {
		t.Errorf("the failure logged %d times", n)
	}
	as.down.Store(false)
	clk.Add(time.Second)
	refuse(300)
	if n := logs.FilterMessageSnippet("JWKS fetched again").Len(); n != 1 || as.jwks.Load() != 4 {
		t.Errorf("the recovery logged %d times, %d fetches", n, as.jwks.Load())
	}
}

// TestFDXAuthIntrospectionChurn: a client repeating a bad opaque token
// costs one introspection call within the cache time, however many
// requests, at once or after; so does one repeating a token while the
// endpoint fails, within a second; both are counted.
func TestFDXAuthIntrospectionChurn(t *testing.T) {
	as := newAuthServer(t)
	cert := clientCert(t, "recipient-1")
	a, logs := newFDXAuth(t, &FDXAuth{Introspection: &FDXIntrospection{URL: as.URL + "/introspect", ClientID: "rs-client", ClientSecret: "rs-s3cret", CacheFor: caddy.Duration(time.Hour)}})
	ok, failed, suppressed := fetches(t, "introspection", "ok"), fetches(t, "introspection", "error"), fetches(t, "introspection", "suppressed")
	var wg sync.WaitGroup
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w, _ := handlertest.Serve(t, a, request("/fdx/v6/core/accounts", "opaque-bad", cert), &handlertest.Next{})
			if w.Code != 401 || !strings.Contains(w.Body.String(), "token is not active") {
				t.Errorf("bad token: %d %s", w.Code, w.Body)
			}
		}()
	}
	wg.Wait()
	for range 100 {
		handlertest.Serve(t, a, request("/fdx/v6/core/accounts", "opaque-bad", cert), &handlertest.Next{})
	}
	if n := as.intro.Load(); n != 1 || fetches(t, "introspection", "ok")-ok != 1 {
		t.Fatalf("%d introspection calls for 200 requests with one bad token, want 1", n)
	}

	as.down.Store(true)
	clk := &clock{t: time.Now()}
	a.introspect.Now = clk.Now
	for range 50 {
		w, _ := handlertest.Serve(t, a, request("/fdx/v6/core/accounts", "opaque-other", cert), &handlertest.Next{})
		if w.Code != 503 {
			t.Fatalf("endpoint down: %d", w.Code)
		}
	}
	if n := as.intro.Load(); n != 2 || fetches(t, "introspection", "error")-failed != 1 || fetches(t, "introspection", "suppressed")-suppressed != 49 {
		t.Fatalf("%d introspection calls while it fails, want 2", n)
	}
	if n := logs.FilterMessageSnippet("introspection endpoint failed").Len(); n != 1 {
		t.Errorf("the failure logged %d times", n)
	}
	as.down.Store(false)
	clk.Add(time.Second)
	handlertest.Serve(t, a, request("/fdx/v6/core/accounts", "opaque-other", cert), &handlertest.Next{})
	if n := logs.FilterMessageSnippet("introspection endpoint answers again").Len(); n != 1 || as.intro.Load() != 3 {
		t.Errorf("the recovery logged %d times, %d calls", n, as.intro.Load())
	}
	for _, e := range logs.All() {
		if strings.Contains(toString(e.ContextMap())+e.Message, "opaque-") || strings.Contains(toString(e.ContextMap()), "rs-s3cret") {
			t.Errorf("a log line holds a token or the secret: %s", e.Message)
		}
	}
}
