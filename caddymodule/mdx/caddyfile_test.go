package mdx

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/mxgate/mxgate/caddymodule/internal/store"
)

func dur(d time.Duration) *caddy.Duration { c := caddy.Duration(d); return &c }

func TestVerifyUnmarshalCaddyfile(t *testing.T) {
	input := `mdx_hmac verify {
		key {env.MDX_KEY}
		key ` + testKey2 + `
		algorithm sha256
		max_skew 90s
		max_body 64KiB
		resource path query
		base_path /mdx/{institution_id}
		replay_window 10m
		replay_cache_size 5000
		replay_loss_grace 5s
		store redis redis://cache:6379/0
		on_store_error deny
		redis_timeout 100ms
		namespace fi-prod
		error_format text
	}`
	var v Verify
	if err := v.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)); err != nil {
		t.Fatal(err)
	}
	want := Verify{
		Signing: Signing{Keys: []string{"{env.MDX_KEY}", testKey2}, Algorithm: "sha256", Resource: "path", ResourceQuery: true,
			BasePath: "/mdx/{institution_id}", MaxBody: 64 << 10, ErrorFormat: "text"},
		MaxSkew: dur(90 * time.Second), ReplayWindow: caddy.Duration(10 * time.Minute), ReplayCacheSize: 5000,
		ReplayLossGrace: caddy.Duration(5 * time.Second),
		Config:          store.Config{Store: "redis", RedisURL: "redis://cache:6379/0", OnStoreError: "deny", RedisTimeout: caddy.Duration(100 * time.Millisecond), Namespace: "fi-prod"},
	}
	if !reflect.DeepEqual(v, want) {
		t.Errorf("got  %+v\nwant %+v", v, want)
	}

	var off Verify
	if err := off.UnmarshalCaddyfile(caddyfile.NewTestDispenser("mdx_hmac verify {\n\tkey k\n\tmax_skew off\n\tresource final\n}")); err != nil || !off.SkewCheckOff || off.MaxSkew != nil || off.Resource != "final" {
		t.Errorf("max_skew off: %+v %v", off, err)
	}
}

func TestVerifyUnmarshalErrors(t *testing.T) {
	for body, msg := range map[string]string{
		"key":                     "key takes exactly one base64 key",
		"key a b":                 "key takes exactly one base64 key",
		"algorithm md5":           "algorithm must be sha1, sha224, sha256, sha384 or sha512, not 'md5'",
		"algorithm sha1 sha256":   "too many arguments: 'sha256'",
		"max_body huge":           "max_body: invalid size 'huge'",
		"resource":                "resource takes final, path, or path query",
		"resource final query":    "resource takes final, path, or path query",
		"resource everything":     "resource takes final, path, or path query",
		"base_path":               "wrong argument count",
		"error_format html":       `unknown error_format "html"`,
		"max_skew":                "wrong argument count",
		"max_skew soon":           "max_skew: ",
		"max_skew 0s":             "max_skew must be positive; to drop the bound write `max_skew off`",
		"max_skew -5m":            "max_skew must be positive",
		"max_skew 5m 6m":          "too many arguments: '6m'",
		"replay_window 0s":        "replay_window: invalid duration '0s'",
		"replay_window 10m extra": "too many arguments: 'extra'",
		"replay_cache_size -1":    "replay_cache_size: invalid number '-1'",
		"replay_loss_grace 0s":    "replay_loss_grace: invalid duration '0s'",
		"replay_loss_grace":       "wrong argument count",
		"store disk":              "store takes `memory` or `redis <url>`",
		"store memory extra":      "store takes",
		"on_store_error open":     "on_store_error must be local or deny, not 'open'",
		"namespace a b":           "too many arguments: 'b'",
		"replay_windows 10m":      "unrecognized mdx_hmac verify option 'replay_windows'",
	} {
		var v Verify
		err := v.UnmarshalCaddyfile(caddyfile.NewTestDispenser("mdx_hmac verify {\n\t" + body + "\n}"))
		if err == nil || !strings.Contains(err.Error(), msg) || !strings.Contains(err.Error(), "Testfile:2") {
			t.Errorf("%q: %v, want %q on line 2", body, err, msg)
		}
	}
	for input, msg := range map[string]string{
		"mdx_hmac":             "mdx_hmac needs a mode: verify",
		"mdx_hmac sign":        "unknown mdx_hmac mode 'sign' (want verify)",
		"mdx_hmac verify more": "wrong argument count",
	} {
		var v Verify
		if err := v.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%q: %v, want %q", input, err, msg)
		}
	}
}

