package caddymodule

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("mx_ip_allow", parseIPAllow)
	httpcaddyfile.RegisterHandlerDirective("mdx_hmac", parseMDXHMAC)

	// The IP check runs first, before any redirect, rewrite or auth, so a
	// stranger gets nothing but 403; the signature check runs next. Both
	// come after `header`, so a site's security headers reach refusals too.
	httpcaddyfile.RegisterDirectiveOrder("mx_ip_allow", httpcaddyfile.Before, "redir")
	httpcaddyfile.RegisterDirectiveOrder("mdx_hmac", httpcaddyfile.Before, "redir") // lands after mx_ip_allow
}

func parseIPAllow(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	a := new(IPAllow)
	err := a.UnmarshalCaddyfile(h.Dispenser)
	return a, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	mx_ip_allow [<preset|cidr>...] {
//		ranges <preset|cidr>...
//		error_format mdx|json|text|handle_errors
//	}
//
// Presets are mx (all MX data centres) and mdx (MDX On Demand callers).
// With no ranges at all, the list is the mx preset.
func (a *IPAllow) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	a.Ranges = append(a.Ranges, d.RemainingArgs()...)
	for d.NextBlock(0) {
		switch d.Val() {
		case "ranges":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			a.Ranges = append(a.Ranges, args...)
		case "error_format":
			if err := parseErrorFormat(d, &a.ErrorFormat); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized mx_ip_allow option '%s'", d.Val())
		}
	}
	return nil
}

func parseMDXHMAC(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(MDXHMAC)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	mdx_hmac verify {
//		key <base64>                  # repeatable; {env.*} and {file.*} work
//		algorithm sha1|sha224|sha256|sha384|sha512
//		max_skew <duration>|off
//		max_body <size>
//		resource final|path [query]
//		base_path <prefix>
//		replay_window <duration>
//		replay_cache_size <n>
//		error_format mdx|json|text|handle_errors
//	}
func (m *MDXHMAC) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if !d.NextArg() {
		return d.Err("mdx_hmac needs a mode: mdx_hmac verify { … }")
	}
	m.Mode = d.Val()
	if m.Mode != "verify" {
		return d.Errf("unknown mdx_hmac mode '%s' (want verify)", m.Mode)
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		opt := d.Val()
		switch opt {
		case "key":
			args := d.RemainingArgs()
			if len(args) != 1 {
				return d.Err("key takes exactly one base64 key (repeat the option for several)")
			}
			m.Keys = append(m.Keys, args[0])
		case "algorithm":
			if !d.NextArg() {
				return d.ArgErr()
			}
			m.Algorithm = d.Val()
			switch m.Algorithm {
			case "sha1", "sha224", "sha256", "sha384", "sha512":
			default:
				return d.Errf("unknown algorithm '%s' (want sha1, sha224, sha256, sha384 or sha512)", m.Algorithm)
			}
		case "max_skew":
			if !d.NextArg() {
				return d.ArgErr()
			}
			if d.Val() == "off" {
				m.SkewCheckOff = true
				break
			}
			dur, err := caddy.ParseDuration(d.Val())
			if err != nil {
				return d.Errf("max_skew: %v", err)
			}
			if dur <= 0 {
				return d.Err("max_skew must be positive; to drop the bound write `max_skew off`")
			}
			md := caddy.Duration(dur)
			m.MaxSkew = &md
		case "max_body":
			if !d.NextArg() {
				return d.ArgErr()
			}
			n, err := humanize.ParseBytes(d.Val())
			if err != nil || n == 0 || n > 1<<40 {
				return d.Errf("max_body: invalid size '%s'", d.Val())
			}
			m.MaxBody = int64(n)
		case "resource":
			args := d.RemainingArgs()
			switch {
			case len(args) == 1 && (args[0] == "final" || args[0] == "path"):
				m.Resource = args[0]
			case len(args) == 2 && args[0] == "path" && args[1] == "query":
				m.Resource, m.ResourceQuery = "path", true
			default:
				return d.Err("resource takes final, path, or path query")
			}
		case "base_path":
			if !d.NextArg() {
				return d.ArgErr()
			}
			m.BasePath = d.Val()
		case "replay_window":
			if !d.NextArg() {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(d.Val())
			if err != nil || dur <= 0 {
				return d.Errf("replay_window: invalid duration '%s'", d.Val())
			}
			m.ReplayWindow = caddy.Duration(dur)
		case "replay_cache_size":
			if !d.NextArg() {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(d.Val())
			if err != nil || n <= 0 {
				return d.Errf("replay_cache_size: invalid number '%s'", d.Val())
			}
			m.ReplayCacheSize = n
		case "error_format":
			if err := parseErrorFormat(d, &m.ErrorFormat); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized mdx_hmac option '%s'", opt)
		}
		if d.NextArg() {
			return d.Errf("%s: too many arguments", opt)
		}
	}
	if len(m.Keys) == 0 {
		return d.Err("mdx_hmac verify needs at least one key")
	}
	if m.BasePath != "" && m.Resource != "path" {
		return d.Err("base_path applies only with `resource path`")
	}
	return nil
}

func parseErrorFormat(d *caddyfile.Dispenser, dst *string) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	if err := checkErrorFormat(d.Val()); err != nil {
		return d.Err(err.Error())
	}
	*dst = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*IPAllow)(nil)
	_ caddyfile.Unmarshaler = (*MDXHMAC)(nil)
)
