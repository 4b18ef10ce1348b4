package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mxgate/mxgate/caddymodule/internal/readiness"
	"github.com/mxgate/mxgate/internal/testkit/handlertest"
	"github.com/mxgate/mxgate/internal/testkit/redistest"
)

// gateway is one gateway's configuration: an app with one handler of
// srv, on the Redis at url.
type gateway struct {
	app  *App
	b    *Binding[state]
	logs *observer.ObservedLogs
}

func startOn(t *testing.T, url string, srv *caddyhttp.Server, h caddyhttp.MiddlewareHandler, spec Spec, explicit string) (*gateway, error) {
	t.Helper()
	p, err := (&Config{Store: Redis, RedisURL: url, RedisTimeout: caddy.Duration(200 * time.Millisecond)}).Provision(newContext(t), spec.Directive)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Release)
	logger, logs := handlertest.Logs()
	g := &gateway{app: testApp(t), logs: logs}
	g.b = register(g.app, srv, logger, h, p, explicit, spec, new(counter).mk)
	return g, g.app.Start()
}

func ingressSite(host string) (*caddyhttp.Server, *handler) {
	h := &handler{host}
	return &caddyhttp.Server{Listen: []string{":443"}, Routes: caddyhttp.RouteList{route(hosts(host), sub(route(nil, h)))}}, h
}

func egressSite(sock, client string) (*caddyhttp.Server, *handler) {
	h := &handler{sock}
	return &caddyhttp.Server{Listen: []string{"unix/" + sock}, Routes: caddyhttp.RouteList{route(nil, &attach{"MX Platform API", client}, h)}}, h
}

// TestRegistry: a namespace is recorded in Redis by the first gateway to
// use it; a gateway whose directive disagrees (role; identity, unless both
// were given the namespace) refuses to start, naming both; other limits
// are a warning, and the record takes them; replicas agree.
func TestRegistry(t *testing.T) {
	srv := redistest.Start(t)
	url := srv.URL()
	client := redisClient(t, url)

	// the ingress, and a replica of it on another host
	isrv, ih := ingressSite("mdx.bank.example")
	ing, err := startOn(t, url, isrv, ih, rlSpec, "")
	if err != nil {
		t.Fatal(err)
	}
	ns := mustGet(t, ing.b).Namespace
	rec := client.HGetAll(context.Background(), "mxgate:ns:rl:"+ns).Val()
	if rec["directive"] != "mx_rate_limit" || rec["role"] != "ingress" || rec["named"] != "default" ||
		rec["protects"] != "site mdx.bank.example on port 443" || rec["limits"] != "get 10/s" || len(rec["identity"]) != 64 {
		t.Fatalf("record %v", rec)
	}
	isrv2, ih2 := ingressSite("mdx.bank.example")
	isrv2.Listen = []string{"10.1.2.3:443"}
	if _, err := startOn(t, url, isrv2, ih2, rlSpec, ""); err != nil {
		t.Fatalf("a replica: %v", err)
	}

	// an egress sidecar given the namespace the ingress has: refused
	esrv, eh := egressSite("/run/s.sock", "CLIENT-1")
	_, err = startOn(t, url, esrv, eh, rlSpec, ns)
	for _, want := range []string{`state namespace "` + ns + `"`, "mx_rate_limit (egress, MX Platform API client id #",
		"records it as the namespace of mx_rate_limit (ingress, site mdx.bank.example on port 443)", "give one of them its own `namespace`", "mxgate:ns:rl:" + ns} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("egress on the ingress's namespace: %v\nwant %q", err, want)
		}
	}
	if err != nil && strings.Contains(err.Error(), "CLIENT-1") {
		t.Errorf("the client id in the error: %v", err)
	}

	// another ingress site given that namespace: another identity, refused
	osrv, oh := ingressSite("other.bank.example")
	if _, err := startOn(t, url, osrv, oh, rlSpec, ns); err == nil || !strings.Contains(err.Error(), "site other.bank.example") {
		t.Errorf("another site on a default namespace: %v", err)
	}

	// a namespace given on purpose by two sites of one role: shared
	s1, h1 := ingressSite("one.example")
	if _, err := startOn(t, url, s1, h1, rlSpec, "fi-shared"); err != nil {
		t.Fatal(err)
	}
	s2, h2 := ingressSite("two.example")
	g2, err := startOn(t, url, s2, h2, rlSpec, "fi-shared")
	if err != nil {
		t.Fatalf("shared on purpose: %v", err)
	}
	if g2.logs.FilterMessage("state namespace shared on purpose with what another gateway recorded").Len() != 1 {
		t.Error("sharing on purpose was not logged")
	}
	// but not by an egress budget
	esrv2, eh2 := egressSite("/run/t.sock", "CLIENT-1")
	if _, err := startOn(t, url, esrv2, eh2, rlSpec, "fi-shared"); err == nil || !strings.Contains(err.Error(), "(egress") {
		t.Errorf("an egress budget on an ingress's given namespace: %v", err)
	}

	// other limits: a warning, and recorded
	faster := rlSpec
	faster.Limits = "get 50/s"
	isrv3, ih3 := ingressSite("mdx.bank.example")
	g3, err := startOn(t, url, isrv3, ih3, faster, "")
	if err != nil {
		t.Fatalf("other limits: %v", err)
	}
	if g3.logs.FilterLevelExact(zap.WarnLevel).Len() != 1 || client.HGet(context.Background(), "mxgate:ns:rl:"+ns, "limits").Val() != "get 50/s" {
		t.Error("other limits were not warned about or not recorded")
	}
}

