package shed

import (
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/mxgate/mxgate/caddymodule/internal/caddyfileopt"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("mx_shed", caddyfileopt.UnmarshalHandler[Shed])
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	mx_shed [<max_in_flight>] {
//		max_in_flight <n>        # required, here or as the argument
//		retry_after <duration>   # default 1s
//		error_format mdx|json|fdx|text|handle_errors
//	}
func (s *Shed) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	var err error
	if d.CountRemainingArgs() > 0 {
		if s.MaxInFlight, err = caddyfileopt.PositiveInt(d); err != nil {
			return err
		}
		if err := caddyfileopt.NoMoreArgs(d); err != nil {
			return err
		}
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "max_in_flight":
			s.MaxInFlight, err = caddyfileopt.PositiveInt(d)
		case "retry_after":
			s.RetryAfter, err = caddyfileopt.PositiveDuration(d)
		case "error_format":
			s.ErrorFormat, err = caddyfileopt.ErrorFormat(d)
		default:
			return caddyfileopt.Unrecognized(d, "mx_shed")
		}
		if err != nil {
			return err
		}
		if err := caddyfileopt.NoMoreArgs(d); err != nil {
			return err
		}
	}
	if s.MaxInFlight == 0 {
		return d.Err("mx_shed needs max_in_flight: how many requests the handlers after it may hold at once")
	}
	return nil
}

// UnmarshalCaddyfile sets up the listener wrapper from Caddyfile tokens,
// in a server's listener_wrappers. Syntax:
//
//	mx_conn_limit [<max>] {
//		max <n>            # default 4096
//		max_shedding <n>   # default 1024
//		answer 503|close   # default 503; close on a TLS site
//		acceptors <n>      # accepting goroutines; default 4
//	}
func (cl *ConnLimit) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // wrapper name
	var err error
	if d.CountRemainingArgs() > 0 {
		if cl.Max, err = caddyfileopt.PositiveInt(d); err != nil {
			return err
		}
		if err := caddyfileopt.NoMoreArgs(d); err != nil {
			return err
		}
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "max":
			cl.Max, err = caddyfileopt.PositiveInt(d)
		case "max_shedding":
			cl.MaxShedding, err = caddyfileopt.PositiveInt(d)
		case "answer":
			cl.Answer, err = caddyfileopt.OneOf(d, "503", "close")
		case "acceptors":
			cl.Acceptors, err = caddyfileopt.PositiveInt(d)
		default:
			return caddyfileopt.Unrecognized(d, "mx_conn_limit listener wrapper")
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

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*Shed)(nil)
	_ caddyfile.Unmarshaler = (*ConnLimit)(nil)
)
