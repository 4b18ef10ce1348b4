package e2e

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/mxgate/mxgate/jwe"
)

// The attacks of this file run against real mxgate processes in front of
// upstreams that record what reaches them. Each asserts the status the
// attacker gets and what the upstream received.

const (
	// hostileSecret is a machine secret as MX issues them: random, 128 bits
	// and more. Its hash comes from `mxgate hash-secret`.
	hostileID     = "CLIENT-7d3e"
	hostileSecret = "mxk_7Qp2ZfV9rT4sLw8yBn3HdK6cJx1A-4f0e"
	bcryptClient  = "other-client"
	bcryptSecret  = "bcrypt-secret"
	bcryptHash4   = "$2a$04$.3d55kpi.0vM7LgTsQuZ.erBtTRG6mxOvom8ELajDXVNDQI6AnUGa" // cost 4: tests only
)

func basicOf(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(id+":"+secret))
}

// hashSecret runs `mxgate hash-secret` with the secret on standard input.
func hashSecret(t *testing.T, secret string) string {
	t.Helper()
	cmd := exec.Command(binary, "hash-secret")
	cmd.Stdin = strings.NewReader(secret + "\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("hash-secret: %v", err)
	}
	h := strings.TrimSpace(string(out))
	if !strings.HasPrefix(h, "$hmac-sha256$") || strings.Contains(h, secret) {
		t.Fatalf("hash-secret printed %d bytes of an unexpected shape", len(h))
	}
	return h
}

// send makes one request with the given Authorization values.
func send(t *testing.T, method, url string, auth ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range auth {
		req.Header.Add("Authorization", a)
	}
	return do(t, req)
}

// expectReceived fails unless up has received exactly n requests so far,
// and returns them.
func expectReceived(t *testing.T, up *upstream, n int, what string) []recorded {
	t.Helper()
	got := up.Requests()
	if len(got) != n {
		t.Fatalf("%s: the upstream received %d requests, want %d", what, len(got), n)
	}
	return got
}

// TestHostileEgress attacks the MX Platform API side: mx_auth check
// (smuggled and leaked credentials, a flood of wrong secrets),
// mx_rate_limit (methods spelt to escape their budget) and mx_jwe decrypt
// (encryption downgrades).
func TestHostileEgress(t *testing.T) {
	t.Parallel()
	t.Run("auth", hostileAuth)
	t.Run("method", hostileMethods)
	t.Run("downgrade", hostileDowngrade)
}

