package deploy

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// requireTool fails under CI, or skips elsewhere, when a checker is not
// installed; scripts/test.sh installs it.
func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed; scripts/test.sh installs it (apt-get install %s)", name, pkg)
		}
		t.Skipf("%s is not installed; scripts/test.sh installs it (apt-get install %s)", name, pkg)
	}
	return path
}

// unitSettings reads a unit file into section -> key -> values.
func unitSettings(t *testing.T, path string) map[string]map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			out[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s: malformed line %q", path, line)
			}
			out[section][k] = append(out[section][k], v)
		}
	}
	return out
}

const unitPath = "systemd/mxgate.service"

// TestSystemdUnitHardening checks that the unit keeps the settings the
// README promises.
func TestSystemdUnitHardening(t *testing.T) {
	svc := unitSettings(t, unitPath)["Service"]
	for key, want := range map[string]string{
		"Type":                  "notify",
		"DynamicUser":           "yes",
		"ProtectSystem":         "strict",
		"ProtectHome":           "yes",
		"PrivateTmp":            "yes",
		"NoNewPrivileges":       "yes",
		"CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
		"AmbientCapabilities":   "CAP_NET_BIND_SERVICE",
		"StateDirectory":        "mxgate",
		"Restart":               "on-failure",
		"ExecStart":             "/usr/bin/mxgate run --config /etc/mxgate/Caddyfile --adapter caddyfile",
		"ExecReload":            "/usr/bin/mxgate reload --config /etc/mxgate/Caddyfile --adapter caddyfile --force",
	} {
		if got := svc[key]; len(got) != 1 || got[0] != want {
			t.Errorf("%s=%v, want %s", key, got, want)
		}
	}
	creds := strings.Join(svc["LoadCredential"], " ")
	for _, c := range []string{"mdx-hmac.key:", "mx-api-key:"} {
		if !strings.Contains(creds, c) {
			t.Errorf("no LoadCredential=%s…", c)
		}
	}
	for _, env := range svc["Environment"] {
		if strings.Contains(strings.ToLower(env), "key=") || strings.Contains(strings.ToLower(env), "password") {
			t.Errorf("a secret in Environment=: %s", env)
		}
	}
}

// TestSystemdAnalyzeVerify runs systemd-analyze verify on the unit, with
// its executable at a stand-in path (verify checks that it exists), and
// fails on any complaint: verify exits 0 even for an unknown key or a bad
// value, which it only prints. systemd-analyze security then rates the
// unit's exposure offline; the hardening above keeps it at most 2.0.
func TestSystemdAnalyzeVerify(t *testing.T) {
	analyze := requireTool(t, "systemd-analyze", "systemd")
	dir := t.TempDir()
	stub := filepath.Join(dir, "mxgate")
	if err := os.WriteFile(stub, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	unit, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	testUnit := filepath.Join(dir, "mxgate.service")
	if err := os.WriteFile(testUnit, bytes.ReplaceAll(unit, []byte("/usr/bin/mxgate"), []byte(stub)), 0o644); err != nil {
		t.Fatal(err)
	}

	out, err := exec.Command(analyze, "verify", "--man=no", testUnit).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}

	// A broken copy must be caught, or the check above proves nothing.
	broken := filepath.Join(dir, "broken.service")
	os.WriteFile(broken, bytes.Replace(unit, []byte("NoNewPrivileges=yes"), []byte("NoNewPrivilegs=yes"), 1), 0o644)
	if out, _ := exec.Command(analyze, "verify", "--man=no", broken).CombinedOutput(); !bytes.Contains(out, []byte("Unknown key")) {
		t.Errorf("systemd-analyze verify missed a misspelt key:\n%s", out)
	}

	out, err = exec.Command(analyze, "security", "--offline=yes", "--threshold=20", testUnit).CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze security: exposure above 2.0 (%v):\n%s", err, out)
	} else if i := bytes.Index(out, []byte("Overall exposure level")); i >= 0 {
		t.Logf("%s", bytes.TrimSpace(out[i:]))
	}
}
