// Command mxgate is Caddy with mxgate's modules: a security gateway for
// open-banking integrations with MX.
//
// Run it as you would run caddy:
//
//	mxgate run --config Caddyfile.example
//	mxgate list-modules
//	mxgate mdx-sign --url https://fi.example/inst1/accounts
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	// Caddy's standard modules
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	// mxgate's modules
	_ "github.com/mxgate/mxgate/caddymodule"
)

func main() {
	caddycmd.Main()
}
