package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mxgate/mxgate/jwe"
)

const (
	clientID  = "CLIENT-1234"
	apiKey    = "API-KEY-4567-not-a-real-key"
	basicWant = "Basic " // + base64(clientID:apiKey), computed below
	userJSON  = `{"users":[{"guid":"USR-123","email":"marker-7d1e@example.com"}]}`
)

var egressEnv = []string{"E2E_MX_CLIENT_ID=" + clientID, "E2E_MX_API_KEY=" + apiKey}

func basicAuth() string {
	return basicWant + base64.StdEncoding.EncodeToString([]byte(clientID+":"+apiKey))
}

// egressGateway starts a sidecar: attach, retry, decrypt, proxy to up.
func egressGateway(t *testing.T, up string, attachExtra, decryptExtra string) (string, *gateway) {
	t.Helper()
	port := freePort(t)
	g := startGateway(t, fmt.Sprintf(`{
	admin {ADMIN}
	log {
		level DEBUG
	}
}
http://127.0.0.1:%d {
	mx_auth attach {
		client_id {env.E2E_MX_CLIENT_ID}
		api_key {env.E2E_MX_API_KEY}
		%s
	}
	mx_retry {
		base_delay 20ms
		max_delay 100ms
		max_time 3s
	}
	mx_jwe decrypt {
		%s
	}
	reverse_proxy %s
}
`, port, attachExtra, decryptExtra, up), egressEnv...)
	return fmt.Sprintf("http://127.0.0.1:%d", port), g
}

// encryptingMX answers like MX: it encrypts userJSON to the X-Public-Key
// the request carries, with the suite its Content-Type names.
func encryptingMX(w http.ResponseWriter, r *http.Request) {
	c, _, ok, err := jwe.CipherFromContentType(r.Header.Get("Content-Type"))
	pub, _, perr := jwe.ParsePublicKeyHeader(r.Header.Get("X-Public-Key"))
	if !ok || err != nil || perr != nil {
		w.WriteHeader(http.StatusPreconditionFailed)
		io.WriteString(w, `{"error":{"message":"Error processing parameters"}}`)
		return
	}
	compact, _ := jwe.Encrypt(pub, jwe.SuiteFor(c), []byte(userJSON))
	w.Header().Set("Content-Type", "application/jose")
	io.WriteString(w, compact)
}

func TestEgressHeadersOnTheWire(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		version, extra, accept, acceptVersion string
	}{
		{"v20111101", "", "application/vnd.mx.api.v1+json", ""},
		{"v20111101", "api_version v20111101", "application/vnd.mx.api.v1+json", ""},
		{"v20250224", "api_version v20250224", "application/json", "v20250224"},
	} {
		t.Run(c.version, func(t *testing.T) {
			up := newUpstream(t, encryptingMX)
			base, _ := egressGateway(t, up.hostPort(), c.extra, "")
			req := mustRequest(t, "GET", base+"/users?page=1")
			req.Header.Set("Authorization", "Bearer app-token-should-vanish")
			status, hdr, body := do(t, req)
			if status != 200 || body != userJSON || hdr.Get("Content-Type") != "application/json" || hdr.Get("Content-Length") != fmt.Sprint(len(userJSON)) {
				t.Fatalf("app got %d %v %q", status, hdr, body)
			}
			for k, vs := range hdr {
				for _, v := range vs {
					if strings.Contains(v, apiKey) || strings.Contains(v, strings.TrimPrefix(basicAuth(), "Basic ")) {
						t.Errorf("the answer to the app carries a secret in %s", k)
					}
				}
			}
			got := up.Requests()[0]
			if got.URI != "/users?page=1" {
				t.Errorf("URI %q", got.URI)
			}
			if a := got.Header.Values("Authorization"); len(a) != 1 || a[0] != basicAuth() {
				t.Errorf("Authorization on the wire: %q", a)
			}
			if got.Header.Get("Accept") != c.accept || got.Header.Get("Accept-Version") != c.acceptVersion {
				t.Errorf("Accept %q, Accept-Version %q", got.Header.Get("Accept"), got.Header.Get("Accept-Version"))
			}
			if got.Header.Get("Content-Type") != "application/encrypted.a256gcm+json" {
				t.Errorf("Content-Type %q", got.Header.Get("Content-Type"))
			}
			if _, curve, err := jwe.ParsePublicKeyHeader(got.Header.Get("X-Public-Key")); err != nil || curve != jwe.P384 {
				t.Errorf("X-Public-Key: %v %v", curve, err)
			}
			// the app's own Accept is kept
			req = mustRequest(t, "GET", base+"/users")
			req.Header.Set("Accept", "application/vnd.mx.api.v1+json; q=1")
			do(t, req)
			if a := up.Requests()[1].Header.Get("Accept"); a != "application/vnd.mx.api.v1+json; q=1" {
				t.Errorf("app's Accept replaced: %q", a)
			}
		})
	}
}

