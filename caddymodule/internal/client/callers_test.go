package client

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/mxgate/mxgate/caddymodule/internal/refusal"
)

func provisionCallers(t *testing.T, c *Callers, format refusal.Format) {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := c.Provision(ctx, "mx_auth", format); err != nil {
		t.Fatal(err)
	}
}

func callerRequest(remote string, xff ...string) *http.Request {
	r := httptest.NewRequest("GET", "http://127.0.0.1:8490/users", nil)
	r.RemoteAddr = remote
	r.Host = "127.0.0.1:8490"
	for _, v := range xff {
		r.Header.Add("X-Forwarded-For", v)
	}
	r.Header.Set("X-Real-IP", "127.0.0.1")
	r.Header.Set("Forwarded", "for=127.0.0.1")
	return r
}

func TestCallersDefaultIsLoopback(t *testing.T) {
	var c Callers
	provisionCallers(t, &c, refusal.FormatJSON)
	var zero Callers // not provisioned: the same answers
	for remote, want := range map[string]bool{
		"127.0.0.1:5000":           true,
		"127.0.0.2:5000":           true,
		"127.255.255.254:1":        true,
		"[::1]:5000":               true,
		"[::ffff:127.0.0.1]:5000":  true,
		"[::ffff:7f00:2]:5000":     true,
		"192.0.2.2:5000":           false,
		"10.0.0.1:5000":            false,
		"[fd00::2]:5000":           false,
		"[fe80::1%eth0]:5000":      false,
		"[::127.0.0.1]:5000":       false, // IPv4-compatible, not loopback
		"[::ffff:192.0.2.2]:5000":  false,
		"128.0.0.1:5000":           false,
		"127.0.0.1":                false, // no port: not what net/http writes
		"":                         false,
		"@":                        false, // a Unix-socket peer, but the local address says TCP
		"localhost:5000":           false,
		"127.0.0.1:5000, 10.0.0.1": false,
	} {
		for name, c := range map[string]*Callers{"provisioned": &c, "zero": &zero} {
			// forwarded headers claiming loopback never count
			r := callerRequest(remote, "127.0.0.1", "::1")
			if got := c.Allowed(r); got != want {
				t.Errorf("%s: peer %q: allowed %v, want %v", name, remote, got, want)
			}
		}
	}
}

func TestCallersUnixSocket(t *testing.T) {
	var c Callers
	provisionCallers(t, &c, refusal.FormatJSON)
	for _, remote := range []string{"@", "", "/run/mxgate/sidecar.sock", "192.0.2.2:5000"} {
		r := callerRequest(remote)
		r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, &net.UnixAddr{Name: "/run/mxgate/sidecar.sock", Net: "unix"}))
		if !c.Allowed(r) {
			t.Errorf("Unix-socket caller %q refused", remote)
		}
	}
	// a TCP local address with a Unix-looking remote is not a Unix socket
	r := callerRequest("@")
	r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8490}))
	if c.Allowed(r) {
		t.Error("a TCP connection with RemoteAddr @ was admitted")
	}
}

func TestCallersAllowList(t *testing.T) {
	narrow := Callers{AllowCallers: []string{"127.0.0.1/32"}}
	provisionCallers(t, &narrow, refusal.FormatJSON)
	wide := Callers{AllowCallers: []string{"loopback", "192.0.2.0/24", "2001:db8::/32"}}
	provisionCallers(t, &wide, refusal.FormatJSON)
	private := Callers{AllowCallers: []string{"private_ranges"}}
	provisionCallers(t, &private, refusal.FormatJSON)
	for _, c := range []struct {
		c      *Callers
		remote string
		want   bool
	}{
		{&narrow, "127.0.0.1:1", true},
		{&narrow, "[::ffff:127.0.0.1]:1", true},
		{&narrow, "127.0.0.2:1", false}, // the list replaces the default
		{&narrow, "[::1]:1", false},
		{&wide, "127.0.0.9:1", true},
		{&wide, "[::1]:1", true},
		{&wide, "192.0.2.2:1", true},
		{&wide, "[2001:db8::5]:1", true},
		{&wide, "198.51.100.1:1", false},
		{&private, "10.1.2.3:1", true},
		{&private, "[fd00::2]:1", true},
		{&private, "192.0.2.2:1", false},
	} {
		if got := c.c.Allowed(callerRequest(c.remote)); got != c.want {
			t.Errorf("allow_callers %v, peer %s: %v, want %v", c.c.AllowCallers, c.remote, got, c.want)
		}
	}

	bad := Callers{AllowCallers: []string{"127.0.0.1/33"}}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := bad.Provision(ctx, "mx_auth", refusal.FormatJSON); err == nil || !strings.Contains(err.Error(), "allow_callers") {
		t.Errorf("bad list: %v", err)
	}
}

func TestCallersRefuse(t *testing.T) {
	for format, want := range map[refusal.Format]string{
		refusal.FormatJSON: `{"error":{"message":"Forbidden: this caller may not use the credentials of this gateway"}}`,
		refusal.FormatMDX:  `<mdx version="5.0"><error><code></code><message>Forbidden: this caller may not use the credentials of this gateway</message></error></mdx>`,
	} {
		var c Callers
		provisionCallers(t, &c, format)
		w := httptest.NewRecorder()
		if err := c.Refuse(w, callerRequest("192.0.2.2:5000")); err != nil {
			t.Fatal(err)
		}
		if w.Code != 403 || w.Body.String() != want {
			t.Errorf("%s: %d %s", format, w.Code, w.Body)
		}
	}
	var c Callers
	provisionCallers(t, &c, refusal.FormatHandleErrors)
	err := c.Refuse(httptest.NewRecorder(), callerRequest("192.0.2.2:5000"))
	var he caddyhttp.HandlerError
	if !errors.As(err, &he) || he.StatusCode != 403 {
		t.Errorf("handle_errors: %v", err)
	}
}

func TestAllowCallersOption(t *testing.T) {
	d := caddyfile.NewTestDispenser("allow_callers loopback 10.1.0.0/16 private_ranges")
	d.Next()
	if got, err := AllowCallers(d); err != nil || len(got) != 3 {
		t.Fatalf("%v %v", got, err)
	}
	for _, bad := range []string{"allow_callers", "allow_callers 10.1.0.0/33", "allow_callers somewhere"} {
		d := caddyfile.NewTestDispenser(bad)
		d.Next()
		if _, err := AllowCallers(d); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
