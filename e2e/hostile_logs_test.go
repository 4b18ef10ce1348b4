package e2e

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
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
	t.Run("unnamed_encoders_redact", hostileLogsUnnamedEncoders)
	t.Run("json_config_redacts", hostileLogsJSONConfig)
	t.Run("every_way_of_loading_redacts", hostileLogsLoadPaths)
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
		{"mdx_hmac_with_no_log_block_is_quiet", "", "", mdxVerify, ""},
		{"mdx_hmac_with_unnamed_encoder_is_quiet", "log {\n\t\tlevel DEBUG\n\t}", "", mdxVerify, ""},
		{"mdx_hmac_with_json_warns", json, "", mdxVerify, "Mdx-Hmac, Mdx-Session-Key"},
		{"mdx_hmac_with_mxgate_redact_is_quiet", redact, "", mdxVerify, ""},
		{"mdx_hmac_with_deleting_filter_is_quiet", filter, "", mdxVerify, ""},
		{"mx_auth_with_caddys_own_redaction_is_quiet", json, "", authCheck, ""},
		{"mx_auth_with_log_credentials_warns", json, logCreds, authCheck, "Authorization"},
		{"mx_auth_with_log_credentials_and_mxgate_redact_is_quiet", redact, logCreds, authCheck, ""},
		{"mx_auth_with_log_credentials_and_no_log_block_is_quiet", "", logCreds, authCheck, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			g := startGateway(t, site(c.logBlock, c.servers, c.directive), "E2E_MDX_KEY="+demoKey)
			settled(t, g, 1)
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
		settled(t, g, 1)
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

// logSecrets are the credentials a hostile-logs request carries, and
// setCredentials puts them on req: a signed request's MDX-HMAC (read from
// req), its session key, and a bearer token.
func setCredentials(t *testing.T, req *http.Request, secrets map[string]string, n int) {
	t.Helper()
	secrets[fmt.Sprintf("the MDX-HMAC of request %d", n)] = req.Header.Get("MDX-HMAC")
	secrets[fmt.Sprintf("the MDX session key of request %d", n)] = req.Header.Get("MDX-Session-Key")
	token := fmt.Sprintf("eyJhbGciOiJQUzI1NiJ9.bearer-of-request-%d-c2VjcmV0", n)
	secrets[fmt.Sprintf("the bearer token of request %d", n)] = token
	req.Header.Set("Authorization", "Bearer "+token)
}

// readLog returns the file at path, "" if it does not exist yet.
func readLog(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return string(b)
}

// waitForLine waits until a line of what read returns holds every one of
// parts.
func waitForLine(t *testing.T, what string, read func() string, parts ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !hasLine(read(), parts...) {
		if time.Now().After(deadline) {
			t.Fatalf("no line of %s holds all of %q", what, parts)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// hostileLogsUnnamedEncoders: a configuration that names no encoder
// anywhere (a site's plain `log`, which writes to the default log on
// stderr, a site's `log` to a file, and the global `debug` that sends
// reverse_proxy's lines to the default log; then the same with a global
// named log to a file that takes the error log from the default), with
// log_credentials on so that Caddy itself redacts nothing: no MDX-HMAC,
// session key or bearer token reaches stderr or a file, on a proxied
// request or on a 502; the lines are there with REDACTED; the upstream
// gets the headers intact; and nothing warns.
func hostileLogsUnnamedEncoders(t *testing.T) {
	t.Parallel()
	t.Run("default_log", func(t *testing.T) { t.Parallel(); hostileLogsUnnamed(t, false) })
	t.Run("named_error_log_to_a_file", func(t *testing.T) { t.Parallel(); hostileLogsUnnamed(t, true) })
}

func hostileLogsUnnamed(t *testing.T, errorsToFile bool) {
	up := newUpstream(t, nil)
	dir := t.TempDir()
	errorsLog, accessLog := filepath.Join(dir, "errors.log"), filepath.Join(dir, "access.log")
	global := ""
	if errorsToFile {
		global = fmt.Sprintf("log errors {\n\t\toutput file %s\n\t\tinclude http.log.error\n\t}", errorsLog)
	}
	plain, toFile, dead := freePort(t), freePort(t), freePort(t)
	g := startGateway(t, fmt.Sprintf(`{
	admin {ADMIN}
	debug
	%s
	servers {
		log_credentials
	}
}
http://127.0.0.1:%d {
	log
	mdx_hmac verify {
		key {env.E2E_MDX_KEY}
	}
	reverse_proxy %s
}
http://127.0.0.1:%d {
	log {
		output file %s
	}
	mdx_hmac verify {
		key {env.E2E_MDX_KEY}
	}
	reverse_proxy 127.0.0.1:%d
}
`, global, plain, up.hostPort(), toFile, accessLog, dead), "E2E_MDX_KEY="+demoKey)

	secrets := map[string]string{"the MDX HMAC key": demoKey}
	ok := mdxReq{method: "GET", path: "/inst1/accounts", session: "sess-7e1c9a3f5b8d2e4a6c0f1b3d5e7a9c2f"}.build(t, fmt.Sprintf("http://127.0.0.1:%d", plain))
	setCredentials(t, ok, secrets, 1)
	if status, _, _ := do(t, ok); status != http.StatusOK {
		t.Fatalf("a signed request proxied: %d", status)
	}
	got := expectReceived(t, up, 1, "the proxied request")[0].Header
	if got.Get("MDX-HMAC") != ok.Header.Get("MDX-HMAC") || got.Get("MDX-Session-Key") != ok.Header.Get("MDX-Session-Key") || got.Get("Authorization") != ok.Header.Get("Authorization") {
		t.Error("the upstream did not get the credentials as sent: redaction must touch only the logs")
	}
	bad := mdxReq{method: "GET", path: "/inst1/accounts", session: "sess-2d4f6a8c0e1b3d5f7a9c2e4b6d8f0a1c"}.build(t, fmt.Sprintf("http://127.0.0.1:%d", toFile))
	setCredentials(t, bad, secrets, 2)
	if status, _, _ := do(t, bad); status != http.StatusBadGateway {
		t.Fatalf("a signed request to a dead upstream: %d", status)
	}

	all := []string{"Mdx-Hmac", "Mdx-Session-Key", "Authorization"}
	logs := map[string]func() string{"stderr": g.Stderr.String, "access.log": func() string { return readLog(t, accessLog) }}
	proofs := []logProof{
		{"stderr", []string{`"upstream roundtrip"`, `"status":200`}, all},
		{"stderr", []string{`"handled request"`, `"logger":"http.log.access`, `"status":200`}, all},
		{"access.log", []string{`"handled request"`, `"status":502`}, all},
	}
	errorLine := logProof{"stderr", []string{`"logger":"http.log.error`, `"status":502`}, all}
	if errorsToFile {
		errorLine.what, logs["errors.log"] = "errors.log", func() string { return readLog(t, errorsLog) }
	}
	checkRedacted(t, secrets, logs, append(proofs, errorLine))
	if strings.Contains(g.Stderr.String(), "SECRETS WILL BE LOGGED") {
		t.Error("warned, though no log writes a credential")
	}
}

// settled waits until the gateway has run loads configurations (Caddy
// logs "autosaved config" once each is running): whatever their
// provisioning logged, a warning among it, is then in g.Stderr.
func settled(t *testing.T, g *gateway, loads int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for strings.Count(g.Stderr.String(), "autosaved config") < loads {
		if time.Now().After(deadline) {
			t.Fatalf("the gateway has not run %d configuration(s):\n%s", loads, g.Stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// logProof is a line that must be in a log (what) for a scan of it to
// prove anything: one that holds every one of parts and records each of
// headers.
type logProof struct {
	what           string
	parts, headers []string
}

// checkRedacted waits for every proof's line (holding the headers'
// names), then fails for every secret in any of logs, and for every proof
// whose headers are not all REDACTED on one line.
func checkRedacted(t *testing.T, secrets map[string]string, logs map[string]func() string, proofs []logProof) {
	t.Helper()
	for _, p := range proofs {
		parts := slices.Clone(p.parts)
		for _, h := range p.headers {
			parts = append(parts, `"`+h+`":[`)
		}
		waitForLine(t, p.what, logs[p.what], parts...)
	}
	for what, read := range logs {
		t.Run("scan_"+what, func(t *testing.T) { scanLogs(t, read(), secrets) })
	}
	for _, p := range proofs {
		parts := slices.Clone(p.parts)
		for _, h := range p.headers {
			parts = append(parts, `"`+h+`":["REDACTED"]`)
		}
		if !hasLine(logs[p.what](), parts...) {
			t.Errorf("no line of %s holds all of %q", p.what, parts)
		}
	}
}

// hostileLogsJSONConfig: a JSON configuration given with --config and no
// adapter, whose logs name no encoder (the default at DEBUG, an access log
// to a file), with log_credentials on: no credential reaches stderr or the
// file, on a proxied request or a 502, and the lines are there.
func hostileLogsJSONConfig(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, nil)
	dir := t.TempDir()
	admin := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	accessLog := filepath.Join(dir, "access.log")
	port, dead := freePort(t), freePort(t)
	config := fmt.Sprintf(`{
	"admin": {"listen": %q},
	"logging": {"logs": {
		"default": {"level": "DEBUG", "exclude": ["http.log.access"]},
		"access": {"writer": {"output": "file", "filename": %q}, "include": ["http.log.access"]}
	}},
	"apps": {"http": {"servers": {"mdx": {
		"listen": ["127.0.0.1:%d"],
		"logs": {"should_log_credentials": true},
		"routes": [
			{"match": [{"path": ["/dead/*"]}], "handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": "127.0.0.1:%d"}]}]},
			{"handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": %q}]}]}
		]
	}}}}
}
`, admin, accessLog, port, dead, up.hostPort())
	path := filepath.Join(dir, "mxgate.json")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	g := startGatewayCmd(t, mxgateRun(t, dir, "--config", path), admin)

	secrets := map[string]string{}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	ok := mdxReq{method: "GET", path: "/inst1/accounts", session: "sess-5a7c9e1b3d5f7a9c2e4b6d8f0a1c3e5b"}.build(t, base)
	setCredentials(t, ok, secrets, 1)
	if status, _, _ := do(t, ok); status != http.StatusOK {
		t.Fatalf("a request proxied: %d", status)
	}
	if got := expectReceived(t, up, 1, "the proxied request")[0].Header; got.Get("MDX-HMAC") != ok.Header.Get("MDX-HMAC") {
		t.Error("the upstream did not get MDX-HMAC as sent")
	}
	bad := mdxReq{method: "GET", path: "/dead/inst1/accounts", session: "sess-8c0e2a4c6e8a0c2e4a6c8e0a2c4e6a8c"}.build(t, base)
	setCredentials(t, bad, secrets, 2)
	if status, _, _ := do(t, bad); status != http.StatusBadGateway {
		t.Fatalf("a request to a dead upstream: %d", status)
	}

	all := []string{"Mdx-Hmac", "Mdx-Session-Key", "Authorization"}
	checkRedacted(t, secrets, map[string]func() string{"stderr": g.Stderr.String, "access.log": func() string { return readLog(t, accessLog) }}, []logProof{
		{"stderr", []string{`"upstream roundtrip"`}, all},
		{"stderr", []string{`"logger":"http.log.error`}, all},
		{"access.log", []string{`"handled request"`, `"status":200`}, all},
		{"access.log", []string{`"handled request"`, `"status":502`}, all},
	})
}

// mxgateRun is `mxgate run` with args in dir, which is also its home.
func mxgateRun(t *testing.T, dir string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"run"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"HOME="+dir, "XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
	return cmd
}

// logEncoders returns the encoder of every log in the running
// configuration of the gateway whose admin endpoint is admin, by name.
func logEncoders(t *testing.T, admin string) map[string]string {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/config/logging/logs/")
	if err != nil {
		return nil // between two configurations: ask again
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return map[string]string{} // no logs configured
	}
	var logs map[string]struct {
		Encoder json.RawMessage `json:"encoder"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&logs); err != nil {
		return nil
	}
	out := map[string]string{}
	for name, l := range logs {
		var enc struct {
			Format string `json:"format"`
		}
		_ = json.Unmarshal(l.Encoder, &enc)
		out[name] = enc.Format
	}
	return out
}

// waitForEncoders waits until the running configuration's logs have the
// encoders of want, by name, and no others.
func waitForEncoders(t *testing.T, g *gateway, want map[string]string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := logEncoders(t, g.admin)
		if maps.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the logs' encoders are %v, want %v\n%s", got, want, g.Stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// hostileLogsLoadPaths: every way mxgate's commands load a configuration
// gives each log that names no encoder mxgate_redact: a Caddyfile named
// as one with no --adapter, the adjacent Caddyfile with no --config,
// `mxgate reload`, SIGUSR1, --watch, --resume, and the admin API with
// text/mxgate-caddyfile. The admin API with text/caddyfile is Caddy's
// own adapter: the logs keep Caddy's encoder, and the warning says so.
func hostileLogsLoadPaths(t *testing.T) {
	t.Parallel()
	// site writes a Caddyfile whose logs name no encoder: the default and,
	// with access, a site's access log to a file
	site := func(dir, admin string, access bool) string {
		log := ""
		if access {
			log = fmt.Sprintf("log {\n\t\toutput file %s\n\t}", filepath.Join(dir, "access.log"))
		}
		return fmt.Sprintf(`{
	admin %s
}
http://127.0.0.1:%d {
	%s
	mdx_hmac verify {
		key {env.E2E_MDX_KEY}
	}
	respond ok
}
`, admin, freePort(t), log)
	}
	write := func(t *testing.T, path, content string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	start := func(t *testing.T, file string, args ...string) (*gateway, string, string) {
		t.Helper()
		dir := t.TempDir()
		admin := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		write(t, filepath.Join(dir, file), site(dir, admin, false))
		cmd := mxgateRun(t, dir, args...)
		cmd.Env = append(cmd.Env, "E2E_MDX_KEY="+demoKey)
		return startGatewayCmd(t, cmd, admin), dir, admin
	}
	defaultOnly := map[string]string{"default": "mxgate_redact"}
	withAccess := map[string]string{"default": "mxgate_redact", "log0": "mxgate_redact"}
	quiet := func(t *testing.T, g *gateway, loads int) {
		t.Helper()
		settled(t, g, loads)
		if strings.Contains(g.Stderr.String(), "SECRETS WILL BE LOGGED") {
			t.Error("warned, though the logs redact")
		}
	}

	t.Run("caddyfile_named_as_one_without_adapter", func(t *testing.T) {
		t.Parallel()
		g, _, _ := start(t, "site.caddyfile", "--config", "site.caddyfile")
		waitForEncoders(t, g, defaultOnly)
		quiet(t, g, 1)
	})
	t.Run("adjacent_caddyfile_without_config", func(t *testing.T) {
		t.Parallel()
		g, _, _ := start(t, "Caddyfile")
		waitForEncoders(t, g, defaultOnly)
		quiet(t, g, 1)
	})
	t.Run("reload_command", func(t *testing.T) {
		t.Parallel()
		g, dir, admin := start(t, "Caddyfile", "--config", "Caddyfile", "--adapter", "caddyfile")
		g.reload(t, site(dir, admin, true))
		waitForEncoders(t, g, withAccess)
		quiet(t, g, 2)
	})
	t.Run("sigusr1", func(t *testing.T) {
		t.Parallel()
		g, dir, admin := start(t, "Caddyfile", "--config", "Caddyfile")
		write(t, filepath.Join(dir, "Caddyfile"), site(dir, admin, true))
		if err := g.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
			t.Fatal(err)
		}
		waitForEncoders(t, g, withAccess)
		waitForLog(t, g, "successfully reloaded config from file")
		quiet(t, g, 2)
	})
	t.Run("watch", func(t *testing.T) {
		t.Parallel()
		g, dir, admin := start(t, "Caddyfile", "--config", "Caddyfile", "--watch")
		waitForLog(t, g, "watching config file for changes")
		write(t, filepath.Join(dir, "Caddyfile"), site(dir, admin, true))
		waitForEncoders(t, g, withAccess)
		quiet(t, g, 2)
	})
	t.Run("resume", func(t *testing.T) {
		t.Parallel()
		g, dir, admin := start(t, "Caddyfile", "--config", "Caddyfile")
		waitForEncoders(t, g, defaultOnly)
		quiet(t, g, 1) // and the autosave is written
		g.stop()
		// the autosave is what ran; the Caddyfile is no longer read
		write(t, filepath.Join(dir, "Caddyfile"), "not a Caddyfile {")
		cmd := mxgateRun(t, dir, "--resume")
		cmd.Env = append(cmd.Env, "E2E_MDX_KEY="+demoKey)
		g = startGatewayCmd(t, cmd, admin)
		waitForEncoders(t, g, defaultOnly)
		waitForLog(t, g, "resuming from last configuration")
		quiet(t, g, 1)
	})
	load := func(t *testing.T, g *gateway, contentType, body string) {
		t.Helper()
		resp, err := http.Post("http://"+g.admin+"/load", contentType, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST /load: %d %s", resp.StatusCode, msg)
		}
	}
	t.Run("admin_api_mxgate_caddyfile", func(t *testing.T) {
		t.Parallel()
		g, dir, admin := start(t, "Caddyfile", "--config", "Caddyfile")
		load(t, g, "text/mxgate-caddyfile", site(dir, admin, true))
		waitForEncoders(t, g, withAccess)
		quiet(t, g, 2)
	})
	t.Run("admin_api_caddyfile_is_caddys_and_warns", func(t *testing.T) {
		t.Parallel()
		g, dir, admin := start(t, "Caddyfile", "--config", "Caddyfile")
		load(t, g, "text/caddyfile", site(dir, admin, true))
		waitForEncoders(t, g, map[string]string{"default": "", "log0": ""})
		waitForLog(t, g, "SECRETS WILL BE LOGGED: mdx_hmac verify handles credentials in Mdx-Hmac, Mdx-Session-Key,")
	})
}
