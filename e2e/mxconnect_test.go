package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// securityAPI is a stand-in for MX Connect's Security API that issues
// numbered tokens and counts its calls.
type securityAPI struct {
	*httptest.Server
	calls  atomic.Int32
	refuse atomic.Bool
}

func newSecurityAPI(t *testing.T) *securityAPI {
	s := &securityAPI{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := s.calls.Add(1)
		user, pass, _ := r.BasicAuth()
		body, _ := io.ReadAll(r.Body)
		if s.refuse.Load() || user != "mxc-user" || pass != "mxc-pass-secret" || string(body) != `{"value":"API_mxc-key-secret"}` {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"token": fmt.Sprintf("jwt-token-%d-secret", n)})
	}))
	t.Cleanup(s.Close)
	return s
}

// connectGateway runs mxconnect_token in front of up, with the Security
// API at api and the extra options given.
func connectGateway(t *testing.T, api string, up *upstream, options ...string) (string, *gateway) {
	t.Helper()
	port := freePort(t)
	g := startGateway(t, fmt.Sprintf(`{
	admin {ADMIN}
	log {
		level DEBUG
	}
}
http://127.0.0.1:%d {
	mxconnect_token {
		endpoint %s/security/v1/apiKey/authenticate
		username {env.E2E_MXC_USER}
		password {env.E2E_MXC_PASS}
		api_key {env.E2E_MXC_KEY}
		timeout 1s
		%s
	}
	reverse_proxy %s
}
`, port, api, strings.Join(options, "\n\t\t"), up.hostPort()), "E2E_MXC_USER=mxc-user", "E2E_MXC_PASS=mxc-pass-secret", "E2E_MXC_KEY=API_mxc-key-secret")
	return fmt.Sprintf("http://127.0.0.1:%d", port), g
}

func TestMXConnectTokens(t *testing.T) {
	t.Parallel()
	api := newSecurityAPI(t)
	var mu sync.Mutex
	revoked := map[string]bool{}
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		auth := r.Header.Get("Authorization")
		if !strings.HasPrefix(auth, "Bearer jwt-token-") || revoked[auth] {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":"unauthorized"}`)
			return
		}
		io.WriteString(w, `{"ok":true}`)
	})
	// Every revocation below is a new one: no interval between the
	// refreshes they force (TestHostileCredentialChurn tests the interval).
	base, g := connectGateway(t, api.URL, up, "min_refresh 1ns")

	// many requests, one token
	for range 20 {
		req := mustRequest(t, "GET", base+"/accounts")
		req.Header.Set("Authorization", "Bearer app-token")
		if status, _, body := do(t, req); status != 200 || body != `{"ok":true}` {
			t.Fatalf("%d %s", status, body)
		}
	}
	if n := api.calls.Load(); n != 1 {
		t.Fatalf("%d Security API calls for 20 requests", n)
	}
	if a := up.Requests()[0].Header.Values("Authorization"); len(a) != 1 || a[0] != "Bearer jwt-token-1-secret" {
		t.Fatalf("Authorization on the wire: %q", a)
	}

	// the upstream revokes the token: a GET is retried once with a fresh one
	mu.Lock()
	revoked["Bearer jwt-token-1-secret"] = true
	mu.Unlock()
	before := len(up.Requests())
	if status, _, _ := do(t, mustRequest(t, "GET", base+"/accounts")); status != 200 {
		t.Fatalf("GET after revocation: %d", status)
	}
	if n := len(up.Requests()) - before; n != 2 || api.calls.Load() != 2 {
		t.Fatalf("GET after revocation: %d upstream requests, %d Security API calls", n, api.calls.Load())
	}

	// a POST is not retried; the app sees the 401, and the token is
	// replaced for the next request
	mu.Lock()
	revoked["Bearer jwt-token-2-secret"] = true
	mu.Unlock()
	req, _ := http.NewRequest("POST", base+"/accounts", strings.NewReader(`{"a":1}`))
	if status, _, _ := do(t, req); status != 401 {
		t.Fatalf("POST with a revoked token: %d", status)
	}
	if status, _, _ := do(t, mustRequest(t, "GET", base+"/accounts")); status != 200 || api.calls.Load() != 3 {
		t.Fatalf("after the POST's 401: %d, %d calls", status, api.calls.Load())
	}

	// the Security API refuses the credentials: 502, fast, with the reason
	mu.Lock()
	revoked["Bearer jwt-token-3-secret"] = true
	mu.Unlock()
	api.refuse.Store(true)
	// the upstream's 401 to token 3 asks for a new one, which is refused
	status, hdr, body := do(t, mustRequest(t, "GET", base+"/accounts"))
	if status != 502 || !strings.Contains(body, "Security API refused the credentials") || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
		t.Fatalf("refused credentials: %d %q", status, body)
	}
	status, _, body = do(t, mustRequest(t, "GET", base+"/accounts"))
	if status != 502 || body != `{"error":{"message":"MX Connect token unavailable: Security API refused the credentials: status 401"}}` {
		t.Fatalf("refused credentials: %d %q", status, body)
	}

	// the Security API is gone: 503 (the backoff that spares it is
	// checked on an injected clock by mxconnect's
	// TestOutageFailsFastWithBackoff)
	api.Close()
	// until the 1s backoff from the refusal passes, the refusal is the answer
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		status, _, body = do(t, mustRequest(t, "GET", base+"/accounts"))
		if status == 503 || time.Now().After(deadline) {
			break
		}
		if status != 502 {
			t.Fatalf("during the refusal's backoff: %d %q", status, body)
		}
	}
	for i := range 20 {
		if i > 0 {
			status, _, body = do(t, mustRequest(t, "GET", base+"/accounts"))
		}
		if status != 503 || !strings.Contains(body, "Security API unavailable: connection refused") {
			t.Fatalf("Security API down, request %d: %d %q", i+1, status, body)
		}
	}

	logs := g.Stderr.String()
	if n := strings.Count(logs, "no MX Connect token"); n != 1 {
		t.Errorf("the outage was logged %d times, want once", n)
	}
	for _, secret := range []string{"mxc-pass-secret", "API_mxc-key-secret", "jwt-token-1-secret", "jwt-token-2-secret"} {
		if strings.Contains(logs, secret) {
			t.Errorf("the logs carry a credential or token (%.8s…)", secret)
		}
	}
}
