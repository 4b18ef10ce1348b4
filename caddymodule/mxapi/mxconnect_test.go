package mxapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mxgate/mxgate/caddymodule/internal/metrics"
	"github.com/mxgate/mxgate/internal/testkit/handlertest"
	"github.com/mxgate/mxgate/mxconnect"
)

// securityAPI is a stand-in for MX Connect's Security API: it hands out
// tok-1, tok-2, … to the right credentials, or answers status while that
// is set.
type securityAPI struct {
	*httptest.Server
	issued atomic.Int32
	status atomic.Int32  // non-zero: answer this instead of a token
	hold   chan struct{} // non-nil: wait for it before answering
	// expAt, if set, gives each token an exp claim: the token is then a
	// JWT whose signature part is tok-n
	expAt atomic.Pointer[func() time.Time]
}

func newSecurityAPI(t *testing.T) *securityAPI {
	s := &securityAPI{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.hold != nil {
			<-s.hold
		}
		var body struct{ Value string }
		_ = json.NewDecoder(r.Body).Decode(&body)
		user, pass, _ := r.BasicAuth()
		switch {
		case s.status.Load() != 0:
			w.WriteHeader(int(s.status.Load()))
		case r.Method != "POST" || user != "mx-user" || pass != "mx-pa55word" || body.Value != "mx-api-k3y":
			w.WriteHeader(http.StatusUnauthorized)
		default:
			tok := "tok-" + strconv.Itoa(int(s.issued.Add(1)))
			if exp := s.expAt.Load(); exp != nil {
				enc := base64.RawURLEncoding.EncodeToString
				tok = enc([]byte(`{"alg":"HS256"}`)) + "." + enc([]byte(`{"exp":`+strconv.FormatInt((*exp)().Unix(), 10)+`}`)) + "." + tok
			}
			_ = json.NewEncoder(w).Encode(map[string]string{"token": tok})
		}
	}))
	t.Cleanup(s.Close)
	return s
}

// clock is a settable time for the token source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newToken(t *testing.T, endpoint string, m *MXConnectToken) (*MXConnectToken, *observer.ObservedLogs, *clock) {
	t.Helper()
	t.Setenv("MXGATE_TEST_MXC_PASSWORD", "mx-pa55word")
	m.Endpoint = endpoint
	m.Username, m.Password, m.APIKey = "mx-user", "{env.MXGATE_TEST_MXC_PASSWORD}", "mx-api-k3y"
	handlertest.Provision(t, m)
	var logs *observer.ObservedLogs
	m.logger, logs = handlertest.Logs()
	c := &clock{now: time.Unix(1_800_000_000, 0)}
	m.source.Now = c.Now
	return m, logs, c
}

// upstream answers 401 to the tokens in refuse, and records the
// Authorization and body of every request.
type upstream struct {
	refuse map[string]bool
	auths  []string
	bodies []string
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	auth := r.Header.Get("Authorization")
	b, _ := io.ReadAll(r.Body)
	u.auths, u.bodies = append(u.auths, auth), append(u.bodies, string(b))
	w.Header().Set("X-Token-Seen", auth)
	if u.refuse[strings.TrimPrefix(auth, "Bearer ")] {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error":"token expired"}`)
		return nil
	}
	_, _ = io.WriteString(w, `{"ok":true}`)
	return nil
}

func assertNoSecrets(t *testing.T, logs *observer.ObservedLogs) {
	t.Helper()
	for _, e := range logs.All() {
		line := e.Message
		for k, v := range e.ContextMap() {
			line += " " + k + "=" + toString(v)
		}
		for _, s := range []string{"mx-pa55word", "mx-api-k3y", "tok-"} {
			if strings.Contains(line, s) {
				t.Errorf("log line holds a secret: %s", line)
			}
		}
	}
}

func toString(v any) string { b, _ := json.Marshal(v); return string(b) }

