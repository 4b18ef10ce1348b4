// Package caddyfileopt reads mxgate's Caddyfile directives: the parse
// function of a directive's handler, a directive's mode, and the values
// of its options (a string, one of a few words, a positive duration or
// number, a size, an error format), each error naming the option, the
// value and the line.
package caddyfileopt

import (
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"

	"github.com/mxgate/mxgate/caddymodule/internal/refusal"
)

// UnmarshalHandler is the parse function of a directive whose handler
// needs nothing beyond its own UnmarshalCaddyfile.
func UnmarshalHandler[T any, PT interface {
	*T
	caddyhttp.MiddlewareHandler
	caddyfile.Unmarshaler
}](h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var v PT = new(T)
	err := v.UnmarshalCaddyfile(h.Dispenser)
	return v, err
}

// Handler is a handler that reads its Caddyfile directive.
type Handler interface {
	caddyhttp.MiddlewareHandler
	caddyfile.Unmarshaler
}

// ByMode is the parse function of a directive with modes (mdx_hmac
// verify|sign, mx_auth attach|check): it reads the directive's mode, one
// of modes, and has the handler that newHandler gives for it unmarshal
// the whole directive, its name and mode included.
func ByMode(dir string, modes []string, newHandler func(mode string) Handler) httpcaddyfile.UnmarshalHandlerFunc {
	return func(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
		h.Next()
		seg := h.NextSegment()
		d := caddyfile.NewDispenser(seg)
		d.Next()
		mode, err := Mode(d, dir, modes...)
		if err != nil {
			return nil, err
		}
		handler := newHandler(mode)
		return handler, handler.UnmarshalCaddyfile(caddyfile.NewDispenser(seg))
	}
}

// Mode reads a directive's mode, its one argument, which must be one of
// modes; the dispenser is left on the directive's block. A directive's
// UnmarshalCaddyfile reads its mode and its block so:
//
//	d.Next() // directive name
//	if _, err := caddyfileopt.Mode(d, "mx_jwe", "decrypt"); err != nil {
//		return err
//	}
//	for d.NextBlock(0) {
//		var err error
//		switch d.Val() {
//		case "max_body":
//			m.MaxBody, err = caddyfileopt.Size(d)
//		default:
//			return caddyfileopt.Unrecognized(d, "mx_jwe decrypt")
//		}
//		if err != nil {
//			return err
//		}
//		if err := caddyfileopt.NoMoreArgs(d); err != nil {
//			return err
//		}
//	}
func Mode(d *caddyfile.Dispenser, dir string, modes ...string) (string, error) {
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

// Unrecognized is the error for an option dir does not have.
func Unrecognized(d *caddyfile.Dispenser, dir string) error {
	return d.Errf("unrecognized %s option '%s'", dir, d.Val())
}

// String reads the current option's one argument.
func String(d *caddyfile.Dispenser) (string, error) {
	if !d.NextArg() {
		return "", d.ArgErr()
	}
	return d.Val(), nil
}

// OneOf reads the current option's one argument, which must be one of vals.
func OneOf(d *caddyfile.Dispenser, vals ...string) (string, error) {
	opt := d.Val()
	if !d.NextArg() {
		return "", d.ArgErr()
	}
	if !slices.Contains(vals, d.Val()) {
		return "", d.Errf("%s must be %s, not '%s'", opt, either(vals), d.Val())
	}
	return d.Val(), nil
}

// either lists vals as "a, b or c".
func either(vals []string) string {
	if len(vals) < 2 {
		return strings.Join(vals, "")
	}
	return strings.Join(vals[:len(vals)-1], ", ") + " or " + vals[len(vals)-1]
}

// PositiveDuration reads the current option's duration, which must be
// positive.
func PositiveDuration(d *caddyfile.Dispenser) (caddy.Duration, error) {
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

// PositiveInt reads the current option's whole number, at least 1.
func PositiveInt(d *caddyfile.Dispenser) (int, error) {
	opt := d.Val()
	if !d.NextArg() {
		return 0, d.ArgErr()
	}
	n, err := strconv.Atoi(d.Val())
	if err != nil || n < 1 {
		return 0, d.Errf("%s: invalid number '%s' (a whole number of at least 1)", opt, d.Val())
	}
	return n, nil
}

// Size reads the current option's size argument (1MiB, 64KiB, …).
func Size(d *caddyfile.Dispenser) (int64, error) {
	opt := d.Val()
	if !d.NextArg() {
		return 0, d.ArgErr()
	}
	n, err := humanize.ParseBytes(d.Val())
	if err != nil || n == 0 || n > 1<<40 {
		return 0, d.Errf("%s: invalid size '%s'", opt, d.Val())
	}
	return int64(n), nil
}

// ErrorFormat reads the error_format option.
func ErrorFormat(d *caddyfile.Dispenser) (string, error) {
	if !d.NextArg() {
		return "", d.ArgErr()
	}
	if _, err := refusal.ParseFormat(d.Val(), ""); err != nil {
		return "", d.Err(err.Error())
	}
	return d.Val(), nil
}

// NoMoreArgs fails when the current option has arguments left.
func NoMoreArgs(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.Errf("too many arguments: '%s'", d.Val())
	}
	return nil
}
