// Package provision is what mxgate's modules share while they are
// provisioned: errors that name the directive as a Caddyfile writes it,
// settings whose global placeholders are resolved once, and the check
// that keeps a listener wrapper out of servers that also serve HTTP/3.
package provision

import "fmt"

// NameDirective prefixes *err, when it is set, with the directive that
// configures the module, as a Caddyfile names it ("mdx_hmac verify: key
// 1: is empty"): Caddy's error chain names a module by its id (provision
// http.handlers.mdx_hmac_verify), which is not what the operator wrote.
// Each module's Provision defers it first thing:
//
//	func (v *Verify) Provision(ctx caddy.Context) (err error) {
//		defer provision.NameDirective(&err, "mdx_hmac verify")
func NameDirective(err *error, directive string) {
	if *err != nil {
		*err = fmt.Errorf("%s: %w", directive, *err)
	}
}