func hostileAuth(t *testing.T) {
	t.Parallel()
	hashed := hashSecret(t, hostileSecret)
	ups := map[string]*upstream{}
	ports := map[string]int{}
	var sites strings.Builder
	for _, site := range []struct{ name, extra string }{{"401", ""}, {"404", "failure 404"}, {"keep", "keep_credentials"}} {
		ups[site.name] = newUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
		ports[site.name] = freePort(t)
		fmt.Fprintf(&sites, `
http://127.0.0.1:%d {
	mx_auth check {
		client %s %s
		client %s %s
		%s
	}
	reverse_proxy %s
}
`, ports[site.name], hostileID, hashed, bcryptClient, bcryptHash4, site.extra, ups[site.name].hostPort())
	}
	g := startGateway(t, `{
	admin {ADMIN}
	log {
		level DEBUG
		format mxgate_redact
	}
}
`+sites.String())
	url := func(site string) string { return fmt.Sprintf("http://127.0.0.1:%d/webhooks", ports[site]) }
	good, bad := basicOf(hostileID, hostileSecret), basicOf(hostileID, "mxk_wrong_p2ZfV9rT4sLw8yBn3HdK6cJx1A")

	// Two Authorization headers, in either order, are refused before
	// anything is compared, whatever they hold.
	for name, auth := range map[string][]string{
		"duplicate_good_then_bad":   {good, bad},
		"duplicate_bad_then_good":   {bad, good},
		"duplicate_good_twice":      {good, good},
		"duplicate_good_then_empty": {good, ""},
		"duplicate_bcrypt_then_bad": {basicOf(bcryptClient, bcryptSecret), bad},
	} {
		t.Run(name, func(t *testing.T) {
			for _, site := range []string{"401", "404"} {
				before := len(ups[site].Requests())
				status, hdr, body := send(t, "POST", url(site), auth...)
				want, msg := 401, "Unauthorized"
				if site == "404" {
					want, msg = 404, "Not Found"
				}
				if status != want || body != `{"error":{"message":"`+msg+`"}}` {
					t.Errorf("failure %s: %d %q", site, status, body)
				}
				if (hdr.Get("WWW-Authenticate") != "") != (site == "401") {
					t.Errorf("failure %s: WWW-Authenticate %q", site, hdr.Get("WWW-Authenticate"))
				}
				expectReceived(t, ups[site], before, name)
			}
		})
	}

	// A good credential is admitted, and the secret stops at the gateway.
	t.Run("credential_stripped_before_upstream", func(t *testing.T) {
		for _, c := range [][2]string{{hostileID, hostileSecret}, {bcryptClient, bcryptSecret}} {
			before := len(ups["401"].Requests())
			if status, _, _ := send(t, "POST", url("401"), basicOf(c[0], c[1])); status != 200 {
				t.Fatalf("%s: %d", c[0], status)
			}
			got := expectReceived(t, ups["401"], before+1, c[0])
			if a := got[before].Header.Values("Authorization"); len(a) != 0 {
				t.Errorf("%s: the upstream received %d Authorization headers", c[0], len(a))
			}
		}
	})
	t.Run("trailer_credential_not_forwarded", func(t *testing.T) {
		var mu sync.Mutex
		var trailers []http.Header
		up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			trailers = append(trailers, r.Trailer.Clone())
			mu.Unlock()
			io.WriteString(w, "ok")
		})
		port := freePort(t)
		startGateway(t, fmt.Sprintf(`{
	admin {ADMIN}
}
http://127.0.0.1:%d {
	mx_auth check {
		client %s %s
		keep_credentials
	}
	reverse_proxy %s
}
`, port, hostileID, hashed, up.hostPort()))
		// a good credential in the header, another in a trailer, which
		// arrives after the check
		req, _ := http.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d/webhooks", port), io.MultiReader(strings.NewReader(`{"event":"x"}`)))
		req.ContentLength = -1
		req.Header.Set("Authorization", good)
		req.Trailer = http.Header{"Authorization": {bad}, "X-Smuggled": {"1"}}
		if status, _, _ := do(t, req); status != 200 {
			t.Fatalf("%d", status)
		}
		got := expectReceived(t, up, 1, "trailer")
		mu.Lock()
		defer mu.Unlock()
		if len(trailers[0]) != 0 || got[0].Header.Get("Trailer") != "" {
			t.Errorf("the upstream received trailers %v (declared %q)", keys(trailers[0]), got[0].Header.Get("Trailer"))
		}
		if string(got[0].Body) != `{"event":"x"}` {
			t.Errorf("body %q", got[0].Body)
		}
	})
	t.Run("keep_credentials_forwards_exactly_one", func(t *testing.T) {
		if status, _, _ := send(t, "POST", url("keep"), good); status != 200 {
			t.Fatal(status)
		}
		got := expectReceived(t, ups["keep"], 1, "keep_credentials")
		if a := got[0].Header.Values("Authorization"); len(a) != 1 || a[0] != good {
			t.Errorf("the upstream received %d Authorization headers, or another value", len(a))
		}
	})

	// Wrong and foreign secrets.
	for name, auth := range map[string]string{
		"wrong_secret":             bad,
		"unknown_client":           basicOf("nobody", hostileSecret),
		"secret_of_another_client": basicOf(bcryptClient, hostileSecret),
		"hash_as_secret":           basicOf(hostileID, hashed),
		"bearer_instead_of_basic":  "Bearer " + hostileSecret,
		"basic_without_colon":      "Basic " + base64.StdEncoding.EncodeToString([]byte(hostileID+hostileSecret)),
	} {
		t.Run(name, func(t *testing.T) {
			before := len(ups["401"].Requests())
			if status, _, body := send(t, "GET", url("401"), auth); status != 401 || body != `{"error":{"message":"Unauthorized"}}` {
				t.Errorf("%d %q", status, body)
			}
			expectReceived(t, ups["401"], before, name)
		})
	}

	t.Run("no_secret_in_debug_logs", func(t *testing.T) {
		logs := g.Stderr.String()
		if !strings.Contains(logs, `"upstream roundtrip"`) {
			t.Fatal("no debug lines: the scan would prove nothing")
		}
		for what, s := range map[string]string{
			"the secret":                hostileSecret,
			"a Basic value":             strings.TrimPrefix(good, "Basic "),
			"the other client's secret": bcryptSecret,
		} {
			if strings.Contains(logs, s) {
				t.Errorf("the logs hold %s", what)
			}
		}
	})

	// Sixteen clients sending wrong secrets as fast as they can beside a
	// good client: the good one keeps being admitted, every bad one is
	// refused (401, or 503 with Retry-After when every slow-hash slot is
	// busy), and only the good client's requests reach the upstream. The
	// bcrypt client was verified once before the flood: its secret is
	// remembered, so it needs no slow-hash slot (a client not yet verified
	// competes with the flood for one, and may be answered 503).
	// (Timing is BenchmarkWrongCredential's subject, not this test's.)
	for name, goodAuth := range map[string]string{
		"flood_16_wrong_secrets_beside_good_hmac":   good,
		"flood_16_wrong_secrets_beside_good_bcrypt": basicOf(bcryptClient, bcryptSecret),
	} {
		t.Run(name, func(t *testing.T) {
			up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
			port := freePort(t)
			startGateway(t, fmt.Sprintf(`{
	admin {ADMIN}
}
http://127.0.0.1:%d {
	mx_auth check {
		client %s %s
		client %s %s
	}
	reverse_proxy %s
}
`, port, hostileID, hashed, bcryptClient, bcryptHash4, up.hostPort()))
			u := fmt.Sprintf("http://127.0.0.1:%d/webhooks", port)
			if status, _, _ := send(t, "POST", u, goodAuth); status != 200 {
				t.Fatalf("good request before the flood: %d", status)
			}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var refused, shed, admittedBad atomic.Int64
			for i := range 16 {
				wg.Go(func() {
					wrong := basicOf([]string{hostileID, bcryptClient, "nobody"}[i%3], fmt.Sprintf("wrong-%d-ZfV9rT4sLw8yBn3Hd", i))
					for {
						select {
						case <-stop:
							return
						default:
						}
						req, _ := http.NewRequest("POST", u, nil)
						req.Header.Set("Authorization", wrong)
						resp, err := http.DefaultClient.Do(req)
						if err != nil {
							continue
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						switch {
						case resp.StatusCode == 401:
							refused.Add(1)
						case resp.StatusCode == 503 && resp.Header.Get("Retry-After") == "1":
							shed.Add(1)
						default:
							admittedBad.Add(1)
						}
					}
				})
			}
			const goodRequests = 40
			for i := range goodRequests {
				if status, _, _ := send(t, "POST", u, goodAuth); status != 200 {
					t.Errorf("good request %d during the flood: %d", i, status)
				}
			}
			close(stop)
			wg.Wait()
			if admittedBad.Load() != 0 || refused.Load() == 0 {
				t.Fatalf("bad clients: %d admitted, %d refused, %d shed", admittedBad.Load(), refused.Load(), shed.Load())
			}
			got := expectReceived(t, up, 1+goodRequests, "the flood")
			for _, r := range got {
				if len(r.Header.Values("Authorization")) != 0 {
					t.Fatal("a credential reached the upstream")
				}
			}
		})
	}
}

