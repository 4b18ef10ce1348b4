package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// startExample runs Caddyfile.example as `make run` does (its demo
// credentials, the files of `mxgate fdx-dev`), on free ports; it returns the ports
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

// TestExampleFDXServerNames: the FDX site of Caddyfile.example refuses,
// in the handshake, a client without a certificate that asks for another
// spelling of its name or another name (TestWalkthrough runs the README's
// commands against it).
func TestExampleFDXServerNames(t *testing.T) {
	t.Parallel()
	ports, _, _ := startExample(t)
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
