package gate

import (
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// Credential wraps the Caddyfile parse function of a directive that holds
// or checks a credential (mdx_hmac, mx_auth, mxconnect_token, fdx_auth):
// before parse runs, the configuration's admin endpoint is checked as
// WarnReachableAdmin says.
func Credential(directive string, parse httpcaddyfile.UnmarshalHandlerFunc) httpcaddyfile.UnmarshalHandlerFunc {
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
// caddy.DefaultAdminListen) names is one another local user can reach:
// any TCP address, an abstract Unix socket (which has no permissions) or a
// Unix socket whose mode lets its group or others write (connect). Through
// it anyone who reaches it can read the configuration, load another and
// stop the gateway, and Caddy gives it no authentication. A JSON
// configuration is not checked: the README states the rule.
func WarnReachableAdmin(h httpcaddyfile.Helper, directive string) {
	if h.State[adminWarned] != nil {
		return
	}
	h.State[adminWarned] = true
	adm, _ := h.Option("admin").(*caddy.AdminConfig)
	listen, why := ReachableAdmin(adm, caddy.DefaultAdminListen)
	if why == "" {
		return
	}
	caddy.Log().Warn("THE ADMIN ENDPOINT IS OPEN TO OTHER LOCAL USERS: "+listen+" is "+why+
		", and the admin API has no authentication: any process on this host, under any user, can read this configuration, "+
		"load another (one without "+directive+" or mx_ip_allow, or one that answers with the files this one reads keys from) and stop the gateway. "+
		"Leave out the admin option for mxgate's default (a Unix socket only this user can open), "+
		"or write `admin unix-handover//run/mxgate/admin.sock|0600`, or `admin off` and reload by restarting",
		zap.String("admin", listen), zap.String("directive", directive))
}

// ReachableAdmin returns the admin endpoint's address and, when another
// local user can reach it, why; "" when it is off, a Unix socket only its
// owner may connect to, or a socket handed over by file descriptor (whose
// reach is the operator's). adm is the admin configuration (nil when
// absent); def is the default address.
func ReachableAdmin(adm *caddy.AdminConfig, def string) (listen, why string) {
	listen = def
	if adm != nil {
		if adm.Disabled {
			return "", ""
		}
		if adm.Listen != "" {
			listen = adm.Listen
		}
	}
	addr, err := caddy.NewReplacer().ReplaceOrErr(listen, true, true)
	if err != nil {
		return listen, "an address that cannot be read (" + err.Error() + ")"
	}
	na, err := caddy.ParseNetworkAddress(addr)
	if err != nil {
		return listen, "an address that cannot be read (" + err.Error() + ")"
	}
	switch {
	case na.IsFdNetwork():
		return listen, ""
	case !na.IsUnixNetwork():
		return listen, "on TCP"
	}
	path, bits, found := strings.Cut(na.Host, "|")
	if strings.HasPrefix(path, "@") {
		return listen, "an abstract Unix socket, which has no permissions"
	}
	mode := uint64(0o200) // Caddy's default
	if found {
		if mode, err = strconv.ParseUint(bits, 8, 32); err != nil {
			return listen, "a Unix socket whose mode cannot be read"
		}
	}
	if mode&0o022 != 0 {
		return listen, "a Unix socket whose mode (" + bits + ") lets its group or others connect"
	}
	return listen, ""
}
