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
	"strings"

	// Caddy's standard modules
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	// mxgate's modules, commands and directive order, registered in one
	// place, as xcaddy's builds register them
	_ "github.com/mxgate/mxgate"
	"github.com/mxgate/mxgate/internal/gcfloor"
)

// gcPercent is mxgate's garbage-collector target (GOGC) unless the
// environment sets one. A gateway's live heap is small and its garbage is
// per-request, so Go's default of 100 collects far more often than memory
// needs: 200 halves the collections for at most twice a small live heap,
// and Caddy's GOMEMLIMIT (90 % of the memory available) still bounds the
// total. BENCHMARKS.md has the measurement.
const gcPercent = 200

// gcFloorEnv names the environment variable that sets the heap floor
// (a size such as 64MiB, or off), and defaultGCFloor is the floor when it
// is unset. Under the floor the collector waits for the heap to reach it
// whatever the live heap, so that at a steady load a small live heap is
// collected about once a second rather than several times: each cycle's
// marking, assists and stops land on the requests in flight and add to the
// tail of the latencies. Above it, GOGC rules. BENCHMARKS.md has the
// measurement.
const (
	gcFloorEnv     = "MXGATE_GC_FLOOR"
	defaultGCFloor = 64 << 20
)

func main() {
	if _, err := setGCDefault(os.LookupEnv); err != nil {
		fmt.Fprintln(os.Stderr, "mxgate:", err)
		os.Exit(1)
	}
	if err := setDefaultAdmin(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "mxgate:", err)
		os.Exit(1)
	}
	os.Exit(execute(newRootCommand(), os.Args[1:]))
}

// setGCDefault applies gcPercent unless GOGC is in the environment, and
// keeps the heap floor that MXGATE_GC_FLOOR sets (defaultGCFloor if
// unset or empty, none if off) under whichever percentage is in force. It returns
// the floor, or an error if MXGATE_GC_FLOOR is not a size.
func setGCDefault(lookupEnv func(string) (string, bool)) (*gcfloor.Floor, error) {
	floor := uint64(defaultGCFloor)
	if v, set := lookupEnv(gcFloorEnv); set && strings.TrimSpace(v) != "" {
		var err error
		if floor, err = gcfloor.ParseSize(v); err != nil {
			return nil, fmt.Errorf("%s: %w", gcFloorEnv, err)
		}
	}
	if _, set := lookupEnv("GOGC"); !set {
		debug.SetGCPercent(gcPercent)
	}
	return gcfloor.Keep(floor, gcfloor.CurrentPercent()), nil
}
