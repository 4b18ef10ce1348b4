//go:build unix

package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/testkit/redistest"
)

// The control plane: Caddy's admin API reads and replaces the running
// configuration and stops the process, and has no authentication. These
// tests run the shipped configurations as root and attack them as other
// users, with setpriv (util-linux) and curl.

// requireRoot fails under CI, or skips elsewhere, unless the test runs as
// root with setpriv and curl: it runs processes as other users.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("this test runs processes as other users: run it as root (CI does)")
		}
		t.Skip("this test runs processes as other users (setpriv): run it as root; CI does")
	}
	redistest.Require(t, "setpriv", "curl")
}

// identity is a user as setpriv sets it.
type identity struct {
	uid, gid int
	groups   []int // supplementary
}

func (id identity) setpriv() []string {
	args := []string{"--reuid=" + strconv.Itoa(id.uid), "--regid=" + strconv.Itoa(id.gid)}
	if len(id.groups) == 0 {
		return append(args, "--clear-groups")
	}
	gs := make([]string, len(id.groups))
	for i, g := range id.groups {
		gs[i] = strconv.Itoa(g)
	}
	return append(args, "--groups="+strings.Join(gs, ","))
}

// stranger is a local user with no business with the gateway; app is one
// in the group of the gateway's sockets (root's here: the gateway runs as
// root).
var (
	stranger = identity{uid: 65534, gid: 65534}
	app      = identity{uid: 65534, gid: 65534, groups: []int{0}}
)

// curlAnswer is what curl, run as another user, got.
type curlAnswer struct {
	exit    int    // curl's exit status: 0 an answer, 7 could not connect
	status  int    // the HTTP status, when there was an answer
	body    []byte // never printed: it could hold a secret
	verbose string // curl's -v lines (connection and headers only)
}

// curlAs runs curl as id against target (a URL, with unixSocket the socket
// to connect through, or "") with method and body.
func curlAs(t *testing.T, id identity, unixSocket, method, target string, body []byte) curlAnswer {
	t.Helper()
	args := append(id.setpriv(), "--", "curl", "-sS", "-v", "-k", "--max-time", "10",
		"-o", "-", "-w", "\n%{http_code}", "-X", method)
	if unixSocket != "" {
		args = append(args, "--unix-socket", unixSocket)
	}
	if body != nil {
		args = append(args, "-H", "Content-Type: application/json", "--data-binary", "@-")
	}
	cmd := exec.Command("setpriv", append(args, target)...)
	cmd.Stdin = bytes.NewReader(body)
	cmd.Dir = "/"
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	a := curlAnswer{verbose: errOut.String()}
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		a.exit = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("setpriv curl: %v", err)
	}
	b := out.Bytes()
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		a.status, _ = strconv.Atoi(string(b[i+1:]))
		a.body = b[:i]
	}
	return a
}

// target is an address a gateway listens on, as an attacker reaches it.
type target struct {
	name       string
	unixSocket string // or "" for TCP
	base       string // scheme://host:port, or http://localhost on a socket
	// refused: no attacker may even connect (curl exit 7); strangers: the
	// stranger may not, the app (in the socket's group) may
	refused, strangers bool
}

// shipped is a shipped configuration running for the attack.
type shipped struct {
	g       *gateway
	targets []target
	secret  string // a secret the configuration reads, which must not leak
	keyFile string // a file that holds a secret, for {file.*}
}

