package e2e

// Attacks from outside the gateway's process, as an outsider with a local
// account, another gateway on the same Redis, or a client of the gateway
// would try them, on the three parts hardened last: the control plane (the
// admin socket, its directory, the sidecar's socket and ports, reload and
// stop, metrics and health), state identity (replay caches and budgets
// named in Redis) and credentials fetched on clients' behalf (MX Connect
// tokens, JWKS, introspection). Each attack is a named subtest asserting
// the secure outcome; it fails if the attack succeeds.
//
// Processes run as other users with setpriv: hoGateway is the gateway's
// user, hoStranger a local user with no business with it, hoMember a user
// in the sidecar's clients group. Every process as another user gets a
// clean environment whose TMPDIR is a sticky directory of the test's own,
// which stands for /tmp (mxgate's fallback runtime directory is
// $TMPDIR/mxgate-<uid>), so that the tests neither see nor disturb the
// real /tmp.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/testkit/redistest"
)

const (
	hoGateway   = 64201 // the gateway's user (and group, unless the clients' group)
	hoStranger  = 64202 // another local user
	hoMember    = 64203 // an app's user, in the clients' group
	hoClientsGr = 64210 // the sidecar's clients' group (mxgate-clients)
)

// hoRequireRoot skips (or, under CI, fails) a test that runs processes as
// other users.
func hoRequireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("this test runs processes as other users (setpriv): run it as root")
		}
		t.Skip("this test runs processes as other users (setpriv): run it as root; CI does")
	}
	redistest.Require(t, "setpriv", "curl")
}

// hoDir makes a fresh directory that others may pass through on the way
// (its parent is /tmp), owned by uid:gid with mode.
func hoDir(t *testing.T, uid, gid int, mode os.FileMode) string {
	t.Helper()
	base, err := os.MkdirTemp("", "mxgate-ho-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, "d")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
	return dir
}

// hoSticky is a directory like /tmp: everyone may create entries, only
// their owner may remove them.
func hoSticky(t *testing.T) string {
	t.Helper()
	return hoDir(t, 0, 0, os.ModeSticky|0o777)
}

// hoWrite writes content to dir/name, owned by uid:gid, mode 0600.
func hoWrite(t *testing.T, dir, name, content string, uid, gid int) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, uid, gid); err != nil {
		t.Fatal(err)
	}
	return p
}

// hoEnv is a clean environment for a process of a user whose home is home.
func hoEnv(home string, extra ...string) []string {
	return append([]string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + home,
		"XDG_DATA_HOME=" + filepath.Join(home, "data"),
		"XDG_CONFIG_HOME=" + filepath.Join(home, "config"),
	}, extra...)
}

// hoAs is a command run as uid:gid with the supplementary groups given,
// in env only.
func hoAs(uid, gid int, groups []int, env []string, name string, args ...string) *exec.Cmd {
	gs := "--clear-groups"
	if len(groups) > 0 {
		var s []string
		for _, g := range groups {
			s = append(s, strconv.Itoa(g))
		}
		gs = "--groups=" + strings.Join(s, ",")
	}
	cmd := exec.Command("setpriv", append([]string{
		"--reuid=" + strconv.Itoa(uid), "--regid=" + strconv.Itoa(gid), gs, "--", name}, args...)...)
	cmd.Env = env
	return cmd
}

// hoProc is a process the test watches without expecting it to come up.
type hoProc struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

