package ipallow

import (
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/mxgate/mxgate/caddymodule/internal/caddyfileopt"
	"github.com/mxgate/mxgate/internal/testkit/handlertest"
)

func TestUnmarshalCaddyfile(t *testing.T) {
	for input, want := range map[string]IPAllow{
		"mx_ip_allow":                {},
		"mx_ip_allow mdx 10.0.0.0/8": {Ranges: []string{"mdx", "10.0.0.0/8"}},
		"mx_ip_allow mx {\n\tranges 192.0.2.1 2001:db8::/32\n\terror_format json\n}": {Ranges: []string{"mx", "192.0.2.1", "2001:db8::/32"}, ErrorFormat: "json"},
		"mx_ip_allow {\n\tranges mdx\n\tranges 10.0.0.0/8\n}":                        {Ranges: []string{"mdx", "10.0.0.0/8"}},
	} {
		var a IPAllow
		if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)); err != nil {
			t.Errorf("%q: %v", input, err)
			continue
		}
		if !slices.Equal(a.Ranges, want.Ranges) || a.ErrorFormat != want.ErrorFormat {
			t.Errorf("%q: %+v, want %+v", input, a, want)
		}
	}
	for input, msg := range map[string]string{
		"mx_ip_allow 10.0.0.0/33":               "Testfile:1",
		"mx_ip_allow {\n\tranges\n}":            "wrong argument count",
		"mx_ip_allow {\n\tranges nowhere\n}":    "Testfile:",
		"mx_ip_allow {\n\terror_format html\n}": `unknown error_format "html"`,
		"mx_ip_allow {\n\tallow 10.0.0.0/8\n}":  "unrecognized mx_ip_allow option 'allow'",
	} {
		var a IPAllow
		err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
		if err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%q: %v, want %q", input, err, msg)
		}
	}
}

// TestDirective: the registered parse function reads the directive into a
// handler that admits what the Caddyfile says.
func TestDirective(t *testing.T) {
	h, err := caddyfileopt.UnmarshalHandler[IPAllow](httpcaddyfile.Helper{Dispenser: caddyfile.NewTestDispenser("mx_ip_allow 198.51.100.0/24 {\n\terror_format text\n}")})
	if err != nil {
		t.Fatal(err)
	}
	a := h.(*IPAllow)
	handlertest.Provision(t, a)
	for ip, want := range map[string]int{"198.51.100.9": 200, "66.43.0.1": 403} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = ip + ":40000" // mx_ip_allow decides on the TCP peer
		w, err := handlertest.Serve(t, a, handlertest.Request(r, ip), &handlertest.Next{})
		if err != nil || w.Code != want {
			t.Errorf("%s: %d %v, want %d", ip, w.Code, err, want)
		}
		if want == 403 && w.Body.String() != "Forbidden: client address is not allowed\n" {
			t.Errorf("%s: body %q", ip, w.Body)
		}
	}
}

func TestProvisionErrors(t *testing.T) {
	for name, a := range map[string]*IPAllow{
		"bad range":  {Ranges: []string{"10.0.0.0/33"}},
		"bad preset": {Ranges: []string{"aws"}},
		"bad format": {ErrorFormat: "html"},
	} {
		err := handlertest.TryProvision(t, a)
		if err == nil {
			t.Errorf("%s: provisioned", name)
		} else if name != "bad format" && !strings.HasPrefix(err.Error(), "mx_ip_allow: ranges: ") {
			t.Errorf("%s: %v does not name the directive and the option", name, err)
		}
	}
}

// TestRefusalLogged: a refusal is logged at debug level with the client
// address and the path.
func TestRefusalLogged(t *testing.T) {
	a := &IPAllow{}
	handlertest.Provision(t, a)
	logger, logs := handlertest.Logs()
	a.logger = logger
	r := httptest.NewRequest("POST", "/inst1/sessions", nil)
	r.RemoteAddr = "203.0.113.5:40000"
	_, _ = handlertest.Serve(t, a, handlertest.Request(r, "203.0.113.5"), &handlertest.Next{})
	entries := logs.FilterMessage("client address not allowed").All()
	if len(entries) != 1 {
		t.Fatalf("%d log entries", logs.Len())
	}
	if f := entries[0].ContextMap(); f["remote_addr"] != "203.0.113.5:40000" || f["method"] != "POST" || f["path"] != "/inst1/sessions" {
		t.Errorf("fields %v", f)
	}
}
