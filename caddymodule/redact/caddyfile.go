package redact

import (
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap/zapcore"

	"github.com/mxgate/mxgate/caddymodule/internal/caddyfileopt"
)

// UnmarshalCaddyfile sets up the encoder from Caddyfile tokens. Syntax:
//
//	format mxgate_redact {
//		wrap <encoder> [<encoder options>]   # default json (console on a terminal)
//		header <name>...                     # repeatable; beside the defaults
//	}
func (e *Encoder) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the encoder's name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "wrap":
			if e.WrappedRaw != nil {
				return d.Err("wrap given twice")
			}
			if !d.NextArg() {
				return d.ArgErr()
			}
			name := d.Val()
			unm, err := caddyfile.UnmarshalModule(d, "caddy.logging.encoders."+name)
			if err != nil {
				return err
			}
			enc, ok := unm.(zapcore.Encoder)
			if !ok {
				return d.Errf("module %s is not a log encoder", name)
			}
			e.WrappedRaw = caddyconfig.JSONModuleObject(enc, "format", name, nil)
		case "header":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			e.Headers = append(e.Headers, args...)
		default:
			return caddyfileopt.Unrecognized(d, "mxgate_redact")
		}
	}
	return nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Encoder)(nil)