func hoLaunch(t *testing.T, cmd *exec.Cmd) *hoProc {
	t.Helper()
	p := &hoProc{cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// served waits until the process has exited (false) or logged that it
// serves its configuration (true).
func (p *hoProc) served(t *testing.T) bool {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for {
		select {
		case <-p.done:
			return false
		default:
		}
		if strings.Contains(p.out.String(), "serving initial configuration") {
			return true
		}
		if time.Now().After(deadline) {
			t.Fatalf("the process neither served nor exited:\n%s", p.out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// hoStartAs runs `mxgate run` as uid:gid (groups) on caddyfile, written to
// a directory the user owns, and waits until its admin endpoint (admin,
// unix/<path> or host:port) answers with the configuration.
func hoStartAs(t *testing.T, uid, gid int, groups []int, caddyfile, admin string, env []string) *gateway {
	t.Helper()
	dir := hoDir(t, uid, gid, 0o700)
	path := hoWrite(t, dir, "Caddyfile", caddyfile, uid, gid)
	cmd := hoAs(uid, gid, groups, env, binary, "run", "--config", path, "--adapter", "caddyfile")
	return startGatewayCmd(t, cmd, admin)
}

// hoCurl runs curl as uid:gid (groups) and returns its exit code and what
// it printed (the body, then the status code on a line of its own).
func hoCurl(t *testing.T, uid, gid int, groups []int, args ...string) (int, string) {
	t.Helper()
	cmd := hoAs(uid, gid, groups, hoEnv("/"), "curl", append([]string{"-sS", "--max-time", "10", "-w", "\n%{http_code}"}, args...)...)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}

// hoTCPListeners lists the local addresses of the TCP sockets that pid
// listens on.
func hoTCPListeners(t *testing.T, pid int) []string {
	t.Helper()
	inodes := map[string]bool{}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(link, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	var out []string
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(table)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != "0A" || !inodes[f[9]] {
				continue
			}
			_, port, _ := strings.Cut(f[1], ":")
			n, _ := strconv.ParseInt(port, 16, 32)
			out = append(out, fmt.Sprintf("%s:%d", table[len("/proc/net/"):], n))
		}
	}
	return out
}

// checkListeners fails unless the gateway listens on TCP on its site's
// port and nowhere else.
func checkListeners(t *testing.T, g *gateway, port int, prefix string) {
	t.Helper()
	site := false
	for _, l := range hoTCPListeners(t, g.cmd.Process.Pid) {
		if strings.HasSuffix(l, fmt.Sprintf(":%d", port)) {
			site = true
			continue
		}
		t.Errorf("%sthe gateway listens on TCP beyond its site: %s", prefix, l)
	}
	if !site {
		t.Errorf("%sthe gateway's TCP listeners were not found (site port %d)", prefix, port)
	}
}

// hoConfigOf is the configuration the gateway serves, read as root.
func hoConfigOf(t *testing.T, g *gateway) string {
	t.Helper()
	status, body, err := g.adminDo(http.MethodGet, "/config/", nil)
	if err != nil || status != 200 {
		t.Fatalf("reading the configuration as root: %d %v", status, err)
	}
	return string(body)
}

// hoGet fetches url and returns the status and body.
func hoGet(t *testing.T, url string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	status, _, body := do(t, req)
	return status, body
}

// TestHostileOutsideControlPlane: local users try the admin endpoint, its
// directory, reload and stop, the sidecar's socket and ports, metrics and
// health.
func TestHostileOutsideControlPlane(t *testing.T) {
	t.Parallel()
	hoRequireRoot(t)

	const siteCf = `{
	default_bind tcp-handover/127.0.0.1
}
http://127.0.0.1:%d {
	mx_auth attach {
		client_id {env.MX_CLIENT_ID}
		api_key {env.MX_API_KEY}
	}
	reverse_proxy %s
}
`
	// the gateway's own environment: no systemd, no login session, so the
	// admin socket is $TMPDIR/mxgate-<uid>/admin.sock
	fallbackGateway := func(t *testing.T, tmp string, gid int, groups []int) (*gateway, *upstream, int) {
		t.Helper()
		up := newUpstream(t, nil)
		port := freePort(t)
		home := hoDir(t, hoGateway, gid, 0o700)
		sock := filepath.Join(tmp, fmt.Sprintf("mxgate-%d", hoGateway), "admin.sock")
		g := hoStartAs(t, hoGateway, gid, groups, fmt.Sprintf(siteCf, port, up.URL), "unix/"+sock,
			hoEnv(home, "TMPDIR="+tmp, "MX_CLIENT_ID=CLIENT-OUT-1", "MX_API_KEY=API-KEY-OUTSIDE-1"))
		return g, up, port
	}

	t.Run("stranger_and_member_cannot_use_the_default_admin_socket", func(t *testing.T) {
		t.Parallel()
		tmp := hoSticky(t)
		g, _, port := fallbackGateway(t, tmp, hoClientsGr, nil)
		sock := strings.TrimPrefix(g.admin, "unix/")
		before := hoConfigOf(t, g)
		evil := fmt.Sprintf(`{"apps":{"http":{"servers":{"x":{"listen":["127.0.0.1:%d"],"routes":[{"handle":[{"handler":"static_response","body":"{file./etc/shadow}"}]}]}}}}}`, freePort(t))
		for _, who := range []struct {
			name   string
			uid    int
			groups []int
		}{{"stranger", hoStranger, nil}, {"member of the clients' group", hoMember, []int{hoClientsGr}}} {
			for _, attempt := range [][]string{
				{"--unix-socket", sock, "http://admin/config/"},
				{"--unix-socket", sock, "-X", "POST", "-H", "Content-Type: application/json", "--data-binary", evil, "http://admin/load"},
				{"--unix-socket", sock, "-X", "PATCH", "-H", "Content-Type: application/json", "--data-binary", `"x"`, "http://admin/config/apps/http/servers/srv0/listen/0"},
				{"--unix-socket", sock, "-X", "POST", "http://admin/stop"},
				{"http://127.0.0.1:2019/config/"},
			} {
				code, out := hoCurl(t, who.uid, who.uid, who.groups, attempt...)
				if code == 0 && strings.Contains(out, "mx_auth") {
					t.Errorf("%s: curl %v answered with the configuration:\n%s", who.name, attempt, out)
				}
				if code == 0 && !strings.HasPrefix(attempt[0], "http://127.0.0.1:2019") {
					t.Errorf("%s: curl %v reached the admin socket:\n%s", who.name, attempt, out)
				}
			}
			// and with mxgate's own client
			cmd := hoAs(who.uid, who.uid, who.groups, hoEnv("/"), binary, "stop", "--address", "unix/"+sock)
			if out, err := cmd.CombinedOutput(); err == nil {
				t.Errorf("%s: mxgate stop --address %s succeeded:\n%s", who.name, sock, out)
			}
		}
		if after := hoConfigOf(t, g); after != before {
			t.Fatalf("the configuration changed:\n%s", after)
		}
		if status, _ := hoGet(t, fmt.Sprintf("http://127.0.0.1:%d/users", port)); status != 200 {
			t.Fatalf("the gateway no longer serves: %d", status)
		}
		checkListeners(t, g, port, "")
		fi, err := os.Stat(sock)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("admin socket: %v %v", fi.Mode(), err)
		}
	})

	t.Run("planted_runtime_directory_is_refused", func(t *testing.T) {
		t.Parallel()
		victimDir := hoDir(t, hoGateway, hoGateway, 0o700) // a directory of the gateway's user
		for _, c := range []struct {
			name  string
			plant func(path string)
		}{
			{"stranger's directory 0700", func(p string) { mustMkdir(t, p, hoStranger, 0o700) }},
			{"stranger's directory 0777", func(p string) { mustMkdir(t, p, hoStranger, 0o777) }},
			{"the gateway user's directory, open to others", func(p string) { mustMkdir(t, p, hoGateway, 0o777) }},
			{"the gateway user's directory, group-writable", func(p string) { mustMkdir(t, p, hoGateway, 0o770) }},
			{"symlink to a directory of the gateway's user", func(p string) {
				if err := os.Symlink(victimDir, p); err != nil {
					t.Fatal(err)
				}
				_ = os.Lchown(p, hoStranger, hoStranger)
			}},
			{"regular file", func(p string) { hoWrite(t, filepath.Dir(p), filepath.Base(p), "x", hoStranger, hoStranger) }},
		} {
			tmp := hoSticky(t)
			c.plant(filepath.Join(tmp, fmt.Sprintf("mxgate-%d", hoGateway)))
			home := hoDir(t, hoGateway, hoGateway, 0o700)
			path := hoWrite(t, home, "Caddyfile", fmt.Sprintf(siteCf, freePort(t), "127.0.0.1:9"), hoGateway, hoGateway)
			p := hoLaunch(t, hoAs(hoGateway, hoGateway, nil,
				hoEnv(home, "TMPDIR="+tmp, "MX_CLIENT_ID=C", "MX_API_KEY=K"),
				binary, "run", "--config", path, "--adapter", "caddyfile"))
			if p.served(t) {
				t.Errorf("%s: the gateway served with its admin socket there:\n%s", c.name, p.out)
			}
			if entries, _ := os.ReadDir(victimDir); len(entries) != 0 {
				t.Errorf("%s: the gateway wrote into the symlink's target: %v", c.name, entries)
			}
		}
		// XDG_RUNTIME_DIR that others may write to: $XDG_RUNTIME_DIR/mxgate planted
		xdg := hoSticky(t)
		mustMkdir(t, filepath.Join(xdg, "mxgate"), hoStranger, 0o777)
		home := hoDir(t, hoGateway, hoGateway, 0o700)
		path := hoWrite(t, home, "Caddyfile", fmt.Sprintf(siteCf, freePort(t), "127.0.0.1:9"), hoGateway, hoGateway)
		p := hoLaunch(t, hoAs(hoGateway, hoGateway, nil,
			hoEnv(home, "XDG_RUNTIME_DIR="+xdg, "TMPDIR="+hoSticky(t), "MX_CLIENT_ID=C", "MX_API_KEY=K"),
			binary, "run", "--config", path, "--adapter", "caddyfile"))
		// refusing to start, or serving elsewhere, are both safe; serving
		// in the planted directory is not
		if p.served(t) && strings.Contains(p.out.String(), `"address":"unix-handover/`+filepath.Join(xdg, "mxgate")) {
			t.Errorf("planted $XDG_RUNTIME_DIR/mxgate: the gateway served with its admin socket there:\n%s", p.out)
		}
		if entries, _ := os.ReadDir(filepath.Join(xdg, "mxgate")); len(entries) != 0 {
			t.Errorf("planted $XDG_RUNTIME_DIR/mxgate: the gateway wrote into it: %v", entries)
		}
	})

	// The gateway runs in a login session (its socket in $XDG_RUNTIME_DIR);
	// its operator reloads or stops it from an environment without one
	// (sudo, cron, a script), where mxgate's default is
	// $TMPDIR/mxgate-<uid>/admin.sock. A stranger has made that directory
	// first and listens there: the client must not hand the configuration
	// (or the stop) to the stranger, and must not report success.
	t.Run("reload_and_stop_defaults_trust_a_planted_socket", func(t *testing.T) {
		t.Parallel()
		for _, victim := range []struct {
			name string
			uid  int
		}{{"the gateway's user", hoGateway}, {"root", 0}} {
			tmp := hoSticky(t)
			// the stranger's admin endpoint: an mxgate of the stranger's that
			// hands whatever it receives to a recorder and answers 200
			rec := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) })
			planted := filepath.Join(tmp, fmt.Sprintf("mxgate-%d", victim.uid))
			mustMkdir(t, planted, hoStranger, 0o755)
			sHome := hoDir(t, hoStranger, hoStranger, 0o700)
			sCf := hoWrite(t, sHome, "Caddyfile", fmt.Sprintf(`{
	admin off
	auto_https off
}
http:// {
	bind unix/%s/admin.sock|0777
	reverse_proxy %s
}
`, planted, rec.URL), hoStranger, hoStranger)
			s := hoLaunch(t, hoAs(hoStranger, hoStranger, nil, hoEnv(sHome, "TMPDIR="+hoSticky(t)),
				binary, "run", "--config", sCf, "--adapter", "caddyfile"))
			if !s.served(t) {
				t.Fatalf("the stranger's listener did not start:\n%s", s.out)
			}

			// the operator's Caddyfile, as deploy/README.md writes one
			vHome := hoDir(t, victim.uid, victim.uid, 0o700)
			creds := hoDir(t, victim.uid, victim.uid, 0o700)
			hoWrite(t, creds, "mx-api-key", "API-KEY-NEVER-ELSEWHERE", victim.uid, victim.uid)
			vCf := hoWrite(t, vHome, "Caddyfile", fmt.Sprintf(`{
	default_bind tcp-handover/127.0.0.1
}
http://127.0.0.1:%d {
	mx_auth attach {
		client_id {$MX_CLIENT_ID}
		api_key {file.{$CREDENTIALS_DIRECTORY}/mx-api-key}
	}
	reverse_proxy 127.0.0.1:9
}
`, freePort(t)), victim.uid, victim.uid)
			env := hoEnv(vHome, "TMPDIR="+tmp, "MX_CLIENT_ID=CLIENT-OF-THE-BANK", "CREDENTIALS_DIRECTORY="+creds)
			reload := hoAs(victim.uid, victim.uid, nil, env, binary, "reload", "--config", vCf, "--adapter", "caddyfile", "--force")
			rout, rerr := reload.CombinedOutput()
			stop := hoAs(victim.uid, victim.uid, nil, env, binary, "stop")
			sout, serr := stop.CombinedOutput()

			for _, r := range rec.Requests() {
				leaked := ""
				if bytes.Contains(r.Body, []byte("CLIENT-OF-THE-BANK")) || bytes.Contains(r.Body, []byte(creds)) {
					leaked = " (with the client id and the credentials' path)"
				}
				t.Errorf("%s: %s %s, %d bytes, reached a socket in a directory of another user%s", victim.name, r.Method, r.URI, len(r.Body), leaked)
			}
			if rerr == nil {
				t.Errorf("%s: mxgate reload reported success although no gateway of its user was reached:\n%s", victim.name, rout)
			}
			if serr == nil {
				t.Errorf("%s: mxgate stop reported success although no gateway of its user was reached:\n%s", victim.name, sout)
			}
		}
	})

	// The configuration names an admin socket of mode 0600 in a directory
	// everyone may write to (the socket's own mode is private, so only the
	// directory can warn). While the gateway is down (a restart), a stranger
	// binds the path first: the gateway then refuses to start, and the
	// operator's `mxgate reload --config`, which finds the configuration's
	// endpoint, must not hand the configuration to the stranger.
	t.Run("reload_trusts_a_squatted_configured_admin_socket", func(t *testing.T) {
		t.Parallel()
		tmp := hoSticky(t)
		sock := filepath.Join(tmp, "mxgate-admin.sock")
		rec := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) })
		sHome := hoDir(t, hoStranger, hoStranger, 0o700)
		sCf := hoWrite(t, sHome, "Caddyfile", fmt.Sprintf("{\n\tadmin off\n\tauto_https off\n}\nhttp:// {\n\tbind unix/%s|0777\n\treverse_proxy %s\n}\n", sock, rec.URL), hoStranger, hoStranger)
		s := hoLaunch(t, hoAs(hoStranger, hoStranger, nil, hoEnv(sHome, "TMPDIR="+hoSticky(t)), binary, "run", "--config", sCf, "--adapter", "caddyfile"))
		if !s.served(t) {
			t.Fatalf("the stranger's listener did not start:\n%s", s.out)
		}
		home := hoDir(t, hoGateway, hoGateway, 0o700)
		cf := hoWrite(t, home, "Caddyfile", fmt.Sprintf(`{
	admin unix-handover/%s|0600
	default_bind tcp-handover/127.0.0.1
}
http://127.0.0.1:%d {
	mx_auth attach {
		client_id {$MX_CLIENT_ID}
		api_key {env.MX_API_KEY}
	}
	reverse_proxy 127.0.0.1:9
}
`, sock, freePort(t)), hoGateway, hoGateway)
		env := hoEnv(home, "TMPDIR="+hoSticky(t), "MX_CLIENT_ID=CLIENT-OF-THE-BANK", "MX_API_KEY=K")
		p := hoLaunch(t, hoAs(hoGateway, hoGateway, nil, env, binary, "run", "--config", cf, "--adapter", "caddyfile"))
		if p.served(t) {
			t.Fatalf("the gateway started on a socket path a stranger holds")
		}
		out, err := hoAs(hoGateway, hoGateway, nil, env, binary, "reload", "--config", cf, "--adapter", "caddyfile", "--force").CombinedOutput()
		for _, r := range rec.Requests() {
			t.Errorf("%s %s, %d bytes (client id in it: %v), reached the stranger's socket", r.Method, r.URI, len(r.Body), bytes.Contains(r.Body, []byte("CLIENT-OF-THE-BANK")))
		}
		if err == nil {
			t.Errorf("mxgate reload reported success although its gateway is not running:\n%s", out)
		} else if want := fmt.Sprintf("%s is a socket of uid %d", sock, hoStranger); !strings.Contains(string(out), want) {
			t.Errorf("mxgate reload's refusal does not say %q:\n%s", want, out)
		}
		// and the configuration said so when it was loaded
		if !strings.Contains(p.out.String(), "THE ADMIN ENDPOINT IS OPEN TO OTHER LOCAL USERS") {
			t.Errorf("no warning for an admin socket in a directory every user may write to:\n%s", p.out)
		}
	})

	t.Run("second_mxgate_cannot_take_the_admin_socket", func(t *testing.T) {
		t.Parallel()
		tmp := hoSticky(t)
		g, _, port := fallbackGateway(t, tmp, hoGateway, nil)
		sock := strings.TrimPrefix(g.admin, "unix/")
		before := hoConfigOf(t, g)
		// the same user, the same environment, another site
		home := hoDir(t, hoGateway, hoGateway, 0o700)
		path := hoWrite(t, home, "Caddyfile", fmt.Sprintf(siteCf, freePort(t), "127.0.0.1:9"), hoGateway, hoGateway)
		second := hoLaunch(t, hoAs(hoGateway, hoGateway, nil, hoEnv(home, "TMPDIR="+tmp, "MX_CLIENT_ID=C", "MX_API_KEY=K"),
			binary, "run", "--config", path, "--adapter", "caddyfile"))
		if second.served(t) {
			t.Errorf("a second mxgate of the same user started beside the first:\n%s", second.out)
		}
		// a stranger naming the gateway's socket as its own admin endpoint
		sHome := hoDir(t, hoStranger, hoStranger, 0o700)
		sPath := hoWrite(t, sHome, "Caddyfile", fmt.Sprintf(siteCf, freePort(t), "127.0.0.1:9"), hoStranger, hoStranger)
		for _, admin := range []string{"unix/" + sock, "unix-handover/" + sock + "|0600"} {
			third := hoLaunch(t, hoAs(hoStranger, hoStranger, nil, hoEnv(sHome, "TMPDIR="+hoSticky(t), "CADDY_ADMIN="+admin, "MX_CLIENT_ID=C", "MX_API_KEY=K"),
				binary, "run", "--config", sPath, "--adapter", "caddyfile"))
			if third.served(t) {
				t.Errorf("a stranger's mxgate started with CADDY_ADMIN=%s:\n%s", admin, third.out)
			}
		}
		if after := hoConfigOf(t, g); after != before {
			t.Fatalf("the configuration changed:\n%s", after)
		}
		if status, _ := hoGet(t, fmt.Sprintf("http://127.0.0.1:%d/users", port)); status != 200 {
			t.Fatalf("the first gateway no longer serves: %d", status)
		}
	})

	t.Run("sidecar_socket_path_squatted_before_start", func(t *testing.T) {
		t.Parallel()
		victimFile := hoWrite(t, hoDir(t, hoGateway, hoGateway, 0o755), "keep", "the gateway user's file", hoGateway, hoGateway)
		for _, c := range []struct {
			name  string
			plant func(t *testing.T, path string) func() string
		}{
			{"a live socket of a stranger", func(t *testing.T, p string) func() string {
				l, err := net.Listen("unix", p)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { l.Close() })
				_ = os.Lchown(p, hoStranger, hoStranger)
				var got atomic.Int64
				go func() {
					for {
						c, err := l.Accept()
						if err != nil {
							return
						}
						n, _ := io.Copy(io.Discard, c)
						got.Add(n)
						c.Close()
					}
				}()
				return func() string {
					if n := got.Load(); n > 0 {
						return fmt.Sprintf("the stranger's socket received %d bytes", n)
					}
					return ""
				}
			}},
			{"a stale socket of a stranger", func(t *testing.T, p string) func() string {
				l, err := net.Listen("unix", p)
				if err != nil {
					t.Fatal(err)
				}
				l.(*net.UnixListener).SetUnlinkOnClose(false)
				l.Close()
				_ = os.Lchown(p, hoStranger, hoStranger)
				return func() string { return "" }
			}},
			{"a regular file", func(t *testing.T, p string) func() string {
				hoWrite(t, filepath.Dir(p), filepath.Base(p), "stranger", hoStranger, hoStranger)
				return func() string {
					if b, _ := os.ReadFile(p); string(b) != "stranger" {
						return "the file was changed"
					}
					return ""
				}
			}},
			{"a FIFO", func(t *testing.T, p string) func() string {
				if err := syscall.Mkfifo(p, 0o666); err != nil {
					t.Fatal(err)
				}
				_ = os.Lchown(p, hoStranger, hoStranger)
				return func() string { return "" }
			}},
			{"a symlink to the gateway user's file", func(t *testing.T, p string) func() string {
				if err := os.Symlink(victimFile, p); err != nil {
					t.Fatal(err)
				}
				_ = os.Lchown(p, hoStranger, hoStranger)
				return func() string {
					if b, _ := os.ReadFile(victimFile); string(b) != "the gateway user's file" {
						return "the symlink's target was changed"
					}
					return ""
				}
			}},
		} {
			tmp := hoSticky(t)
			sock := filepath.Join(tmp, "sidecar.sock")
			check := c.plant(t, sock)
			up := newUpstream(t, nil)
			home := hoDir(t, hoGateway, hoGateway, 0o700)
			path := hoWrite(t, home, "Caddyfile", fmt.Sprintf(`{
	auto_https off
}
http:// {
	bind unix-handover/%s|0220
	mx_auth attach {
		client_id {env.MX_CLIENT_ID}
		api_key {env.MX_API_KEY}
	}
	reverse_proxy %s
}
`, sock, up.URL), hoGateway, hoGateway)
			p := hoLaunch(t, hoAs(hoGateway, hoGateway, nil, hoEnv(home, "TMPDIR="+tmp, "MX_CLIENT_ID=C", "MX_API_KEY=K"),
				binary, "run", "--config", path, "--adapter", "caddyfile"))
			if p.served(t) {
				t.Errorf("%s at the sidecar's path: the gateway served", c.name)
			}
			if msg := check(); msg != "" {
				t.Errorf("%s: %s", c.name, msg)
			}
			if n := len(up.Requests()); n != 0 {
				t.Errorf("%s: MX's stand-in saw %d requests", c.name, n)
			}
		}
	})

	// As deploy/systemd runs it: the runtime directory the gateway's, group
	// mxgate-clients, 0750; the sidecar's socket 0220; the admin socket
	// 0600.
	t.Run("sidecar_socket_only_for_the_clients_group", func(t *testing.T) {
		t.Parallel()
		run := hoDir(t, hoGateway, hoClientsGr, 0o750)
		sock := filepath.Join(run, "sidecar.sock")
		up := newUpstream(t, nil)
		home := hoDir(t, hoGateway, hoClientsGr, 0o700)
		g := hoStartAs(t, hoGateway, hoClientsGr, nil, fmt.Sprintf(`{
	auto_https off
}
http:// {
	bind unix-handover/%s|0220
	mx_auth attach {
		client_id {env.MX_CLIENT_ID}
		api_key {env.MX_API_KEY}
	}
	reverse_proxy %s
}
`, sock, up.URL), "unix/"+filepath.Join(run, "admin.sock"),
			hoEnv(home, "RUNTIME_DIRECTORY="+run, "TMPDIR="+hoSticky(t), "MX_CLIENT_ID=CLIENT-SOCK", "MX_API_KEY=API-KEY-SOCK"))
		before := hoConfigOf(t, g)

		code, out := hoCurl(t, hoMember, hoMember, []int{hoClientsGr}, "--unix-socket", sock, "http://sidecar/users")
		if code != 0 || !strings.HasSuffix(out, "200") {
			t.Fatalf("a member of the clients' group: curl %d\n%s", code, out)
		}
		reqs := up.Requests()
		want := "Basic " + base64.StdEncoding.EncodeToString([]byte("CLIENT-SOCK:API-KEY-SOCK"))
		if len(reqs) != 1 || reqs[0].Header.Get("Authorization") != want {
			t.Fatalf("MX's stand-in saw %d requests, not the member's with the credentials", len(reqs))
		}
		if code, out := hoCurl(t, hoStranger, hoStranger, nil, "--unix-socket", sock, "http://sidecar/users"); code == 0 {
			t.Errorf("a stranger reached the sidecar:\n%s", out)
		}
		for _, who := range []struct {
			uid    int
			groups []int
		}{{hoMember, []int{hoClientsGr}}, {hoStranger, nil}} {
			if code, out := hoCurl(t, who.uid, who.uid, who.groups, "--unix-socket", filepath.Join(run, "admin.sock"), "http://admin/config/"); code == 0 {
				t.Errorf("uid %d reached the admin socket:\n%s", who.uid, out)
			}
			// nor remove or replace the sidecar's socket
			rm := hoAs(who.uid, who.uid, who.groups, hoEnv("/"), "rm", "-f", sock)
			_ = rm.Run()
			if fi, err := os.Lstat(sock); err != nil || fi.Mode()&os.ModeSocket == 0 {
				t.Fatalf("uid %d removed the sidecar's socket", who.uid)
			}
		}
		if n := len(up.Requests()); n != 1 {
			t.Errorf("MX's stand-in saw %d requests, want only the member's", n)
		}
		if after := hoConfigOf(t, g); after != before {
			t.Fatalf("the configuration changed:\n%s", after)
		}
	})

	t.Run("tcp_ports_cannot_be_taken_over", func(t *testing.T) {
		t.Parallel()
		up := newUpstream(t, nil)
		handover, plain, metrics := freePort(t), freePort(t), freePort(t)
		home := hoDir(t, hoGateway, hoGateway, 0o700)
		tmp := hoSticky(t)
		sock := filepath.Join(tmp, fmt.Sprintf("mxgate-%d", hoGateway), "admin.sock")
		// one site on tcp-handover, one on Caddy's own tcp (SO_REUSEPORT),
		// and the metrics site
		g := hoStartAs(t, hoGateway, hoGateway, nil, fmt.Sprintf(`{
	auto_https off
}
http://127.0.0.1:%d {
	bind tcp-handover/127.0.0.1
	mx_auth attach {
		client_id {env.MX_CLIENT_ID}
		api_key {env.MX_API_KEY}
	}
	reverse_proxy %s
}
http://127.0.0.1:%d {
	bind tcp/127.0.0.1
	mx_auth attach {
		client_id {env.MX_CLIENT_ID}
		api_key {env.MX_API_KEY}
	}
	reverse_proxy %s
}
http://127.0.0.1:%d {
	bind tcp-handover/127.0.0.1
	metrics /metrics
}
`, handover, up.URL, plain, up.URL, metrics), "unix/"+sock, hoEnv(home, "TMPDIR="+tmp, "MX_CLIENT_ID=C", "MX_API_KEY=K"))
		_ = g
		sHome := hoDir(t, hoStranger, hoStranger, 0o700)
		for _, port := range []int{handover, plain, metrics} {
			for _, bind := range []string{"tcp/127.0.0.1", "tcp-handover/127.0.0.1", "tcp/0.0.0.0", "tcp/localhost"} {
				path := hoWrite(t, sHome, "Caddyfile", fmt.Sprintf(`{
	admin off
	auto_https off
}
http://:%d {
	bind %s
	respond "the stranger's"
}
`, port, bind), hoStranger, hoStranger)
				p := hoLaunch(t, hoAs(hoStranger, hoStranger, nil, hoEnv(sHome, "TMPDIR="+hoSticky(t)),
					binary, "run", "--config", path, "--adapter", "caddyfile"))
				if p.served(t) {
					t.Errorf("a stranger's mxgate bound %s on the gateway's port %d", bind, port)
				}
				_ = p.cmd.Process.Signal(syscall.SIGTERM)
				<-p.done
			}
		}
		// every request still reaches the gateway
		for i := 0; i < 20; i++ {
			for _, port := range []int{handover, plain} {
				status, body := hoGet(t, fmt.Sprintf("http://127.0.0.1:%d/users", port))
				if status != 200 || strings.Contains(body, "stranger") {
					t.Fatalf("port %d: %d %q", port, status, body)
				}
			}
		}
		if n := len(up.Requests()); n != 40 {
			t.Fatalf("MX's stand-in saw %d requests, want 40", n)
		}

		// and squatting a port first keeps the gateway from starting, rather
		// than sharing the port with the stranger
		squat := freePort(t)
		path := hoWrite(t, sHome, "Caddyfile", fmt.Sprintf("{\n\tadmin off\n\tauto_https off\n}\nhttp://:%d {\n\tbind tcp/127.0.0.1\n\trespond \"the stranger's\"\n}\n", squat), hoStranger, hoStranger)
		s := hoLaunch(t, hoAs(hoStranger, hoStranger, nil, hoEnv(sHome, "TMPDIR="+hoSticky(t)), binary, "run", "--config", path, "--adapter", "caddyfile"))
		if !s.served(t) {
			t.Fatalf("the stranger's squatter did not start:\n%s", s.out)
		}
		for _, bind := range []string{"tcp-handover/127.0.0.1", "tcp/127.0.0.1"} {
			gHome := hoDir(t, hoGateway, hoGateway, 0o700)
			gPath := hoWrite(t, gHome, "Caddyfile", fmt.Sprintf(`http://127.0.0.1:%d {
	bind %s
	mx_auth attach {
		client_id {env.MX_CLIENT_ID}
		api_key {env.MX_API_KEY}
	}
	reverse_proxy %s
}
`, squat, bind, up.URL), hoGateway, hoGateway)
			p := hoLaunch(t, hoAs(hoGateway, hoGateway, nil, hoEnv(gHome, "TMPDIR="+hoSticky(t), "MX_CLIENT_ID=C", "MX_API_KEY=K"),
				binary, "run", "--config", gPath, "--adapter", "caddyfile"))
			if p.served(t) {
				t.Errorf("bind %s: the gateway started on a port a stranger holds", bind)
			}
		}
	})

	t.Run("metrics_and_health_disclose_no_secret", func(t *testing.T) {
		t.Parallel()
		const name = "egress-sidecar.Caddyfile"
		e := newProdEnv(t)
		const redisPassword = "redis-pw-Zq9xK2"
		redis := redistest.Start(t, "--requirepass", redisPassword)
		redisURL := fmt.Sprintf("redis://:%s@127.0.0.1:%d/0", redisPassword, redis.Port)
		mx := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/vnd.mx.api.v1+json")
			w.WriteHeader(404)
			_, _ = io.WriteString(w, `{"error":{"message":"Not Found"}}`)
		})
		sock := filepath.Join(t.TempDir(), "sidecar.sock")
		health, metrics := freePort(t), freePort(t)
		cf := prodConfig(t, name, e,
			"/run/mxgate/sidecar.sock", sock,
			"https://api.mx.com", mx.URL,
			":2021", fmt.Sprintf(":%d", health),
			":9181", fmt.Sprintf(":%d", metrics),
		)
		startGateway(t, cf, "MXGATE_REDIS_URL="+redisURL)
		tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}
		defer tr.CloseIdleConnections()
		client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		call := func() {
			resp, err := client.Get("http://sidecar/users")
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		call()
		secrets := []string{redisPassword, "CLIENT-1234", "API-KEY-4567", e.etc, sock,
			base64.StdEncoding.EncodeToString([]byte("CLIENT-1234:API-KEY-4567"))}
		look := func(when string) {
			for _, url := range []string{fmt.Sprintf("http://127.0.0.1:%d/metrics", metrics), fmt.Sprintf("http://127.0.0.1:%d/", health)} {
				_, body := hoGet(t, url)
				for _, s := range secrets {
					if strings.Contains(body, s) {
						t.Errorf("%s: %s discloses %q", when, url, s)
					}
				}
				if strings.Contains(url, "/metrics") && !strings.Contains(body, "mxgate_store_up") {
					t.Errorf("%s: no mxgate_store_up on %s", when, url)
				}
			}
		}
		look("Redis up")
		redis.Stop()
		call()
		deadline := time.Now().Add(20 * time.Second)
		for {
			status, body := hoGet(t, fmt.Sprintf("http://127.0.0.1:%d/", health))
			if status == 503 {
				if strings.Contains(body, strconv.Itoa(redis.Port)) {
					t.Errorf("readiness names the Redis address: %s", body)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("readiness never saw Redis down: %d %s", status, body)
			}
			time.Sleep(50 * time.Millisecond)
		}
		look("Redis down")
	})

	t.Run("json_config_and_resume_stay_on_the_socket", func(t *testing.T) {
		t.Parallel()
		up := newUpstream(t, nil)
		port := freePort(t)
		tmp := hoSticky(t)
		home := hoDir(t, hoGateway, hoGateway, 0o700)
		env := hoEnv(home, "TMPDIR="+tmp, "MX_CLIENT_ID=CLIENT-JSON", "MX_API_KEY=API-KEY-JSON")
		cfPath := hoWrite(t, home, "Caddyfile", fmt.Sprintf(siteCf, port, up.URL), hoGateway, hoGateway)
		adapted, err := hoAs(hoGateway, hoGateway, nil, env, binary, "adapt", "--config", cfPath, "--adapter", "caddyfile").Output()
		if err != nil {
			t.Fatalf("mxgate adapt: %v", err)
		}
		jsonPath := hoWrite(t, home, "mxgate.json", string(adapted), hoGateway, hoGateway)
		sock := filepath.Join(tmp, fmt.Sprintf("mxgate-%d", hoGateway), "admin.sock")
		check := func(g *gateway, how string) {
			t.Helper()
			checkListeners(t, g, port, how+": ")
			if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("%s: admin socket %v %v", how, fi, err)
			}
			if code, out := hoCurl(t, hoStranger, hoStranger, nil, "--unix-socket", sock, "http://admin/config/"); code == 0 {
				t.Errorf("%s: a stranger read the configuration:\n%s", how, out)
			}
		}
		g := startGatewayCmd(t, hoAs(hoGateway, hoGateway, nil, env, binary, "run", "--config", jsonPath), "unix/"+sock)
		check(g, "JSON configuration")
		g.stop()
		g = startGatewayCmd(t, hoAs(hoGateway, hoGateway, nil, env, binary, "run", "--resume"), "unix/"+sock)
		check(g, "--resume")
		autosave := filepath.Join(home, "config", "caddy", "autosave.json")
		fi, err := os.Stat(autosave)
		if err != nil {
			t.Fatalf("no autosave: %v", err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("the autosaved configuration is open to others: %v", fi.Mode())
		}
		if out, err := hoAs(hoStranger, hoStranger, nil, hoEnv("/"), "cat", autosave).CombinedOutput(); err == nil {
			t.Errorf("a stranger read the autosaved configuration:\n%s", out)
		}
	})

	t.Run("caddy_admin_on_tcp_is_loud", func(t *testing.T) {
		t.Parallel()
		admin := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		home := hoDir(t, hoGateway, hoGateway, 0o700)
		path := hoWrite(t, home, "Caddyfile", fmt.Sprintf(siteCf, freePort(t), "127.0.0.1:9"), hoGateway, hoGateway)
		g := startGatewayCmd(t, hoAs(hoGateway, hoGateway, nil, hoEnv(home, "TMPDIR="+hoSticky(t), "CADDY_ADMIN="+admin, "MX_CLIENT_ID=C", "MX_API_KEY=K"),
			binary, "run", "--config", path, "--adapter", "caddyfile"), admin)
		if !strings.Contains(g.Stderr.String(), "THE ADMIN ENDPOINT IS OPEN TO OTHER LOCAL USERS") {
			t.Fatalf("CADDY_ADMIN on TCP with a credential directive, and no warning:\n%s", g.Stderr)
		}
	})
}