func TestSignUnmarshalCaddyfile(t *testing.T) {
	var s Sign
	input := "mdx_hmac sign {\n\tkey {env.K}\n\talgorithm sha512\n\tresource path\n\tbase_path /mdx\n\tmax_body 1MiB\n\tmax_pending_bodies 8MiB\n\terror_format json\n}"
	if err := s.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)); err != nil {
		t.Fatal(err)
	}
	want := Signing{Keys: []string{"{env.K}"}, Algorithm: "sha512", Resource: "path", BasePath: "/mdx", MaxBody: 1 << 20, ErrorFormat: "json"}
	if !reflect.DeepEqual(s.Signing, want) || s.MaxPendingBodies != 8<<20 {
		t.Errorf("%+v (max_pending_bodies %d), want %+v", s.Signing, s.MaxPendingBodies, want)
	}
	for input, msg := range map[string]string{
		"mdx_hmac verify {\n}":                            "unknown mdx_hmac mode 'verify' (want sign)",
		"mdx_hmac sign {\n\treplay_window 10m\n}":         "unrecognized mdx_hmac sign option 'replay_window'",
		"mdx_hmac sign {\n\tmax_body 1MiB 2MiB\n}":        "too many arguments: '2MiB'",
		"mdx_hmac sign {\n\talgorithm\n}":                 "wrong argument count",
		"mdx_hmac sign {\n\tmax_pending_bodies 1MiB 2\n}": "too many arguments: '2'",
	} {
		var s Sign
		if err := s.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%q: %v, want %q", input, err, msg)
		}
	}
}

func TestSanitizeUnmarshalCaddyfile(t *testing.T) {
	var s Sanitize
	in := "mdx_sanitize {\n\taction block\n\tfields nickname memo\n\tfields card_ref\n\tmax_field 128KiB\n\tmax_body 2MiB\n\tmax_decoded 20MiB\n\tallow_malformed\n}"
	if err := s.UnmarshalCaddyfile(caddyfile.NewTestDispenser(in)); err != nil {
		t.Fatal(err)
	}
	if s.Action != "block" || strings.Join(s.Fields, ",") != "nickname,memo,card_ref" || s.MaxField != 128<<10 || s.MaxBody != 2<<20 || s.MaxDecoded != 20<<20 || !s.AllowMalformed {
		t.Errorf("%+v", s)
	}
	for input, msg := range map[string]string{
		"mdx_sanitize mask":                        "wrong argument count",
		"mdx_sanitize {\n\taction drop\n}":         "action must be mask, block or report, not 'drop'",
		"mdx_sanitize {\n\tfields\n}":              "wrong argument count",
		"mdx_sanitize {\n\tmax_body 0\n}":          "max_body: invalid size '0'",
		"mdx_sanitize {\n\tmax_field 0\n}":         "max_field: invalid size '0'",
		"mdx_sanitize {\n\tmax_field 17MiB\n}":     "max_field: at most 16777216 bytes",
		"mdx_sanitize {\n\tmax_decoded lots\n}":    "max_decoded: invalid size 'lots'",
		"mdx_sanitize {\n\tallow_malformed yes\n}": "too many arguments: 'yes'",
		"mdx_sanitize {\n\taction mask report\n}":  "too many arguments: 'report'",
		"mdx_sanitize {\n\tmask all\n}":            "unrecognized mdx_sanitize option 'mask'",
	} {
		var s Sanitize
		if err := s.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%q: %v, want %q", input, err, msg)
		}
	}
}

// TestParseMDXHMAC: the directive becomes a Verify or a Sign by its mode;
// the Caddyfile names no state (it is named by what it protects once the
// configuration is loaded), and keeps a namespace given.
func TestParseMDXHMAC(t *testing.T) {
	state := map[string]any{}
	parse := func(input string) (any, error) {
		return parseMDXHMAC(httpcaddyfile.Helper{Dispenser: caddyfile.NewTestDispenser(input), State: state})
	}
	h, err := parse("mdx_hmac sign {\n\tkey k\n}")
	if s, ok := h.(*Sign); err != nil || !ok || s.Keys[0] != "k" {
		t.Fatalf("sign: %T %v", h, err)
	}
	ns := func(input string) string {
		t.Helper()
		h, err := parse(input)
		if err != nil {
			t.Fatal(err)
		}
		return h.(*Verify).Namespace
	}
	if n := ns("mdx_hmac verify {\n\tkey k1\n\treplay_window 10m\n\tresource path\n\tbase_path /a\n}"); n != "" {
		t.Errorf("the Caddyfile named the state: %q", n)
	}
	if n := ns("mdx_hmac verify {\n\tkey k\n\treplay_window 10m\n\tnamespace mine\n}"); n != "mine" {
		t.Errorf("a given namespace was replaced: %q", n)
	}
	for input, msg := range map[string]string{
		"mdx_hmac":                           "mdx_hmac needs a mode: verify or sign",
		"mdx_hmac check {\n}":                "unknown mdx_hmac mode 'check'",
		"mdx_hmac verify {\n\tkey\n}":        "key takes exactly one base64 key",
		"mdx_hmac sign {\n\tstore memory\n}": "unrecognized mdx_hmac sign option 'store'",
	} {
		if _, err := parse(input); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%q: %v, want %q", input, err, msg)
		}
	}
}
