package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The README's shell blocks: the set-up commands first, then the
// walkthrough.
func readmeShellBlocks(t *testing.T) (setup, walkthrough string, refusal string) {
	t.Helper()
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var sh []string
	var plain []string
	var cur *[]string
	var body []string
	for _, line := range strings.Split(string(raw), "\n") {
		switch {
		case cur == nil && line == "```sh":
			cur, body = &sh, nil
		case cur == nil && line == "```":
			cur, body = &plain, nil
		case cur != nil && line == "```":
			*cur = append(*cur, strings.Join(body, "\n"))
			cur = nil
		case cur != nil:
			body = append(body, line)
		}
	}
	if len(sh) < 2 || len(plain) < 1 {
		t.Fatalf("the README has %d shell blocks and %d plain ones; want the set-up commands, the walkthrough and the MDX refusal", len(sh), len(plain))
	}
	return sh[0], sh[1], plain[0]
}

// shellCommands splits a shell block into its commands: a line ending in
// a backslash goes on with the next, and comment lines are left out.
func shellCommands(block string) []string {
	var out []string
	var cur []string
	for _, line := range strings.Split(block, "\n") {
		trimmed := strings.TrimSpace(line)
		if len(cur) == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if cont, ok := strings.CutSuffix(line, "\\"); ok {
			cur = append(cur, cont)
			continue
		}
		cur = append(cur, line)
		out = append(out, strings.Join(cur, "\\\n"))
		cur = nil
	}
	return out
}

