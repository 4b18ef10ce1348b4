package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestHostileControlPlaneClient: mxgate's reload and stop check who
// listens on a Unix admin socket before they send anything. Root reaches
// the gateway of another user as deploy/ documents it (--address, the
// socket in that user's runtime directory); without --address, or to a
// socket of a user who is not the gateway's, it sends nothing.
func TestHostileControlPlaneClient(t *testing.T) {
	t.Parallel()
	hoRequireRoot(t)

	// as deploy/systemd runs it: the gateway's own runtime directory, 0750
	run := hoDir(t, hoGateway, hoClientsGr, 0o750)
	sock := filepath.Join(run, "admin.sock")
	port := freePort(t)
	site := func(answer string) string {
		return fmt.Sprintf("{\n\tdefault_bind tcp-handover/127.0.0.1\n}\nhttp://127.0.0.1:%d {\n\trespond %q\n}\n", port, answer)
	}
	home := hoDir(t, hoGateway, hoClientsGr, 0o700)
	hoStartAs(t, hoGateway, hoClientsGr, nil, site("v1"), "unix/"+sock,
		hoEnv(home, "RUNTIME_DIRECTORY="+run, "TMPDIR="+hoSticky(t)))
	answers := func(want string) {
		t.Helper()
		if status, body := hoGet(t, fmt.Sprintf("http://127.0.0.1:%d/", port)); status != 200 || body != want {
			t.Fatalf("the gateway answers %d %q, want %q", status, body, want)
		}
	}
	answers("v1")

	reload := func(t *testing.T, answer string, args ...string) (string, error) {
		t.Helper()
		cf := filepath.Join(t.TempDir(), "Caddyfile")
		hoWrite(t, filepath.Dir(cf), "Caddyfile", site(answer), 0, 0)
		cmd := exec.Command(binary, append([]string{"reload", "--config", cf, "--adapter", "caddyfile", "--force"}, args...)...)
		cmd.Env = hoEnv(t.TempDir(), "TMPDIR="+hoSticky(t))
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	t.Run("root_with_address_reaches_the_gateway_users_socket", func(t *testing.T) {
		if out, err := reload(t, "v2", "--address", "unix/"+sock); err != nil {
			t.Fatalf("root's mxgate reload --address %s: %v\n%s", sock, err, out)
		}
		answers("v2")
	})

	t.Run("root_without_address_sends_nothing_to_another_users_socket", func(t *testing.T) {
		// the configuration names the socket, as `admin` would
		cf := filepath.Join(t.TempDir(), "Caddyfile")
		hoWrite(t, filepath.Dir(cf), "Caddyfile", strings.Replace(site("v3"), "{\n", fmt.Sprintf("{\n\tadmin unix-handover/%s|0600\n", sock), 1), 0, 0)
		cmd := exec.Command(binary, "reload", "--config", cf, "--adapter", "caddyfile", "--force")
		cmd.Env = hoEnv(t.TempDir(), "TMPDIR="+hoSticky(t))
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Fatalf("root's reload without --address reached uid %d's socket:\n%s", hoGateway, out)
		}
		if want := fmt.Sprintf("%s is a socket of uid %d", sock, hoGateway); !strings.Contains(string(out), want) {
			t.Errorf("the refusal does not say %q:\n%s", want, out)
		}
		answers("v2")
	})

	t.Run("the_gateways_user_reaches_it_by_default", func(t *testing.T) {
		cf := hoWrite(t, hoDir(t, hoGateway, hoGateway, 0o700), "Caddyfile", site("v4"), hoGateway, hoGateway)
		out, err := hoAs(hoGateway, hoClientsGr, nil, hoEnv("/", "RUNTIME_DIRECTORY="+run, "TMPDIR="+hoSticky(t)),
			binary, "reload", "--config", cf, "--adapter", "caddyfile", "--force").CombinedOutput()
		if err != nil {
			t.Fatalf("the gateway's user, in its environment: %v\n%s", err, out)
		}
		answers("v4")
	})

	t.Run("a_member_of_the_directorys_group_is_refused", func(t *testing.T) {
		// the stranger cannot connect at all; a member of the group can
		// enter the directory but not connect (0600)
		out, err := hoAs(hoMember, hoMember, []int{hoClientsGr}, hoEnv("/"), binary, "stop", "--address", "unix/"+sock).CombinedOutput()
		if err == nil {
			t.Fatalf("a member of the clients' group stopped the gateway:\n%s", out)
		}
		answers("v4")
	})
}
