package limit

import (
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/mxgate/mxgate/caddymodule/internal/store"
	"github.com/mxgate/mxgate/internal/testkit/handlertest"
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
		"bad methods":       {Methods: "some"},
	} {
		if name == "redis url, memory" {
			rl.RedisURL = "redis://127.0.0.1:1"
		}
		if err := handlertest.TryProvision(t, rl); err == nil {
			t.Errorf("%s: provisioned", name)
		}
	}
}

// TestMethodSpelling: no spelling of a method escapes its budget. By
// default anything but the seven standard methods, in capitals, is 501
// before it draws a token or reaches the next handler; with methods any,
// every spelling of a method draws on that method's budget.
func TestMethodSpelling(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	tight := func() map[string]*ClassLimit {
		return map[string]*ClassLimit{"get": {Rate: 1, Burst: 1}, "write": {Rate: 1, Burst: 1}, "delete": {Rate: 1, Burst: 1}}
	}
	t.Run("standard", func(t *testing.T) {
		rl := newLimit(t, &RateLimit{Config: store.Config{Namespace: "spelling-standard"}, Limits: tight(), ErrorFormat: "json"}, &now)
		for _, m := range []string{"get", "Get", "gEt", "head", "post", "Put", "patch", "delete", "Delete", "FOO", "TRACE", "CONNECT", "PROPFIND"} {
			r := handlertest.Request(httptest.NewRequest("GET", "/users", nil), "127.0.0.1")
			r.Method = m
			next := &handlertest.Next{}
			w, err := handlertest.Serve(t, rl, r, next)
			if err != nil {
				t.Fatal(err)
			}
			if w.Code != 501 || next.Calls != 0 || w.Header().Get("Allow") != allowStandard || w.Body.String() != `{"error":{"message":"Method not implemented"}}` {
				t.Errorf("%s: %d %v %q, reached next %d times", m, w.Code, w.Header(), w.Body, next.Calls)
			}
			if w.Header().Get("RateLimit-Limit") != "" {
				t.Errorf("%s: a refused spelling was counted against a budget", m)
			}
		}
		// the budgets are untouched by all that: one of each still passes
		for _, m := range []string{"GET", "POST", "DELETE", "OPTIONS"} {
			if c := take(t, rl, m); c != 200 {
				t.Errorf("%s after the misspellings: %d", m, c)
			}
		}
		if c := take(t, rl, "HEAD"); c != 429 {
			t.Errorf("HEAD shares GET's budget: %d", c)
		}
	})
	t.Run("any", func(t *testing.T) {
		rl := newLimit(t, &RateLimit{Config: store.Config{Namespace: "spelling-any"}, Methods: MethodsAny, Limits: tight()}, &now)
		for _, group := range [][]string{{"GET", "get", "Get", "gEt", "head"}, {"POST", "post", "Put", "pAtCh"}, {"DELETE", "delete", "Delete"}} {
			if c := take(t, rl, group[0]); c != 200 {
				t.Fatalf("%s: %d", group[0], c)
			}
			for _, m := range group[1:] {
				if c := take(t, rl, m); c != 429 {
					t.Errorf("%s escaped %s's budget: %d", m, group[0], c)
				}
			}
		}
		if c := take(t, rl, "FOO"); c != 200 {
			t.Errorf("an extension method with methods any: %d", c)
		}
	})
	t.Run("any, other limited", func(t *testing.T) {
		limits := tight()
		limits["other"] = &ClassLimit{Rate: 1, Burst: 1}
		rl := newLimit(t, &RateLimit{Config: store.Config{Namespace: "spelling-other"}, Methods: MethodsAny, Limits: limits}, &now)
		if c := take(t, rl, "FOO"); c != 200 {
			t.Fatalf("FOO: %d", c)
		}
		for _, m := range []string{"BAR", "OPTIONS", "options", "TRACE"} {
			if c := take(t, rl, m); c != 429 {
				t.Errorf("%s escaped the other budget: %d", m, c)
			}
		}
	})
}