// TestWalkthrough runs every command of the README's walkthrough, as
// written, against Caddyfile.example started as `make run` starts it: in
// a directory laid out as the repository is after `make run`
// (bin/mxgate, examples/, .dev/fdx), with the example's ports replaced by
// free ones and curl told that localhost is 127.0.0.1. Each command's
// answer is the one the README says.
func TestWalkthrough(t *testing.T) {
	t.Parallel()
	setup, walkthrough, refusal := readmeShellBlocks(t)

	// The two set-up commands come first, and `make run` is what
	// startExample does.
	var first []string
	for _, c := range shellCommands(setup) {
		c, _, _ = strings.Cut(c, "#")
		first = append(first, strings.TrimSpace(c))
	}
	if strings.Join(first, "; ") != "make run; make test" {
		t.Fatalf("the README's first commands are %q, want make run and make test", first)
	}
	makefile, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"./$(BIN) fdx-dev --dir .dev/fdx",
		"./$(BIN) run --config Caddyfile.example --adapter caddyfile",
		"DEMO_MDX_HMAC_KEY := " + demoKey,
		"DEMO_MX_CLIENT_ID := CLIENT-1234",
		"DEMO_MX_API_KEY   := API-KEY-4567",
	} {
		if !strings.Contains(string(makefile), want) {
			t.Errorf("the Makefile no longer has %q: `make run` and startExample differ", want)
		}
	}

	ports, g, dev := startExample(t)

	// What each command of the walkthrough must answer, in order. A
	// command added to the README needs its answer here.
	type answer struct {
		command string // a part of the command as the README writes it
		check   func(out string, rc int) string
	}
	status := func(line string, contains ...string) func(string, int) string {
		return func(out string, rc int) string {
			if rc != 0 || !strings.HasPrefix(out, line) {
				return fmt.Sprintf("exit %d, want 0 and an answer starting %q", rc, line)
			}
			for _, c := range contains {
				if !strings.Contains(out, c) {
					return fmt.Sprintf("the answer does not hold %q", c)
				}
			}
			return ""
		}
	}
	var refusalLines []string
	for _, l := range strings.Split(refusal, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			refusalLines = append(refusalLines, l)
		}
	}
	if len(refusalLines) != 3 || !strings.HasPrefix(refusalLines[0], "HTTP/1.1 412") {
		t.Fatalf("the README's MDX refusal is not a status, a header and a body:\n%s", refusal)
	}
	answers := []answer{
		{"export MDX_HMAC_KEY=" + demoKey, func(out string, rc int) string {
			if rc != 0 || out != "" {
				return fmt.Sprintf("exit %d, output %q", rc, out)
			}
			return ""
		}},
		{"mdx-sign --url http://127.0.0.1:8480/inst1/sessions --body examples/session.xml --curl", status("HTTP/1.1 200", "<session><key>")},
		{"mdx-sign --url http://127.0.0.1:8480/inst1/accounts --session-key", status("HTTP/1.1 200", "<accounts>")},
		{"--data-binary @examples/session.xml http://127.0.0.1:8480/inst1/sessions", status(refusalLines[0], refusalLines[1:]...)},
		{"curl -i http://127.0.0.1:8490/users", status("HTTP/1.1 200", "Content-Type: application/json", `"users":[`)},
		{"curl -i http://127.0.0.1:8491/users", status("HTTP/1.1 401")},
		{"--cert .dev/fdx/client.pem --key .dev/fdx/client-key.pem", status("HTTP/2 200", `"accounts":[`)},
		{"--cert .dev/fdx/other-client.pem", status("HTTP/2 401", "token is not bound to this client certificate")},
		{"curl -i --cacert .dev/fdx/ca.pem https://localhost:8443/fdx/v6/core/accounts", func(out string, rc int) string {
			if rc == 0 || strings.Contains(out, "HTTP/") {
				return fmt.Sprintf("exit %d: answered without a client certificate", rc)
			}
			return ""
		}},
	}
	commands := shellCommands(walkthrough)
	if len(commands) != len(answers) {
		t.Fatalf("the walkthrough has %d commands, the test knows the answers of %d:\n%s", len(commands), len(answers), strings.Join(commands, "\n"))
	}

	// The repository as `make run` leaves it, in a directory of its own.
	dir := t.TempDir()
	examples, err := filepath.Abs("../examples")
	if err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{"bin/mxgate": binary, "examples": examples, ".dev/fdx": dev} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, link)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	script := []string{fmt.Sprintf(`curl() { command curl -sS --resolve localhost:%d:127.0.0.1 "$@"; }`, ports["8443"])}
	for i, c := range commands {
		if !strings.Contains(strings.Join(strings.Fields(strings.ReplaceAll(c, "\\\n", " ")), " "), answers[i].command) {
			t.Fatalf("walkthrough command %d is\n%s\nwhich is not the one the test expects there (%q)", i+1, c, answers[i].command)
		}
		for _, p := range []string{"8480", "8490", "8491", "8443"} {
			c = strings.ReplaceAll(c, ":"+p+"/", fmt.Sprintf(":%d/", ports[p]))
		}
		script = append(script, fmt.Sprintf("printf '\\n@@@ %d\\n'", i), c, `printf '\n@@@ rc %d\n' $?`)
	}
	cmd := exec.Command("sh", "-c", strings.Join(script, "\n"))
	cmd.Dir = dir
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MDX_HMAC_KEY=") { // the walkthrough exports it
			cmd.Env = append(cmd.Env, kv)
		}
	}
	raw, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the walkthrough: %v\n%s", err, raw)
	}
	parts := regexp.MustCompile(`(?m)^@@@ (\d+)\n((?s:.*?))\n@@@ rc (\d+)$`).FindAllStringSubmatch(string(raw), -1)
	if len(parts) != len(commands) {
		t.Fatalf("ran %d of %d commands:\n%s", len(parts), len(commands), raw)
	}
	for i, p := range parts {
		rc, _ := strconv.Atoi(p[3])
		if why := answers[i].check(strings.TrimPrefix(p[2], "\n"), rc); why != "" {
			t.Errorf("walkthrough command %d:\n%s\n%s; it answered:\n%s", i+1, commands[i], why, p[2])
		}
	}
	if strings.Contains(g.Stderr.String(), demoKey) {
		t.Error("the key reached the logs")
	}
	if strings.Contains(g.Stderr.String(), "Caddyfile input is not formatted") {
		t.Error("Caddyfile.example is not formatted: run `mxgate fmt --overwrite Caddyfile.example`")
	}
}
