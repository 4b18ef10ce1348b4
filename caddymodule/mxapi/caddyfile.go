package mxapi

import (
	"strconv"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/mxgate/mxgate/caddymodule/internal/caddyfileopt"
	"github.com/mxgate/mxgate/caddymodule/internal/client"
	"github.com/mxgate/mxgate/caddymodule/internal/secret"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("mx_auth", secret.Holder("mx_auth", parseMXAuth))
	httpcaddyfile.RegisterHandlerDirective("mx_jwe", parseMXJWE)
	httpcaddyfile.RegisterHandlerDirective("mx_retry", caddyfileopt.UnmarshalHandler[Retry])
	httpcaddyfile.RegisterHandlerDirective("mxconnect_token", secret.Holder("mxconnect_token", caddyfileopt.UnmarshalHandler[MXConnectToken]))
}

// dualMode reads the mode of a directive with two, and has the handler of
// that mode unmarshal the directive.
func dualMode(h httpcaddyfile.Helper, dir string, modes [2]string, handlers [2]interface {
	caddyhttp.MiddlewareHandler
	caddyfile.Unmarshaler
}) (caddyhttp.MiddlewareHandler, error) {
	seg := caddyfileopt.Segment(h)
	d := caddyfile.NewDispenser(seg)
	d.Next()
	mode, err := caddyfileopt.Mode(d, dir, modes[0], modes[1])
	if err != nil {
		return nil, err
	}
	handler := handlers[0]
	if mode == modes[1] {
		handler = handlers[1]
	}
	return handler, handler.UnmarshalCaddyfile(caddyfile.NewDispenser(seg))
}

func parseMXAuth(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	return dualMode(h, "mx_auth", [2]string{"attach", "check"}, [2]interface {
		caddyhttp.MiddlewareHandler
		caddyfile.Unmarshaler
	}{new(AuthAttach), new(AuthCheck)})
}