// mustMkdir makes dir owned by uid (its group too) with mode.
func mustMkdir(t *testing.T, dir string, uid int, mode os.FileMode) {
	t.Helper()
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, uid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
}

// hoKeyA and hoKeyB are two institutions' MDX-HMAC keys.
var (
	hoKeyA = base64.StdEncoding.EncodeToString([]byte("institution A's MDX-HMAC key, 32+ bytes"))
	hoKeyB = base64.StdEncoding.EncodeToString([]byte("institution B's MDX-HMAC key, 32+ bytes"))
)

// hoSign signs a GET of url as MX would, with session as the session key
// (a fresh session key makes a fresh signature within one second).
func hoSign(t *testing.T, key, url, session string) http.Header {
	t.Helper()
	cmd := exec.Command(binary, "mdx-sign", "--url", url, "--session-key", session)
	cmd.Env = append(os.Environ(), "MDX_HMAC_KEY="+key)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("mdx-sign: %v", err)
	}
	h := http.Header{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		k, v, _ := strings.Cut(line, ": ")
		h.Set(k, v)
	}
	return h
}

// hoSend sends a GET of url with h (and host as its Host, if not empty)
// and returns the status.
func hoSend(t *testing.T, url string, h http.Header, host string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header = h.Clone()
	if host != "" {
		req.Host = host
	}
	status, _, _ := do(t, req)
	return status
}