func TestEgressDecryptsEveryCipherAndCurve(t *testing.T) {
	t.Parallel()
	for _, c := range []string{"curve p256\n\t\tcipher a128gcm", "curve p384\n\t\tcipher a128gcm", "curve p256", ""} {
		up := newUpstream(t, encryptingMX)
		base, _ := egressGateway(t, up.hostPort(), "", c)
		body := `{"user":{"email":"x@example.com"}}`
		req, _ := http.NewRequest("PUT", base+"/users/USR-1", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		status, _, got := do(t, req)
		if status != 200 || got != userJSON {
			t.Fatalf("%q: %d %q", c, status, got)
		}
		if b := string(up.Requests()[0].Body); b != body {
			t.Fatalf("%q: the app's body reached MX as %q", c, b)
		}
	}
}

func TestEgressReplyHandling(t *testing.T) {
	t.Parallel()
	var mode atomic.Value
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		switch mode.Load().(string) {
		case "412":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusPreconditionFailed)
			io.WriteString(w, `{"error":{"message":"Unsupported curve: secp521r1"}}`)
		case "garbage-jose":
			w.Header().Set("Content-Type", "application/jose")
			io.WriteString(w, "eyJhbGciOiJFQ0RILUVTK0EyNTZLVyJ9.AAAA.AAAA.AAAA.AAAA")
		case "wrong-key":
			k, _ := jwe.GenerateKey(jwe.P384)
			pub, _, _ := jwe.ParsePublicKeyHeader(k.PublicKeyHeader())
			compact, _ := jwe.Encrypt(pub, jwe.SuiteFor(jwe.A256GCM), []byte(userJSON))
			io.WriteString(w, compact) // no content type: the shape gives it away
		case "plain":
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"status":"plain"}`)
		}
	})
	base, _ := egressGateway(t, up.hostPort(), "", "")
	for m, want := range map[string]struct {
		status int
		body   string
	}{
		"412":          {412, `{"error":{"message":"Unsupported curve: secp521r1"}}`},
		"plain":        {502, `{"error":{"message":"Bad gateway: the upstream reply was not encrypted"}}`},
		"garbage-jose": {502, `{"error":{"message":"Bad gateway: the upstream reply claims to be encrypted but could not be decrypted"}}`},
		"wrong-key":    {502, `{"error":{"message":"Bad gateway: the upstream reply claims to be encrypted but could not be decrypted"}}`},
	} {
		mode.Store(m)
		status, _, body := do(t, mustRequest(t, "POST", base+"/users"))
		if status != want.status || body != want.body {
			t.Errorf("%s: %d %q, want %d %q", m, status, body, want.status, want.body)
		}
	}
}

func TestEgressRetries(t *testing.T) {
	var calls atomic.Int32
	var retryAfter atomic.Value
	retryAfter.Store("")
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		if n <= 2 {
			if ra := retryAfter.Load().(string); ra != "" {
				w.Header().Set("Retry-After", ra)
			}
			w.Header().Set("X-Attempt", fmt.Sprint(n))
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, `{"error":{"message":"Too Many Requests"}}`)
			return
		}
		encryptingMX(w, r)
	})
	base, g := egressGateway(t, up.hostPort(), "", "")

	// GET: two 429s, then the answer
	status, hdr, body := do(t, mustRequest(t, "GET", base+"/users"))
	if status != 200 || body != userJSON || calls.Load() != 3 {
		t.Fatalf("GET: %d %q after %d calls", status, body, calls.Load())
	}
	if len(hdr.Values("X-Attempt")) != 0 {
		t.Fatalf("headers of a discarded 429 leaked into the answer: %v", hdr)
	}

	// with Retry-After: 1, the waits are a second each (as the retries'
	// log lines say: the gateway's decision, not the machine's speed)
	calls.Store(0)
	retryAfter.Store("1")
	before := len(retryDelays(t, g))
	req, _ := http.NewRequest("DELETE", base+"/users/USR-1", nil)
	status, _, _ = do(t, req)
	if status != 200 || calls.Load() != 3 {
		t.Fatalf("DELETE with Retry-After: %d after %d calls", status, calls.Load())
	}
	if delays := retryDelays(t, g)[before:]; len(delays) != 2 || delays[0] != 1 || delays[1] != 1 {
		t.Fatalf("DELETE with Retry-After 1: retried after %v seconds, want [1 1]", delays)
	}

	// Retry-After beyond max_time: MX's answer comes back without a retry
	// (and without waiting: mx_retry's TestRetryAfterHonoured, whose
	// delays are an hour)
	calls.Store(0)
	retryAfter.Store("30")
	status, hdr, _ = do(t, mustRequest(t, "GET", base+"/users"))
	if status != 429 || calls.Load() != 1 || hdr.Get("Retry-After") != "30" {
		t.Fatalf("Retry-After 30 with max_time 3s: %d after %d calls", status, calls.Load())
	}

	// POST is never retried
	calls.Store(0)
	retryAfter.Store("")
	status, _, body = do(t, mustRequest(t, "POST", base+"/users"))
	if status != 429 || calls.Load() != 1 || body != `{"error":{"message":"Too Many Requests"}}` {
		t.Fatalf("POST: %d %q after %d calls", status, body, calls.Load())
	}
}

// retryDelays returns the delay, in seconds, of every retry mx_retry has
// logged so far (its "retrying" lines, at DEBUG).
func retryDelays(t *testing.T, g *gateway) []float64 {
	t.Helper()
	var delays []float64
	for _, line := range strings.Split(g.Stderr.String(), "\n") {
		var m struct {
			Msg   string   `json:"msg"`
			Delay *float64 `json:"delay"`
		}
		if json.Unmarshal([]byte(line), &m) != nil || m.Msg != "retrying" {
			continue
		}
		if m.Delay == nil {
			t.Fatalf("a retry's log line has no delay: %s", describeLine(line))
		}
		delays = append(delays, *m.Delay)
	}
	return delays
}

// standIn starts a serving-side mxgate: mx_auth check and mx_jwe encrypt
// in front of canned JSON, as Caddyfile.example's stand-in for MX; with
// users set, /users is proxied there instead of canned, so that the body
// appears nowhere in the configuration.
func standIn(t *testing.T, checkExtra string, users ...string) (string, *gateway) {
	t.Helper()
	port := freePort(t)
	usersRoute := "respond `" + userJSON + "`"
	if len(users) == 1 {
		usersRoute = "reverse_proxy " + users[0]
	}
	g := startGateway(t, fmt.Sprintf(`{
	admin {ADMIN}
	log {
		level DEBUG
	}
}
http://127.0.0.1:%d {
	mx_auth check {
		client {env.E2E_MX_CLIENT_ID} {env.E2E_MX_API_KEY}
		client other-client $2a$04$.3d55kpi.0vM7LgTsQuZ.erBtTRG6mxOvom8ELajDXVNDQI6AnUGa
		%s
	}
	mx_jwe encrypt
	handle /users {
		header Content-Type application/vnd.mx.api.v1+json
		%s
	}
	handle {
		respond `+"`"+`{"error":{"message":"Not Found"}}`+"`"+` 404
	}
}
`, port, checkExtra, usersRoute), egressEnv...)
	return fmt.Sprintf("http://127.0.0.1:%d", port), g
}

func TestStandInEncryptionRefusals(t *testing.T) {
	t.Parallel()
	base, _ := standIn(t, "")
	k, _ := jwe.GenerateKey(jwe.P384)
	p521 := "MIGbMBAGByqGSM49AgEGBSuBBAAjA4GGAAQBgc4HZz+/fBbC7lmEww0AO3NK9wVZPDZ0VEnsaUFLEYpTzb90nITtJUcPUbvOsdZIZ1Q8fnbquAYgxXL5UgHMoywAib476MkyyYgPk0BXZq3mq4zImTRNuaU9slj9TVJ3ScT3L1bXwVuPJDzpr5GOFpaj+WwMAl8G7CqwoJOsW7Kddns="
	for name, c := range map[string]struct{ ctype, key, msg string }{
		"invalid key":        {"application/encrypted.a256gcm+json", "bm90IGEga2V5", "Invalid public key"},
		"unsupported curve":  {"application/encrypted.a256gcm+json", p521, "Unsupported curve: secp521r1"},
		"unsupported cipher": {"application/encrypted.a192gcm+json", k.PublicKeyHeader(), "Unsupported cipher: a192gcm"},
		"key without type":   {"application/json", k.PublicKeyHeader(), "Error processing parameters"},
		"type without key":   {"application/encrypted.a256gcm+json", "", "Error processing parameters"},
	} {
		req := mustRequest(t, "GET", base+"/users")
		req.SetBasicAuth(clientID, apiKey)
		req.Header.Set("Content-Type", c.ctype)
		if c.key != "" {
			req.Header.Set("X-Public-Key", c.key)
		}
		status, hdr, body := do(t, req)
		want := `{"error":{"message":"` + c.msg + `"}}`
		if status != 412 || body != want || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
			t.Errorf("%s: %d %q %q", name, status, hdr.Get("Content-Type"), body)
		}
	}
	// the right headers: an encrypted answer that the key opens
	req := mustRequest(t, "GET", base+"/users")
	req.SetBasicAuth(clientID, apiKey)
	req.Header.Set("Content-Type", "application/encrypted.a256gcm+json")
	req.Header.Set("X-Public-Key", k.PublicKeyHeader())
	status, hdr, body := do(t, req)
	if status != 200 || hdr.Get("Content-Type") != "application/jose" {
		t.Fatalf("encrypted answer: %d %v", status, hdr)
	}
	plain, err := jwe.Decrypt(body, k, []jwe.Suite{jwe.SuiteFor(jwe.A256GCM)})
	if err != nil || string(plain) != userJSON {
		t.Fatalf("decrypting the stand-in's answer: %q %v", plain, err)
	}
	// no encryption asked: plain JSON
	req = mustRequest(t, "GET", base+"/users")
	req.SetBasicAuth(clientID, apiKey)
	if status, _, body := do(t, req); status != 200 || body != userJSON {
		t.Fatalf("plain answer: %d %q", status, body)
	}
}

func TestStandInAuthCheck(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"401", "404"} {
		base, _ := standIn(t, "failure "+mode)
		try := func(id, secret string, set bool) (int, http.Header, string) {
			req := mustRequest(t, "GET", base+"/users")
			if set {
				req.SetBasicAuth(id, secret)
			}
			return do(t, req)
		}
		if status, _, _ := try(clientID, apiKey, true); status != 200 {
			t.Fatalf("%s: right credentials: %d", mode, status)
		}
		if status, _, _ := try("other-client", "bcrypt-secret", true); status != 200 {
			t.Fatalf("%s: bcrypt client: %d", mode, status)
		}
		for name, c := range map[string][3]any{
			"wrong key":      {clientID, "wrong", true},
			"unknown client": {"nobody", apiKey, true},
			"no credentials": {"", "", false},
			"swapped":        {"other-client", apiKey, true},
		} {
			status, hdr, body := try(c[0].(string), c[1].(string), c[2].(bool))
			switch mode {
			case "401":
				if status != 401 || body != `{"error":{"message":"Unauthorized"}}` || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Basic ") {
					t.Errorf("401 mode, %s: %d %q %v", name, status, body, hdr)
				}
			case "404":
				if status != 404 || body != `{"error":{"message":"Not Found"}}` || hdr.Get("WWW-Authenticate") != "" {
					t.Errorf("404 mode, %s: %d %q %v", name, status, body, hdr)
				}
			}
		}
	}
}

// TestEgressLoopLogsNoSecrets runs app -> sidecar -> stand-in, both at
// DEBUG, and searches every log line for the secrets.
func TestEgressLoopLogsNoSecrets(t *testing.T) {
	t.Parallel()
	app := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, userJSON)
	})
	mx, gMX := standIn(t, "", app.hostPort())
	base, gSide := egressGateway(t, strings.TrimPrefix(mx, "http://"), "", "")
	status, _, body := do(t, mustRequest(t, "GET", base+"/users"))
	if status != 200 || body != userJSON {
		t.Fatalf("the loop: %d %q", status, body)
	}
	logs := gSide.Stderr.String() + gMX.Stderr.String()
	if !strings.Contains(logs, `"upstream roundtrip"`) {
		t.Fatal("debug logs were not written: the test would prove nothing")
	}
	secrets := map[string]string{
		"API key":             apiKey,
		"Basic header value":  strings.TrimPrefix(basicAuth(), "Basic "),
		"decrypted body":      "marker-7d1e",
		"a private key (PEM)": "PRIVATE KEY",
	}
	for what, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("the logs contain the %s", what)
			for _, l := range strings.Split(logs, "\n") {
				if strings.Contains(l, s) {
					t.Logf("in: %s", describeLine(l))
				}
			}
		}
	}
	// nor a private JWK member
	for _, line := range strings.Split(logs, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && strings.Contains(line, `"d":"`) {
			t.Errorf("a log line carries a JWK private member: %.200s", line)
		}
	}
}