func parseMXJWE(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	return dualMode(h, "mx_jwe", [2]string{"decrypt", "encrypt"}, [2]interface {
		caddyhttp.MiddlewareHandler
		caddyfile.Unmarshaler
	}{new(JWEDecrypt), new(JWEEncrypt)})
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	mx_auth attach {
//		client_id <id>
//		api_key <key>
//		api_version v20111101|v20250224
//		allow_callers <cidr|loopback|private_ranges>...
//	}
func (a *AuthAttach) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return caddyfileopt.Block(d, "mx_auth", "attach", func(opt string) (err error) {
		switch opt {
		case "client_id":
			a.ClientID, err = caddyfileopt.String(d)
		case "api_key":
			a.APIKey, err = caddyfileopt.String(d)
		case "api_version":
			a.APIVersion, err = caddyfileopt.OneOf(d, APIVersion20111101, APIVersion20250224)
		case "allow_callers":
			a.AllowCallers, err = client.AllowCallers(d)
		default:
			return caddyfileopt.Unrecognized(d, "mx_auth attach")
		}
		return err
	})
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	mx_auth check {
//		client <id> <hash|placeholder>   # repeatable
//		failure 401|404
//		realm <realm>
//		error_format json|mdx|fdx|text|handle_errors
//		keep_credentials
//		max_slow_hashes <n>              # default GOMAXPROCS
//	}
func (a *AuthCheck) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return caddyfileopt.Block(d, "mx_auth", "check", func(opt string) (err error) {
		switch opt {
		case "client":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return d.Err("client takes an id and a hash or placeholder")
			}
			a.Clients = append(a.Clients, AuthClient{ID: args[0], Secret: args[1]})
		case "failure":
			var s string
			if s, err = caddyfileopt.OneOf(d, "401", "404"); err == nil {
				a.Failure, _ = strconv.Atoi(s)
			}
		case "realm":
			a.Realm, err = caddyfileopt.String(d)
		case "error_format":
			a.ErrorFormat, err = caddyfileopt.ErrorFormat(d)
		case "keep_credentials":
			a.KeepCredentials = true
		case "max_slow_hashes":
			a.MaxSlowHashes, err = caddyfileopt.PositiveInt(d)
		default:
			return caddyfileopt.Unrecognized(d, "mx_auth check")
		}
		return err
	})
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	mx_jwe decrypt {
//		curve p384|p256
//		cipher a256gcm|a128gcm
//		a128_key_algorithm <ECDH-ES…>
//		rotate <duration>
//		max_body <size>
//		allow_plaintext
//	}
func (m *JWEDecrypt) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return caddyfileopt.Block(d, "mx_jwe", "decrypt", func(opt string) (err error) {
		switch opt {
		case "curve":
			m.Curve, err = caddyfileopt.OneOf(d, "p384", "p256")
		case "cipher":
			m.Cipher, err = caddyfileopt.OneOf(d, "a256gcm", "a128gcm")
		case "a128_key_algorithm":
			m.A128KeyAlgorithm, err = caddyfileopt.String(d)
		case "rotate":
			m.Rotate, err = caddyfileopt.PositiveDuration(d)
		case "max_body":
			m.MaxBody, err = caddyfileopt.Size(d)
		case "allow_plaintext":
			m.AllowPlaintext = true
		default:
			return caddyfileopt.Unrecognized(d, "mx_jwe decrypt")
		}
		return err
	})
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	mx_jwe encrypt {
//		a128_key_algorithm <ECDH-ES…>
//		response_type <media type>
//		max_body <size>
//	}
func (m *JWEEncrypt) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return caddyfileopt.Block(d, "mx_jwe", "encrypt", func(opt string) (err error) {
		switch opt {
		case "a128_key_algorithm":
			m.A128KeyAlgorithm, err = caddyfileopt.String(d)
		case "response_type":
			m.ResponseType, err = caddyfileopt.String(d)
		case "max_body":
			m.MaxBody, err = caddyfileopt.Size(d)
		default:
			return caddyfileopt.Unrecognized(d, "mx_jwe encrypt")
		}
		return err
	})
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	mx_retry {
//		statuses <code>...      # default 429 503
//		max_time <duration>     # default 10s
//		max_attempts <n>        # default 5
//		base_delay <duration>   # default 100ms
//		max_delay <duration>    # default 2s
//		max_body <size>         # default 1MiB
//	}
func (rt *Retry) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return caddyfileopt.Block(d, "mx_retry", "", func(opt string) (err error) {
		switch opt {
		case "statuses":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			for _, a := range args {
				n, err := strconv.Atoi(a)
				if err != nil || n < 400 || n > 599 {
					return d.Errf("statuses: '%s' is not an error status", a)
				}
				rt.Statuses = append(rt.Statuses, n)
			}
		case "max_time":
			rt.MaxTime, err = caddyfileopt.PositiveDuration(d)
		case "base_delay":
			rt.BaseDelay, err = caddyfileopt.PositiveDuration(d)
		case "max_delay":
			rt.MaxDelay, err = caddyfileopt.PositiveDuration(d)
		case "max_attempts":
			rt.MaxAttempts, err = caddyfileopt.PositiveInt(d)
		case "max_body":
			rt.MaxBody, err = caddyfileopt.Size(d)
		default:
			return caddyfileopt.Unrecognized(d, "mx_retry")
		}
		return err
	})
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	mxconnect_token {
//		endpoint <url>
//		username <u>
//		password <p>
//		api_key <key>
//		refresh_before <duration>
//		min_refresh <duration>
//		timeout <duration>
//		max_body <size>
//		error_format json|mdx|fdx|text|handle_errors
//		allow_callers <cidr|loopback|private_ranges>...
//	}
func (m *MXConnectToken) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return caddyfileopt.Block(d, "mxconnect_token", "", func(opt string) (err error) {
		switch opt {
		case "endpoint":
			m.Endpoint, err = caddyfileopt.String(d)
		case "username":
			m.Username, err = caddyfileopt.String(d)
		case "password":
			m.Password, err = caddyfileopt.String(d)
		case "api_key":
			m.APIKey, err = caddyfileopt.String(d)
		case "refresh_before":
			m.RefreshBefore, err = caddyfileopt.PositiveDuration(d)
		case "min_refresh":
			m.MinRefresh, err = caddyfileopt.PositiveDuration(d)
		case "timeout":
			m.Timeout, err = caddyfileopt.PositiveDuration(d)
		case "max_body":
			m.MaxBody, err = caddyfileopt.Size(d)
		case "error_format":
			m.ErrorFormat, err = caddyfileopt.ErrorFormat(d)
		case "allow_callers":
			m.AllowCallers, err = client.AllowCallers(d)
		default:
			return caddyfileopt.Unrecognized(d, "mxconnect_token")
		}
		return err
	})
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*AuthAttach)(nil)
	_ caddyfile.Unmarshaler = (*AuthCheck)(nil)
	_ caddyfile.Unmarshaler = (*JWEDecrypt)(nil)
	_ caddyfile.Unmarshaler = (*JWEEncrypt)(nil)
	_ caddyfile.Unmarshaler = (*Retry)(nil)
	_ caddyfile.Unmarshaler = (*MXConnectToken)(nil)
)