// hoSession is a fresh session key.
func hoSession(t *testing.T) string {
	t.Helper()
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", b)
}

// hoNamespace runs `mxgate state-names` on caddyfile with env, as anyone
// can who knows a site's address, and returns directive's namespace.
func hoNamespace(t *testing.T, caddyfile, directive string, env ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "state-names", "--config", path, "--adapter", "caddyfile")
	home := t.TempDir()
	cmd.Env = append(os.Environ(), append([]string{"HOME=" + home, "XDG_DATA_HOME=" + home, "XDG_CONFIG_HOME=" + home}, env...)...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("mxgate state-names: %v", err)
	}
	re := regexp.MustCompile(`\b[0-9a-f]{32}\b`)
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, directive+" ") {
			if ns := re.FindString(line); ns != "" {
				return ns
			}
		}
	}
	t.Fatalf("state-names named no %s:\n%s", directive, out)
	return ""
}

// hoTryStart runs `mxgate run` as root on caddyfile with env and says
// whether it served (it is stopped when the test ends).
func hoTryStart(t *testing.T, caddyfile string, env ...string) (bool, *hoProc) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "run", "--config", path, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"),
		"RUNTIME_DIRECTORY="+runtimeDir(t))
	cmd.Env = append(cmd.Env, env...)
	p := hoLaunch(t, cmd)
	return p.served(t), p
}