// TestRegistryLater: a gateway that starts while Redis is unreachable
// starts, and records its namespace once Redis answers; a disagreement
// found then is logged as an error naming both.
func TestRegistryLater(t *testing.T) {
	fastRecords(t)
	// what is written survives the outage: the ingress's record
	srv := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	url := srv.URL()
	client := redisClient(t, url)

	isrv, ih := ingressSite("mdx.bank.example")
	ing, err := startOn(t, url, isrv, ih, rlSpec, "")
	if err != nil {
		t.Fatal(err)
	}
	ns := mustGet(t, ing.b).Namespace

	srv.Stop()
	esrv, eh := egressSite("/run/s.sock", "CLIENT-1")
	eg, err := startOn(t, url, esrv, eh, rlSpec, ns)
	if err != nil {
		t.Fatalf("a start with Redis down: %v", err)
	}
	s1, h1 := ingressSite("late.example")
	late, err := startOn(t, url, s1, h1, rlSpec, "")
	if err != nil {
		t.Fatal(err)
	}
	lateNS := mustGet(t, late.b).Namespace

	srv.Restart()
	deadline := time.Now().Add(10 * time.Second)
	for eg.logs.FilterMessageSnippet("state namespace disagrees with the shared store's record").Len() == 0 ||
		client.Exists(context.Background(), "mxgate:ns:rl:"+lateNS).Val() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the namespaces were never recorded or checked after the outage")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if late.logs.FilterLevelExact(zap.ErrorLevel).FilterMessageSnippet("disagrees").Len() != 0 {
		t.Error("an agreeing namespace was logged as a disagreement")
	}
}

// redisClient is a client of its own on url, closed when the test ends.
func redisClient(t *testing.T, url string) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// fastRecords makes running configurations record their namespaces again
// often, for the test.
func fastRecords(t *testing.T) {
	old := registerEvery
	registerEvery = 20 * time.Millisecond
	t.Cleanup(func() { registerEvery = old })
}

// waitFor polls cond until it holds, or fails the test.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRegistryRecordedAgain: a running gateway records its namespace
// again when Redis comes back empty, so a gateway that disagrees is still
// refused; a record that disagrees while it runs is an error in its log
// each time it is found and fails readiness, until the record agrees.
func TestRegistryRecordedAgain(t *testing.T) {
	fastRecords(t)
	srv := redistest.Start(t) // no persistence: a restart empties it
	url := srv.URL()
	client := redisClient(t, url)

	isrv, ih := ingressSite("mdx.bank.example")
	ing, err := startOn(t, url, isrv, ih, rlSpec, "")
	if err != nil {
		t.Fatal(err)
	}
	ns := mustGet(t, ing.b).Namespace
	key := "mxgate:ns:rl:" + ns
	srv.Stop()
	srv.Restart()
	waitFor(t, "the record made again after Redis restarted empty", func() bool {
		return client.HGet(context.Background(), key, "protects").Val() == "site mdx.bank.example on port 443"
	})
	esrv, eh := egressSite("/run/s.sock", "CLIENT-1")
	if _, err := startOn(t, url, esrv, eh, rlSpec, ns); err == nil || !strings.Contains(err.Error(), ns) {
		t.Fatalf("an egress budget on the ingress's namespace after the restart: %v", err)
	}

	// another gateway's record in its place (one that came first after a
	// restart): logged each time, readiness fails
	ctx := context.Background()
	client.Del(ctx, key)
	client.HSet(ctx, key, "directive", "mx_rate_limit", "role", "egress", "identity", strings.Repeat("0", 64),
		"protects", "MX Platform API client id #000000000000", "named", "given", "limits", "get 10/s")
	waitFor(t, "the disagreement logged twice", func() bool {
		return ing.logs.FilterMessageSnippet("state namespace disagrees with the shared store's record").Len() >= 2
	})
	failing := func() bool {
		for _, f := range readiness.Check(ctx) {
			if strings.Contains(f, "rl:"+ns) {
				return true
			}
		}
		return false
	}
	if !failing() {
		t.Fatalf("readiness does not report the disagreement: %v", readiness.Check(ctx))
	}
	// the other gateway's record is deleted: this one records its own, and is ready
	client.Del(ctx, key)
	waitFor(t, "ready again", func() bool { return !failing() })
	if client.HGet(ctx, key, "role").Val() != "ingress" {
		t.Fatalf("the record was not made again: %v", client.HGetAll(ctx, key).Val())
	}
	if ing.logs.FilterMessage("state namespace agrees with the shared store's record again").Len() != 1 {
		t.Error("the end of the disagreement was not logged")
	}
}

