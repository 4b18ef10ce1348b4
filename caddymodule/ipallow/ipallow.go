// Package ipallow is mx_ip_allow: the handler, which admits only clients
// in an allow-list (by default MX's published ranges), and the listener
// wrapper, which closes a connection from any other peer at accept.
package ipallow

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/textproto"
	"strings"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mxgate/mxgate/caddymodule/internal/client"
	"github.com/mxgate/mxgate/caddymodule/internal/metrics"
	"github.com/mxgate/mxgate/caddymodule/internal/provision"
	"github.com/mxgate/mxgate/caddymodule/internal/refusal"
	"github.com/mxgate/mxgate/cidr"
)

func init() {
	caddy.RegisterModule(IPAllow{})
}

// IPAllow admits only requests whose client address is in an allow-list,
// by default MX's published ranges, and answers every other request 403.
//
// The client address is the TCP peer (r.RemoteAddr), never Caddy's client
// IP: the server's trusted_proxies option, without trusted_proxies_strict,
// believes the left-most X-Forwarded-For entry, which the client writes.
// Behind a load balancer, TrustedProxies names it: when the peer is one of
// them, the client is the right-most entry of ClientIPHeader that is not a
// trusted proxy. A request whose peer or whose entries (those that had to
// be read) do not parse strictly is refused.
type IPAllow struct {
	// Ranges lists presets ("mx", "mdx") and CIDR prefixes or single
	// addresses, IPv4 or IPv6. Default: ["mx"].
	Ranges []string `json:"ranges,omitempty"`

	// TrustedProxies lists the proxies (load balancers) in front of the
	// gateway whose ClientIPHeader is believed: CIDR prefixes, single
	// addresses, or the preset private_ranges. Default: none; the client
	// is the TCP peer.
	TrustedProxies []string `json:"trusted_proxies,omitempty"`

	// ClientIPHeader is the header the trusted proxies append the client
	// to, in X-Forwarded-For's syntax. Default: X-Forwarded-For.
	ClientIPHeader string `json:"client_ip_header,omitempty"`

	// ErrorFormat is how a refusal is written: "mdx" (MDX On Demand's XML
	// error body), "json" (MX's {"error":{"message":…}}), "fdx", "text", or
	// "handle_errors" (no body; the site's handle_errors renders it).
	// Default: mdx.
	ErrorFormat string `json:"error_format,omitempty"`

	list    *cidr.List
	trusted *cidr.List // nil: the client is the peer
	header  string     // canonical
	format  refusal.Format
	warned  *atomic.Bool // the server-trusts-a-proxy warning was given
	logger  *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (IPAllow) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.mx_ip_allow",
		New: func() caddy.Module { return new(IPAllow) },
	}
}

// Provision builds the allow-list and the trusted proxies.
func (a *IPAllow) Provision(ctx caddy.Context) (err error) {
	defer provision.NameDirective(&err, "mx_ip_allow")
	a.logger = ctx.Logger()
	a.warned = new(atomic.Bool)
	if a.format, err = refusal.ParseFormat(a.ErrorFormat, refusal.FormatMDX); err != nil {
		return err
	}
	ranges := a.Ranges
	if len(ranges) == 0 {
		ranges = []string{"mx"}
	}
	if a.list, err = cidr.Parse(ranges...); err != nil {
		return fmt.Errorf("ranges: %w", err)
	}
	if len(a.TrustedProxies) > 0 {
		if a.trusted, err = client.ParseRanges(a.TrustedProxies...); err != nil {
			return fmt.Errorf("trusted_proxies: %w", err)
		}
	}
	if a.header, err = clientIPHeader(a.ClientIPHeader); err != nil {
		return err
	}
	if a.ClientIPHeader != "" && a.trusted == nil {
		return errors.New("client_ip_header needs trusted_proxies: without them the client is the TCP peer and no header is read")
	}
	return metrics.Register(ctx.GetMetricsRegistry())
}

// clientIPHeader checks and canonicalises the client_ip_header option.
func clientIPHeader(name string) (string, error) {
	if name == "" {
		return "X-Forwarded-For", nil
	}
	if strings.EqualFold(name, "Forwarded") {
		return "", errors.New("client_ip_header: Forwarded (RFC 7239) has another syntax; name a header in X-Forwarded-For's, such as X-Forwarded-For")
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return "", fmt.Errorf("client_ip_header: %q is not a header name", name)
		}
	}
	return textproto.CanonicalMIMEHeaderKey(name), nil
}

var (
	refuseIP      = refusal.Refusal{Status: http.StatusForbidden, Reason: "ip_not_allowed", Message: "Forbidden: client address is not allowed"}
	refuseAddress = refusal.Refusal{Status: http.StatusForbidden, Reason: "client_address_unreadable", Message: refuseIP.Message}
)

// ServeHTTP admits the request if its client address is in the list.
func (a *IPAllow) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	var header []string
	if a.trusted != nil {
		header = r.Header[a.header]
	}
	ip, ok := clientAddr(r.RemoteAddr, header, a.trusted)
	a.warnServerTrust(r, ip)
	if ok && a.list.Contains(ip) {
		return next.ServeHTTP(w, r)
	}
	rf := refuseIP
	if !ok {
		rf = refuseAddress
	}
	if ce := a.logger.Check(zapcore.DebugLevel, "client address not allowed"); ce != nil {
		addr := ""
		if ok {
			addr = ip.String()
		}
		ce.Write(zap.String("reason", rf.Reason), zap.String("client_ip", addr), zap.String("remote_addr", r.RemoteAddr),
			zap.String("method", r.Method), zap.String("path", r.URL.Path))
	}
	refusal.CloseUnread(w, r)
	return refusal.Refuse(w, r, "mx_ip_allow", a.format, rf)
}

// warnServerTrust says, once per configuration, that the server's
// trusted_proxies option trusts a peer that mx_ip_allow does not: its
// X-Forwarded-For, which the server believes, is not what mx_ip_allow
// decides on.
func (a *IPAllow) warnServerTrust(r *http.Request, decided netip.Addr) {
	if a.warned.Load() {
		return
	}
	serverTrusts, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool)
	if !serverTrusts {
		return
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return
	}
	peer := ap.Addr().WithZone("").Unmap()
	if a.trusted != nil && a.trusted.Contains(peer) {
		return
	}
	if !a.warned.CompareAndSwap(false, true) {
		return
	}
	what := "has no trusted_proxies of its own"
	if a.trusted != nil {
		what = "does not list this peer in its trusted_proxies"
	}
	a.logger.Warn("the server's trusted_proxies option trusts this peer, but mx_ip_allow "+what+
		", so it decides on the TCP peer, not on the client the peer forwards for; "+
		"if the peer is your load balancer, add `trusted_proxies "+peer.String()+"` (or its range) to mx_ip_allow",
		zap.String("peer", peer.String()), zap.String("decided_on", decided.String()))
}

// Interface guards
var (
	_ caddy.Provisioner           = (*IPAllow)(nil)
	_ caddyhttp.MiddlewareHandler = (*IPAllow)(nil)
)
