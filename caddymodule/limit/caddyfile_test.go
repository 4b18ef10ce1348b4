package limit

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/mxgate/mxgate/caddymodule/internal/store"
)

func TestUnmarshalCaddyfile(t *testing.T) {
	input := `mx_rate_limit {
		get 100/s burst 200
		write 30/m
		delete unlimited
		other 1/h burst 1
		key {http.auth.user.id}
		ipv4_prefix 24
		ipv6_prefix /48
		mode wait
		max_wait 500ms
		store redis redis://cache:6379/2
		on_store_error deny
		redis_timeout 50ms
		namespace api
		max_keys 5000
		error_format json
	}`
	var rl RateLimit
	if err := rl.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)); err != nil {
		t.Fatal(err)
	}
	want := RateLimit{
		Limits: map[string]*ClassLimit{"get": {Rate: 100, Burst: 200}, "write": {Rate: 0.5}, "delete": {Unlimited: true}, "other": {Rate: 1.0 / 3600, Burst: 1}},
		Key:    "{http.auth.user.id}", IPv4Prefix: 24, IPv6Prefix: 48, Mode: "wait", MaxWait: caddy.Duration(500 * time.Millisecond), MaxKeys: 5000, ErrorFormat: "json",
		Config: store.Config{Store: "redis", RedisURL: "redis://cache:6379/2", OnStoreError: "deny", RedisTimeout: caddy.Duration(50 * time.Millisecond), Namespace: "api"},
	}
	if !reflect.DeepEqual(rl, want) {
		t.Errorf("got  %+v\nwant %+v", rl, want)
	}
}

func TestUnmarshalErrors(t *testing.T) {
	for body, msg := range map[string]string{
		"get":                   "get needs a rate such as 100/s, or unlimited",
		"get fast":              "get: ",
		"get 5/s burst":         "get: after the rate, only `burst <n>`",
		"get 5/s size 3":        "get: after the rate, only `burst <n>`",
		"get 5/s burst 0":       "get: burst must be a whole number of at least 1, not '0'",
		"get 5/s burst many":    "burst must be a whole number of at least 1, not 'many'",
		"get 5/s burst 3 extra": "too many arguments: 'extra'",
		"get 5/s\n\tget 6/s":    "get given twice",
		"key":                   "wrong argument count",
		"mode later":            "mode must be reject or wait, not 'later'",
		"max_wait 0s":           "max_wait: invalid duration '0s'",
		"max_keys 0":            "max_keys: invalid number '0'",
		"error_format xml":      `unknown error_format "xml"`,
		"store redis":           "store takes `memory` or `redis <url>`",
		"on_store_error open":   "on_store_error must be local or deny",
		"namespace a b":         "too many arguments: 'b'",
		"patch 5/s":             "unrecognized mx_rate_limit option 'patch'",
		"ipv4_prefix":           "wrong argument count",
		"ipv4_prefix 33":        "ipv4_prefix: '33' is not a prefix length from 1 to 32",
		"ipv4_prefix /0":        "ipv4_prefix: '/0' is not a prefix length from 1 to 32",
		"ipv6_prefix 129":       "ipv6_prefix: '129' is not a prefix length from 1 to 128",
		"ipv6_prefix -64":       "is not a prefix length",
		"ipv6_prefix +64":       "is not a prefix length",
		"ipv6_prefix //64":      "is not a prefix length",
		"ipv6_prefix 2001::/64": "is not a prefix length",
		"ipv6_prefix 64 48":     "too many arguments: '48'",
	} {
		var rl RateLimit
		err := rl.UnmarshalCaddyfile(caddyfile.NewTestDispenser("mx_rate_limit {\n\t" + body + "\n}"))
		if err == nil || !strings.Contains(err.Error(), msg) || !strings.Contains(err.Error(), "Testfile:") {
			t.Errorf("%q: %v, want %q", body, err, msg)
		}
	}
	var rl RateLimit
	if err := rl.UnmarshalCaddyfile(caddyfile.NewTestDispenser("mx_rate_limit 5/s")); err == nil || !strings.Contains(err.Error(), "wrong argument count") {
		t.Errorf("an argument on the directive: %v", err)
	}
}
