package fdx

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// TestIntrospectionOutageDistinctTokens: while the endpoint fails, tokens
// never seen before cost one call per backoff (doubling from a second),
// not one each; each is refused at once as ErrUnavailable and counted as
// suppressed; a token answered before the outage keeps its answer; the
// first call answered ends the backoff.
func TestIntrospectionOutageDistinctTokens(t *testing.T) {
	as := newIntrospectionServer(t, nil)
	c := &clock{t: testNow}
	heard := &outcomes{m: map[string]int{}}
	in := &Introspector{URL: as.URL, ClientID: "rs", ClientSecret: "s", CacheFor: time.Hour, Now: c.Now, OnCall: heard.hear}
	ctx := context.Background()
	if _, err := in.Introspect(ctx, "answered-before"); !errors.Is(err, ErrInvalidToken) {
		t.Fatal(err)
	}
	as.down.Store(true)
	for i := range 150 { // 15 s, a new token every 100 ms
		if _, err := in.Introspect(ctx, fmt.Sprintf("fresh-%d", i)); !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrInvalidToken) {
			t.Fatalf("token %d: %v", i, err)
		}
		if _, err := in.Introspect(ctx, "answered-before"); !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("a cached answer during the outage: %v", err)
		}
		c.Add(100 * time.Millisecond)
	}
	// calls at 0, 1 s, 3 s, 7 s (then the wait is 8 s, past 15 s)
	if n := as.calls.Load() - 1; n != 4 || heard.n("error") != 4 || heard.n("suppressed") != 146 {
		t.Fatalf("%d calls for 150 fresh tokens over 15 s of outage, want 4; heard %v", n, heard.m)
	}
	if err := in.Failing(); err == nil {
		t.Fatal("Failing says nothing during the outage")
	}
	as.down.Store(false)
	c.Add(8 * time.Second)
	if _, err := in.Introspect(ctx, "after"); !errors.Is(err, ErrInvalidToken) || in.Failing() != nil {
		t.Fatalf("after the outage: %v", err)
	}
	// the backoff ended: the next failure waits a second again
	as.down.Store(true)
	calls := as.calls.Load()
	in.Introspect(ctx, "down-again")
	c.Add(999 * time.Millisecond)
	in.Introspect(ctx, "down-again-2")
	c.Add(time.Millisecond)
	in.Introspect(ctx, "down-again-3")
	if n := as.calls.Load() - calls; n != 2 {
		t.Fatalf("%d calls around a second after a new failure, want 2", n)
	}
}

// TestIntrospectionConcurrentFailures: calls under way together that fail
// together start one backoff of a second, not one doubled per call.
func TestIntrospectionConcurrentFailures(t *testing.T) {
	hold := make(chan struct{})
	as := newIntrospectionServer(t, hold)
	as.down.Store(true)
	c := &clock{t: testNow}
	in := &Introspector{URL: as.URL, ClientID: "rs", ClientSecret: "s", Now: c.Now}
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := in.Introspect(ctx, fmt.Sprintf("together-%d", i)); !errors.Is(err, ErrUnavailable) {
				t.Errorf("token %d: %v", i, err)
			}
		}()
	}
	for as.calls.Load() != 10 {
		time.Sleep(time.Millisecond)
	}
	c.Add(time.Millisecond)
	close(hold)
	wg.Wait()
	c.Add(time.Second - time.Millisecond)
	in.Introspect(ctx, "within")
	if n := as.calls.Load(); n != 10 {
		t.Fatalf("%d calls within the backoff", n)
	}
	c.Add(time.Millisecond)
	in.Introspect(ctx, "after")
	if n := as.calls.Load(); n != 11 {
		t.Fatalf("%d calls a second after ten failed together: the backoff doubled per call", n)
	}
}

// TestIntrospectionProbeBackoff: the readiness probe obeys the backoff
// after a failed call too.
func TestIntrospectionProbeBackoff(t *testing.T) {
	as := newIntrospectionServer(t, nil)
	as.down.Store(true)
	c := &clock{t: testNow}
	in := &Introspector{URL: as.URL, ClientID: "rs", ClientSecret: "s", Now: c.Now}
	ctx := context.Background()
	in.Introspect(ctx, "fails")
	for range 10 {
		if err := in.Probe(ctx); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("probe within the backoff: %v", err)
		}
	}
	if n := as.calls.Load(); n != 1 {
		t.Fatalf("%d calls: the probe called within the backoff", n)
	}
	as.down.Store(false)
	c.Add(time.Second)
	if err := in.Probe(ctx); err != nil || as.calls.Load() != 2 {
		t.Fatalf("probe after the backoff: %v, %d calls", err, as.calls.Load())
	}
	if err := in.Probe(ctx); err != nil || as.calls.Load() != 2 {
		t.Fatalf("probe once answered: %v, %d calls", err, as.calls.Load())
	}
}

