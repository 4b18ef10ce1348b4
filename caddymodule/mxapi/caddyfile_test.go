package mxapi

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
)

func helper(input string) httpcaddyfile.Helper {
	return httpcaddyfile.Helper{Dispenser: caddyfile.NewTestDispenser(input), State: map[string]any{}}
}

// TestDualModeDirectives: mx_auth and mx_jwe become the handler of their
// mode, filled from the block.
func TestDualModeDirectives(t *testing.T) {
	for input, want := range map[string]any{
		"mx_auth attach {\n\tclient_id {env.ID}\n\tapi_key {env.KEY}\n\tapi_version v20250224\n}": &AuthAttach{ClientID: "{env.ID}", APIKey: "{env.KEY}", APIVersion: "v20250224"},
		"mx_auth check {\n\tclient mx " + bcryptHash + "\n\tclient other {env.S}\n\tfailure 404\n\trealm hooks\n\terror_format text\n\tmax_slow_hashes 3\n}": &AuthCheck{
			Clients: []AuthClient{{ID: "mx", Secret: bcryptHash}, {ID: "other", Secret: "{env.S}"}}, Failure: 404, Realm: "hooks", ErrorFormat: "text", MaxSlowHashes: 3},
		"mx_jwe decrypt {\n\tcurve p256\n\tcipher a128gcm\n\ta128_key_algorithm ECDH-ES\n\trotate 10m\n\tmax_body 1MiB\n}": &JWEDecrypt{
			Curve: "p256", Cipher: "a128gcm", A128KeyAlgorithm: "ECDH-ES", Rotate: caddy.Duration(10 * time.Minute), MaxBody: 1 << 20},
		"mx_jwe encrypt {\n\ta128_key_algorithm ECDH-ES+A128KW\n\tresponse_type application/jwt\n\tmax_body 2MiB\n}": &JWEEncrypt{
			A128KeyAlgorithm: "ECDH-ES+A128KW", ResponseType: "application/jwt", MaxBody: 2 << 20},
	} {
		parse := parseMXAuth
		if strings.HasPrefix(input, "mx_jwe") {
			parse = parseMXJWE
		}
		got, err := parse(helper(input))
		if err != nil {
			t.Errorf("%q: %v", input, err)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%q:\n got %+v\nwant %+v", input, got, want)
		}
	}
	for input, msg := range map[string]string{
		"mx_auth":                            "mx_auth needs a mode: attach or check",
		"mx_auth both {\n}":                  "unknown mx_auth mode 'both' (want attach or check)",
		"mx_jwe":                             "mx_jwe needs a mode: decrypt or encrypt",
		"mx_jwe decrypt encrypt":             "wrong argument count",
		"mx_auth attach {\n\tclient mx x\n}": "unrecognized mx_auth attach option 'client'",
	} {
		parse := parseMXAuth
		if strings.HasPrefix(input, "mx_jwe") {
			parse = parseMXJWE
		}
		if _, err := parse(helper(input)); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%q: %v, want %q", input, err, msg)
		}
	}
}

func TestRetryAndTokenDirectives(t *testing.T) {
	var rt Retry
	input := "mx_retry {\n\tstatuses 429 502 503\n\tmax_time 30s\n\tmax_attempts 3\n\tbase_delay 50ms\n\tmax_delay 1s\n\tmax_body 64KiB\n}"
	if err := rt.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)); err != nil {
		t.Fatal(err)
	}
	wantRetry := Retry{Statuses: []int{429, 502, 503}, MaxTime: caddy.Duration(30 * time.Second), MaxAttempts: 3,
		BaseDelay: caddy.Duration(50 * time.Millisecond), MaxDelay: caddy.Duration(time.Second), MaxBody: 64 << 10}
	if !reflect.DeepEqual(rt, wantRetry) {
		t.Errorf("mx_retry: %+v", rt)
	}

	var m MXConnectToken
	input = "mxconnect_token {\n\tendpoint http://127.0.0.1:9/auth\n\tusername {env.U}\n\tpassword {env.P}\n\tapi_key {env.K}\n\trefresh_before 2m\n\tmin_refresh 45s\n\ttimeout 3s\n\tmax_body 1MiB\n\terror_format mdx\n}"
	if err := m.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)); err != nil {
		t.Fatal(err)
	}
	wantToken := MXConnectToken{Endpoint: "http://127.0.0.1:9/auth", Username: "{env.U}", Password: "{env.P}", APIKey: "{env.K}",
		RefreshBefore: caddy.Duration(2 * time.Minute), MinRefresh: caddy.Duration(45 * time.Second), Timeout: caddy.Duration(3 * time.Second), MaxBody: 1 << 20, ErrorFormat: "mdx"}
	if !reflect.DeepEqual(m, wantToken) {
		t.Errorf("mxconnect_token: %+v", m)
	}
}

