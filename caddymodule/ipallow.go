package caddymodule

import (
	"fmt"
	"net/http"
	"net/netip"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mxgate/mxgate/cidr"
)

func init() {
	caddy.RegisterModule(IPAllow{})
}

// IPAllow admits only requests whose client address is in an allow-list,
// by default MX's published ranges, and answers every other request 403.
//
// The client address is Caddy's client IP: the TCP peer, unless the server's
// trusted_proxies option says a forwarded header may be believed. A request
// whose client address is missing or cannot be parsed is refused.
type IPAllow struct {
	// Ranges lists presets ("mx", "mdx") and CIDR prefixes or single
	// addresses, IPv4 or IPv6. Default: ["mx"].
	Ranges []string `json:"ranges,omitempty"`

	// ErrorFormat is how a refusal is written: "mdx" (MDX On Demand's XML
	// error body), "json" (MX's {"error":{"message":…}}), "text", or
	// "handle_errors" (no body; the site's handle_errors renders it).
	// Default: mdx.
	ErrorFormat string `json:"error_format,omitempty"`

	list   *cidr.List
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (IPAllow) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.mx_ip_allow",
		New: func() caddy.Module { return new(IPAllow) },
	}
}

// Provision builds the allow-list.
func (a *IPAllow) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	if a.ErrorFormat == "" {
		a.ErrorFormat = FormatMDX
	}
	ranges := a.Ranges
	if len(ranges) == 0 {
		ranges = []string{"mx"}
	}
	list, err := cidr.Parse(ranges...)
	if err != nil {
		return fmt.Errorf("mx_ip_allow: %w", err)
	}
	a.list = list
	return registerMetrics(ctx.GetMetricsRegistry())
}

// Validate checks the configuration.
func (a *IPAllow) Validate() error {
	if err := checkErrorFormat(a.ErrorFormat); err != nil {
		return fmt.Errorf("mx_ip_allow: %w", err)
	}
	return nil
}

var rejectIP = rejection{status: http.StatusForbidden, reason: "ip_not_allowed", message: "Forbidden: client address is not allowed"}

// ServeHTTP admits the request if its client address is in the list.
func (a *IPAllow) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	ip, ok := clientAddr(r)
	if ok && a.list.Contains(ip) {
		return next.ServeHTTP(w, r)
	}
	countRejection("mx_ip_allow", rejectIP.reason)
	if ce := a.logger.Check(zapcore.DebugLevel, "client address not allowed"); ce != nil {
		ce.Write(zap.String("client_ip", clientIPString(r)), zap.String("method", r.Method), zap.String("path", r.URL.Path))
	}
	return rejectIP.respond(w, a.ErrorFormat)
}

// clientAddr returns Caddy's client IP for r; ok is false when it is
// missing or unparseable.
func clientAddr(r *http.Request) (netip.Addr, bool) {
	s := clientIPString(r)
	if s == "" {
		return netip.Addr{}, false
	}
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return ip, true
}

func clientIPString(r *http.Request) string {
	s, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	return s
}

// Interface guards
var (
	_ caddy.Provisioner           = (*IPAllow)(nil)
	_ caddy.Validator             = (*IPAllow)(nil)
	_ caddyhttp.MiddlewareHandler = (*IPAllow)(nil)
)
