package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/mxgate/mxgate/caddymodule/internal/metrics"
	"github.com/mxgate/mxgate/internal/testkit/freeport"
	"github.com/mxgate/mxgate/internal/testkit/handlertest"
	"github.com/mxgate/mxgate/internal/testkit/redistest"
)

// newContext returns a caddy.Context cancelled when the test ends.
func newContext(t *testing.T) caddy.Context {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	return ctx
}

func TestUnmarshalOption(t *testing.T) {
	var c Config
	for _, line := range []string{"store redis redis://{env.REDIS}/1", "on_store_error deny", "redis_timeout 1s", "namespace fi-prod"} {
		d := caddyfile.NewTestDispenser("dir {\n\t" + line + "\n}")
		d.Next()
		d.NextBlock(0)
		if ok, err := c.UnmarshalOption(d); !ok || err != nil {
			t.Fatalf("%s: %v %v", line, ok, err)
		}
	}
	want := Config{Store: Redis, RedisURL: "redis://{env.REDIS}/1", OnStoreError: OnErrorDeny, RedisTimeout: caddy.Duration(time.Second), Namespace: "fi-prod"}
	if c != want {
		t.Errorf("%+v, want %+v", c, want)
	}
	d := caddyfile.NewTestDispenser("dir {\n\tstore memory\n}")
	d.Next()
	d.NextBlock(0)
	if ok, err := c.UnmarshalOption(d); !ok || err != nil || c.Store != Memory {
		t.Errorf("store memory: %v %v %q", ok, err, c.Store)
	}

	for line, msg := range map[string]string{
		"store":                     "store takes `memory` or `redis <url>`",
		"store redis":               "store takes `memory` or `redis <url>`",
		"store memory redis://x":    "store takes `memory` or `redis <url>`",
		"store disk /var/x":         "store takes `memory` or `redis <url>`",
		"on_store_error ignore":     "on_store_error must be local or deny, not 'ignore'",
		"redis_timeout 0s":          "redis_timeout: invalid duration '0s'",
		"namespace":                 "wrong argument count",
		"store redis redis://a b c": "store takes",
	} {
		d := caddyfile.NewTestDispenser("dir {\n\t" + line + "\n}")
		d.Next()
		d.NextBlock(0)
		ok, err := new(Config).UnmarshalOption(d)
		if !ok || err == nil || !strings.Contains(err.Error(), msg) || !strings.Contains(err.Error(), "Testfile:2") {
			t.Errorf("%q: %v %v, want %q", line, ok, err, msg)
		}
	}
	d = caddyfile.NewTestDispenser("dir {\n\tkey value\n}")
	d.Next()
	d.NextBlock(0)
	if ok, err := new(Config).UnmarshalOption(d); ok || err != nil || d.Val() != "key" {
		t.Errorf("another option was taken: %v %v, left on %q", ok, err, d.Val())
	}
}

func TestProvisionMemory(t *testing.T) {
	c := Config{}
	p, err := c.Provision(newContext(t), "test_dir")
	if err != nil {
		t.Fatal(err)
	}
	p.bindNamespace("mem")
	if c.Store != Memory || p.Namespace != "mem" || c.Namespace != "" {
		t.Errorf("defaults: %+v %+v", c, p)
	}
	if p.Client != nil || p.Health != nil || !p.Healthy() {
		t.Errorf("a memory store has a client or can be unhealthy: %+v", p)
	}
	p.Release()
	(*Provisioned)(nil).Release() // a handler whose Provision failed early
}

func TestProvisionErrors(t *testing.T) {
	t.Setenv("MXGATE_STORE_URL_UNSET", "")
	const secret = "hunter2"
	for name, c := range map[string]struct {
		Config
		msg string
	}{
		"memory with url":     {Config{RedisURL: "redis://127.0.0.1:1"}, "need `store redis <url>`"},
		"memory with policy":  {Config{Store: Memory, OnStoreError: OnErrorDeny}, "need `store redis <url>`"},
		"memory with timeout": {Config{RedisTimeout: caddy.Duration(time.Second)}, "need `store redis <url>`"},
		"unknown store":       {Config{Store: "disk"}, `store must be memory or redis, not "disk"`},
		"bad policy":          {Config{Store: Redis, RedisURL: "redis://127.0.0.1:1", OnStoreError: "ignore"}, `on_store_error must be local or deny, not "ignore"`},
		"negative timeout":    {Config{Store: Redis, RedisURL: "redis://127.0.0.1:1", RedisTimeout: -1}, "redis_timeout must be positive"},
		"empty url":           {Config{Store: Redis, RedisURL: "{env.MXGATE_STORE_URL_UNSET}"}, "redis URL is empty"},
		"invalid url":         {Config{Store: Redis, RedisURL: "http://user:" + secret + "@cache:6379"}, "invalid Redis URL: unknown scheme"},
		"invalid port":        {Config{Store: Redis, RedisURL: "redis://user:" + secret + "@cache:port/x"}, "invalid Redis URL: host 1: the port"},
	} {
		_, err := c.Provision(newContext(t), "test_dir")
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %v, want %q", name, err, c.msg)
			continue
		}
		if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "cache") {
			t.Errorf("%s: the error echoes the URL: %v", name, err)
		}
	}
}

