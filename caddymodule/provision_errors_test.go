package caddymodule

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/mxgate/mxgate/internal/testkit/handlertest"
)

// TestProvisionErrorsNameTheDirective: a module that fails to provision
// says which directive, as the Caddyfile names it, before its complaint:
// Caddy's chain around it names only the module's id.
func TestProvisionErrorsNameTheDirective(t *testing.T) {
	for _, c := range []struct {
		id, config, directive string
	}{
		{"http.handlers.mdx_hmac_verify", `{}`, "mdx_hmac verify"},
		{"http.handlers.mdx_hmac_sign", `{}`, "mdx_hmac sign"},
		{"http.handlers.mdx_sanitize", `{"action":"shout"}`, "mdx_sanitize"},
		{"http.handlers.mx_ip_allow", `{"ranges":["10.0.0.0/33"]}`, "mx_ip_allow"},
		{"caddy.listeners.mx_ip_allow", `{"ranges":["10.0.0.0/33"]}`, "mx_ip_allow (listener wrapper)"},
		{"http.handlers.mx_rate_limit", `{"mode":"bogus"}`, "mx_rate_limit"},
		{"http.handlers.mx_auth_attach", `{}`, "mx_auth attach"},
		{"http.handlers.mx_auth_check", `{}`, "mx_auth check"},
		{"http.handlers.mxconnect_token", `{}`, "mxconnect_token"},
		{"http.handlers.mx_retry", `{"base_delay":1000000000,"max_delay":1}`, "mx_retry"},
		{"http.handlers.mx_jwe_decrypt", `{"curve":"p999"}`, "mx_jwe decrypt"},
		{"http.handlers.mx_jwe_encrypt", `{"a128_key_algorithm":"rot13"}`, "mx_jwe encrypt"},
		{"http.handlers.fdx_auth", `{}`, "fdx_auth"},
		{"http.handlers.mx_shed", `{}`, "mx_shed"},
		{"caddy.listeners.mx_conn_limit", `{"max":-1}`, "mx_conn_limit (listener wrapper)"},
		{"caddy.logging.encoders.mxgate_redact", `{"headers":[""]}`, "log format mxgate_redact"},
	} {
		t.Run(c.id, func(t *testing.T) {
			info, err := caddy.GetModule(c.id)
			if err != nil {
				t.Fatal(err)
			}
			m := info.New()
			if err := json.Unmarshal([]byte(c.config), m); err != nil {
				t.Fatal(err)
			}
			err = handlertest.TryProvision(t, m)
			if err == nil {
				t.Fatalf("%s provisioned", c.config)
			}
			if !strings.HasPrefix(err.Error(), c.directive+": ") || strings.Count(err.Error(), c.directive+":") != 1 {
				t.Errorf("%q does not begin, once, with %q", err, c.directive+": ")
			}
		})
	}
}
