package limit

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/mxgate/mxgate/caddymodule/internal/metrics"
	"github.com/mxgate/mxgate/caddymodule/internal/store"
	"github.com/mxgate/mxgate/internal/testkit/handlertest"
	"github.com/mxgate/mxgate/internal/testkit/redistest"
)

// TestRedisStore: replicas on one Redis and namespace share one budget;
// while Redis is down, on_store_error deny refuses with 503 and Retry-After,
// local falls back on this replica's own buckets.
func TestRedisStore(t *testing.T) {
	srv := redistest.Start(t)
	now := time.Unix(1_700_000_000, 0)
	limits := map[string]*ClassLimit{"get": {Rate: 1.0 / 3600, Burst: 2}}
	replica := func(policy string) *RateLimit {
		return newLimit(t, &RateLimit{Limits: limits, ErrorFormat: "json",
			Config: store.Config{Store: "redis", RedisURL: srv.URL(), OnStoreError: policy, Namespace: "redis-shared"}}, &now)
	}
	a, b := replica("deny"), replica("local")
	if c := take(t, a, "GET"); c != 200 {
		t.Fatalf("a: %d", c)
	}
	if c := take(t, b, "GET"); c != 200 {
		t.Fatalf("b: %d", c)
	}
	if c := take(t, a, "GET"); c != 429 {
		t.Fatalf("the budget is not shared: a third request got %d", c)
	}

	srv.Stop()
	before := handlertest.MetricValue(t, metrics.Rejections, map[string]string{"directive": "mx_rate_limit", "reason": "store_unavailable"})
	w, err := handlertest.Serve(t, a, handlertest.Request(httptest.NewRequest("GET", "/users", nil), "127.0.0.1"), &handlertest.Next{})
	if err != nil || w.Code != 503 || w.Header().Get("Retry-After") != "1" || w.Body.String() != `{"error":{"message":"Service unavailable: rate limit store unreachable"}}` {
		t.Errorf("deny during the outage: %d %v %v %q", w.Code, err, w.Header(), w.Body)
	}
	if got := handlertest.MetricValue(t, metrics.Rejections, map[string]string{"directive": "mx_rate_limit", "reason": "store_unavailable"}); got != before+1 {
		t.Errorf("store_unavailable refusals %v, want %v", got, before+1)
	}
	// local: this replica's own bucket (burst 2), then 429
	for i, want := range []int{200, 200, 429} {
		if c := take(t, b, "GET"); c != want {
			t.Errorf("local during the outage, request %d: %d, want %d", i+1, c, want)
		}
	}
	if b.shared.Healthy() {
		t.Error("the store is reported healthy during the outage")
	}
}

// TestWaitClientGone: a client that leaves while it waits for a token gets
// 499 at once, and its token is given back.
func TestWaitClientGone(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	rl := newLimit(t, &RateLimit{Config: store.Config{Namespace: "wait-gone"}, Mode: "wait", MaxWait: caddy.Duration(90 * time.Second),
		Limits: map[string]*ClassLimit{"get": {Rate: 1.0 / 60, Burst: 1}}}, &now)
	if c := take(t, rl, "GET"); c != 200 {
		t.Fatalf("first: %d", c)
	}
	gone := func() error {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		r := handlertest.Request(httptest.NewRequest("GET", "/users", nil).WithContext(ctx), "127.0.0.1")
		_, err := handlertest.Serve(t, rl, r, &handlertest.Next{})
		return err
	}
	before := handlertest.MetricValue(t, metrics.RLAbandoned, map[string]string{"class": "get"})
	// Each would wait a minute: within max_wait only if the one before gave
	// its token back (two minutes are not). A handler that waited for a
	// client that had gone would hold the test for minutes: the deadline
	// below is a hang guard, not a measure.
	done := make(chan error, 3)
	go func() {
		for range 3 {
			done <- gone()
		}
	}()
	for i := range 3 {
		var err error
		select {
		case err = <-done:
		case <-time.After(time.Minute):
			t.Fatalf("abandoned wait %d: the handler waits for a client that has gone", i+1)
		}
		var he caddyhttp.HandlerError
		if !errors.As(err, &he) || he.StatusCode != 499 {
			t.Fatalf("abandoned wait %d: %v", i+1, err)
		}
	}
	if got := handlertest.MetricValue(t, metrics.RLAbandoned, map[string]string{"class": "get"}); got != before+3 {
		t.Errorf("abandoned %v, want %v", got, before+3)
	}
}

