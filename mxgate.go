// Package mxgate is the plugin entry point for building mxgate with
// xcaddy: `xcaddy build --with github.com/mxgate/mxgate` registers every
// mxgate module. caddymodule registers them; each feature's glue lives in a
// package under it, over mxgate's plain Go libraries (hmac, cidr, replay,
// ratelimit, jwe, mxconnect, sanitize, fdx); cmd/mxgate is the ready-built
// binary.
package mxgate

import (
	// mxgate's Caddy modules
	_ "github.com/mxgate/mxgate/caddymodule"
)
