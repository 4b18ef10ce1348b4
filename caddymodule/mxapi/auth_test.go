package mxapi

import (
	"crypto/rand"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mxgate/mxgate/caddymodule/internal/metrics"
	"github.com/mxgate/mxgate/internal/testkit/handlertest"
	"github.com/mxgate/mxgate/secrethash"
)

// Cheap hashes (bcrypt cost 4, argon2id with 64 KiB) of the test secrets,
// made with golang.org/x/crypto as `mxgate hash-password` makes them.
const (
	bcryptHash   = "$2a$04$2eTtp6bJAA6ExDd4RLJCfO.tYgBxUimMARBQZZRAWsxDcZ8WFrCZ2"                                   // webhook-s3cret
	argon2idHash = "$argon2id$v=19$m=64,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZg$TzuLNS1YIdov3KFCdNLM0sIzvJApw42SHADLnNqD4/4" // other-s3cret
)

// userNext records {http.auth.user.id} as the next handler sees it.
type userNext struct {
	handlertest.Next
	user string
}

func (u *userNext) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	u.user = repl.ReplaceAll("{http.auth.user.id}", "")
	return u.Next.ServeHTTP(w, r)
}

func newCheck(t *testing.T, a *AuthCheck) (*AuthCheck, *observer.ObservedLogs) {
	t.Helper()
	handlertest.Provision(t, a)
	var logs *observer.ObservedLogs
	a.logger, logs = handlertest.Logs()
	return a, logs
}

func basic(id, secret string) *http.Request {
	r := local(httptest.NewRequest("POST", "/webhooks/mx", strings.NewReader(`{"event":"x"}`)))
	if id != "" || secret != "" {
		r.SetBasicAuth(id, secret)
	}
	return handlertest.Request(r, "198.51.100.7")
}

func TestAuthCheck(t *testing.T) {
	t.Setenv("MXGATE_TEST_WEBHOOK", "plain-s3cret\n")
	a, logs := newCheck(t, &AuthCheck{Clients: []AuthClient{
		{ID: "mx-webhooks", Secret: bcryptHash},
		{ID: "other", Secret: argon2idHash},
		{ID: "from-env", Secret: "{env.MXGATE_TEST_WEBHOOK}"},
	}})
	for _, c := range []struct{ id, secret string }{{"mx-webhooks", "webhook-s3cret"}, {"other", "other-s3cret"}, {"from-env", "plain-s3cret"}} {
		for range 2 { // the second time from the cache of verified credentials
			next := &userNext{}
			w, err := handlertest.Serve(t, a, basic(c.id, c.secret), next)
			if err != nil || w.Code != 200 || next.Calls != 1 || string(next.Got) != `{"event":"x"}` {
				t.Errorf("%s: %d %v", c.id, w.Code, err)
			}
			if next.user != c.id {
				t.Errorf("%s: {http.auth.user.id} = %q", c.id, next.user)
			}
		}
	}
	for name, r := range map[string]*http.Request{
		"no credentials":  basic("", ""),
		"wrong secret":    basic("mx-webhooks", "other-s3cret"),
		"unknown client":  basic("nobody", "webhook-s3cret"),
		"another's hash":  basic("other", "webhook-s3cret"),
		"bearer":          func() *http.Request { r := basic("", ""); r.Header.Set("Authorization", "Bearer x"); return r }(),
		"env secret, bad": basic("from-env", "plain-s3cret\n"),
	} {
		next := &userNext{}
		w, err := handlertest.Serve(t, a, r, next)
		if err != nil || w.Code != 401 || next.Calls != 0 {
			t.Errorf("%s: %d %v, next called %d times", name, w.Code, err, next.Calls)
		}
		if got := w.Header().Get("WWW-Authenticate"); got != `Basic realm="mxgate", charset="UTF-8"` {
			t.Errorf("%s: WWW-Authenticate %q", name, got)
		}
		if w.Body.String() != `{"error":{"message":"Unauthorized"}}` || w.Header().Get("Content-Type") != "application/json; charset=utf-8" {
			t.Errorf("%s: body %q", name, w.Body)
		}
	}
	reasons := map[string]int{}
	for _, e := range logs.FilterMessage("MX credentials refused").All() {
		if e.Level != zap.DebugLevel { // a flood of bad requests must not flood the logs
			t.Errorf("a refusal logged at %v, want debug", e.Level)
		}
		f := e.ContextMap()
		reasons[f["reason"].(string)]++
		if f["client_ip"] != "198.51.100.7" {
			t.Errorf("log fields %v", f)
		}
	}
	if reasons["credentials_missing"] != 2 || reasons["credentials_invalid"] != 4 {
		t.Errorf("reasons logged %v", reasons)
	}
	for _, e := range logs.All() {
		for _, v := range e.ContextMap() {
			if s, ok := v.(string); ok && strings.Contains(s, "s3cret") {
				t.Errorf("the log holds a secret: %v", e.ContextMap())
			}
		}
	}
}

