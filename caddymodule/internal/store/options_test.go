package store

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/mxgate/mxgate/caddymodule/internal/readiness"
	"github.com/mxgate/mxgate/internal/testkit/redistest"
)

// TestRedisTLSAndWaitOptions: the redis_tls block and redis_wait_replicas
// are read, bad forms refused with the file's line.
func TestRedisTLSAndWaitOptions(t *testing.T) {
	var c Config
	d := caddyfile.NewTestDispenser("dir {\n\tredis_tls {\n\t\tca /ca.pem\n\t\tcert /c.pem /k.pem\n\t\tserver_name redis.internal\n\t}\n\tredis_wait_replicas 2\n}")
	d.Next()
	for d.NextBlock(0) {
		if ok, err := c.UnmarshalOption(d); !ok || err != nil {
			t.Fatalf("%s: %v %v", d.Val(), ok, err)
		}
	}
	if c.RedisTLS == nil || *c.RedisTLS != (RedisTLS{CAFile: "/ca.pem", CertFile: "/c.pem", KeyFile: "/k.pem", ServerName: "redis.internal"}) ||
		c.RedisWaitReplicas == nil || *c.RedisWaitReplicas != 2 {
		t.Fatalf("%+v %v", c.RedisTLS, c.RedisWaitReplicas)
	}
	for _, bad := range []string{
		"redis_tls x", "redis_tls {\n\t\tcert /c.pem\n\t}", "redis_tls {\n\t\tca\n\t}", "redis_tls {\n\t\tpin x\n\t}",
		"redis_wait_replicas", "redis_wait_replicas -1", "redis_wait_replicas many",
	} {
		var c Config
		d := caddyfile.NewTestDispenser("dir {\n\t" + bad + "\n}")
		d.Next()
		d.NextBlock(0)
		if ok, err := c.UnmarshalOption(d); !ok || err == nil {
			t.Errorf("%q: %v %v", bad, ok, err)
		}
	}
}

// TestWaitDefaultsBySentinel: a Sentinel URL waits for one replica by
// default, another URL for none, and an explicit value wins.
func TestWaitDefaultsBySentinel(t *testing.T) {
	srv := redistest.Start(t)
	zero := 0
	for _, c := range []struct {
		cfg  Config
		want int
	}{
		{Config{Store: Redis, RedisURL: srv.URL(), Namespace: "w1"}, 0},
		{Config{Store: Redis, RedisURL: "redis+sentinel://127.0.0.1:1/mymaster", Namespace: "w2"}, 1},
		{Config{Store: Redis, RedisURL: "redis+sentinel://127.0.0.1:1/mymaster", Namespace: "w3", RedisWaitReplicas: &zero}, 0},
	} {
		p, err := c.cfg.Provision(newContext(t), "test_wait")
		if err != nil {
			t.Fatal(err)
		}
		if p.Wait != c.want {
			t.Errorf("%s: wait %d, want %d", c.cfg.RedisURL, p.Wait, c.want)
		}
		p.Release()
		p.Release() // a second release is harmless
	}
	mem := Config{RedisTLS: &RedisTLS{CAFile: "/x"}}
	if _, err := mem.Provision(newContext(t), "test_wait"); err == nil || !strings.Contains(err.Error(), "redis_tls") {
		t.Fatalf("redis_tls with a memory store: %v", err)
	}
}

// TestStoreIsADependency: a Redis store is checked by readiness while its
// directive is loaded, and no longer once released.
func TestStoreIsADependency(t *testing.T) {
	srv := redistest.Start(t)
	c := Config{Store: Redis, RedisURL: srv.URL(), Namespace: "dep"}
	p, err := c.Provision(newContext(t), "test_dep")
	if err != nil {
		t.Fatal(err)
	}
	if failed := readiness.Check(t.Context()); len(failed) != 0 {
		t.Fatalf("a dependency before the state is named: %v", failed)
	}
	p.bindNamespace(c.Namespace)
	if failed := readiness.Check(t.Context()); len(failed) != 0 {
		t.Fatalf("Redis up: %v", failed)
	}
	srv.Stop()
	failed := readiness.Check(t.Context())
	if len(failed) != 1 || !strings.Contains(failed[0], "test_dep store (namespace dep)") || strings.Contains(failed[0], srv.Addr()) {
		t.Fatalf("Redis down: %v", failed)
	}
	p.Health.WroteBack(3)
	p.Release()
	if failed := readiness.Check(t.Context()); len(failed) != 0 {
		t.Fatalf("after release: %v", failed)
	}
}

// TestNamespaceCharacters: a namespace is one part of Redis keys and of
// ACL key patterns; the separator ':', ACL wildcards, white space and
// control characters are refused, in the Caddyfile and in JSON.
func TestNamespaceCharacters(t *testing.T) {
	for _, good := range []string{"bank-a-mdx-prod", "fi_prod.v2", "0123abcdef-1", "é"} {
		if err := CheckNamespace(good); err != nil {
			t.Errorf("%q: %v", good, err)
		}
		var c Config
		d := caddyfile.NewTestDispenser("dir {\n\tnamespace " + good + "\n}")
		d.Next()
		d.NextBlock(0)
		if ok, err := c.UnmarshalOption(d); !ok || err != nil || c.Namespace != good {
			t.Errorf("%q: %v %v %q", good, ok, err, c.Namespace)
		}
	}
	for _, bad := range []string{"bank-a:get", "a:", ":", "bank*", "b?", "b[1]", `b\c`, "a b", "a\tb", "a\x00b", "a\x7fb", "a\u00a0b", "a\u2028b"} {
		if err := CheckNamespace(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
		c := Config{Namespace: bad}
		if _, err := c.Provision(newContext(t), "test_ns"); err == nil || !strings.Contains(err.Error(), "must not hold") {
			t.Errorf("JSON namespace %q: %v", bad, err)
		}
		if strings.ContainsAny(bad, " \t\x00\x7f\u00a0\u2028") {
			continue // not one Caddyfile token
		}
		var cc Config
		d := caddyfile.NewTestDispenser("dir {\n\tnamespace " + bad + "\n}")
		d.Next()
		d.NextBlock(0)
		if ok, err := cc.UnmarshalOption(d); !ok || err == nil {
			t.Errorf("Caddyfile namespace %q: %v %v", bad, ok, err)
		}
	}
}
