package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/testkit/freeport"
)

func TestDefaultAdmin(t *testing.T) {
	private, open := t.TempDir(), t.TempDir()
	if err := errors.Join(os.Chmod(private, 0o700), os.Chmod(open, 0o755)); err != nil {
		t.Fatal(err)
	}
	uid := os.Geteuid()
	for _, c := range []struct {
		name    string
		env     map[string]string
		listen  string
		private bool
	}{
		{"systemd", map[string]string{"RUNTIME_DIRECTORY": "/run/mxgate", "XDG_RUNTIME_DIR": private},
			"unix-handover//run/mxgate/admin.sock|0600", false},
		{"systemd_several", map[string]string{"RUNTIME_DIRECTORY": "/run/mxgate:/run/other"},
			"unix-handover//run/mxgate/admin.sock|0600", false},
		{"xdg", map[string]string{"XDG_RUNTIME_DIR": private},
			"unix-handover/" + private + "/mxgate/admin.sock|0600", true},
		// a runtime directory that is not private to this user is passed over
		{"xdg_open", map[string]string{"XDG_RUNTIME_DIR": open},
			fmt.Sprintf("unix-handover//tmp/mxgate-%d/admin.sock|0600", uid), true},
		{"xdg_relative", map[string]string{"XDG_RUNTIME_DIR": "run", "RUNTIME_DIRECTORY": "run"},
			fmt.Sprintf("unix-handover//tmp/mxgate-%d/admin.sock|0600", uid), true},
		{"nothing", nil, fmt.Sprintf("unix-handover//tmp/mxgate-%d/admin.sock|0600", uid), true},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := defaultAdmin(func(k string) string { return c.env[k] }, uid, "/tmp")
			if d.listen != c.listen || d.private != c.private {
				t.Fatalf("got %q (private %v), want %q (%v)", d.listen, d.private, c.listen, c.private)
			}
		})
	}
}