func TestMXConnectTokenAttached(t *testing.T) {
	api := newSecurityAPI(t)
	m, logs, _ := newToken(t, api.URL, &MXConnectToken{})
	up := &upstream{}
	for i := range 3 {
		r := local(httptest.NewRequest("GET", "/accounts", nil))
		r.Header.Set("Authorization", "Bearer the-apps-own")
		w, err := handlertest.Serve(t, m, r, up)
		if err != nil || w.Code != 200 || w.Body.String() != `{"ok":true}` {
			t.Fatalf("request %d: %d %v %q", i, w.Code, err, w.Body)
		}
	}
	if strings.Join(up.auths, ",") != "Bearer tok-1,Bearer tok-1,Bearer tok-1" || m.source.Refreshes() != 1 {
		t.Errorf("tokens %v after %d fetches", up.auths, m.source.Refreshes())
	}
	assertNoSecrets(t, logs)
}

// TestMXConnectToken401: an upstream 401 fetches a new token; an
// idempotent request is sent once more, body and all, with it, and the
// client sees only the second answer. A 401 to that second attempt is the
// answer; so is a 401 within min_refresh of the last such fetch, without a
// fetch. A POST is not sent again, but its 401 fetches the token the next
// request uses.
func TestMXConnectToken401(t *testing.T) {
	api := newSecurityAPI(t)
	m, logs, clk := newToken(t, api.URL, &MXConnectToken{})
	up := &upstream{refuse: map[string]bool{"tok-1": true}}
	w := httptest.NewRecorder()
	w.Header().Set("X-Early", "kept")
	if err := m.ServeHTTP(w, local(httptest.NewRequest("PUT", "/accounts/1", strings.NewReader(`{"account":{}}`))), up); err != nil {
		t.Fatal(err)
	}
	if w.Code != 200 || w.Body.String() != `{"ok":true}` || strings.Join(up.auths, ",") != "Bearer tok-1,Bearer tok-2" {
		t.Fatalf("%d %q, tokens %v", w.Code, w.Body, up.auths)
	}
	if up.bodies[0] != `{"account":{}}` || up.bodies[1] != up.bodies[0] {
		t.Errorf("bodies %q", up.bodies)
	}
	if got := w.Header().Values("X-Token-Seen"); len(got) != 1 || got[0] != "Bearer tok-2" || w.Header().Get("X-Early") != "kept" {
		t.Errorf("headers %v", w.Header())
	}

	// within min_refresh (30s by default) of that fetch: tok-2's 401 is
	// the answer, as the upstream gave it, and nothing is fetched
	clk.Add(29 * time.Second)
	up = &upstream{refuse: map[string]bool{"tok-2": true, "tok-3": true}}
	w, _ = handlertest.Serve(t, m, local(httptest.NewRequest("GET", "/accounts", nil)), up)
	if w.Code != 401 || w.Body.String() != `{"error":"token expired"}` || strings.Join(up.auths, ",") != "Bearer tok-2" || api.issued.Load() != 2 {
		t.Errorf("within min_refresh: %d %q, tokens %v, %d issued", w.Code, w.Body, up.auths, api.issued.Load())
	}

	// after it: one fetch, one retry; a second 401 is the answer
	clk.Add(time.Second)
	up.auths = nil
	w, _ = handlertest.Serve(t, m, local(httptest.NewRequest("GET", "/accounts", nil)), up)
	if w.Code != 401 || strings.Join(up.auths, ",") != "Bearer tok-2,Bearer tok-3" || api.issued.Load() != 3 {
		t.Errorf("second 401: %d, tokens %v", w.Code, up.auths)
	}

	// POST: not sent again, but the token it was refused is replaced
	clk.Add(30 * time.Second)
	up = &upstream{refuse: map[string]bool{"tok-3": true}}
	w, _ = handlertest.Serve(t, m, local(httptest.NewRequest("POST", "/accounts", strings.NewReader(`{}`))), up)
	if w.Code != 401 || strings.Join(up.auths, ",") != "Bearer tok-3" || w.Body.String() != `{"error":"token expired"}` {
		t.Errorf("POST: %d %q, tokens %v", w.Code, w.Body, up.auths)
	}
	up = &upstream{}
	_, _ = handlertest.Serve(t, m, local(httptest.NewRequest("GET", "/accounts", nil)), up)
	if up.auths[0] != "Bearer tok-4" || api.issued.Load() != 4 {
		t.Errorf("after the POST's 401: %v", up.auths)
	}
	assertNoSecrets(t, logs)
}

