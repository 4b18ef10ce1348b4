// Package client is who a request comes from: Caddy's client address (the
// TCP peer, or a forwarded one that trusted_proxies allow), the user a
// handler names for the access log and rate-limit keys, and the Callers
// check that only local callers may have the gateway's credentials
// attached to what they send.
package client

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mxgate/mxgate/caddymodule/internal/refusal"
	"github.com/mxgate/mxgate/cidr"
)

// Range presets understood by ParseRanges, beside cidr's (mx, mdx).
const (
	// PresetLoopback is 127.0.0.0/8 and ::1 (IPv4-mapped loopback
	// addresses match as IPv4).
	PresetLoopback = "loopback"
	// PresetPrivateRanges is Caddy's private_ranges: 192.168.0.0/16,
	// 172.16.0.0/12, 10.0.0.0/8, 127.0.0.1/8, fd00::/8 and ::1.
	PresetPrivateRanges = "private_ranges"
)

// ParseRanges builds an allow-list from entries: CIDR prefixes, single
// addresses, cidr's presets (mx, mdx), loopback and private_ranges.
func ParseRanges(entries ...string) (*cidr.List, error) {
	var expanded []string
	for _, e := range entries {
		switch e {
		case PresetLoopback:
			expanded = append(expanded, "127.0.0.0/8", "::1/128")
		case PresetPrivateRanges:
			expanded = append(expanded, caddyhttp.PrivateRangesCIDR()...)
		default:
			expanded = append(expanded, e)
		}
	}
	l, err := cidr.Parse(expanded...)
	if err != nil {
		return nil, fmt.Errorf("%w (or %s, %s)", err, PresetLoopback, PresetPrivateRanges)
	}
	return l, nil
}

// Callers is the check that comes first in every directive that adds a
// credential to a request (mx_auth attach, mxconnect_token, mdx_hmac
// sign): only a local caller may have the gateway's credentials attached
// to what it sends. A caller is its TCP peer, r.RemoteAddr, never a
// forwarded header, whatever the server's trusted_proxies say: a site
// address such as http://127.0.0.1:8490 is a Host matcher, not a bind,
// and a stranger can write any Host and any X-Forwarded-For.
//
// Embed it in the directive's config; its field joins the directive's JSON.
// Provision it, then call Allowed at the top of ServeHTTP and Refuse when
// it says no. The zero value admits loopback and Unix-socket callers only.
// It is safe for concurrent use once provisioned.
type Callers struct {
	// AllowCallers lists the TCP peers that are admitted: CIDR prefixes,
	// single addresses, and the presets loopback and private_ranges. It
	// replaces the default, so a list that should keep loopback names it
	// (`allow_callers loopback 10.1.0.0/16`), and a narrower list
	// (`allow_callers 127.0.0.1/32`) shuts out the rest of 127.0.0.0/8.
	// Callers on a Unix socket are always admitted: the socket's file
	// permissions say who can connect. Default: [loopback].
	AllowCallers []string `json:"allow_callers,omitempty"`

	list      *cidr.List
	directive string
	format    refusal.Format
	logger    *zap.Logger
}

// Provision parses the list; directive and format are those of the
// refusal (its metric label and body).
func (c *Callers) Provision(ctx caddy.Context, directive string, format refusal.Format) error {
	c.directive, c.format, c.logger = directive, format, ctx.Logger()
	entries := c.AllowCallers
	if len(entries) == 0 {
		entries = []string{PresetLoopback}
	}
	var err error
	if c.list, err = ParseRanges(entries...); err != nil {
		return fmt.Errorf("allow_callers: %w", err)
	}
	return nil
}

// Allowed reports whether r's caller may use the credential: it came over
// a Unix socket, or its TCP peer is in the list.
func (c *Callers) Allowed(r *http.Request) bool {
	if _, unix := r.Context().Value(http.LocalAddrContextKey).(*net.UnixAddr); unix {
		return true
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	a := ap.Addr().WithZone("").Unmap()
	if c.list == nil {
		return a.IsLoopback()
	}
	return c.list.Contains(a)
}

var refuseCaller = refusal.Refusal{Status: http.StatusForbidden, Reason: "caller_not_allowed",
	Message: "Forbidden: this caller may not use the credentials of this gateway"}

// Refuse answers r with 403 in the directive's format, and logs the peer
// at DEBUG.
func (c *Callers) Refuse(w http.ResponseWriter, r *http.Request) error {
	if c.logger != nil {
		if ce := c.logger.Check(zapcore.DebugLevel, "caller not allowed to use the credential"); ce != nil {
			ce.Write(zap.String("remote_addr", r.RemoteAddr), zap.String("method", r.Method), zap.String("path", r.URL.Path))
		}
	}
	format := c.format
	if format == "" {
		format = refusal.FormatJSON
	}
	directive := c.directive
	if directive == "" {
		directive = "unknown"
	}
	return refusal.Refuse(w, r, directive, format, refuseCaller)
}

// AllowCallers reads the allow_callers option's arguments, at least one,
// each a CIDR prefix, an address, loopback or private_ranges.
func AllowCallers(d *caddyfile.Dispenser) ([]string, error) {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return nil, d.ArgErr()
	}
	if _, err := ParseRanges(args...); err != nil {
		return nil, d.Errf("allow_callers: %v", err)
	}
	return args, nil
}
