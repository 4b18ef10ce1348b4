package store

import (
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
)

// handler is a handler with state, or not, found by identity.
type handler struct{ name string }

func (*handler) ServeHTTP(http.ResponseWriter, *http.Request, caddyhttp.Handler) error { return nil }

// attach is a handler that attaches a client's credentials.
type attach struct{ kind, id string }

func (*attach) ServeHTTP(http.ResponseWriter, *http.Request, caddyhttp.Handler) error { return nil }
func (a *attach) Credentials() (string, string)                                       { return a.kind, a.id }

func route(match caddyhttp.MatcherSets, hs ...caddyhttp.MiddlewareHandler) caddyhttp.Route {
	return caddyhttp.Route{MatcherSets: match, Handlers: hs}
}

func hosts(h ...string) caddyhttp.MatcherSets {
	m := caddyhttp.MatchHost(h)
	return caddyhttp.MatcherSets{{&m}}
}

func paths(p ...string) caddyhttp.MatcherSets {
	return caddyhttp.MatcherSets{{caddyhttp.MatchPath(p)}}
}

func sub(routes ...caddyhttp.Route) *caddyhttp.Subroute {
	return &caddyhttp.Subroute{Routes: routes}
}

// TestLocate: a handler is found by identity in a server's routes,
// subroutes, error routes, named routes and response routes, with the
// path to it; a handler that is not there is not found.
func TestLocate(t *testing.T) {
	inSub, inErrors, inNamed, inResponse, inSubErrors, elsewhere := &handler{"sub"}, &handler{"errors"}, &handler{"named"}, &handler{"response"}, &handler{"suberrors"}, &handler{"nowhere"}
	twin := &handler{"sub"} // equal in value, not the same handler
	named := route(nil, inNamed)
	srv := &caddyhttp.Server{
		Listen: []string{":443"},
		Routes: caddyhttp.RouteList{
			route(hosts("a.example"), twin, sub(route(nil, &handler{"x"}), route(paths("/v1/*"), sub(route(nil, inSub))))),
			route(nil, &reverseproxy.Handler{HandleResponse: []caddyhttp.ResponseHandler{{Routes: caddyhttp.RouteList{route(nil, inResponse)}}}}),
			route(nil, &caddyhttp.Subroute{Errors: &caddyhttp.HTTPErrorConfig{Routes: caddyhttp.RouteList{route(nil, inSubErrors)}}}),
		},
		Errors:      &caddyhttp.HTTPErrorConfig{Routes: caddyhttp.RouteList{route(paths("/e"), inErrors)}},
		NamedRoutes: map[string]*caddyhttp.Route{"shared": &named},
	}
	for _, c := range []struct {
		h     *handler
		index []int
		part  []string
	}{
		{inSub, []int{0, 1, 0}, nil},
		{twin, []int{0}, nil},
		{inResponse, []int{1, 0}, []string{"handle_response"}},
		{inSubErrors, []int{2, 0}, []string{"errors"}},
		{inErrors, []int{0}, []string{"errors"}},
		{inNamed, []int{0}, []string{"named route shared"}},
	} {
		p, ok := locate(srv, c.h)
		if !ok {
			t.Errorf("%s: not found", c.h.name)
			continue
		}
		var idx []int
		for _, f := range p.frames {
			idx = append(idx, f.index)
		}
		if !reflect.DeepEqual(idx, c.index) || !reflect.DeepEqual(p.part, c.part) {
			t.Errorf("%s: at %v %v, want %v %v", c.h.name, idx, p.part, c.index, c.part)
		}
	}
	if _, ok := locate(srv, elsewhere); ok {
		t.Error("a handler that is in no route was found")
	}
}