// TestPrepareAdminDir: the private directory is made 0700; one that is
// open to others, a link or (as root) someone else's is refused.
func TestPrepareAdminDir(t *testing.T) {
	uid := os.Geteuid()
	base := t.TempDir()
	d := adminDefault{dir: filepath.Join(base, "fresh"), private: true}
	if err := d.prepare(uid); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(d.dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("made %v, %v", fi.Mode(), err)
	}
	if err := d.prepare(uid); err != nil {
		t.Fatalf("again: %v", err)
	}

	openDir := filepath.Join(base, "open")
	if err := os.Mkdir(openDir, 0o700); err != nil {
		t.Fatal(err)
	}
	os.Chmod(openDir, 0o755)
	link := filepath.Join(base, "link")
	os.Symlink(d.dir, link)
	bad := map[string]string{"open": openDir, "link": link}
	if uid == 0 {
		other := filepath.Join(base, "other")
		os.Mkdir(other, 0o700)
		if err := os.Chown(other, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		bad["someone_elses"] = other
	}
	for name, dir := range bad {
		if err := (adminDefault{dir: dir, private: true}).prepare(uid); err == nil {
			t.Errorf("%s: accepted", name)
		} else if !strings.Contains(err.Error(), dir) {
			t.Errorf("%s: the error does not name the directory: %v", name, err)
		}
	}
	// systemd's directory is systemd's to make
	if err := (adminDefault{dir: filepath.Join(base, "absent")}).prepare(uid); err != nil {
		t.Fatal(err)
	}
}

func TestDialable(t *testing.T) {
	for in, want := range map[string]string{
		"unix-handover//run/mxgate/admin.sock|0600": "unix//run/mxgate/admin.sock|0600",
		"tcp-handover/127.0.0.1:2019":               "tcp/127.0.0.1:2019",
		"unix//run/x.sock":                          "unix//run/x.sock",
		"127.0.0.1:2019":                            "127.0.0.1:2019",
	} {
		if got, err := dialable(in); err != nil || got != want {
			t.Errorf("dialable(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// adminGet GETs path from the admin endpoint at a Unix socket.
func adminGet(sock, path string) (int, string, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}}
	resp, err := c.Get("http://admin" + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// TestDefaultAdminSocket runs the binary as the systemd unit does, with
// $RUNTIME_DIRECTORY and no admin option: the admin endpoint is
// $RUNTIME_DIRECTORY/admin.sock, mode 0600; `reload` and `stop` in the
// same environment find it; a second `run` in that environment is refused
// and names the socket, and the first still answers.
func TestDefaultAdminSocket(t *testing.T) {
	run := t.TempDir()
	state := t.TempDir()
	port, err := freeport.Get()
	if err != nil {
		t.Fatal(err)
	}
	cf := filepath.Join(t.TempDir(), "Caddyfile")
	config := fmt.Sprintf("{\n\tpersist_config off\n}\n\nhttp://127.0.0.1:%d {\n\tbind tcp-handover/127.0.0.1\n\trespond \"v1\"\n}\n", port)
	if err := os.WriteFile(cf, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"RUNTIME_DIRECTORY=" + run, "HOME=" + state, "XDG_DATA_HOME=" + state, "XDG_CONFIG_HOME=" + state}
	ctx, cancel := context.WithCancel(context.Background())
	gw := exec.CommandContext(ctx, binary, "run", "--config", cf, "--adapter", "caddyfile")
	gw.Env = append(os.Environ(), env...)
	logs := new(syncBuffer)
	gw.Stderr = logs
	if err := gw.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = gw.Wait(); close(exited) }()
	t.Cleanup(func() {
		cancel()
		<-exited
	})
	sock := filepath.Join(run, "admin.sock")
	deadline := time.Now().Add(20 * time.Second)
	for {
		if status, _, err := adminGet(sock, "/config/"); err == nil && status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no admin endpoint at %s:\n%s", sock, logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	fi, err := os.Lstat(sock)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("admin socket: %v, %v", fi.Mode(), err)
	}

	_, stderr, status := mxgate(t, env, "run", "--config", cf, "--adapter", "caddyfile")
	if status == 0 || !strings.Contains(stderr, "unix-handover/"+sock+": in use by another process") {
		t.Fatalf("a second run: status %d, it does not say that the socket is in use:\n%s", status, stderr)
	}
	if st, _, err := adminGet(sock, "/config/"); err != nil || st != 200 {
		t.Fatalf("the first gateway's admin endpoint after the second was refused: %d, %v", st, err)
	}

	// reload in the unit's environment (ExecReload), with a new answer
	if err := os.WriteFile(cf, []byte(strings.Replace(config, "v1", "v2", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, stderr, status := mxgate(t, env, "reload", "--config", cf, "--adapter", "caddyfile", "--force"); status != 0 {
		t.Fatalf("reload: %s", stderr)
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "v2" {
		t.Fatalf("after reload: %q", body)
	}
	// another environment does not find it, and says where it looked
	other := []string{"RUNTIME_DIRECTORY=" + t.TempDir()}
	if _, stderr, status := mxgate(t, other, "reload", "--config", cf, "--adapter", "caddyfile"); status == 0 || !strings.Contains(stderr, "give --address") {
		t.Fatalf("reload elsewhere: status %d\n%s", status, stderr)
	}
	// but --address does
	if _, stderr, status := mxgate(t, other, "reload", "--config", cf, "--adapter", "caddyfile", "--address", "unix/"+sock); status != 0 {
		t.Fatalf("reload --address: %s", stderr)
	}
	if _, stderr, status := mxgate(t, env, "stop"); status != 0 {
		t.Fatalf("stop: %s", stderr)
	}
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		t.Fatal("the gateway did not stop")
	}
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Fatalf("the socket is left after stop: %v", err)
	}
}

// TestAdminWarning: a credential directive in a configuration whose admin
// endpoint other local users can reach warns once, at adaptation; one on
// mxgate's default, on a private socket or off does not.
func TestAdminWarning(t *testing.T) {
	dir := t.TempDir()
	const warning = "THE ADMIN ENDPOINT IS OPEN TO OTHER LOCAL USERS"
	// like /tmp: anyone may create the socket's path while the gateway is down
	sticky := filepath.Join(dir, "tmp")
	if err := errors.Join(os.Mkdir(sticky, 0o700), os.Chmod(sticky, os.ModeSticky|0o777)); err != nil {
		t.Fatal(err)
	}
	site := "http://127.0.0.1:1 {\n\tmdx_hmac verify {\n\t\tkey QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo3ODkwMTI=\n\t}\n\trespond ok\n}\n\nhttp://127.0.0.1:2 {\n\tmx_auth check {\n\t\tclient a b\n\t}\n\trespond ok\n}\n"
	for _, c := range []struct {
		name, global string
		env          []string
		warns        bool
	}{
		{"default", "", nil, false},
		{"tcp", "admin 127.0.0.1:2019", nil, true},
		{"tcp_handover", "admin tcp-handover/127.0.0.1:2019", nil, true},
		{"private_socket", "admin unix-handover//run/mxgate/admin.sock|0600", nil, false},
		{"caddy_default_socket_mode", "admin unix//run/mxgate/admin.sock", nil, false},
		{"group_socket", "admin unix//run/mxgate/admin.sock|0660", nil, true},
		{"abstract_socket", "admin unix/@mxgate-admin", nil, true},
		{"private_socket_in_a_sticky_directory", "admin unix-handover/" + sticky + "/admin.sock|0600", nil, true},
		{"private_socket_in_a_private_directory", "admin unix-handover/" + dir + "/admin.sock|0600", nil, false},
		{"env_socket_in_a_sticky_directory", "", []string{"CADDY_ADMIN=unix/" + sticky + "/admin.sock|0600"}, true},
		{"off", "admin off", nil, false},
		{"env_tcp_default", "", []string{"CADDY_ADMIN=localhost:2019"}, true},
		{"placeholder", "admin {env.MXGATE_TEST_ADMIN}", []string{"MXGATE_TEST_ADMIN=127.0.0.1:2019"}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, c.name+".Caddyfile")
			cf := site
			if c.global != "" {
				cf = "{\n\t" + c.global + "\n}\n\n" + site
			}
			if err := os.WriteFile(path, []byte(cf), 0o600); err != nil {
				t.Fatal(err)
			}
			env := append([]string{"HOME=" + dir}, c.env...)
			_, stderr, status := mxgate(t, env, "adapt", "--config", path, "--adapter", "caddyfile")
			if status != 0 {
				t.Fatalf("adapt: %s", stderr)
			}
			n := strings.Count(stderr, warning)
			switch {
			case c.warns && n != 1:
				t.Fatalf("%d warnings, want 1:\n%s", n, stderr)
			case !c.warns && n != 0:
				t.Fatalf("warned:\n%s", stderr)
			}
		})
	}
	// each credential directive alone warns
	for directive, block := range map[string]string{
		"mdx_hmac":        "mdx_hmac sign {\n\t\tkey QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo3ODkwMTI=\n\t}",
		"mx_auth":         "mx_auth attach {\n\t\tclient_id a\n\t\tapi_key b\n\t}",
		"mxconnect_token": "mxconnect_token {\n\t\tusername a\n\t\tpassword b\n\t\tapi_key c\n\t}",
		"fdx_auth":        "fdx_auth {\n\t\tissuer https://as.example\n\t\taudience https://rs.example\n\t\tjwks_url https://as.example/jwks\n\t}",
	} {
		t.Run("only_"+directive, func(t *testing.T) {
			path := filepath.Join(dir, "only-"+directive+".Caddyfile")
			cf := "{\n\tadmin 127.0.0.1:2019\n}\n\nhttp://127.0.0.1:1 {\n\t" + block + "\n\trespond ok\n}\n"
			if err := os.WriteFile(path, []byte(cf), 0o600); err != nil {
				t.Fatal(err)
			}
			_, stderr, status := mxgate(t, []string{"HOME=" + dir}, "adapt", "--config", path, "--adapter", "caddyfile")
			if status != 0 {
				t.Fatalf("adapt: %s", stderr)
			}
			if n := strings.Count(stderr, warning); n != 1 || !strings.Contains(stderr, `"directive":"`+directive+`"`) {
				t.Fatalf("%d warnings naming %s, want 1:\n%s", n, directive, stderr)
			}
		})
	}
}
