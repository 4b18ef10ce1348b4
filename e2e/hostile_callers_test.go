package e2e

// Hostile callers of the directives that add a credential (issue 10,
// class 2): a site address such as http://127.0.0.1:8490 is a Host
// matcher, not a bind, so a stranger who reaches the port can write that
// Host; mx_auth attach, mxconnect_token and mdx_hmac sign must refuse it
// whatever it claims in headers.

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// unixClient is an HTTP client whose every connection goes to the Unix
// socket at path.
func unixClient(path string) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", path)
			},
			DisableKeepAlives: true,
		},
	}
}

// callerSites are the credential sites of TestHostileCallers.
type callerSites struct {
	attach, token, sign int    // ports of sites with no bind: every interface
	narrow              int    // mx_auth attach with allow_callers 127.0.0.1/32
	sock                string // mx_auth attach on a Unix socket
}

// TestHostileCallers calls from addresses other than loopback, which it
// makes in a network namespace of its own (withStrangers).
func TestHostileCallers(t *testing.T) {
	t.Parallel()
	withStrangers(t, "TestHostileCallers", hostileCallers)
}

func hostileCallers(t *testing.T, v4, v6 string) {
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"ok":true}`)
	})
	sec := newSecurityAPI(t)
	s := callerSites{attach: freePort(t), token: freePort(t), sign: freePort(t), narrow: freePort(t),
		sock: filepath.Join(t.TempDir(), "sidecar.sock")}
	// The sites are written as the issue found them: an address that
	// looks like loopback and no bind. The server believes any forwarded
	// header from anywhere, to show that none of it counts.
	startGateway(t, fmt.Sprintf(`{
	admin {ADMIN}
	log {
		level DEBUG
	}
	servers {
		trusted_proxies static 0.0.0.0/0 ::/0
		client_ip_headers X-Forwarded-For X-Real-IP
	}
}
http://127.0.0.1:%[1]d {
	mx_auth attach {
		client_id {env.E2E_MX_CLIENT_ID}
		api_key {env.E2E_MX_API_KEY}
	}
	reverse_proxy %[6]s
}
http://127.0.0.1:%[2]d {
	mxconnect_token {
		endpoint %[7]s/security/v1/apiKey/authenticate
		username {env.E2E_MXC_USER}
		password {env.E2E_MXC_PASS}
		api_key {env.E2E_MXC_KEY}
	}
	reverse_proxy %[6]s
}
http://127.0.0.1:%[3]d {
	mdx_hmac sign {
		key {env.E2E_MDX_KEY}
	}
	reverse_proxy %[6]s
}
http://127.0.0.1:%[4]d {
	bind 127.0.0.1
	mx_auth attach {
		client_id {env.E2E_MX_CLIENT_ID}
		api_key {env.E2E_MX_API_KEY}
		allow_callers 127.0.0.1/32
	}
	reverse_proxy %[6]s
}
http:// {
	bind unix/%[5]s
	mx_auth attach {
		client_id {env.E2E_MX_CLIENT_ID}
		api_key {env.E2E_MX_API_KEY}
	}
	reverse_proxy %[6]s
}
`, s.attach, s.token, s.sign, s.narrow, s.sock, up.hostPort(), sec.URL),
		"E2E_MX_CLIENT_ID=CLIENT-1234", "E2E_MX_API_KEY=API-KEY-4567-secret",
		"E2E_MXC_USER=mxc-user", "E2E_MXC_PASS=mxc-pass-secret", "E2E_MXC_KEY=API_mxc-key-secret",
		"E2E_MDX_KEY="+demoKey)

	directives := []struct {
		name   string
		port   int
		body   string // the refusal, in the directive's format
		signed string // the header the credential is in
	}{
		{"mx_auth_attach", s.attach, `{"error":{"message":"Forbidden: this caller may not use the credentials of this gateway"}}`, "Authorization"},
		{"mxconnect_token", s.token, `{"error":{"message":"Forbidden: this caller may not use the credentials of this gateway"}}`, "Authorization"},
		{"mdx_hmac_sign", s.sign, mdxError("Forbidden: this caller may not use the credentials of this gateway"), "Mdx-Hmac"},
	}

	// send makes one request from src to host:port (with Host
	// 127.0.0.1:port, the site's address) and checks the status and what
	// reached the upstream.
	send := func(t *testing.T, client *http.Client, url string, port int, hdr map[string]string, wantStatus int, wantBody, credHeader string) {
		t.Helper()
		before := len(up.Requests())
		req := mustRequest(t, "GET", url)
		req.Host = fmt.Sprintf("127.0.0.1:%d", port)
		req.Header.Set("Authorization", "Basic YXR0YWNrZXI6Z3Vlc3M=") // the attacker's own: must not survive either
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", url, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != wantStatus {
			t.Fatalf("status %d, want %d: %s", resp.StatusCode, wantStatus, body)
		}
		got := up.Requests()[before:]
		if wantStatus != 200 {
			if string(body) != wantBody {
				t.Errorf("body %s, want %s", body, wantBody)
			}
			if len(got) != 0 {
				t.Fatalf("the upstream received %d request(s), credentials and all", len(got))
			}
			return
		}
		if len(got) != 1 || got[0].Header.Get(credHeader) == "" || got[0].Header.Get("Authorization") == "Basic YXR0YWNrZXI6Z3Vlc3M=" && credHeader == "Authorization" {
			t.Fatalf("the upstream received %d request(s), want one with the gateway's %s", len(got), credHeader)
		}
	}

	forged := map[string]map[string]string{
		"host_header_to_loopback_site_from_other_address": nil,
		"xff_claims_loopback":                             {"X-Forwarded-For": "127.0.0.1"},
		"x_real_ip_claims_loopback":                       {"X-Real-IP": "127.0.0.1"},
		"forwarded_claims_loopback":                       {"Forwarded": "for=127.0.0.1", "X-Forwarded-For": "::1"},
	}
	for _, d := range directives {
		t.Run(d.name, func(t *testing.T) {
			t.Run("control_loopback_caller", func(t *testing.T) {
				send(t, httpClientFrom("127.0.0.1"), fmt.Sprintf("http://127.0.0.1:%d/users", d.port), d.port, nil, 200, "", d.signed)
			})
			for name, hdr := range forged {
				t.Run(name, func(t *testing.T) {
					send(t, httpClientFrom(v4), fmt.Sprintf("http://%s/users", net.JoinHostPort(v4, fmt.Sprint(d.port))), d.port, hdr, 403, d.body, d.signed)
				})
			}
			t.Run("ipv6_other_address", func(t *testing.T) {
				send(t, httpClientFrom(v6), fmt.Sprintf("http://%s/users", net.JoinHostPort(v6, fmt.Sprint(d.port))), d.port,
					map[string]string{"X-Forwarded-For": "127.0.0.1"}, 403, d.body, d.signed)
			})
		})
	}
	// the Security API was asked for a token once, for the loopback
	// control, and never on behalf of a refused caller
	if n := sec.calls.Load(); n != 1 {
		t.Errorf("the Security API was called %d times, want 1", n)
	}

	// allow_callers replaces the default: 127.0.0.1/32 shuts out the rest
	// of 127.0.0.0/8
	t.Run("narrowed_allow_callers", func(t *testing.T) {
		url := fmt.Sprintf("http://127.0.0.1:%d/users", s.narrow)
		t.Run("control_listed_caller", func(t *testing.T) {
			send(t, httpClientFrom("127.0.0.1"), url, s.narrow, nil, 200, "", "Authorization")
		})
		t.Run("other_loopback_address", func(t *testing.T) {
			send(t, httpClientFrom("127.0.0.2"), url, s.narrow, map[string]string{"X-Forwarded-For": "127.0.0.1"},
				403, directives[0].body, "Authorization")
		})
	})

	// the sidecar on a Unix socket, as the README shows it: every caller
	// that can open the socket is local
	t.Run("unix_socket", func(t *testing.T) {
		t.Run("control_unix_socket_caller", func(t *testing.T) {
			send(t, unixClient(s.sock), "http://sidecar/users", 0, nil, 200, "", "Authorization")
			if got := up.Requests(); got[len(got)-1].Header.Get("Authorization") != "Basic "+basicAuthOf("CLIENT-1234", "API-KEY-4567-secret") {
				t.Error("the upstream did not get the gateway's credentials")
			}
		})
	})
}

// basicAuthOf is the Basic credential of user and pass.
func basicAuthOf(user, pass string) string {
	r, _ := http.NewRequest("GET", "/", nil)
	r.SetBasicAuth(user, pass)
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Basic ")
}