// TestHostileOutsideState: gateways sharing one Redis (other institutions,
// other roles, replicas), reloads and Redis restarts try to make state
// shared, reset or refused.
func TestHostileOutsideState(t *testing.T) {
	t.Parallel()

	// Two institutions run the same configuration template: a site with no
	// host name (behind their own load balancers), on the same port, each
	// with its own MDX key and its own application, on one Redis.
	t.Run("two_institutions_hostless_sites_share_a_budget", func(t *testing.T) {
		t.Parallel()
		redis := redistest.Start(t)
		redisEnv := fmt.Sprintf("MXGATE_REDIS_URL=redis://127.0.0.1:%d/0", redis.Port)
		port := freePort(t)
		cf := func(bind string, app *upstream, namespace string) string {
			ns := ""
			if namespace != "" {
				ns = "\n\t\tnamespace " + namespace
			}
			return fmt.Sprintf(`{
	default_bind tcp-handover/%s
}
http://:%d {
	mx_ip_allow {
		ranges 127.0.0.0/8
	}
	mdx_hmac verify {
		key {env.MDX_HMAC_KEY}
		replay_window 10m
		store redis {env.MXGATE_REDIS_URL}%s
	}
	mx_rate_limit {
		get 3/m burst 3
		store redis {env.MXGATE_REDIS_URL}%s
	}
	reverse_proxy %s
}
`, bind, port, ns, ns, app.URL)
		}
		appA, appB := newUpstream(t, nil), newUpstream(t, nil)
		attack := func(t *testing.T) {
			urlA := fmt.Sprintf("http://127.0.0.1:%d/inst-a/accounts", port)
			urlB := fmt.Sprintf("http://127.0.0.2:%d/inst-b/accounts", port)
			for i := 0; i < 3; i++ {
				if status := hoSend(t, urlB, hoSign(t, hoKeyB, urlB, hoSession(t)), ""); status != 200 {
					t.Fatalf("institution B's request %d: %d", i, status)
				}
			}
			if status := hoSend(t, urlA, hoSign(t, hoKeyA, urlA, hoSession(t)), ""); status != 200 {
				t.Errorf("institution A's first request: %d after three of institution B's (A's budget drained by B's traffic)", status)
			}
			if n := len(appA.Requests()); n != 1 {
				t.Errorf("institution A's application saw %d requests, want 1", n)
			}
		}
		// a hostless site cannot own shared state by a default name: each
		// gateway refuses to start, saying what to do
		servedA, pA := hoTryStart(t, cf("127.0.0.1", appA, ""), "MDX_HMAC_KEY="+hoKeyA, redisEnv)
		servedB, pB := hoTryStart(t, cf("127.0.0.2", appB, ""), "MDX_HMAC_KEY="+hoKeyB, redisEnv)
		if servedA || servedB {
			if servedA && servedB {
				attack(t)
			}
			t.Fatalf("hostless sites sharing a Redis started (A %v, B %v): their state is named alike", servedA, servedB)
		}
		for _, p := range []*hoProc{pA, pB} {
			for _, want := range []string{"names no host", "give the site a host name", "`namespace`"} {
				if !strings.Contains(p.out.String(), want) {
					t.Errorf("the refusal does not say %q:\n%s", want, lastLine(p.out.String()))
				}
			}
		}
		// as the refusal says: a namespace of each institution's own
		startGateway(t, cf("127.0.0.1", appA, "inst-a"), "MDX_HMAC_KEY="+hoKeyA, redisEnv)
		startGateway(t, cf("127.0.0.2", appB, "inst-b"), "MDX_HMAC_KEY="+hoKeyB, redisEnv)
		attack(t)
	})

	t.Run("alias_host_spellings_share_one_replay_cache", func(t *testing.T) {
		t.Parallel()
		app := newUpstream(t, nil)
		port := freePort(t)
		startGateway(t, fmt.Sprintf(`{
	default_bind tcp-handover/127.0.0.1
}
http://127.0.0.1:%d, http://localhost:%d {
	mx_ip_allow {
		ranges 127.0.0.1 ::1
	}
	mdx_hmac verify {
		key {env.MDX_HMAC_KEY}
		replay_window 10m
	}
	reverse_proxy %s
}
`, port, port, app.URL), "MDX_HMAC_KEY="+hoKeyA)
		url := fmt.Sprintf("http://127.0.0.1:%d/inst1/accounts", port)
		h := hoSign(t, hoKeyA, url, hoSession(t))
		if status := hoSend(t, url, h, ""); status != 200 {
			t.Fatalf("first use: %d", status)
		}
		for _, host := range []string{
			fmt.Sprintf("localhost:%d", port), fmt.Sprintf("LOCALHOST:%d", port), "localhost", "127.0.0.1",
			fmt.Sprintf("LocalHost:%d", port),
		} {
			if status := hoSend(t, url, h, host); status == 200 {
				t.Errorf("the signature replayed with Host %q was admitted", host)
			}
		}
		if n := len(app.Requests()); n != 1 {
			t.Fatalf("the application saw %d requests, want 1", n)
		}
	})

	// The operator adds a second name to the site (an alias, a migration)
	// and reloads, within max_skew of a captured request. A site's state is
	// named by its host names (two sites never share), so the reload starts
	// it afresh: that must never be silent. The gateway warns, naming both
	// sites and the remedy, the manual says so, and the remedy (a
	// `namespace`, the same before and after) keeps the state.
	t.Run("reload_adding_a_host_name_resets_replay_cache_and_budget", func(t *testing.T) {
		t.Parallel()
		manual, err := os.ReadFile("../docs/operations.md")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(strings.Join(strings.Fields(string(manual)), " "), "A reload that changes what a directive protects starts its state afresh") {
			t.Errorf("docs/operations.md does not say that a reload changing what a directive protects starts its state afresh")
		}
		for _, namespace := range []string{"", "inst1"} {
			app := newUpstream(t, nil)
			port := freePort(t)
			ns := ""
			if namespace != "" {
				ns = "\n\t\tnamespace " + namespace
			}
			cf := func(names string) string {
				return fmt.Sprintf(`{
	default_bind tcp-handover/127.0.0.1
}
%s {
	mx_ip_allow {
		ranges 127.0.0.1
	}
	mdx_hmac verify {
		key {env.MDX_HMAC_KEY}
		replay_window 10m%s
	}
	mx_rate_limit {
		get 2/h burst 2%s
	}
	reverse_proxy %s
}
`, names, ns, ns, app.URL)
			}
			g := startGateway(t, cf(fmt.Sprintf("http://127.0.0.1:%d", port)), "MDX_HMAC_KEY="+hoKeyA)
			url := fmt.Sprintf("http://127.0.0.1:%d/inst1/accounts", port)
			captured := hoSign(t, hoKeyA, url, hoSession(t))
			if status := hoSend(t, url, captured, ""); status != 200 {
				t.Fatalf("first use: %d", status)
			}
			if status := hoSend(t, url, captured, ""); status != 412 {
				t.Fatalf("replay before the reload: %d", status)
			}
			if status := hoSend(t, url, hoSign(t, hoKeyA, url, hoSession(t)), ""); status != 200 {
				t.Fatalf("second request: %d", status)
			}
			if status := hoSend(t, url, hoSign(t, hoKeyA, url, hoSession(t)), ""); status != 429 {
				t.Fatalf("third request, over the budget of 2: %d", status)
			}
			g.reload(t, cf(fmt.Sprintf("http://127.0.0.1:%d, http://localhost:%d", port, port)))
			replayed := hoSend(t, url, captured, "") == 200
			refilled := hoSend(t, url, hoSign(t, hoKeyA, url, hoSession(t)), "") != 429
			var warnings []string
			for _, line := range strings.Split(g.Stderr.String(), "\n") {
				if strings.Contains(line, "STATE STARTS AFRESH") {
					warnings = append(warnings, line)
				}
			}
			if namespace != "" {
				if replayed || refilled {
					t.Errorf("with namespace %s on both directives, the reload reset their state (replay admitted %v, budget refilled %v)", namespace, replayed, refilled)
				}
				if len(warnings) != 0 {
					t.Errorf("with a namespace, a warning that state starts afresh:\n%s", strings.Join(warnings, "\n"))
				}
				continue
			}
			if (replayed || refilled) && len(warnings) != 2 {
				t.Fatalf("the reload reset the state (replay admitted %v, budget refilled %v), and %d warnings said so, want one for the replay cache and one for the budget:\n%s",
					replayed, refilled, len(warnings), g.Stderr)
			}
			for _, w := range warnings {
				for _, want := range []string{fmt.Sprintf("site 127.0.0.1, localhost on port %d", port), fmt.Sprintf("site 127.0.0.1 on port %d", port), "`namespace`"} {
					if !strings.Contains(w, want) {
						t.Errorf("the warning does not say %q: %s", want, w)
					}
				}
			}
		}
	})

	t.Run("reload_moving_the_site_keeps_state", func(t *testing.T) {
		t.Parallel()
		app := newUpstream(t, nil)
		port, other := freePort(t), freePort(t)
		site := fmt.Sprintf(`http://127.0.0.1:%d {
	mx_ip_allow {
		ranges 127.0.0.1
	}
	mdx_hmac verify {
		key {env.MDX_HMAC_KEY}
		replay_window 10m
	}
	mx_rate_limit {
		get 2/h burst 2
	}
	reverse_proxy %s
}
`, port, app.URL)
		moved := fmt.Sprintf(`http://127.0.0.1:%d {
	route {
		mdx_hmac verify {
			replay_window 10m
			key {env.MDX_HMAC_KEY}
			key {env.MDX_HMAC_KEY_NEXT}
		}
		mx_rate_limit {
			get 2/h burst 2
		}
		mx_ip_allow {
			ranges 127.0.0.1
		}
	}
	reverse_proxy %s
}
`, port, app.URL)
		head := "{\n\tdefault_bind tcp-handover/127.0.0.1\n}\n"
		before := fmt.Sprintf("http://127.0.0.1:%d {\n\tmx_rate_limit {\n\t\tget 1/h\n\t}\n\trespond \"other\"\n}\n", other)
		g := startGateway(t, head+site, "MDX_HMAC_KEY="+hoKeyA, "MDX_HMAC_KEY_NEXT="+hoKeyB)
		url := fmt.Sprintf("http://127.0.0.1:%d/inst1/accounts", port)
		captured := hoSign(t, hoKeyA, url, hoSession(t))
		if status := hoSend(t, url, captured, ""); status != 200 {
			t.Fatalf("first use: %d", status)
		}
		if status := hoSend(t, url, hoSign(t, hoKeyA, url, hoSession(t)), ""); status != 200 {
			t.Fatalf("second request: %d", status)
		}
		// another site before it, its handlers in another order, a key added
		g.reload(t, head+before+moved)
		if status := hoSend(t, url, captured, ""); status != 412 {
			t.Errorf("the captured signature after the reload: %d, want 412", status)
		}
		if status := hoSend(t, url, hoSign(t, hoKeyB, url, hoSession(t)), ""); status != 429 {
			t.Errorf("after the reload the budget was refilled: %d", status)
		}
		if n := len(app.Requests()); n != 2 {
			t.Errorf("the application saw %d requests, want 2", n)
		}
	})

	// Replicas of the production ingress (on_store_error deny, a shared
	// Redis cache): a request admitted by one replica must stay refused on
	// the other, across a Redis restart that nobody saw (no request during
	// it) and across one that a replica saw.
	replicas := func(t *testing.T, onError string) (*redistest.Server, string, string, *upstream, *gateway) {
		t.Helper()
		redis := redistest.Start(t)
		redisEnv := fmt.Sprintf("MXGATE_REDIS_URL=redis://127.0.0.1:%d/0", redis.Port)
		port := freePort(t)
		app := newUpstream(t, nil)
		// a site without host names: the replicas name their shared state
		cf := func(bind string) string {
			return fmt.Sprintf(`{
	default_bind tcp-handover/%s
}
http://:%d {
	mx_ip_allow {
		ranges 127.0.0.0/8
	}
	mdx_hmac verify {
		key {env.MDX_HMAC_KEY}
		replay_window 10m
		store redis {env.MXGATE_REDIS_URL}
		namespace inst1-replicas
		on_store_error %s
	}
	reverse_proxy %s
}
`, bind, port, onError, app.URL)
		}
		a := startGateway(t, cf("127.0.0.1"), "MDX_HMAC_KEY="+hoKeyA, redisEnv)
		startGateway(t, cf("127.0.0.2"), "MDX_HMAC_KEY="+hoKeyA, redisEnv)
		return redis, fmt.Sprintf("http://127.0.0.1:%d/inst1/accounts", port), fmt.Sprintf("http://127.0.0.2:%d/inst1/accounts", port), app, a
	}

	t.Run("replay_on_another_replica_after_an_unseen_redis_restart", func(t *testing.T) {
		t.Parallel()
		redis, urlA, urlB, app, _ := replicas(t, "deny")
		captured := hoSign(t, hoKeyA, urlA, hoSession(t))
		if status := hoSend(t, urlA, captured, ""); status != 200 {
			t.Fatalf("first use on replica A: %d", status)
		}
		if status := hoSend(t, urlB, captured, ""); status != 412 {
			t.Fatalf("replay on replica B before the restart: %d", status)
		}
		redis.Stop()
		redis.Restart()
		if status := hoSend(t, urlB, hoSign(t, hoKeyA, urlB, hoSession(t)), ""); status != 200 {
			t.Fatalf("a fresh request on replica B after the restart: %d", status)
		}
		captured2 := hoSign(t, hoKeyA, urlA, hoSession(t))
		if status := hoSend(t, urlA, captured2, ""); status != 200 {
			t.Fatalf("another first use on replica A: %d", status)
		}
		redis.Stop()
		redis.Restart()
		if status := hoSend(t, urlB, captured2, ""); status == 200 {
			t.Errorf("a signature admitted by replica A was admitted again by replica B after Redis restarted empty")
		}
		if n := len(app.Requests()); n != 3 {
			t.Errorf("the application saw %d requests, want 3", n)
		}
	})

	t.Run("replay_on_another_replica_after_a_seen_outage_with_deny", func(t *testing.T) {
		t.Parallel()
		redis, urlA, urlB, app, _ := replicas(t, "deny")
		captured := hoSign(t, hoKeyA, urlA, hoSession(t))
		if status := hoSend(t, urlA, captured, ""); status != 200 {
			t.Fatalf("first use on replica A: %d", status)
		}
		redis.Stop()
		if status := hoSend(t, urlA, hoSign(t, hoKeyA, urlA, hoSession(t)), ""); status != 503 {
			t.Fatalf("a fresh request on replica A while Redis is down: %d", status)
		}
		redis.Restart()
		// wait until replica A uses Redis again
		deadline := time.Now().Add(20 * time.Second)
		for hoSend(t, urlA, hoSign(t, hoKeyA, urlA, hoSession(t)), "") != 200 {
			if time.Now().After(deadline) {
				t.Fatal("replica A never used Redis again")
			}
			time.Sleep(100 * time.Millisecond)
		}
		if status := hoSend(t, urlB, captured, ""); status == 200 {
			t.Errorf("a signature admitted by replica A before the outage was admitted by replica B after it")
		}
		if n := len(app.Requests()); n != 2 {
			t.Errorf("the application saw %d requests, want 2", n)
		}
	})

	t.Run("seen_outage_with_local_writes_back", func(t *testing.T) {
		t.Parallel()
		redis, urlA, urlB, app, a := replicas(t, "local")
		before := hoSign(t, hoKeyA, urlA, hoSession(t))
		if status := hoSend(t, urlA, before, ""); status != 200 {
			t.Fatalf("first use on replica A: %d", status)
		}
		redis.Stop()
		during := hoSign(t, hoKeyA, urlA, hoSession(t))
		if status := hoSend(t, urlA, during, ""); status != 200 {
			t.Fatalf("on replica A during the outage (local): %d", status)
		}
		redis.Restart()
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(a.Stderr.String(), "wrote back to the shared store") {
			if time.Now().After(deadline) {
				t.Fatal("replica A never wrote back")
			}
			hoSend(t, urlA, hoSign(t, hoKeyA, urlA, hoSession(t)), "")
			time.Sleep(100 * time.Millisecond)
		}
		for name, h := range map[string]http.Header{"before": before, "during": during} {
			if status := hoSend(t, urlB, h, ""); status == 200 {
				t.Errorf("the signature replica A admitted %s the outage was admitted by replica B", name)
			}
		}
		if n := len(app.Requests()); n < 2 {
			t.Fatalf("the application saw %d requests, want the two admitted at least", n)
		}
	})

	victimCf := func(port int) string {
		return fmt.Sprintf(`{
	default_bind tcp-handover/127.0.0.1
}
http://127.0.0.1:%d {
	mx_rate_limit {
		get 3/h burst 3
		store redis {env.MXGATE_REDIS_URL}
	}
	respond "victim"
}
`, port)
	}
	// another gateway on the same Redis: an egress sidecar whose operator
	// (by mistake, or to do harm) names the ingress's namespace, which
	// `mxgate state-names` computes from the site's address
	squatterCf := func(port int, ns string, mx *upstream) string {
		return fmt.Sprintf(`{
	default_bind tcp-handover/127.0.0.1
}
http://127.0.0.1:%d {
	mx_auth attach {
		client_id OTHER-CLIENT
		api_key OTHER-KEY
	}
	mx_rate_limit {
		get 3/h burst 3
		store redis {env.MXGATE_REDIS_URL}
		namespace %s
	}
	reverse_proxy %s
}
`, port, ns, mx.URL)
	}

	t.Run("conflicting_namespace_registered_first_is_never_shared", func(t *testing.T) {
		t.Parallel()
		redis := redistest.Start(t)
		redisEnv := fmt.Sprintf("MXGATE_REDIS_URL=redis://127.0.0.1:%d/0", redis.Port)
		vPort, sPort := freePort(t), freePort(t)
		ns := hoNamespace(t, victimCf(vPort), "mx_rate_limit", redisEnv)
		mx := newUpstream(t, nil)
		startGateway(t, squatterCf(sPort, ns, mx), redisEnv)
		served, p := hoTryStart(t, victimCf(vPort), redisEnv)
		if served {
			for i := 0; i < 3; i++ {
				hoGet(t, fmt.Sprintf("http://127.0.0.1:%d/users", sPort))
			}
			status, _ := hoGet(t, fmt.Sprintf("http://127.0.0.1:%d/", vPort))
			t.Fatalf("the ingress started on a namespace an egress sidecar holds (after the sidecar's 3 requests it answers %d)", status)
		}
		if !strings.Contains(p.out.String(), ns) {
			t.Errorf("the refusal does not name the namespace:\n%s", p.out)
		}
	})

	t.Run("namespace_registry_forgotten_after_a_redis_restart", func(t *testing.T) {
		t.Parallel()
		redis := redistest.Start(t)
		redisEnv := fmt.Sprintf("MXGATE_REDIS_URL=redis://127.0.0.1:%d/0", redis.Port)
		vPort, sPort := freePort(t), freePort(t)
		ns := hoNamespace(t, victimCf(vPort), "mx_rate_limit", redisEnv)
		v := startGateway(t, victimCf(vPort), redisEnv)
		if status, _ := hoGet(t, fmt.Sprintf("http://127.0.0.1:%d/", vPort)); status != 200 {
			t.Fatalf("the ingress: %d", status)
		}
		redis.Stop()
		redis.Restart()
		if status, _ := hoGet(t, fmt.Sprintf("http://127.0.0.1:%d/", vPort)); status != 200 {
			t.Fatalf("the ingress after the restart: %d", status)
		}
		mx := newUpstream(t, nil)
		served, _ := hoTryStart(t, squatterCf(sPort, ns, mx), redisEnv)
		if !served {
			return // refused: the namespace is still the ingress's
		}
		t.Errorf("after Redis restarted, an egress sidecar started on the running ingress's namespace %s", ns)
		for i := 0; i < 3; i++ {
			hoGet(t, fmt.Sprintf("http://127.0.0.1:%d/users", sPort))
		}
		if status, _ := hoGet(t, fmt.Sprintf("http://127.0.0.1:%d/", vPort)); status != 200 {
			t.Errorf("the sidecar's calls drained the ingress's budget: the ingress's second request got %d", status)
		}
		v.stop()
		if served, p := hoTryStart(t, victimCf(vPort), redisEnv); !served {
			t.Errorf("and the ingress, restarted, refuses to start:\n%s", lastLine(p.out.String()))
		}
	})

	t.Run("sidecar_budgets_never_drain_ingress_or_another_client", func(t *testing.T) {
		t.Parallel()
		redis := redistest.Start(t)
		redisEnv := fmt.Sprintf("MXGATE_REDIS_URL=redis://127.0.0.1:%d/0", redis.Port)
		mx := newUpstream(t, nil)
		idFile := filepath.Join(t.TempDir(), "mx-client-id")
		if err := os.WriteFile(idFile, []byte("CLIENT-ONE\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		sidecar := func(port int, clientID string) string {
			return fmt.Sprintf(`{
	default_bind tcp-handover/127.0.0.1
}
http://127.0.0.1:%d {
	mx_auth attach {
		client_id %s
		api_key SOME-KEY
	}
	mx_rate_limit {
		get 3/h burst 3
		store redis {env.MXGATE_REDIS_URL}
	}
	reverse_proxy %s
}
`, port, clientID, mx.URL)
		}
		one, oneAgain, two, ingress := freePort(t), freePort(t), freePort(t), freePort(t)
		startGateway(t, sidecar(one, "CLIENT-ONE"), redisEnv)
		startGateway(t, sidecar(oneAgain, "{file."+idFile+"}"), redisEnv) // the same client id, from a file
		startGateway(t, sidecar(two, "CLIENT-TWO"), redisEnv)
		startGateway(t, victimCf(ingress), redisEnv)
		for i := 0; i < 3; i++ {
			if status, _ := hoGet(t, fmt.Sprintf("http://127.0.0.1:%d/users", one)); status != 200 {
				t.Fatalf("client one's call %d: %d", i, status)
			}
		}
		if status, _ := hoGet(t, fmt.Sprintf("http://127.0.0.1:%d/users", oneAgain)); status != 429 {
			t.Errorf("another sidecar of client one did not share its budget: %d", status)
		}
		if status, _ := hoGet(t, fmt.Sprintf("http://127.0.0.1:%d/users", two)); status != 200 {
			t.Errorf("client two's budget was drained by client one: %d", status)
		}
		for i := 0; i < 3; i++ {
			if status, _ := hoGet(t, fmt.Sprintf("http://127.0.0.1:%d/", ingress)); status != 200 {
				t.Errorf("the ingress's request %d after client one's calls: %d", i, status)
			}
		}
	})
}

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// hoIssuer stands for MX's Security API and the MX Connect API behind it,
// and for an FDX authorization server (its JWKS and introspection
// endpoint), and counts every call each receives.
type hoIssuer struct {
	*httptest.Server
	jwks []byte

	mu       sync.Mutex
	calls    map[string]int // by endpoint: security, api, jwks, introspect, other
	tokens   map[string]int // introspections by token
	issued   []string       // tokens the Security API gave out
	security string         // ok, fail, echo, garbage

	life          atomic.Int64 // seconds the Security API's tokens live; default an hour
	api401        atomic.Bool  // the MX Connect API refuses every token
	jwksFail      atomic.Bool
	introFail     atomic.Bool
	securityDelay atomic.Int64 // nanoseconds
	jwksDelay     atomic.Int64
}

func newHoIssuer(t *testing.T, jwksFile string) *hoIssuer {
	t.Helper()
	iss := &hoIssuer{calls: map[string]int{}, tokens: map[string]int{}, security: "ok"}
	if jwksFile != "" {
		b, err := os.ReadFile(jwksFile)
		if err != nil {
			t.Fatal(err)
		}
		iss.jwks = b
	}
	iss.life.Store(3600)
	iss.Server = httptest.NewServer(http.HandlerFunc(iss.serve))
	t.Cleanup(iss.Close)
	return iss
}

func (iss *hoIssuer) count(endpoint string) {
	iss.mu.Lock()
	iss.calls[endpoint]++
	iss.mu.Unlock()
}

// Calls is how many calls endpoint received.
func (iss *hoIssuer) Calls(endpoint string) int {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	return iss.calls[endpoint]
}

func (iss *hoIssuer) setSecurity(mode string) {
	iss.mu.Lock()
	iss.security = mode
	iss.mu.Unlock()
}

func (iss *hoIssuer) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	reply := func(status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	switch {
	case r.URL.Path == "/security":
		time.Sleep(time.Duration(iss.securityDelay.Load()))
		iss.mu.Lock()
		iss.calls["security"]++
		n, mode := iss.calls["security"], iss.security
		iss.mu.Unlock()
		switch mode {
		case "fail":
			reply(500, map[string]string{"error": "down"})
		case "echo": // an error body that repeats what it was sent
			reply(401, map[string]string{"error": "bad credentials", "authorization": r.Header.Get("Authorization"), "body": string(body)})
		case "garbage":
			reply(200, map[string]string{"token": "GARBAGE-TOKEN-FROM-THE-SECURITY-API"})
		default:
			enc := base64.RawURLEncoding
			tok := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." +
				enc.EncodeToString([]byte(fmt.Sprintf(`{"exp":%d,"n":%d}`, time.Now().Unix()+iss.life.Load(), n))) + "." +
				enc.EncodeToString([]byte(fmt.Sprintf("signature-%d", n)))
			iss.mu.Lock()
			iss.issued = append(iss.issued, tok)
			iss.mu.Unlock()
			reply(200, map[string]string{"token": tok})
		}
	case strings.HasPrefix(r.URL.Path, "/api/"):
		iss.count("api")
		if iss.api401.Load() {
			reply(401, map[string]string{"error": "unauthorized"})
			return
		}
		reply(200, map[string]bool{"ok": true})
	case r.URL.Path == "/jwks.json":
		time.Sleep(time.Duration(iss.jwksDelay.Load()))
		iss.count("jwks")
		if iss.jwksFail.Load() {
			reply(500, map[string]string{"error": "down"})
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(iss.jwks)
	case r.URL.Path == "/introspect":
		form, _ := urlValues(string(body))
		iss.mu.Lock()
		iss.calls["introspect"]++
		iss.tokens[form]++
		iss.mu.Unlock()
		if iss.introFail.Load() {
			reply(500, map[string]string{"error": "down"})
			return
		}
		reply(200, map[string]bool{"active": false})
	default:
		iss.count("other")
		reply(404, map[string]string{"error": "not found"})
	}
}

// urlValues returns the token parameter of a form body.
func urlValues(body string) (string, error) {
	for _, kv := range strings.Split(body, "&") {
		if k, v, ok := strings.Cut(kv, "="); ok && k == "token" {
			return v, nil
		}
	}
	return "", errors.New("no token")
}

// Introspected is how many introspection calls named token.
func (iss *hoIssuer) Introspected(token string) int {
	iss.mu.Lock()
	defer iss.mu.Unlock()
	return iss.tokens[token]
}

// hoMetric reads one series (its name and labels as Prometheus writes
// them) from a metrics page; 0 when absent.
func hoMetric(t *testing.T, url, series string) float64 {
	t.Helper()
	_, body := hoGet(t, url)
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	return 0
}

// hoBurst runs f(0..n-1) at once and waits for all.
func hoBurst(n int, f func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			f(i)
		}()
	}
	close(start)
	wg.Wait()
}

