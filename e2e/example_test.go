package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCaddyfileExample runs Caddyfile.example, as `make run` does (on free
// ports), and replays the README's walkthrough: two signed requests
// accepted, an unsigned one refused.
func TestCaddyfileExample(t *testing.T) {
	t.Parallel()
	ports, g, _ := startExample(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", ports["8480"])

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
	if strings.Contains(g.Stderr.String(), "Caddyfile input is not formatted") {
		t.Error("Caddyfile.example is not formatted: run `mxgate fmt --overwrite Caddyfile.example`")
	}
}

// startExample runs Caddyfile.example as `make run` does, with its demo
// credentials, on free ports; ports maps each port of the file to its
// stand-in.
// startExample runs Caddyfile.example on free ports; it returns the ports
// by the example's own numbers, the gateway, and where the FDX files are.
// Each edit, if any, rewrites the file's text first.
func startExample(t *testing.T, edits ...func(string) string) (map[string]int, *gateway, string) {
	t.Helper()
	raw, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	cf := string(raw)
	for _, edit := range edits {
		cf = edit(cf)
	}
	// no admin option: it runs on mxgate's default admin endpoint, as
	// `make run` does, a socket in the harness's $RUNTIME_DIRECTORY
	if strings.Contains(cf, "\n\tadmin ") {
		t.Fatal("Caddyfile.example names an admin endpoint; `make run` and this test expect mxgate's default")
	}
	ports := map[string]int{}
	for _, p := range []string{"8480", "8481", "8490", "8491", "8443", "8444", "8446"} {
		if !strings.Contains(cf, ":"+p) {
			t.Fatalf("Caddyfile.example no longer uses port %s", p)
		}
		ports[p] = freePort(t)
		cf = strings.ReplaceAll(cf, ":"+p, fmt.Sprintf(":%d", ports[p]))
	}
	// the FDX site's files, made as `make run` makes them
	dev := filepath.Join(t.TempDir(), "fdx")
	if out, err := exec.Command(binary, "fdx-dev", "--dir", dev).CombinedOutput(); err != nil {
		t.Fatalf("fdx-dev: %v\n%s", err, out)
	}
	if !strings.Contains(cf, ".dev/fdx") {
		t.Fatal("Caddyfile.example no longer uses .dev/fdx")
	}
	cf = strings.ReplaceAll(cf, ".dev/fdx", dev)
	g := startGateway(t, cf, "MDX_HMAC_KEY="+demoKey, "MX_CLIENT_ID=CLIENT-1234", "MX_API_KEY=API-KEY-4567")
	return ports, g, dev
}

// TestWalkthroughFDX replays the README's FDX commands against
// Caddyfile.example, with the files `mxgate fdx-dev` made.
func TestWalkthroughFDX(t *testing.T) {
	t.Parallel()
	ports, _, dev := startExample(t)
	tok, err := os.ReadFile(filepath.Join(dev, "token.txt"))
	if err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("https://localhost:%d/fdx/v6/core/accounts", ports["8443"])
	resolve := fmt.Sprintf("localhost:%d:127.0.0.1", ports["8443"])
	curl := func(client string) (string, error) {
		args := []string{"-sS", "-i", "--resolve", resolve, "--cacert", filepath.Join(dev, "ca.pem")}
		if client != "" {
			args = append(args, "--cert", filepath.Join(dev, client+".pem"), "--key", filepath.Join(dev, client+"-key.pem"),
				"-H", "Authorization: Bearer "+strings.TrimSpace(string(tok)))
		}
		out, err := exec.Command("curl", append(args, url)...).CombinedOutput()
		return string(out), err
	}
	if out, err := curl("client"); err != nil || !strings.HasPrefix(out, "HTTP/2 200") || !strings.Contains(out, `"accounts":[`) {
		t.Fatalf("bound token:\n%s", out)
	}
	if out, _ := curl("other-client"); !strings.HasPrefix(out, "HTTP/2 401") || !strings.Contains(out, "token is not bound to this client certificate") {
		t.Fatalf("other certificate:\n%s", out)
	}
	if out, err := curl(""); err == nil && strings.HasPrefix(out, "HTTP/") {
		t.Fatalf("no certificate got an answer:\n%s", out)
	}
	// nor under another spelling of the name, or another name
	addr := fmt.Sprintf("127.0.0.1:%d", ports["8443"])
	if _, err := tlsAnswer(t, addr, "localho\u017ft", "localhost", nil); err == nil || !strings.Contains(err.Error(), "unrecognized name") {
		t.Fatalf("a long s in the server name: %v", err)
	}
	for _, sni := range []string{"other.localhost", ""} {
		if status, err := tlsAnswer(t, addr, sni, "localhost", nil); err == nil {
			t.Fatalf("server name %q, no certificate: answered %d", sni, status)
		}
	}
}

// TestExampleServerNames: every TLS server of Caddyfile.example refuses
// server names that are not plain ASCII, and Hosts that are not the
// server name; and every handshake on the FDX port asks for a client
// certificate.
func TestExampleServerNames(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	servers := checkServerNames(t, "Caddyfile.example", adaptedServers(t, string(raw),
		"MDX_HMAC_KEY="+demoKey, "MX_CLIENT_ID=CLIENT-1234", "MX_API_KEY=API-KEY-4567"))
	fdxPort, ok := servers["tcp-handover/127.0.0.1:8443"]
	if !ok || len(fdxPort.Policies) != 2 {
		t.Fatalf("the FDX port's TLS connection policies: %+v", fdxPort.Policies)
	}
	for i, p := range fdxPort.Policies {
		if p.ClientAuthentication == nil || p.ClientAuthentication.Mode != "require_and_verify" {
			t.Errorf("TLS connection policy %d (match %v) asks for no verified client certificate", i, p.Match)
		}
	}
}
