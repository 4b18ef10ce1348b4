package mxgate

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLibrariesDoNotImportCaddy keeps the split between the plain Go
// libraries and the Caddy glue: only caddymodule (and the binaries and
// tests built on it) may depend on Caddy.
func TestLibrariesDoNotImportCaddy(t *testing.T) {
	libs := []string{"./hmac", "./cidr", "./replay", "./ratelimit", "./jwe", "./mxconnect", "./sanitize", "./fdx"}
	args := append([]string{"list", "-deps", "-f", "{{.ImportPath}}"}, libs...)
	out, err := exec.Command("go", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < len(libs) {
		t.Fatalf("go list found only %v", deps)
	}
	for _, d := range deps {
		if strings.Contains(d, "caddyserver") || strings.Contains(d, "/caddymodule") {
			t.Errorf("a library depends on %s", d)
		}
	}
}
