package store

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// testApp is an App as a configuration provisions it.
func testApp(t *testing.T) *App {
	a := &App{logger: zap.NewNop(), stop: make(chan struct{})}
	t.Cleanup(a.halt)
	return a
}

// state is a fake state: the naming it was bound with.
type state struct{ Naming }

// counter counts the states made.
type counter struct{ made, released atomic.Int64 }

func (c *counter) mk(n Naming) (*state, func(), error) {
	c.made.Add(1)
	return &state{n}, func() { c.released.Add(1) }, nil
}

var rlSpec = Spec{Directive: "mx_rate_limit", Kind: "rl", Options: []string{"key", ""}, Limits: "get 10/s", MayBeEgress: true}

// add registers h of srv in a, with a memory store.
func add(t *testing.T, a *App, c *counter, srv *caddyhttp.Server, h caddyhttp.MiddlewareHandler, spec Spec, explicit string) *Binding[state] {
	t.Helper()
	p, err := new(Config).Provision(newContext(t), spec.Directive)
	if err != nil {
		t.Fatal(err)
	}
	return register(a, srv, zap.NewNop(), h, p, explicit, spec, c.mk)
}

func mustGet(t *testing.T, b *Binding[state]) *state {
	t.Helper()
	s, err := b.Get()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestBindNamesByWhatIsProtected: the ingress budgets of two sites and an
// ingress replay cache are apart; two sidecar sites sending one MX client
// id share a budget, another client id has its own; moving a site in its
// server keeps its name.
func TestBindNamesByWhatIsProtected(t *testing.T) {
	a := testApp(t)
	c := new(counter)
	limA, limB, verify := &handler{"limA"}, &handler{"limB"}, &handler{"verify"}
	ingress := &caddyhttp.Server{Listen: []string{":443"}, Routes: caddyhttp.RouteList{
		route(hosts("a.example"), sub(route(nil, verify, limA))),
		route(hosts("b.example"), sub(route(nil, limB))),
	}}
	egress1, egress2, egress3 := &handler{"e1"}, &handler{"e2"}, &handler{"e3"}
	sock := &caddyhttp.Server{Listen: []string{"unix//run/a.sock"}, Routes: caddyhttp.RouteList{route(nil, &attach{"MX Platform API", "C1"}, egress1)}}
	tcp := &caddyhttp.Server{Listen: []string{":8490"}, Routes: caddyhttp.RouteList{route(nil, &attach{"MX Platform API", "C1"}, egress2)}}
	other := &caddyhttp.Server{Listen: []string{":8491"}, Routes: caddyhttp.RouteList{route(nil, &attach{"MX Platform API", "C2"}, egress3)}}

	bA := add(t, a, c, ingress, limA, rlSpec, "")
	bB := add(t, a, c, ingress, limB, rlSpec, "")
	bV := add(t, a, c, ingress, verify, Spec{Directive: "mdx_hmac", Kind: "replay", Options: []string{"resource", "", "base_path", ""}}, "")
	b1 := add(t, a, c, sock, egress1, rlSpec, "")
	b2 := add(t, a, c, tcp, egress2, rlSpec, "")
	b3 := add(t, a, c, other, egress3, rlSpec, "")
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	sA, sB, sV, s1, s2, s3 := mustGet(t, bA), mustGet(t, bB), mustGet(t, bV), mustGet(t, b1), mustGet(t, b2), mustGet(t, b3)
	if sA.Namespace == sB.Namespace || sA.Namespace == sV.Namespace || sA.Namespace == s1.Namespace {
		t.Errorf("ingress namespaces shared: %q %q %q %q", sA.Namespace, sB.Namespace, sV.Namespace, s1.Namespace)
	}
	if s1.Namespace != s2.Namespace || s1.Namespace == s3.Namespace {
		t.Errorf("egress: client C1 %q and %q, C2 %q", s1.Namespace, s2.Namespace, s3.Namespace)
	}
	if sA.Identity.Role != RoleIngress || s1.Identity.Role != RoleEgress || s1.Identity.Protects.Client == nil {
		t.Errorf("roles: %v / %v", sA.Identity, s1.Identity)
	}
	if c.made.Load() != 6 {
		t.Errorf("%d states made, want 6", c.made.Load())
	}

	// the same sites, in the other order, a site added before them
	a2 := testApp(t)
	limA2, limB2, limC := &handler{"limA"}, &handler{"limB"}, &handler{"limC"}
	reordered := &caddyhttp.Server{Listen: []string{":443"}, Routes: caddyhttp.RouteList{
		route(hosts("c.example"), sub(route(nil, limC))),
		route(hosts("b.example"), sub(route(nil, limB2))),
		route(hosts("a.example"), sub(route(nil, &handler{"verify"}, limA2))),
	}}
	bC, bB2, bA2 := add(t, a2, c, reordered, limC, rlSpec, ""), add(t, a2, c, reordered, limB2, rlSpec, ""), add(t, a2, c, reordered, limA2, rlSpec, "")
	if err := a2.Start(); err != nil {
		t.Fatal(err)
	}
	if mustGet(t, bA2).Namespace != sA.Namespace || mustGet(t, bB2).Namespace != sB.Namespace {
		t.Error("a reordered site changed its namespace")
	}
	if n := mustGet(t, bC).Namespace; n == sA.Namespace || n == sB.Namespace {
		t.Error("the added site took another's namespace")
	}
	for _, b := range []*Binding[state]{bA, bB, bV, b1, b2, b3, bC, bB2, bA2} {
		b.Release()
		b.Release() // harmless
		if s, err := b.Get(); s != nil || err == nil {
			t.Error("state after its release")
		}
	}
	if c.released.Load() != 9 {
		t.Errorf("%d released, want 9", c.released.Load())
	}
}

// TestBindRefuses: directives that would share state without the
// operator saying so refuse the configuration, naming both; so does one
// limit for several MX clients, and a handler that cannot be placed.
func TestBindRefuses(t *testing.T) {
	type reg struct {
		srv      *caddyhttp.Server
		h        caddyhttp.MiddlewareHandler
		spec     Spec
		explicit string
	}
	l1, l2 := &handler{"l1"}, &handler{"l2"}
	oneServer := &caddyhttp.Server{Listen: []string{":80"}, Routes: caddyhttp.RouteList{
		route(caddyhttp.MatcherSets{{caddyhttp.MatchMethod{"GET"}}}, sub(route(nil, l1))),
		route(caddyhttp.MatcherSets{{caddyhttp.MatchMethod{"POST"}}}, sub(route(nil, l2))),
	}}
	s1 := &caddyhttp.Server{Listen: []string{"10.0.0.1:80"}, Routes: caddyhttp.RouteList{route(nil, l1)}}
	s2 := &caddyhttp.Server{Listen: []string{"10.0.0.2:80"}, Routes: caddyhttp.RouteList{route(nil, l2)}}
	h1 := &caddyhttp.Server{Listen: []string{"10.0.0.1:443"}, Routes: caddyhttp.RouteList{route(hosts("a.example"), sub(route(nil, l1)))}}
	h2 := &caddyhttp.Server{Listen: []string{"10.0.0.2:443"}, Routes: caddyhttp.RouteList{route(hosts("a.example"), sub(route(nil, l2)))}}
	c1 := &caddyhttp.Server{Listen: []string{"unix//a.sock"}, Routes: caddyhttp.RouteList{route(nil, &attach{"MX Platform API", "C"}, l1)}}
	c2 := &caddyhttp.Server{Listen: []string{":8490"}, Routes: caddyhttp.RouteList{route(nil, &attach{"MX Platform API", "C"}, l2)}}
	in := &caddyhttp.Server{Listen: []string{":443"}, Routes: caddyhttp.RouteList{route(nil, l1)}}
	out := &caddyhttp.Server{Listen: []string{"unix//s.sock"}, Routes: caddyhttp.RouteList{route(nil, &attach{"MX Platform API", "C"}, l2)}}
	two := &caddyhttp.Server{Listen: []string{"unix//s.sock"}, Routes: caddyhttp.RouteList{
		route(nil, l1),
		route(paths("/a/*"), sub(route(nil, &attach{"MX Platform API", "CLIENT-ONE"}))),
		route(paths("/b/*"), sub(route(nil, &attach{"MX Connect", "CLIENT-TWO"}))),
	}}
	faster := rlSpec
	faster.Limits = "get 20/s"
	for _, c := range []struct {
		name string
		regs []reg
		want []string
	}{
		{"alike in one server", []reg{{oneServer, l1, rlSpec, ""}, {oneServer, l2, rlSpec, ""}},
			[]string{"would share one state", "route 0.0", "route 1.0", "give each its own `namespace`"}},
		{"servers that differ in the address bound", []reg{{s1, l1, rlSpec, ""}, {s2, l2, rlSpec, ""}},
			[]string{"differ only in the addresses they bind to", "10.0.0.1:80", "10.0.0.2:80"}},
		{"a site on two servers that differ in the address bound", []reg{{h1, l1, rlSpec, ""}, {h2, l2, rlSpec, ""}},
			[]string{"differ only in the addresses they bind to", "site a.example on port 443"}},
		{"one MX client, other limits", []reg{{c1, l1, rlSpec, ""}, {c2, l2, faster, ""}},
			[]string{"one MX client's budget) with different limits", "get 10/s", "get 20/s"}},
		{"one namespace, ingress and egress", []reg{{in, l1, rlSpec, "bank"}, {out, l2, rlSpec, "bank"}},
			[]string{`state namespace "bank"`, "state must not be shared", "mx_rate_limit (ingress", "mx_rate_limit (egress"}},
		{"several MX clients", []reg{{two, l1, rlSpec, ""}},
			[]string{"credentials of 2 MX clients", "MX Platform API client id #" + HashClientID("MX Platform API", "CLIENT-ONE")[:12], "MX Connect client id #"}},
		{"not in the routes", []reg{{in, l2, rlSpec, ""}},
			[]string{"mx_rate_limit in the server listening on :443: not found in the server's routes"}},
	} {
		a := testApp(t)
		var bs []*Binding[state]
		for _, r := range c.regs {
			bs = append(bs, add(t, a, new(counter), r.srv, r.h, r.spec, r.explicit))
		}
		err := a.Start()
		if err == nil {
			t.Errorf("%s: accepted", c.name)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %v\nwant %q", c.name, err, w)
			}
		}
		if strings.Contains(err.Error(), "CLIENT-") {
			t.Errorf("%s: a client id in the error: %v", c.name, err)
		}
		for _, b := range bs {
			if s, err := b.Get(); s != nil || err == nil {
				t.Errorf("%s: a handler got state from a refused configuration", c.name)
			}
		}
	}

	// What the operator names alike is shared on purpose; one MX client's
	// budget in two servers with the same limits is one; several clients
	// under one given namespace are the operator's statement.
	for name, regs := range map[string][]reg{
		"given twice":             {{oneServer, l1, rlSpec, "together"}, {oneServer, l2, rlSpec, "together"}},
		"one client, two servers": {{c1, l1, rlSpec, ""}, {c2, l2, rlSpec, ""}},
		"clients, given":          {{two, l1, rlSpec, "all-clients"}},
	} {
		a := testApp(t)
		var bs []*Binding[state]
		for _, r := range regs {
			bs = append(bs, add(t, a, new(counter), r.srv, r.h, r.spec, r.explicit))
		}
		if err := a.Start(); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if len(bs) == 2 && mustGet(t, bs[0]).Namespace != mustGet(t, bs[1]).Namespace {
			t.Errorf("%s: not shared", name)
		}
	}
}