// lockedUpstream is upstream, safe for concurrent requests; it answers
// 401 to every token while refuseAll is set.
type lockedUpstream struct {
	mu        sync.Mutex
	refuseAll bool
	refuse    map[string]bool
	auths     []string
	wait      map[string]chan struct{} // a request for this path waits for it
}

func (u *lockedUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	auth := r.Header.Get("Authorization")
	_, _ = io.ReadAll(r.Body)
	u.mu.Lock()
	u.auths = append(u.auths, auth)
	wait := u.wait[r.URL.Path]
	u.mu.Unlock()
	if wait != nil {
		<-wait
	}
	u.mu.Lock()
	refused := u.refuseAll || u.refuse[strings.TrimPrefix(auth, "Bearer ")]
	u.mu.Unlock()
	w.Header().Set("X-Upstream", "seen")
	if refused {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error":"not allowed"}`)
		return nil
	}
	_, _ = io.WriteString(w, `{"ok":true}`)
	return nil
}

func (u *lockedUpstream) seen() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.auths...)
}

func fetchCount(t *testing.T, outcome string) float64 {
	return handlertest.MetricValue(t, metrics.CredentialFetches,
		map[string]string{"directive": "mxconnect_token", "kind": "token", "outcome": outcome})
}

// TestMXConnectTokenChurn: an endpoint that answers 401 to every token
// costs, for a hundred requests at once and a hundred after, two Security
// API calls (the first token and one forced refresh), not one or two per
// request; every caller gets the upstream's 401, and the fetches are
// counted.
func TestMXConnectTokenChurn(t *testing.T) {
	for _, method := range []string{"GET", "POST"} {
		t.Run(method, func(t *testing.T) {
			api := newSecurityAPI(t)
			m, logs, clk := newToken(t, api.URL, &MXConnectToken{})
			up := &lockedUpstream{refuseAll: true}
			ok, suppressed := fetchCount(t, "ok"), fetchCount(t, "suppressed")
			var wg sync.WaitGroup
			codes := make([]int, 100)
			bodies := make([]string, 100)
			for i := range codes {
				wg.Add(1)
				go func() {
					defer wg.Done()
					w, _ := handlertest.Serve(t, m, local(httptest.NewRequest(method, "/members", strings.NewReader(`{"x":1}`))), up)
					codes[i], bodies[i] = w.Code, w.Body.String()
				}()
			}
			wg.Wait()
			for range 100 {
				clk.Add(250 * time.Millisecond) // 25s: within min_refresh
				w, _ := handlertest.Serve(t, m, local(httptest.NewRequest(method, "/members", strings.NewReader(`{"x":1}`))), up)
				codes, bodies = append(codes, w.Code), append(bodies, w.Body.String())
			}
			for i := range codes {
				if codes[i] != 401 || bodies[i] != `{"error":"not allowed"}` {
					t.Fatalf("request %d: %d %q", i, codes[i], bodies[i])
				}
			}
			if n := api.issued.Load(); n != 2 || m.source.Refreshes() != 2 {
				t.Fatalf("%d Security API calls for 200 refused requests, want 2", n)
			}
			if n := len(up.seen()); n < 200 || n > 300 {
				t.Errorf("the upstream saw %d requests", n)
			}
			if got := fetchCount(t, "ok") - ok; got != 2 {
				t.Errorf("%v fetches counted ok, want 2", got)
			}
			if got := fetchCount(t, "suppressed") - suppressed; got < 100 {
				t.Errorf("%v refreshes counted suppressed, want at least 100", got)
			}
			// past min_refresh: one fetch more
			clk.Add(5 * time.Second)
			handlertest.Serve(t, m, local(httptest.NewRequest(method, "/members", nil)), up)
			handlertest.Serve(t, m, local(httptest.NewRequest(method, "/members", nil)), up)
			if n := api.issued.Load(); n != 3 {
				t.Fatalf("%d Security API calls after min_refresh, want 3", n)
			}
			if logs.FilterMessageSnippet("no MX Connect token").Len() != 0 {
				t.Error("a refused token was logged as an outage")
			}
			assertNoSecrets(t, logs)
		})
	}
}