func TestUnmarshalErrors(t *testing.T) {
	type unmarshaler interface {
		UnmarshalCaddyfile(*caddyfile.Dispenser) error
	}
	for _, c := range []struct {
		h          unmarshaler
		input, msg string
	}{
		{new(AuthAttach), "mx_auth check {\n}", "unknown mx_auth mode 'check' (want attach)"},
		{new(AuthAttach), "mx_auth attach {\n\tapi_version v2\n}", "api_version must be v20111101 or v20250224, not 'v2'"},
		{new(AuthAttach), "mx_auth attach {\n\tclient_id a b\n}", "too many arguments: 'b'"},
		{new(AuthAttach), "mx_auth attach {\n\tapi_key\n}", "wrong argument count"},
		{new(AuthCheck), "mx_auth check {\n\tclient mx\n}", "client takes an id and a hash or placeholder"},
		{new(AuthCheck), "mx_auth check {\n\tfailure 403\n}", "failure must be 401 or 404, not '403'"},
		{new(AuthCheck), "mx_auth check {\n\tmax_slow_hashes 0\n}", "max_slow_hashes: invalid number '0'"},
		{new(AuthCheck), "mx_auth check {\n\trealm\n}", "wrong argument count"},
		{new(AuthCheck), "mx_auth check {\n\terror_format html\n}", `unknown error_format "html"`},
		{new(AuthCheck), "mx_auth check {\n\tclient_id mx\n}", "unrecognized mx_auth check option 'client_id'"},
		{new(JWEDecrypt), "mx_jwe decrypt {\n\tcurve p521\n}", "curve must be p384 or p256, not 'p521'"},
		{new(JWEDecrypt), "mx_jwe decrypt {\n\tcipher a192gcm\n}", "cipher must be a256gcm or a128gcm, not 'a192gcm'"},
		{new(JWEDecrypt), "mx_jwe decrypt {\n\trotate 0s\n}", "rotate: invalid duration '0s'"},
		{new(JWEDecrypt), "mx_jwe decrypt {\n\tresponse_type x\n}", "unrecognized mx_jwe decrypt option 'response_type'"},
		{new(JWEEncrypt), "mx_jwe encrypt {\n\tcurve p256\n}", "unrecognized mx_jwe encrypt option 'curve'"},
		{new(JWEEncrypt), "mx_jwe encrypt {\n\tmax_body none\n}", "max_body: invalid size 'none'"},
		{new(JWEEncrypt), "mx_jwe decrypt {\n}", "unknown mx_jwe mode 'decrypt' (want encrypt)"},
		{new(Retry), "mx_retry now {\n}", "wrong argument count"},
		{new(Retry), "mx_retry {\n\tstatuses\n}", "wrong argument count"},
		{new(Retry), "mx_retry {\n\tstatuses 503 302\n}", "statuses: '302' is not an error status"},
		{new(Retry), "mx_retry {\n\tstatuses busy\n}", "statuses: 'busy' is not an error status"},
		{new(Retry), "mx_retry {\n\tmax_attempts 0\n}", "max_attempts: invalid number '0'"},
		{new(Retry), "mx_retry {\n\tmax_time 1s 2s\n}", "too many arguments: '2s'"},
		{new(Retry), "mx_retry {\n\tjitter off\n}", "unrecognized mx_retry option 'jitter'"},
		{new(MXConnectToken), "mxconnect_token {\n\ttimeout -1s\n}", "timeout: invalid duration '-1s'"},
		{new(MXConnectToken), "mxconnect_token {\n\tmin_refresh 0s\n}", "min_refresh"},
		{new(MXConnectToken), "mxconnect_token {\n\tendpoint\n}", "wrong argument count"},
		{new(MXConnectToken), "mxconnect_token {\n\ttoken x\n}", "unrecognized mxconnect_token option 'token'"},
	} {
		err := c.h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(c.input))
		if err == nil || !strings.Contains(err.Error(), c.msg) || !strings.Contains(err.Error(), "Testfile:") {
			t.Errorf("%q: %v, want %q", c.input, err, c.msg)
		}
	}
}