func storeUp(t *testing.T, directive, namespace string) float64 {
	return handlertest.MetricValue(t, metrics.StoreUp, map[string]string{"directive": directive, "namespace": namespace})
}

func storeErrors(t *testing.T, directive string) float64 {
	return handlertest.MetricValue(t, metrics.StoreErrors, map[string]string{"directive": directive})
}

// TestHealthEpisodes: an outage is logged once when it starts and once when
// it ends, however many calls fail or succeed meanwhile; the gauge follows
// the last call and every failure is counted.
func TestHealthEpisodes(t *testing.T) {
	srv := redistest.Start(t)
	c := Config{Store: Redis, RedisURL: srv.URL(), Namespace: "health-episodes"}
	p, err := c.Provision(newContext(t), "test_health")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Release)
	p.bindNamespace(c.Namespace)
	if c.OnStoreError != OnErrorLocal || !p.FailOpen || p.Client == nil || !p.Healthy() {
		t.Fatalf("defaults: %+v %+v", c, p)
	}
	if up := storeUp(t, "test_health", "health-episodes"); up != 1 {
		t.Fatalf("store_up %v after a successful ping", up)
	}
	logger, logs := handlertest.Logs()
	p.Health.logger = logger
	errsBefore := storeErrors(t, "test_health")

	srv.Stop()
	ctx := context.Background()
	for range 3 {
		err := p.Client.Ping(ctx).Err()
		if err == nil {
			t.Fatal("ping answered with the server stopped")
		}
		p.Health.Failed(err)
	}
	if p.Healthy() || storeUp(t, "test_health", "health-episodes") != 0 {
		t.Fatal("still healthy during the outage")
	}
	if got := storeErrors(t, "test_health") - errsBefore; got != 3 {
		t.Errorf("store_errors_total grew by %v, want 3", got)
	}
	down := logs.FilterMessage("shared store unreachable").All()
	if len(down) != 1 || logs.Len() != 1 {
		t.Fatalf("outage logged %d times (%d lines), want once", len(down), logs.Len())
	}
	if f := down[0].ContextMap(); !strings.Contains(fmt.Sprint(f["redis"]), srv.Addr()) || f["on_store_error"] != OnErrorLocal || f["error"] == "" {
		t.Errorf("outage log fields %v", f)
	}

	srv.Restart()
	for range 3 {
		if err := p.Client.Ping(ctx).Err(); err != nil {
			t.Fatalf("ping after the restart: %v", err)
		}
		p.Health.Succeeded()
	}
	if !p.Healthy() || storeUp(t, "test_health", "health-episodes") != 1 {
		t.Fatal("not healthy again once the store answers")
	}
	if n := logs.FilterMessage("shared store reachable again").Len(); n != 1 || logs.Len() != 2 {
		t.Errorf("recovery logged %d times (%d lines), want once", n, logs.Len())
	}

	// a second episode is logged again
	p.Health.Failed(errors.New("i/o timeout"))
	if n := logs.FilterMessage("shared store unreachable").Len(); n != 2 {
		t.Errorf("second outage logged %d times in all, want 2", n)
	}
}

// TestProvisionRedisDown: a Redis store that does not answer at start-up
// does not stop the configuration loading; it starts unhealthy, and the
// address it reports holds no credentials.
func TestProvisionRedisDown(t *testing.T) {
	port, err := freeport.Get()
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	c := Config{Store: Redis, RedisURL: "redis://app:hunter2@" + addr + "/0", OnStoreError: OnErrorDeny, RedisTimeout: caddy.Duration(100 * time.Millisecond), Namespace: "redis-down"}
	p, err := c.Provision(newContext(t), "test_down")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Release)
	p.bindNamespace(c.Namespace)
	if p.Healthy() || p.FailOpen || storeUp(t, "test_down", "redis-down") != 0 {
		t.Errorf("a store down at start-up: healthy %v, fail open %v", p.Healthy(), p.FailOpen)
	}
	if !strings.Contains(p.Health.addr, addr) || strings.Contains(p.Health.addr, "hunter2") || strings.Contains(p.Health.addr, "app") {
		t.Errorf("log address %q (want %q without credentials)", p.Health.addr, addr)
	}
}

