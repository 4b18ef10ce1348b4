package limit

import (
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/mxgate/mxgate/caddymodule/internal/caddyfileopt"
	"github.com/mxgate/mxgate/ratelimit"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("mx_rate_limit", caddyfileopt.UnmarshalHandler[RateLimit])
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	mx_rate_limit {
//		get <n>/s|/m|/h [burst <b>] | unlimited     # default 2000/s
//		write <n>/s [burst <b>] | unlimited         # default 750/s
//		delete <n>/s [burst <b>] | unlimited        # default 150/s
//		other <n>/s [burst <b>] | unlimited         # default unlimited
//		key <placeholder>
//		ipv4_prefix <bits>                           # addresses in the key grouped; default 32
//		ipv6_prefix <bits>                           # default 64
//		mode reject|wait
//		max_wait <duration>
//		methods standard|any                         # default standard
//		store memory | redis <url>
//		on_store_error local|deny
//		redis_timeout <duration>
//		namespace <name>
//		max_keys <n>
//		error_format mdx|json|fdx|text|handle_errors
//	}
func (rl *RateLimit) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		opt := d.Val()
		var err error
		switch opt {
		case "get", "write", "delete", "other":
			var cl *ClassLimit
			if cl, err = parseClassLimit(d); err != nil {
				return err
			}
			if rl.Limits == nil {
				rl.Limits = map[string]*ClassLimit{}
			}
			if _, dup := rl.Limits[opt]; dup {
				return d.Errf("%s given twice", opt)
			}
			rl.Limits[opt] = cl
		case "key":
			rl.Key, err = caddyfileopt.String(d)
		case "ipv4_prefix":
			rl.IPv4Prefix, err = prefixLen(d, 32)
		case "ipv6_prefix":
			rl.IPv6Prefix, err = prefixLen(d, 128)
		case "mode":
			rl.Mode, err = caddyfileopt.OneOf(d, "reject", "wait")
		case "max_wait":
			rl.MaxWait, err = caddyfileopt.PositiveDuration(d)
		case "methods":
			rl.Methods, err = caddyfileopt.OneOf(d, MethodsStandard, MethodsAny)
		case "max_keys":
			rl.MaxKeys, err = caddyfileopt.PositiveInt(d)
		case "error_format":
			rl.ErrorFormat, err = caddyfileopt.ErrorFormat(d)
		default: // the store's options
			var ok bool
			if ok, err = rl.Config.UnmarshalOption(d); !ok {
				return caddyfileopt.Unrecognized(d, "mx_rate_limit")
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

// prefixLen reads a prefix length of at most bits, written 64 or /64.
func prefixLen(d *caddyfile.Dispenser, bits int) (int, error) {
	opt := d.Val()
	if !d.NextArg() {
		return 0, d.ArgErr()
	}
	n, err := strconv.Atoi(strings.TrimPrefix(d.Val(), "/"))
	if err != nil || n < 1 || n > bits || strings.HasPrefix(d.Val(), "+") {
		return 0, d.Errf("%s: '%s' is not a prefix length from 1 to %d", opt, d.Val(), bits)
	}
	return n, nil
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

// Interface guards
var _ caddyfile.Unmarshaler = (*RateLimit)(nil)