// TestEgressRotationKeepsInFlightReplies: a reply that arrives after the
// key pair rotated twice still decrypts with the pair its request carried.
func TestEgressRotationKeepsInFlightReplies(t *testing.T) {
	t.Parallel()
	slowKey := make(chan string, 1)
	release := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) }) // before the upstream closes
	var fastKey atomic.Value
	fastKey.Store("")
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		k := r.Header.Get("X-Public-Key")
		if r.URL.Path == "/slow" {
			slowKey <- k
			<-release // held until two rotations have passed
		} else {
			fastKey.Store(k)
		}
		encryptingMX(w, r)
	})
	base, _ := egressGateway(t, up.hostPort(), "", "rotate 1s")
	type answer struct {
		status int
		body   string
		err    error
	}
	slow := make(chan answer, 1)
	go func() {
		resp, err := http.Get(base + "/slow")
		if err != nil {
			slow <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		slow <- answer{resp.StatusCode, string(b), err}
	}()
	var keys []string
	select {
	case k := <-slowKey:
		keys = append(keys, k)
	case a := <-slow:
		t.Fatalf("the slow request did not reach the upstream: %+v", a)
	}
	// Requests sent meanwhile carry the pairs of the rotations: wait
	// (polling, with a deadline that only stops a hang) until they have
	// shown two pairs after the slow request's.
	for deadline := time.Now().Add(time.Minute); len(keys) < 3; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("saw %d key pairs in a minute with rotate 1s", len(keys))
		}
		if status, _, body := do(t, mustRequest(t, "GET", base+"/fast")); status != 200 || body != userJSON {
			t.Fatalf("fast request: %d %q", status, body)
		}
		if k := fastKey.Load().(string); !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	once.Do(func() { close(release) })
	if a := <-slow; a.err != nil || a.status != 200 || a.body != userJSON {
		t.Fatalf("slow reply across two rotations: %d %q %v", a.status, a.body, a.err)
	}
}

