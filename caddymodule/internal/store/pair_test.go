package store

import (
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/mxgate/mxgate/internal/testkit/redistest"
)

// TestFollows: the handler after another is known from the routes only
// where it runs for every request the first passes on.
func TestFollows(t *testing.T) {
	v, l := &handler{"verify"}, &handler{"limit"}
	other := &handler{"other"}
	terminal := route(nil, v)
	terminal.Terminal = true
	grouped := route(nil, l)
	grouped.Group = "g"
	for _, tc := range []struct {
		name   string
		routes caddyhttp.RouteList
		want   bool
	}{
		{"next route", caddyhttp.RouteList{route(hosts("a"), sub(route(nil, v), route(nil, l), route(nil, other)))}, true},
		{"next in one route", caddyhttp.RouteList{route(nil, other, v, l)}, true},
		{"top level", caddyhttp.RouteList{route(nil, v), route(nil, l)}, true},
		{"a matcher on the next route", caddyhttp.RouteList{route(nil, v), route(paths("/x"), l)}, false},
		{"a handler between", caddyhttp.RouteList{route(nil, v), route(nil, other), route(nil, l)}, false},
		{"a handler between in one route", caddyhttp.RouteList{route(nil, v, other, l)}, false},
		{"not last in its route", caddyhttp.RouteList{route(nil, v, other), route(nil, l)}, false},
		{"terminal", caddyhttp.RouteList{terminal, route(nil, l)}, false},
		{"a group on the next route", caddyhttp.RouteList{route(nil, v), grouped}, false},
		{"before, not after", caddyhttp.RouteList{route(nil, l), route(nil, v)}, false},
		{"another subroute", caddyhttp.RouteList{route(nil, sub(route(nil, v))), route(nil, sub(route(nil, l)))}, false},
		{"outside its subroute", caddyhttp.RouteList{route(nil, sub(route(nil, v))), route(nil, l)}, false},
	} {
		srv := &caddyhttp.Server{Listen: []string{":443"}, Routes: tc.routes}
		pv, ok1 := locate(srv, v)
		pl, ok2 := locate(srv, l)
		if !ok1 || !ok2 {
			t.Fatalf("%s: handlers not located", tc.name)
		}
		if got := follows(pv, v, pl, l); got != tc.want {
			t.Errorf("%s: follows %v, want %v", tc.name, got, tc.want)
		}
	}
	// Error routes are a part of their own.
	srv := &caddyhttp.Server{Listen: []string{":443"}, Routes: caddyhttp.RouteList{route(nil, v)},
		Errors: &caddyhttp.HTTPErrorConfig{Routes: caddyhttp.RouteList{route(nil, l)}}}
	pv, _ := locate(srv, v)
	pl, _ := locate(srv, l)
	if follows(pv, v, pl, l) {
		t.Error("an error route follows a route")
	}
}

var (
	verifySpec = Spec{Directive: "mdx_hmac", Kind: "replay", Options: []string{"resource", "", "base_path", ""}, Claims: true}
	limitSpec  = Spec{Directive: "mx_rate_limit", Kind: "rl", Options: []string{"key", ""}, Limits: "get 10/s", MayBeEgress: true, DecidesClaims: true}
)

// TestPair: mdx_hmac verify leaves its claims to the mx_rate_limit right
// after it only when both keep their state on one Redis client, and not a
// Cluster's.
func TestPair(t *testing.T) {
	srv := redistest.Start(t)
	other := redistest.Start(t)
	for _, tc := range []struct {
		name                 string
		verifyURL, limitURL  string
		verifyWait, limitTTL time.Duration
		want                 bool
	}{
		{"one Redis", srv.URL(), srv.URL(), 0, 0, true},
		{"two Redis", srv.URL(), other.URL(), 0, 0, false},
		{"another client (timeout)", srv.URL(), srv.URL(), 0, time.Second, false},
		{"memory budget", srv.URL(), "", 0, 0, false},
		{"memory replay cache", "", srv.URL(), 0, 0, false},
		{"cluster", "redis+cluster://" + srv.Addr(), "redis+cluster://" + srv.Addr(), 0, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, l := &handler{"verify"}, &handler{"limit"}
			s := &caddyhttp.Server{Listen: []string{":443"}, Routes: caddyhttp.RouteList{route(hosts("a"), sub(route(nil, v), route(nil, l)))}}
			a := testApp(t)
			c := new(counter)
			provision := func(url string, timeout time.Duration, directive string) *Provisioned {
				cfg := &Config{}
				if url != "" {
					cfg = &Config{Store: Redis, RedisURL: url, RedisTimeout: caddy.Duration(timeout)}
				}
				p, err := cfg.Provision(newContext(t), directive)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(p.Release)
				return p
			}
			bv := register(a, s, zap.NewNop(), v, provision(tc.verifyURL, tc.verifyWait, "mdx_hmac"), "", verifySpec, c.mk)
			bl := register(a, s, zap.NewNop(), l, provision(tc.limitURL, tc.limitTTL, "mx_rate_limit"), "", limitSpec, c.mk)
			if err := a.bindAll(); err != nil {
				t.Fatal(err)
			}
			sv, sl := mustGet(t, bv), mustGet(t, bl)
			if got := sv.ClaimsTo == l; got != tc.want {
				t.Errorf("claims left to the budget: %v, want %v (ClaimsTo %v)", got, tc.want, sv.ClaimsTo)
			}
			if sl.ClaimsTo != nil {
				t.Error("the budget leaves claims")
			}
		})
	}
}
