package e2e

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// exampleDebug turns the example's global log to DEBUG (the example's
// own global log block must be there to be edited).
func exampleDebug(t *testing.T) func(string) string {
	return func(cf string) string {
		const global = "\tlog {\n\t\tformat mxgate_redact\n\t}\n}"
		if !strings.Contains(cf, global) {
			t.Fatal("Caddyfile.example no longer has its global log block with format mxgate_redact")
		}
		return strings.Replace(cf, global, "\tlog {\n\t\tformat mxgate_redact\n\t\tlevel DEBUG\n\t}\n}", 1)
	}
}

// hasLine reports whether a line of logs holds every one of parts.
func hasLine(logs string, parts ...string) bool {
	for _, line := range strings.Split(logs, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}

// scanLogs fails for every secret found in any line of logs, naming the
// line's logger and message, never the secret.
func scanLogs(t *testing.T, logs string, secrets map[string]string) {
	t.Helper()
	for what, s := range secrets {
		if s == "" {
			t.Fatalf("the secret %q of the scan is empty", what)
		}
		for _, line := range strings.Split(logs, "\n") {
			if strings.Contains(line, s) {
				t.Errorf("%s is in a log line: %s", what, describeLine(line))
			}
		}
	}
}

// TestHostileLogs: no credential reaches any log line of the shipped
// example at DEBUG, through any logger (access, error, reverse_proxy,
// mxgate's own), on success or on a 502; and a configuration that would
// log one says so, loudly, at start.
func TestHostileLogs(t *testing.T) {
	t.Parallel()
	t.Run("example", hostileLogsExample)
	t.Run("example_502", hostileLogsExample502)
	t.Run("warnings", hostileLogsWarnings)
	t.Run("log_credentials_on", hostileLogsLogCredentials)
}

// exampleSecrets are the example's demo credentials, which the example's
// logs must never hold.
func exampleSecrets() map[string]string {
	return map[string]string{
		"the MDX HMAC key":       demoKey,
		"the MX API key":         "API-KEY-4567",
		"the Basic value for MX": base64.StdEncoding.EncodeToString([]byte("CLIENT-1234:API-KEY-4567")),
	}
}

func hostileLogsExample(t *testing.T) {
	t.Parallel()
	ports, g, _ := startExample(t, exampleDebug(t))
	mdx := fmt.Sprintf("http://127.0.0.1:%d", ports["8480"])
	secrets := exampleSecrets()
	const session = "sess-3c9f1a7e5b2d4f6a8c0e1b3d5f7a9c2e"
	secrets["an MDX session key sent"] = session

	// a signed session request and a signed accounts request in a session
	for i, r := range []mdxReq{
		{path: "/inst1/sessions", body: sessionXML},
		{method: "GET", path: "/inst1/accounts", session: session},
	} {
		req := r.build(t, mdx)
		secrets[fmt.Sprintf("the MDX-HMAC of request %d", i+1)] = req.Header.Get("MDX-HMAC")
		if status, _, _ := do(t, req); status != 200 {
			t.Fatalf("signed request %d: %d", i+1, status)
		}
	}
	// smuggled copies: a second MDX-HMAC, a spelling with _, a lowercase
	// session key header, credentials the FI never asked for
	req := mdxReq{method: "GET", path: "/inst1/accounts", session: session + "-2"}.build(t, mdx)
	secrets["a second MDX-HMAC value"] = "f00dfacef00dfacef00dfacef00dfacef00dface"
	secrets["an MDX_HMAC value"] = "beefcafebeefcafebeefcafebeefcafebeefcafe"
	secrets["a Bearer token"] = "eyJhbGciOiJQUzI1NiJ9.smuggled-token"
	req.Header.Add("MDX-HMAC", secrets["a second MDX-HMAC value"])
	req.Header["Mdx_hmac"] = []string{secrets["an MDX_HMAC value"]}
	req.Header.Set("Authorization", "Bearer "+secrets["a Bearer token"])
	secrets["the second session key"] = session + "-2"
	do(t, req) // whatever the gateway answers

	// the egress loop: the sidecar attaches Basic credentials, the stand-in
	// checks them; and the stand-in reached directly with them
	if status, _, _ := do(t, mustRequest(t, "GET", fmt.Sprintf("http://127.0.0.1:%d/users", ports["8490"]))); status != 200 {
		t.Fatalf("through the sidecar: %d", status)
	}
	direct := mustRequest(t, "GET", fmt.Sprintf("http://127.0.0.1:%d/users", ports["8491"]))
	direct.SetBasicAuth("CLIENT-1234", "API-KEY-4567")
	if status, _, _ := do(t, direct); status != 200 {
		t.Fatalf("the stand-in with credentials: %d", status)
	}
	wrong := mustRequest(t, "GET", fmt.Sprintf("http://127.0.0.1:%d/users", ports["8491"]))
	wrong.SetBasicAuth("CLIENT-1234", "API-KEY-4567-but-wrong")
	do(t, wrong)

	waitForLog(t, g, `"upstream roundtrip"`)
	logs := g.Stderr.String()
	// the lines that record the headers are there, or the scan proves nothing
	for _, proof := range [][]string{
		{`"upstream roundtrip"`, `"Mdx-Hmac":`, `"Mdx-Session-Key":`},
		{`"handled request"`, `"Mdx-Hmac":`, `"Mdx-Session-Key":`},
		{`"handled request"`, `"Mdx_hmac":`},
		{`"handled request"`, `"Authorization":`},
	} {
		if !hasLine(logs, proof...) {
			t.Errorf("no log line holds all of %q: the scan would prove nothing", proof)
		}
	}
	scanLogs(t, logs, secrets)
	if strings.Contains(logs, "SECRETS WILL BE LOGGED") {
		t.Error("the example warns that it logs secrets")
	}
}

func hostileLogsExample502(t *testing.T) {
	t.Parallel()
	dead := freePort(t) // nothing listens there
	ports, g, _ := startExample(t, exampleDebug(t), func(cf string) string {
		const proxy = "reverse_proxy 127.0.0.1:8481"
		if !strings.Contains(cf, proxy) {
			t.Fatal("Caddyfile.example no longer proxies the MDX site to 127.0.0.1:8481")
		}
		return strings.Replace(cf, proxy, fmt.Sprintf("reverse_proxy 127.0.0.1:%d", dead), 1)
	})
	mdx := fmt.Sprintf("http://127.0.0.1:%d", ports["8480"])
	secrets := exampleSecrets()
	const session = "sess-9b7d5f3a1c8e6b4d2f0a9c7e5b3d1f8a"
	secrets["an MDX session key sent"] = session
	req := mdxReq{method: "GET", path: "/inst1/accounts", session: session}.build(t, mdx)
	secrets["the MDX-HMAC"] = req.Header.Get("MDX-HMAC")
	req.Header.Set("Proxy-Authorization", "Basic cHJveHk6c2VjcmV0LXByb3h5LXZhbHVl")
	secrets["a Proxy-Authorization value"] = "cHJveHk6c2VjcmV0LXByb3h5LXZhbHVl"
	if status, _, _ := do(t, req); status != http.StatusBadGateway {
		t.Fatalf("a signed request to a dead upstream: %d", status)
	}
	waitForLog(t, g, `"logger":"http.log.error`)
	logs := g.Stderr.String()
	if !hasLine(logs, `"logger":"http.log.error`, `"Mdx-Hmac":`, `"Mdx-Session-Key":`, `"Proxy-Authorization":`) {
		t.Error("the error line does not hold the request's headers: the scan would prove nothing")
	}
	scanLogs(t, logs, secrets)
}

// hostileLogsWarnings: a credential directive in a configuration whose
// logs would record its headers warns at start; one whose logs redact, or
// a filter that deletes them, does not.
func hostileLogsWarnings(t *testing.T) {
	t.Parallel()
	site := func(logBlock, servers, directive string) string {
		return fmt.Sprintf(`{
	admin {ADMIN}
	%s
	%s
}
http://127.0.0.1:%d {
	%s
	respond ok
}
`, logBlock, servers, freePort(t), directive)
	}
	const (
		mdxVerify = "mdx_hmac verify {\n\t\tkey {env.E2E_MDX_KEY}\n\t}"
		authCheck = "mx_auth check {\n\t\tclient c {env.E2E_MDX_KEY}\n\t}"
		redact    = "log {\n\t\tformat mxgate_redact\n\t}"
		json      = "log {\n\t\tformat json\n\t}"
		filter    = "log {\n\t\tformat filter {\n\t\t\trequest>headers>Mdx-Hmac delete\n\t\t\trequest>headers>Mdx-Session-Key delete\n\t\t}\n\t}"
		logCreds  = "servers {\n\t\tlog_credentials\n\t}"
	)
	for _, c := range []struct {
		name                         string
		logBlock, servers, directive string
		warn                         string // "" for none
	}{
		{"mdx_hmac_with_default_encoder_warns", "", "", mdxVerify, "Mdx-Hmac, Mdx-Session-Key"},
		{"mdx_hmac_with_json_warns", json, "", mdxVerify, "Mdx-Hmac, Mdx-Session-Key"},
		{"mdx_hmac_with_mxgate_redact_is_quiet", redact, "", mdxVerify, ""},
		{"mdx_hmac_with_deleting_filter_is_quiet", filter, "", mdxVerify, ""},
		{"mx_auth_with_caddys_own_redaction_is_quiet", json, "", authCheck, ""},
		{"mx_auth_with_log_credentials_warns", json, logCreds, authCheck, "Authorization"},
		{"mx_auth_with_log_credentials_and_mxgate_redact_is_quiet", redact, logCreds, authCheck, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			g := startGateway(t, site(c.logBlock, c.servers, c.directive), "E2E_MDX_KEY="+demoKey)
			logs := g.Stderr.String()
			warned := strings.Contains(logs, "SECRETS WILL BE LOGGED")
			switch {
			case c.warn == "" && warned:
				t.Error("warned, though the logs redact")
			case c.warn != "" && !strings.Contains(logs, "SECRETS WILL BE LOGGED: "):
				t.Error("no warning")
			case c.warn != "" && !strings.Contains(logs, "credentials in "+c.warn+","):
				t.Errorf("the warning does not name %s", c.warn)
			}
		})
	}
	// a site access log without the encoder is caught too
	t.Run("site_access_log_with_json_warns", func(t *testing.T) {
		t.Parallel()
		g := startGateway(t, fmt.Sprintf(`{
	admin {ADMIN}
	log {
		format mxgate_redact
	}
}
http://127.0.0.1:%d {
	log {
		format json
	}
	mdx_hmac verify {
		key {env.E2E_MDX_KEY}
	}
	respond ok
}
`, freePort(t)), "E2E_MDX_KEY="+demoKey)
		if !strings.Contains(g.Stderr.String(), "SECRETS WILL BE LOGGED") || !strings.Contains(g.Stderr.String(), `"loggers":["http.log.access"]`) {
			t.Error("a site log with plain json went unnoticed")
		}
	})
}