func hostileMethods(t *testing.T) {
	t.Parallel()
	std, anyUp := newUpstream(t, nil), newUpstream(t, nil)
	stdPort, anyPort := freePort(t), freePort(t)
	const tight = `get 1/h burst 1
		write 1/h burst 1
		delete 1/h burst 1
		error_format json`
	startGateway(t, fmt.Sprintf(`{
	admin {ADMIN}
}
http://127.0.0.1:%d {
	mx_rate_limit {
		%s
	}
	reverse_proxy %s
}
http://127.0.0.1:%d {
	mx_rate_limit {
		%s
		methods any
	}
	reverse_proxy %s
}
`, stdPort, tight, std.hostPort(), anyPort, tight, anyUp.hostPort()))
	stdURL := fmt.Sprintf("http://127.0.0.1:%d/users", stdPort)
	anyURL := fmt.Sprintf("http://127.0.0.1:%d/users", anyPort)

	// By default every spelling but the standard one, and every method
	// outside the standard set, is 501 and reaches nothing.
	for _, m := range []string{"get", "Get", "gEt", "head", "post", "Put", "patch", "delete", "Delete", "FOO", "TRACE", "PROPFIND"} {
		t.Run("standard_refuses_"+m, func(t *testing.T) {
			before := len(std.Requests())
			status, hdr, body := send(t, m, stdURL)
			if status != 501 || body != `{"error":{"message":"Method not implemented"}}` || hdr.Get("Allow") != "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS" {
				t.Errorf("%d %q %v", status, body, hdr)
			}
			expectReceived(t, std, before, m)
		})
	}
	t.Run("standard_budget_untouched_by_misspellings", func(t *testing.T) {
		// the refusals above drew no token: the one GET and the one DELETE
		// of the budget are still there, and then spent
		for _, m := range []string{"GET", "DELETE"} {
			if status, _, _ := send(t, m, stdURL); status != 200 {
				t.Errorf("%s: %d", m, status)
			}
			if status, _, _ := send(t, m, stdURL); status != 429 {
				t.Errorf("%s over budget: %d", m, status)
			}
		}
	})

	// With methods any, every spelling draws on its method's budget: one
	// request of each class passes, whatever spelling comes after.
	for _, group := range [][]string{{"GET", "get", "Get", "gEt", "HEAD", "head"}, {"delete", "DELETE", "Delete"}, {"Post", "POST", "put", "PATCH"}} {
		t.Run("any_one_budget_for_"+strings.ToLower(group[0]), func(t *testing.T) {
			before := len(anyUp.Requests())
			if status, _, _ := send(t, group[0], anyURL); status != 200 {
				t.Fatalf("%s: %d", group[0], status)
			}
			for _, m := range group[1:] {
				if status, _, _ := send(t, m, anyURL); status != 429 {
					t.Errorf("%s escaped the budget %s spent: %d", m, group[0], status)
				}
			}
			got := expectReceived(t, anyUp, before+1, group[0])
			if got[before].Method != group[0] {
				t.Errorf("the upstream received %q", got[before].Method)
			}
		})
	}
	t.Run("any_extension_method_on_other_budget", func(t *testing.T) {
		before := len(anyUp.Requests())
		if status, _, _ := send(t, "FOO", anyURL); status != 200 {
			t.Errorf("FOO with methods any and other unlimited: %d", status)
		}
		expectReceived(t, anyUp, before+1, "FOO")
	})
}

