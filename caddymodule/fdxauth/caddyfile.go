package fdxauth

import (
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/mxgate/mxgate/caddymodule/internal/gate"
	"github.com/mxgate/mxgate/fdx"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("fdx_auth", gate.Credential("fdx_auth", gate.UnmarshalHandler[FDXAuth]))
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	fdx_auth {
//		issuer <url>
//		audience <aud>                       # repeatable
//		jwks_url <url>
//		jwks_min_refresh <duration>          # default 30s
//		introspection <url> <client_id> <secret>
//		introspection_cache <duration>       # default 30s
//		algorithms <alg>...                  # default PS256 ES256
//		leeway <duration>                    # default 30s
//		client_cert require|optional         # default require
//		cert_bound on|off                    # default on
//		scopes {
//			<METHOD> <pattern> <scope>[|<scope>...]|authenticated
//		}
//		forward_claims {
//			<claim> <header>
//		}
//		realm <realm>
//		error_format fdx|json|mdx|text|handle_errors
//	}
func (a *FDXAuth) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		opt := d.Val()
		switch opt {
		case "issuer", "jwks_url", "realm":
			if !d.NextArg() {
				return d.ArgErr()
			}
			switch opt {
			case "issuer":
				a.Issuer = d.Val()
			case "jwks_url":
				a.JWKSURL = d.Val()
			default:
				a.Realm = d.Val()
			}
		case "audience":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			a.Audiences = append(a.Audiences, args...)
		case "introspection":
			args := d.RemainingArgs()
			if len(args) != 3 {
				return d.Err("introspection takes a URL, a client id and a secret")
			}
			if a.Introspection == nil {
				a.Introspection = &FDXIntrospection{}
			}
			a.Introspection.URL, a.Introspection.ClientID, a.Introspection.ClientSecret = args[0], args[1], args[2]
		case "introspection_cache", "jwks_min_refresh", "leeway":
			dur, err := gate.PositiveDuration(d)
			if err != nil {
				return err
			}
			switch opt {
			case "introspection_cache":
				if a.Introspection == nil {
					return d.Err("introspection_cache needs introspection first")
				}
				a.Introspection.CacheFor = dur
			case "jwks_min_refresh":
				a.JWKSMinRefresh = dur
			default:
				a.Leeway = dur
			}
		case "algorithms":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			for _, alg := range args {
				if _, err := fdx.ParseAlgorithm(alg); err != nil {
					return d.Err(err.Error())
				}
			}
			a.Algorithms = args
		case "client_cert":
			if !d.NextArg() {
				return d.ArgErr()
			}
			switch d.Val() {
			case ClientCertRequire, ClientCertOptional:
				a.ClientCert = d.Val()
			default:
				return d.Errf("client_cert must be require or optional, not '%s'", d.Val())
			}
		case "cert_bound":
			if !d.NextArg() {
				return d.ArgErr()
			}
			switch d.Val() {
			case "on", "off":
				on := d.Val() == "on"
				a.CertBound = &on
			default:
				return d.Errf("cert_bound must be on or off, not '%s'", d.Val())
			}
		case "scopes":
			for nesting := d.Nesting(); d.NextBlock(nesting); {
				method := d.Val()
				args := d.RemainingArgs()
				if len(args) != 2 {
					return d.Errf("scope row: want <METHOD> <pattern> <scopes>, got %s %s", method, strings.Join(args, " "))
				}
				if _, err := fdx.NewRule(method, args[0], args[1]); err != nil {
					return d.Err(err.Error())
				}
				a.Scopes = append(a.Scopes, FDXScope{Method: strings.ToUpper(method), Pattern: args[0], Scopes: args[1]})
			}
			continue
		case "forward_claims":
			for nesting := d.Nesting(); d.NextBlock(nesting); {
				claim := d.Val()
				if !d.NextArg() {
					return d.Errf("forward_claims: claim %s needs a header", claim)
				}
				if a.ForwardClaims == nil {
					a.ForwardClaims = map[string]string{}
				}
				a.ForwardClaims[claim] = d.Val()
				if d.NextArg() {
					return d.ArgErr()
				}
			}
			continue
		case "error_format":
			var err error
			if a.ErrorFormat, err = gate.ErrorFormat(d); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized fdx_auth option '%s'", opt)
		}
		if d.NextArg() {
			return d.Errf("%s: too many arguments", opt)
		}
	}
	return nil
}

// Interface guards
var _ caddyfile.Unmarshaler = (*FDXAuth)(nil)