// TestMXConnectTokenStaleRefusal: a request refused with a token another
// request has already replaced is sent again with the newer token, without
// a fetch.
func TestMXConnectTokenStaleRefusal(t *testing.T) {
	api := newSecurityAPI(t)
	m, _, _ := newToken(t, api.URL, &MXConnectToken{})
	release := make(chan struct{})
	up := &lockedUpstream{refuse: map[string]bool{"tok-1": true}, wait: map[string]chan struct{}{"/slow": release}}
	slow := make(chan *httptest.ResponseRecorder)
	go func() {
		w, _ := handlertest.Serve(t, m, local(httptest.NewRequest("GET", "/slow", nil)), up)
		slow <- w
	}()
	for len(up.seen()) == 0 { // the slow request holds tok-1 at the upstream
		time.Sleep(time.Millisecond)
	}
	w, _ := handlertest.Serve(t, m, local(httptest.NewRequest("GET", "/fast", nil)), up)
	if w.Code != 200 || api.issued.Load() != 2 {
		t.Fatalf("fast: %d, %d issued", w.Code, api.issued.Load())
	}
	close(release)
	if w := <-slow; w.Code != 200 || api.issued.Load() != 2 {
		t.Fatalf("slow: %d, %d issued", w.Code, api.issued.Load())
	}
	if got := strings.Join(up.seen(), ","); got != "Bearer tok-1,Bearer tok-1,Bearer tok-2,Bearer tok-2" {
		t.Errorf("tokens %v", got)
	}
}

// TestMXConnectTokenRefreshFails: when the refresh a 401 asks for fails,
// the caller gets the Security API's failure (not the 401), logged once;
// the next success is logged as the end of it.
func TestMXConnectTokenRefreshFails(t *testing.T) {
	api := newSecurityAPI(t)
	m, logs, clk := newToken(t, api.URL, &MXConnectToken{})
	up := &lockedUpstream{refuse: map[string]bool{"tok-1": true}}
	w, _ := handlertest.Serve(t, m, local(httptest.NewRequest("GET", "/members", nil)), &lockedUpstream{})
	if w.Code != 200 {
		t.Fatal(w.Code)
	}
	api.status.Store(http.StatusServiceUnavailable)
	for range 3 {
		w, _ = handlertest.Serve(t, m, local(httptest.NewRequest("GET", "/members", nil)), up)
		if w.Code != 503 || !strings.Contains(w.Body.String(), "Security API unavailable: status 503") || w.Header().Get("X-Upstream") != "" {
			t.Fatalf("refresh failed: %d %q %v", w.Code, w.Body, w.Header())
		}
	}
	if n := m.source.Refreshes(); n != 2 {
		t.Fatalf("%d Security API calls, want 2 (the backoff holds the rest)", n)
	}
	if n := logs.FilterMessageSnippet("no MX Connect token").Len(); n != 1 {
		t.Errorf("logged %d times", n)
	}
	api.status.Store(0)
	clk.Add(time.Second)
	w, _ = handlertest.Serve(t, m, local(httptest.NewRequest("GET", "/members", nil)), up)
	if w.Code != 200 || logs.FilterMessage("MX Connect tokens available again").Len() != 1 {
		t.Fatalf("after recovery: %d", w.Code)
	}
	assertNoSecrets(t, logs)
}