// TestBindOnFirstUse: when a request comes before the app starts (the
// HTTP server started first), the handler binds everything then; the
// app's start later binds nothing again. A binding that fails leaves
// every handler without state, at a request and at the start alike.
func TestBindOnFirstUse(t *testing.T) {
	a := testApp(t)
	c := new(counter)
	l1, l2 := &handler{"l1"}, &handler{"l2"}
	srv := &caddyhttp.Server{Listen: []string{":443"}, Routes: caddyhttp.RouteList{
		route(hosts("a.example"), sub(route(nil, l1))), route(hosts("b.example"), sub(route(nil, l2)))}}
	b1, b2 := add(t, a, c, srv, l1, rlSpec, ""), add(t, a, c, srv, l2, rlSpec, "")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { mustGet(t, b2) })
	}
	wg.Wait()
	if c.made.Load() != 2 {
		t.Fatalf("%d states made by concurrent first requests, want 2", c.made.Load())
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	if c.made.Load() != 2 || mustGet(t, b1).Namespace == mustGet(t, b2).Namespace {
		t.Fatalf("start bound again (%d made) or named wrong", c.made.Load())
	}

	bad := testApp(t)
	stray := &handler{"stray"}
	bs := add(t, bad, c, srv, stray, rlSpec, "")
	if s, err := bs.Get(); s != nil || err == nil {
		t.Fatal("a handler that cannot be bound got state")
	}
	if err := bad.Start(); err == nil {
		t.Fatal("the start of a configuration that cannot be bound succeeded")
	}
}