// TestKeyedBudgets: the key placeholder gives each client its own budget.
func TestKeyedBudgets(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	rl := newLimit(t, &RateLimit{Key: "{http.request.header.X-Client}", Limits: map[string]*ClassLimit{"write": {Rate: 1, Burst: 1}}}, &now)
	post := func(client string) int {
		r := httptest.NewRequest("POST", "/users", strings.NewReader("{}"))
		if client != "" {
			r.Header.Set("X-Client", client)
		}
		w, _ := handlertest.Serve(t, rl, handlertest.Request(r, "127.0.0.1"), &handlertest.Next{})
		return w.Code
	}
	for _, c := range []struct {
		client string
		want   int
	}{{"a", 200}, {"a", 429}, {"b", 200}, {"", 200}, {"", 429}} {
		if got := post(c.client); got != c.want {
			t.Errorf("client %q: %d, want %d", c.client, got, c.want)
		}
	}
	// no replacer (not served by Caddy's server): the empty key
	w, _ := handlertest.Serve(t, rl, httptest.NewRequest("PUT", "/users/1", nil), &handlertest.Next{})
	if w.Code != 429 {
		t.Errorf("no replacer: %d, want the empty key's 429", w.Code)
	}
}

func TestMoreProvisionErrors(t *testing.T) {
	for name, c := range map[string]struct {
		rl  RateLimit
		msg string
	}{
		"negative max_keys": {RateLimit{MaxKeys: -1}, "max_keys must be positive"},
		"negative max_wait": {RateLimit{Mode: "wait", MaxWait: -1}, "max_wait must be positive"},
		"nil limit":         {RateLimit{Limits: map[string]*ClassLimit{"get": nil}}, "get: empty limit"},
		"zero rate":         {RateLimit{Limits: map[string]*ClassLimit{"get": {}}}, ""},
		"bad store":         {RateLimit{Config: store.Config{Store: "disk"}}, `store must be memory or redis, not "disk"`},
		"ipv4_prefix 33":    {RateLimit{IPv4Prefix: 33}, "ipv4_prefix must be 1 to 32, not 33"},
		"ipv4_prefix -1":    {RateLimit{IPv4Prefix: -1}, "ipv4_prefix must be 1 to 32, not -1"},
		"ipv6_prefix 129":   {RateLimit{IPv6Prefix: 129}, "ipv6_prefix must be 1 to 128, not 129"},
	} {
		err := handlertest.TryProvision(t, &c.rl)
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %v, want %q", name, err, c.msg)
		}
	}
	// wait mode's default max_wait
	now := time.Now()
	rl := newLimit(t, &RateLimit{Mode: "wait", Config: store.Config{Namespace: "defaults"}}, &now)
	if rl.maxWait != DefaultMaxWait {
		t.Errorf("max_wait default %v", rl.maxWait)
	}
}

// TestUnlimitedClass: a class made unlimited admits every request without
// drawing on, or reporting, a budget.
func TestUnlimitedClass(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	rl := newLimit(t, &RateLimit{Config: store.Config{Namespace: "unlimited"}, Limits: map[string]*ClassLimit{"get": {Unlimited: true}, "delete": {Rate: 1}}}, &now)
	for i := range 50 {
		w, _ := handlertest.Serve(t, rl, handlertest.Request(httptest.NewRequest("GET", "/users", nil), "127.0.0.1"), &handlertest.Next{})
		if w.Code != 200 || w.Header().Get("RateLimit-Limit") != "" {
			t.Fatalf("GET %d: %d %v", i+1, w.Code, w.Header())
		}
	}
	if c := take(t, rl, "DELETE"); c != 200 {
		t.Fatalf("DELETE: %d", c)
	}
	if c := take(t, rl, "DELETE"); c != 429 {
		t.Fatalf("a second DELETE: %d", c)
	}
}