// TestSite: a site is its ports or socket, its host names and its path
// matchers outermost first; the address bound to is never part of it.
func TestSite(t *testing.T) {
	h := &handler{"h"}
	for _, c := range []struct {
		name   string
		listen []string
		routes caddyhttp.RouteList
		want   Site
	}{
		{"host names", []string{"tcp-handover/0.0.0.0:443"},
			caddyhttp.RouteList{route(hosts("MDX.Bank.example", "b.example"), sub(route(paths("/v1/*", "/A"), h)))},
			Site{Listen: []string{"port 443"}, Hosts: []string{"b.example", "mdx.bank.example"}, Paths: [][]string{{"/A", "/v1/*"}}}},
		{"host names, another address bound", []string{"10.0.0.7:443"},
			caddyhttp.RouteList{route(hosts("b.example", "mdx.bank.example"), sub(route(paths("/A", "/v1/*"), h)))},
			Site{Listen: []string{"port 443"}, Hosts: []string{"b.example", "mdx.bank.example"}, Paths: [][]string{{"/A", "/v1/*"}}}},
		{"no host names", []string{"tcp-handover/127.0.0.1:8480", "[::1]:8480", ":9000-9002"},
			caddyhttp.RouteList{route(nil, h)},
			Site{Listen: []string{"port 8480", "ports 9000-9002"}}},
		{"a socket", []string{"unix//run/mxgate/sidecar.sock|0220"},
			caddyhttp.RouteList{route(nil, h)},
			Site{Listen: []string{"unix /run/mxgate/sidecar.sock"}}},
		{"nested paths", []string{":80"},
			caddyhttp.RouteList{route(paths("/a/*"), sub(route(nil, sub(route(paths("/a/b"), h)))))},
			Site{Listen: []string{"port 80"}, Paths: [][]string{{"/a/*"}, {"/a/b"}}}},
	} {
		srv := &caddyhttp.Server{Listen: c.listen, Routes: c.routes}
		p, ok := locate(srv, h)
		if !ok {
			t.Fatalf("%s: not found", c.name)
		}
		if got := p.site(srv); !reflect.DeepEqual(*got, c.want) {
			t.Errorf("%s: %+v, want %+v", c.name, *got, c.want)
		}
	}
}