// TestRegistryRecordedOnOutageEnd: the records are made again as soon as
// the store is seen failing or answering again, not only at the next tick.
func TestRegistryRecordedOnOutageEnd(t *testing.T) {
	old := registerEvery
	registerEvery = time.Hour // no tick within the test
	t.Cleanup(func() { registerEvery = old })
	srv := redistest.Start(t)
	url := srv.URL()
	client := redisClient(t, url)
	isrv, ih := ingressSite("mdx.bank.example")
	ing, err := startOn(t, url, isrv, ih, rlSpec, "")
	if err != nil {
		t.Fatal(err)
	}
	ns := mustGet(t, ing.b).Namespace
	srv.Stop()
	srv.Restart()
	// a request sees the store fail (its connection was to the old
	// process), then answer
	h := ing.app.entries[0].store.Health
	h.Failed(errors.New("EOF"))
	h.Succeeded()
	waitFor(t, "the record made again at once", func() bool {
		return client.Exists(context.Background(), "mxgate:ns:rl:"+ns).Val() == 1
	})
}

// TestSharedStateNeedsAHost: in a shared Redis store, a site without host
// names cannot own state by a default name (every gateway serving such a
// site on those listeners would share it); with a namespace it can, and
// so can an egress budget (named by its MX client id) or a memory store.
// A site named by loopback names only is warned about.
func TestSharedStateNeedsAHost(t *testing.T) {
	srv := redistest.Start(t)
	url := srv.URL()
	hostless := func() (*caddyhttp.Server, *handler) {
		h := &handler{"hostless"}
		return &caddyhttp.Server{Listen: []string{"tcp-handover/10.0.0.1:8480"}, Routes: caddyhttp.RouteList{route(nil, h)}}, h
	}
	s, h := hostless()
	_, err := startOn(t, url, s, h, rlSpec, "")
	for _, want := range []string{"mx_rate_limit (ingress, site without host names on port 8480)", "names no host", "give the site a host name", "`namespace`"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("a hostless site's shared budget: %v\nwant %q", err, want)
		}
	}
	replay := Spec{Directive: "mdx_hmac", Kind: "replay", Options: []string{"resource", "", "base_path", ""}}
	s, h = hostless()
	if _, err := startOn(t, url, s, h, replay, ""); err == nil || !strings.Contains(err.Error(), "mdx_hmac (ingress, site without host names") {
		t.Errorf("a hostless site's shared replay cache: %v", err)
	}
	s, h = hostless()
	if _, err := startOn(t, url, s, h, rlSpec, "inst-a-mdx"); err != nil {
		t.Errorf("a hostless site with a namespace: %v", err)
	}
	es, eh := egressSite("/run/s.sock", "CLIENT-1")
	if _, err := startOn(t, url, es, eh, rlSpec, ""); err != nil {
		t.Errorf("an egress budget on a hostless socket: %v", err)
	}
	// a memory store is this process's alone
	a := testApp(t)
	s, h = hostless()
	add(t, a, new(counter), s, h, rlSpec, "")
	if err := a.Start(); err != nil {
		t.Errorf("a hostless site's memory budget: %v", err)
	}

	for hosts, warns := range map[string]bool{"127.0.0.1": true, "localhost": true, "::1": true, "mdx.bank.example": false, "10.1.2.3": false} {
		s, h := ingressSite(hosts)
		g, err := startOn(t, url, s, h, rlSpec, "")
		if err != nil {
			t.Fatalf("%s: %v", hosts, err)
		}
		if n := g.logs.FilterMessageSnippet("host names are all this machine's").Len(); (n == 1) != warns {
			t.Errorf("site %s: %d warnings about loopback names, want warned %v", hosts, n, warns)
		}
	}
}

// TestRegistryRecordedOnNewConnection: a Redis that restarted is reached
// through a new connection, often without a failed call (the pool drops a
// connection its server closed): the records are made again then.
func TestRegistryRecordedOnNewConnection(t *testing.T) {
	old := registerEvery
	registerEvery = time.Hour // no tick within the test
	t.Cleanup(func() { registerEvery = old })
	srv := redistest.Start(t)
	url := srv.URL()
	client := redisClient(t, url)
	isrv, ih := ingressSite("mdx.bank.example")
	ing, err := startOn(t, url, isrv, ih, rlSpec, "")
	if err != nil {
		t.Fatal(err)
	}
	ns := mustGet(t, ing.b).Namespace
	srv.Stop()
	srv.Restart()
	// a request's call, on the gateway's pooled client
	if err := ing.app.entries[0].store.Client.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("the first call after the restart failed (%v): this test wants one that succeeds on a new connection", err)
	}
	waitFor(t, "the record made again on the new connection", func() bool {
		return client.Exists(context.Background(), "mxgate:ns:rl:"+ns).Val() == 1
	})
}
