package ipallow

import (
	"errors"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/mxgate/mxgate/caddymodule/internal/gate"
	"github.com/mxgate/mxgate/caddymodule/internal/handlertest"
)

func TestIPAllow(t *testing.T) {
	a := &IPAllow{Ranges: []string{"mdx", "2001:db8::/32"}}
	handlertest.Provision(t, a)
	cases := map[string]int{
		"64.77.254.33":        200,
		"64.77.254.64":        403,
		"66.43.0.1":           403, // mx, not mdx
		"::ffff:64.77.254.33": 200,
		"2001:db8::7":         200,
		"2001:db9::7":         403,
		"":                    403,
		"not-an-address":      403,
		"64.77.254.33:1234":   403,
	}
	for ip, want := range cases {
		rec := &handlertest.Next{}
		w := httptest.NewRecorder()
		r := handlertest.Request(httptest.NewRequest("GET", "/inst1/accounts", nil), ip)
		if err := a.ServeHTTP(w, r, rec); err != nil {
			t.Fatal(err)
		}
		if w.Code != want {
			t.Errorf("client %q: status %d, want %d", ip, w.Code, want)
		}
		if (rec.Calls == 1) != (want == 200) {
			t.Errorf("client %q: next called %d times", ip, rec.Calls)
		}
		if want == 403 {
			if got := w.Body.String(); got != `<mdx version="5.0"><error><code></code><message>Forbidden: client address is not allowed</message></error></mdx>` {
				t.Errorf("client %q: body %q", ip, got)
			}
			if ct := w.Header().Get("Content-Type"); ct != gate.MDXContentType {
				t.Errorf("Content-Type %q", ct)
			}
		}
	}
	// no vars in the context at all (not served by Caddy's server)
	w := httptest.NewRecorder()
	if err := a.ServeHTTP(w, httptest.NewRequest("GET", "/", nil), &handlertest.Next{}); err != nil || w.Code != 403 {
		t.Errorf("request without vars: %d, %v", w.Code, err)
	}
}

func TestIPAllowDefaultIsMX(t *testing.T) {
	a := &IPAllow{}
	handlertest.Provision(t, a)
	for ip, want := range map[string]int{"66.43.0.1": 200, "170.178.151.255": 200, "127.0.0.1": 403} {
		w := httptest.NewRecorder()
		_ = a.ServeHTTP(w, handlertest.Request(httptest.NewRequest("GET", "/", nil), ip), &handlertest.Next{})
		if w.Code != want {
			t.Errorf("%s: %d, want %d", ip, w.Code, want)
		}
	}
}

func TestErrorFormats(t *testing.T) {
	for format, want := range map[string]struct{ ctype, body string }{
		string(gate.FormatMDX):  {gate.MDXContentType, `<mdx version="5.0"><error><code></code><message>Forbidden: client address is not allowed</message></error></mdx>`},
		string(gate.FormatJSON): {"application/json; charset=utf-8", `{"error":{"message":"Forbidden: client address is not allowed"}}`},
		string(gate.FormatText): {"text/plain; charset=utf-8", "Forbidden: client address is not allowed\n"},
	} {
		a := &IPAllow{Ranges: []string{"mx"}, ErrorFormat: format}
		handlertest.Provision(t, a)
		w := httptest.NewRecorder()
		if err := a.ServeHTTP(w, handlertest.Request(httptest.NewRequest("GET", "/", nil), "10.0.0.1"), &handlertest.Next{}); err != nil {
			t.Fatal(err)
		}
		if w.Code != 403 || w.Header().Get("Content-Type") != want.ctype || w.Body.String() != want.body {
			t.Errorf("%s: %d %q %q", format, w.Code, w.Header().Get("Content-Type"), w.Body.String())
		}
		if w.Header().Get("Content-Length") != strconv.Itoa(len(want.body)) {
			t.Errorf("%s: Content-Length %q", format, w.Header().Get("Content-Length"))
		}
	}
	a := &IPAllow{ErrorFormat: string(gate.FormatHandleErrors)}
	handlertest.Provision(t, a)
	w := httptest.NewRecorder()
	err := a.ServeHTTP(w, handlertest.Request(httptest.NewRequest("GET", "/", nil), "10.0.0.1"), &handlertest.Next{})
	var he caddyhttp.HandlerError
	if !errors.As(err, &he) || he.StatusCode != 403 || w.Body.Len() != 0 {
		t.Errorf("handle_errors: err %v, body %q", err, w.Body.String())
	}
}
