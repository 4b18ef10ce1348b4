package ipallow

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/mxgate/mxgate/caddymodule/internal/caddyfileopt"
	"github.com/mxgate/mxgate/caddymodule/internal/client"
	"github.com/mxgate/mxgate/cidr"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("mx_ip_allow", caddyfileopt.UnmarshalHandler[IPAllow])
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	mx_ip_allow [<preset|cidr>...] {
//		ranges <preset|cidr>...
//		trusted_proxies [static] <cidr|private_ranges>...
//		client_ip_header <name>
//		error_format mdx|json|fdx|text|handle_errors
//	}
//
// Presets are mx (all MX data centres) and mdx (MDX On Demand callers).
// With no ranges at all, the list is the mx preset. `static` after
// trusted_proxies is optional, as in the server option of that name.
func (a *IPAllow) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	a.Ranges = append(a.Ranges, d.RemainingArgs()...)
	for d.NextBlock(0) {
		var err error
		switch d.Val() {
		case "ranges":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			a.Ranges = append(a.Ranges, args...)
		case "trusted_proxies":
			args := d.RemainingArgs()
			if len(args) > 0 && args[0] == "static" {
				args = args[1:]
			}
			if len(args) == 0 {
				return d.ArgErr()
			}
			if _, err := client.ParseRanges(args...); err != nil {
				return d.Errf("trusted_proxies: %v", err)
			}
			a.TrustedProxies = append(a.TrustedProxies, args...)
		case "client_ip_header":
			if a.ClientIPHeader, err = caddyfileopt.String(d); err == nil {
				if _, herr := clientIPHeader(a.ClientIPHeader); herr != nil {
					return d.Err(herr.Error())
				}
			}
		case "error_format":
			a.ErrorFormat, err = caddyfileopt.ErrorFormat(d)
		default:
			return caddyfileopt.Unrecognized(d, "mx_ip_allow")
		}
		if err != nil {
			return err
		}
		if err := caddyfileopt.NoMoreArgs(d); err != nil {
			return err
		}
	}
	if len(a.Ranges) > 0 {
		if _, err := cidr.Parse(a.Ranges...); err != nil {
			return d.Err(err.Error())
		}
	}
	return nil
}

// UnmarshalCaddyfile sets up the wrapper from Caddyfile tokens. Syntax:
//
//	mx_ip_allow [<preset|cidr>...] {
//		ranges <preset|cidr>...
//	}
func (lw *ListenerWrapper) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // wrapper name
	lw.Ranges = append(lw.Ranges, d.RemainingArgs()...)
	for d.NextBlock(0) {
		switch d.Val() {
		case "ranges":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			lw.Ranges = append(lw.Ranges, args...)
		default:
			return caddyfileopt.Unrecognized(d, "mx_ip_allow listener wrapper")
		}
	}
	if len(lw.Ranges) > 0 {
		if _, err := cidr.Parse(lw.Ranges...); err != nil {
			return d.Err(err.Error())
		}
	}
	return nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*IPAllow)(nil)
	_ caddyfile.Unmarshaler = (*ListenerWrapper)(nil)
)
