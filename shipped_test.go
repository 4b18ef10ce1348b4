package mxgate

import (
	"encoding/json"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const (
	modulePath = "github.com/mxgate/mxgate"
	benchPath  = modulePath + "/bench"
	// testkitPath holds what only tests and benchmarks use.
	testkitPath = modulePath + "/internal/testkit"
)

// goCmd runs the go command in dir ("" for this package's, the top of the
// repository) and returns its standard output.
func goCmd(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("go %s (in %q): %v\n%s", strings.Join(args, " "), dir, err, stderr)
	}
	return string(out)
}

// lines is the set of out's non-empty lines.
func lineSet(out string) map[string]bool {
	set := map[string]bool{}
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			set[l] = true
		}
	}
	return set
}

// TestShipsNoTestKit: what `xcaddy build --with github.com/mxgate/mxgate`
// compiles of mxgate (this package and what it imports) and the mxgate
// binary (cmd/mxgate) hold no test kit, no benchmark and not even the
// standard library's testing package.
func TestShipsNoTestKit(t *testing.T) {
	for _, pkg := range []string{".", "./cmd/mxgate"} {
		deps := lineSet(goCmd(t, "", "list", "-deps", "-f", "{{.ImportPath}}", pkg))
		if !deps[modulePath+"/hmac"] || !deps["github.com/caddyserver/caddy/v2"] {
			t.Fatalf("%s: go list -deps found neither mxgate's libraries nor Caddy: %v", pkg, deps)
		}
		if bad := unshippable(deps); len(bad) > 0 {
			t.Errorf("%s depends on %v, which only tests and benchmarks may use", pkg, bad)
		}
	}
}

// unshippable are the packages of deps that nothing shipped may import.
func unshippable(deps map[string]bool) []string {
	var bad []string
	for d := range deps {
		if d == "testing" || strings.HasPrefix(d, "testing/") ||
			d == testkitPath || strings.HasPrefix(d, testkitPath+"/") ||
			d == benchPath || strings.HasPrefix(d, benchPath+"/") {
			bad = append(bad, d)
		}
	}
	slices.Sort(bad)
	return bad
}

func TestUnshippable(t *testing.T) {
	deps := map[string]bool{
		"fmt": true, modulePath + "/hmac": true, "github.com/caddyserver/caddy/v2": true,
		modulePath + "/internal/testkitty": true, modulePath + "/benchmark": true,
	}
	if bad := unshippable(deps); len(bad) != 0 {
		t.Errorf("shipped packages taken for test kits: %v", bad)
	}
	deps["testing"] = true
	deps[testkitPath+"/freeport"] = true
	deps[benchPath+"/internal/harness"] = true
	want := []string{benchPath + "/internal/harness", testkitPath + "/freeport", "testing"}
	if bad := unshippable(deps); !slices.Equal(bad, want) {
		t.Errorf("unshippable = %v, want %v", bad, want)
	}
}

// TestBenchIsItsOwnModule: bench/ is a module of its own, so it is no part
// of the module xcaddy fetches (Go leaves a nested module's directory out of
// its parent's), and the gateway's go.mod requires nothing that only the
// benchmarks need: building mxgate as a plugin pulls none of it.
func TestBenchIsItsOwnModule(t *testing.T) {
	if got := strings.TrimSpace(goCmd(t, "bench", "list", "-m")); got != benchPath {
		t.Fatalf("bench/ is in module %q, want its own, %s", got, benchPath)
	}
	for pkg := range lineSet(goCmd(t, "", "list", "./...")) {
		if pkg == benchPath || strings.HasPrefix(pkg, benchPath+"/") {
			t.Errorf("the gateway's module holds %s", pkg)
		}
	}
	if mods := lineSet(goCmd(t, "", "list", "-m", "all")); mods[benchPath] {
		t.Errorf("the gateway's module graph holds %s", benchPath)
	}

	// The modules the packages of each module, tests included, are built from.
	uses := func(dir string) map[string]bool {
		return lineSet(goCmd(t, dir, "list", "-deps", "-test", "-f", "{{with .Module}}{{.Path}}{{end}}", "./..."))
	}
	gateway, bench := uses(""), uses("bench")
	if !bench[modulePath] || !bench[benchPath] {
		t.Fatalf("bench's packages are built from %v: neither mxgate's nor bench's own module", bench)
	}
	var mod struct {
		Require []struct {
			Path     string
			Indirect bool
		}
	}
	if err := json.Unmarshal([]byte(goCmd(t, "", "mod", "edit", "-json")), &mod); err != nil {
		t.Fatal(err)
	}
	if len(mod.Require) == 0 {
		t.Fatal("go mod edit -json listed no requirement")
	}
	var reqs []requirement
	for _, r := range mod.Require {
		reqs = append(reqs, requirement{r.Path, r.Indirect})
	}
	for _, p := range benchOnlyRequirements(reqs, gateway, bench) {
		t.Errorf("the gateway's go.mod requires %s, from which none of its packages or tests is built (a benchmark's requirement belongs in bench/go.mod; go mod tidy drops an unused one)", p)
	}
}

// A requirement is a line of a go.mod's require blocks.
type requirement struct {
	path     string
	indirect bool
}

// benchOnlyRequirements are the requirements of the gateway's go.mod that
// only the benchmarks need: a module that bench's packages are built from
// and the gateway's packages and tests are not, or a direct requirement
// that no package of the gateway's is built from.
func benchOnlyRequirements(reqs []requirement, gateway, bench map[string]bool) []string {
	var out []string
	for _, r := range reqs {
		if bench[r.path] && !gateway[r.path] || !r.indirect && !gateway[r.path] {
			out = append(out, r.path)
		}
	}
	return out
}

func TestBenchOnlyRequirements(t *testing.T) {
	gateway := map[string]bool{"github.com/caddyserver/caddy/v2": true, "github.com/redis/go-redis/v9": true}
	bench := map[string]bool{"github.com/redis/go-redis/v9": true, "example.com/loadgen": true}
	reqs := []requirement{
		{"github.com/caddyserver/caddy/v2", false},
		{"github.com/redis/go-redis/v9", false},
		{"example.com/caddy-dependency", true}, // in the graph for Caddy's sake
	}
	if got := benchOnlyRequirements(reqs, gateway, bench); len(got) != 0 {
		t.Errorf("the gateway's own requirements taken for the benchmarks': %v", got)
	}
	reqs = append(reqs, requirement{"example.com/loadgen", true}, requirement{"example.com/plotter", false})
	want := []string{"example.com/loadgen", "example.com/plotter"}
	if got := benchOnlyRequirements(reqs, gateway, bench); !slices.Equal(got, want) {
		t.Errorf("benchOnlyRequirements = %v, want %v", got, want)
	}
}
