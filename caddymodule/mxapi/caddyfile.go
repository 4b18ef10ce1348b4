package mxapi

import (
	"strconv"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

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

// parseMXAuth reads `mx_auth attach {…}` into an AuthAttach and `mx_auth
// check {…}` into an AuthCheck.
var parseMXAuth = caddyfileopt.ByMode("mx_auth", []string{"attach", "check"}, func(mode string) caddyfileopt.Handler {
	if mode == "check" {
		return new(AuthCheck)
	}
	return new(AuthAttach)
})

// parseMXJWE reads `mx_jwe decrypt {…}` into a JWEDecrypt and `mx_jwe
// encrypt {…}` into a JWEEncrypt.
var parseMXJWE = caddyfileopt.ByMode("mx_jwe", []string{"decrypt", "encrypt"}, func(mode string) caddyfileopt.Handler {
	if mode == "encrypt" {
		return new(JWEEncrypt)
	}
	return new(JWEDecrypt)
})

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	mx_auth attach {
//		client_id <id>
//		api_key <key>
//		api_version v20111101|v20250224
//		allow_callers <cidr|loopback|private_ranges>...
//	}
func (a *AuthAttach) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if _, err := caddyfileopt.Mode(d, "mx_auth", "attach"); err != nil {
		return err
	}
	for d.NextBlock(0) {
		var err error
		switch d.Val() {
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
//	mx_auth check {
//		client <id> <hash|placeholder>   # repeatable
//		failure 401|404
//		realm <realm>
//		error_format json|mdx|fdx|text|handle_errors
//		keep_credentials
//		max_slow_hashes <n>              # default GOMAXPROCS
//	}
func (a *AuthCheck) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if _, err := caddyfileopt.Mode(d, "mx_auth", "check"); err != nil {
		return err
	}
	for d.NextBlock(0) {
		var err error
		switch d.Val() {
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
//	mx_jwe decrypt {
//		curve p384|p256
//		cipher a256gcm|a128gcm
//		a128_key_algorithm <ECDH-ES…>
//		rotate <duration>
//		max_body <size>
//		allow_plaintext
//	}
func (m *JWEDecrypt) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if _, err := caddyfileopt.Mode(d, "mx_jwe", "decrypt"); err != nil {
		return err
	}
	for d.NextBlock(0) {
		var err error
		switch d.Val() {
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
//	mx_jwe encrypt {
//		a128_key_algorithm <ECDH-ES…>
//		response_type <media type>
//		max_body <size>
//	}
func (m *JWEEncrypt) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if _, err := caddyfileopt.Mode(d, "mx_jwe", "encrypt"); err != nil {
		return err
	}
	for d.NextBlock(0) {
		var err error
		switch d.Val() {
		case "a128_key_algorithm":
			m.A128KeyAlgorithm, err = caddyfileopt.String(d)
		case "response_type":
			m.ResponseType, err = caddyfileopt.String(d)
		case "max_body":
			m.MaxBody, err = caddyfileopt.Size(d)
		default:
			return caddyfileopt.Unrecognized(d, "mx_jwe encrypt")
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
//	mx_retry {
//		statuses <code>...      # default 429 503
//		max_time <duration>     # default 10s
//		max_attempts <n>        # default 5
//		base_delay <duration>   # default 100ms
//		max_delay <duration>    # default 2s
//		max_body <size>         # default 1MiB
//	}
func (rt *Retry) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		var err error
		switch d.Val() {
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
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		var err error
		switch d.Val() {
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
	_ caddyfile.Unmarshaler = (*AuthAttach)(nil)
	_ caddyfile.Unmarshaler = (*AuthCheck)(nil)
	_ caddyfile.Unmarshaler = (*JWEDecrypt)(nil)
	_ caddyfile.Unmarshaler = (*JWEEncrypt)(nil)
	_ caddyfile.Unmarshaler = (*Retry)(nil)
	_ caddyfile.Unmarshaler = (*MXConnectToken)(nil)
)