// downgradeMX answers by path, as an upstream (or someone in its place)
// that tries to hand the app plaintext.
func downgradeMX(w http.ResponseWriter, r *http.Request) {
	plain := func(status int, ctype, body string) {
		if ctype != "" {
			w.Header().Set("Content-Type", ctype)
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
	switch r.URL.Path {
	case "/encrypted":
		encryptingMX(w, r)
	case "/plain-json":
		plain(200, "application/json", userJSON)
	case "/plain-vnd-json-201":
		plain(201, "application/vnd.mx.api.v1+json", userJSON)
	case "/jose-json-plaintext":
		plain(200, "application/jose+json", userJSON)
	case "/jose-plaintext":
		plain(200, "application/jose", userJSON)
	case "/text":
		plain(200, "text/plain", "marker-7d1e 4111111111111111")
	case "/empty":
		plain(200, "application/json", "")
	case "/no-content":
		w.WriteHeader(http.StatusNoContent)
	case "/precondition":
		plain(412, "application/json", `{"error":{"message":"Invalid public key"}}`)
	case "/wrong-key":
		k, _ := jwe.GenerateKey(jwe.P384)
		pub, _, _ := jwe.ParsePublicKeyHeader(k.PublicKeyHeader())
		compact, _ := jwe.Encrypt(pub, jwe.SuiteFor(jwe.A256GCM), []byte(userJSON))
		plain(200, "application/jose", compact)
	case "/head":
		plain(200, "application/json", "")
	default:
		plain(404, "application/json", `{"error":{"message":"Not Found"}}`)
	}
}

func hostileDowngrade(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, downgradeMX)
	strict, lax := freePort(t), freePort(t)
	g := startGateway(t, fmt.Sprintf(`{
	admin {ADMIN}
	log {
		format mxgate_redact
	}
}
http://127.0.0.1:%d {
	mx_jwe decrypt
	reverse_proxy %s
}
http://127.0.0.1:%d {
	mx_jwe decrypt {
		allow_plaintext
	}
	reverse_proxy %s
}
`, strict, up.hostPort(), lax, up.hostPort()))
	const (
		notEncrypted  = `{"error":{"message":"Bad gateway: the upstream reply was not encrypted"}}`
		undecryptable = `{"error":{"message":"Bad gateway: the upstream reply claims to be encrypted but could not be decrypted"}}`
	)
	for _, c := range []struct {
		name, method, path string
		status             int
		body               string // "" means: no body
		laxStatus          int
	}{
		{"encrypted_reply_decrypts", "GET", "/encrypted", 200, userJSON, 200},
		{"plaintext_json_200", "GET", "/plain-json", 502, notEncrypted, 200},
		{"plaintext_vnd_json_201", "POST", "/plain-vnd-json-201", 502, notEncrypted, 201},
		{"jose_json_with_plaintext_body", "GET", "/jose-json-plaintext", 502, undecryptable, 502},
		{"jose_with_plaintext_body", "GET", "/jose-plaintext", 502, undecryptable, 502},
		{"text_plain_200", "GET", "/text", 502, notEncrypted, 200},
		{"empty_200", "GET", "/empty", 502, notEncrypted, 200},
		{"no_content_204_passes", "DELETE", "/no-content", 204, "", 204},
		{"head_passes_without_body", "HEAD", "/head", 200, "", 200},
		{"precondition_412_passes_unencrypted", "GET", "/precondition", 412, `{"error":{"message":"Invalid public key"}}`, 412},
		{"jwe_for_another_key", "GET", "/wrong-key", 502, undecryptable, 502},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, port := range []int{strict, lax} {
				want := c.status
				if port == lax {
					want = c.laxStatus
				}
				before := len(up.Requests())
				status, _, body := send(t, c.method, fmt.Sprintf("http://127.0.0.1:%d%s", port, c.path))
				got := expectReceived(t, up, before+1, c.name)
				if status != want {
					t.Errorf("allow_plaintext %v: %d, want %d", port == lax, status, want)
				}
				if want == 502 && strings.Contains(body, "marker-7d1e") {
					t.Errorf("allow_plaintext %v: the refusal carries the reply", port == lax)
				}
				if port == strict && body != c.body {
					t.Errorf("%.80q, want %.80q", body, c.body)
				}
				// the request asked for encryption
				r := got[before]
				if r.Header.Get("Content-Type") != "application/encrypted.a256gcm+json" || r.Header.Get("X-Public-Key") == "" {
					t.Errorf("the upstream was not asked to encrypt: %q", r.Header.Get("Content-Type"))
				}
			}
		})
	}
	t.Run("allow_plaintext_says_so_at_start", func(t *testing.T) {
		if !strings.Contains(g.Stderr.String(), "allow_plaintext: successful replies that are not encrypted reach the app as plaintext") {
			t.Error("no warning for allow_plaintext")
		}
		if strings.Count(g.Stderr.String(), "allow_plaintext: successful replies") != 1 {
			t.Error("the warning names the site with allow_plaintext only")
		}
	})
}

func keys(h http.Header) []string {
	var out []string
	for k := range h {
		out = append(out, k)
	}
	return out
}
