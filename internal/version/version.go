// Package version tells which mxgate this binary is: its version, the
// commit it was built from, and the Caddy it embeds.
//
// mxgate's version is, by the first rule that gives one:
//
//  1. the version the linker stamped in (Version, set by `make build` and
//     the container image from `git describe --tags --always --dirty`):
//     what the operator tagged wins over anything the toolchain guessed;
//  2. the module version the Go toolchain recorded for mxgate, when it is
//     a real version and not "(devel)": the required version when mxgate
//     is a dependency (xcaddy), or, when mxgate is the main module and the
//     toolchain stamps VCS information (-buildvcs=auto, the default, in a
//     git checkout), the tag or pseudo-version of the commit, with
//     "+dirty" for uncommitted changes;
//  3. the VCS revision from the build settings, with "-dirty" for
//     uncommitted changes;
//  4. "unknown".
//
// The commit is the one the linker stamped in (Commit), else the VCS
// revision from the build settings (with "-dirty"), else "unknown".
// A linker value of "unknown" (what the Makefile and the image stamp when
// git is not at hand) counts as none. `mxgate build-info` shows the same
// version for mxgate's module as `mxgate version`, so the two never
// disagree whatever -buildvcs was.
//
//	go build -ldflags "-X github.com/mxgate/mxgate/internal/version.Version=v1.2.3 \
//	  -X github.com/mxgate/mxgate/internal/version.Commit=0123abc" ./cmd/mxgate
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
	info := Info{Version: stamped(ldVersion), Commit: stamped(ldCommit), Caddy: Unknown, Go: runtime.Version()}
	if bi != nil {
		if bi.GoVersion != "" {
			info.Go = bi.GoVersion
		}
		if info.Version == "" {
			info.Version = moduleVersion(bi)
		}
		if info.Version == "" {
			info.Version = vcsCommit(bi)
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

// stamped is a linker-stamped value, or "" when the linker stamped none
// or stamped Unknown (the Makefile's and the image's stand-in when git
// was not at hand).
func stamped(v string) string {
	v = strings.TrimSpace(v)
	if v == Unknown {
		return ""
	}
	return v
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
		if m.Replace != nil && realVersion(m.Replace.Version) {
			return m.Replace.Version
		}
		if realVersion(m.Version) {
			return m.Version
		}
	}
	return ""
}

func realVersion(v string) bool { return v != "" && v != "(devel)" }

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
// module version replaced by the version Get tells, so that
// `mxgate build-info` and `mxgate version` agree whatever the toolchain
// recorded ("(devel)" without VCS stamping, a pseudo-version with it).
// ok is false when the binary carries no build information.
func BuildInfo() (bi *debug.BuildInfo, ok bool) {
	bi, ok = debug.ReadBuildInfo()
	if !ok {
		return nil, false
	}
	return withMainVersion(bi, fromBuildInfo(bi, Version, Commit).Version), true
}

// withMainVersion is bi with the main module's version set to v, when
// mxgate is the main module and v is known; bi itself is not changed.
func withMainVersion(bi *debug.BuildInfo, v string) *debug.BuildInfo {
	if bi.Main.Path != ModulePath || v == "" || v == Unknown || v == bi.Main.Version {
		return bi
	}
	cp := *bi
	cp.Main.Version = v
	return &cp
}
