package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	"github.com/mxgate/mxgate/caddymodule/redact"
)

func TestAdapterFor(t *testing.T) {
	const (
		cf = redact.CaddyfileAdapter
		js = redact.JSONAdapter
	)
	adjacent := func(p string) bool { return p == "Caddyfile" }
	none := func(string) bool { return false }
	for _, c := range []struct {
		command, config, adapter string
		set                      bool
		exists                   func(string) bool
		wantConfig, wantAdapter  string
	}{
		{"run", "/etc/mxgate/Caddyfile", "caddyfile", true, none, "/etc/mxgate/Caddyfile", cf},
		{"run", "/etc/mxgate/site.conf", "caddyfile", true, none, "/etc/mxgate/site.conf", cf},
		{"run", "/etc/mxgate/Caddyfile", "", false, none, "/etc/mxgate/Caddyfile", cf},
		{"reload", "prod.caddyfile", "", false, none, "prod.caddyfile", cf},
		{"validate", "Caddyfile.prod", "", false, none, "Caddyfile.prod", cf},
		{"run", "/etc/mxgate/mxgate.json", "", false, none, "/etc/mxgate/mxgate.json", js},
		{"run", "Caddyfile.json", "", false, none, "Caddyfile.json", js},
		{"run", "config", "", false, none, "config", js},
		{"run", "-", "", false, none, "-", js},
		{"run", "", "", false, adjacent, "Caddyfile", cf},
		{"reload", "", "", false, adjacent, "Caddyfile", cf},
		{"run", "", "", false, none, "", ""},
		{"run", "x.yaml", "yaml", true, none, "x.yaml", "yaml"},
		{"run", "Caddyfile", cf, true, none, "Caddyfile", cf},
		{"run", "x.json", js, true, none, "x.json", js},
		{"adapt", "/etc/mxgate/Caddyfile", "caddyfile", false, none, "/etc/mxgate/Caddyfile", cf},
		{"adapt", "", "caddyfile", false, adjacent, "", cf},
		{"adapt", "site.JSON", "caddyfile", false, none, "site.JSON", js},
		{"adapt", "site.json", "caddyfile", true, none, "site.json", cf},
		{"adapt", "x.yaml", "yaml", true, none, "x.yaml", "yaml"},
	} {
		config, adapter := adapterFor(c.command, c.config, c.adapter, c.set, c.exists)
		if config != c.wantConfig || adapter != c.wantAdapter {
			t.Errorf("%s --config %q --adapter %q (given %v): %q %q, want %q %q",
				c.command, c.config, c.adapter, c.set, config, adapter, c.wantConfig, c.wantAdapter)
		}
	}
}

// TestAdapterForAgreesWithCaddy: where Caddy, given no adapter, takes a
// file for a Caddyfile (by its name, or as the adjacent Caddyfile),
// mxgate uses mxgate-caddyfile; where it takes JSON, mxgate-json.
func TestAdapterForAgreesWithCaddy(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"Caddyfile", "caddyfile", "CADDYFILE.prod", "Caddyfile.yaml", "site.caddyfile",
		"site.Caddyfile", "Caddyfile.json", "site.json", "site.JSON", "config", "mxgate.conf", "caddyfile-a.json"} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte("{\n}\n"), 0o600); err != nil { // a Caddyfile and JSON both
			t.Fatal(err)
		}
		_, _, used, err := caddycmd.LoadConfig(path, "")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		_, adapter := adapterFor("run", path, "", false, exists)
		if want := map[string]string{"caddyfile": redact.CaddyfileAdapter, "": redact.JSONAdapter}[used]; adapter != want {
			t.Errorf("%s: Caddy uses %q, mxgate %q", name, used, adapter)
		}
	}

	t.Chdir(dir)
	_, file, used, err := caddycmd.LoadConfig("", "")
	if err != nil {
		t.Fatal(err)
	}
	config, adapter := adapterFor("run", "", "", false, exists)
	if file != "Caddyfile" || used != "caddyfile" || config != file || adapter != redact.CaddyfileAdapter {
		t.Errorf("the adjacent Caddyfile: Caddy loads %q with %q, mxgate %q with %q", file, used, config, adapter)
	}
}

