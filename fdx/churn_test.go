package fdx

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// clock is an injected, settable time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// outcomes counts what an OnFetch or OnCall hook heard.
type outcomes struct {
	mu sync.Mutex
	m  map[string]int
}

func (o *outcomes) hear(outcome string, _ error) { o.mu.Lock(); o.m[outcome]++; o.mu.Unlock() }
func (o *outcomes) n(outcome string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.m[outcome]
}

// TestJWKSKidFlood: a hundred tokens at once naming unknown key ids cost
// one refetch; more within MinRefresh cost none; after it, one.
func TestJWKSKidFlood(t *testing.T) {
	a := newAuthServer(t)
	c := &clock{t: testNow}
	heard := &outcomes{m: map[string]int{}}
	jwks := &JWKS{URL: a.URL + "/jwks", MinRefresh: time.Minute, Now: c.Now, OnFetch: heard.hear}
	ctx := context.Background()
	if _, err := jwks.Key(ctx, "es-1", jose.ES256); err != nil {
		t.Fatal(err)
	}
	flood := func() {
		var wg sync.WaitGroup
		for i := range 100 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := jwks.Key(ctx, fmt.Sprintf("random-%d", i), jose.ES256); !errors.Is(err, ErrUnknownKey) {
					t.Errorf("kid %d: %v", i, err)
				}
			}()
		}
		wg.Wait()
	}
	flood()
	if n := a.jwksCalls.Load(); n != 2 || jwks.Fetches() != 2 {
		t.Fatalf("%d JWKS fetches after a flood of 100 unknown kids, want 2", n)
	}
	for range 10 {
		c.Add(5 * time.Second) // 50s: within MinRefresh
		flood()
	}
	if n := a.jwksCalls.Load(); n != 2 {
		t.Fatalf("%d JWKS fetches within MinRefresh, want 2", n)
	}
	c.Add(10 * time.Second)
	flood()
	if n := a.jwksCalls.Load(); n != 3 {
		t.Fatalf("%d JWKS fetches after MinRefresh, want 3", n)
	}
	if heard.n("ok") != 3 || heard.n("error") != 0 || heard.n("suppressed") < 1000 {
		t.Errorf("heard %v", heard.m)
	}
	// a known key is never a fetch
	if _, err := jwks.Key(ctx, "es-1", jose.ES256); err != nil || a.jwksCalls.Load() != 3 {
		t.Fatalf("known key: %v", err)
	}
}

// TestJWKSOutageBackoff: with no key ever fetched and the server down,
// requests fail at once as ErrUnavailable and fetch only after a backoff
// that doubles from a second up to 30s; the readiness Refresh obeys it
// too, and the failure's cause is kept.
func TestJWKSOutageBackoff(t *testing.T) {
	a := newAuthServer(t)
	a.down.Store(true)
	c := &clock{t: testNow}
	jwks := &JWKS{URL: a.URL + "/jwks", MinRefresh: 4 * time.Second, Now: c.Now}
	ctx := context.Background()
	for range 50 {
		if _, err := jwks.Key(ctx, "es-1", jose.ES256); !errors.Is(err, ErrUnavailable) {
			t.Fatal(err)
		}
		if jwks.Refresh(ctx) == nil {
			t.Fatal("Refresh succeeded during the outage")
		}
	}
	if n := a.jwksCalls.Load(); jwks.Fetches() != 1 {
		t.Fatalf("%d fetches (%d reached the server) within the first backoff", jwks.Fetches(), n)
	}
	if err := jwks.Failing(); err == nil || !strings.Contains(err.Error(), "status 503") {
		t.Fatalf("the cause of the outage: %v", err)
	}
	for i, wait := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second} {
		c.Add(wait - time.Millisecond)
		jwks.Key(ctx, "es-1", jose.ES256)
		if jwks.Fetches() != i+1 {
			t.Fatalf("backoff %d: fetched before %v", i, wait)
		}
		c.Add(time.Millisecond)
		jwks.Key(ctx, "es-1", jose.ES256)
		if jwks.Fetches() != i+2 {
			t.Fatalf("backoff %d: no fetch after %v", i, wait)
		}
	}
	a.down.Store(false)
	c.Add(30 * time.Second)
	if _, err := jwks.Key(ctx, "es-1", jose.ES256); err != nil || !jwks.HasKeys() || jwks.Failing() != nil {
		t.Fatalf("after the outage: %v", err)
	}
}