// TestMXConnectTokenOutage: while the Security API fails, requests fail
// fast with 503, Retry-After and a JSON error, logged once per episode;
// once it answers (after the source's backoff, on its clock), tokens flow
// again and the end is logged.
func TestMXConnectTokenOutage(t *testing.T) {
	api := newSecurityAPI(t)
	api.status.Store(http.StatusBadGateway)
	m, logs, clk := newToken(t, api.URL, &MXConnectToken{})
	up := &upstream{}
	for i := range 3 {
		w, err := handlertest.Serve(t, m, local(httptest.NewRequest("GET", "/accounts", nil)), up)
		if err != nil || w.Code != 503 || w.Header().Get("Retry-After") != "1" {
			t.Fatalf("request %d: %d %v %v", i, w.Code, err, w.Header())
		}
		if w.Body.String() != `{"error":{"message":"MX Connect token unavailable: Security API unavailable: status 502"}}` {
			t.Errorf("body %q", w.Body)
		}
	}
	if len(up.auths) != 0 || m.source.Refreshes() != 1 {
		t.Errorf("upstream reached %d times; Security API called %d times", len(up.auths), m.source.Refreshes())
	}
	if n := logs.FilterMessageSnippet("no MX Connect token").Len(); n != 1 {
		t.Errorf("outage logged %d times", n)
	}
	api.status.Store(0)
	clk.Add(2 * time.Second)
	w, _ := handlertest.Serve(t, m, local(httptest.NewRequest("GET", "/accounts", nil)), up)
	if w.Code != 200 || up.auths[0] != "Bearer tok-1" {
		t.Fatalf("after the outage: %d %v", w.Code, up.auths)
	}
	if n := logs.FilterMessage("MX Connect tokens available again").Len(); n != 1 {
		t.Errorf("recovery logged %d times", n)
	}
	assertNoSecrets(t, logs)

	// a Security API that cannot be reached at all, for a configuration
	// loaded after the first let go (while it held the source, another
	// with the same credentials would share its token)
	api.Close()
	m.Cleanup()
	m2, _, _ := newToken(t, api.URL, &MXConnectToken{ErrorFormat: "text"})
	w, _ = handlertest.Serve(t, m2, local(httptest.NewRequest("GET", "/accounts", nil)), up)
	if w.Code != 503 || w.Body.String() != "MX Connect token unavailable: Security API unavailable: connection refused\n" {
		t.Errorf("unreachable: %d %q", w.Code, w.Body)
	}
}

func TestMXConnectTokenRefused(t *testing.T) {
	api := newSecurityAPI(t)
	m, logs, _ := newToken(t, api.URL, &MXConnectToken{})
	m.source.Password = "wrong-pa55word"
	w, err := handlertest.Serve(t, m, local(httptest.NewRequest("GET", "/accounts", nil)), &upstream{})
	if err != nil || w.Code != 502 || w.Header().Get("Retry-After") != "" {
		t.Fatalf("%d %v %v", w.Code, err, w.Header())
	}
	if w.Body.String() != `{"error":{"message":"MX Connect token unavailable: Security API refused the credentials: status 401"}}` {
		t.Errorf("body %q", w.Body)
	}
	if logs.FilterMessageSnippet("no MX Connect token").Len() != 1 {
		t.Error("refusal not logged")
	}
	for _, e := range logs.All() {
		if strings.Contains(toString(e.ContextMap()), "pa55word") {
			t.Errorf("log holds the password: %v", e.ContextMap())
		}
	}
}

