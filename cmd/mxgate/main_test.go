package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"
	"testing"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
)

// The binary under test, built once by TestMain with the linker flags the
// Makefile passes.
var binary string

const (
	testVersion = "v9.8.7-3-gabcdef0-dirty"
	testCommit  = "abcdef0123456789abcdef0123456789abcdef01"
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mxgate-cmd-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "mxgate")
	// -buildvcs=false as a test environment without git has it; the
	// other ways are built by TestBuildInfoShowsVersion.
	if err := buildMxgate(binary, true, "false"); err != nil {
		fmt.Fprintln(os.Stderr, "building mxgate:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildMxgate builds mxgate to out, with the linker flags the Makefile
// passes when stamp is set, and with -buildvcs=vcs whatever GOFLAGS says.
func buildMxgate(out string, stamp bool, vcs string) error {
	args := []string{"build", "-buildvcs=" + vcs, "-o", out}
	if stamp {
		args = append(args, "-ldflags", "-X github.com/mxgate/mxgate/internal/version.Version="+testVersion+
			" -X github.com/mxgate/mxgate/internal/version.Commit="+testCommit)
	}
	build := exec.Command("go", append(args, ".")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	return build.Run()
}

// mxgate runs the binary with args and returns its stdout, stderr and exit
// status.
func mxgate(t *testing.T, env []string, args ...string) (stdout, stderr string, status int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		return out.String(), errOut.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errOut.String(), 0
}

func TestVersion(t *testing.T) {
	out, _, status := mxgate(t, nil, "version")
	if status != 0 {
		t.Fatalf("version exited %d", status)
	}
	for _, want := range []string{
		"mxgate " + testVersion + "\n",
		"commit " + testCommit + "\n",
		"caddy  v2.11.9\n",
		"go     go1.",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("version output lacks %q:\n%s", want, out)
		}
	}

	out, _, _ = mxgate(t, nil, "--version")
	want := "mxgate " + testVersion + " (commit abcdef012345, caddy v2.11.9)\n"
	if out != want {
		t.Errorf("--version = %q, want %q", out, want)
	}
}

// TestBuildInfoShowsVersion builds mxgate with and without the Makefile's
// linker flags, with VCS stamping on (a stock toolchain in a git checkout,
// as CI and a newcomer's clone have it) and off, and checks the rule of
// internal/version each way: the stamped version wins; else the version Go
// recorded from VCS; else unknown. build-info and version agree each time.
func TestBuildInfoShowsVersion(t *testing.T) {
	rev, dirty, inGit := gitHead(t)
	if !inGit && os.Getenv("CI") == "true" {
		t.Fatal("not in a git checkout under CI: VCS stamping cannot be tested")
	}
	dir := t.TempDir()
	for _, tc := range []struct {
		name  string
		stamp bool
		vcs   string
	}{
		{"stamped, vcs off", true, "false"},
		{"stamped, vcs on", true, "true"},
		{"plain, vcs on", false, "true"},
		{"plain, vcs off", false, "false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.vcs == "true" && !inGit {
				t.Skip("Go stamps no VCS information here (no .git directory above)")
			}
			bin := filepath.Join(dir, strings.ReplaceAll(tc.name, ", ", "-"))
			if err := buildMxgate(bin, tc.stamp, tc.vcs); err != nil {
				t.Fatalf("go build: %v", err)
			}
			run := func(arg string) string {
				t.Helper()
				out, err := exec.Command(bin, arg).Output()
				if err != nil {
					t.Fatalf("%s: %v", arg, err)
				}
				return string(out)
			}
			ver, info := run("version"), run("build-info")
			version, commit := field(ver, "mxgate "), field(ver, "commit ")
			mod := field(info, "mod\tgithub.com/mxgate/mxgate\t")
			if i := strings.IndexByte(mod, '\t'); i >= 0 {
				mod = mod[:i]
			}
			switch {
			case tc.stamp:
				if version != testVersion || commit != testCommit {
					t.Errorf("version %q commit %q, want the stamped %q %q", version, commit, testVersion, testCommit)
				}
			case tc.vcs == "true":
				// Go's pseudo-version (or tag) of HEAD, and HEAD itself.
				if version == "unknown" || version == "(devel)" || (!strings.Contains(version, rev[:12]) && !strings.HasPrefix(version, "v")) {
					t.Errorf("version %q, want Go's version of %s", version, rev)
				}
				wantCommit := rev
				if dirty {
					wantCommit += "-dirty"
				}
				if commit != wantCommit {
					t.Errorf("commit %q, want %q", commit, wantCommit)
				}
			default:
				if version != "unknown" || commit != "unknown" {
					t.Errorf("version %q commit %q, want unknown: nothing tells", version, commit)
				}
			}
			wantMod := version
			if version == "unknown" {
				wantMod = "(devel)"
			}
			if mod != wantMod {
				t.Errorf("build-info shows mxgate's module at %q, version says %q:\n%.400s", mod, version, info)
			}
		})
	}
}

