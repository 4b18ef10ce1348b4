// Command mxgate is Caddy with mxgate's modules: a security gateway for
// open-banking integrations with MX.
//
// Run it as you would run caddy:
//
//	mxgate run --config Caddyfile.example
//	mxgate validate --config Caddyfile.example
//	mxgate version
//	mxgate mdx-sign --url https://fi.example/inst1/accounts
//
// Its command line is Caddy's, under mxgate's name, less the commands that
// would replace the binary with a stock Caddy (upgrade, add-package,
// remove-package), with mxgate's own version and build-info, and a
// healthcheck command for container runtimes.
package main

import (
	"os"

	// Caddy's standard modules
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	// mxgate's modules
	_ "github.com/mxgate/mxgate/caddymodule"
)

func main() {
	os.Exit(execute(newRootCommand(), os.Args[1:]))
}