// TestHostileControlPlane runs each shipped configuration (Caddyfile.example
// as `make run` does, and examples/production/*) as root, with its admin
// endpoint where mxgate puts it by default: a socket in a runtime directory
// of mode 0755, as systemd makes one by default, so that only the socket's
// mode stands between it and other users. Then a stranger (nobody, no
// groups) and an app (nobody, in the sockets' group) try, over every
// address the gateway listens on (the admin socket, 127.0.0.1:2019 where
// Caddy's default would be, and every site), to read the configuration,
// add a server that answers with a key file ({file.…}), load a
// configuration of their own, and stop the gateway. Every attempt must
// fail: the admin socket refuses the connection, the sites are not the
// admin API; afterwards the configuration (read as root) is unchanged, the
// gateway runs, no added server listens, and no answer held a secret.
func TestHostileControlPlane(t *testing.T) {
	requireRoot(t)
	for name, start := range map[string]func(*testing.T) shipped{
		"caddyfile_example": startShippedExample,
		"mdx_ingress":       startShippedIngress,
		"egress_sidecar":    startShippedSidecar,
		"fdx":               startShippedFDX,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := start(t)
			controls(t, s)
			_, before, err := s.g.adminDo(http.MethodGet, "/config/", nil)
			if err != nil || len(before) < 10 {
				t.Fatalf("reading the configuration as root: %v", err)
			}
			evil, evilLoad := freePort(t), freePort(t)
			addServer := fmt.Sprintf(`{"listen":["127.0.0.1:%d"],"routes":[{"handle":[{"handler":"static_response","body":"{file.%s}"}]}]}`, evil, s.keyFile)
			load := fmt.Sprintf(`{"apps":{"http":{"servers":{"open":{"listen":["127.0.0.1:%d"],"routes":[{"handle":[{"handler":"static_response","body":"{file.%s}"}]}]}}}}}`, evilLoad, s.keyFile)
			attacks := []struct {
				name, method, path string
				body               []byte
			}{
				{"read_config", http.MethodGet, "/config/", nil},
				{"put_server_answering_a_key_file", http.MethodPut, "/config/apps/http/servers/open", []byte(addServer)},
				{"post_server_answering_a_key_file", http.MethodPost, "/config/apps/http/servers/open", []byte(addServer)},
				{"load_own_config", http.MethodPost, "/load", []byte(load)},
				{"stop", http.MethodPost, "/stop", nil},
			}
			for _, who := range []struct {
				name string
				id   identity
			}{{"stranger", stranger}, {"app", app}} {
				for _, at := range attacks {
					for _, tg := range s.targets {
						t.Run(who.name+"/"+at.name+"/"+tg.name, func(t *testing.T) {
							a := curlAs(t, who.id, tg.unixSocket, at.method, tg.base+at.path, at.body)
							if (tg.refused || tg.strangers && who.id.groups == nil) && (a.exit != 7 || !strings.Contains(a.verbose, "Permission denied")) {
								t.Errorf("the %s was not refused to %s: curl exit %d, HTTP %d", tg.name, who.name, a.exit, a.status)
							}
							if bytes.Contains(a.body, []byte(`"apps"`)) || bytes.Contains(a.body, []byte(s.keyFile)) {
								t.Errorf("%s read the configuration through the %s (HTTP %d)", who.name, tg.name, a.status)
							}
							if s.secret != "" && bytes.Contains(a.body, []byte(s.secret)) {
								t.Errorf("%s got a secret through the %s (HTTP %d)", who.name, tg.name, a.status)
							}
							select {
							case <-s.g.done:
								t.Fatalf("the gateway stopped:\n%s", s.g.Stderr)
							default:
							}
						})
					}
				}
			}
			_, after, err := s.g.adminDo(http.MethodGet, "/config/", nil)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(before, after) {
				t.Error("the configuration changed")
			}
			for _, port := range []int{evil, evilLoad} {
				if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second); err == nil {
					c.Close()
					t.Errorf("a server added by an attacker listens on %d", port)
				}
			}
			if s.secret != "" && strings.Contains(s.g.Stderr.String(), s.secret) {
				t.Error("a secret reached the logs")
			}
		})
	}
}

// controls checks that the attack could succeed where nothing protects:
// as the stranger, a socket of mode 0666 beside the admin socket answers
// (the runtime directory itself keeps no one out), and a site answers
// over TCP (the stranger reaches loopback).
func controls(t *testing.T, s shipped) {
	t.Helper()
	sock := strings.TrimPrefix(s.g.admin, "unix/")
	open := filepath.Join(filepath.Dir(sock), "control.sock")
	ln, err := net.Listen("unix", open)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "open") })}
	go srv.Serve(ln)
	defer srv.Close()
	if err := os.Chmod(open, 0o666); err != nil {
		t.Fatal(err)
	}
	if a := curlAs(t, stranger, open, http.MethodGet, "http://localhost/", nil); a.exit != 0 || string(a.body) != "open" {
		t.Fatalf("control: the stranger cannot reach an open socket beside the admin socket (curl exit %d): the test would prove nothing\n%s", a.exit, a.verbose)
	}
	reached := false
	for _, tg := range s.targets {
		if tg.unixSocket == "" && !tg.refused {
			if a := curlAs(t, stranger, "", http.MethodGet, tg.base+"/", nil); a.exit == 0 && a.status > 0 {
				reached = true
				break
			}
		}
	}
	if !reached {
		t.Fatal("control: the stranger reaches none of the sites over TCP: the test would prove nothing")
	}
}