// hoBackoffBound is how many calls a backoff that doubles from first
// allows within elapsed (calls at 0, first, 3·first, 7·first, …), plus one
// for a call in flight at either end.
func hoBackoffBound(elapsed, first time.Duration) int {
	return int(math.Floor(math.Log2(float64(elapsed)/float64(first)+1))) + 2
}

// hoConnect is an egress site with mxconnect_token in front of the MX
// Connect API stand-in, and a metrics site.
type hoConnect struct {
	g       *gateway
	iss     *hoIssuer
	url     string
	metrics string
	cf      string
	env     []string
}

const (
	hoConnectUser     = "connect-user"
	hoConnectPassword = "CONNECT-PASSWORD-9f8e7d"
	hoConnectAPIKey   = "CONNECT-API-KEY-6c5b4a"
)

func startHoConnect(t *testing.T, iss *hoIssuer, debug bool) *hoConnect {
	t.Helper()
	port, metrics := freePort(t), freePort(t)
	global := ""
	if debug {
		global = "\tdebug\n"
	}
	c := &hoConnect{iss: iss, url: fmt.Sprintf("http://127.0.0.1:%d/api/members", port), metrics: fmt.Sprintf("http://127.0.0.1:%d/metrics", metrics)}
	c.cf = fmt.Sprintf(`{
	default_bind tcp-handover/127.0.0.1
%s}
http://127.0.0.1:%d {
	mxconnect_token {
		endpoint %s/security
		username {env.HO_CONNECT_USER}
		password {env.HO_CONNECT_PASSWORD}
		api_key {env.HO_CONNECT_API_KEY}
		min_refresh 1h
	}
	reverse_proxy %s
}
http://127.0.0.1:%d {
	metrics /metrics
}
`, global, port, iss.URL, iss.URL, metrics)
	c.env = []string{"HO_CONNECT_USER=" + hoConnectUser, "HO_CONNECT_PASSWORD=" + hoConnectPassword, "HO_CONNECT_API_KEY=" + hoConnectAPIKey}
	c.g = startGateway(t, c.cf, c.env...)
	return c
}