// TestIntrospectorAdopt: an Introspector that adopts new settings keeps
// its answers and its backoff; a new CacheFor applies to the answers it
// holds, from when each came.
func TestIntrospectorAdopt(t *testing.T) {
	as := newIntrospectionServer(t, nil)
	c := &clock{t: testNow}
	in := &Introspector{URL: as.URL, ClientID: "rs", ClientSecret: "s", CacheFor: time.Hour, Now: c.Now}
	ctx := context.Background()
	in.Introspect(ctx, "kept")
	heard := &outcomes{m: map[string]int{}}
	in.Adopt(&Introspector{CacheFor: 10 * time.Minute, OnCall: heard.hear})
	c.Add(9 * time.Minute)
	in.Introspect(ctx, "kept")
	if n := as.calls.Load(); n != 1 {
		t.Fatalf("%d calls: the answer was not kept", n)
	}
	c.Add(time.Minute)
	in.Introspect(ctx, "kept")
	if n := as.calls.Load(); n != 2 || heard.n("ok") != 1 {
		t.Fatalf("%d calls after the new CacheFor; the adopted OnCall heard %v", n, heard.m)
	}
	// a backoff under way stays
	as.down.Store(true)
	in.Introspect(ctx, "fails")
	in.Adopt(&Introspector{CacheFor: time.Hour})
	in.Introspect(ctx, "other")
	if n := as.calls.Load(); n != 3 {
		t.Fatalf("%d calls: the backoff did not outlive Adopt", n)
	}
}

// TestIntrospectorClose: Close cancels the calls under way and makes no
// more; answers cached before stay.
func TestIntrospectorClose(t *testing.T) {
	hold := make(chan struct{})
	defer close(hold)
	as := newIntrospectionServer(t, nil)
	in := &Introspector{URL: as.URL, ClientID: "rs", ClientSecret: "s", CacheFor: time.Hour}
	ctx := context.Background()
	in.Introspect(ctx, "cached")
	as.hold = hold
	done := make(chan error)
	go func() { _, err := in.Introspect(ctx, "held"); done <- err }()
	for as.calls.Load() != 2 {
		time.Sleep(time.Millisecond)
	}
	in.Close()
	if err := <-done; !errors.Is(err, ErrUnavailable) {
		t.Fatalf("the call under way: %v", err)
	}
	if _, err := in.Introspect(ctx, "new"); !errors.Is(err, ErrUnavailable) || as.calls.Load() != 2 {
		t.Fatalf("after Close: %v, %d calls", err, as.calls.Load())
	}
	if _, err := in.Introspect(ctx, "cached"); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("a cached answer after Close: %v", err)
	}
}

// TestJWKSAdopt: a JWKS that adopts new settings keeps its keys and the
// refetch MinRefresh counts from; the new MinRefresh applies to it.
func TestJWKSAdopt(t *testing.T) {
	a := newAuthServer(t)
	c := &clock{t: testNow}
	jwks := &JWKS{URL: a.URL + "/jwks", MinRefresh: time.Hour, Now: c.Now}
	ctx := context.Background()
	jwks.Key(ctx, "es-1", jose.ES256)
	jwks.Key(ctx, "unknown-1", jose.ES256)
	if n := a.jwksCalls.Load(); n != 2 {
		t.Fatalf("%d fetches", n)
	}
	heard := &outcomes{m: map[string]int{}}
	jwks.Adopt(&JWKS{MinRefresh: time.Hour, MaxAge: 2 * time.Hour, OnFetch: heard.hear})
	c.Add(30 * time.Minute)
	if _, err := jwks.Key(ctx, "es-1", jose.ES256); err != nil {
		t.Fatalf("a kept key: %v", err)
	}
	jwks.Key(ctx, "unknown-2", jose.ES256)
	if n := a.jwksCalls.Load(); n != 2 || heard.n("suppressed") != 1 {
		t.Fatalf("%d fetches within the kept MinRefresh; heard %v", n, heard.m)
	}
	jwks.Adopt(&JWKS{MinRefresh: 10 * time.Minute, MaxAge: time.Hour})
	jwks.Key(ctx, "unknown-3", jose.ES256)
	if n := a.jwksCalls.Load(); n != 3 {
		t.Fatalf("%d fetches past the new MinRefresh", n)
	}
	jwks.Close()
	c.Add(2 * time.Hour) // past MaxAge: a background fetch would be due
	if _, err := jwks.Key(ctx, "es-1", jose.ES256); err != nil {
		t.Fatalf("a key after Close: %v", err)
	}
	jwks.Key(ctx, "unknown-4", jose.ES256)
	if n := a.jwksCalls.Load(); n != 3 {
		t.Fatalf("%d fetches after Close", n)
	}
}
