package store_test

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"

	"github.com/mxgate/mxgate/caddymodule/fdxauth"
	"github.com/mxgate/mxgate/caddymodule/internal/store"
	"github.com/mxgate/mxgate/caddymodule/limit"
	"github.com/mxgate/mxgate/caddymodule/mdx"
	"github.com/mxgate/mxgate/internal/testkit/handlertest"
	"github.com/mxgate/mxgate/internal/testkit/redistest"
)

// connections is how many connections srv has accepted so far.
func connections(t *testing.T, c *redis.Client) int {
	t.Helper()
	info, err := c.Info(context.Background(), "stats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "total_connections_received:"); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no total_connections_received in %q", info)
	return 0
}

// TestBadConfigurationTakesNothing: a configuration whose options
// disagree fails in Validate, which Provision runs first: no Redis client
// is pooled, no state is kept across reloads, and the Redis it names
// hears nothing. The same configuration made right takes them, which
// shows the counts can move.
func TestBadConfigurationTakesNothing(t *testing.T) {
	srv := redistest.Start(t)
	watch := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { watch.Close() })
	url := srv.URL()
	for _, c := range []struct {
		name      string
		module    func() caddy.Module
		bad, good string // JSON; %URL% is the Redis
		wantErr   string
	}{
		{"fdx_auth: introspection_auth tls_client_auth without tls_client_auth, after a DPoP jti cache on Redis",
			func() caddy.Module { return new(fdxauth.FDXAuth) },
			`{"issuer":"https://as.example","audiences":["https://rs.example"],"dpop":"allowed","store":"redis","redis_url":"%URL%",
			  "introspection":{"url":"https://as.example/introspect","client_id":"rs","auth":"tls_client_auth"}}`,
			`{"issuer":"https://as.example","audiences":["https://rs.example"],"dpop":"allowed","store":"redis","redis_url":"%URL%"}`,
			"introspection_auth tls_client_auth needs tls_client_auth"},
		{"fdx_auth: a client secret beside private_key_jwt",
			func() caddy.Module { return new(fdxauth.FDXAuth) },
			`{"issuer":"https://as.example","audiences":["https://rs.example"],"dpop":"required","store":"redis","redis_url":"%URL%",
			  "introspection":{"url":"https://as.example/introspect","client_id":"rs","client_secret":"s3cret","auth":"private_key_jwt","key_file":"/nonexistent"}}`,
			`{"issuer":"https://as.example","audiences":["https://rs.example"],"dpop":"required","store":"redis","redis_url":"%URL%"}`,
			"uses no client secret"},
		{"mdx_hmac verify: replay_loss_grace below its floor",
			func() caddy.Module { return new(mdx.Verify) },
			`{"keys":["QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo3ODkwMTI="],"replay_window":600000000000,"store":"redis","redis_url":"%URL%","replay_loss_grace":1000000000}`,
			`{"keys":["QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo3ODkwMTI="],"replay_window":600000000000,"store":"redis","redis_url":"%URL%","replay_loss_grace":3000000000}`,
			"replay_loss_grace must be at least"},
		{"mx_rate_limit: max_wait without mode wait",
			func() caddy.Module { return new(limit.RateLimit) },
			`{"store":"redis","redis_url":"%URL%","max_wait":1000000000}`,
			`{"store":"redis","redis_url":"%URL%","mode":"wait","max_wait":1000000000}`,
			"max_wait applies only to mode wait"},
		{"mx_rate_limit: on_store_error of a memory store",
			func() caddy.Module { return new(limit.RateLimit) },
			`{"on_store_error":"deny"}`,
			`{"store":"redis","redis_url":"%URL%","on_store_error":"deny"}`,
			"need `store redis <url>`"},
	} {
		t.Run(c.name, func(t *testing.T) {
			load := func(raw string) caddy.Module {
				m := c.module()
				if err := json.Unmarshal([]byte(strings.ReplaceAll(raw, "%URL%", url)), m); err != nil {
					t.Fatal(err)
				}
				return m
			}
			clients, kept := store.Taken()
			conns := connections(t, watch)
			err := handlertest.TryProvision(t, load(c.bad)) // Cleanup only when the test ends
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("error %v, want one saying %q", err, c.wantErr)
			}
			if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), url) {
				t.Errorf("the error reveals a secret or the URL: %v", err)
			}
			if c2, k2 := store.Taken(); c2 != clients || k2 != kept {
				t.Errorf("a bad configuration took %d Redis clients and %d kept states", c2-clients, k2-kept)
			}
			if n := connections(t, watch); n != conns {
				t.Errorf("a bad configuration made %d connections to its Redis", n-conns)
			}

			handlertest.Provision(t, load(c.good))
			if c2, k2 := store.Taken(); c2 <= clients && k2 <= kept {
				t.Errorf("the good configuration took nothing either: the counts cannot tell (clients %d, kept %d)", c2-clients, k2-kept)
			}
		})
	}
}