// TestKeyGroupsAddresses: a placeholder whose value is a client address
// stands for its group, by default the address for IPv4 and the /64 for
// IPv6, whatever its spelling; other values, and the key's own text, are
// left as they are.
func TestKeyGroupsAddresses(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	get := func(rl *RateLimit, client, header string) int {
		r := httptest.NewRequest("GET", "/users", nil)
		r.Header.Set("X-Client", header)
		w, err := handlertest.Serve(t, rl, handlertest.Request(r, client), &handlertest.Next{})
		if err != nil {
			t.Fatal(err)
		}
		return w.Code
	}
	type try struct {
		client, header string
		want           int
	}
	for name, c := range map[string]struct {
		rl    *RateLimit
		tries []try
	}{
		"client_ip": {&RateLimit{Key: "{http.vars.client_ip}"}, []try{
			{"2001:db8:1:2::1", "", 200},
			{"2001:db8:1:2:ffff:ffff:ffff:ffff", "", 429}, // the same /64
			{"2001:db8:1:3::1", "", 200},                  // the next /64
			{"192.0.2.1", "", 200},
			{"::ffff:192.0.2.1", "", 429}, // the same IPv4 address
			{"192.0.2.2", "", 200},
		}},
		"header_spellings": {&RateLimit{Key: "{http.request.header.X-Client}"}, []try{
			{"", "2001:db8::1", 200},
			{"", "2001:DB8:0:0::1", 429},
			{"", "2001:0db8:0000:0000:abcd::1%eth0", 429},
			{"", "[2001:db8::2]:443", 429},
			{"", "2001:db8::0.0.0.3", 429},
			{"", "198.51.100.7", 200},
			{"", "::ffff:198.51.100.7", 429},
			{"", "::FFFF:c633:6407", 429},
			{"", "[::ffff:198.51.100.7%lo]:80", 429},
			{"", "198.51.100.7:8080", 429},
			{"", "198.51.100.07", 200}, // not an address: a key of its own, like any text
		}},
		"composite_key": {&RateLimit{Key: "{http.vars.client_ip}/{http.request.header.X-Client}"}, []try{
			{"2001:db8::1", "tenant-a", 200},
			{"2001:db8::2", "tenant-a", 429},
			{"2001:db8::2", "tenant-b", 200},
		}},
		"prefixes_set": {&RateLimit{Key: "{http.vars.client_ip}", IPv4Prefix: 24, IPv6Prefix: 48}, []try{
			{"192.0.2.1", "", 200},
			{"192.0.2.200", "", 429},
			{"192.0.3.1", "", 200},
			{"2001:db8:1:2::1", "", 200},
			{"2001:db8:1:ffff::1", "", 429},
		}},
		"per_address": {&RateLimit{Key: "{http.vars.client_ip}", IPv6Prefix: 128}, []try{
			{"2001:db8::1", "", 200},
			{"2001:db8::2", "", 200},
			{"2001:db8::1%eth0", "", 429},
		}},
	} {
		t.Run(name, func(t *testing.T) {
			c.rl.Limits = map[string]*ClassLimit{"get": {Rate: 1.0 / 60, Burst: 1}}
			c.rl.Namespace = "groups-" + name
			rl := newLimit(t, c.rl, &now)
			for _, try := range c.tries {
				if got := get(rl, try.client, try.header); got != try.want {
					t.Errorf("client %q, X-Client %q: %d, want %d", try.client, try.header, got, try.want)
				}
			}
		})
	}
}

// TestOverflowCounted: past max_keys, with no full bucket to drop, new
// keys draw on one shared overflow budget, and each such request is
// counted; a throttled key keeps its budget.
func TestOverflowCounted(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	rl := newLimit(t, &RateLimit{Key: "{http.request.header.X-Client}", MaxKeys: 1, Config: store.Config{Namespace: "overflow-counted"},
		Limits: map[string]*ClassLimit{"delete": {Rate: 1.0 / 60, Burst: 1}}}, &now)
	del := func(client string) int {
		r := httptest.NewRequest("DELETE", "/users/1", nil)
		r.Header.Set("X-Client", client)
		w, _ := handlertest.Serve(t, rl, handlertest.Request(r, "127.0.0.1"), &handlertest.Next{})
		return w.Code
	}
	if del("victim") != 200 || del("victim") != 429 {
		t.Fatal("the victim's budget")
	}
	overflow := func() float64 {
		return handlertest.MetricValue(t, metrics.RLOverflow, map[string]string{"class": "delete"})
	}
	before := overflow()
	admitted := 0
	for i := range 500 {
		if del(fmt.Sprintf("fresh-%d", i)) == 200 {
			admitted++
		}
	}
	// max_keys 1 holds 64 keys (one a shard), the victim's among them;
	// the others share one budget of 1
	if admitted > 64 || overflow()-before < 500-63 {
		t.Fatalf("%d fresh keys admitted; %v overflowed", admitted, overflow()-before)
	}
	if c := del("victim"); c != 429 {
		t.Fatalf("the fresh keys reset the victim: %d", c)
	}
}
