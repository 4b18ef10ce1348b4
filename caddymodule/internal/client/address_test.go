package client

import (
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/mxgate/mxgate/internal/testkit/handlertest"
)

func TestAddr(t *testing.T) {
	for ip, ok := range map[string]bool{"192.0.2.7": true, "2001:db8::1": true, "": false, "192.0.2.7:443": false, "nonsense": false} {
		r := handlertest.Request(httptest.NewRequest("GET", "/", nil), ip)
		if got := IP(r); got != ip {
			t.Errorf("ClientIP: %q, want %q", got, ip)
		}
		addr, got := Addr(r)
		if got != ok || (ok && addr.String() != ip) {
			t.Errorf("Addr(%q) = %v %v", ip, addr, got)
		}
	}
	// a request Caddy's server never saw has no variables at all
	if ip := IP(httptest.NewRequest("GET", "/", nil)); ip != "" {
		t.Errorf("no variables: %q", ip)
	}
}

func TestSetUser(t *testing.T) {
	r := handlertest.Request(httptest.NewRequest("GET", "/", nil), "192.0.2.7")
	SetUser(r, "client-7")
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if got := repl.ReplaceAll("{http.auth.user.id}", "none"); got != "client-7" {
		t.Errorf("{http.auth.user.id} = %q", got)
	}
	SetUser(httptest.NewRequest("GET", "/", nil), "no-replacer") // no replacer: nothing to set, no panic
}
