// Package ipallow is the mx_ip_allow handler: only clients in an
// allow-list, by default MX's published ranges, get past it.
package ipallow

import (
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mxgate/mxgate/caddymodule/internal/gate"
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
	// error body), "json" (MX's {"error":{"message":…}}), "fdx", "text", or
	// "handle_errors" (no body; the site's handle_errors renders it).
	// Default: mdx.
	ErrorFormat string `json:"error_format,omitempty"`

	list   *cidr.List
	format gate.Format
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
	var err error
	if a.format, err = gate.ParseFormat(a.ErrorFormat, gate.FormatMDX); err != nil {
		return err
	}
	ranges := a.Ranges
	if len(ranges) == 0 {
		ranges = []string{"mx"}
	}
	if a.list, err = cidr.Parse(ranges...); err != nil {
		return fmt.Errorf("ranges: %w", err)
	}
	return gate.RegisterMetrics(ctx.GetMetricsRegistry())
}

var refuseIP = gate.Refusal{Status: http.StatusForbidden, Reason: "ip_not_allowed", Message: "Forbidden: client address is not allowed"}

// ServeHTTP admits the request if its client address is in the list.
func (a *IPAllow) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	ip, ok := gate.ClientAddr(r)
	if ok && a.list.Contains(ip) {
		return next.ServeHTTP(w, r)
	}
	if ce := a.logger.Check(zapcore.DebugLevel, "client address not allowed"); ce != nil {
		ce.Write(zap.String("client_ip", gate.ClientIP(r)), zap.String("method", r.Method), zap.String("path", r.URL.Path))
	}
	return gate.Refuse(w, "mx_ip_allow", a.format, refuseIP)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*IPAllow)(nil)
	_ caddyhttp.MiddlewareHandler = (*IPAllow)(nil)
)
