// Package e2e drives real mxgate processes, started from Caddyfiles on
// loopback, in front of real upstream HTTP servers.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/testkit/freeport"
)

// binary is the mxgate built for this test run (or $MXGATE_BIN).
var binary string

// parallelism is how many tests marked t.Parallel run at once. They spend
// most of their time waiting on gateways, upstreams and timers, so more of
// them than there are cores keeps a 2-core machine busy; a few that flood
// a gateway are not parallel and run alone. An explicit
// -parallel on the command line wins.
const parallelism = "8"

func TestMain(m *testing.M) {
	flag.Parse()
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	if !explicit {
		_ = flag.Set("test.parallel", parallelism)
	}
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(2)
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	if b := os.Getenv("MXGATE_BIN"); b != "" {
		binary = b
		return m.Run(), nil
	}
	dir, err := os.MkdirTemp("", "mxgate-e2e-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	// other users run it too (the control-plane tests run it as the
	// gateway's user and as strangers)
	if err := os.Chmod(dir, 0o755); err != nil {
		return 0, err
	}
	binary = filepath.Join(dir, "mxgate")
	args := []string{"build", "-o", binary}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "../cmd/mxgate")...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("building mxgate: %w", err)
	}
	return m.Run(), nil
}

// freePort returns a loopback TCP port that no other caller in this test
// process was given.
func freePort(t testing.TB) int {
	t.Helper()
	port, err := freeport.Get()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// syncBuffer is a bytes.Buffer safe for a writer process and a reader test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// gateway is a running mxgate process.
type gateway struct {
	cmd     *exec.Cmd
	admin   string
	metrics string // the metrics URL, where the test's Caddyfile serves one
	Stderr  *syncBuffer
	done    chan struct{}
}

// startGateway writes caddyfile (in which {ADMIN} stands for the admin
// address) to a temporary directory, runs `mxgate run` on it with env, and
// waits until the admin endpoint answers with the config loaded. A
// caddyfile without {ADMIN} (and without an admin option) runs on mxgate's
// default admin endpoint, the socket admin.sock in $RUNTIME_DIRECTORY,
// which is a fresh directory (see runtimeDir) unless env sets one.
func startGateway(t testing.TB, caddyfile string, env ...string) *gateway {
	t.Helper()
	return startGatewayBinary(t, binary, caddyfile, env...)
}

// startGatewayBinary is startGateway with another mxgate binary.
func startGatewayBinary(t testing.TB, binary, caddyfile string, env ...string) *gateway {
	t.Helper()
	dir := t.TempDir()
	var admin string
	if strings.Contains(caddyfile, "{ADMIN}") {
		admin = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		caddyfile = strings.ReplaceAll(caddyfile, "{ADMIN}", admin)
	} else {
		run := envValue(env, "RUNTIME_DIRECTORY")
		if run == "" {
			run = runtimeDir(t)
			env = append(env, "RUNTIME_DIRECTORY="+run)
		}
		admin = "unix/" + filepath.Join(run, "admin.sock")
	}
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "run", "--config", path, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(),
		"HOME="+dir, "XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
	cmd.Env = append(cmd.Env, env...)
	return startGatewayCmd(t, cmd, admin)
}

// startGatewayCmd starts cmd, an mxgate run whose configuration has its
// admin endpoint at admin, and waits until it answers with the config
// loaded.
func startGatewayCmd(t testing.TB, cmd *exec.Cmd, admin string) *gateway {
	t.Helper()
	g := &gateway{cmd: cmd, admin: admin, Stderr: &syncBuffer{}, done: make(chan struct{})}
	g.cmd.Stdout, g.cmd.Stderr = g.Stderr, g.Stderr
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.cmd.Wait(); close(g.done) }()
	t.Cleanup(func() {
		g.stop()
		if strings.Contains(g.Stderr.String(), "WARNING: DATA RACE") {
			t.Errorf("mxgate reported a data race:\n%s", g.Stderr)
		}
	})

	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-g.done:
			t.Fatalf("mxgate exited during start-up:\n%s", g.Stderr)
		default:
		}
		if status, body, err := g.adminDo(http.MethodGet, "/config/", nil); err == nil && status == 200 && len(bytes.TrimSpace(body)) > 4 {
			return g
		}
		if time.Now().After(deadline) {
			t.Fatalf("mxgate did not come up in time:\n%s", g.Stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// envValue is the value env (NAME=value entries) gives name, or "".
func envValue(env []string, name string) string {
	v := ""
	for _, e := range env {
		if k, val, ok := strings.Cut(e, "="); ok && k == name {
			v = val
		}
	}
	return v
}

// runtimeDir makes a directory as systemd makes a RuntimeDirectory= by
// default: fresh, the gateway's, mode 0755, in a directory other users may
// pass through (/tmp; t.TempDir's are not), so that what keeps other users
// from a socket in it is the socket's own mode.
func runtimeDir(t testing.TB) string {
	t.Helper()
	run, err := os.MkdirTemp("", "mxgate-run-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(run) })
	if err := os.Chmod(run, 0o755); err != nil {
		t.Fatal(err)
	}
	return run
}

// adminDo sends a request to the gateway's admin endpoint, on TCP or on
// a Unix socket (g.admin unix/<path>), as its own user.
func (g *gateway) adminDo(method, path string, body []byte) (int, []byte, error) {
	client, base := http.DefaultClient, "http://"+g.admin
	if sock, ok := strings.CutPrefix(g.admin, "unix/"); ok {
		tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}
		defer tr.CloseIdleConnections()
		client, base = &http.Client{Transport: tr}, "http://admin"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, base+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// reload loads caddyfile ({ADMIN} as in startGateway) into the running
// gateway with `mxgate reload`, as an operator rotating a key does.
func (g *gateway) reload(t testing.TB, caddyfile string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(caddyfile, "{ADMIN}", g.admin)), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(binary, "reload", "--config", path, "--adapter", "caddyfile", "--address", g.admin).CombinedOutput()
	if err != nil {
		t.Fatalf("mxgate reload: %v\n%s", err, out)
	}
}

// stop ends the process gracefully, then forcefully.
func (g *gateway) stop() {
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.done:
	case <-time.After(10 * time.Second):
		_ = g.cmd.Process.Kill()
		<-g.done
	}
}

// upstream is a real HTTP server that records every request it receives.
type upstream struct {
	*httptest.Server
	mu       sync.Mutex
	requests []recorded
}

type recorded struct {
	Method, URI string
	Header      http.Header
	Body        []byte
}

func newUpstream(t testing.TB, respond func(w http.ResponseWriter, r *http.Request)) *upstream {
	t.Helper()
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.requests = append(u.requests, recorded{r.Method, r.RequestURI, r.Header.Clone(), body})
		u.mu.Unlock()
		if respond != nil {
			respond(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/vnd.moneydesktop.mdx.v5+xml")
		_, _ = io.WriteString(w, `<mdx version="5.0"><ok/></mdx>`)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) Requests() []recorded {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]recorded(nil), u.requests...)
}

func (u *upstream) hostPort() string { return strings.TrimPrefix(u.URL, "http://") }

// do sends req and returns the status, headers and body.
func do(t testing.TB, req *http.Request) (int, http.Header, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(req.Context(), 10*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(body)
}

// describeLine names a JSON log line by its logger and message only, so a
// failing test can say where a secret leaked without printing it.
func describeLine(line string) string {
	var m struct {
		Logger string `json:"logger"`
		Msg    string `json:"msg"`
	}
	if json.Unmarshal([]byte(line), &m) != nil {
		return "a line that is not JSON"
	}
	return fmt.Sprintf("logger %q, message %q", m.Logger, m.Msg)
}

// waitForLog waits until the gateway's output holds s.
func waitForLog(t *testing.T, g *gateway, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(g.Stderr.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("the gateway never logged %q", s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
