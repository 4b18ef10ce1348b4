package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/mxgate/mxgate/caddymodule/limit"
	_ "github.com/mxgate/mxgate/caddymodule/mdx"
	_ "github.com/mxgate/mxgate/caddymodule/mxapi"
)

func adapt(t *testing.T, caddyfile string) []byte {
	t.Helper()
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestStateNames: each directive with state is listed with its role, what
// it protects and its namespace, without the client id; a collision is
// the error loading the configuration would give; a configuration
// without state says so.
func TestStateNames(t *testing.T) {
	var out bytes.Buffer
	err := stateNames(adapt(t, `{
	admin off
}
https://mdx.bank.example {
	route {
		mdx_hmac verify {
			key QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo3ODkwMTI=
			replay_window 10m
		}
		mx_rate_limit {
			get 10/s
		}
		respond ok
	}
}
http://127.0.0.1:8490 {
	route {
		mx_auth attach {
			client_id CLIENT-SECRET-ISH
			api_key k
		}
		mx_rate_limit {
			namespace sidecar-budget
		}
		respond ok
	}
}
`), &out)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "DIRECTIVE") {
		t.Fatalf("output:\n%s", out.String())
	}
	for i, want := range [][]string{
		{"mdx_hmac", "ingress", "site mdx.bank.example on port 443", "default", "memory"},
		{"mx_rate_limit", "ingress", "site mdx.bank.example on port 443", "default"},
		{"mx_rate_limit", "egress", "MX Platform API client id #", "sidecar-budget", "given", "listening on :8490"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i+1], w) {
				t.Errorf("line %d %q lacks %q", i+1, lines[i+1], w)
			}
		}
	}
	if strings.Contains(out.String(), "CLIENT-SECRET-ISH") {
		t.Error("the client id was printed")
	}

	err = stateNames(adapt(t, `{
	admin off
}
:8480 {
	@get method GET
	handle @get {
		route {
			mx_rate_limit
		}
	}
	handle {
		route {
			mx_rate_limit
		}
	}
}
`), &out)
	if err == nil || !strings.Contains(err.Error(), "would share one state") {
		t.Errorf("a collision: %v", err)
	}

	out.Reset()
	if err := stateNames(adapt(t, "{\n\tadmin off\n}\n:8481 {\n\trespond ok\n}\n"), &out); err != nil || out.String() != "no directive keeps state\n" {
		t.Errorf("no state: %v %q", err, out.String())
	}
}