func TestAuthCheck404AndRealm(t *testing.T) {
	a, _ := newCheck(t, &AuthCheck{Clients: []AuthClient{{ID: "mx", Secret: bcryptHash}}, Failure: 404, ErrorFormat: "text"})
	w, err := handlertest.Serve(t, a, basic("mx", "wrong"), &handlertest.Next{})
	if err != nil || w.Code != 404 || w.Body.String() != "Not Found\n" || w.Header().Get("WWW-Authenticate") != "" {
		t.Errorf("404: %d %v %q %v", w.Code, err, w.Body, w.Header())
	}
	realm, _ := newCheck(t, &AuthCheck{Clients: []AuthClient{{ID: "mx", Secret: bcryptHash}}, Realm: "webhooks", ErrorFormat: "handle_errors"})
	w = httptest.NewRecorder()
	err = realm.ServeHTTP(w, basic("", ""), &handlertest.Next{})
	var he caddyhttp.HandlerError
	if !errors.As(err, &he) || he.StatusCode != 401 || w.Header().Get("WWW-Authenticate") != `Basic realm="webhooks", charset="UTF-8"` {
		t.Errorf("handle_errors: %v %v", err, w.Header())
	}
}

func TestAuthCheckProvisionErrors(t *testing.T) {
	t.Setenv("MXGATE_TEST_EMPTY", "")
	for name, c := range map[string]struct {
		a   AuthCheck
		msg string
	}{
		"no clients":        {AuthCheck{}, "at least one client is required"},
		"failure 403":       {AuthCheck{Clients: []AuthClient{{ID: "a", Secret: bcryptHash}}, Failure: 403}, "failure must be 401 or 404, not 403"},
		"no slow-hash slot": {AuthCheck{Clients: []AuthClient{{ID: "a", Secret: bcryptHash}}, MaxSlowHashes: -1}, "max_slow_hashes must be at least 1"},
		"twice":             {AuthCheck{Clients: []AuthClient{{ID: "a", Secret: bcryptHash}, {ID: "a", Secret: argon2idHash}}}, "client a given twice"},
		"plain secret":      {AuthCheck{Clients: []AuthClient{{ID: "a", Secret: "hunter2"}}}, "a plain secret does not belong in the configuration"},
		"bad argon2id":      {AuthCheck{Clients: []AuthClient{{ID: "a", Secret: "$argon2id$hunter2"}}}, "the argon2id hash is malformed"},
		"unset env secret":  {AuthCheck{Clients: []AuthClient{{ID: "a", Secret: "{env.MXGATE_TEST_EMPTY}"}}}, "resolved to nothing"},
		"colon in id":       {AuthCheck{Clients: []AuthClient{{ID: "a:b", Secret: bcryptHash}}}, "the id must be non-empty and hold no ':'"},
		"empty id":          {AuthCheck{Clients: []AuthClient{{ID: "", Secret: bcryptHash}}}, "the id must be non-empty"},
		"bad format":        {AuthCheck{Clients: []AuthClient{{ID: "a", Secret: bcryptHash}}, ErrorFormat: "xml"}, "unknown error_format"},
	} {
		err := handlertest.TryProvision(t, &c.a)
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %v, want %q", name, err, c.msg)
		} else if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: the error reveals the secret: %v", name, err)
		}
	}
}

