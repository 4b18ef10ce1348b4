package provision

import (
	"context"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddytls"
)

func TestTCPOnly(t *testing.T) {
	tlsOn := caddytls.ConnectionPolicies{new(caddytls.ConnectionPolicy)}
	for _, tc := range []struct {
		name    string
		srv     *caddyhttp.Server
		refused bool
	}{
		{"no server in the context", nil, false},
		{"TLS, Caddy's default protocols", &caddyhttp.Server{Listen: []string{":443"}, Protocols: []string{"h1", "h2", "h3"}, TLSConnPolicies: tlsOn}, true},
		{"TLS, protocols h1 h2", &caddyhttp.Server{Listen: []string{":443"}, Protocols: []string{"h1", "h2"}, TLSConnPolicies: tlsOn}, false},
		{"plain HTTP: Caddy serves no h3", &caddyhttp.Server{Listen: []string{":80"}, Protocols: []string{"h1", "h2", "h3"}}, false},
		{"one listener of two adds h3", &caddyhttp.Server{Listen: []string{":443", ":8443"}, Protocols: []string{"h1", "h2"},
			ListenProtocols: [][]string{nil, {"h1", "h3"}}, TLSConnPolicies: tlsOn}, true},
		{"every listener drops h3", &caddyhttp.Server{Listen: []string{":443", ":8443"}, Protocols: []string{"h1", "h2", "h3"},
			ListenProtocols: [][]string{{"h1", "h2"}, {"h2"}}, TLSConnPolicies: tlsOn}, false},
		{"one listener keeps the server's h3", &caddyhttp.Server{Listen: []string{":443", ":8443"}, Protocols: []string{"h1", "h2", "h3"},
			ListenProtocols: [][]string{{"h1", "h2"}, nil}, TLSConnPolicies: tlsOn}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent := context.Background()
			if tc.srv != nil {
				parent = context.WithValue(parent, caddyhttp.ServerCtxKey, tc.srv)
			}
			ctx, cancel := caddy.NewContext(caddy.Context{Context: parent})
			defer cancel()
			err := TCPOnly(ctx, "mx_ip_allow")
			if (err != nil) != tc.refused {
				t.Fatalf("err = %v, want refused %v", err, tc.refused)
			}
			if err != nil && !strings.Contains(err.Error(), "protocols h1 h2") {
				t.Errorf("the error does not give the fix: %v", err)
			}
		})
	}
}
