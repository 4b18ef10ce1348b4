package ipallow

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/mxgate/mxgate/caddymodule/internal/gate"
	"github.com/mxgate/mxgate/cidr"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("mx_ip_allow", gate.UnmarshalHandler[IPAllow])
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	mx_ip_allow [<preset|cidr>...] {
//		ranges <preset|cidr>...
//		error_format mdx|json|fdx|text|handle_errors
//	}
//
// Presets are mx (all MX data centres) and mdx (MDX On Demand callers).
// With no ranges at all, the list is the mx preset.
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
		case "error_format":
			a.ErrorFormat, err = gate.ErrorFormat(d)
		default:
			return d.Errf("unrecognized mx_ip_allow option '%s'", d.Val())
		}
		if err != nil {
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

// Interface guards
var _ caddyfile.Unmarshaler = (*IPAllow)(nil)