func TestAttachVersions(t *testing.T) {
	t.Setenv("MXGATE_TEST_CLIENT", "CLIENT-1234")
	t.Setenv("MXGATE_TEST_API_KEY", "API-KEY-4567")
	a := &AuthAttach{ClientID: "{env.MXGATE_TEST_CLIENT}", APIKey: "{env.MXGATE_TEST_API_KEY}", APIVersion: APIVersion20250224}
	handlertest.Provision(t, a)
	next := &handlertest.Next{}
	r := local(httptest.NewRequest("GET", "/users", nil))
	if _, err := handlertest.Serve(t, a, r, next); err != nil {
		t.Fatal(err)
	}
	h := next.Received
	if h.Get("Authorization") != "Basic Q0xJRU5ULTEyMzQ6QVBJLUtFWS00NTY3" || h.Get("Accept") != "application/json" || h.Get("Accept-Version") != "v20250224" {
		t.Errorf("v20250224: %v", h)
	}
	// the app's own Accept is kept
	r = local(httptest.NewRequest("GET", "/users", nil))
	r.Header.Set("Accept", "application/vnd.mx.api.v1+json")
	next = &handlertest.Next{}
	_, _ = handlertest.Serve(t, a, r, next)
	if next.Received.Get("Accept") != "application/vnd.mx.api.v1+json" {
		t.Errorf("the app's Accept was replaced: %v", next.Received)
	}
	v1 := &AuthAttach{ClientID: "c", APIKey: "k"}
	handlertest.Provision(t, v1)
	if v1.APIVersion != APIVersion20111101 {
		t.Errorf("default version %q", v1.APIVersion)
	}
}

