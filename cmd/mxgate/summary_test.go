package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSummarize(t *testing.T) {
	for msg, want := range map[string]string{
		"loading http app module: provision http: server srv0: setting up route handlers: route 0: loading handler modules: position 0: loading module 'subroute': provision http.handlers.subroute: setting up subroutes: route 0: loading handler modules: position 0: loading module 'mdx_hmac_verify': provision http.handlers.mdx_hmac_verify: key 1: is empty (an unset {env.*} variable or an empty {file.*}?)": "mxgate: mdx_hmac verify: key 1: is empty (an unset {env.*} variable or an empty {file.*}?)",
		"position 0: loading module 'mx_auth_attach': provision http.handlers.mx_auth_attach: api_key is empty": "mxgate: mx_auth attach: api_key is empty",
		"provision http.handlers.mx_rate_limit: store redis: bad URL":                                           "mxgate: mx_rate_limit: store redis: bad URL",
		"loading listener wrapper modules: provision caddy.listeners.mx_ip_allow: no ranges":                    "mxgate: mx_ip_allow (listener wrapper): no ranges",
		// `reload` passes on the admin API's JSON answer
		`sending configuration to instance: caddy responded with error: HTTP 400: {"error":"loading config: provision http.handlers.mx_jwe_decrypt: curve \"p999\" unknown"}` + "\n": `mxgate: mx_jwe decrypt: curve "p999" unknown`,
		"Caddyfile:3 - Error during parsing: unrecognized directive: nope": "",
	} {
		if got := summarize(msg); got != want {
			t.Errorf("summarize(%q)\n got %q\nwant %q", msg, got, want)
		}
	}
}

// TestStartupErrorSummary runs `validate` and `run` on a Caddyfile whose
// key is an unset environment variable: each prints the full chain and one
// line naming the directive.
func TestStartupErrorSummary(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "Caddyfile")
	cf := "{\n\tadmin off\n}\nhttp://127.0.0.1:1 {\n\tmdx_hmac verify {\n\t\tkey {env.MXGATE_TEST_UNSET_KEY}\n\t}\n\trespond ok\n}\n"
	if err := os.WriteFile(path, []byte(cf), 0o600); err != nil {
		t.Fatal(err)
	}
	const want = "mxgate: mdx_hmac verify: key 1: is empty (an unset {env.*} variable or an empty {file.*}?)\n"
	env := []string{"MXGATE_TEST_UNSET_KEY=", "HOME=" + dir, "XDG_DATA_HOME=" + dir, "XDG_CONFIG_HOME=" + dir}
	for _, cmd := range []string{"validate", "run"} {
		_, stderr, status := mxgate(t, env, cmd, "--config", path, "--adapter", "caddyfile")
		if status == 0 {
			t.Fatalf("%s succeeded:\n%s", cmd, stderr)
		}
		if !strings.HasSuffix(stderr, want) {
			t.Errorf("%s: stderr does not end with the summary line %q:\n%s", cmd, want, stderr)
		}
		if !strings.Contains(stderr, "loading module 'mdx_hmac_verify': provision http.handlers.mdx_hmac_verify: key 1") {
			t.Errorf("%s: the full chain is gone:\n%s", cmd, stderr)
		}
		if n := strings.Count(stderr, "\nmxgate: "); n != 1 {
			t.Errorf("%s: %d summary lines", cmd, n)
		}
	}
	// a parse error names its line already: no summary
	if err := os.WriteFile(path, []byte("http://127.0.0.1:1 {\n\tno_such_directive\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, status := mxgate(t, env, "validate", "--config", path, "--adapter", "caddyfile")
	if status == 0 || strings.Contains(stderr, "\nmxgate: ") {
		t.Errorf("parse error: status %d, stderr:\n%s", status, stderr)
	}
}
