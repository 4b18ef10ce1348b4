// Package mxgate is the one place that registers mxgate with Caddy:
// `xcaddy build --with github.com/mxgate/mxgate` builds it in, and
// cmd/mxgate, the ready-built binary, imports it likewise. It imports
// every package of Caddy glue under caddymodule/ (each registers its
// modules, directives, adapters, networks and commands in its init), and
// sets the place of mxgate's directives in a site's handler chain. No other
// package imports a feature for its registrations (TestOnePlaceRegisters).
//
// The glue packages are a thin layer over mxgate's plain Go libraries
// (hmac, cidr, replay, ratelimit, jwe, mxconnect, sanitize, fdx, ...), which
// never import Caddy (TestLibrariesDoNotImportCaddy); caddymodule's package
// comment says which feature lives where.
package mxgate

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	_ "github.com/mxgate/mxgate/caddymodule/cli"
	_ "github.com/mxgate/mxgate/caddymodule/fdxauth"
	_ "github.com/mxgate/mxgate/caddymodule/health"
	_ "github.com/mxgate/mxgate/caddymodule/ipallow"
	_ "github.com/mxgate/mxgate/caddymodule/limit"
	_ "github.com/mxgate/mxgate/caddymodule/listen"
	_ "github.com/mxgate/mxgate/caddymodule/mdx"
	_ "github.com/mxgate/mxgate/caddymodule/mxapi"
	_ "github.com/mxgate/mxgate/caddymodule/redact"
	_ "github.com/mxgate/mxgate/caddymodule/shed"
	_ "github.com/mxgate/mxgate/caddymodule/sni"
)

// Order is the place of mxgate's directives in a site's handler chain.
// Each lands just before redir, after the ones before it, so the chain
// runs in this order: a readiness answer (which ends the chain, so that a
// probe is answered however loaded the gateway is); the cap on requests
// in flight, so that the excess costs nothing more; the IP check, so a
// stranger gets nothing but 403; the signature; credentials (whose client
// id a rate-limit key may use); retries, so that every attempt draws a
// token; the rate limit; and encryption and the sanitizer right next to
// the proxy. All come after `header`, so a site's security headers reach
// refusals too.
var Order = []string{"mx_health", "mx_shed", "mx_ip_allow", "mdx_hmac", "fdx_auth", "mx_auth", "mxconnect_token", "mx_retry", "mx_rate_limit", "mx_jwe", "mdx_sanitize"}

func init() {
	for _, dir := range Order {
		httpcaddyfile.RegisterDirectiveOrder(dir, httpcaddyfile.Before, "redir")
	}
}
