package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestCaddyfileExample runs Caddyfile.example, as `make run` does (on free
// ports), and replays the README's walkthrough: two signed requests
// accepted, an unsigned one refused.
func TestCaddyfileExample(t *testing.T) {
	raw, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	gw, app := freePort(t), freePort(t)
	cf := string(raw)
	for old, new := range map[string]string{
		"admin 127.0.0.1:2019": "admin {ADMIN}",
		"127.0.0.1:8480":       fmt.Sprintf("127.0.0.1:%d", gw),
		"127.0.0.1:8481":       fmt.Sprintf("127.0.0.1:%d", app),
	} {
		if !strings.Contains(cf, old) {
			t.Fatalf("Caddyfile.example no longer has %q", old)
		}
		cf = strings.ReplaceAll(cf, old, new)
	}
	g := startGateway(t, cf, "MDX_HMAC_KEY="+demoKey)
	base := fmt.Sprintf("http://127.0.0.1:%d", gw)

	sign := func(args ...string) string {
		cmd := exec.Command(binary, append([]string{"mdx-sign", "--curl"}, args...)...)
		cmd.Env = append(os.Environ(), "MDX_HMAC_KEY="+demoKey)
		cmd.Dir = ".."
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("mdx-sign: %v", err)
		}
		return string(out)
	}
	curl := func(command string) string {
		out, err := exec.Command("sh", "-c", command).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", command, err, out)
		}
		return string(out)
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is needed to replay the README's commands")
	}
	out := curl("cd .. && " + sign("--url", base+"/inst1/sessions", "--body", "examples/session.xml"))
	if !strings.HasPrefix(out, "HTTP/1.1 200") || !strings.Contains(out, "<session><key>") {
		t.Fatalf("signed session request:\n%s", out)
	}
	out = curl(sign("--url", base+"/inst1/accounts", "--session-key", "2f9c4a6e8b1d3f5a"))
	if !strings.HasPrefix(out, "HTTP/1.1 200") || !strings.Contains(out, "<accounts>") {
		t.Fatalf("signed accounts request:\n%s", out)
	}
	out = curl(fmt.Sprintf("cd .. && curl -sS -i -X POST -H 'Content-Type: application/vnd.moneydesktop.mdx.v5+xml' --data-binary @examples/session.xml %s/inst1/sessions", base))
	if !strings.HasPrefix(out, "HTTP/1.1 412") || !strings.Contains(out, "<message>MDX-HMAC header missing</message>") {
		t.Fatalf("unsigned request:\n%s", out)
	}
	if strings.Contains(g.Stderr.String(), demoKey) {
		t.Fatal("the key reached the logs")
	}
}
