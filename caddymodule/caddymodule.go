// Package caddymodule holds mxgate's Caddy glue, and the tests of all its
// modules and directives together; the module's top package (mxgate.go)
// registers them all. Each feature lives in a package of its own, a thin
// layer over one of mxgate's plain Go libraries (hmac,
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
//	cli       mxgate mdx-sign, mxgate fdx-dev, mxgate hash-secret, mxgate state-names, mxgate healthcheck
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