// TestAttachAccept: the Accept that reaches MX, for what the app sent
// (nil: no Accept field; several values: several field lines), under
// each API version.
func TestAttachAccept(t *testing.T) {
	const v1, v2 = "application/vnd.mx.api.v1+json", "application/json"
	for _, c := range []struct {
		name   string
		sent   []string
		v1, v2 string // what MX gets under v20111101, v20250224; "=" the app's
	}{
		{"none", nil, v1, v2},
		{"empty", []string{""}, v1, v2},
		{"empty elements", []string{" , "}, v1, v2},
		{"any", []string{"*/*"}, v1, v2},
		{"application/*", []string{"application/*"}, v1, v2},
		{"json", []string{"application/json"}, v1, v2},
		{"json with charset", []string{"application/json; charset=utf-8"}, v1, v2},
		{"axios default (MX's Node SDK)", []string{"application/json, text/plain, */*"}, v1, v2},
		{"browser-like", []string{"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}, v1, v2},
		{"JSON weighted low", []string{"text/csv, application/json;q=0.1"}, v1, v2},
		{"several field lines", []string{"text/plain", "*/*;q=0.1"}, v1, v2},
		{"upper case", []string{"APPLICATION/JSON"}, v1, v2},
		{"MX v1 type", []string{v1}, "=", "="},
		{"MX v1 type weighted", []string{v1 + "; q=1"}, "=", "="},
		{"MX type in a list", []string{"application/json, " + v1 + ";q=0.5"}, "=", "="},
		{"MX type upper case", []string{"Application/VND.MX.API.V1+JSON"}, "=", "="},
		{"another MX type", []string{"application/vnd.mx.api.v2+json"}, "=", "="},
		{"html only", []string{"text/html"}, "=", "="},
		{"plain text only", []string{"text/plain"}, "=", "="},
		{"xml", []string{"application/xml, text/*"}, "=", "="},
		{"MDX's type", []string{"application/vnd.moneydesktop.mdx.v5+xml"}, "=", "="},
		{"JSON refused", []string{"application/json;q=0, */*"}, "=", "="},
		{"everything refused", []string{"*/*;q=0"}, "=", "="},
		{"malformed", []string{"json"}, "=", "="},
		{"malformed weight", []string{"application/json;q=2"}, "=", "="},
		{"malformed second line", []string{"application/json", "*/json"}, "=", "="},
		{"over 64 ranges", []string{strings.Repeat("application/json, ", 64) + "*/*"}, "=", "="},
	} {
		for _, version := range []string{APIVersion20111101, APIVersion20250224} {
			a := &AuthAttach{ClientID: "c", APIKey: "k", APIVersion: version}
			handlertest.Provision(t, a)
			r := local(httptest.NewRequest("GET", "/users", nil))
			for _, v := range c.sent {
				r.Header.Add("Accept", v)
			}
			next := &handlertest.Next{}
			if _, err := handlertest.Serve(t, a, r, next); err != nil {
				t.Fatal(err)
			}
			want, wantVersion := []string{c.v1}, ""
			if version == APIVersion20250224 {
				want, wantVersion = []string{c.v2}, "v20250224"
			}
			if want[0] == "=" {
				want = c.sent
			}
			if got := next.Received.Values("Accept"); strings.Join(got, "|") != strings.Join(want, "|") || len(got) != len(want) {
				t.Errorf("%s, %s: Accept %q, want %q", c.name, version, got, want)
			}
			if got := next.Received.Values("Accept-Version"); strings.Join(got, "") != wantVersion {
				t.Errorf("%s, %s: Accept-Version %q", c.name, version, got)
			}
		}
	}
}

func TestAttachProvisionErrors(t *testing.T) {
	t.Setenv("MXGATE_TEST_EMPTY", "")
	for name, c := range map[string]struct {
		a   AuthAttach
		msg string
	}{
		"no client id":  {AuthAttach{APIKey: "k"}, "client_id is empty"},
		"unset api key": {AuthAttach{ClientID: "c", APIKey: "{env.MXGATE_TEST_EMPTY}"}, "api_key is empty"},
		"colon":         {AuthAttach{ClientID: "c:d", APIKey: "hunter2"}, "client_id must not contain ':'"},
		"version":       {AuthAttach{ClientID: "c", APIKey: "hunter2", APIVersion: "v3"}, `api_version must be v20111101 or v20250224, not "v3"`},
	} {
		err := handlertest.TryProvision(t, &c.a)
		if err == nil || !strings.Contains(err.Error(), c.msg) || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: %v, want %q", name, err, c.msg)
		}
	}
}

// TestAttachKeyWithBraces: a key given through a placeholder may hold
// braces of its own.
func TestAttachKeyWithBraces(t *testing.T) {
	t.Setenv("MXGATE_TEST_API_KEY", "k{e}y}")
	a := &AuthAttach{ClientID: "c", APIKey: "{env.MXGATE_TEST_API_KEY}"}
	if err := handlertest.TryProvision(t, a); err != nil {
		t.Fatal(err)
	}
	r := local(httptest.NewRequest("GET", "/users", nil))
	_, _ = handlertest.Serve(t, a, r, &handlertest.Next{})
	if id, key, ok := r.BasicAuth(); !ok || id != "c" || key != "k{e}y}" {
		t.Errorf("credentials %q %q", id, key)
	}
}

// kindCounter wraps a client's slow comparer and counts its comparisons
// under the client's hash kind.
type kindCounter struct {
	inner caddyauth.Comparer
	kind  string
	n     map[string]int
	mu    *sync.Mutex
}

func (k kindCounter) Compare(hashed, plaintext []byte) (bool, error) {
	k.mu.Lock()
	k.n[k.kind]++
	k.mu.Unlock()
	return k.inner.Compare(hashed, plaintext)
}

// countKinds makes every slow comparison of a's clients counted by kind.
func countKinds(a *AuthCheck) map[string]int {
	n, mu := map[string]int{}, new(sync.Mutex)
	for _, c := range a.clients {
		if c.slow != nil {
			c.slow = kindCounter{inner: c.slow, kind: c.kind, n: n, mu: mu}
		}
	}
	return n
}

// TestDecoyIsTheSlowest: with clients of mixed hash kinds, an unknown id
// is compared against the kind whose comparison costs most, wherever that
// client stands in the list: among bcrypt hashes the highest cost, among
// argon2id the most memory times passes, between the two what measuring
// them told. The test tells which kind the decoy ran by counting, not by
// timing.
func TestDecoyIsTheSlowest(t *testing.T) {
	keyed := machineKey(t)
	bcrypt5 := "$2a$05$2eTtp6bJAA6ExDd4RLJCfO.tYgBxUimMARBQZZRAWsxDcZ8WFrCZ2"
	argonHeavy := "$argon2id$v=19$m=128,t=2,p=1$MDEyMzQ1Njc4OWFiY2RlZg$TzuLNS1YIdov3KFCdNLM0sIzvJApw42SHADLnNqD4/4"
	for _, tc := range []struct {
		name        string
		clients     []AuthClient
		argonSlow   bool   // what measuring says, when both kinds are there
		wantKind    string // compared for an unknown id
		wantHash    string
		wantMeasure int
	}{
		{"fast first, argon2id measured slower", []AuthClient{{"k", keyed}, {"b", bcryptHash}, {"a", argon2idHash}}, true, kindArgon2id, argon2idHash, 2},
		{"fast first, bcrypt measured slower", []AuthClient{{"k", keyed}, {"a", argon2idHash}, {"b", bcryptHash}}, false, kindBcrypt, bcryptHash, 2},
		{"slow kind last", []AuthClient{{"k", keyed}, {"p", "{env.MXGATE_TEST_DECOY}"}, {"b", bcryptHash}}, false, kindBcrypt, bcryptHash, 0},
		{"the higher bcrypt cost", []AuthClient{{"b4", bcryptHash}, {"b5", bcrypt5}, {"k", keyed}}, false, kindBcrypt, bcrypt5, 0},
		{"the heavier argon2id", []AuthClient{{"a1", argon2idHash}, {"a2", argonHeavy}}, false, kindArgon2id, argonHeavy, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("MXGATE_TEST_DECOY", "plain-s3cret")
			measured := 0
			a := &AuthCheck{Clients: tc.clients, measure: func(c *clientCred) time.Duration {
				measured++
				if (c.kind == kindArgon2id) == tc.argonSlow {
					return 100 * time.Millisecond
				}
				return time.Millisecond
			}}
			a, _ = newCheck(t, a)
			if a.decoy.kind != tc.wantKind || string(a.decoy.hashed) != tc.wantHash || measured != tc.wantMeasure {
				t.Fatalf("decoy %s %s after %d measurements, want %s %s after %d", a.decoy.kind, a.decoy.hashed, measured, tc.wantKind, tc.wantHash, tc.wantMeasure)
			}
			counts := countKinds(a)
			w, err := handlertest.Serve(t, a, basic("nobody", "webhook-s3cret"), &handlertest.Next{})
			if err != nil || w.Code != 401 {
				t.Fatalf("unknown id: %d %v", w.Code, err)
			}
			if len(counts) != 1 || counts[tc.wantKind] != 1 {
				t.Fatalf("an unknown id ran %v, want one %s comparison", counts, tc.wantKind)
			}
		})
	}
	// every kind fast: the first client is the decoy, and no slot is used
	a, _ := newCheck(t, &AuthCheck{Clients: []AuthClient{{"k", keyed}}, MaxSlowHashes: 1})
	a.slots <- struct{}{} // every slot taken: a fast check needs none
	if w, _ := handlertest.Serve(t, a, basic("nobody", "x"), &handlertest.Next{}); w.Code != 401 || a.decoy.kind != kindKeyed {
		t.Fatalf("fast kinds only: %d, decoy %s", w.Code, a.decoy.kind)
	}
}

