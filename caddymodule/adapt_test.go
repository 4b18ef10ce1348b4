package caddymodule

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	// every mxgate module and directive, registered as a build registers them
	_ "github.com/mxgate/mxgate"
)

var update = flag.Bool("update", false, "rewrite the expected JSON of passing adapt tests")

// TestAdapt runs every testdata/adapt/*.caddyfiletest: a Caddyfile, a line of
// ten dashes, then either the expected JSON or a line "error: <text>" that
// the adapt or provision error must contain. Valid configs are also
// provisioned (caddy.Validate), so errors found at provisioning are caught.
func TestAdapt(t *testing.T) {
	files, err := filepath.Glob("testdata/adapt/*.caddyfiletest")
	if err != nil || len(files) == 0 {
		t.Fatalf("no adapt tests found: %v", err)
	}
	t.Setenv("MXGATE_TEST_KEY", "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo3ODkwMTI=")
	t.Setenv("MXGATE_SHORT_KEY", "c2hvcnQ=")
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".caddyfiletest"), func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			input, expected, ok := strings.Cut(string(raw), "\n----------\n")
			if !ok {
				t.Fatal("no ---------- separator")
			}
			expected = strings.TrimSpace(expected)
			wantErr, isErr := strings.CutPrefix(expected, "error: ")

			adapter := caddyconfig.GetAdapter("caddyfile")
			out, _, err := adapter.Adapt([]byte(input), nil)
			if err == nil {
				err = caddy.Validate(mustConfig(t, out))
			}
			switch {
			case isErr && err == nil:
				t.Fatalf("config accepted; want error containing %q", wantErr)
			case isErr && !strings.Contains(err.Error(), wantErr):
				t.Fatalf("error %q does not contain %q", err, wantErr)
			case isErr:
				for _, secret := range []string{"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo3ODkwMTI=", "c2hvcnQ=", "hunter2"} {
					if strings.Contains(err.Error(), secret) {
						t.Fatalf("error reveals a key: %v", err)
					}
				}
				return
			case err != nil:
				t.Fatalf("unexpected error: %v", err)
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, out, "", "\t"); err != nil {
				t.Fatal(err)
			}
			got := strings.TrimSpace(pretty.String())
			if got != expected {
				if *update {
					if err := os.WriteFile(file, []byte(input+"\n----------\n"+got+"\n"), 0o644); err != nil {
						t.Fatal(err)
					}
					return
				}
				t.Fatalf("adapted JSON differs:\n--- got\n%s\n--- want\n%s", got, expected)
			}
		})
	}
}

func mustConfig(t *testing.T, b []byte) *caddy.Config {
	t.Helper()
	var cfg caddy.Config
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	// never let a test's validation touch the real admin endpoint
	cfg.Admin = &caddy.AdminConfig{Disabled: true}
	return &cfg
}