// call sends one request as the app would and returns the status and body.
func (c *hoConnect) call(t *testing.T, method string) (int, string) {
	t.Helper()
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader(`{"member":{}}`)
	}
	req, _ := http.NewRequest(method, c.url, body)
	req.Header.Set("Authorization", "Bearer the-apps-own-token-never-logged")
	status, _, b := do(t, req)
	return status, b
}

// reload loads the same configuration again, as `systemctl reload` does.
func (c *hoConnect) reload(t *testing.T) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(c.cf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "reload", "--config", path, "--adapter", "caddyfile", "--address", c.g.admin, "--force")
	cmd.Env = append(os.Environ(), c.env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mxgate reload: %v\n%s", err, out)
	}
}

const hoIntroSecret = "INTROSPECTION-SECRET-3d2c1b"

// hoFDX is an FDX resource server with fdx_auth (JWKS and introspection
// at the stand-in authorization server), a metrics and a readiness site.
type hoFDX struct {
	g                 *gateway
	iss               *hoIssuer
	dev               string
	url               string
	metrics, health   string
	cf                string
	client            *http.Client
	token             string // fdx-dev's token, bound to the client's certificate
	header, claims    string // of that token, base64url
	tokenSignatureB64 string
}

func startHoFDX(t *testing.T, debug bool, prepare func(*hoIssuer)) *hoFDX {
	t.Helper()
	dev := filepath.Join(t.TempDir(), "fdx")
	if out, err := exec.Command(binary, "fdx-dev", "--dir", dev).CombinedOutput(); err != nil {
		t.Fatalf("fdx-dev: %v\n%s", err, out)
	}
	iss := newHoIssuer(t, filepath.Join(dev, "public", "jwks.json"))
	if prepare != nil {
		prepare(iss)
	}
	port, metrics, health := freePort(t), freePort(t), freePort(t)
	global := ""
	if debug {
		global = "\tdebug\n"
	}
	f := &hoFDX{iss: iss, dev: dev,
		url:     fmt.Sprintf("https://localhost:%d/fdx/v6/core/accounts", port),
		metrics: fmt.Sprintf("http://127.0.0.1:%d/metrics", metrics),
		health:  fmt.Sprintf("http://127.0.0.1:%d/", health)}
	f.cf = fmt.Sprintf(`{
	default_bind tcp-handover/127.0.0.1
	auto_https disable_redirects
	skip_install_trust
%s	servers {
		protocols h1 h2
	}
}
https://localhost:%d {
	tls %[3]s/server.pem %[3]s/server-key.pem {
		client_auth {
			mode require_and_verify
			trust_pool file %[3]s/ca.pem
		}
	}
	fdx_auth {
		issuer https://as.fdx.localhost
		audience https://fdx.localhost
		jwks_url %[4]s/jwks.json
		jwks_min_refresh 1h
		introspection %[4]s/introspect intro-client {env.HO_INTRO_SECRET}
		introspection_cache 1h
	}
	respond "ok"
}
http://127.0.0.1:%[5]d {
	metrics /metrics
}
http://127.0.0.1:%[6]d {
	mx_health
}
`, global, port, dev, iss.URL, metrics, health)
	f.g = startGateway(t, f.cf, "HO_INTRO_SECRET="+hoIntroSecret)
	f.client = devTLS(t, dev, "client")
	b, err := os.ReadFile(filepath.Join(dev, "token.txt"))
	if err != nil {
		t.Fatal(err)
	}
	f.token = strings.TrimSpace(string(b))
	parts := strings.Split(f.token, ".")
	f.header, f.claims, f.tokenSignatureB64 = parts[0], parts[1], parts[2]
	return f
}

