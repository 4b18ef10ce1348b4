package mxconnect

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clock is an injected time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// securityAPI is a stand-in for MX Connect's Security API.
type securityAPI struct {
	*httptest.Server
	calls   atomic.Int32
	status  atomic.Int32  // answer with this status when non-zero
	gate    chan struct{} // when set, each call waits for it
	clock   *clock
	lastReq atomic.Value // of string: the request as seen
	life    atomic.Int64 // of its tokens; 0: ten minutes
	behind  atomic.Int64 // its clock is this far behind the gateway's
}

func newSecurityAPI(t *testing.T, c *clock) *securityAPI {
	s := &securityAPI{clock: c}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := s.calls.Add(1)
		if s.gate != nil {
			<-s.gate
		}
		user, pass, _ := r.BasicAuth()
		body, _ := io.ReadAll(r.Body)
		s.lastReq.Store(fmt.Sprintf("%s %s %s:%s %s %s", r.Method, r.URL.Path, user, pass, r.Header.Get("Content-Type"), body))
		if st := s.status.Load(); st != 0 {
			w.WriteHeader(int(st))
			return
		}
		if user != "user" || pass != "pass" || string(body) != `{"value":"API_key"}` {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		life := time.Duration(s.life.Load())
		if life == 0 {
			life = 10 * time.Minute
		}
		exp := c.Now().Add(-time.Duration(s.behind.Load())).Add(life)
		json.NewEncoder(w).Encode(map[string]string{"token": jwt(exp, n)})
	}))
	t.Cleanup(s.Close)
	return s
}