// TestCommandsLoadThroughRedact: the binary's adapt shows the effective
// configuration, mxgate_redact on every log that names no encoder, from a
// Caddyfile and from JSON; a named encoder stays; run's help says so.
func TestCommandsLoadThroughRedact(t *testing.T) {
	dir := t.TempDir()
	caddyfile := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(caddyfile, []byte(`{
	debug
}
:8480 {
	log {
		output file `+filepath.Join(dir, "access.log")+`
	}
	respond ok
}
:8481 {
	log {
		format json
	}
	respond ok
}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	jsonFile := filepath.Join(dir, "mxgate.json")
	if err := os.WriteFile(jsonFile, []byte(`{"logging":{"logs":{"default":{"level":"DEBUG"}}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	encoders := func(out string) map[string]string {
		t.Helper()
		var cfg struct {
			Logging struct {
				Logs map[string]struct {
					Encoder json.RawMessage `json:"encoder"`
				} `json:"logs"`
			} `json:"logging"`
		}
		if err := json.Unmarshal([]byte(out), &cfg); err != nil {
			t.Fatalf("%v:\n%s", err, out)
		}
		m := map[string]string{}
		for name, l := range cfg.Logging.Logs {
			var b bytes.Buffer
			_ = json.Compact(&b, l.Encoder)
			m[name] = b.String()
		}
		return m
	}
	for _, args := range [][]string{
		{"adapt", "--config", caddyfile},
		{"adapt", "--config", caddyfile, "--adapter", "caddyfile"},
		{"adapt", "--config", caddyfile, "--adapter", redact.CaddyfileAdapter, "--pretty"},
	} {
		out, errOut, status := mxgate(t, nil, args...)
		if status != 0 {
			t.Fatalf("%q: status %d\n%s", args, status, errOut)
		}
		got := encoders(out)
		want := map[string]string{"default": redact.EncoderJSON, "log0": redact.EncoderJSON, "log1": `{"format":"json"}`}
		if len(got) != len(want) {
			t.Errorf("%q: logs %v, want %v", args, got, want)
		}
		for name, enc := range want {
			if got[name] != enc {
				t.Errorf("%q: log %s has encoder %s, want %s", args, name, got[name], enc)
			}
		}
	}
	out, errOut, status := mxgate(t, nil, "adapt", "--config", jsonFile)
	if status != 0 {
		t.Fatalf("adapt a JSON file: status %d\n%s", status, errOut)
	}
	if got := encoders(out); len(got) != 1 || got["default"] != redact.EncoderJSON {
		t.Errorf("adapt a JSON file: %s", out)
	}
	for _, args := range [][]string{{"validate", "--config", caddyfile}, {"validate", "--config", jsonFile}} {
		if out, errOut, status := mxgate(t, nil, args...); status != 0 || !strings.Contains(out, "Valid configuration") {
			t.Errorf("%q: status %d\n%s%s", args, status, out, errOut)
		}
	}
	if out, _, _ := mxgate(t, nil, "run", "--help"); !strings.Contains(out, "mxgate-caddyfile") || !strings.Contains(out, "mxgate_redact") {
		t.Errorf("run's help does not say how logs are redacted:\n%s", out)
	}
}

// TestStateNamesLoadsAsValidate: state-names loads a configuration through
// mxgate's adapters, as validate does, so a configuration that names no
// log format is not said to log secrets.
func TestStateNamesLoadsAsValidate(t *testing.T) {
	dir := t.TempDir()
	caddyfile := filepath.Join(dir, "Caddyfile")
	const cf = "http://127.0.0.1:8480 {\n\tmdx_hmac verify {\n\t\tkey QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo3ODkwMTI=\n\t\treplay_window 10m\n\t}\n\tlog\n\trespond ok\n}\n"
	if err := os.WriteFile(caddyfile, []byte(cf), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"HOME=" + dir, "XDG_DATA_HOME=" + dir, "XDG_CONFIG_HOME=" + dir}
	for _, args := range [][]string{
		{"state-names", "--config", caddyfile},
		{"state-names", "--config", caddyfile, "--adapter", "caddyfile"},
		{"validate", "--config", caddyfile, "--adapter", "caddyfile"},
	} {
		out, errOut, status := mxgate(t, env, args...)
		if status != 0 {
			t.Fatalf("%q: status %d\n%s", args, status, errOut)
		}
		if strings.Contains(errOut, "SECRETS WILL BE LOGGED") {
			t.Errorf("%q: a configuration that names no log format is said to log secrets:\n%s", args, errOut)
		}
		if args[0] == "state-names" && !strings.Contains(out, "mdx_hmac") {
			t.Errorf("%q: no state named:\n%s", args, out)
		}
	}
	// a log format that does not redact is still called out
	if err := os.WriteFile(caddyfile, []byte(strings.Replace(cf, "\tlog\n", "\tlog {\n\t\tformat json\n\t}\n", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut, _ := mxgate(t, env, "state-names", "--config", caddyfile, "--adapter", "caddyfile"); !strings.Contains(errOut, "SECRETS WILL BE LOGGED") {
		t.Errorf("state-names with `format json`: no warning:\n%s", errOut)
	}
}