// TestCheckedClientIsARateLimitKey: the client id mx_auth check admits
// keys mx_rate_limit, so each client has its own budget.
func TestCheckedClientIsARateLimitKey(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	startGateway(t, fmt.Sprintf(`{
	admin {ADMIN}
}
http://127.0.0.1:%d {
	mx_auth check {
		client {env.E2E_MX_CLIENT_ID} {env.E2E_MX_API_KEY}
		client other-client $2a$04$.3d55kpi.0vM7LgTsQuZ.erBtTRG6mxOvom8ELajDXVNDQI6AnUGa
	}
	mx_rate_limit {
		get 1/m burst 1
		key {http.auth.user.id}
		error_format json
	}
	respond ok
}
`, port), egressEnv...)
	try := func(id, secret string) int {
		req := mustRequest(t, "GET", fmt.Sprintf("http://127.0.0.1:%d/", port))
		req.SetBasicAuth(id, secret)
		status, _, _ := do(t, req)
		return status
	}
	if try(clientID, apiKey) != 200 || try(clientID, apiKey) != 429 {
		t.Fatal("the first client's budget of one is not enforced")
	}
	if try("other-client", "bcrypt-secret") != 200 {
		t.Fatal("the second client shares the first one's budget")
	}
}

// TestEgressReplyOverMaxBody: a reply larger than mx_jwe's max_body is a
// 502, never a truncated body.
func TestEgressReplyOverMaxBody(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"pad":"`+strings.Repeat("x", 5000)+`"}`)
	})
	base, _ := egressGateway(t, up.hostPort(), "", "max_body 1KiB")
	status, _, body := do(t, mustRequest(t, "GET", base+"/users"))
	if status != 502 || body != `{"error":{"message":"Bad gateway: the upstream reply is larger than max_body"}}` {
		t.Fatalf("%d %.80q", status, body)
	}
}
