package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/mxgate/mxgate/fdx"
)

// hostileAS is an authorization server that misbehaves, one way per
// issuer path (https://127.0.0.1:port/<attack>): its metadata, JWKS and
// introspection answers are what each attack needs. It counts the
// requests of each path.
type hostileAS struct {
	*httptest.Server
	key     *ecdsa.PrivateKey
	release chan struct{}
	mu      sync.Mutex
	hits    map[string]int
	shape   atomic.Value // the introspection answer of the "shape" issuer
}

func newHostileAS(t *testing.T, p *interopPKI) *hostileAS {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	a := &hostileAS{key: k, release: make(chan struct{}), hits: map[string]int{}}
	a.shape.Store(`{"active":true}`)
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	a.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.hits[r.URL.Path]++
		a.mu.Unlock()
		base := "https://" + r.Host
		if attack, ok := strings.CutPrefix(r.URL.Path, "/.well-known/oauth-authorization-server/"); ok {
			md := map[string]any{"issuer": base + "/" + attack, "jwks_uri": base + "/" + attack + "/jwks",
				"introspection_endpoint": base + "/" + attack + "/introspect"}
			switch attack {
			case "impostor":
				md["issuer"] = base + "/someone-else"
			case "downgrade":
				md["jwks_uri"] = "http://" + r.Host + "/good/jwks"
			}
			_ = json.NewEncoder(w).Encode(md)
			return
		}
		switch r.URL.Path {
		case "/good/jwks", "/flood/jwks", "/impostor/jwks", "/downgrade/jwks", "/shape/jwks":
			_, _ = w.Write(jwks)
		case "/slow/jwks":
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"keys":[`)
			w.(http.Flusher).Flush()
			<-a.release
		case "/huge/jwks":
			pad := strings.Repeat(`{"kty":"oct","k":"AAAAAAAAAAAAAAAAAAAAAA"},`, (2<<20)/40)
			_, _ = io.WriteString(w, `{"keys":[`+pad+string(jwks[len(`{"keys":[`):]))
		case "/shape/introspect":
			_, _ = io.WriteString(w, a.shape.Load().(string))
		case "/redirect/introspect":
			http.Redirect(w, r, "/thief", http.StatusTemporaryRedirect)
		default:
			http.NotFound(w, r)
		}
	}))
	a.TLS = &tls.Config{Certificates: []tls.Certificate{p.bank.issue(t, p.dir, "hostile-as").pair}}
	a.StartTLS()
	t.Cleanup(func() { close(a.release); a.Close() })
	return a
}

func (a *hostileAS) count(path string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.hits[path]
}

// token signs a JWT access token of the attack's issuer, bound to cert.
func (a *hostileAS) token(t *testing.T, attack, kid string, cert tls.Certificate) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: a.key},
		(&jose.SignerOptions{}).WithHeader(jose.HeaderType, "at+jwt").WithHeader("kid", kid))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok, err := jwt.Signed(s).Claims(map[string]any{"iss": a.URL + "/" + attack, "aud": "https://rs.test", "sub": "u", "client_id": "recipient-a",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "scope": interopScopes,
		"cnf": map[string]string{"x5t#S256": fdx.Thumbprint(cert.Leaf)}}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestHostileFDXAuthorizationServer attacks fdx_auth's connection to its
// authorization server from outside: a server the trust pool does not
// vouch for, one that answers slowly or with a huge key set, metadata
// naming another issuer or a plain-HTTP key set, a flood of random key
// ids, introspection answers of the wrong shape and a redirect that would
// carry the gateway's credentials elsewhere. Each asserts what the
// recipient got, what reached the upstream, and what the server saw.
func TestHostileFDXAuthorizationServer(t *testing.T) {
	t.Parallel()
	p := newInteropPKI(t)
	as := newHostileAS(t, p)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, `{}`) })
	attacks := []string{"good", "untrusted", "slow", "huge", "impostor", "downgrade", "flood", "shape", "redirect"}
	ports := map[string]int{}
	var sites strings.Builder
	for _, attack := range attacks {
		ports[attack] = freePort(t)
		pool := p.bank.file
		if attack == "untrusted" {
			pool = p.clients.file // a CA, but not the server's
		}
		opts := fmt.Sprintf("issuer %s/%s\n\t\taudience https://rs.test\n\t\ttls_trust_pool file %s", as.URL, attack, pool)
		switch attack {
		case "untrusted":
			opts = fmt.Sprintf("issuer %s/good\n\t\taudience https://rs.test\n\t\ttls_trust_pool file %s", as.URL, pool)
		case "shape", "redirect":
			opts += "\n\t\tintrospection discover rs {env.E2E_HOSTILE_SECRET}\n\t\tintrospection_cache 1ms"
		}
		sites.WriteString(p.site(ports[attack], opts, up.hostPort()))
	}
	g := startGateway(t, fmt.Sprintf(`{
	admin {ADMIN}
	auto_https disable_redirects
	skip_install_trust
	log {
		format mxgate_redact
	}
}
%s`, sites.String()), "E2E_HOSTILE_SECRET=hostile-secret-hunter2")
	site := func(attack string) fdxSite {
		return fdxSite{url: fmt.Sprintf("https://localhost:%d", ports[attack]), ca: p.bank.pool()}
	}
	a := &p.recipientA.pair
	reached := 0
	expect := func(t *testing.T, attack, tok string, status int, reason string) {
		t.Helper()
		got, body := site(attack).get(t, a, "/fdx/v6/core/accounts", tok)
		if got != status || !strings.Contains(body, reason) {
			t.Fatalf("%d %s, want %d %q", got, body, status, reason)
		}
		if status == 200 {
			reached++
		}
		if n := len(up.Requests()); n != reached {
			t.Fatalf("the upstream saw %d requests, want %d", n, reached)
		}
	}
	// logged waits for a log line holding every one of want, and
	// returns it
	logged := func(t *testing.T, want ...string) string {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			for _, line := range strings.Split(g.Stderr.String(), "\n") {
				found := true
				for _, w := range want {
					found = found && strings.Contains(line, w)
				}
				if found {
					return line
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("the gateway never logged a line with %q:\n%s", want, g.Stderr)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	t.Run("the good server, for reference", func(t *testing.T) {
		expect(t, "good", as.token(t, "good", "k1", *a), 200, "")
	})
	t.Run("a server the trust pool does not vouch for", func(t *testing.T) {
		expect(t, "untrusted", as.token(t, "good", "k1", *a), 503, "cannot be reached")
		logged(t, "could not be fetched", "/good", "certificate signed by unknown authority")
	})
	t.Run("a trust pool file that is missing", func(t *testing.T) {
		cf := filepath.Join(t.TempDir(), "Caddyfile")
		if err := os.WriteFile(cf, []byte(fmt.Sprintf("{\n\tadmin off\n}\n%s", p.site(freePort(t),
			"issuer https://as.example\n\t\taudience https://rs.test\n\t\ttls_trust_pool file /nonexistent/ca.pem", up.hostPort()))), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(binary, "validate", "--config", cf, "--adapter", "caddyfile").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "tls_trust_pool") || !strings.Contains(string(out), "/nonexistent/ca.pem") {
			t.Fatalf("validated: %v\n%s", err, out)
		}
	})
	t.Run("a key set that never finishes", func(t *testing.T) {
		expect(t, "slow", as.token(t, "slow", "k1", *a), 503, "cannot be reached")
		line := logged(t, "could not be fetched", "/slow/jwks")
		if !strings.Contains(line, "Client.Timeout") && !strings.Contains(line, "timeout") && !strings.Contains(line, "deadline exceeded") {
			t.Fatalf("the cause is not a timeout: %s", line)
		}
		// within the backoff, no second fetch is stuck behind it
		expect(t, "slow", as.token(t, "slow", "k1", *a), 503, "cannot be reached")
		if n := as.count("/slow/jwks"); n != 1 {
			t.Fatalf("%d fetches of the slow key set", n)
		}
	})
	t.Run("a key set larger than a MiB", func(t *testing.T) {
		expect(t, "huge", as.token(t, "huge", "k1", *a), 503, "cannot be reached")
		logged(t, "could not be fetched", "/huge/jwks", "larger than 1048576 bytes")
	})
	t.Run("metadata naming another issuer", func(t *testing.T) {
		expect(t, "impostor", as.token(t, "impostor", "k1", *a), 503, "cannot be reached")
		logged(t, "could not be fetched", "/impostor", "is not the configured")
		if n := as.count("/impostor/jwks"); n != 0 {
			t.Fatalf("the impostor's key set fetched %d times", n)
		}
	})
	t.Run("metadata naming a plain-HTTP key set", func(t *testing.T) {
		expect(t, "downgrade", as.token(t, "downgrade", "k1", *a), 503, "cannot be reached")
		logged(t, "could not be fetched", "/downgrade", "jwks_uri is not https, as the issuer is")
	})
	t.Run("a flood of random key ids", func(t *testing.T) {
		expect(t, "flood", as.token(t, "flood", "k1", *a), 200, "")
		before := as.count("/flood/jwks")
		start := time.Now()
		var wg sync.WaitGroup
		for i := range 200 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				status, body := site("flood").get(t, a, "/fdx/v6/core/accounts", as.token(t, "flood", fmt.Sprintf("random-%d", i), *a))
				if status != 401 || !strings.Contains(body, "unknown signing key") {
					t.Errorf("random kid %d: %d %s", i, status, body)
				}
			}()
		}
		wg.Wait()
		elapsed := time.Since(start)
		if n, most := as.count("/flood/jwks")-before, int(elapsed/time.Second)+2; n > most {
			t.Fatalf("200 random kids over %v cost %d fetches, want at most %d", elapsed, n, most)
		}
		if n := len(up.Requests()); n != reached {
			t.Fatal("a random kid reached the upstream")
		}
	})
	t.Run("introspection answers of the wrong shape", func(t *testing.T) {
		for i, c := range []struct {
			answer string
			status int
			reason string
		}{
			{`{"active":"true","aud":"https://rs.test"}`, 503, "cannot be reached"},
			{`{"aud":"https://rs.test","scope":"` + interopScopes + `"}`, 503, "cannot be reached"},
			{`{"active":true,"aud":"https://rs.test","exp":"never"}`, 503, "cannot be reached"},
			{`{"active":true,"aud":"https://rs.test","scope":["fdx:accountbasic:read"]}`, 503, "cannot be reached"},
			{`<html>login</html>`, 503, "cannot be reached"},
			{`{"active":true,"aud":"https://rs.test","pad":"` + strings.Repeat("x", 1<<20) + `"}`, 503, "cannot be reached"},
			{`{"active":true,"scope":"` + interopScopes + `"}`, 401, "aud missing in the introspection answer"},
			{`{"active":true,"aud":"https://other.test","scope":"` + interopScopes + `"}`, 401, "wrong audience"},
			{`{"active":true,"iss":"https://evil.example","aud":"https://rs.test","scope":"` + interopScopes + `"}`, 401, "wrong issuer"},
			// bound to nothing: the certificate check refuses it
			{`{"active":true,"aud":"https://rs.test","scope":"` + interopScopes + `"}`, 401, "not bound to this client certificate"},
		} {
			// after an answer of the wrong shape no call is made, for any
			// token, within the backoff: wait for an answer that ends it,
			// so that each answer below reaches the parser
			as.shape.Store(`{"active":false}`)
			for j, deadline := 0, time.Now().Add(15*time.Second); ; j++ {
				if got, _ := site("shape").get(t, a, "/fdx/v6/core/accounts", fmt.Sprintf("opaque-settle-%d-%d", i, j)); got == 401 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the introspection endpoint was never called again after a failure")
				}
				time.Sleep(50 * time.Millisecond)
			}
			as.shape.Store(c.answer)
			calls := as.count("/shape/introspect")
			got, body := site("shape").get(t, a, "/fdx/v6/core/accounts", fmt.Sprintf("opaque-shape-%d", i))
			if got != c.status || !strings.Contains(body, c.reason) {
				t.Errorf("answer %d: %d %s, want %d %q", i, got, body, c.status, c.reason)
			}
			if n := as.count("/shape/introspect") - calls; n != 1 {
				t.Errorf("answer %d: %d introspection calls, want 1", i, n)
			}
		}
		if n := len(up.Requests()); n != reached {
			t.Fatal("an answer of the wrong shape let a request through")
		}
	})
	t.Run("an introspection endpoint that redirects", func(t *testing.T) {
		got, body := site("redirect").get(t, a, "/fdx/v6/core/accounts", "opaque-redirected")
		if got != 503 {
			t.Fatalf("%d %s", got, body)
		}
		logged(t, "introspection endpoint failed", "/redirect/introspect", "answered 307")
		if n := as.count("/thief"); n != 0 {
			t.Fatalf("the redirect was followed %d times, credentials and all", n)
		}
	})
	if strings.Contains(g.Stderr.String(), "hunter2") {
		t.Error("the introspection secret reached the log")
	}
}
