package health

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/mxgate/mxgate/caddymodule/internal/readiness"
	"github.com/mxgate/mxgate/internal/testkit/handlertest"
)

func TestReadiness(t *testing.T) {
	h := &Health{Timeout: caddy.Duration(time.Second)}
	serve := func(method string) (int, string) {
		w, err := handlertest.Serve(t, h, httptest.NewRequest(method, "/ready", nil), &handlertest.Next{})
		if err != nil {
			t.Fatal(err)
		}
		return w.Code, w.Body.String()
	}
	if code, body := serve("GET"); code != 200 || body != `{"status":"ready"}` {
		t.Fatalf("nothing registered: %d %s", code, body)
	}
	down := readiness.Register(readiness.Dependency{Name: "a store", Check: func(context.Context) error { return errors.New("unreachable") }})
	slow := readiness.Register(readiness.Dependency{Name: "a slow JWKS", Check: func(ctx context.Context) error {
		<-ctx.Done() // bounded by the check's timeout
		return ctx.Err()
	}})
	h.Timeout = caddy.Duration(50 * time.Millisecond)
	code, body := serve("GET")
	if code != 503 || !strings.Contains(body, `"a slow JWKS: context deadline exceeded"`) || !strings.Contains(body, `"a store: unreachable"`) {
		t.Fatalf("two failing: %d %s", code, body)
	}
	if code, body := serve("HEAD"); code != 503 || body != "" {
		t.Fatalf("HEAD: %d %q", code, body)
	}
	down()
	slow()
	if code, _ := serve("GET"); code != 200 {
		t.Fatalf("after unregistering: %d", code)
	}
}

func TestUnmarshalCaddyfile(t *testing.T) {
	var h Health
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("mx_health {\n\ttimeout 5s\n}")); err != nil || time.Duration(h.Timeout) != 5*time.Second {
		t.Fatalf("%v %v", err, h.Timeout)
	}
	for _, bad := range []string{"mx_health x", "mx_health {\n\ttimeout\n}", "mx_health {\n\ttimeout -1s\n}", "mx_health {\n\tfoo\n}", "mx_health {\n\ttimeout 1s 2s\n}"} {
		var h Health
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
