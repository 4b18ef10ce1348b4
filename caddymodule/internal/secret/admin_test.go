package secret

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

func TestReachableAdmin(t *testing.T) {
	t.Setenv("MXGATE_TEST_ADMIN", "127.0.0.1:2019")
	const private = "unix-handover//run/mxgate/admin.sock|0600"
	for _, c := range []struct {
		name    string
		adm     *caddy.AdminConfig
		def     string
		listen  string
		reaches bool
	}{
		{"absent_private_default", nil, private, private, false},
		{"absent_caddy_default", nil, "localhost:2019", "localhost:2019", true},
		{"off", &caddy.AdminConfig{Disabled: true, Listen: "127.0.0.1:2019"}, private, "", false},
		{"tcp", &caddy.AdminConfig{Listen: "127.0.0.1:2019"}, private, "127.0.0.1:2019", true},
		{"tcp_any_interface", &caddy.AdminConfig{Listen: ":2019"}, private, ":2019", true},
		{"tcp_handover", &caddy.AdminConfig{Listen: "tcp-handover/127.0.0.1:2019"}, private, "tcp-handover/127.0.0.1:2019", true},
		{"no_listen_means_default", &caddy.AdminConfig{EnforceOrigin: true}, "localhost:2019", "localhost:2019", true},
		{"unix_owner", &caddy.AdminConfig{Listen: "unix//run/a.sock|0600"}, private, "unix//run/a.sock|0600", false},
		{"unix_owner_write_only", &caddy.AdminConfig{Listen: "unix//run/a.sock|0200"}, private, "unix//run/a.sock|0200", false},
		{"unix_caddy_default_mode", &caddy.AdminConfig{Listen: "unix//run/a.sock"}, private, "unix//run/a.sock", false},
		{"unix_group", &caddy.AdminConfig{Listen: "unix//run/a.sock|0660"}, private, "unix//run/a.sock|0660", true},
		{"unix_others", &caddy.AdminConfig{Listen: "unix//run/a.sock|0602"}, private, "unix//run/a.sock|0602", true},
		{"unix_group_read_only", &caddy.AdminConfig{Listen: "unix//run/a.sock|0640"}, private, "unix//run/a.sock|0640", false},
		{"abstract", &caddy.AdminConfig{Listen: "unix/@mxgate"}, private, "unix/@mxgate", true},
		{"placeholder", &caddy.AdminConfig{Listen: "{env.MXGATE_TEST_ADMIN}"}, private, "{env.MXGATE_TEST_ADMIN}", true},
		{"unreadable", &caddy.AdminConfig{Listen: "tcp/127.0.0.1:notaport"}, private, "tcp/127.0.0.1:notaport", true},
		{"fd", &caddy.AdminConfig{Listen: "fd/3"}, private, "fd/3", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			listen, why := ReachableAdmin(c.adm, c.def)
			if listen != c.listen || (why != "") != c.reaches {
				t.Fatalf("ReachableAdmin = %q, %q; want %q, reachable %v", listen, why, c.listen, c.reaches)
			}
		})
	}
}

// TestSocketPathTakenBy: a socket in a directory others may write to, or
// may make, is one they can bind first; in a directory of the user's own
// (or root's) that no one else may write to, it is not.
func TestSocketPathTakenBy(t *testing.T) {
	euid := os.Geteuid()
	base := t.TempDir()
	mk := func(name string, mode os.FileMode) string {
		t.Helper()
		d := filepath.Join(base, name)
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, mode); err != nil {
			t.Fatal(err)
		}
		return d
	}
	private, shared := mk("private", 0o700), mk("shared", 0o755)
	sticky, open, group := mk("sticky", os.ModeSticky|0o777), mk("open", 0o777), mk("group", 0o770)
	inOpen := filepath.Join(open, "run")
	if err := os.Mkdir(inOpen, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, path, says string
	}{
		{"private", filepath.Join(private, "admin.sock"), ""},
		{"readable by others", filepath.Join(shared, "admin.sock"), ""},
		{"not made yet, in a private directory", filepath.Join(private, "run", "admin.sock"), ""},
		{"sticky, like /tmp", filepath.Join(sticky, "admin.sock"), "sticky"},
		{"not made yet, under a sticky directory", filepath.Join(sticky, "run", "admin.sock"), "does not exist yet"},
		{"open", filepath.Join(open, "admin.sock"), "its group or others may write to (mode 0777)"},
		{"group-writable", filepath.Join(group, "admin.sock"), "its group or others may write to (mode 0770)"},
		{"private, under an open directory", filepath.Join(inOpen, "admin.sock"), open},
		{"relative", "admin.sock", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.name == "relative" {
				t.Chdir(private)
			}
			why := socketPathTakenBy(c.path, euid)
			if (why == "") != (c.says == "") || !strings.Contains(why, c.says) {
				t.Fatalf("socketPathTakenBy(%s) = %q, want one that says %q", c.path, why, c.says)
			}
		})
	}
	if euid != 0 {
		return
	}
	// another user's directory, or one above
	theirs := mk("theirs", 0o755)
	mine := filepath.Join(theirs, "mine")
	if err := errors.Join(os.Mkdir(mine, 0o700), os.Chown(theirs, 64299, 64299)); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(theirs, "admin.sock"), filepath.Join(mine, "admin.sock")} {
		if why := socketPathTakenBy(p, 1000); !strings.Contains(why, "uid 64299") {
			t.Errorf("%s for uid 1000: %q", p, why)
		}
	}
	// root reloading the gateway of the directory's owner
	if why := socketPathTakenBy(filepath.Join(theirs, "admin.sock"), 0); why != "" {
		t.Errorf("root, the socket's directory of its gateway's user: %q", why)
	}
	if why := socketPathTakenBy(filepath.Join(mine, "admin.sock"), 0); !strings.Contains(why, "uid 64299") {
		t.Errorf("root, a directory above of another user: %q", why)
	}
}

// TestReachableAdminSocketPath: the warning's reason for a socket whose
// path others can take, and none for mxgate's own default.
func TestReachableAdminSocketPath(t *testing.T) {
	sticky := filepath.Join(t.TempDir(), "tmp")
	if err := errors.Join(os.Mkdir(sticky, 0o700), os.Chmod(sticky, os.ModeSticky|0o777)); err != nil {
		t.Fatal(err)
	}
	listen := "unix-handover/" + sticky + "/mxgate-admin.sock|0600"
	if _, why, taken := reachableAdmin(&caddy.AdminConfig{Listen: listen}, "unix-handover//run/mxgate/admin.sock|0600", os.Geteuid()); !taken || why == "" {
		t.Fatalf("a 0600 socket in a sticky directory: %q, taken %v", why, taken)
	}
	// the default is made private by the serving command: not checked,
	// unless CADDY_ADMIN made it
	def := "unix-handover/" + sticky + "/mxgate-1/admin.sock|0600"
	if _, why, _ := reachableAdmin(nil, def, os.Geteuid()); why != "" {
		t.Fatalf("mxgate's default: %q", why)
	}
	t.Setenv("CADDY_ADMIN", def)
	if _, why, _ := reachableAdmin(nil, def, os.Geteuid()); why == "" {
		t.Fatalf("CADDY_ADMIN in a sticky directory: no warning")
	}
}