// field is the rest of the line of out that starts with prefix.
func field(out, prefix string) string {
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			return strings.TrimSpace(rest)
		}
	}
	return ""
}

// gitHead is the commit Go's VCS stamping sees here and whether its work
// tree has changes (as Go's vcs.modified counts them: untracked files
// too). inGit is false where Go stamps nothing: outside a git checkout, or
// in a linked work tree (`git worktree add`), whose .git is a file that
// Go's VCS lookup, wanting a directory, does not take for a repository.
func gitHead(t *testing.T) (rev string, dirty, inGit bool) {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if fi, err := os.Stat(filepath.Join(dir, ".git")); err == nil && fi.IsDir() {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false, false
		}
		dir = parent
	}
	out, err := exec.Command("git", "-C", dir, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatalf("git rev-parse in %s: %v", dir, err)
	}
	status, err := exec.Command("git", "-C", dir, "status", "--porcelain").Output()
	if err != nil {
		t.Fatalf("git status: %v", err)
	}
	return strings.TrimSpace(string(out)), len(bytes.TrimSpace(status)) > 0, true
}

// everyCommand is every command mxgate offers: Caddy's, less the three
// that would replace the binary with a stock Caddy, and mxgate's own.
var everyCommand = []string{
	"adapt", "build-info", "completion", "environ", "fdx-dev", "file-server",
	"fmt", "hash-password", "healthcheck", "list-modules", "manpage",
	"mdx-sign", "reload", "respond", "reverse-proxy", "run", "start", "stop",
	"storage", "trust", "untrust", "validate", "version",
}

func TestHelpNamesMxgate(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"--help"}, {}} {
		out, _, status := mxgate(t, nil, args...)
		if status != 0 {
			t.Fatalf("%v exited %d", args, status)
		}
		if !strings.Contains(out, "Usage:\n  mxgate [command]") {
			t.Errorf("%v: usage does not name mxgate:\n%s", args, out)
		}
		for _, bad := range []string{"caddyserver.com", "xcaddy", "$ caddy", "'caddy "} {
			if strings.Contains(out, bad) {
				t.Errorf("%v: help mentions %q", args, bad)
			}
		}
		// The command list says mxgate where Caddy's says Caddy (only
		// version speaks of the Caddy version it embeds).
		list := out[strings.Index(out, "Available Commands:"):]
		list = list[:strings.Index(list, "Flags:")]
		for _, line := range strings.Split(list, "\n") {
			if !strings.HasPrefix(line, "  version ") && regexp.MustCompile(`(?i)\bcaddy\b`).MatchString(line) {
				t.Errorf("%v: the command list speaks of Caddy: %s", args, line)
			}
		}
		for _, name := range everyCommand {
			if !regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(name) + ` `).MatchString(list) {
				t.Errorf("%v: command %s is not listed", args, name)
			}
		}
		for _, name := range []string{"upgrade", "add-package", "remove-package"} {
			if strings.Contains(list, "  "+name+" ") {
				t.Errorf("%v: %s is offered", args, name)
			}
		}
	}

	// A command of Caddy's: mxgate's summary and notes, then Caddy's own
	// text as Caddy wrote it, said to be Caddy's.
	out, _, _ := mxgate(t, nil, "help", "run")
	caddyLong := strings.TrimSpace(caddycmd.Commands()["run"].Long)
	for _, want := range []string{
		"Runs mxgate in the foreground until it is stopped.\n",
		"Usage:\n  mxgate run [--config <path>",
		strings.TrimSpace(redactingNote),
		caddyHeading + "\n\n" + caddyLong,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("help run lacks %q:\n%s", want, out)
		}
	}
	if i, j := strings.Index(out, "mxgate-caddyfile"), strings.Index(out, caddyHeading); i < 0 || j < i {
		t.Errorf("help run: mxgate's note does not come before Caddy's text:\n%s", out)
	}
	out, _, _ = mxgate(t, nil, "help", "reload")
	if !strings.Contains(out, strings.TrimSpace(adminClientNote)) || !strings.Contains(out, strings.TrimSpace(caddycmd.Commands()["reload"].Long)) {
		t.Errorf("help reload lacks the admin endpoint's note or Caddy's text:\n%s", out)
	}
	// mxgate's own commands keep their own help.
	out, _, _ = mxgate(t, nil, "help", "healthcheck")
	if !strings.Contains(out, "Sends one GET to a readiness URL") || strings.Contains(out, caddyHeading) {
		t.Errorf("help healthcheck:\n%s", out)
	}
}

// TestEveryCommandIsAccountedFor: each command registered with Caddy is
// one of Caddy's that mxgate summarizes, one of mxgate's own, one mxgate
// replaces, or one it removes; and each summary names a command Caddy
// has. A Caddy upgrade that adds or drops a command fails here, rather
// than show Caddy's words in mxgate's command list unnoticed.
func TestEveryCommandIsAccountedFor(t *testing.T) {
	replaced := []string{"version", "build-info", "manpage", "completion"}
	for name := range caddycmd.Commands() {
		_, summarized := caddyCommands[name]
		if !summarized && !slices.Contains(ownCommands, name) && !slices.Contains(replaced, name) && !slices.Contains(removedCommands, name) {
			t.Errorf("command %s is not accounted for: give it a summary in caddyCommands, or list it", name)
		}
	}
	for name := range caddyCommands {
		if _, ok := caddycmd.Commands()[name]; !ok {
			t.Errorf("caddyCommands summarizes %s, which Caddy no longer has", name)
		}
	}
	for _, name := range ownCommands {
		if _, ok := caddycmd.Commands()[name]; !ok {
			t.Errorf("ownCommands lists %s, which is not registered", name)
		}
	}
}

