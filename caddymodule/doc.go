// Package caddymodule holds mxgate's Caddy modules. It is the only package
// of mxgate that imports Caddy: each module here is thin glue over one of
// the plain Go libraries (hmac, cidr, …), turning their errors into the
// HTTP answers MX's protocols prescribe.
//
// Modules:
//
//	http.handlers.mx_ip_allow   admit only clients in an IP allow-list (MX's ranges by default)
//	http.handlers.mdx_hmac      verify (or make) MDX On Demand request signatures
//	http.handlers.mx_rate_limit per-verb token-bucket budgets, in memory or shared through Redis
//	http.handlers.mx_auth       attach MX Platform API credentials, or check Basic credentials
//	http.handlers.mx_jwe        ask for and decrypt MX's encrypted responses, or encrypt them
//	http.handlers.mx_retry      retry idempotent requests answered 429 or 503
//	http.handlers.mxconnect_token  attach cached MX Connect bearer tokens
//	http.handlers.mdx_sanitize  mask account and card numbers in MDX responses
//	http.handlers.fdx_auth      FDX v6: certificate-bound OAuth 2.0 tokens and scopes per endpoint
//
// The Caddyfile directives of the same names are registered in caddyfile.go,
// with their order, so a site needs no `order` option.
package caddymodule
