// Package caddymodule holds mxgate's Caddy modules. It is the only package
// of mxgate that imports Caddy: each module here is thin glue over one of
// the plain Go libraries (hmac, cidr, …), turning their errors into the
// HTTP answers MX's protocols prescribe.
//
// Modules:
//
//	http.handlers.mx_ip_allow   admit only clients in an IP allow-list (MX's ranges by default)
//	http.handlers.mdx_hmac      verify MDX On Demand request signatures
//	http.handlers.mx_rate_limit per-verb token-bucket budgets, in memory or shared through Redis
//
// The Caddyfile directives of the same names are registered in caddyfile.go,
// with their order, so a site needs no `order` option.
package caddymodule
