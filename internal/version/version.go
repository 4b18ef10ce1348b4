// Package version tells which mxgate this binary is: its version, the
// commit it was built from, and the Caddy it embeds.
//
// The version and commit come from the linker when the Makefile or the
// container image builds mxgate:
//
//	go build -ldflags "-X github.com/mxgate/mxgate/internal/version.Version=v1.2.3 \
//	  -X github.com/mxgate/mxgate/internal/version.Commit=0123abc" ./cmd/mxgate
//
// Otherwise they come from the build information the Go toolchain embeds:
// the main module's version (set when mxgate is built as a dependency, or
// from a VCS tag when Go stamps VCS information) and vcs.revision.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// Set by the linker (-ldflags -X); empty otherwise.
var (
	// Version is mxgate's version, from `git describe --tags --always --dirty`.
	Version string
	// Commit is the full commit id mxgate was built from.
	Commit string
)

// ModulePath is mxgate's Go module path.
const ModulePath = "github.com/mxgate/mxgate"

const caddyModulePath = "github.com/caddyserver/caddy/v2"

// Unknown is what a field holds when nothing tells its value.
const Unknown = "unknown"

// Info describes this binary. Every field is set; a value nothing tells is
// Unknown.
type Info struct {
	Version string // mxgate's version
	Commit  string // the commit mxgate was built from; "-dirty" marks uncommitted changes
	Caddy   string // the version of the Caddy module linked in
	Go      string // the Go toolchain that built the binary
}

// Get reads this binary's identity.
func Get() Info {
	bi, _ := debug.ReadBuildInfo()
	return fromBuildInfo(bi, Version, Commit)
}

// fromBuildInfo is Get with its inputs as parameters, for tests.
func fromBuildInfo(bi *debug.BuildInfo, ldVersion, ldCommit string) Info {
	info := Info{Version: ldVersion, Commit: ldCommit, Caddy: Unknown, Go: runtime.Version()}
	if bi != nil {
		if bi.GoVersion != "" {
			info.Go = bi.GoVersion
		}
		if info.Version == "" {
			info.Version = moduleVersion(bi)
		}
		if info.Commit == "" {
			info.Commit = vcsCommit(bi)
		}
		for _, dep := range bi.Deps {
			if dep.Path == caddyModulePath {
				info.Caddy = dep.Version
				if dep.Replace != nil {
					info.Caddy += " => " + dep.Replace.Path
					if dep.Replace.Version != "" {
						info.Caddy += "@" + dep.Replace.Version
					}
				}
				break
			}
		}
	}
	if info.Version == "" {
		info.Version = Unknown
	}
	if info.Commit == "" {
		info.Commit = Unknown
	}
	return info
}

// moduleVersion is mxgate's module version: the main module's when mxgate
// is the main module, or the dependency's when mxgate was built into
// another main module (as xcaddy does). "(devel)" tells nothing and is
// skipped.
func moduleVersion(bi *debug.BuildInfo) string {
	mods := []*debug.Module{&bi.Main}
	mods = append(mods, bi.Deps...)
	for _, m := range mods {
		if m.Path != ModulePath {
			continue
		}
		if m.Replace != nil && m.Replace.Version != "" && m.Replace.Version != "(devel)" {
			return m.Replace.Version
		}
		if m.Version != "" && m.Version != "(devel)" {
			return m.Version
		}
	}
	return ""
}

func vcsCommit(bi *debug.BuildInfo) string {
	var rev string
	var modified bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if rev != "" && modified {
		rev += "-dirty"
	}
	return rev
}

// String is the text `mxgate version` prints: one "name value" line each
// for mxgate's version, its commit, Caddy's version and Go's.
func (i Info) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "mxgate %s\n", i.Version)
	fmt.Fprintf(&b, "commit %s\n", i.Commit)
	fmt.Fprintf(&b, "caddy  %s\n", i.Caddy)
	fmt.Fprintf(&b, "go     %s\n", i.Go)
	return b.String()
}

// Short is a one-line form, for --version and the User-Agent of probes.
func (i Info) Short() string {
	commit := i.Commit
	if len(commit) > 12 && !strings.HasSuffix(commit, "-dirty") {
		commit = commit[:12]
	}
	return fmt.Sprintf("mxgate %s (commit %s, caddy %s)", i.Version, commit, i.Caddy)
}

// BuildInfo is the Go build information of this binary with mxgate's
// module version filled in from Version when the toolchain recorded only
// "(devel)" (as it does when building from a work tree without VCS
// stamping). ok is false when the binary carries no build information.
func BuildInfo() (bi *debug.BuildInfo, ok bool) {
	bi, ok = debug.ReadBuildInfo()
	if !ok {
		return nil, false
	}
	return withMainVersion(bi, Version), true
}

func withMainVersion(bi *debug.BuildInfo, ldVersion string) *debug.BuildInfo {
	if bi.Main.Path != ModulePath || ldVersion == "" || (bi.Main.Version != "" && bi.Main.Version != "(devel)") {
		return bi
	}
	cp := *bi
	cp.Main.Version = ldVersion
	return &cp
}
