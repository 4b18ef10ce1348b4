package caddymodule

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"

	"github.com/mxgate/mxgate/fdx"
	"github.com/mxgate/mxgate/ratelimit"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("mx_ip_allow", unmarshalHandler[IPAllow])
	httpcaddyfile.RegisterHandlerDirective("mdx_hmac", parseMDXHMAC)
	httpcaddyfile.RegisterHandlerDirective("mx_rate_limit", parseRateLimit)
	httpcaddyfile.RegisterHandlerDirective("mx_auth", unmarshalHandler[MXAuth])
	httpcaddyfile.RegisterHandlerDirective("mx_jwe", unmarshalHandler[MXJWE])
	httpcaddyfile.RegisterHandlerDirective("mx_retry", unmarshalHandler[Retry])
	httpcaddyfile.RegisterHandlerDirective("mxconnect_token", unmarshalHandler[MXConnectToken])
	httpcaddyfile.RegisterHandlerDirective("mdx_sanitize", unmarshalHandler[Sanitize])
	httpcaddyfile.RegisterHandlerDirective("fdx_auth", unmarshalHandler[FDXAuth])

	// Each lands just before redir, after the ones before it, so the chain
	// runs in this order: the IP check first, so a stranger gets nothing
	// but 403; the signature; credentials (whose client id a rate-limit key
	// may use); retries, so that every attempt draws a token; the rate
	// limit; and encryption right next to the proxy. All come after
	// `header`, so a site's security headers reach refusals too.
	for _, dir := range []string{"mx_ip_allow", "mdx_hmac", "fdx_auth", "mx_auth", "mxconnect_token", "mx_retry", "mx_rate_limit", "mx_jwe", "mdx_sanitize"} {
		httpcaddyfile.RegisterDirectiveOrder(dir, httpcaddyfile.Before, "redir")
	}
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	mx_ip_allow [<preset|cidr>...] {
//		ranges <preset|cidr>...
//		error_format mdx|json|text|handle_errors
//	}
//
// Presets are mx (all MX data centres) and mdx (MDX On Demand callers).
// With no ranges at all, the list is the mx preset.
func (a *IPAllow) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	a.Ranges = append(a.Ranges, d.RemainingArgs()...)
	for d.NextBlock(0) {
		switch d.Val() {
		case "ranges":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			a.Ranges = append(a.Ranges, args...)
		case "error_format":
			if err := parseErrorFormat(d, &a.ErrorFormat); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized mx_ip_allow option '%s'", d.Val())
		}
	}
	return nil
}

func parseMDXHMAC(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(MDXHMAC)
	seg := segment(h)
	if err := m.UnmarshalCaddyfile(caddyfile.NewDispenser(seg)); err != nil {
		return nil, err
	}
	if m.Store == "redis" && m.Namespace == "" {
		m.Namespace = autoNamespace(h, "mdx_hmac", seg)
	}
	return m, nil
}

// unmarshalHandler is the parse function of a directive whose handler
// needs nothing beyond its own UnmarshalCaddyfile.
func unmarshalHandler[T any, PT interface {
	*T
	caddyhttp.MiddlewareHandler
	caddyfile.Unmarshaler
}](h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var v PT = new(T)
	err := v.UnmarshalCaddyfile(h.Dispenser)
	return v, err
}

// segment returns the directive's tokens, its name first.
func segment(h httpcaddyfile.Helper) caddyfile.Segment {
	h.Next()
	return h.NextSegment()
}

// autoNamespace names a directive's shared state in Redis: a hash of its
// tokens and its ordinal among directives with the same tokens in this
// Caddyfile. Replicas that load the same Caddyfile agree on it; two
// directives never share it by accident.
func autoNamespace(h httpcaddyfile.Helper, dir string, seg caddyfile.Segment) string {
	texts := make([]string, len(seg))
	for i, t := range seg {
		texts[i] = t.Text
	}
	base := namespaceFor(texts, 0)
	counts, _ := h.State["mxgate_namespaces"].(map[string]int)
	if counts == nil {
		counts = map[string]int{}
		h.State["mxgate_namespaces"] = counts
	}
	counts[base]++
	return namespaceFor(texts, counts[base])
}

