//go:build tools

// Package tools pins staticcheck, which `make test` runs:
//
//	go run -modfile tools/staticcheck/go.mod honnef.co/go/tools/cmd/staticcheck ./...
package tools

import _ "honnef.co/go/tools/cmd/staticcheck"