// jwt makes an unsigned-looking token with an exp claim.
func jwt(exp time.Time, n int32) string {
	enc := base64.RawURLEncoding.EncodeToString
	payload, _ := json.Marshal(map[string]any{"exp": exp.Unix(), "n": n})
	return enc([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc(payload) + ".sig"
}

func newSource(api *securityAPI, c *clock) *Source {
	return &Source{Endpoint: api.URL + "/security/v1/apiKey/authenticate", Username: "user", Password: "pass", APIKey: "API_key", Now: c.Now}
}

func TestFetchAndCache(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	api := newSecurityAPI(t, c)
	s := newSource(api, c)
	tok, err := s.Token(context.Background())
	if err != nil || tok == "" {
		t.Fatal(tok, err)
	}
	if got := api.lastReq.Load().(string); got != `POST /security/v1/apiKey/authenticate user:pass application/json {"value":"API_key"}` {
		t.Fatalf("the Security API saw %q", got)
	}
	for range 100 {
		c.Add(5 * time.Second) // up to 8m20s: before the refresh window
		if again, _ := s.Token(context.Background()); again != tok {
			t.Fatal("a cached token was not reused")
		}
	}
	if api.calls.Load() != 1 {
		t.Fatalf("%d calls", api.calls.Load())
	}
}

// TestRefreshBeforeExpiry: inside RefreshBefore of exp the old token is
// still served while one background refresh fetches the next.
func TestRefreshBeforeExpiry(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	api := newSecurityAPI(t, c)
	s := newSource(api, c)
	first, _ := s.Token(context.Background())
	c.Add(9*time.Minute + 30*time.Second) // 30s before exp, inside the 1m window
	if tok, _ := s.Token(context.Background()); tok != first {
		t.Fatal("the still-valid token was not served during the refresh")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		tok, _ := s.Token(context.Background())
		if tok != first {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no refresh happened")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := api.calls.Load(); n != 2 {
		t.Fatalf("%d calls, want 2", n)
	}
	// past exp with no refresh possible: the caller waits for a new one
	c.Add(11 * time.Minute)
	if tok, err := s.Token(context.Background()); err != nil || tok == first {
		t.Fatalf("after expiry: %v", err)
	}
}

// TestSingleFlight: a thousand callers at expiry make one Security API call.
func TestSingleFlight(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	api := newSecurityAPI(t, c)
	api.gate = make(chan struct{})
	s := newSource(api, c)
	var wg sync.WaitGroup
	tokens := make([]string, 1000)
	errs := make([]error, 1000)
	for i := range tokens {
		wg.Add(1)
		go func() { defer wg.Done(); tokens[i], errs[i] = s.Token(context.Background()) }()
	}
	for api.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	close(api.gate)
	wg.Wait()
	for i := range tokens {
		if errs[i] != nil || tokens[i] != tokens[0] {
			t.Fatalf("caller %d: %q %v", i, tokens[i], errs[i])
		}
	}
	if n := api.calls.Load(); n != 1 {
		t.Fatalf("%d Security API calls for 1000 callers", n)
	}
}

// TestRefused: a hundred requests that saw the same token refused cost one
// Security API call, and all get the same new token; refusals of that one
// within MinRefresh cost none (ErrTooSoon); a refusal of an older token
// gets the current one without a call; after MinRefresh, one call again.
func TestRefused(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	api := newSecurityAPI(t, c)
	s := newSource(api, c)
	outcomes := map[string]int{}
	var mu sync.Mutex
	s.OnFetch = func(o string) { mu.Lock(); outcomes[o]++; mu.Unlock() }
	ctx := context.Background()
	first, gen, err := s.Get(ctx)
	if err != nil || gen == 0 {
		t.Fatal(gen, err)
	}
	var wg sync.WaitGroup
	toks := make([]string, 100)
	gens := make([]uint64, 100)
	errs := make([]error, 100)
	for i := range toks {
		wg.Add(1)
		go func() { defer wg.Done(); toks[i], gens[i], errs[i] = s.Refused(ctx, gen) }()
	}
	wg.Wait()
	for i := range toks {
		if errs[i] != nil || toks[i] == first || toks[i] != toks[0] || gens[i] != gens[0] || gens[i] == gen {
			t.Fatalf("caller %d: %v, generation %d (was %d)", i, errs[i], gens[i], gen)
		}
	}
	if n := api.calls.Load(); n != 2 {
		t.Fatalf("%d Security API calls for 100 refusals of one token, want 2", n)
	}
	second, gen2 := toks[0], gens[0]
	for range 100 {
		c.Add(100 * time.Millisecond) // 10s, within the default 30s
		if _, _, err := s.Refused(ctx, gen2); !errors.Is(err, ErrTooSoon) {
			t.Fatalf("refusal within MinRefresh: %v", err)
		}
		if tok, g, err := s.Refused(ctx, gen); err != nil || tok != second || g != gen2 {
			t.Fatalf("refusal of the older token: %v", err)
		}
		if tok, _ := s.Token(ctx); tok != second {
			t.Fatal("the token changed within MinRefresh")
		}
	}
	if n := api.calls.Load(); n != 2 {
		t.Fatalf("%d Security API calls within MinRefresh", n)
	}
	c.Add(20 * time.Second)
	if tok, g, err := s.Refused(ctx, gen2); err != nil || tok == second || g == gen2 || api.calls.Load() != 3 {
		t.Fatalf("after MinRefresh: %v, %d calls", err, api.calls.Load())
	}
	if outcomes["ok"] != 3 || outcomes["error"] != 0 || outcomes["suppressed"] != 100 || s.Refreshes() != 3 {
		t.Errorf("outcomes %v, %d refreshes", outcomes, s.Refreshes())
	}
}

// TestRefusedDuringOutage: a refusal while the Security API fails gets the
// failure, and within the backoff makes no call.
func TestRefusedDuringOutage(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	api := newSecurityAPI(t, c)
	s := newSource(api, c)
	s.MinRefresh = time.Second
	var failures atomic.Int32
	s.OnRefreshError = func(error) { failures.Add(1) }
	_, gen, _ := s.Get(context.Background())
	api.status.Store(503)
	for range 50 {
		if _, _, err := s.Refused(context.Background(), gen); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("refusal during the outage: %v", err)
		}
	}
	if n := api.calls.Load(); n != 2 || failures.Load() != 1 {
		t.Fatalf("%d calls, %d failures reported", n, failures.Load())
	}
	// the refused token is still served until it expires
	if tok, g, err := s.Get(context.Background()); err != nil || g != gen || tok == "" {
		t.Fatalf("during the outage: %v", err)
	}
	api.status.Store(0)
	c.Add(time.Second)
	if _, g, err := s.Refused(context.Background(), gen); err != nil || g == gen || api.calls.Load() != 3 {
		t.Fatalf("after the outage: %v, %d calls", err, api.calls.Load())
	}
}

// TestOutageFailsFastWithBackoff: failures are reported at once, the
// Security API is not called again until the backoff has passed, and the
// backoff doubles up to its bound.
func TestOutageFailsFastWithBackoff(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	api := newSecurityAPI(t, c)
	s := newSource(api, c)
	s.MaxBackoff = 8 * time.Second
	api.status.Store(503)
	if _, err := s.Token(context.Background()); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("503: %v", err)
	}
	for range 100 {
		if _, err := s.Token(context.Background()); !errors.Is(err, ErrUnavailable) {
			t.Fatal(err)
		}
	}
	if n := api.calls.Load(); n != 1 {
		t.Fatalf("%d calls within the backoff", n)
	}
	waits := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second}
	for i, w := range waits {
		c.Add(w - time.Millisecond)
		s.Token(context.Background())
		if n := api.calls.Load(); n != int32(i+1) {
			t.Fatalf("backoff %d: called after %v of %v", i, w-time.Millisecond, w)
		}
		c.Add(time.Millisecond)
		s.Token(context.Background())
		if n := api.calls.Load(); n != int32(i+2) {
			t.Fatalf("backoff %d: not called after %v", i, w)
		}
	}
	// credentials refused: a distinct error
	api.status.Store(401)
	c.Add(time.Minute)
	if _, err := s.Token(context.Background()); !errors.Is(err, ErrRefused) {
		t.Fatalf("401: %v", err)
	}
	// recovery
	api.status.Store(0)
	c.Add(time.Minute)
	if tok, err := s.Token(context.Background()); err != nil || tok == "" {
		t.Fatalf("after recovery: %v", err)
	}
}