// hostileLogsLogCredentials: with the server's log_credentials on, Caddy
// stops redacting Authorization; mxgate_redact still does, in the access
// log, reverse_proxy's debug lines and the error log.
func hostileLogsLogCredentials(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, nil)
	port, dead := freePort(t), freePort(t)
	g := startGateway(t, fmt.Sprintf(`{
	admin {ADMIN}
	log {
		level DEBUG
		format mxgate_redact
	}
	servers {
		log_credentials
	}
}
http://127.0.0.1:%d {
	log {
		format mxgate_redact
	}
	handle /dead {
		reverse_proxy 127.0.0.1:%d
	}
	handle {
		mx_auth check {
			client %s {env.E2E_SECRET}
			keep_credentials
		}
		reverse_proxy %s
	}
}
`, port, dead, hostileID, up.hostPort()), "E2E_SECRET="+hostileSecret)
	good := basicOf(hostileID, hostileSecret)
	if status, _, _ := send(t, "GET", fmt.Sprintf("http://127.0.0.1:%d/users", port), good); status != 200 {
		t.Fatalf("good credentials: %d", status)
	}
	if status, _, _ := send(t, "GET", fmt.Sprintf("http://127.0.0.1:%d/dead", port), good); status != 502 {
		t.Fatalf("to a dead upstream: %d", status)
	}
	waitForLog(t, g, `"logger":"http.log.error`)
	logs := g.Stderr.String()
	for _, proof := range [][]string{
		{`"upstream roundtrip"`, `"Authorization":`},
		{`"handled request"`, `"Authorization":`},
		{`"logger":"http.log.error`, `"Authorization":`},
	} {
		if !hasLine(logs, proof...) {
			t.Errorf("no log line holds all of %q: the scan would prove nothing", proof)
		}
	}
	scanLogs(t, logs, map[string]string{
		"the secret":      hostileSecret,
		"the Basic value": strings.TrimPrefix(good, "Basic "),
	})
}
