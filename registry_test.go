package mxgate

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// caddyRegistries are Caddy's packages whose Register* functions add to
// what a Caddy binary offers (modules, networks, adapters, directives,
// global options, directive order, commands), each with the name a file
// knows it by when its import names none.
var caddyRegistries = map[string]string{
	"github.com/caddyserver/caddy/v2":                           "caddy",
	"github.com/caddyserver/caddy/v2/caddyconfig":               "caddyconfig",
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile": "httpcaddyfile",
	"github.com/caddyserver/caddy/v2/cmd":                       "caddycmd",
	"github.com/caddyserver/caddy/v2/modules/caddyhttp":         "caddyhttp",
}

// registrations reads a package's files: whether they call one of Caddy's
// Register* functions, and the import paths they import blank (for their
// registrations alone).
func registrations(files []*ast.File) (registers bool, blank []string) {
	for _, f := range files {
		names := map[string]bool{}
		for _, imp := range f.Imports {
			path, err := strconv.Unquote(imp.Path.Value)
			if err != nil {
				continue
			}
			if imp.Name != nil && imp.Name.Name == "_" {
				blank = append(blank, path)
				continue
			}
			if name, ok := caddyRegistries[path]; ok {
				if imp.Name != nil {
					name = imp.Name.Name
				}
				names[name] = true
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if x, ok := sel.X.(*ast.Ident); ok && names[x.Name] && strings.HasPrefix(sel.Sel.Name, "Register") {
				registers = true
			}
			return true
		})
	}
	return registers, blank
}

func parseFiles(t *testing.T, dir string, names []string) []*ast.File {
	t.Helper()
	fset := token.NewFileSet()
	var files []*ast.File
	for _, name := range names {
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	return files
}

// TestOnePlaceRegisters: this package is the one place that registers
// mxgate with Caddy. Every package of the module whose code (tests aside)
// registers something with Caddy is Caddy glue under caddymodule/, or this
// package; each is among this package's dependencies, so that a build
// with xcaddy has all of it; no other package imports one of them for its
// registrations alone (a blank import); and cmd/mxgate imports this
// package, so that the binary registers what xcaddy's builds do.
func TestOnePlaceRegisters(t *testing.T) {
	registering := map[string]bool{}
	blankImports := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(goCmd(t, "", "list", "-f", "{{.ImportPath}}\t{{.Dir}}\t{{join .GoFiles \" \"}}", "./...")), "\n") {
		pkg, rest, _ := strings.Cut(line, "\t")
		dir, goFiles, _ := strings.Cut(rest, "\t")
		regs, blank := registrations(parseFiles(t, dir, strings.Fields(goFiles)))
		if regs {
			registering[pkg] = true
		}
		blankImports[pkg] = blank
	}
	for _, want := range []string{modulePath, modulePath + "/caddymodule/mdx", modulePath + "/caddymodule/cli"} {
		if !registering[want] {
			t.Fatalf("%s registers nothing with Caddy, as far as this test reads: the test no longer finds registrations (found %v)", want, registering)
		}
	}

	rootDeps := lineSet(goCmd(t, "", "list", "-deps", "-f", "{{.ImportPath}}", "."))
	for pkg := range registering {
		if pkg != modulePath && !strings.HasPrefix(pkg, modulePath+"/caddymodule/") {
			t.Errorf("%s registers with Caddy: only Caddy glue under caddymodule/ may, imported by mxgate.go", pkg)
		}
		if !rootDeps[pkg] {
			t.Errorf("%s registers with Caddy but mxgate.go does not import it: a build with xcaddy would lack it", pkg)
		}
	}
	for pkg, blank := range blankImports {
		for _, imp := range blank {
			if registering[imp] && imp != modulePath && pkg != modulePath {
				t.Errorf("%s imports %s for its registrations: only mxgate.go does", pkg, imp)
			}
		}
	}
	cmdImports := strings.Fields(goCmd(t, "", "list", "-f", "{{join .Imports \" \"}}", "./cmd/mxgate"))
	if !slices.Contains(cmdImports, modulePath) {
		t.Errorf("cmd/mxgate does not import %s, which registers mxgate's modules: imports %v", modulePath, cmdImports)
	}
}

func TestRegistrations(t *testing.T) {
	parse := func(src string) *ast.File {
		f, err := parser.ParseFile(token.NewFileSet(), "x.go", src, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	for _, tc := range []struct {
		name      string
		src       string
		registers bool
		blank     []string
	}{
		{"a module", `package p
import "github.com/caddyserver/caddy/v2"
func init() { caddy.RegisterModule(nil) }`, true, nil},
		{"a command, under another name", `package p
import cc "github.com/caddyserver/caddy/v2/cmd"
func init() { cc.RegisterCommand(cc.Command{}) }`, true, nil},
		{"directive order", `package p
import "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
var _ = func() int { httpcaddyfile.RegisterDirectiveOrder("x", httpcaddyfile.Before, "redir"); return 0 }()`, true, nil},
		{"metrics and a store are not Caddy's", `package p
import "github.com/prometheus/client_golang/prometheus"
func f(reg prometheus.Registerer, gate, caddy interface{ Register() }) { reg.Register(nil); gate.Register(); caddy.Register() }`, false, nil},
		{"a blank import", `package p
import _ "github.com/mxgate/mxgate/caddymodule/mdx"`, false, []string{"github.com/mxgate/mxgate/caddymodule/mdx"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			registers, blank := registrations([]*ast.File{parse(tc.src)})
			if registers != tc.registers || !slices.Equal(blank, tc.blank) {
				t.Errorf("registrations = %v, %v; want %v, %v", registers, blank, tc.registers, tc.blank)
			}
		})
	}
}