// TestRedisClientsPooled: directives on the same Redis share one client,
// closed when the last lets go.
func TestRedisClientsPooled(t *testing.T) {
	srv := redistest.Start(t)
	ctx := newContext(t)
	a, err := (&Config{Store: Redis, RedisURL: srv.URL(), Namespace: "pool-a"}).Provision(ctx, "test_pool")
	if err != nil {
		t.Fatal(err)
	}
	b, err := (&Config{Store: Redis, RedisURL: srv.URL(), Namespace: "pool-b"}).Provision(ctx, "test_pool")
	if err != nil {
		t.Fatal(err)
	}
	other, err := (&Config{Store: Redis, RedisURL: srv.URL(), RedisTimeout: caddy.Duration(time.Second), Namespace: "pool-c"}).Provision(ctx, "test_pool")
	if err != nil {
		t.Fatal(err)
	}
	if a.Client != b.Client || a.Client == other.Client {
		t.Fatal("clients are not shared by URL and timeout")
	}
	a.Release()
	if err := b.Client.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("the client was closed while still in use: %v", err)
	}
	b.Release()
	if err := b.Client.Ping(context.Background()).Err(); err == nil {
		t.Error("the client outlived its last user")
	}
	other.Release()
}

type cache struct{ name string }

func TestStateOutlivesAConfiguration(t *testing.T) {
	made, destroyed := 0, 0
	mk := func() (*cache, func(), error) {
		made++
		return &cache{name: "c" + strconv.Itoa(made)}, func() { destroyed++ }, nil
	}
	// the old configuration
	old, releaseOld, err := State("test:state", mk)
	if err != nil {
		t.Fatal(err)
	}
	// the new configuration, provisioned before the old one is cleaned up
	next, releaseNext, err := State("test:state", mk)
	if err != nil || next != old || made != 1 {
		t.Fatalf("the new configuration got other state: %v %v, made %d", next, err, made)
	}
	releaseOld()
	if destroyed != 0 {
		t.Fatal("the state died while a configuration still used it")
	}
	again, releaseAgain, _ := State("test:state", mk)
	if again != old {
		t.Fatal("the state was not kept across the reload")
	}
	releaseAgain()
	releaseNext()
	if destroyed != 1 {
		t.Fatalf("destroyed %d times once no configuration uses it, want 1", destroyed)
	}
	fresh, releaseFresh, _ := State("test:state", mk)
	if fresh == old || made != 2 {
		t.Fatal("state outlived every configuration")
	}
	releaseFresh()
}

func TestStateKindAndErrors(t *testing.T) {
	destroyed := 0
	_, release, err := State("test:kind", func() (*cache, func(), error) { return &cache{}, func() { destroyed++ }, nil })
	if err != nil {
		t.Fatal(err)
	}
	_, rel, err := State("test:kind", func() (int, func(), error) { return 1, nil, nil })
	if err == nil || rel != nil || !strings.Contains(err.Error(), `state "test:kind" is held by another kind of directive`) {
		t.Fatalf("another kind: %v", err)
	}
	release()
	if destroyed != 1 {
		t.Errorf("the refused lookup kept a reference: destroyed %d", destroyed)
	}

	boom := errors.New("boom")
	if _, rel, err := State("test:err", func() (*cache, func(), error) { return nil, nil, boom }); !errors.Is(err, boom) || rel != nil {
		t.Errorf("mk's error: %v", err)
	}
	// nothing was kept: the next lookup makes the value, without destruct
	v, rel, err := State("test:err", func() (*cache, func(), error) { return &cache{name: "ok"}, nil, nil })
	if err != nil || v.name != "ok" {
		t.Fatalf("after an error: %v %v", v, err)
	}
	rel()
}

// TestHealthDataLost: a loss of the store's data is counted (from 0, a
// series that exists as soon as the store is named) and logged as an
// error each time; a store that cannot be watched is logged once.
func TestHealthDataLost(t *testing.T) {
	h := newHealth(zap.NewNop(), "test_lost", "lost-ns", "127.0.0.1:6379", OnErrorDeny)
	logger, logs := handlertest.Logs()
	h.logger = logger
	lost := func() float64 {
		return handlertest.MetricValue(t, metrics.StoreLost, map[string]string{"directive": "test_lost", "namespace": "lost-ns"})
	}
	if n := lost(); n != 0 {
		t.Fatalf("store_data_lost_total starts at %v", n)
	}
	h.LostData(3 * time.Second)
	h.WroteBack(12)
	h.LostData(3 * time.Second)
	if n := lost(); n != 2 {
		t.Errorf("store_data_lost_total %v, want 2", n)
	}
	errs := logs.FilterMessageSnippet("the shared replay cache lost its data").All()
	if len(errs) != 2 || errs[0].Level != zap.ErrorLevel {
		t.Fatalf("loss logged %d times, want 2 errors: %v", len(errs), errs)
	}
	if f := errs[0].ContextMap(); f["namespace"] != "lost-ns" || f["redis"] != "127.0.0.1:6379" || f["replay_loss_grace"] != 3*time.Second {
		t.Errorf("loss log fields %v", f)
	}
	if n := logs.FilterMessageSnippet("wrote back to the shared store").Len(); n != 1 {
		t.Errorf("write-back logged %d times", n)
	}
	h.CannotWatch(errors.New("NOPERM no blpop"))
	h.CannotWatch(errors.New("NOPERM no blpop"))
	if n := logs.FilterMessageSnippet("refuses BLPOP").Len(); n != 1 {
		t.Errorf("a store that cannot be watched logged %d times, want once", n)
	}
}
