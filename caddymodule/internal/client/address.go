package client

import (
	"net/http"
	"net/netip"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// IP returns Caddy's client IP for r as a string ("" if unknown):
// the TCP peer, unless the server's trusted_proxies option says a
// forwarded header may be believed.
func IP(r *http.Request) string {
	s, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	return s
}

// Addr returns IP parsed; ok is false when it is missing or
// unparseable.
func Addr(r *http.Request) (netip.Addr, bool) {
	ip, err := netip.ParseAddr(IP(r))
	return ip, err == nil
}

// SetUser sets {http.auth.user.id}, usable as a rate-limit key and in logs.
func SetUser(r *http.Request, id string) {
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set("http.auth.user.id", id)
	}
}