// blockingComparer holds each comparison until release is closed.
type blockingComparer struct {
	entered chan struct{}
	release chan struct{}
}

func (b blockingComparer) Compare(hashed, plaintext []byte) (bool, error) {
	b.entered <- struct{}{}
	<-b.release
	return false, nil
}

// TestSlowHashCap: at most max_slow_hashes bcrypt or argon2id comparisons
// run at once; a request that needs another, for a known client or an
// unknown one, is answered 503 with Retry-After at once, compares
// nothing, and is counted; a secret verified before needs no slot.
func TestSlowHashCap(t *testing.T) {
	a, _ := newCheck(t, &AuthCheck{Clients: []AuthClient{{"mx", bcryptHash}, {"other", argon2idHash}}, MaxSlowHashes: 1})
	if w, _ := handlertest.Serve(t, a, basic("mx", "webhook-s3cret"), &handlertest.Next{}); w.Code != 200 {
		t.Fatalf("the right secret: %d", w.Code)
	}
	b := blockingComparer{entered: make(chan struct{}), release: make(chan struct{})}
	a.clients["other"].slow = b
	done := make(chan int)
	go func() {
		w := httptest.NewRecorder()
		_ = a.ServeHTTP(w, basic("other", "wrong"), &handlertest.Next{})
		done <- w.Code
	}()
	<-b.entered // the one slot is taken
	counts := countKinds(a)
	shed := handlertest.MetricValue(t, metrics.Shed, map[string]string{"where": "mx_auth"})
	for name, r := range map[string]*http.Request{
		"wrong secret": basic("mx", "wrong"),
		"unknown id":   basic("nobody", "wrong"),
	} {
		next := &handlertest.Next{}
		w, err := handlertest.Serve(t, a, r, next)
		if err != nil || w.Code != 503 || w.Header().Get("Retry-After") != "1" || next.Calls != 0 ||
			w.Body.String() != `{"error":{"message":"Service unavailable: too many credential checks in progress"}}` {
			t.Errorf("%s with every slot busy: %d %v Retry-After %q %s", name, w.Code, err, w.Header().Get("Retry-After"), w.Body)
		}
	}
	if len(counts) != 0 {
		t.Errorf("comparisons ran beyond the cap: %v", counts)
	}
	if got := handlertest.MetricValue(t, metrics.Shed, map[string]string{"where": "mx_auth"}) - shed; got != 2 {
		t.Errorf("mxgate_shed_total{where=\"mx_auth\"} grew by %v, want 2", got)
	}
	// verified before: an HMAC, no slot
	if w, _ := handlertest.Serve(t, a, basic("mx", "webhook-s3cret"), &handlertest.Next{}); w.Code != 200 {
		t.Errorf("a verified secret with every slot busy: %d", w.Code)
	}
	close(b.release)
	if code := <-done; code != 401 {
		t.Errorf("the held comparison: %d", code)
	}
	if w, _ := handlertest.Serve(t, a, basic("mx", "wrong"), &handlertest.Next{}); w.Code != 401 || counts[kindBcrypt] != 1 {
		t.Errorf("a slot free again: %d, %v", w.Code, counts)
	}
}

// machineKey is a stored hmac-sha256 hash of a random machine secret.
func machineKey(t *testing.T) string {
	t.Helper()
	h, err := secrethash.New([]byte("machine-s3cret-0123456789abcdef"), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}
