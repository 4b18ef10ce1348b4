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
// healthcheck command for container runtimes. run, reload, validate and
// adapt load a Caddyfile or JSON configuration through mxgate's config
// adapters, which give every log that names no encoder mxgate_redact.
package main

import (
	"fmt"
	"os"
	"runtime/debug"

	// Caddy's standard modules
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	// mxgate's modules, commands and directive order, registered in one
	// place, as xcaddy's builds register them
	_ "github.com/mxgate/mxgate"
)

// gcPercent is mxgate's garbage-collector target (GOGC) unless the
// environment sets one. A gateway's live heap is small and its garbage is
// per-request, so Go's default of 100 collects far more often than memory
// needs: 200 halves the collections for at most twice a small live heap,
// and Caddy's GOMEMLIMIT (90 % of the memory available) still bounds the
// total. BENCHMARKS.md has the measurement.
const gcPercent = 200

func main() {
	setGCDefault(os.LookupEnv)
	if err := setDefaultAdmin(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "mxgate:", err)
		os.Exit(1)
	}
	os.Exit(execute(newRootCommand(), os.Args[1:]))
}

// setGCDefault applies gcPercent unless GOGC is in the environment.
func setGCDefault(lookupEnv func(string) (string, bool)) {
	if _, set := lookupEnv("GOGC"); !set {
		debug.SetGCPercent(gcPercent)
	}
}