// adminTargets are the admin socket, which must refuse the connection, and
// Caddy's default admin address, where nothing of the gateway's may be.
func adminTargets(g *gateway) []target {
	return []target{
		{name: "admin socket", unixSocket: strings.TrimPrefix(g.admin, "unix/"), base: "http://localhost", refused: true},
		{name: "tcp 127.0.0.1:2019", base: "http://127.0.0.1:2019"},
	}
}

// canaryFile writes a secret to a file only root may read.
func canaryFile(t *testing.T) (path, secret string) {
	t.Helper()
	secret = "canary-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	path = filepath.Join(t.TempDir(), "secret.key")
	if err := os.WriteFile(path, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, secret
}

func startShippedExample(t *testing.T) shipped {
	ports, g, _ := startExample(t)
	key, secret := canaryFile(t)
	s := shipped{g: g, keyFile: key, secret: secret, targets: adminTargets(g)}
	for name, port := range ports {
		scheme := "http"
		if name == "8443" {
			scheme = "https"
		}
		s.targets = append(s.targets, target{name: "site :" + name, base: fmt.Sprintf("%s://127.0.0.1:%d", scheme, port)})
	}
	return s
}

func startShippedIngress(t *testing.T) shipped {
	const name = "mdx-ingress.Caddyfile"
	e := newProdEnv(t)
	redis := redistest.Start(t)
	app := newUpstream(t, nil)
	port, health, metrics := freePort(t), freePort(t), freePort(t)
	cf := prodConfig(t, name, e,
		"tcp-handover/0.0.0.0", "tcp-handover/127.0.0.1",
		":443", fmt.Sprintf(":%d", port),
		"mdx.bank.example", "localhost",
		"10.0.1.0/24", "127.0.0.1",
		"https://fi-app.internal:8443", app.URL,
		":2020", fmt.Sprintf(":%d", health),
		":9180", fmt.Sprintf(":%d", metrics),
	)
	g := startGateway(t, cf, fmt.Sprintf("MXGATE_REDIS_URL=redis://127.0.0.1:%d/0", redis.Port))
	key := filepath.Join(e.etc, "keys/mdx-hmac.key")
	return shipped{g: g, keyFile: key, secret: fileSecret(t, key), targets: append(adminTargets(g),
		target{name: "site :443", base: fmt.Sprintf("https://127.0.0.1:%d", port)},
		target{name: "readiness", base: fmt.Sprintf("http://127.0.0.1:%d", health)},
		target{name: "metrics", base: fmt.Sprintf("http://127.0.0.1:%d", metrics)},
	)}
}

func startShippedSidecar(t *testing.T) shipped {
	const name = "egress-sidecar.Caddyfile"
	e := newProdEnv(t)
	redis := redistest.Start(t)
	mx := newUpstream(t, nil)
	run := runtimeDir(t)
	sock := filepath.Join(run, "sidecar.sock")
	health, metrics := freePort(t), freePort(t)
	cf := prodConfig(t, name, e,
		"/run/mxgate/sidecar.sock", sock,
		"https://api.mx.com", mx.URL,
		":2021", fmt.Sprintf(":%d", health),
		":9181", fmt.Sprintf(":%d", metrics),
	)
	g := startGateway(t, cf, fmt.Sprintf("MXGATE_REDIS_URL=redis://127.0.0.1:%d/0", redis.Port), "RUNTIME_DIRECTORY="+run)
	key := filepath.Join(e.etc, "keys/mx-api-key")
	return shipped{g: g, keyFile: key, secret: fileSecret(t, key), targets: append(adminTargets(g),
		// an app in the socket's group reaches the sidecar, which is not
		// the admin API; a stranger does not even connect
		target{name: "sidecar socket", unixSocket: sock, base: "http://localhost", strangers: true},
		target{name: "readiness", base: fmt.Sprintf("http://127.0.0.1:%d", health)},
		target{name: "metrics", base: fmt.Sprintf("http://127.0.0.1:%d", metrics)},
	)}
}

func startShippedFDX(t *testing.T) shipped {
	const name = "fdx-resource-server.Caddyfile"
	e := newProdEnv(t)
	jwks := httptest.NewServer(http.FileServer(http.Dir(filepath.Join(e.dev, "public"))))
	t.Cleanup(jwks.Close)
	provider := newUpstream(t, nil)
	port, health, metrics := freePort(t), freePort(t), freePort(t)
	cf := prodConfig(t, name, e,
		"tcp-handover/0.0.0.0", "tcp-handover/127.0.0.1",
		":443", fmt.Sprintf(":%d", port),
		"fdx.bank.example", "localhost",
		"https://fdx-api.internal:8443", provider.URL,
		":2022", fmt.Sprintf(":%d", health),
		":9182", fmt.Sprintf(":%d", metrics),
	)
	g := startGateway(t, cf, "FDX_JWKS_URL="+jwks.URL+"/jwks.json", "FDX_ISSUER=https://as.fdx.localhost", "FDX_AUDIENCE=https://fdx.localhost")
	key := filepath.Join(e.etc, "tls/fdx.key")
	return shipped{g: g, keyFile: key, secret: fileSecret(t, key), targets: append(adminTargets(g),
		target{name: "site :443", base: fmt.Sprintf("https://127.0.0.1:%d", port)},
		target{name: "readiness", base: fmt.Sprintf("http://127.0.0.1:%d", health)},
		target{name: "metrics", base: fmt.Sprintf("http://127.0.0.1:%d", metrics)},
	)}
}

// fileSecret is the secret a key file holds, trimmed as {file.*} reads it.
func fileSecret(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		t.Fatalf("%s is empty", path)
	}
	if strings.Contains(s, "\n") { // a PEM key: its first base64 line will do
		lines := strings.Split(s, "\n")
		s = lines[1]
	}
	return s
}

