package caddyfileopt

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// option returns a dispenser on the first option of input's block.
func option(t *testing.T, input string) *caddyfile.Dispenser {
	t.Helper()
	d := caddyfile.NewTestDispenser(input)
	d.Next()
	if !d.NextBlock(0) {
		t.Fatalf("no option in %q", input)
	}
	return d
}

// wantErr fails unless err holds every one of parts.
func wantErr(t *testing.T, input string, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("%q: accepted", input)
		return
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("%q: error %q does not say %q", input, err, p)
		}
	}
}

func TestMode(t *testing.T) {
	mode := func(input string) (string, error) {
		d := caddyfile.NewTestDispenser(input)
		d.Next()
		return Mode(d, "dir", "verify", "sign")
	}
	if m, err := mode("dir sign {\n}"); err != nil || m != "sign" {
		t.Errorf("sign: %q %v", m, err)
	}
	_, err := mode("dir")
	wantErr(t, "dir", err, "dir needs a mode: verify or sign", "Testfile:1")
	_, err = mode("dir check")
	wantErr(t, "dir check", err, "unknown dir mode 'check' (want verify or sign)")
	_, err = mode("dir verify extra")
	wantErr(t, "dir verify extra", err, "wrong argument count")
}

func TestOptionHelpers(t *testing.T) {
	// good values
	d := option(t, "dir {\n\tname value\n}")
	if s, err := String(d); err != nil || s != "value" {
		t.Errorf("String: %q %v", s, err)
	}
	d = option(t, "dir {\n\tpick b\n}")
	if s, err := OneOf(d, "a", "b", "c"); err != nil || s != "b" {
		t.Errorf("OneOf: %q %v", s, err)
	}
	d = option(t, "dir {\n\twait 1m30s\n}")
	if v, err := PositiveDuration(d); err != nil || time.Duration(v) != 90*time.Second {
		t.Errorf("PositiveDuration: %v %v", v, err)
	}
	d = option(t, "dir {\n\twait 2d\n}")
	if v, err := PositiveDuration(d); err != nil || time.Duration(v) != 48*time.Hour {
		t.Errorf("PositiveDuration in days: %v %v", v, err)
	}
	d = option(t, "dir {\n\tcount 12\n}")
	if n, err := PositiveInt(d); err != nil || n != 12 {
		t.Errorf("PositiveInt: %d %v", n, err)
	}
	for in, want := range map[string]int64{"64KiB": 64 << 10, "1MiB": 1 << 20, "1000": 1000, "1kb": 1000} {
		d = option(t, "dir {\n\tmax_body "+in+"\n}")
		if n, err := Size(d); err != nil || n != want {
			t.Errorf("Size(%s): %d %v, want %d", in, n, err, want)
		}
	}
	d = option(t, "dir {\n\terror_format fdx\n}")
	if f, err := ErrorFormat(d); err != nil || f != "fdx" {
		t.Errorf("ErrorFormat: %q %v", f, err)
	}
	d = option(t, "dir {\n\tflag\n}")
	if err := NoMoreArgs(d); err != nil {
		t.Errorf("NoMoreArgs: %v", err)
	}

	// bad values: the error names the option, the value and the line
	type parse func(*caddyfile.Dispenser) error
	str := func(d *caddyfile.Dispenser) error { _, err := String(d); return err }
	oneOf := func(d *caddyfile.Dispenser) error { _, err := OneOf(d, "a", "b", "c"); return err }
	oneOf1 := func(d *caddyfile.Dispenser) error { _, err := OneOf(d, "only"); return err }
	dur := func(d *caddyfile.Dispenser) error { _, err := PositiveDuration(d); return err }
	num := func(d *caddyfile.Dispenser) error { _, err := PositiveInt(d); return err }
	size := func(d *caddyfile.Dispenser) error { _, err := Size(d); return err }
	format := func(d *caddyfile.Dispenser) error { _, err := ErrorFormat(d); return err }
	for _, c := range []struct {
		input string
		parse parse
		parts []string
	}{
		{"dir {\n\tname\n}", str, []string{"wrong argument count", "Testfile:2"}},
		{"dir {\n\tpick\n}", oneOf, []string{"wrong argument count"}},
		{"dir {\n\tpick d\n}", oneOf, []string{"pick must be a, b or c, not 'd'", "Testfile:2"}},
		{"dir {\n\tpick d\n}", oneOf1, []string{"pick must be only, not 'd'"}},
		{"dir {\n\twait\n}", dur, []string{"wrong argument count"}},
		{"dir {\n\twait soon\n}", dur, []string{"wait: invalid duration 'soon' (must be positive)"}},
		{"dir {\n\twait 0s\n}", dur, []string{"wait: invalid duration '0s'"}},
		{"dir {\n\twait -1s\n}", dur, []string{"wait: invalid duration '-1s'"}},
		{"dir {\n\tcount\n}", num, []string{"wrong argument count"}},
		{"dir {\n\tcount 0\n}", num, []string{"count: invalid number '0' (a whole number of at least 1)"}},
		{"dir {\n\tcount 1.5\n}", num, []string{"count: invalid number '1.5'"}},
		{"dir {\n\tmax_body\n}", size, []string{"wrong argument count"}},
		{"dir {\n\tmax_body lots\n}", size, []string{"max_body: invalid size 'lots'"}},
		{"dir {\n\tmax_body 0\n}", size, []string{"max_body: invalid size '0'"}},
		{"dir {\n\tmax_body 2TiB\n}", size, []string{"max_body: invalid size '2TiB'"}},
		{"dir {\n\terror_format\n}", format, []string{"wrong argument count"}},
		{"dir {\n\terror_format html\n}", format, []string{`unknown error_format "html"`, "Testfile:2"}},
		{"dir {\n\tflag extra\n}", NoMoreArgs, []string{"too many arguments: 'extra'", "Testfile:2"}},
	} {
		wantErr(t, c.input, c.parse(option(t, c.input)), c.parts...)
	}
}

// unmarshaled is a handler that records the tokens its UnmarshalCaddyfile saw.
type unmarshaled struct{ args []string }

func (u *unmarshaled) ServeHTTP(http.ResponseWriter, *http.Request, caddyhttp.Handler) error {
	return nil
}

func (u *unmarshaled) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	u.args = d.RemainingArgs()
	if len(u.args) == 0 {
		return d.ArgErr()
	}
	return nil
}

func helper(input string) httpcaddyfile.Helper {
	return httpcaddyfile.Helper{Dispenser: caddyfile.NewTestDispenser(input), State: map[string]any{}}
}

func TestUnmarshalHandler(t *testing.T) {
	h, err := UnmarshalHandler[unmarshaled](helper("thing a b"))
	if err != nil || h.(*unmarshaled).args[1] != "b" {
		t.Errorf("%v %v", h, err)
	}
	if _, err := UnmarshalHandler[unmarshaled](helper("thing")); err == nil {
		t.Error("the handler's error was dropped")
	}
}

func TestByMode(t *testing.T) {
	parse := ByMode("dir", []string{"verify", "sign"}, func(mode string) Handler { return &unmarshaled{} })
	h, err := parse(helper("dir sign\nother"))
	if err != nil || strings.Join(h.(*unmarshaled).args, " ") != "sign" {
		t.Errorf("the handler did not read the whole directive: %v %v", h, err)
	}
	_, err = parse(helper("dir check"))
	wantErr(t, "dir check", err, "unknown dir mode 'check' (want verify or sign)")
}
