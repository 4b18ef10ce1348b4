package secret

import (
	"os"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// Holder wraps the Caddyfile parse function of a directive that holds
// or checks a credential (mdx_hmac, mx_auth, mxconnect_token, fdx_auth):
// before parse runs, the configuration's admin endpoint is checked as
// WarnReachableAdmin says.
func Holder(directive string, parse httpcaddyfile.UnmarshalHandlerFunc) httpcaddyfile.UnmarshalHandlerFunc {
	return func(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
		WarnReachableAdmin(h, directive)
		return parse(h)
	}
}

// adminWarned is the key, in a Caddyfile adaptation's state, of the admin
// endpoint's warning: one per adaptation.
const adminWarned = "mxgate_admin_warned"

// WarnReachableAdmin warns, loudly and once per Caddyfile adaptation, when
// the admin endpoint that the global admin option (or, without one,
// caddy.DefaultAdminListen) names is one another local user can reach or
// take: any TCP address, an abstract Unix socket (which has no
// permissions), a Unix socket whose mode lets its group or others write
// (connect), or a Unix socket whose path another user can bind first
// (see socketPathTakenBy). Through it anyone who reaches it can read the
// configuration, load another and stop the gateway, and Caddy gives it no
// authentication; whoever takes its path keeps the gateway from starting
// and receives what a client sends there. A JSON configuration is not
// checked: docs/security-model.md states the rule.
func WarnReachableAdmin(h httpcaddyfile.Helper, directive string) {
	if h.State[adminWarned] != nil {
		return
	}
	h.State[adminWarned] = true
	adm, _ := h.Option("admin").(*caddy.AdminConfig)
	listen, why, taken := reachableAdmin(adm, caddy.DefaultAdminListen, os.Geteuid())
	if why == "" {
		return
	}
	const instead = "Leave out the admin option for mxgate's default (a Unix socket only this user can open, in a directory only this user may write to), " +
		"or write `admin unix-handover//run/mxgate/admin.sock|0600` (a directory of this user's that no one else may write to), or `admin off` and reload by restarting"
	if taken {
		caddy.Log().Warn("THE ADMIN ENDPOINT IS OPEN TO OTHER LOCAL USERS: "+listen+" is "+why+
			": another user can bind the socket's path first (while the gateway is down, or in place of its socket), and so keep the gateway from starting "+
			"and receive what an admin client sends there (the configuration "+directive+" is in, with every {$VAR} filled in); "+
			"mxgate's reload and stop refuse a socket of another user, other clients do not. "+instead,
			zap.String("admin", listen), zap.String("directive", directive))
		return
	}
	caddy.Log().Warn("THE ADMIN ENDPOINT IS OPEN TO OTHER LOCAL USERS: "+listen+" is "+why+
		", and the admin API has no authentication: any process on this host, under any user, can read this configuration, "+
		"load another (one without "+directive+" or mx_ip_allow, or one that answers with the files this one reads keys from) and stop the gateway. "+instead,
		zap.String("admin", listen), zap.String("directive", directive))
}

// ReachableAdmin returns the admin endpoint's address and, when another
// local user can reach it, or take its Unix socket's path, why; "" when
// it is off, a Unix socket only its owner may connect to in a directory
// no other user may write to, or a socket handed over by file descriptor
// (whose reach is the operator's). adm is the admin configuration (nil
// when absent); def is the default address.
func ReachableAdmin(adm *caddy.AdminConfig, def string) (listen, why string) {
	listen, why, _ = reachableAdmin(adm, def, os.Geteuid())
	return listen, why
}

// reachableAdmin is ReachableAdmin for a gateway of user euid; taken
// reports that the reason is the socket's path, not its reach.
func reachableAdmin(adm *caddy.AdminConfig, def string, euid int) (listen, why string, taken bool) {
	listen = def
	if adm != nil {
		if adm.Disabled {
			return "", "", false
		}
		if adm.Listen != "" {
			listen = adm.Listen
		}
	}
	addr, err := caddy.NewReplacer().ReplaceOrErr(listen, true, true)
	if err != nil {
		return listen, "an address that cannot be read (" + err.Error() + ")", false
	}
	na, err := caddy.ParseNetworkAddress(addr)
	if err != nil {
		return listen, "an address that cannot be read (" + err.Error() + ")", false
	}
	switch {
	case na.IsFdNetwork():
		return listen, "", false
	case !na.IsUnixNetwork():
		return listen, "on TCP", false
	}
	path, bits, found := strings.Cut(na.Host, "|")
	if strings.HasPrefix(path, "@") {
		return listen, "an abstract Unix socket, which has no permissions", false
	}
	mode := uint64(0o200) // Caddy's default
	if found {
		if mode, err = strconv.ParseUint(bits, 8, 32); err != nil {
			return listen, "a Unix socket whose mode cannot be read", false
		}
	}
	if mode&0o022 != 0 {
		return listen, "a Unix socket whose mode (" + bits + ") lets its group or others connect", false
	}
	// mxgate's default (no admin option, no CADDY_ADMIN) is in a directory
	// that the serving command makes private, or refuses to serve in
	if _, set := os.LookupEnv("CADDY_ADMIN"); listen == def && !set {
		return listen, "", false
	}
	if why := socketPathTakenBy(path, euid); why != "" {
		return listen, why, true
	}
	return listen, "", false
}
