package gate

import "fmt"

// NameDirective prefixes *err, when it is set, with the directive that
// configures the module, as a Caddyfile names it ("mdx_hmac verify: key
// 1: is empty"): Caddy's error chain names a module by its id (provision
// http.handlers.mdx_hmac_verify), which is not what the operator wrote.
// Each module's Provision defers it first thing:
//
//	func (v *Verify) Provision(ctx caddy.Context) (err error) {
//		defer gate.NameDirective(&err, "mdx_hmac verify")
func NameDirective(err *error, directive string) {
	if *err != nil {
		*err = fmt.Errorf("%s: %w", directive, *err)
	}
}
