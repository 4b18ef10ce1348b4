package sni

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// UnmarshalCaddyfile sets up the wrapper from Caddyfile tokens. Syntax:
//
//	mx_server_name
//
// It takes no arguments and no options.
func (s *ServerName) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // wrapper name
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(0) {
		return d.Errf("mx_server_name takes no options, not '%s'", d.Val())
	}
	return nil
}

// Interface guards
var _ caddyfile.Unmarshaler = (*ServerName)(nil)