func parseRateLimit(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	rl := new(RateLimit)
	seg := segment(h)
	if err := rl.UnmarshalCaddyfile(caddyfile.NewDispenser(seg)); err != nil {
		return nil, err
	}
	if rl.Store == "redis" && rl.Namespace == "" {
		rl.Namespace = autoNamespace(h, "mx_rate_limit", seg)
	}
	return rl, nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	mx_rate_limit {
//		get <n>/s|/m|/h [burst <b>] | unlimited     # default 2000/s
//		write <n>/s [burst <b>] | unlimited         # default 750/s
//		delete <n>/s [burst <b>] | unlimited        # default 150/s
//		other <n>/s [burst <b>] | unlimited         # default unlimited
//		key <placeholder>
//		mode reject|wait
//		max_wait <duration>
//		store memory | redis <url>
//		on_store_error local|deny
//		redis_timeout <duration>
//		namespace <name>
//		max_keys <n>
//		error_format mdx|json|text|handle_errors
//	}
func (rl *RateLimit) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		opt := d.Val()
		switch opt {
		case "get", "write", "delete", "other":
			cl, err := parseClassLimit(d)
			if err != nil {
				return err
			}
			if rl.Limits == nil {
				rl.Limits = map[string]*ClassLimit{}
			}
			if _, dup := rl.Limits[opt]; dup {
				return d.Errf("%s given twice", opt)
			}
			rl.Limits[opt] = cl
		case "key", "namespace":
			if !d.NextArg() {
				return d.ArgErr()
			}
			if opt == "key" {
				rl.Key = d.Val()
			} else {
				rl.Namespace = d.Val()
			}
		case "mode":
			if !d.NextArg() {
				return d.ArgErr()
			}
			if d.Val() != "reject" && d.Val() != "wait" {
				return d.Errf("mode must be reject or wait, not '%s'", d.Val())
			}
			rl.Mode = d.Val()
		case "max_wait", "redis_timeout":
			dur, err := parsePositiveDuration(d)
			if err != nil {
				return err
			}
			if opt == "max_wait" {
				rl.MaxWait = dur
			} else {
				rl.RedisTimeout = dur
			}
		case "store":
			store, url, err := parseStore(d.RemainingArgs())
			if err != nil {
				return d.Err(err.Error())
			}
			rl.Store, rl.RedisURL = store, url
		case "on_store_error":
			if !d.NextArg() {
				return d.ArgErr()
			}
			if err := checkOnStoreError(d.Val()); err != nil {
				return d.Err(err.Error())
			}
			rl.OnStoreError = d.Val()
		case "max_keys":
			if !d.NextArg() {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(d.Val())
			if err != nil || n <= 0 {
				return d.Errf("max_keys: invalid number '%s'", d.Val())
			}
			rl.MaxKeys = n
		case "error_format":
			if err := parseErrorFormat(d, &rl.ErrorFormat); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized mx_rate_limit option '%s'", opt)
		}
		if d.NextArg() {
			return d.Errf("%s: too many arguments", opt)
		}
	}
	if rl.MaxWait != 0 && rl.Mode != "wait" {
		return d.Err("max_wait applies only with `mode wait`")
	}
	if rl.OnStoreError != "" && rl.Store != "redis" {
		return d.Err("on_store_error applies only with `store redis <url>`")
	}
	return nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	mx_auth attach {
//		client_id <id>
//		api_key <key>
//		api_version v20111101|v20250224
//	}
//	mx_auth check {
//		client <id> <hash|placeholder>   # repeatable
//		failure 401|404
//		realm <realm>
//		error_format json|mdx|text|handle_errors
//	}
func (a *MXAuth) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	var err error
	if a.Mode, err = parseMode(d, "mx_auth", "attach", "check"); err != nil {
		return err
	}
	for d.NextBlock(0) {
		opt := d.Val()
		switch {
		case a.Mode == "attach" && (opt == "client_id" || opt == "api_key" || opt == "api_version"):
			if !d.NextArg() {
				return d.ArgErr()
			}
			switch opt {
			case "client_id":
				a.ClientID = d.Val()
			case "api_key":
				a.APIKey = d.Val()
			default:
				if d.Val() != APIVersion20111101 && d.Val() != APIVersion20250224 {
					return d.Errf("api_version must be %s or %s, not '%s'", APIVersion20111101, APIVersion20250224, d.Val())
				}
				a.APIVersion = d.Val()
			}
		case a.Mode == "check" && opt == "client":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return d.Err("client takes an id and a hash or placeholder")
			}
			a.Clients = append(a.Clients, AuthClient{ID: args[0], Secret: args[1]})
		case a.Mode == "check" && opt == "failure":
			if !d.NextArg() {
				return d.ArgErr()
			}
			switch d.Val() {
			case "401":
				a.Failure = http.StatusUnauthorized
			case "404":
				a.Failure = http.StatusNotFound
			default:
				return d.Errf("failure must be 401 or 404, not '%s'", d.Val())
			}
		case a.Mode == "check" && opt == "realm":
			if !d.NextArg() {
				return d.ArgErr()
			}
			a.Realm = d.Val()
		case a.Mode == "check" && opt == "error_format":
			if err := parseErrorFormat(d, &a.ErrorFormat); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized mx_auth %s option '%s'", a.Mode, opt)
		}
		if d.NextArg() {
			return d.Errf("%s: too many arguments", opt)
		}
	}
	if a.Mode == "attach" && (a.ClientID == "" || a.APIKey == "") {
		return d.Err("mx_auth attach needs client_id and api_key")
	}
	if a.Mode == "check" && len(a.Clients) == 0 {
		return d.Err("mx_auth check needs at least one client")
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
//	}
//	mx_jwe encrypt {
//		a128_key_algorithm <ECDH-ES…>
//		response_type <media type>
//		max_body <size>
//	}
func (m *MXJWE) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	var err error
	if m.Mode, err = parseMode(d, "mx_jwe", "decrypt", "encrypt"); err != nil {
		return err
	}
	for d.NextBlock(0) {
		opt := d.Val()
		if !d.NextArg() {
			return d.ArgErr()
		}
		val := d.Val()
		switch {
		case m.Mode == "decrypt" && opt == "curve":
			if val != "p384" && val != "p256" {
				return d.Errf("curve must be p384 or p256, not '%s'", val)
			}
			m.Curve = val
		case m.Mode == "decrypt" && opt == "cipher":
			if val != "a256gcm" && val != "a128gcm" {
				return d.Errf("cipher must be a256gcm or a128gcm, not '%s'", val)
			}
			m.Cipher = val
		case m.Mode == "decrypt" && opt == "rotate":
			dur, err := caddy.ParseDuration(val)
			if err != nil || dur < time.Second {
				return d.Errf("rotate: invalid duration '%s' (at least 1s)", val)
			}
			m.Rotate = caddy.Duration(dur)
		case opt == "a128_key_algorithm":
			m.A128KeyAlgorithm = val
		case m.Mode == "encrypt" && opt == "response_type":
			m.ResponseType = val
		case opt == "max_body":
			if m.MaxBody, err = sizeValue(d, opt, val); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized mx_jwe %s option '%s'", m.Mode, opt)
		}
		if d.NextArg() {
			return d.Errf("%s: too many arguments", opt)
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
		opt := d.Val()
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
		case "max_time", "base_delay", "max_delay":
			dur, err := parsePositiveDuration(d)
			if err != nil {
				return err
			}
			switch opt {
			case "max_time":
				rt.MaxTime = dur
			case "base_delay":
				rt.BaseDelay = dur
			default:
				rt.MaxDelay = dur
			}
		case "max_attempts":
			if !d.NextArg() {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(d.Val())
			if err != nil || n < 1 {
				return d.Errf("max_attempts: invalid number '%s'", d.Val())
			}
			rt.MaxAttempts = n
		case "max_body":
			n, err := parseSize(d)
			if err != nil {
				return err
			}
			rt.MaxBody = n
		default:
			return d.Errf("unrecognized mx_retry option '%s'", opt)
		}
		if d.NextArg() {
			return d.Errf("%s: too many arguments", opt)
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
//		timeout <duration>
//		max_body <size>
//	}
func (m *MXConnectToken) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		opt := d.Val()
		switch opt {
		case "endpoint", "username", "password", "api_key":
			if !d.NextArg() {
				return d.ArgErr()
			}
			switch opt {
			case "endpoint":
				m.Endpoint = d.Val()
			case "username":
				m.Username = d.Val()
			case "password":
				m.Password = d.Val()
			default:
				m.APIKey = d.Val()
			}
		case "refresh_before", "timeout":
			dur, err := parsePositiveDuration(d)
			if err != nil {
				return err
			}
			if opt == "timeout" {
				m.Timeout = dur
			} else {
				m.RefreshBefore = dur
			}
		case "max_body":
			n, err := parseSize(d)
			if err != nil {
				return err
			}
			m.MaxBody = n
		default:
			return d.Errf("unrecognized mxconnect_token option '%s'", opt)
		}
		if d.NextArg() {
			return d.Errf("%s: too many arguments", opt)
		}
	}
	if m.Username == "" || m.Password == "" || m.APIKey == "" {
		return d.Err("mxconnect_token needs username, password and api_key")
	}
	return nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	mdx_sanitize {
//		action mask|block|report   # default mask
//		fields <name>...           # default id name
//		max_body <size>            # block mode's buffer; default 10MiB
//	}
func (s *Sanitize) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		opt := d.Val()
		switch opt {
		case "action":
			if !d.NextArg() {
				return d.ArgErr()
			}
			if v := d.Val(); v != "mask" && v != "block" && v != "report" {
				return d.Errf("action must be mask, block or report, not '%s'", v)
			}
			s.Action = d.Val()
		case "fields":
			s.Fields = d.RemainingArgs()
			if len(s.Fields) == 0 {
				return d.ArgErr()
			}
		case "max_body":
			n, err := parseSize(d)
			if err != nil {
				return err
			}
			s.MaxBody = n
		default:
			return d.Errf("unrecognized mdx_sanitize option '%s'", opt)
		}
		if d.NextArg() {
			return d.Errf("%s: too many arguments", opt)
		}
	}
	return nil
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
//		cert_bound on|off                    # default on
//		scopes {
//			<METHOD> <pattern> <scope>[|<scope>...]|authenticated
//		}
//		forward_claims {
//			<claim> <header>
//		}
//		realm <realm>
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
			dur, err := parsePositiveDuration(d)
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
		default:
			return d.Errf("unrecognized fdx_auth option '%s'", opt)
		}
		if d.NextArg() {
			return d.Errf("%s: too many arguments", opt)
		}
	}
	if a.Issuer == "" || len(a.Audiences) == 0 {
		return d.Err("fdx_auth needs an issuer and an audience")
	}
	if a.JWKSURL == "" && a.Introspection == nil {
		return d.Err("fdx_auth needs jwks_url or introspection")
	}
	return nil
}

// parseClassLimit reads `<n>/s [burst <b>]` or `unlimited`.
func parseClassLimit(d *caddyfile.Dispenser) (*ClassLimit, error) {
	class := d.Val()
	if !d.NextArg() {
		return nil, d.Errf("%s needs a rate such as 100/s, or unlimited", class)
	}
	if d.Val() == "unlimited" {
		return &ClassLimit{Unlimited: true}, nil
	}
	r, err := ratelimit.ParseRate(d.Val())
	if err != nil {
		return nil, d.Errf("%s: %v", class, err)
	}
	cl := &ClassLimit{Rate: r}
	if d.NextArg() {
		if d.Val() != "burst" || !d.NextArg() {
			return nil, d.Errf("%s: after the rate, only `burst <n>`", class)
		}
		b, err := strconv.Atoi(d.Val())
		if err != nil || b < 1 {
			return nil, d.Errf("%s: burst must be a whole number of at least 1, not '%s'", class, d.Val())
		}
		cl.Burst = b
	}
	return cl, nil
}

func parsePositiveDuration(d *caddyfile.Dispenser) (caddy.Duration, error) {
	opt := d.Val()
	if !d.NextArg() {
		return 0, d.ArgErr()
	}
	dur, err := caddy.ParseDuration(d.Val())
	if err != nil || dur <= 0 {
		return 0, d.Errf("%s: invalid duration '%s' (must be positive)", opt, d.Val())
	}
	return caddy.Duration(dur), nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	mdx_hmac verify {
//		key <base64>                  # repeatable; {env.*} and {file.*} work
//		algorithm sha1|sha224|sha256|sha384|sha512
//		max_skew <duration>|off
//		max_body <size>
//		resource final|path [query]
//		base_path <prefix>
//		replay_window <duration>
//		replay_cache_size <n>
//		store memory | redis <url>      # where replay_window remembers signatures
//		on_store_error local|deny
//		redis_timeout <duration>
//		namespace <name>
//		error_format mdx|json|text|handle_errors
//	}
//
//	mdx_hmac sign {
//		key <base64>
//		algorithm sha1|sha224|sha256|sha384|sha512
//		resource final|path [query]
//		base_path <prefix>
//		max_body <size>
//		error_format mdx|json|text|handle_errors
//	}
func (m *MDXHMAC) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	var err error
	if m.Mode, err = parseMode(d, "mdx_hmac", "verify", "sign"); err != nil {
		return err
	}
	for d.NextBlock(0) {
		opt := d.Val()
		switch opt {
		case "key":
			args := d.RemainingArgs()
			if len(args) != 1 {
				return d.Err("key takes exactly one base64 key (repeat the option for several)")
			}
			m.Keys = append(m.Keys, args[0])
		case "algorithm":
			if !d.NextArg() {
				return d.ArgErr()
			}
			m.Algorithm = d.Val()
			switch m.Algorithm {
			case "sha1", "sha224", "sha256", "sha384", "sha512":
			default:
				return d.Errf("unknown algorithm '%s' (want sha1, sha224, sha256, sha384 or sha512)", m.Algorithm)
			}
		case "max_skew":
			if !d.NextArg() {
				return d.ArgErr()
			}
			if d.Val() == "off" {
				m.SkewCheckOff = true
				break
			}
			dur, err := caddy.ParseDuration(d.Val())
			if err != nil {
				return d.Errf("max_skew: %v", err)
			}
			if dur <= 0 {
				return d.Err("max_skew must be positive; to drop the bound write `max_skew off`")
			}
			md := caddy.Duration(dur)
			m.MaxSkew = &md
		case "max_body":
			if m.MaxBody, err = parseSize(d); err != nil {
				return err
			}
		case "resource":
			args := d.RemainingArgs()
			switch {
			case len(args) == 1 && (args[0] == "final" || args[0] == "path"):
				m.Resource = args[0]
			case len(args) == 2 && args[0] == "path" && args[1] == "query":
				m.Resource, m.ResourceQuery = "path", true
			default:
				return d.Err("resource takes final, path, or path query")
			}
		case "base_path":
			if !d.NextArg() {
				return d.ArgErr()
			}
			m.BasePath = d.Val()
		case "replay_window":
			if !d.NextArg() {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(d.Val())
			if err != nil || dur <= 0 {
				return d.Errf("replay_window: invalid duration '%s'", d.Val())
			}
			m.ReplayWindow = caddy.Duration(dur)
		case "replay_cache_size":
			if !d.NextArg() {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(d.Val())
			if err != nil || n <= 0 {
				return d.Errf("replay_cache_size: invalid number '%s'", d.Val())
			}
			m.ReplayCacheSize = n
		case "store":
			store, url, err := parseStore(d.RemainingArgs())
			if err != nil {
				return d.Err(err.Error())
			}
			m.Store, m.RedisURL = store, url
		case "on_store_error":
			if !d.NextArg() {
				return d.ArgErr()
			}
			if err := checkOnStoreError(d.Val()); err != nil {
				return d.Err(err.Error())
			}
			m.OnStoreError = d.Val()
		case "redis_timeout":
			dur, err := parsePositiveDuration(d)
			if err != nil {
				return err
			}
			m.RedisTimeout = dur
		case "namespace":
			if !d.NextArg() {
				return d.ArgErr()
			}
			m.Namespace = d.Val()
		case "error_format":
			if err := parseErrorFormat(d, &m.ErrorFormat); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized mdx_hmac option '%s'", opt)
		}
		if d.NextArg() {
			return d.Errf("%s: too many arguments", opt)
		}
	}
	if len(m.Keys) == 0 {
		return d.Errf("mdx_hmac %s needs a key", m.Mode)
	}
	if m.BasePath != "" && m.Resource != "path" {
		return d.Err("base_path applies only with `resource path`")
	}
	if m.Store != "" && m.ReplayWindow == 0 {
		return d.Err("store applies only with replay_window")
	}
	if m.OnStoreError != "" && m.Store != "redis" {
		return d.Err("on_store_error applies only with `store redis <url>`")
	}
	return nil
}

// parseMode reads a directive's mode, its one argument, which must be one
// of modes.
func parseMode(d *caddyfile.Dispenser, dir string, modes ...string) (string, error) {
	want := strings.Join(modes, " or ")
	if !d.NextArg() {
		return "", d.Errf("%s needs a mode: %s", dir, want)
	}
	mode := d.Val()
	if !slices.Contains(modes, mode) {
		return "", d.Errf("unknown %s mode '%s' (want %s)", dir, mode, want)
	}
	if d.NextArg() {
		return "", d.ArgErr()
	}
	return mode, nil
}

// parseSize reads the current option's size argument (1MiB, 64KiB, …).
func parseSize(d *caddyfile.Dispenser) (int64, error) {
	opt := d.Val()
	if !d.NextArg() {
		return 0, d.ArgErr()
	}
	return sizeValue(d, opt, d.Val())
}

// sizeValue parses val, option opt's size.
func sizeValue(d *caddyfile.Dispenser, opt, val string) (int64, error) {
	n, err := humanize.ParseBytes(val)
	if err != nil || n == 0 || n > 1<<40 {
		return 0, d.Errf("%s: invalid size '%s'", opt, val)
	}
	return int64(n), nil
}

func parseErrorFormat(d *caddyfile.Dispenser, dst *string) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	if err := checkErrorFormat(d.Val()); err != nil {
		return d.Err(err.Error())
	}
	*dst = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*IPAllow)(nil)
	_ caddyfile.Unmarshaler = (*MDXHMAC)(nil)
	_ caddyfile.Unmarshaler = (*RateLimit)(nil)
	_ caddyfile.Unmarshaler = (*MXAuth)(nil)
	_ caddyfile.Unmarshaler = (*MXJWE)(nil)
	_ caddyfile.Unmarshaler = (*Retry)(nil)
	_ caddyfile.Unmarshaler = (*MXConnectToken)(nil)
	_ caddyfile.Unmarshaler = (*Sanitize)(nil)
	_ caddyfile.Unmarshaler = (*FDXAuth)(nil)
)
