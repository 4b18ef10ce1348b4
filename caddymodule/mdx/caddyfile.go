package mdx

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/mxgate/mxgate/caddymodule/internal/caddyfileopt"
	"github.com/mxgate/mxgate/caddymodule/internal/client"
	"github.com/mxgate/mxgate/caddymodule/internal/secret"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("mdx_hmac", secret.Holder("mdx_hmac", parseMDXHMAC))
	httpcaddyfile.RegisterHandlerDirective("mdx_sanitize", caddyfileopt.UnmarshalHandler[Sanitize])
}

// parseMDXHMAC reads `mdx_hmac verify {…}` into a Verify and `mdx_hmac
// sign {…}` into a Sign.
var parseMDXHMAC = caddyfileopt.ByMode("mdx_hmac", []string{"verify", "sign"}, func(mode string) caddyfileopt.Handler {
	if mode == "sign" {
		return new(Sign)
	}
	return new(Verify)
})

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	mdx_hmac verify {
//		key <base64>                  # repeatable; {env.*} and {file.*} work
//		algorithm sha1|sha224|sha256|sha384|sha512
//		max_skew <duration>|off
//		max_body <size>
//		max_pending_bodies <size>     # default 64MiB
//		resource final|path [query]
//		base_path <prefix>
//		resources <name>...           # default: MDX's seven
//		routes <template>...          # instead of resources; repeatable
//		replay_window <duration>
//		replay_cache_size <n>
//		replay_loss_grace <duration>    # with store redis; default 3s
//		store memory | redis <url>      # where replay_window remembers signatures
//		on_store_error local|deny
//		redis_timeout <duration>
//		namespace <name>
//		error_format mdx|json|fdx|text|handle_errors
//	}
func (v *Verify) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if _, err := caddyfileopt.Mode(d, "mdx_hmac", "verify"); err != nil {
		return err
	}
	for d.NextBlock(0) {
		var err error
		switch d.Val() {
		case "max_skew":
			if !d.NextArg() {
				return d.ArgErr()
			}
			if d.Val() == "off" {
				v.SkewCheckOff = true
				break
			}
			dur, perr := caddy.ParseDuration(d.Val())
			switch {
			case perr != nil:
				return d.Errf("max_skew: %v", perr)
			case dur <= 0:
				return d.Err("max_skew must be positive; to drop the bound write `max_skew off`")
			}
			md := caddy.Duration(dur)
			v.MaxSkew = &md
		case "replay_window":
			v.ReplayWindow, err = caddyfileopt.PositiveDuration(d)
		case "replay_cache_size":
			v.ReplayCacheSize, err = caddyfileopt.PositiveInt(d)
		case "replay_loss_grace":
			v.ReplayLossGrace, err = caddyfileopt.PositiveDuration(d)
		case "max_pending_bodies":
			v.MaxPendingBodies, err = caddyfileopt.Size(d)
		case "resources":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			v.Resources = append(v.Resources, args...)
		case "routes":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			v.Routes = append(v.Routes, args...)
		default: // the options verify shares with sign, and the store's
			var ok bool
			if ok, err = v.Signing.unmarshalOption(d); !ok {
				if ok, err = v.Config.UnmarshalOption(d); !ok {
					return caddyfileopt.Unrecognized(d, "mdx_hmac verify")
				}
			}
		}
		if err != nil {
			return err
		}
		if err := caddyfileopt.NoMoreArgs(d); err != nil {
			return err
		}
	}
	return nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	mdx_hmac sign {
//		key <base64>
//		algorithm sha1|sha224|sha256|sha384|sha512
//		resource final|path [query]
//		base_path <prefix>
//		max_body <size>
//		max_pending_bodies <size>     # default 64MiB
//		error_format mdx|json|fdx|text|handle_errors
//		allow_callers <cidr|loopback|private_ranges>...
//	}
func (sg *Sign) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if _, err := caddyfileopt.Mode(d, "mdx_hmac", "sign"); err != nil {
		return err
	}
	for d.NextBlock(0) {
		var err error
		switch d.Val() {
		case "allow_callers":
			sg.AllowCallers, err = client.AllowCallers(d)
		case "max_pending_bodies":
			sg.MaxPendingBodies, err = caddyfileopt.Size(d)
		default: // the options sign shares with verify
			var ok bool
			if ok, err = sg.Signing.unmarshalOption(d); !ok {
				return caddyfileopt.Unrecognized(d, "mdx_hmac sign")
			}
		}
		if err != nil {
			return err
		}
		if err := caddyfileopt.NoMoreArgs(d); err != nil {
			return err
		}
	}
	return nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	mdx_sanitize {
//		action mask|block|report   # default mask
//		fields <name>...           # more account-number fields, anywhere; repeatable
//		max_field <size>           # longest text run, tag or comment; default 64KiB
//		max_body <size>            # block mode's buffer; default 10MiB
//		max_decoded <size>         # a gzip reply's decoded size; default 8 × max_body
//		allow_malformed            # let malformed replies through, logged
//		allow_types <media-type>... scan text|none   # pass replies that are not XML, read as text or unread; repeatable
//	}
func (s *Sanitize) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		var err error
		switch d.Val() {
		case "action":
			s.Action, err = caddyfileopt.OneOf(d, "mask", "block", "report")
		case "fields":
			fields := d.RemainingArgs()
			if len(fields) == 0 {
				return d.ArgErr()
			}
			s.Fields = append(s.Fields, fields...)
		case "max_field":
			var n int64
			if n, err = caddyfileopt.Size(d); err == nil && n > maxSanitizeField {
				err = d.Errf("max_field: at most %d bytes", maxSanitizeField)
			}
			s.MaxField = int(n)
		case "max_body":
			s.MaxBody, err = caddyfileopt.Size(d)
		case "max_decoded":
			s.MaxDecoded, err = caddyfileopt.Size(d)
		case "allow_malformed":
			s.AllowMalformed = true
		case "allow_types":
			args := d.RemainingArgs()
			if len(args) < 3 || args[len(args)-2] != "scan" {
				return d.Errf("allow_types: syntax is allow_types <media-type>... scan text|none")
			}
			s.AllowTypes = append(s.AllowTypes, AllowedTypes{MediaTypes: args[:len(args)-2], Scan: args[len(args)-1]})
		default:
			return caddyfileopt.Unrecognized(d, "mdx_sanitize")
		}
		if err != nil {
			return err
		}
		if err := caddyfileopt.NoMoreArgs(d); err != nil {
			return err
		}
	}
	return nil
}

// maxSanitizeField is the largest max_field the guard takes.
const maxSanitizeField = 16 << 20

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*Verify)(nil)
	_ caddyfile.Unmarshaler = (*Sign)(nil)
	_ caddyfile.Unmarshaler = (*Sanitize)(nil)
)