// runMxgate runs mxgate with args and env, and returns its output once it
// exits (or fails the test if it does not within a minute).
func runMxgate(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HOME="+home, "XDG_DATA_HOME="+home, "XDG_CONFIG_HOME="+home)
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("mxgate %s did not exit:\n%s", strings.Join(args, " "), out)
	}
	return string(out), err
}

// getUnix GETs path through the Unix socket sock.
func getUnix(t *testing.T, sock, path string) (int, string) {
	t.Helper()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodGet, "http://localhost"+path, nil)
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("GET %s on %s: %v", path, sock, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestSecondGatewayRefused: a second mxgate on an address a first one
// holds fails at start with an error that names the address, whether it is
// the admin socket, a site's unix-handover socket or a tcp-handover port,
// and the first keeps serving on all of them (a Unix socket is neither
// unlinked nor taken over); a reload through the admin socket keeps them.
// Caddy's own tcp network, named on purpose, shares the port (SO_REUSEPORT)
// as it always has.
func TestSecondGatewayRefused(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	sock := filepath.Join(t.TempDir(), "app.sock")
	config := func(port int, sock string) string {
		return fmt.Sprintf(`{
	persist_config off
}

http://127.0.0.1:%d {
	bind tcp-handover/127.0.0.1
	respond "first tcp"
}

http:// {
	bind unix-handover/%s|0220
	respond "first unix"
}
`, port, sock)
	}
	cf := config(port, sock)
	run := runtimeDir(t)
	g := startGateway(t, cf, "RUNTIME_DIRECTORY="+run)
	first := func(t *testing.T) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/", port), nil)
		if status, _, body := do(t, req); status != 200 || body != "first tcp" {
			t.Fatalf("the first gateway on TCP: %d %q", status, body)
		}
		if status, body := getUnix(t, sock, "/"); status != 200 || body != "first unix" {
			t.Fatalf("the first gateway on its socket: %d %q", status, body)
		}
		if status, _, err := g.adminDo(http.MethodGet, "/config/", nil); err != nil || status != 200 {
			t.Fatalf("the first gateway's admin endpoint: %d %v", status, err)
		}
	}
	first(t)
	for _, c := range []struct {
		name, config, run, want string
	}{
		{"same_admin_socket", cf, run, "unix-handover/" + filepath.Join(run, "admin.sock") + ": in use by another process"},
		{"same_unix_socket", config(freePort(t), sock), runtimeDir(t), "unix-handover/" + sock + ": in use by another process"},
		{"same_tcp_handover_port", config(port, filepath.Join(t.TempDir(), "other.sock")), runtimeDir(t),
			fmt.Sprintf("tcp-handover/127.0.0.1:%d: in use by another process", port)},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "Caddyfile")
			if err := os.WriteFile(path, []byte(c.config), 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := runMxgate(t, []string{"RUNTIME_DIRECTORY=" + c.run}, "run", "--config", path, "--adapter", "caddyfile")
			if err == nil {
				t.Fatalf("the second gateway ran:\n%s", out)
			}
			if !strings.Contains(out, c.want) {
				t.Fatalf("the error does not say %q:\n%s", c.want, out)
			}
			first(t)
		})
	}
	t.Run("reload_through_the_admin_socket", func(t *testing.T) {
		before, err := os.Lstat(sock)
		if err != nil {
			t.Fatal(err)
		}
		g.reload(t, strings.ReplaceAll(cf, "first", "reloaded"))
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/", port), nil)
		if status, _, body := do(t, req); status != 200 || body != "reloaded tcp" {
			t.Fatalf("after the reload, on TCP: %d %q", status, body)
		}
		if status, body := getUnix(t, sock, "/"); status != 200 || body != "reloaded unix" {
			t.Fatalf("after the reload, on the socket: %d %q", status, body)
		}
		after, err := os.Lstat(sock)
		if err != nil || !os.SameFile(before, after) {
			t.Fatalf("the socket was replaced by the reload: %v", err)
		}
	})
	t.Run("caddy_tcp_shared_by_name", func(t *testing.T) {
		shared := freePort(t)
		cf := fmt.Sprintf("{\n\tpersist_config off\n}\n\nhttp://127.0.0.1:%d {\n\tbind tcp/127.0.0.1\n\trespond \"shared\"\n}\n", shared)
		startGateway(t, cf)
		startGateway(t, cf) // both start: the operator asked for SO_REUSEPORT by naming tcp
	})
}

