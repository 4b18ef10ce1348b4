//go:build tools

// Package tools pins the version of xcaddy that xcaddy.sh builds with.
package tools

import _ "github.com/caddyserver/xcaddy/cmd/xcaddy"