// TestCredentials: the credentials of the nearest routes around a
// handler that hold any; sibling routes matched on other host names are
// another site's.
func TestCredentials(t *testing.T) {
	lim := &handler{"limit"}
	a, b, sign := &attach{"MX Platform API", "A"}, &attach{"MX Platform API", "B"}, &attach{"MDX signing key", ""}
	for _, c := range []struct {
		name   string
		routes caddyhttp.RouteList
		want   []credential
	}{
		{"beside it", caddyhttp.RouteList{route(nil, a, lim)}, []credential{{"MX Platform API", "A"}}},
		{"none: ingress", caddyhttp.RouteList{route(nil, &handler{"verify"}, lim)}, nil},
		{"its own handle block's, not the other's",
			caddyhttp.RouteList{route(paths("/a/*"), sub(route(nil, a), route(nil, lim))), route(nil, sub(route(nil, b)))},
			[]credential{{"MX Platform API", "A"}}},
		{"the site's, around a handle block",
			caddyhttp.RouteList{route(nil, a), route(paths("/x"), sub(route(nil, lim)))},
			[]credential{{"MX Platform API", "A"}}},
		{"both handle blocks' under it",
			caddyhttp.RouteList{route(nil, lim), route(paths("/a"), sub(route(nil, a))), route(paths("/b"), sub(route(nil, b)))},
			[]credential{{"MX Platform API", "A"}, {"MX Platform API", "B"}}},
		{"not another site's",
			caddyhttp.RouteList{route(hosts("one.example"), sub(route(nil, lim))), route(hosts("two.example"), sub(route(nil, b)))},
			nil},
		{"a signer",
			caddyhttp.RouteList{route(hosts("one.example"), sub(route(nil, sign, lim)))},
			[]credential{{"MDX signing key", ""}}},
	} {
		srv := &caddyhttp.Server{Listen: []string{":80"}, Routes: c.routes}
		p, ok := locate(srv, lim)
		if !ok {
			t.Fatalf("%s: not found", c.name)
		}
		if got := p.credentials(); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// TestNamespace: a namespace follows what the state protects, its role and
// its identity options; it is stable (a change would start every
// deployment's state afresh), and its description holds no client id.
func TestNamespace(t *testing.T) {
	site := Protected{Site: &Site{Listen: []string{"port 443"}, Hosts: []string{"mdx.bank.example"}}}
	base := Identity{Directive: "mx_rate_limit", Role: RoleIngress, Options: []string{"key", ""}, Protects: site}
	// pinned: the naming of every deployed gateway's state
	if got := base.Namespace(); got != "89280f49f850e72cddd9d99c8f63cb4c" {
		t.Errorf("the namespace of a fixed identity changed to %q: deployed state would start afresh", got)
	}
	if again := base.Namespace(); again != base.Namespace() || len(again) != 32 || !strings.HasPrefix(base.Fingerprint(), base.Namespace()) {
		t.Error("not stable, or not the start of the fingerprint")
	}
	client := func(id string) Protected {
		return Protected{Client: &Client{Kind: "MX Platform API", Hash: HashClientID("MX Platform API", id)}}
	}
	others := map[string]Identity{
		"another host":      {Directive: "mx_rate_limit", Role: RoleIngress, Options: []string{"key", ""}, Protects: Protected{Site: &Site{Listen: []string{"port 443"}, Hosts: []string{"mdx2.bank.example"}}}},
		"another path":      {Directive: "mx_rate_limit", Role: RoleIngress, Options: []string{"key", ""}, Protects: Protected{Site: &Site{Listen: []string{"port 443"}, Hosts: []string{"mdx.bank.example"}, Paths: [][]string{{"/v2/*"}}}}},
		"no host":           {Directive: "mx_rate_limit", Role: RoleIngress, Options: []string{"key", ""}, Protects: Protected{Site: &Site{Listen: []string{"port 443"}}}},
		"another port":      {Directive: "mx_rate_limit", Role: RoleIngress, Options: []string{"key", ""}, Protects: Protected{Site: &Site{Listen: []string{"port 8443"}, Hosts: []string{"mdx.bank.example"}}}},
		"another key":       {Directive: "mx_rate_limit", Role: RoleIngress, Options: []string{"key", "{ip}"}, Protects: site},
		"another directive": {Directive: "mdx_hmac", Role: RoleIngress, Options: []string{"key", ""}, Protects: site},
		"egress, client A":  {Directive: "mx_rate_limit", Role: RoleEgress, Options: []string{"key", ""}, Protects: client("CLIENT-A")},
		"egress, client B":  {Directive: "mx_rate_limit", Role: RoleEgress, Options: []string{"key", ""}, Protects: client("B")},
		"egress, the site":  {Directive: "mx_rate_limit", Role: RoleEgress, Options: []string{"key", ""}, Protects: site},
		"errors part":       {Directive: "mx_rate_limit", Role: RoleIngress, Options: []string{"key", ""}, Protects: Protected{Site: &Site{Listen: []string{"port 443"}, Hosts: []string{"mdx.bank.example"}, Part: []string{"errors"}}}},
		"option shifted":    {Directive: "mx_rate_limit", Role: RoleIngress, Options: []string{"ke", "y"}, Protects: site},
	}
	seen := map[string]string{base.Namespace(): "base"}
	for name, id := range others {
		if prev, dup := seen[id.Namespace()]; dup {
			t.Errorf("%s shares the namespace of %s", name, prev)
		}
		seen[id.Namespace()] = name
	}
	same := Identity{Directive: "mx_rate_limit", Role: RoleEgress, Options: []string{"key", ""}, Protects: client("CLIENT-A")}
	if same.Namespace() != others["egress, client A"].Namespace() {
		t.Error("one client id on two hosts: two namespaces")
	}
	desc := others["egress, client A"].String()
	if strings.Contains(desc, "CLIENT-A") || !strings.Contains(desc, "MX Platform API client id #"+HashClientID("MX Platform API", "CLIENT-A")[:12]) {
		t.Errorf("description %q", desc)
	}
	if d := others["another path"].String(); !strings.Contains(d, "site mdx.bank.example on port 443, paths /v2/*") {
		t.Errorf("description %q", d)
	}
}
