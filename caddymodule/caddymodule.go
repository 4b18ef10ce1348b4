// Package caddymodule registers every mxgate Caddy module and Caddyfile
// directive: `xcaddy build --with github.com/mxgate/mxgate` (or a blank
// import of this package) brings them all. Each feature lives in a package
// of its own, a thin layer over one of mxgate's plain Go libraries (hmac,
// cidr, replay, ratelimit, jwe, mxconnect, sanitize, fdx), which never
// import Caddy:
//
//	ipallow   mx_ip_allow                     admit only clients in an allow-list (MX's ranges by default);
//	                                          as a listener wrapper, close other peers' connections at accept
//	mdx       mdx_hmac verify|sign, mdx_sanitize   MDX On Demand signatures; account numbers in replies
//	limit     mx_rate_limit                   per-verb budgets, in memory or shared through Redis
//	mxapi     mx_auth attach|check, mx_jwe decrypt|encrypt, mx_retry, mxconnect_token
//	                                          the MX Platform API and MX Connect, egress and serving side
//	fdxauth   fdx_auth                        FDX v6: certificate-bound OAuth 2.0 tokens, scopes per endpoint
//	health    mx_health                       readiness: every shared store and JWKS usable
//	shed      mx_shed, mx_conn_limit          overload: 503 at once past a cap on requests in flight;
//	                                          as a listener wrapper, past a cap on open connections
//	sni       mx_server_name                  a listener wrapper: TLS server names that are not plain
//	                                          ASCII host names are refused in the handshake
//	listen    the tcp-handover network        reloads that drop no connection
//	redact    log format mxgate_redact        a log encoder that redacts credential headers everywhere;
//	          adapters mxgate-caddyfile|json  make it the encoder of every log that names none
//	cli       mxgate mdx-sign, mxgate fdx-dev, mxgate hash-secret
//
// What the modules share is under internal/, a room for each concern:
//
//	refusal       the one way a request is refused, in the protocol's own error format
//	metrics       mxgate's Prometheus collectors
//	readiness     what a loaded configuration needs to serve, for mx_health
//	secret        credentials read from the configuration, and warnings where they would leak
//	provision     errors named by directive, placeholders of settings, TCP-only listener wrappers
//	caddyfileopt  reading a directive's mode and its options' values
//	client        the client address, the user, and who may use a credential (allow_callers)
//	bodies        request bodies read under a bound, responses held to be checked or replaced
//	resend        what a handler that sends a request again needs
//	store         the store options, Redis clients, outage handling, state that outlives reloads
package caddymodule

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
