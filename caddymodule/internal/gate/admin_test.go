package gate

import (
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