// TestMXConnectTokenClientGone: a client that goes away while the token is
// fetched gets 499, not a Security API error.
func TestMXConnectTokenClientGone(t *testing.T) {
	api := newSecurityAPI(t)
	api.hold = make(chan struct{})
	m, _, _ := newToken(t, api.URL, &MXConnectToken{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := handlertest.Serve(t, m, local(httptest.NewRequest("GET", "/accounts", nil)).WithContext(ctx), &upstream{})
	close(api.hold)
	var he caddyhttp.HandlerError
	if !errors.As(err, &he) || he.StatusCode != 499 {
		t.Errorf("%v", err)
	}
}

func TestMXConnectTokenBodyAndErrors(t *testing.T) {
	api := newSecurityAPI(t)
	m, _, _ := newToken(t, api.URL, &MXConnectToken{})
	r := local(httptest.NewRequest("PUT", "/accounts/1", io.MultiReader(strings.NewReader("{"), errReader{})))
	r.ContentLength = -1
	_, err := handlertest.Serve(t, m, r, &upstream{})
	var he caddyhttp.HandlerError
	if !errors.As(err, &he) || he.StatusCode != 400 {
		t.Errorf("unreadable body: %v", err)
	}
	boom := errors.New("upstream down")
	if _, err := handlertest.Serve(t, m, local(httptest.NewRequest("GET", "/", nil)), failing{boom}); !errors.Is(err, boom) {
		t.Errorf("error %v", err)
	}
}

func TestMXConnectTokenProvisionErrors(t *testing.T) {
	t.Setenv("MXGATE_TEST_EMPTY", "")
	creds := func(m MXConnectToken) *MXConnectToken {
		if m.Username == "" {
			m.Username = "u"
		}
		if m.Password == "" {
			m.Password = "hunter2"
		}
		if m.APIKey == "" {
			m.APIKey = "k"
		}
		return &m
	}
	for name, c := range map[string]struct {
		m   *MXConnectToken
		msg string
	}{
		"ftp endpoint":   {creds(MXConnectToken{Endpoint: "ftp://mx"}), "endpoint must be an http(s) URL"},
		"no username":    {&MXConnectToken{Password: "hunter2", APIKey: "k"}, "username is empty"},
		"unset password": {creds(MXConnectToken{Password: "{env.MXGATE_TEST_EMPTY}"}), "password is empty"},
		"refresh":        {creds(MXConnectToken{RefreshBefore: 1 << 62}), "refresh_before must be shorter than a token's life (10m0s)"},
		"negative":       {creds(MXConnectToken{Timeout: -1}), "durations and sizes must be positive"},
		"min_refresh":    {creds(MXConnectToken{MinRefresh: -1}), "durations and sizes must be positive"},
		"format":         {creds(MXConnectToken{ErrorFormat: "xml"}), "unknown error_format"},
	} {
		err := handlertest.TryProvision(t, c.m)
		if err == nil || !strings.Contains(err.Error(), c.msg) || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: %v, want %q", name, err, c.msg)
		}
	}
	m := creds(MXConnectToken{})
	handlertest.Provision(t, m)
	if m.source.Endpoint != "https://api.mxconnect.com/security/v1/apiKey/authenticate" || m.source.Client.Timeout != 5*time.Second || m.MaxBody != 1<<20 ||
		m.source.MinRefresh != 30*time.Second {
		t.Errorf("defaults: %+v", m.source)
	}
}

// TestMXConnectTokenReload: a configuration loaded while another with the
// same endpoint and credentials runs (a reload) takes its token source:
// its token, and the forced fetch min_refresh counts from, outlive the
// reload, and the new min_refresh applies to them. One that fails to load
// leaves the running one's settings. Other credentials get a source of
// their own; the last configuration to let go closes the source.
func TestMXConnectTokenReload(t *testing.T) {
	api := newSecurityAPI(t)
	old, _, clk := newToken(t, api.URL, &MXConnectToken{MinRefresh: caddy.Duration(time.Hour)})
	up := &upstream{refuse: map[string]bool{"tok-1": true, "tok-2": true}}
	serve := func(m *MXConnectToken) int {
		w, _ := handlertest.Serve(t, m, local(httptest.NewRequest("GET", "/accounts", nil)), up)
		return w.Code
	}
	if code := serve(old); code != 401 || api.issued.Load() != 2 {
		t.Fatalf("refused twice: %d, %d issued", code, api.issued.Load())
	}
	// a reload: the same credentials, min_refresh 1h still
	next := &MXConnectToken{MinRefresh: caddy.Duration(time.Hour)}
	next.Endpoint, next.Username, next.Password, next.APIKey = api.URL, "mx-user", "{env.MXGATE_TEST_MXC_PASSWORD}", "mx-api-k3y"
	handlertest.Provision(t, next)
	old.Cleanup()
	if next.source != old.source {
		t.Fatal("a reload with the same credentials made a new token source")
	}
	if code := serve(next); code != 401 || api.issued.Load() != 2 {
		t.Fatalf("after the reload, within min_refresh: %d, %d issued", code, api.issued.Load())
	}
	// a reload that fails to load after this one took the source: its
	// min_refresh of 1s does not stay
	failed := &MXConnectToken{MinRefresh: caddy.Duration(time.Second)}
	failed.Endpoint, failed.Username, failed.Password, failed.APIKey = next.Endpoint, next.Username, next.Password, next.APIKey
	handlertest.Provision(t, failed)
	failed.Cleanup()
	clk.Add(time.Minute)
	if code := serve(next); code != 401 || api.issued.Load() != 2 {
		t.Fatalf("after a failed reload, a minute on: %d, %d issued", code, api.issued.Load())
	}
	// a reload that shortens min_refresh to 30s: a minute after the last
	// forced fetch, a 401 fetches again
	shorter := &MXConnectToken{MinRefresh: caddy.Duration(30 * time.Second)}
	shorter.Endpoint, shorter.Username, shorter.Password, shorter.APIKey = next.Endpoint, next.Username, next.Password, next.APIKey
	handlertest.Provision(t, shorter)
	next.Cleanup()
	if code := serve(shorter); code != 200 || api.issued.Load() != 3 {
		t.Fatalf("with min_refresh shortened: %d, %d issued", code, api.issued.Load())
	}
	// other credentials (another endpoint) get a source of their own
	other := &MXConnectToken{}
	other.Endpoint, other.Username, other.Password, other.APIKey = api.URL+"/v2", next.Username, next.Password, next.APIKey
	handlertest.Provision(t, other)
	if other.source == shorter.source {
		t.Fatal("another endpoint shares the token source")
	}
	other.Cleanup()
	// the last to let go closes the source: no fetch after (its token
	// expired)
	shorter.Cleanup()
	clk.Add(11 * time.Minute)
	if _, err := shorter.source.Token(context.Background()); !errors.Is(err, mxconnect.ErrUnavailable) {
		t.Fatalf("a closed source answered %v", err)
	}
	if api.issued.Load() != 3 {
		t.Fatalf("%d issued", api.issued.Load())
	}
}

// TestMXConnectTokenShortLivedHint: tokens that live less than
// refresh_before (30 s, against 1m) are logged once, and renewed at half
// their lifetime, not per request.
func TestMXConnectTokenShortLivedHint(t *testing.T) {
	api := newSecurityAPI(t)
	m, logs, clk := newToken(t, api.URL, &MXConnectToken{})
	exp := func() time.Time { return clk.Now().Add(30 * time.Second) }
	api.expAt.Store(&exp)
	up := &upstream{}
	for range 30 {
		if w, _ := handlertest.Serve(t, m, local(httptest.NewRequest("GET", "/accounts", nil)), up); w.Code != 200 {
			t.Fatal(w.Code)
		}
		clk.Add(time.Second)
	}
	if n := api.issued.Load(); n > 3 { // at 0 and 15 s, one more if a renewal ends late
		t.Fatalf("%d tokens issued for 30 requests in 30 s of 30-second tokens", n)
	}
	if n := logs.FilterMessageSnippet("live less than refresh_before").Len(); n != 1 {
		t.Fatalf("the hint logged %d times", n)
	}
	assertNoSecrets(t, logs)
}
