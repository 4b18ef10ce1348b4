package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// h3Caddyfile is an HTTPS site whose server has the listener wrapper
// wrapper (its Caddyfile lines) and the given protocols line ("" for
// Caddy's default, h1 h2 h3).
func h3Caddyfile(port int, up *upstream, wrapper, protocols string) string {
	return fmt.Sprintf(`{
	admin {ADMIN}
	skip_install_trust
	auto_https disable_redirects
	servers 127.0.0.1:%[1]d {
		%[2]s
		listener_wrappers {
			%[3]s
			tls
		}
	}
}
https://localhost:%[1]d {
	bind 127.0.0.1
	tls internal
	reverse_proxy %[4]s
}
`, port, protocols, wrapper, up.hostPort())
}

// TestHostileListenerHTTP3: listener wrappers see TCP only, and HTTP/3
// runs over UDP beside them. A server that relies on mx_ip_allow or
// mx_conn_limit and would also serve HTTP/3 (Caddy's default protocols)
// refuses to start, saying to write `protocols h1 h2`; with that line it
// starts, serves over TCP through the wrapper and holds no UDP port.
func TestHostileListenerHTTP3(t *testing.T) {
	t.Parallel()
	for name, wrapper := range map[string]string{
		"mx_ip_allow":   "mx_ip_allow {\n\t\t\t\tranges 127.0.0.1/32\n\t\t\t}",
		"mx_conn_limit": "mx_conn_limit {\n\t\t\t\tmax 64\n\t\t\t\tanswer close\n\t\t\t}",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			up := newUpstream(t, nil)
			t.Run("quic_around_the_wrapper", func(t *testing.T) {
				port := freePort(t)
				out, status := runToExit(t, h3Caddyfile(port, up, wrapper, ""))
				if status == 0 || !strings.Contains(out, name+" sees TCP connections only") || !strings.Contains(out, "protocols h1 h2") {
					t.Fatalf("mxgate exited %d; want a refusal naming %s and the fix:\n%s", status, name, out)
				}
				if n := len(up.Requests()); n != 0 {
					t.Fatalf("upstream saw %d requests", n)
				}
			})
			t.Run("tcp_only_starts", func(t *testing.T) {
				port := freePort(t)
				startGateway(t, h3Caddyfile(port, up, wrapper, "protocols h1 h2"))
				var err error
				for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
					// the internal CA's certificate may still be in the making
					var c net.Conn
					if c, err = handshakeFrom("127.0.0.1", port); err == nil {
						c.Close()
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("handshake: %v", err)
					}
				}
				status, _ := sendFromAddr(t, "127.0.0.1", mustRequest(t, "GET", fmt.Sprintf("https://localhost:%d/inst1/accounts", port)))
				if status != 200 || len(up.Requests()) != 1 {
					t.Fatalf("over TCP through %s: %d, upstream saw %d", name, status, len(up.Requests()))
				}
				// nothing listens for QUIC: the UDP port is free
				pc, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
				if err != nil {
					t.Fatalf("the UDP port is taken (HTTP/3 served beside %s?): %v", name, err)
				}
				pc.Close()
			})
		})
	}
}

// runToExit runs `mxgate run` on caddyfile ({ADMIN} as in startGateway)
// and returns its output and exit status once it exits; it fails the test
// if mxgate is still running after a minute (it started).
func runToExit(t *testing.T, caddyfile string) (string, int) {
	t.Helper()
	dir := t.TempDir()
	caddyfile = strings.ReplaceAll(caddyfile, "{ADMIN}", fmt.Sprintf("127.0.0.1:%d", freePort(t)))
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "run", "--config", path, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(),
		"HOME="+dir, "XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("mxgate did not exit: it started\n%s", out)
	}
	status := 0
	if ee, ok := err.(*exec.ExitError); ok {
		status = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), status
}
