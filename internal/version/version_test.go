package version

import (
	"runtime/debug"
	"strings"
	"testing"
)

func buildInfo(mainVersion string, settings map[string]string) *debug.BuildInfo {
	bi := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Path:      ModulePath + "/cmd/mxgate",
		Main:      debug.Module{Path: ModulePath, Version: mainVersion},
		Deps:      []*debug.Module{{Path: caddyModulePath, Version: "v2.11.9"}},
	}
	for k, v := range settings {
		bi.Settings = append(bi.Settings, debug.BuildSetting{Key: k, Value: v})
	}
	return bi
}

func TestFromBuildInfo(t *testing.T) {
	for _, tc := range []struct {
		name                string
		bi                  *debug.BuildInfo
		ldVersion, ldCommit string
		want                Info
	}{
		{
			name:      "linker flags win",
			bi:        buildInfo("v0.0.0-20261121-abc", map[string]string{"vcs.revision": "ffff"}),
			ldVersion: "v1.2.3-4-gabcdef0-dirty", ldCommit: "abcdef0123",
			want: Info{Version: "v1.2.3-4-gabcdef0-dirty", Commit: "abcdef0123", Caddy: "v2.11.9", Go: "go1.26.8"},
		},
		{
			name: "build info when no linker flags",
			bi:   buildInfo("v1.0.0", map[string]string{"vcs.revision": "0123456789abcdef", "vcs.modified": "true"}),
			want: Info{Version: "v1.0.0", Commit: "0123456789abcdef-dirty", Caddy: "v2.11.9", Go: "go1.26.8"},
		},
		{
			// A stock toolchain in a git checkout (-buildvcs=auto) records a
			// pseudo-version; `make build` stamps git describe: the stamp wins.
			name:      "linker flags win over a VCS pseudo-version",
			bi:        buildInfo("v0.0.0-20261121164344-4122eae3e998+dirty", map[string]string{"vcs.revision": "4122eae3e998aaaa", "vcs.modified": "true"}),
			ldVersion: "v0.4.0-2-g4122eae-dirty", ldCommit: "4122eae3e998aaaa",
			want: Info{Version: "v0.4.0-2-g4122eae-dirty", Commit: "4122eae3e998aaaa", Caddy: "v2.11.9", Go: "go1.26.8"},
		},
		{
			name:      "a linker-stamped unknown counts as none",
			bi:        buildInfo("v0.0.0-20261121164344-4122eae3e998", map[string]string{"vcs.revision": "4122eae3e998aaaa"}),
			ldVersion: Unknown, ldCommit: Unknown,
			want: Info{Version: "v0.0.0-20261121164344-4122eae3e998", Commit: "4122eae3e998aaaa", Caddy: "v2.11.9", Go: "go1.26.8"},
		},
		{
			// go build -buildvcs=true of an older toolchain, or a module
			// version Go could not work out: the revision stands in.
			name: "devel with a VCS revision",
			bi:   buildInfo("(devel)", map[string]string{"vcs.revision": "0123456789abcdef", "vcs.modified": "true"}),
			want: Info{Version: "0123456789abcdef-dirty", Commit: "0123456789abcdef-dirty", Caddy: "v2.11.9", Go: "go1.26.8"},
		},
		{
			name: "devel is not a version",
			bi:   buildInfo("(devel)", nil),
			want: Info{Version: Unknown, Commit: Unknown, Caddy: "v2.11.9", Go: "go1.26.8"},
		},
		{
			name: "no build info",
			want: Info{Version: Unknown, Commit: Unknown, Caddy: Unknown},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := fromBuildInfo(tc.bi, tc.ldVersion, tc.ldCommit)
			if tc.bi == nil {
				got.Go = "" // the running toolchain's
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestModuleVersionAsDependency(t *testing.T) {
	// As xcaddy builds it: a generated main module requires mxgate,
	// replaced by a local directory.
	bi := &debug.BuildInfo{
		Main: debug.Module{Path: "caddy", Version: "(devel)"},
		Deps: []*debug.Module{
			{Path: caddyModulePath, Version: "v2.11.9"},
			{Path: ModulePath, Version: "v0.3.0"},
		},
	}
	if got := fromBuildInfo(bi, "", "").Version; got != "v0.3.0" {
		t.Errorf("version = %q, want v0.3.0", got)
	}
}

func TestCaddyReplaced(t *testing.T) {
	bi := buildInfo("v1.0.0", nil)
	bi.Deps[0].Replace = &debug.Module{Path: "../caddy", Version: ""}
	if got := fromBuildInfo(bi, "", "").Caddy; got != "v2.11.9 => ../caddy" {
		t.Errorf("caddy = %q", got)
	}
}

func TestWithMainVersion(t *testing.T) {
	bi := buildInfo("(devel)", nil)
	got := withMainVersion(bi, "v1.2.3")
	if got.Main.Version != "v1.2.3" {
		t.Errorf("main version = %q, want v1.2.3", got.Main.Version)
	}
	if bi.Main.Version != "(devel)" {
		t.Error("withMainVersion changed its argument")
	}
	if !strings.Contains(got.String(), "mod\t"+ModulePath+"\tv1.2.3") {
		t.Errorf("String() does not show the version:\n%s", got)
	}
	// A pseudo-version the toolchain made up from VCS is replaced too:
	// build-info shows what version shows.
	if got := withMainVersion(buildInfo("v0.0.0-20261121164344-4122eae3e998", nil), "v1.2.3"); got.Main.Version != "v1.2.3" {
		t.Errorf("main version = %q, want v1.2.3", got.Main.Version)
	}
	// Nothing known: nothing filled in.
	if got := withMainVersion(buildInfo("(devel)", nil), Unknown); got.Main.Version != "(devel)" {
		t.Errorf("main version = %q, want (devel)", got.Main.Version)
	}
	// Another main module (xcaddy's) is left alone.
	other := buildInfo("(devel)", nil)
	other.Main.Path = "caddy"
	if got := withMainVersion(other, "v1.2.3"); got.Main.Version != "(devel)" {
		t.Errorf("another main module's version = %q, want (devel)", got.Main.Version)
	}
}

func TestString(t *testing.T) {
	s := Info{Version: "v1.2.3", Commit: "abc", Caddy: "v2.11.9", Go: "go1.26.8"}.String()
	for _, want := range []string{"mxgate v1.2.3\n", "commit abc\n", "caddy  v2.11.9\n", "go     go1.26.8\n"} {
		if !strings.Contains(s, want) {
			t.Errorf("String() lacks %q:\n%s", want, s)
		}
	}
}
