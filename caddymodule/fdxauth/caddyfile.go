package fdxauth

import (
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddytls"

	"github.com/mxgate/mxgate/caddymodule/internal/caddyfileopt"
	"github.com/mxgate/mxgate/caddymodule/internal/secret"
	"github.com/mxgate/mxgate/fdx"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("fdx_auth", secret.Holder("fdx_auth", caddyfileopt.UnmarshalHandler[FDXAuth]))
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	fdx_auth {
//		issuer <url>                         # alone, the endpoints are discovered from it
//		audience <aud>                       # repeatable
//		jwks_url <url>                       # default: the issuer's metadata's jwks_uri
//		jwks_min_refresh <duration>          # default 1s
//		jwks_max_age <duration>              # default 5m
//		introspection <url>|discover <client_id> [<secret>]
//		introspection_auth basic|tls_client_auth|private_key_jwt [<key_file> [<kid>]]
//		introspection_cache <duration>       # default 30s
//		introspection_require_aud on|off     # default on
//		tls_trust_pool <source> [...]        # default: the system's roots
//		tls_client_auth <cert_file> <key_file>
//		algorithms <alg>...                  # default PS256 ES256
//		leeway <duration>                    # default 30s
//		client_cert require|optional         # default require
//		cert_bound on|off                    # default on
//		dpop off|allowed|required            # default off
//		dpop_algorithms <alg>...             # default ES256 PS256
//		dpop_max_age <duration>              # default 60s
//		dpop_nonce on|off                    # default off
//		dpop_nonce_key <base64 key>          # default: a key of this process
//		dpop_origin <scheme://host[:port]>   # default: the request's
//		dpop_jti_cache_size <n>              # default 1000000
//		store memory|redis <url>             # the jti cache's; with on_store_error, redis_timeout, redis_tls, redis_wait_replicas, namespace
//		account_claim <claim>|authorization_details <type> <member>
//		consent_claim <claim>|authorization_details <type> <member>
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
		var err error
		switch opt {
		case "issuer":
			a.Issuer, err = caddyfileopt.String(d)
		case "jwks_url":
			a.JWKSURL, err = caddyfileopt.String(d)
		case "realm":
			a.Realm, err = caddyfileopt.String(d)
		case "audience":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			a.Audiences = append(a.Audiences, args...)
		case "introspection":
			args := d.RemainingArgs()
			if len(args) != 2 && len(args) != 3 {
				return d.Err("introspection takes a URL (or discover), a client id and, for basic authentication, a secret")
			}
			if a.Introspection == nil {
				a.Introspection = &FDXIntrospection{}
			}
			if args[0] != "discover" {
				a.Introspection.URL = args[0]
			}
			a.Introspection.ClientID = args[1]
			if len(args) == 3 {
				a.Introspection.ClientSecret = args[2]
			}
		case "introspection_auth":
			if a.Introspection == nil {
				return d.Err("introspection_auth needs introspection first")
			}
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			switch args[0] {
			case AuthBasic, AuthTLSClientAuth:
				if len(args) != 1 {
					return d.Errf("introspection_auth %s takes no file", args[0])
				}
			case AuthPrivateKeyJWT:
				if len(args) != 2 && len(args) != 3 {
					return d.Err("introspection_auth private_key_jwt takes a key file and, optionally, the kid to name")
				}
				a.Introspection.KeyFile = args[1]
				if len(args) == 3 {
					a.Introspection.KeyID = args[2]
				}
			default:
				return d.Errf("introspection_auth must be basic, tls_client_auth or private_key_jwt, not '%s'", args[0])
			}
			a.Introspection.Auth = args[0]
		case "introspection_require_aud":
			if a.Introspection == nil {
				return d.Err("introspection_require_aud needs introspection first")
			}
			var on bool
			on, err = onOff(d)
			a.Introspection.RequireAudience = &on
		case "tls_trust_pool":
			if !d.NextArg() {
				return d.ArgErr()
			}
			if a.TLSTrustPoolRaw != nil {
				return d.Err("tls_trust_pool given twice")
			}
			modStem := d.Val()
			modID := "tls.ca_pool.source." + modStem
			unm, err := caddyfile.UnmarshalModule(d, modID)
			if err != nil {
				return err
			}
			ca, ok := unm.(caddytls.CA)
			if !ok {
				return d.Errf("module %s is not a CA pool source", modID)
			}
			a.TLSTrustPoolRaw = caddyconfig.JSONModuleObject(ca, "provider", modStem, nil)
		case "tls_client_auth":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return d.Err("tls_client_auth takes a certificate file and a key file")
			}
			a.TLSClientAuth = &FDXClientCertificate{CertFile: args[0], KeyFile: args[1]}
		case "introspection_cache":
			if a.Introspection == nil {
				return d.Err("introspection_cache needs introspection first")
			}
			a.Introspection.CacheFor, err = caddyfileopt.PositiveDuration(d)
		case "jwks_min_refresh":
			a.JWKSMinRefresh, err = caddyfileopt.PositiveDuration(d)
		case "jwks_max_age":
			a.JWKSMaxAge, err = caddyfileopt.PositiveDuration(d)
		case "leeway":
			a.Leeway, err = caddyfileopt.PositiveDuration(d)
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
			a.ClientCert, err = caddyfileopt.OneOf(d, ClientCertRequire, ClientCertOptional)
		case "cert_bound":
			var on bool
			on, err = onOff(d)
			a.CertBound = &on
		case "dpop":
			a.DPoP, err = caddyfileopt.OneOf(d, DPoPOff, DPoPAllowed, DPoPRequired)
		case "dpop_algorithms":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			for _, alg := range args {
				if _, err := fdx.ParseAlgorithm(alg); err != nil {
					return d.Err(err.Error())
				}
			}
			a.DPoPAlgorithms = args
		case "dpop_max_age":
			a.DPoPMaxAge, err = caddyfileopt.PositiveDuration(d)
		case "dpop_nonce":
			a.DPoPNonce, err = onOff(d)
		case "dpop_nonce_key":
			a.DPoPNonceKey, err = caddyfileopt.String(d)
		case "dpop_origin":
			a.DPoPOrigin, err = caddyfileopt.String(d)
		case "dpop_jti_cache_size":
			a.DPoPJTICacheSize, err = caddyfileopt.PositiveInt(d)
		case "account_claim", "consent_claim":
			args := d.RemainingArgs()
			var c FDXGrantClaim
			switch {
			case len(args) == 1 && args[0] != fdx.AuthorizationDetails:
				c.Claim = args[0]
			case len(args) == 3 && args[0] == fdx.AuthorizationDetails:
				c = FDXGrantClaim{Claim: args[0], Type: args[1], Member: args[2]}
			default:
				return d.Errf("%s takes a claim, or authorization_details <type> <member>", opt)
			}
			if opt == "account_claim" {
				a.AccountClaim = &c
			} else {
				a.ConsentClaim = &c
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
		case "error_format":
			a.ErrorFormat, err = caddyfileopt.ErrorFormat(d)
		default: // the jti cache's store options
			var ok bool
			if ok, err = a.Config.UnmarshalOption(d); !ok {
				return caddyfileopt.Unrecognized(d, "fdx_auth")
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

// onOff reads an option's on|off argument.
func onOff(d *caddyfile.Dispenser) (bool, error) {
	opt := d.Val()
	if !d.NextArg() {
		return false, d.ArgErr()
	}
	switch d.Val() {
	case "on", "off":
		return d.Val() == "on", nil
	}
	return false, d.Errf("%s must be on or off, not '%s'", opt, d.Val())
}

// Interface guards
var _ caddyfile.Unmarshaler = (*FDXAuth)(nil)
