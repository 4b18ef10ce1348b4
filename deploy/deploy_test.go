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
		// the admin socket ($RUNTIME_DIRECTORY/admin.sock, mxgate's default)
		// and the sidecar's: the service's user and group only
		"RuntimeDirectory":     "mxgate",
		"RuntimeDirectoryMode": "0750",
		// a group an app can join (mxgate-sysusers.conf)
		"Group":      "mxgate-clients",
		"Restart":    "on-failure",
		"ExecStart":  "/usr/bin/mxgate run --config /etc/mxgate/Caddyfile --adapter caddyfile",
		"ExecReload": "/usr/bin/mxgate reload --config /etc/mxgate/Caddyfile --adapter caddyfile --force",
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
	for _, env := range append(svc["Environment"], svc["ExecStart"]...) {
		if strings.Contains(env, "CADDY_ADMIN") || strings.Contains(env, "--address") {
			t.Errorf("the unit moves the admin endpoint from mxgate's default: %s", env)
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

const sysusersPath = "systemd/mxgate-sysusers.conf"

// TestSysusersGroup applies mxgate-sysusers.conf to an empty root with
// systemd-sysusers --dry-run: it creates the unit's Group= and nothing
// else, without a complaint.
func TestSysusersGroup(t *testing.T) {
	sysusers := requireTool(t, "systemd-sysusers", "systemd")
	group := unitSettings(t, unitPath)["Service"]["Group"]
	if len(group) != 1 {
		t.Fatalf("Group=%v", group)
	}
	root := t.TempDir()
	conf := filepath.Join(root, "usr/lib/sysusers.d/mxgate.conf")
	if err := os.MkdirAll(filepath.Dir(conf), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(sysusersPath)
	if err != nil {
		t.Fatal(err)
	}
	run := func(b []byte) string {
		t.Helper()
		if err := os.WriteFile(conf, b, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(sysusers, "--dry-run", "--root="+root).CombinedOutput()
		if err != nil {
			t.Fatalf("systemd-sysusers: %v\n%s", err, out)
		}
		return string(out)
	}
	out := run(b)
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.HasPrefix(line, "Would write ") && !strings.HasPrefix(line, "Creating group '"+group[0]+"' ") {
			t.Errorf("systemd-sysusers: %s", line)
		}
	}
	if !strings.Contains(out, "Creating group '"+group[0]+"' ") {
		t.Errorf("systemd-sysusers does not create %s:\n%s", group[0], out)
	}
	// a broken copy must be caught, or the check above proves nothing
	if out := run(append(b, "x broken\n"...)); !strings.Contains(out, "Unknown command type") {
		t.Errorf("systemd-sysusers missed a broken line:\n%s", out)
	}
}
