package mdx

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/redis/go-redis/v9"

	"github.com/mxgate/mxgate/caddymodule/internal/metrics"
	"github.com/mxgate/mxgate/caddymodule/internal/store"
	"github.com/mxgate/mxgate/hmac"
	"github.com/mxgate/mxgate/internal/testkit/handlertest"
	"github.com/mxgate/mxgate/internal/testkit/redistest"
)

// TestVerifySignedBeforeRewrite: the resource is the path as the caller
// sent it, before a rewrite in the site.
func TestVerifySignedBeforeRewrite(t *testing.T) {
	m, _ := newVerify(t, &Verify{})
	r := signed{body: session}.request(t)
	r.URL.Path = "/internal/mdx/create-session" // a rewrite after Caddy's server prepared the request
	if w, rec := serve(t, m, r); w.Code != 200 || rec.Calls != 1 {
		t.Fatalf("rewritten request: %d %s", w.Code, w.Body)
	}
}

// TestReplayCacheRoomAgain: once the entries of a full cache expire (on the
// handler's clock), requests are admitted again and the end of the episode
// is logged once.
func TestReplayCacheRoomAgain(t *testing.T) {
	now := testNow
	m, logs := newVerify(t, &Verify{ReplayWindow: caddy.Duration(10 * time.Minute), ReplayCacheSize: 1, Config: store.Config{Namespace: "room-again"}})
	m.now = func() time.Time { return now }
	req := func(sessionKey string) int {
		s := signed{body: session, session: sessionKey, date: hmac.FormatDate(now)}
		w, _ := serve(t, m, s.request(t))
		return w.Code
	}
	if c := req("a"); c != 200 {
		t.Fatalf("first: %d", c)
	}
	if c := req("b"); c != 503 {
		t.Fatalf("full cache: %d, want 503", c)
	}
	now = now.Add(11 * time.Minute)
	if c := req("c"); c != 200 {
		t.Fatalf("after the window: %d", c)
	}
	if c := req("c"); c != 412 {
		t.Fatalf("replay after the window: %d", c)
	}
	if n := logs.FilterMessage("replay cache has room again").Len(); n != 1 {
		t.Errorf("room again logged %d times", n)
	}
	if n := logs.FilterMessageSnippet("replay cache full").Len(); n != 1 {
		t.Errorf("full logged %d times", n)
	}
}

// TestVerifyRedisStore: with a Redis store, a signature is refused again
// however its first use was recorded; while Redis is down, on_store_error
// deny refuses with 503, local decides with this replica's cache, which
// still remembers what Redis saw.
func TestVerifyRedisStore(t *testing.T) {
	srv := redistest.Start(t)
	deny, _ := newVerify(t, &Verify{ReplayWindow: caddy.Duration(10 * time.Minute),
		Config: store.Config{Store: "redis", RedisURL: srv.URL(), OnStoreError: "deny", Namespace: "mdx-redis-deny"}})
	local, logs := newVerify(t, &Verify{ReplayWindow: caddy.Duration(10 * time.Minute),
		Config: store.Config{Store: "redis", RedisURL: srv.URL(), Namespace: "mdx-redis-local"}})

	first := signed{body: session, session: "seen-while-up"}
	for name, m := range map[string]*Verify{"deny": deny, "local": local} {
		if w, _ := serve(t, m, first.request(t)); w.Code != 200 {
			t.Fatalf("%s: first use: %d %s", name, w.Code, w.Body)
		}
		if w, _ := serve(t, m, first.request(t)); w.Code != 412 || !strings.Contains(w.Body.String(), "MDX-HMAC already used") {
			t.Fatalf("%s: replay: %d %s", name, w.Code, w.Body)
		}
	}

	srv.Stop()
	fresh := signed{body: session, session: "fresh-during-outage"}
	w, rec := serve(t, deny, fresh.request(t))
	if w.Code != 503 || rec.Calls != 0 || !strings.Contains(w.Body.String(), "replay store unreachable") {
		t.Errorf("deny during the outage: %d %s", w.Code, w.Body)
	}
	if w, _ := serve(t, local, fresh.request(t)); w.Code != 200 {
		t.Errorf("local during the outage: %d %s", w.Code, w.Body)
	}
	if w, _ := serve(t, local, first.request(t)); w.Code != 412 {
		t.Errorf("local during the outage admitted a replay seen while Redis was up: %d", w.Code)
	}
	if w, _ := serve(t, local, fresh.request(t)); w.Code != 412 {
		t.Errorf("local during the outage admitted a replay: %d", w.Code)
	}
	for _, e := range logs.All() {
		if strings.Contains(e.Message, "fresh-during-outage") || strings.Contains(e.Message, testKey) {
			t.Errorf("log reveals a secret: %s", e.Message)
		}
	}
}

// TestVerifyHandleErrors: with error_format handle_errors a refusal is a
// caddyhttp.HandlerError carrying the status, and nothing is written.
func TestVerifyHandleErrors(t *testing.T) {
	m, _ := newVerify(t, &Verify{Signing: Signing{ErrorFormat: "handle_errors"}})
	r := signed{body: session, noSig: true}.request(t)
	w := httptest.NewRecorder()
	err := m.ServeHTTP(w, r, &handlertest.Next{})
	var he caddyhttp.HandlerError
	if !errors.As(err, &he) || he.StatusCode != 412 || w.Body.Len() != 0 || he.Err.Error() != "MDX-HMAC header missing" {
		t.Errorf("%v, body %q", err, w.Body)
	}
}

// TestVerifyRedisLostData: a Redis flushed under a running handler is
// noticed and counted under the cache's namespace; a signature this
// replica recorded stays refused, and a new one is admitted once the
// grace has passed.
func TestVerifyRedisLostData(t *testing.T) {
	srv := redistest.Start(t)
	m, _ := newVerify(t, &Verify{ReplayWindow: caddy.Duration(10 * time.Minute), ReplayLossGrace: caddy.Duration(2 * time.Second),
		Config: store.Config{Store: "redis", RedisURL: srv.URL(), OnStoreError: "deny", Namespace: "mdx-lost"}})
	metric := func() float64 {
		return handlertest.MetricValue(t, metrics.StoreLost, map[string]string{"directive": "mdx_hmac", "namespace": "mdx-lost"})
	}
	base := metric() // the counter is the process's: what earlier runs counted
	lost := func() float64 { return metric() - base }
	first := signed{body: session, session: "before-the-loss"}
	if w, _ := serve(t, m, first.request(t)); w.Code != 200 {
		t.Fatalf("first use: %d %s", w.Code, w.Body)
	}
	if n := lost(); n != 0 {
		t.Fatalf("a loss counted before any: %v", n)
	}
	raw := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer raw.Close()
	if err := raw.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for lost() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the loss was never noticed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if w, _ := serve(t, m, first.request(t)); w.Code != 412 {
		t.Errorf("a replay after the loss: %d %s", w.Code, w.Body)
	}
	if w, rec := serve(t, m, signed{body: session, session: "after-the-loss"}.request(t)); w.Code != 200 || rec.Calls != 1 {
		t.Errorf("a new signature after the loss: %d %s", w.Code, w.Body)
	}
	if n := lost(); n != 1 {
		t.Errorf("store_data_lost_total %v, want 1", n)
	}
}
