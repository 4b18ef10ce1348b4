package provision

import (
	"fmt"
	"slices"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// TCPOnly refuses a listener wrapper (name, such as "mx_ip_allow") in an
// HTTP server that may serve HTTP/3. Listener wrappers see the server's
// TCP connections only; HTTP/3 runs over UDP (QUIC) beside them, so a
// client could reach the site over HTTP/3 without passing the wrapper.
//
// Caddy provisions a server's listener wrappers with the server in the
// context, its protocols already defaulted (h1 h2 h3 unless configured);
// it serves HTTP/3 only with TLS, so a server with no TLS connection
// policy (plain HTTP) is let through. Outside an HTTP server (no server in
// the context) there is nothing to check.
func TCPOnly(ctx caddy.Context, name string) error {
	srv, ok := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	if !ok || srv == nil || len(srv.TLSConnPolicies) == 0 || !servesH3(srv) {
		return nil
	}
	return fmt.Errorf("%s sees TCP connections only, and this server would also serve HTTP/3 "+
		"over UDP, where %s does not look: write `protocols h1 h2` in the server's options "+
		"(Caddyfile global options: servers { protocols h1 h2 }; JSON: \"protocols\": [\"h1\", \"h2\"]) "+
		"so that every connection passes it", name, name)
}

// servesH3 reports whether any of srv's listeners may serve HTTP/3.
func servesH3(srv *caddyhttp.Server) bool {
	if len(srv.ListenProtocols) == 0 {
		return slices.Contains(srv.Protocols, "h3")
	}
	for i := range srv.Listen {
		protocols := srv.Protocols
		if i < len(srv.ListenProtocols) && srv.ListenProtocols[i] != nil {
			protocols = srv.ListenProtocols[i]
		}
		if slices.Contains(protocols, "h3") {
			return true
		}
	}
	return false
}