func TestBinaryReplacingCommandsAreUnknown(t *testing.T) {
	for _, name := range []string{"upgrade", "add-package", "remove-package"} {
		_, errOut, status := mxgate(t, nil, name, "github.com/example/plugin")
		if status == 0 {
			t.Errorf("%s exited 0", name)
		}
		if want := `unknown command "` + name + `" for "mxgate"`; !strings.Contains(errOut, want) {
			t.Errorf("%s: stderr lacks %q:\n%s", name, want, errOut)
		}
	}
}

func TestExitStatusOfCaddyCommands(t *testing.T) {
	// manpage without --directory fails with Caddy's ExitCodeFailedQuit (3),
	// reported through mxgate's runFunc.
	if _, _, status := mxgate(t, nil, "manpage"); status != 3 {
		t.Errorf("manpage without --directory exited %d, want 3", status)
	}
	// validate of a missing file: status 1.
	if _, _, status := mxgate(t, nil, "validate", "--config", filepath.Join(t.TempDir(), "none")); status != 1 {
		t.Errorf("validate of a missing file exited %d, want 1", status)
	}
}

func TestManpageAndCompletionNameMxgate(t *testing.T) {
	dir := t.TempDir()
	if _, errOut, status := mxgate(t, nil, "manpage", "--directory", dir); status != 0 {
		t.Fatalf("manpage exited %d: %s", status, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "mxgate-run.8")); err != nil {
		t.Errorf("no mxgate-run.8: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "mxgate-upgrade.8")); err == nil {
		t.Error("a man page for upgrade was written")
	}
	out, _, status := mxgate(t, nil, "completion", "bash")
	if status != 0 || !strings.Contains(out, "__start_mxgate") {
		t.Errorf("completion bash (status %d) is not mxgate's:\n%.300s", status, out)
	}
}

func TestExitStatus(t *testing.T) {
	e := &statusError{status: 3}
	for _, tc := range []struct {
		err  error
		want int
	}{
		{errors.New("plain"), 1},
		{fmt.Errorf("wrapped: %w", e), 3},
		{e, 3},
		{&statusError{status: 2, err: errors.New("x")}, 2},
		{&statusError{status: 0}, 1},
	} {
		if got := exitStatus(tc.err); got != tc.want {
			t.Errorf("exitStatus(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

// TestStartupErrorNamesTheDirective runs `validate` and `run` on a
// Caddyfile whose key is an unset environment variable: Caddy's error
// chain carries the directive's name, given by the module where the
// error is made, before its complaint.
func TestStartupErrorNamesTheDirective(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "Caddyfile")
	cf := "{\n\tadmin off\n}\nhttp://127.0.0.1:1 {\n\tmdx_hmac verify {\n\t\tkey {env.MXGATE_TEST_UNSET_KEY}\n\t}\n\trespond ok\n}\n"
	if err := os.WriteFile(path, []byte(cf), 0o600); err != nil {
		t.Fatal(err)
	}
	const want = "provision http.handlers.mdx_hmac_verify: mdx_hmac verify: key 1: is empty (an unset {env.*} variable or an empty {file.*}?)"
	env := []string{"MXGATE_TEST_UNSET_KEY=", "HOME=" + dir, "XDG_DATA_HOME=" + dir, "XDG_CONFIG_HOME=" + dir}
	for _, cmd := range []string{"validate", "run"} {
		_, stderr, status := mxgate(t, env, cmd, "--config", path, "--adapter", "caddyfile")
		if status == 0 {
			t.Fatalf("%s succeeded:\n%s", cmd, stderr)
		}
		if !strings.Contains(stderr, want) {
			t.Errorf("%s: stderr lacks %q:\n%s", cmd, want, stderr)
		}
	}
}

func TestGCDefault(t *testing.T) {
	orig := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(orig) })
	env := func(kv ...string) func(string) (string, bool) {
		return func(k string) (string, bool) {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1], true
				}
			}
			return "", false
		}
	}
	t.Run("GOGC unset", func(t *testing.T) {
		setGCDefault(env())
		if got := debug.SetGCPercent(100); got != gcPercent {
			t.Errorf("the collector's target is %d, want mxgate's %d", got, gcPercent)
		}
	})
	t.Run("GOGC set", func(t *testing.T) {
		setGCDefault(env("GOGC", "100"))
		if got := debug.SetGCPercent(100); got != 100 {
			t.Errorf("GOGC=100 in the environment: the target is %d, want it left at 100", got)
		}
	})
}
