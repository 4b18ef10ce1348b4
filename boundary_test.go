package mxgate

import (
	"slices"
	"strings"
	"testing"
)

// TestLibrariesDoNotImportCaddy keeps the split between the plain Go
// libraries and the Caddy glue. Every package of the module that `go list`
// finds is a library unless it is this package (which registers the glue),
// Caddy glue (caddymodule/...), a command (cmd/...), the end-to-end tests
// (e2e) or a test kit (internal/testkit/...), so a package added later is
// held to it too; tools/ and bench/ are modules of their own. A library
// depends, tests aside, on neither Caddy, nor the glue, nor a test kit.
func TestLibrariesDoNotImportCaddy(t *testing.T) {
	var libs []string
	for pkg := range lineSet(goCmd(t, "", "list", "./...")) {
		if isLibrary(pkg) {
			libs = append(libs, pkg)
		}
	}
	slices.Sort(libs)
	for _, want := range []string{"hmac", "cidr", "replay", "ratelimit", "jwe", "mxconnect", "sanitize", "fdx", "secrethash", "internal/redisconf"} {
		if !slices.Contains(libs, modulePath+"/"+want) {
			t.Fatalf("%s is not among the libraries go list found: %v", want, libs)
		}
	}
	// Each library and every package it depends on, one per line.
	out := goCmd(t, "", append([]string{"list", "-f", "{{.ImportPath}}{{range .Deps}} {{.}}{{end}}"}, libs...)...)
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		deps := strings.Fields(line)
		lib := deps[0]
		for _, d := range deps[1:] {
			if strings.Contains(d, "caddyserver") || d == modulePath+"/caddymodule" || strings.HasPrefix(d, modulePath+"/caddymodule/") ||
				d == testkitPath || strings.HasPrefix(d, testkitPath+"/") {
				t.Errorf("the library %s depends on %s", lib, d)
			}
		}
		checked++
	}
	if checked != len(libs) {
		t.Fatalf("go list answered for %d of %d libraries", checked, len(libs))
	}
}

// isLibrary tells whether a package of the module must stay free of Caddy.
func isLibrary(pkg string) bool {
	rel, ok := strings.CutPrefix(pkg, modulePath+"/")
	if !ok {
		return false // this package, the registry
	}
	for _, exempt := range []string{"caddymodule", "cmd", "e2e", "internal/testkit"} {
		if rel == exempt || strings.HasPrefix(rel, exempt+"/") {
			return false
		}
	}
	return true
}

func TestIsLibrary(t *testing.T) {
	for pkg, want := range map[string]bool{
		modulePath:                                false,
		modulePath + "/caddymodule":               false,
		modulePath + "/caddymodule/mdx":           false,
		modulePath + "/cmd/mxgate":                false,
		modulePath + "/e2e":                       false,
		modulePath + "/internal/testkit/freeport": false,
		modulePath + "/hmac":                      true,
		modulePath + "/internal/redisconf":        true,
		modulePath + "/deploy":                    true, // tests only: depends on nothing
		modulePath + "/caddymodulex":              true,
		modulePath + "/cmdline":                   true,
		modulePath + "/e2etools":                  true,
		modulePath + "/internal/testkitchen":      true,
		modulePath + "/newlib/caddymodule":        true,
	} {
		if got := isLibrary(pkg); got != want {
			t.Errorf("isLibrary(%s) = %v, want %v", pkg, got, want)
		}
	}
}
