package limit

import (
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/mxgate/mxgate/caddymodule/internal/handlertest"
	"github.com/mxgate/mxgate/caddymodule/internal/store"
)

func newLimit(t *testing.T, rl *RateLimit, now *time.Time) *RateLimit {
	t.Helper()
	rl.now = func() time.Time { return *now }
	handlertest.Provision(t, rl)
	return rl
}

func take(t *testing.T, rl *RateLimit, method string) int {
	t.Helper()
	w, err := handlertest.Serve(t, rl, handlertest.Request(httptest.NewRequest(method, "/users", nil), "127.0.0.1"), &handlertest.Next{})
	if err != nil {
		t.Fatal(err)
	}
	return w.Code
}

// TestReloadKeepsBudget: a reload provisions the new configuration before
// the old one is cleaned up; the buckets live on, neither refilled nor
// forgotten, and the new configuration's limits apply to them.
func TestReloadKeepsBudget(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	old := newLimit(t, &RateLimit{Limits: map[string]*ClassLimit{"get": {Rate: 5}}}, &now)
	for i := range 5 {
		if c := take(t, old, "GET"); c != 200 {
			t.Fatalf("request %d: %d", i, c)
		}
	}
	if c := take(t, old, "GET"); c != 429 {
		t.Fatalf("over budget: %d", c)
	}
	// reload with a larger limit (the identity, the key, is unchanged)
	next := newLimit(t, &RateLimit{Limits: map[string]*ClassLimit{"get": {Rate: 50}}}, &now)
	if err := old.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if c := take(t, next, "GET"); c != 429 {
		t.Fatalf("the reload refilled the budget: %d", c)
	}
	now = now.Add(20 * time.Millisecond) // the new rate: a token every 20ms
	if c := take(t, next, "GET"); c != 200 {
		t.Fatalf("the new rate does not apply: %d", c)
	}
	// a directive about something else (another key) has its own budget
	other := newLimit(t, &RateLimit{Key: "{http.request.header.X-Client}", Limits: map[string]*ClassLimit{"get": {Rate: 5}}}, &now)
	if c := take(t, other, "GET"); c != 200 {
		t.Fatalf("another directive shares the budget: %d", c)
	}
}

// TestRateLimitAnswers: the headers and body of an admitted and a refused
// request, the classes, and an unlimited class.
func TestRateLimitAnswers(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	rl := newLimit(t, &RateLimit{Config: store.Config{Namespace: "answers"}, Limits: map[string]*ClassLimit{"delete": {Rate: 1, Burst: 1}}, ErrorFormat: "json"}, &now)
	r := handlertest.Request(httptest.NewRequest("DELETE", "/users/1", nil), "127.0.0.1")
	w, _ := handlertest.Serve(t, rl, r, &handlertest.Next{})
	if w.Code != 200 || w.Header().Get("RateLimit-Limit") != "1" || w.Header().Get("RateLimit-Remaining") != "0" {
		t.Fatalf("admitted: %d %v", w.Code, w.Header())
	}
	w, _ = handlertest.Serve(t, rl, handlertest.Request(httptest.NewRequest("DELETE", "/users/1", nil), "127.0.0.1"), &handlertest.Next{})
	if w.Code != 429 || w.Header().Get("Retry-After") != "1" || w.Body.String() != `{"error":{"message":"Too many requests"}}` {
		t.Fatalf("refused: %d %v %s", w.Code, w.Header(), w.Body)
	}
	if c := take(t, rl, "GET"); c != 200 {
		t.Fatalf("another class was charged: %d", c)
	}
	if c := take(t, rl, "OPTIONS"); c != 200 {
		t.Fatalf("the unlimited class was limited: %d", c)
	}
	if got := strconv.Itoa(DefaultMaxKeys); rl.MaxKeys != DefaultMaxKeys {
		t.Fatalf("max_keys default %d, want %s", rl.MaxKeys, got)
	}
}

// TestWaitMode: a request over budget is held until its token is due, if
// within max_wait, and refused at once otherwise.
func TestWaitMode(t *testing.T) {
	now := time.Now()
	rl := newLimit(t, &RateLimit{Config: store.Config{Namespace: "wait"}, Mode: "wait", MaxWait: caddy.Duration(50 * time.Millisecond),
		Limits: map[string]*ClassLimit{"get": {Rate: 40, Burst: 1}}}, &now)
	rl.now = time.Now
	if c := take(t, rl, "GET"); c != 200 {
		t.Fatalf("first: %d", c)
	}
	if c := take(t, rl, "GET"); c != 200 { // waits about 25ms
		t.Fatalf("held request: %d", c)
	}
	slow := newLimit(t, &RateLimit{Config: store.Config{Namespace: "wait-slow"}, Mode: "wait", MaxWait: caddy.Duration(10 * time.Millisecond),
		Limits: map[string]*ClassLimit{"get": {Rate: 1, Burst: 1}}}, &now)
	slow.now = time.Now
	take(t, slow, "GET")
	if c := take(t, slow, "GET"); c != 429 {
		t.Fatalf("a wait past max_wait: %d", c)
	}
}

func TestProvisionErrors(t *testing.T) {
	for name, rl := range map[string]*RateLimit{
		"bad mode":          {Mode: "later"},
		"max_wait, reject":  {MaxWait: caddy.Duration(time.Second)},
		"bad class":         {Limits: map[string]*ClassLimit{"patch": {Rate: 1}}},
		"unlimited rate":    {Limits: map[string]*ClassLimit{"get": {Rate: 1, Unlimited: true}}},
		"redis url, memory": {},
		"bad format":        {ErrorFormat: "html"},
	} {
		if name == "redis url, memory" {
			rl.RedisURL = "redis://127.0.0.1:1"
		}
		if err := handlertest.TryProvision(t, rl); err == nil {
			t.Errorf("%s: provisioned", name)
		}
	}
}