// send sends one request with token and returns the status (0 when the
// exchange failed).
func (f *hoFDX) send(t *testing.T, token string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, f.url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := f.client.Do(req.WithContext(ctx))
	if err != nil {
		t.Errorf("GET %s: %v", f.url, err)
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// withHeader is fdx-dev's token's claims under another JOSE header.
func (f *hoFDX) withHeader(header string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + f.claims + ".AAAA"
}

// opaque is a random opaque token.
func hoOpaque(t *testing.T) string {
	t.Helper()
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// reload loads the same configuration again, as `systemctl reload` does.
func (f *hoFDX) reload(t *testing.T) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(f.cf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "reload", "--config", path, "--adapter", "caddyfile", "--address", f.g.admin, "--force")
	cmd.Env = append(os.Environ(), "HO_INTRO_SECRET="+hoIntroSecret)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mxgate reload: %v\n%s", err, out)
	}
}

// TestHostileOutsideFetches: clients try to make the gateway call MX's
// Security API and an FDX authorization server more often than the README
// promises, or to make it log what it fetches with.
func TestHostileOutsideFetches(t *testing.T) {
	t.Parallel()
	const connectSeries = `mxgate_credential_fetches_total{directive="mxconnect_token",kind="token",outcome="%s"}`
	const fdxSeries = `mxgate_credential_fetches_total{directive="fdx_auth",kind="%s",outcome="%s"}`

	t.Run("connect_401_storm_fetches_once", func(t *testing.T) {
		t.Parallel()
		iss := newHoIssuer(t, "")
		iss.api401.Store(true)
		c := startHoConnect(t, iss, false)
		for round := 0; round < 3; round++ {
			hoBurst(40, func(int) {
				if status, _ := c.call(t, http.MethodGet); status != 401 {
					t.Errorf("a refused token: %d, want the API's 401", status)
				}
			})
		}
		if n := iss.Calls("security"); n > 2 {
			t.Errorf("120 requests refused with the same token cost %d Security API calls, want the first fetch and one refresh", n)
		}
		if n := iss.Calls("api"); n > 240 {
			t.Errorf("the API saw %d requests for 120, more than one resend each", n)
		}
		if ok := hoMetric(t, c.metrics, fmt.Sprintf(connectSeries, "ok")); int(ok) != iss.Calls("security") {
			t.Errorf("mxgate_credential_fetches_total ok = %v, the Security API saw %d", ok, iss.Calls("security"))
		}
		if s := hoMetric(t, c.metrics, fmt.Sprintf(connectSeries, "suppressed")); s < 1 {
			t.Errorf("no refresh counted as suppressed")
		}
	})

	t.Run("connect_post_401_storm_fetches_once", func(t *testing.T) {
		t.Parallel()
		iss := newHoIssuer(t, "")
		iss.api401.Store(true)
		c := startHoConnect(t, iss, false)
		for round := 0; round < 3; round++ {
			hoBurst(15, func(int) { c.call(t, http.MethodPost) })
		}
		if n := iss.Calls("security"); n > 2 {
			t.Errorf("45 POSTs refused cost %d Security API calls", n)
		}
		if n := iss.Calls("api"); n != 45 {
			t.Errorf("the API saw %d POSTs for 45: a POST was sent again", n)
		}
	})

	t.Run("connect_cold_burst_on_a_slow_security_api_fetches_once", func(t *testing.T) {
		t.Parallel()
		iss := newHoIssuer(t, "")
		iss.securityDelay.Store(int64(time.Second))
		c := startHoConnect(t, iss, false)
		hoBurst(30, func(int) {
			if status, _ := c.call(t, http.MethodGet); status != 200 {
				t.Errorf("a request during the first fetch: %d", status)
			}
		})
		if n := iss.Calls("security"); n != 1 {
			t.Errorf("30 requests at once cost %d Security API calls, want 1", n)
		}
	})

	t.Run("connect_failing_security_api_backs_off", func(t *testing.T) {
		t.Parallel()
		iss := newHoIssuer(t, "")
		iss.setSecurity("fail")
		c := startHoConnect(t, iss, false)
		start := time.Now()
		for round := 0; round < 15; round++ {
			hoBurst(10, func(int) {
				status, body := c.call(t, http.MethodGet)
				if status != 503 || !strings.Contains(body, "MX Connect token unavailable") {
					t.Errorf("with the Security API down: %d %s", status, body)
				}
			})
			time.Sleep(100 * time.Millisecond)
		}
		if n, bound := iss.Calls("security"), hoBackoffBound(time.Since(start), time.Second); n > bound {
			t.Errorf("a failing Security API got %d calls from 150 requests, more than a doubling backoff allows (%d)", n, bound)
		}
		if e := hoMetric(t, c.metrics, fmt.Sprintf(connectSeries, "error")); int(e) != iss.Calls("security") {
			t.Errorf("mxgate_credential_fetches_total error = %v, the Security API saw %d", e, iss.Calls("security"))
		}
	})

	// MX issues a token whose lifetime is shorter than refresh_before (or
	// the gateway's clock runs ahead of MX's): every token the gateway
	// gets is already due for its refresh.
	t.Run("connect_short_lived_tokens_fetch_per_request", func(t *testing.T) {
		t.Parallel()
		iss := newHoIssuer(t, "")
		iss.life.Store(30) // refresh_before is 1m by default
		c := startHoConnect(t, iss, false)
		start := time.Now()
		for i := 0; i < 40; i++ {
			if status, _ := c.call(t, http.MethodGet); status != 200 {
				t.Fatalf("request %d: %d", i, status)
			}
		}
		bound := 2 + int(time.Since(start)/(30*time.Second))
		if n := iss.Calls("security"); n > bound {
			t.Errorf("40 requests with 30-second tokens cost %d Security API calls (at most %d: one per token lifetime)", n, bound)
		}
	})

	t.Run("connect_reload_keeps_min_refresh", func(t *testing.T) {
		t.Parallel()
		iss := newHoIssuer(t, "")
		iss.api401.Store(true)
		c := startHoConnect(t, iss, false)
		hoBurst(10, func(int) { c.call(t, http.MethodGet) })
		first := iss.Calls("security")
		for i := 0; i < 3; i++ {
			c.reload(t)
			hoBurst(10, func(int) { c.call(t, http.MethodGet) })
		}
		if n := iss.Calls("security") - first; n > 3 {
			t.Errorf("three reloads within min_refresh (1h) made %d more Security API calls with the token refused throughout (want at most one per reload)", n)
		}
	})

	t.Run("connect_logs_no_secret", func(t *testing.T) {
		t.Parallel()
		iss := newHoIssuer(t, "")
		iss.api401.Store(true)
		c := startHoConnect(t, iss, true)
		var answers []string
		hoBurst(10, func(int) {
			_, b := c.call(t, http.MethodGet)
			iss.mu.Lock()
			answers = append(answers, b)
			iss.mu.Unlock()
		})
		base, endpoint := c.cf, fmt.Sprintf("endpoint %s/security\n", iss.URL)
		for _, mode := range []string{"echo", "garbage"} {
			iss.setSecurity(mode)
			// another endpoint URL (the same path): a reload with the same
			// endpoint and credentials keeps the token (and min_refresh),
			// and would never meet this answer
			c.cf = strings.Replace(base, endpoint, strings.TrimSuffix(endpoint, "\n")+"?after-reload="+mode+"\n", 1)
			calls := iss.Calls("security")
			c.reload(t)
			for i := 0; i < 3; i++ {
				_, b := c.call(t, http.MethodGet)
				answers = append(answers, b)
			}
			if iss.Calls("security") == calls {
				t.Errorf("the Security API's %s answer was never met", mode)
			}
		}
		secrets := []string{hoConnectPassword, hoConnectAPIKey, "the-apps-own-token-never-logged",
			base64.StdEncoding.EncodeToString([]byte(hoConnectUser + ":" + hoConnectPassword)), "GARBAGE-TOKEN-FROM-THE-SECURITY-API"}
		iss.mu.Lock()
		for _, tok := range iss.issued {
			secrets = append(secrets, tok[strings.LastIndex(tok, ".")+1:])
		}
		iss.mu.Unlock()
		logs := c.g.Stderr.String()
		for _, s := range secrets {
			for _, line := range strings.Split(logs, "\n") {
				if strings.Contains(line, s) {
					t.Errorf("a secret (%d bytes) in the log: %s", len(s), describeLine(line))
				}
			}
			for _, a := range answers {
				if strings.Contains(a, s) {
					t.Errorf("a secret (%d bytes) in an answer to the app", len(s))
				}
			}
		}
	})

	t.Run("jwks_kid_flood_fetches_once", func(t *testing.T) {
		t.Parallel()
		f := startHoFDX(t, false, nil)
		if status := f.send(t, f.token); status != 200 {
			t.Fatalf("the bound token: %d", status)
		}
		for round := 0; round < 3; round++ {
			hoBurst(30, func(i int) {
				tok := f.withHeader(fmt.Sprintf(`{"alg":"ES256","typ":"at+jwt","kid":"flood-%d-%d"}`, round, i))
				if status := f.send(t, tok); status != 401 {
					t.Errorf("an unknown kid: %d", status)
				}
			})
		}
		if n := f.iss.Calls("jwks"); n > 2 {
			t.Errorf("90 unknown kids cost %d JWKS fetches, want the first fetch and one refetch per jwks_min_refresh", n)
		}
		if ok := hoMetric(t, f.metrics, fmt.Sprintf(fdxSeries, "jwks", "ok")); int(ok) != f.iss.Calls("jwks") {
			t.Errorf("mxgate_credential_fetches_total jwks ok = %v, the JWKS saw %d", ok, f.iss.Calls("jwks"))
		}
	})

	t.Run("jwks_jku_and_x5u_are_never_fetched", func(t *testing.T) {
		t.Parallel()
		f := startHoFDX(t, false, nil)
		for _, h := range []string{
			fmt.Sprintf(`{"alg":"ES256","typ":"at+jwt","kid":"elsewhere","jku":"%s/attacker-jwks"}`, f.iss.URL),
			fmt.Sprintf(`{"alg":"ES256","typ":"at+jwt","kid":"elsewhere","x5u":"%s/attacker-cert"}`, f.iss.URL),
			fmt.Sprintf(`{"alg":"ES256","typ":"at+jwt","jku":"%s/attacker-jwks","x5u":"%s/attacker-cert"}`, f.iss.URL, f.iss.URL),
		} {
			if status := f.send(t, f.withHeader(h)); status != 401 {
				t.Errorf("%s: %d", h, status)
			}
		}
		if n := f.iss.Calls("other"); n != 0 {
			t.Errorf("the gateway fetched %d URLs a token named", n)
		}
	})

	t.Run("jwks_failing_backs_off_readiness_included", func(t *testing.T) {
		t.Parallel()
		f := startHoFDX(t, false, func(iss *hoIssuer) { iss.jwksFail.Store(true) })
		start := time.Now()
		for round := 0; round < 15; round++ {
			hoBurst(5, func(int) {
				if status, _ := hoGet(t, f.health); status != 503 {
					t.Errorf("readiness with the JWKS down: %d", status)
				}
			})
			if status := f.send(t, f.token); status != 503 {
				t.Errorf("a token with the JWKS never fetched: %d, want 503", status)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if n, bound := f.iss.Calls("jwks"), hoBackoffBound(time.Since(start), time.Second); n > bound {
			t.Errorf("a failing JWKS got %d fetches from 90 readiness checks and requests, more than a doubling backoff allows (%d)", n, bound)
		}
	})

	t.Run("jwks_cold_burst_on_a_slow_issuer_fetches_once", func(t *testing.T) {
		t.Parallel()
		f := startHoFDX(t, false, func(iss *hoIssuer) { iss.jwksDelay.Store(int64(time.Second)) })
		hoBurst(20, func(int) {
			if status := f.send(t, f.token); status != 200 {
				t.Errorf("the bound token during the first fetch: %d", status)
			}
		})
		if n := f.iss.Calls("jwks"); n != 1 {
			t.Errorf("20 requests at once cost %d JWKS fetches, want 1", n)
		}
	})

	t.Run("introspection_random_tokens_one_call_each_repeats_free", func(t *testing.T) {
		t.Parallel()
		f := startHoFDX(t, false, nil)
		tokens := make([]string, 30)
		for i := range tokens {
			tokens[i] = hoOpaque(t)
		}
		for round := 0; round < 3; round++ {
			hoBurst(len(tokens), func(i int) {
				if status := f.send(t, tokens[i]); status != 401 {
					t.Errorf("an inactive opaque token: %d", status)
				}
			})
		}
		if n := f.iss.Calls("introspect"); n != len(tokens) {
			t.Errorf("%d distinct opaque tokens, each sent three times, cost %d introspection calls, want one each", len(tokens), n)
		}
		for _, tok := range tokens {
			if n := f.iss.Introspected(tok); n != 1 {
				t.Errorf("a token was introspected %d times", n)
			}
		}
	})

	// The authorization server's introspection endpoint fails; a client
	// sends opaque tokens it has never sent before, one after another.
	t.Run("introspection_failing_backs_off_across_tokens", func(t *testing.T) {
		t.Parallel()
		f := startHoFDX(t, false, func(iss *hoIssuer) { iss.introFail.Store(true) })
		start := time.Now()
		for i := 0; i < 25; i++ {
			if status := f.send(t, hoOpaque(t)); status != 503 {
				t.Errorf("an opaque token with introspection down: %d, want 503", status)
			}
		}
		if n, bound := f.iss.Calls("introspect"), hoBackoffBound(time.Since(start), time.Second); n > bound {
			t.Errorf("a failing introspection endpoint got %d calls from 25 requests, more than a doubling backoff after a failed fetch allows (%d)", n, bound)
		}
	})

	t.Run("introspection_cache_survives_a_flood_of_tokens", func(t *testing.T) {
		if testing.Short() {
			t.Skip("10,100 requests")
		}
		t.Parallel()
		f := startHoFDX(t, false, nil)
		const legit = "a-repeated-opaque-token-of-a-legitimate-client"
		f.send(t, legit)
		work := make(chan string)
		var wg sync.WaitGroup
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for tok := range work {
					f.send(t, tok)
				}
			}()
		}
		for i := 0; i < 10100; i++ { // the cache holds 10,000 answers
			work <- hoOpaque(t)
		}
		close(work)
		wg.Wait()
		if n := f.iss.Calls("introspect"); n < 10101 {
			t.Fatalf("the flood reached the introspection endpoint %d times, want 10,101", n)
		}
		for i := 0; i < 3; i++ {
			f.send(t, legit)
		}
		if n := f.iss.Introspected(legit); n != 1 {
			t.Errorf("after a flood of 10,100 fresh tokens the repeated token was introspected %d times, want once per introspection_cache", n)
		}
		const later = "a-token-first-seen-after-the-flood"
		for i := 0; i < 3; i++ {
			f.send(t, later)
		}
		if n := f.iss.Introspected(later); n != 1 {
			t.Errorf("a token first seen after the flood was introspected %d times for 3 requests", n)
		}
	})

	t.Run("fdx_reload_keeps_jwks_min_refresh_and_introspection_cache", func(t *testing.T) {
		t.Parallel()
		f := startHoFDX(t, false, nil)
		opaque := hoOpaque(t)
		flood := func(tag string) {
			hoBurst(10, func(i int) {
				f.send(t, f.withHeader(fmt.Sprintf(`{"alg":"ES256","typ":"at+jwt","kid":"%s-%d"}`, tag, i)))
			})
		}
		f.send(t, f.token)
		flood("before")
		f.send(t, opaque)
		jwksBefore := f.iss.Calls("jwks")
		for i := 0; i < 3; i++ {
			f.reload(t)
			if status := f.send(t, f.token); status != 200 {
				t.Fatalf("the bound token after reload %d: %d", i, status)
			}
			flood(fmt.Sprintf("after-%d", i))
			f.send(t, opaque)
		}
		if n := f.iss.Calls("jwks") - jwksBefore; n > 3 {
			t.Errorf("three reloads within jwks_min_refresh (1h), each followed by a kid flood, cost %d more JWKS fetches (want at most one per reload)", n)
		}
		if n := f.iss.Introspected(opaque); n != 1 {
			t.Errorf("a token repeated across three reloads within introspection_cache (1h) was introspected %d times", n)
		}
	})

	t.Run("fdx_logs_no_secret", func(t *testing.T) {
		t.Parallel()
		f := startHoFDX(t, true, nil)
		opaque := hoOpaque(t)
		f.send(t, f.token)
		f.send(t, opaque)
		f.send(t, f.withHeader(`{"alg":"ES256","typ":"at+jwt","kid":"unknown"}`))
		f.iss.introFail.Store(true)
		other := hoOpaque(t)
		f.send(t, other)
		f.iss.jwksFail.Store(true)
		// another jwks_url (the same path): a reload with the same one
		// keeps the keys, and would never meet the failing JWKS
		jwksURL := "jwks_url " + f.iss.URL + "/jwks.json\n"
		f.cf = strings.Replace(f.cf, jwksURL, strings.TrimSuffix(jwksURL, "\n")+"?after-reload\n", 1)
		jwks := f.iss.Calls("jwks")
		f.reload(t)
		f.send(t, f.token)
		if f.iss.Calls("jwks") == jwks {
			t.Error("the failing JWKS was never met after the reload")
		}
		logs := f.g.Stderr.String()
		for _, s := range []string{hoIntroSecret, base64.StdEncoding.EncodeToString([]byte("intro-client:" + hoIntroSecret)),
			f.tokenSignatureB64, opaque, other} {
			for _, line := range strings.Split(logs, "\n") {
				if strings.Contains(line, s) {
					t.Errorf("a secret (%d bytes) in the log: %s", len(s), describeLine(line))
				}
			}
		}
	})
}