func TestErrorsNeverCarryCredentials(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	for _, endpoint := range []string{"http://127.0.0.1:1/x", "http://user:pass@127.0.0.1:1/x", "http://no-such-host.invalid/x"} {
		s := &Source{Endpoint: endpoint, Username: "user-secret", Password: "pass-secret", APIKey: "API_key", Now: c.Now, Client: &http.Client{Timeout: time.Second}}
		_, err := s.Token(context.Background())
		if err == nil || !errors.Is(err, ErrUnavailable) {
			t.Fatalf("%s: %v", endpoint, err)
		}
		for _, secret := range []string{"user-secret", "pass-secret", "API_key", "pass@"} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q carries a credential", err)
			}
		}
	}
}

func TestExpiry(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	for tok, want := range map[string]time.Time{
		jwt(now.Add(7*time.Minute), 1): now.Add(7 * time.Minute),
		"opaque-token":                 now.Add(DefaultLifetime),
		jwt(now.Add(-time.Minute), 1):  now.Add(DefaultLifetime), // already past: our clock is off
		jwt(now.Add(48*time.Hour), 1):  now.Add(DefaultLifetime), // implausibly far
		"a.!!!.c":                      now.Add(DefaultLifetime),
	} {
		if got := expiry(tok, now); !got.Equal(want) {
			t.Errorf("expiry(%.30q) = %v, want %v", tok, got, want)
		}
	}
}

// settle waits for the background fetch a call may have started, so that
// the next step of a test sees its result.
func settle(t *testing.T, s *Source) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.value().Wait(ctx); err != nil {
		t.Fatal("a background fetch did not end")
	}
}

// TestShortLivedTokens: tokens that live less than RefreshBefore are
// renewed at half their lifetime, not on every request; the hint is heard
// for each such token.
func TestShortLivedTokens(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	api := newSecurityAPI(t, c)
	api.life.Store(int64(30 * time.Second)) // RefreshBefore is 1m
	s := newSource(api, c)
	var hints []time.Duration
	s.OnShortLived = func(life time.Duration) { hints = append(hints, life) }
	for range 600 { // ten minutes, a request every second
		if _, err := s.Token(context.Background()); err != nil {
			t.Fatal(err)
		}
		settle(t, s)
		c.Add(time.Second)
	}
	// one fetch per 15 s (half of 30 s), and the first
	if n := api.calls.Load(); n < 39 || n > 41 {
		t.Fatalf("%d Security API calls in ten minutes of 30-second tokens, want one per 15 s", n)
	}
	if len(hints) != int(api.calls.Load()) || hints[0] != 30*time.Second {
		t.Fatalf("short-lived hints %v for %d tokens", hints, api.calls.Load())
	}
}

// TestClockAhead: a gateway clock ahead of the Security API's, so that
// each token seems to live a second (or to have expired already), costs
// at most one fetch per MinRenewal, not one per request, and the token is
// served meanwhile.
func TestClockAhead(t *testing.T) {
	for _, ahead := range []time.Duration{10*time.Minute - time.Second, 10*time.Minute - 100*time.Millisecond} {
		c := &clock{t: time.Unix(1_700_000_000, 0)}
		api := newSecurityAPI(t, c)
		api.behind.Store(int64(ahead))
		s := newSource(api, c)
		for range 1200 { // a minute, a request every 50 ms
			if tok, err := s.Token(context.Background()); err != nil || tok == "" {
				t.Fatalf("%v ahead: %v", ahead, err)
			}
			settle(t, s)
			c.Add(50 * time.Millisecond)
		}
		if n := api.calls.Load(); n > 7 { // at 0, 10 s, …, 60 s
			t.Fatalf("%v ahead: %d Security API calls in a minute, want at most one per %v", ahead, n, DefaultMinRenewal)
		}
	}
	// a token whose exp has passed by this clock on arrival lives
	// DefaultLifetime (TestExpiry): one fetch for the minute
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	api := newSecurityAPI(t, c)
	api.behind.Store(int64(11 * time.Minute))
	s := newSource(api, c)
	for range 60 {
		if _, err := s.Token(context.Background()); err != nil {
			t.Fatal(err)
		}
		c.Add(time.Second)
	}
	if n := api.calls.Load(); n != 1 {
		t.Fatalf("a clock 11 minutes ahead: %d calls in a minute", n)
	}
}

