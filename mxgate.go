// Package mxgate is the plugin entry point for building mxgate with
// xcaddy: `xcaddy build --with github.com/mxgate/mxgate` registers every
// mxgate module. The modules themselves live in caddymodule, over the plain
// Go libraries hmac, cidr and replay; cmd/mxgate is the ready-built binary.
package mxgate

import (
	// mxgate's Caddy modules
	_ "github.com/mxgate/mxgate/caddymodule"
)
