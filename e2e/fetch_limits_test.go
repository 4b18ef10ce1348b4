package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestFDXIntrospectionBudgetPerCertificate: the README's bound on
// introspection calls for distinct tokens. With mx_rate_limit keyed on the
// client certificate in front of fdx_auth, a recipient sending a fresh
// made-up opaque token with each request costs the authorization server
// one introspection call per request of its budget, and no more: the rest
// are 429 before fdx_auth; another recipient keeps its own budget.
func TestFDXIntrospectionBudgetPerCertificate(t *testing.T) {
	t.Parallel()
	dev := filepath.Join(t.TempDir(), "fdx")
	if out, err := exec.Command(binary, "fdx-dev", "--dir", dev).CombinedOutput(); err != nil {
		t.Fatalf("fdx-dev: %v\n%s", err, out)
	}
	iss := newHoIssuer(t, filepath.Join(dev, "public", "jwks.json"))
	port := freePort(t)
	startGateway(t, fmt.Sprintf(`{
	default_bind tcp-handover/127.0.0.1
	auto_https disable_redirects
	skip_install_trust
	servers {
		protocols h1 h2
	}
}
https://localhost:%d {
	tls %[2]s/server.pem %[2]s/server-key.pem {
		client_auth {
			mode require_and_verify
			trust_pool file %[2]s/ca.pem
		}
	}
	route {
		mx_rate_limit {
			get 5/h burst 5
			key {http.request.tls.client.fingerprint}
			error_format fdx
		}
		fdx_auth {
			issuer https://as.fdx.localhost
			audience https://fdx.localhost
			jwks_url %[3]s/jwks.json
			introspection %[3]s/introspect intro-client {env.HO_INTRO_SECRET}
		}
	}
	respond "ok"
}
`, port, dev, iss.URL), "HO_INTRO_SECRET="+hoIntroSecret)
	url := fmt.Sprintf("https://localhost:%d/fdx/v6/core/accounts", port)
	send := func(client *http.Client, token string) int {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		resp, err := client.Do(req.WithContext(ctx))
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	flooder, other := devTLS(t, dev, "client"), devTLS(t, dev, "other-client")
	statuses := map[int]int{}
	for range 30 {
		statuses[send(flooder, hoOpaque(t))]++
	}
	if statuses[401] != 5 || statuses[429] != 25 {
		t.Errorf("30 fresh tokens from one certificate: %v, want 5 × 401 (introspected, inactive) and 25 × 429", statuses)
	}
	if n := iss.Calls("introspect"); n != 5 {
		t.Errorf("30 fresh tokens from one certificate cost %d introspection calls, want its budget of 5", n)
	}
	for range 3 {
		if status := send(other, hoOpaque(t)); status != 401 {
			t.Errorf("another certificate's fresh token: %d, want 401 (introspected, inactive)", status)
		}
	}
	if n := iss.Calls("introspect"); n != 8 {
		t.Errorf("%d introspection calls, want 8: the other certificate has its own budget", n)
	}
}