// TestMinRenewalAtExpiry: a token expired by this clock past MinRenewal
// is renewed before it is served (the caller waits), and such renewals
// are one per MinRenewal however many callers.
func TestMinRenewalAtExpiry(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	api := newSecurityAPI(t, c)
	api.life.Store(int64(2 * time.Second))
	s := newSource(api, c)
	s.MinRenewal = 5 * time.Second
	first, _ := s.Token(context.Background())
	c.Add(3 * time.Second) // expired by exp, within MinRenewal: served
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if tok, err := s.Token(context.Background()); err != nil || tok != first {
				t.Errorf("within MinRenewal: %v, the same token: %v", err, tok == first)
			}
		}()
	}
	wg.Wait()
	if n := api.calls.Load(); n != 1 {
		t.Fatalf("%d calls within MinRenewal", n)
	}
	c.Add(2 * time.Second)
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if tok, err := s.Token(context.Background()); err != nil || tok == first {
				t.Errorf("past MinRenewal and exp: %v, the old token: %v", err, tok == first)
			}
		}()
	}
	wg.Wait()
	if n := api.calls.Load(); n != 2 {
		t.Fatalf("%d calls for 50 callers at expiry", n)
	}
}

// TestAdopt: a Source that adopts new settings keeps its token and what
// it knows of past fetches, and applies the settings from then on.
func TestAdopt(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	api := newSecurityAPI(t, c)
	s := newSource(api, c)
	s.MinRefresh = time.Hour
	_, gen, _ := s.Get(context.Background())
	_, gen, err := s.Refused(context.Background(), gen)
	if err != nil || api.calls.Load() != 2 {
		t.Fatalf("forced fetch: %v, %d calls", err, api.calls.Load())
	}
	var fetches []string
	next := newSource(api, c)
	next.MinRefresh, next.RefreshBefore = time.Hour, 5*time.Minute
	next.OnFetch = func(o string) { fetches = append(fetches, o) }
	s.Adopt(next)
	if _, _, err := s.Refused(context.Background(), gen); !errors.Is(err, ErrTooSoon) || api.calls.Load() != 2 {
		t.Fatalf("a refusal within the kept MinRefresh: %v, %d calls", err, api.calls.Load())
	}
	// RefreshBefore is now 5m: a renewal at 5 minutes
	c.Add(5*time.Minute + time.Second)
	s.Token(context.Background())
	settle(t, s)
	if n := api.calls.Load(); n != 3 || len(fetches) != 2 || fetches[0] != "suppressed" || fetches[1] != "ok" {
		t.Fatalf("%d calls, the adopted OnFetch heard %v", n, fetches)
	}
	// a shorter MinRefresh applies to the forced fetch made an hour ago
	later := newSource(api, c)
	later.MinRefresh = time.Minute
	s.Adopt(later)
	_, gen, _ = s.Get(context.Background())
	if _, _, err := s.Refused(context.Background(), gen); err != nil || api.calls.Load() != 4 {
		t.Fatalf("a refusal past the new MinRefresh: %v, %d calls", err, api.calls.Load())
	}
}

// TestClose: a closed Source cancels its fetch and makes no more.
func TestClose(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	api := newSecurityAPI(t, c)
	api.gate = make(chan struct{})
	defer close(api.gate)
	s := newSource(api, c)
	failures := 0
	s.OnRefreshError = func(error) { failures++ }
	done := make(chan error)
	go func() { _, err := s.Token(context.Background()); done <- err }()
	for api.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	s.Close()
	if err := <-done; !errors.Is(err, ErrUnavailable) {
		t.Fatalf("the waiting caller: %v", err)
	}
	if _, err := s.Token(context.Background()); !errors.Is(err, ErrUnavailable) || api.calls.Load() != 1 || failures != 0 {
		t.Fatalf("after Close: %v, %d calls, %d failures heard", err, api.calls.Load(), failures)
	}
}