// TestSidecarSocketGroup runs the shipped egress sidecar as the systemd
// unit would: as a user of its own (DynamicUser=) whose group is the
// clients' group (Group=mxgate-clients), in a runtime directory of mode
// 0750 owned by them both (RuntimeDirectory=, RuntimeDirectoryMode=), with
// the socket's mode as shipped. An app's user in that group gets an answer
// through the socket, with the MX credentials attached; a user outside it
// is refused the connection; neither reaches the admin socket.
func TestSidecarSocketGroup(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	const gatewayUID, clientsGID = 64101, 64102 // DynamicUser's range; no such user on a test machine
	gatewayUser := identity{uid: gatewayUID, gid: clientsGID}
	member := identity{uid: 65534, gid: 65534, groups: []int{clientsGID}}
	nonMember := identity{uid: 65534, gid: 65534}

	e := newProdEnv(t)
	redis := redistest.Start(t)
	mx := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/vnd.mx.api.v1+json")
		w.WriteHeader(404)
		io.WriteString(w, `{"error":{"message":"Not Found"}}`)
	})
	// the gateway's files, as the unit gives them: its own, in a
	// directory it may pass through
	base := runtimeDir(t)
	for _, dir := range []string{"etc/keys", "home"} {
		if err := os.MkdirAll(filepath.Join(base, dir), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"mx-client-id", "mx-api-key"} {
		b, err := os.ReadFile(filepath.Join(e.etc, "keys", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(base, "etc/keys", f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	run := filepath.Join(base, "run")
	if err := os.Mkdir(run, 0o750); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{base, filepath.Join(base, "etc"), filepath.Join(base, "etc/keys"), filepath.Join(base, "etc/keys/mx-client-id"),
		filepath.Join(base, "etc/keys/mx-api-key"), filepath.Join(base, "home"), run} {
		if err := os.Chown(p, gatewayUID, clientsGID); err != nil {
			t.Fatal(err)
		}
	}
	if err := errors.Join(os.Chmod(base, 0o755), os.Chmod(run, 0o750)); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(run, "sidecar.sock")
	health, metrics := freePort(t), freePort(t)
	raw, err := os.ReadFile(prodDir + "egress-sidecar.Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	cf := string(raw)
	for _, r := range [][2]string{
		{"/etc/mxgate/", filepath.Join(base, "etc") + "/"},
		{"/run/mxgate/sidecar.sock", sock},
		{"https://api.mx.com", mx.URL},
		{":2021", fmt.Sprintf(":%d", health)},
		{":9181", fmt.Sprintf(":%d", metrics)},
	} {
		if !strings.Contains(cf, r[0]) {
			t.Fatalf("egress-sidecar.Caddyfile no longer holds %q", r[0])
		}
		cf = strings.ReplaceAll(cf, r[0], r[1])
	}
	path := filepath.Join(base, "Caddyfile")
	if err := os.WriteFile(path, []byte(cf), 0o644); err != nil {
		t.Fatal(err)
	}

	home := filepath.Join(base, "home")
	cmd := exec.Command("setpriv", append(gatewayUser.setpriv(), "--", binary, "run", "--config", path, "--adapter", "caddyfile")...)
	cmd.Env = append(os.Environ(), "RUNTIME_DIRECTORY="+run, "HOME="+home, "XDG_DATA_HOME="+home, "XDG_CONFIG_HOME="+home,
		fmt.Sprintf("MXGATE_REDIS_URL=redis://127.0.0.1:%d/0", redis.Port))
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.Dir = "/"
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	g := &gateway{admin: "unix/" + filepath.Join(run, "admin.sock"), Stderr: logs, done: done}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if status, _, err := g.adminDo(http.MethodGet, "/config/", nil); err == nil && status == 200 {
			break
		}
		select {
		case <-done:
			t.Fatalf("the gateway exited:\n%s", logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway did not come up:\n%s", logs)
		}
		time.Sleep(20 * time.Millisecond)
	}

	fi, err := os.Lstat(sock)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if fi.Mode().Perm() != 0o220 || st.Uid != gatewayUID || st.Gid != clientsGID {
		t.Fatalf("sidecar socket: mode %v, owner %d:%d; want 0220 as shipped, %d:%d", fi.Mode(), st.Uid, st.Gid, gatewayUID, clientsGID)
	}

	t.Run("member_gets_an_answer", func(t *testing.T) {
		a := curlAs(t, member, sock, http.MethodGet, "http://sidecar/users/USR-1", nil)
		if a.exit != 0 || a.status != 404 || !bytes.Contains(a.body, []byte("Not Found")) {
			t.Fatalf("curl exit %d, HTTP %d", a.exit, a.status)
		}
		reqs := mx.Requests()
		want := "Basic " + base64.StdEncoding.EncodeToString([]byte("CLIENT-1234:API-KEY-4567"))
		if len(reqs) != 1 || reqs[0].Header.Get("Authorization") != want {
			t.Fatalf("MX's stand-in saw %d requests, the last without the client's credentials", len(reqs))
		}
	})
	t.Run("non_member_refused", func(t *testing.T) {
		n := len(mx.Requests())
		a := curlAs(t, nonMember, sock, http.MethodGet, "http://sidecar/users/USR-1", nil)
		if a.exit != 7 || !strings.Contains(a.verbose, "Permission denied") {
			t.Fatalf("curl exit %d, HTTP %d: not refused the connection", a.exit, a.status)
		}
		if len(mx.Requests()) != n {
			t.Fatal("a request reached MX's stand-in")
		}
	})
	for name, id := range map[string]identity{"member": member, "non_member": nonMember} {
		t.Run(name+"_refused_the_admin_socket", func(t *testing.T) {
			a := curlAs(t, id, filepath.Join(run, "admin.sock"), http.MethodGet, "http://localhost/config/", nil)
			if a.exit != 7 || !strings.Contains(a.verbose, "Permission denied") {
				t.Fatalf("curl exit %d, HTTP %d: not refused the connection", a.exit, a.status)
			}
		})
	}
	if strings.Contains(logs.String(), "API-KEY-4567") {
		t.Error("the API key reached the logs")
	}
}
