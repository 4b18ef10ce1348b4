package mxapi

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/mxgate/mxgate/internal/testkit/handlertest"
)

// credentialHandlers are the handlers of this package that add a
// credential, each provisioned; calls counts the Security API's calls.
func credentialHandlers(t *testing.T, allow []string) (map[string]caddyhttp.MiddlewareHandler, *atomic.Int64) {
	t.Helper()
	calls := new(atomic.Int64)
	security := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		calls.Add(1)
		_, _ = io.WriteString(w, `{"token":"opaque-token"}`)
	}))
	t.Cleanup(security.Close)
	attach := &AuthAttach{ClientID: "CLIENT-1234", APIKey: "API-KEY-4567"}
	attach.AllowCallers = allow
	token := &MXConnectToken{Endpoint: security.URL, Username: "u", Password: "p", APIKey: "k"}
	token.AllowCallers = allow
	handlertest.Provision(t, attach)
	handlertest.Provision(t, token)
	return map[string]caddyhttp.MiddlewareHandler{"mx_auth attach": attach, "mxconnect_token": token}, calls
}

// TestCredentialsOnlyForLocalCallers: a caller that is not loopback gets
// 403 and nothing reaches the upstream, whatever it claims in headers.
func TestCredentialsOnlyForLocalCallers(t *testing.T) {
	handlers, calls := credentialHandlers(t, nil)
	for name, h := range handlers {
		for remote, want := range map[string]int{
			"127.0.0.1:50000":         200,
			"127.0.0.2:50000":         200,
			"[::1]:50000":             200,
			"[::ffff:127.0.0.1]:5000": 200,
			"192.0.2.2:50000":         403,
			"[fd00::2]:50000":         403,
			"@":                       403,
		} {
			r := httptest.NewRequest("GET", "http://127.0.0.1:8490/users", nil)
			r.RemoteAddr = remote
			r.Header.Set("X-Forwarded-For", "127.0.0.1")
			r.Header.Set("X-Real-IP", "127.0.0.1")
			r = handlertest.Request(r, "127.0.0.1") // the server believed the header
			next := &handlertest.Next{}
			w, err := handlertest.Serve(t, h, r, next)
			if err != nil {
				t.Fatal(err)
			}
			if w.Code != want {
				t.Errorf("%s, caller %s: %d, want %d", name, remote, w.Code, want)
			}
			if want == 403 {
				if next.Calls != 0 {
					t.Errorf("%s, caller %s: the upstream was reached", name, remote)
				}
				if w.Body.String() != `{"error":{"message":"Forbidden: this caller may not use the credentials of this gateway"}}` {
					t.Errorf("%s: body %s", name, w.Body)
				}
				if r.Header.Get("Authorization") != "" {
					t.Errorf("%s, caller %s: a credential was set", name, remote)
				}
			}
		}
	}
	if calls.Load() != 1 {
		t.Errorf("the Security API was called %d times, want once (for the first local caller)", calls.Load())
	}

	// a Unix-socket caller
	for name, h := range handlers {
		r := httptest.NewRequest("GET", "/users", nil)
		r.RemoteAddr = "@"
		r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, &net.UnixAddr{Name: "/run/mxgate/sidecar.sock", Net: "unix"}))
		w, err := handlertest.Serve(t, h, handlertest.Request(r, ""), &handlertest.Next{})
		if err != nil || w.Code != 200 {
			t.Errorf("%s, Unix socket: %d %v", name, w.Code, err)
		}
	}
}

func TestAllowCallersNarrows(t *testing.T) {
	handlers, _ := credentialHandlers(t, []string{"127.0.0.1/32", "192.0.2.0/24"})
	for name, h := range handlers {
		for remote, want := range map[string]int{"127.0.0.1:1": 200, "192.0.2.2:1": 200, "127.0.0.2:1": 403, "[::1]:1": 403} {
			r := httptest.NewRequest("GET", "/users", nil)
			r.RemoteAddr = remote
			w, err := handlertest.Serve(t, h, handlertest.Request(r, ""), &handlertest.Next{})
			if err != nil || w.Code != want {
				t.Errorf("%s, caller %s: %d %v, want %d", name, remote, w.Code, err, want)
			}
		}
	}
}
