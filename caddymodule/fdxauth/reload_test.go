package fdxauth

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/mxgate/mxgate/fdx"
	"github.com/mxgate/mxgate/internal/testkit/handlertest"
)

// TestFDXAuthReload: a configuration loaded while another with the same
// authorization server, credentials and trust runs (a reload) takes its
// key set and introspection answers: the refetch jwks_min_refresh counts
// from and the cached answers outlive the reload, with the new settings
// applied. Another client secret or another trust pool gets its own; the
// last configuration to let go closes what it held.
func TestFDXAuthReload(t *testing.T) {
	as := newAuthServer(t)
	cert := clientCert(t, "recipient-1")
	config := func() *FDXAuth {
		return &FDXAuth{JWKSURL: as.URL + "/jwks", JWKSMinRefresh: caddy.Duration(time.Hour),
			Introspection: &FDXIntrospection{URL: as.URL + "/introspect", ClientID: "rs-client", ClientSecret: "rs-s3cret", CacheFor: caddy.Duration(time.Hour)}}
	}
	serve := func(a *FDXAuth, tok string) int {
		w, _ := handlertest.Serve(t, a, request("/fdx/v6/core/accounts", tok, cert), &handlertest.Next{})
		return w.Code
	}
	good := as.mint(t, cert, nil)
	flood := func(a *FDXAuth, tag string) {
		for i := range 10 {
			if code := serve(a, withKid(t, good, fmt.Sprintf("%s-%d", tag, i))); code != 401 {
				t.Fatalf("an unknown kid: %d", code)
			}
		}
	}
	old, _ := newFDXAuth(t, config())
	if serve(old, good) != 200 || serve(old, "opaque-repeated") != 401 {
		t.Fatal("before the reload")
	}
	flood(old, "before")
	if as.jwks.Load() != 2 || as.intro.Load() != 1 {
		t.Fatalf("before the reload: %d JWKS fetches, %d introspection calls", as.jwks.Load(), as.intro.Load())
	}
	for i := range 3 {
		next, _ := newFDXAuth(t, config())
		old.Cleanup()
		if next.jwks != old.jwks || next.introspect != old.introspect {
			t.Fatalf("reload %d made a new key set or introspection cache", i)
		}
		if serve(next, good) != 200 || serve(next, "opaque-repeated") != 401 {
			t.Fatalf("after reload %d", i)
		}
		flood(next, fmt.Sprintf("after-%d", i))
		old = next
	}
	if as.jwks.Load() != 2 || as.intro.Load() != 1 {
		t.Fatalf("after three reloads: %d JWKS fetches, %d introspection calls, want none more", as.jwks.Load(), as.intro.Load())
	}
	// a reload that shortens jwks_min_refresh and introspection_cache:
	// they apply to what was kept
	shorter := config()
	shorter.JWKSMinRefresh, shorter.Introspection.CacheFor = caddy.Duration(time.Millisecond), caddy.Duration(time.Millisecond)
	next, _ := newFDXAuth(t, shorter)
	old.Cleanup()
	at := time.Now().Add(time.Second) // past both; held there
	later := func() time.Time { return at }
	next.jwks.Now, next.introspect.Now = later, later
	flood(next, "shorter")
	serve(next, "opaque-repeated")
	if as.jwks.Load() != 3 || as.intro.Load() != 2 {
		t.Fatalf("with the settings shortened: %d JWKS fetches, %d introspection calls", as.jwks.Load(), as.intro.Load())
	}
	// another client secret: its own answers; the same key set
	other := config()
	other.Introspection.ClientSecret = "another-s3cret"
	o, _ := newFDXAuth(t, other)
	if o.introspect == next.introspect || o.jwks != next.jwks {
		t.Fatal("another client secret shares the introspection answers, or has a key set of its own")
	}
	// another trust pool: its own key set
	dir := t.TempDir()
	ca := newPrivateCA(t, dir, "as-ca")
	pooled := config()
	pooled.TLSTrustPoolRaw = filePool(ca.file)
	p, _ := newFDXAuth(t, pooled)
	if p.jwks == next.jwks || p.introspect == next.introspect {
		t.Fatal("another trust pool shares the key set or the introspection answers")
	}
	o.Cleanup()
	p.Cleanup()
	// the last to let go closes: no call after
	calls := as.intro.Load()
	next.Cleanup()
	if _, err := next.introspect.Introspect(context.Background(), "opaque-new"); !errors.Is(err, fdx.ErrUnavailable) || as.intro.Load() != calls {
		t.Fatalf("a closed introspection client: %v, %d calls", err, as.intro.Load()-calls)
	}
}

// TestFDXAuthIntrospectionBackoffAcrossTokens: with the introspection
// endpoint failing, opaque tokens never seen before are refused with 503
// and Retry-After without a call, within the backoff, and counted as
// suppressed.
func TestFDXAuthIntrospectionBackoffAcrossTokens(t *testing.T) {
	as := newAuthServer(t)
	as.down.Store(true)
	cert := clientCert(t, "recipient-1")
	a, _ := newFDXAuth(t, &FDXAuth{Introspection: &FDXIntrospection{URL: as.URL + "/introspect", ClientID: "rs-client", ClientSecret: "rs-s3cret"}})
	clk := &clock{t: time.Now()}
	a.introspect.Now = clk.Now
	failed, suppressed := fetches(t, "introspection", "error"), fetches(t, "introspection", "suppressed")
	for i := range 25 {
		w, _ := handlertest.Serve(t, a, request("/fdx/v6/core/accounts", fmt.Sprintf("opaque-%d", i), cert), &handlertest.Next{})
		if w.Code != 503 || w.Header().Get("Retry-After") == "" {
			t.Fatalf("token %d: %d %v", i, w.Code, w.Header())
		}
	}
	if n := as.intro.Load(); n != 1 || fetches(t, "introspection", "error")-failed != 1 || fetches(t, "introspection", "suppressed")-suppressed != 24 {
		t.Fatalf("%d introspection calls for 25 distinct tokens while it fails, want 1", n)
	}
	clk.Add(time.Second)
	as.down.Store(false)
	if w, _ := handlertest.Serve(t, a, request("/fdx/v6/core/accounts", "opaque-after", cert), &handlertest.Next{}); w.Code != 401 || as.intro.Load() != 2 {
		t.Fatalf("after the backoff: %d, %d calls", w.Code, as.intro.Load())
	}
}