// introspectionServer answers every token inactive (or 503 while down),
// waiting for hold (when set) before answering, and counts its calls.
type introspectionServer struct {
	*httptest.Server
	calls atomic.Int32
	down  atomic.Bool
	hold  chan struct{}
}

func newIntrospectionServer(t *testing.T, hold chan struct{}) *introspectionServer {
	s := &introspectionServer{hold: hold}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.calls.Add(1)
		if s.hold != nil {
			<-s.hold
		}
		if s.down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte(`{"active":false}`))
	}))
	t.Cleanup(s.Close)
	return s
}

// TestIntrospectionRepeatedToken: a hundred requests at once with the same
// bad token cost one call; repeated within CacheFor, none; after it, one.
func TestIntrospectionRepeatedToken(t *testing.T) {
	hold := make(chan struct{})
	as := newIntrospectionServer(t, hold)
	c := &clock{t: testNow}
	heard := &outcomes{m: map[string]int{}}
	in := &Introspector{URL: as.URL, ClientID: "rs", ClientSecret: "s", CacheFor: 10 * time.Second, Now: c.Now, OnCall: heard.hear}
	ctx := context.Background()
	var wg sync.WaitGroup
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := in.Introspect(ctx, "opaque-bad"); !errors.Is(err, ErrInvalidToken) {
				t.Errorf("bad token: %v", err)
			}
		}()
	}
	for as.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	close(hold)
	wg.Wait()
	if n := as.calls.Load(); n != 1 || in.Calls() != 1 {
		t.Fatalf("%d introspection calls for 100 requests with one token at once, want 1", n)
	}
	for range 100 {
		c.Add(99 * time.Millisecond) // 9.9s: within CacheFor
		if _, err := in.Introspect(ctx, "opaque-bad"); !errors.Is(err, ErrInvalidToken) {
			t.Fatal(err)
		}
	}
	if n := as.calls.Load(); n != 1 {
		t.Fatalf("%d introspection calls within CacheFor, want 1", n)
	}
	c.Add(100 * time.Millisecond)
	in.Introspect(ctx, "opaque-bad")
	if n := as.calls.Load(); n != 2 || heard.n("ok") != 2 {
		t.Fatalf("%d introspection calls after CacheFor, want 2; heard %v", n, heard.m)
	}
}

// TestIntrospectionOutageRepeatedToken: while the endpoint fails, a
// repeated token costs one call a second, each request failing at once as
// ErrUnavailable (never as an invalid token).
func TestIntrospectionOutageRepeatedToken(t *testing.T) {
	as := newIntrospectionServer(t, nil)
	as.down.Store(true)
	c := &clock{t: testNow}
	heard := &outcomes{m: map[string]int{}}
	in := &Introspector{URL: as.URL, ClientID: "rs", ClientSecret: "s", Now: c.Now, OnCall: heard.hear}
	ctx := context.Background()
	for range 100 {
		c.Add(9 * time.Millisecond) // 0.9s
		if _, err := in.Introspect(ctx, "opaque-any"); !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrInvalidToken) {
			t.Fatal(err)
		}
	}
	if n := as.calls.Load(); n != 1 || heard.n("error") != 1 || heard.n("suppressed") != 99 {
		t.Fatalf("%d introspection calls during an outage, want 1; heard %v", n, heard.m)
	}
	as.down.Store(false)
	c.Add(109 * time.Millisecond) // a second after the call
	if _, err := in.Introspect(ctx, "opaque-any"); !errors.Is(err, ErrInvalidToken) || as.calls.Load() != 2 {
		t.Fatalf("after the outage: %v, %d calls", err, as.calls.Load())
	}
}
