package ipallow

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/mxgate/mxgate/caddymodule/internal/client"
	"github.com/mxgate/mxgate/caddymodule/internal/refusal"
	"github.com/mxgate/mxgate/cidr"
	"github.com/mxgate/mxgate/internal/testkit/handlertest"
)

const mdxBody = `<mdx version="5.0"><error><code></code><message>Forbidden: client address is not allowed</message></error></mdx>`

// request is r as Caddy's server hands it on from peer, with Caddy's
// client IP (what the server's trusted_proxies made of it) set to
// caddyClientIP.
func request(peer, caddyClientIP string, xff ...string) *http.Request {
	r := httptest.NewRequest("GET", "/inst1/accounts", nil)
	r.RemoteAddr = peer
	for _, v := range xff {
		r.Header.Add("X-Forwarded-For", v)
	}
	return handlertest.Request(r, caddyClientIP)
}

func serve(t *testing.T, a *IPAllow, r *http.Request) (int, *handlertest.Next, string) {
	t.Helper()
	next := &handlertest.Next{}
	w := httptest.NewRecorder()
	if err := a.ServeHTTP(w, r, next); err != nil {
		t.Fatal(err)
	}
	return w.Code, next, w.Body.String()
}

func TestIPAllowDecidesOnPeer(t *testing.T) {
	a := &IPAllow{Ranges: []string{"mdx", "2001:db8::/32"}}
	handlertest.Provision(t, a)
	cases := map[string]int{
		"64.77.254.33:5000":          200,
		"64.77.254.64:5000":          403,
		"66.43.0.1:5000":             403, // mx, not mdx
		"[::ffff:64.77.254.33]:5000": 200,
		"[2001:db8::7]:5000":         200,
		"[2001:db8::7%eth0]:5000":    200, // the kernel's zone, not the client's
		"[2001:db9::7]:5000":         403,
		"":                           403,
		"@":                          403, // a Unix socket: no address
		"not-an-address":             403,
		"64.77.254.33":               403, // not what net/http writes
	}
	for peer, want := range cases {
		// Caddy's client IP and the forwarded header both claim MX: the
		// server trusted a proxy, or a client wrote them; neither counts.
		status, next, body := serve(t, a, request(peer, "64.77.254.33", "64.77.254.33"))
		if status != want {
			t.Errorf("peer %q: status %d, want %d", peer, status, want)
		}
		if (next.Calls == 1) != (want == 200) {
			t.Errorf("peer %q: next called %d times", peer, next.Calls)
		}
		if want == 403 && body != mdxBody {
			t.Errorf("peer %q: body %q", peer, body)
		}
	}
	// Caddy's client IP outside the list does not refuse an MX peer either
	if status, _, _ := serve(t, a, request("64.77.254.33:5000", "203.0.113.9")); status != 200 {
		t.Errorf("MX peer with another client IP: %d", status)
	}
	// no vars in the context at all (not served by Caddy's server)
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "64.77.254.33:1"
	if status, _, _ := serve(t, a, r); status != 200 {
		t.Errorf("request without vars: %d", status)
	}
}

func TestIPAllowDefaultIsMX(t *testing.T) {
	a := &IPAllow{}
	handlertest.Provision(t, a)
	for ip, want := range map[string]int{"66.43.0.1:1": 200, "170.178.151.255:1": 200, "127.0.0.1:1": 403} {
		if status, _, _ := serve(t, a, request(ip, "")); status != want {
			t.Errorf("%s: %d, want %d", ip, status, want)
		}
	}
}

// TestClientAddr is the table of ways a client tries to pass as MX.
func TestClientAddr(t *testing.T) {
	lb, err := client.ParseRanges("10.0.0.0/8", "fd00::/8")
	if err != nil {
		t.Fatal(err)
	}
	const mx, real = "64.77.254.33", "203.0.113.9"
	type tc struct {
		peer    string
		header  []string
		trusted *cidr.List
		want    string // "" for a refusal (ok false)
	}
	for name, c := range map[string]tc{
		// no trusted proxies: the header is never read
		"no proxies, xff spoof":         {"203.0.113.9:1", []string{mx}, nil, real},
		"no proxies, garbage header":    {"203.0.113.9:1", []string{"garbage"}, nil, real},
		"no proxies, mapped peer":       {"[::ffff:64.77.254.33]:1", nil, nil, mx},
		"untrusted peer with xff":       {"203.0.113.9:1", []string{mx}, lb, real},
		"untrusted peer, garbage xff":   {"203.0.113.9:1", []string{"%%%"}, lb, real},
		"loopback peer is not trusted":  {"127.0.0.1:1", []string{mx}, lb, "127.0.0.1"},
		"trusted peer with no xff":      {"10.0.0.5:1", nil, lb, "10.0.0.5"},
		"trusted peer, legitimate":      {"10.0.0.5:1", []string{mx}, lb, mx},
		"trusted v6 peer, legitimate":   {"[fd00::5]:1", []string{mx}, lb, mx},
		"trusted mapped peer":           {"[::ffff:10.0.0.5]:1", []string{mx}, lb, mx},
		"chain of proxies":              {"10.0.0.5:1", []string{mx + ", 10.0.0.6, 10.9.9.9"}, lb, mx},
		"all trusted: left-most":        {"10.0.0.5:1", []string{"10.1.1.1, 10.0.0.6"}, lb, "10.1.1.1"},
		"xff spoof left-most":           {"10.0.0.5:1", []string{mx + ", " + real}, lb, real},
		"xff spoof behind a proxy":      {"10.0.0.5:1", []string{mx + ", " + real + ", 10.0.0.6"}, lb, real},
		"xff ipv4-mapped spoof":         {"10.0.0.5:1", []string{"::ffff:" + mx + ", " + real}, lb, real},
		"xff ipv4-mapped legitimate":    {"10.0.0.5:1", []string{"::ffff:" + mx}, lb, mx},
		"xff mapped bracket port":       {"10.0.0.5:1", []string{"[::ffff:" + mx + "]:443"}, lb, mx},
		"xff with port spoof":           {"10.0.0.5:1", []string{mx + ":443, " + real}, lb, real},
		"xff with port legitimate":      {"10.0.0.5:1", []string{mx + ":443"}, lb, mx},
		"xff v6 bracket no port":        {"10.0.0.5:1", []string{"[2001:db8::1]"}, lb, "2001:db8::1"},
		"xff v6 bracket port":           {"10.0.0.5:1", []string{"[2001:db8::1]:8080"}, lb, "2001:db8::1"},
		"xff v6 bare":                   {"10.0.0.5:1", []string{" 2001:db8::1 "}, lb, "2001:db8::1"},
		"xff zone v4":                   {"10.0.0.5:1", []string{mx + "%eth0"}, lb, ""},
		"xff zone v6":                   {"10.0.0.5:1", []string{"fe80::1%eth0"}, lb, ""},
		"xff zone mapped":               {"10.0.0.5:1", []string{"::ffff:" + mx + "%25eth0"}, lb, ""},
		"xff zone in brackets":          {"10.0.0.5:1", []string{"[::ffff:" + mx + "%eth0]:80"}, lb, ""},
		"xff zone left of client":       {"10.0.0.5:1", []string{mx + "%eth0, " + real}, lb, real},
		"xff two lines, spoof first":    {"10.0.0.5:1", []string{mx, real}, lb, real},
		"xff two lines, proxy last":     {"10.0.0.5:1", []string{mx, real + ", 10.0.0.6"}, lb, real},
		"xff two lines, legitimate":     {"10.0.0.5:1", []string{real, mx}, lb, mx},
		"xff line all trusted, spoof":   {"10.0.0.5:1", []string{real + ", " + mx, "10.0.0.6"}, lb, mx},
		"xff garbage right-most":        {"10.0.0.5:1", []string{mx + ", garbage"}, lb, ""},
		"xff unknown":                   {"10.0.0.5:1", []string{"unknown"}, lb, ""},
		"xff hostname":                  {"10.0.0.5:1", []string{"mx.example"}, lb, ""},
		"xff empty line":                {"10.0.0.5:1", []string{""}, lb, ""},
		"xff empty entry":               {"10.0.0.5:1", []string{mx + ","}, lb, ""},
		"xff empty entry between":       {"10.0.0.5:1", []string{mx + ",, 10.0.0.6"}, lb, ""},
		"xff leading zeros":             {"10.0.0.5:1", []string{"064.077.254.033"}, lb, ""},
		"xff port zero":                 {"10.0.0.5:1", []string{mx + ":0"}, lb, ""},
		"xff port too large":            {"10.0.0.5:1", []string{mx + ":65536"}, lb, ""},
		"xff port signed":               {"10.0.0.5:1", []string{mx + ":+80"}, lb, ""},
		"xff brackets around v4":        {"10.0.0.5:1", []string{"[" + mx + "]:80"}, lb, ""},
		"xff v6 port without brackets":  {"10.0.0.5:1", []string{"2001:db8::1:80:90:1:2:3"}, lb, ""},
		"xff quoted":                    {"10.0.0.5:1", []string{`"` + mx + `"`}, lb, ""},
		"xff forwarded syntax":          {"10.0.0.5:1", []string{"for=" + mx}, lb, ""},
		"xff control byte":              {"10.0.0.5:1", []string{mx + "\x00"}, lb, ""},
		"xff tab padding":               {"10.0.0.5:1", []string{"\t" + mx + "\t"}, lb, mx},
		"xff ipv4-compatible v6":        {"10.0.0.5:1", []string{"::" + mx}, lb, "::404d:fe21"},
		"peer unparseable":              {"garbage", []string{mx}, lb, ""},
		"peer unix socket":              {"@", []string{mx}, lb, ""},
		"peer unix socket, no proxies":  {"", nil, nil, ""},
		"trusted peer, trusted garbage": {"10.0.0.5:1", []string{real + ", 10.0.0.6:99999"}, lb, ""},
	} {
		got, ok := clientAddr(c.peer, c.header, c.trusted)
		switch {
		case c.want == "" && ok:
			t.Errorf("%s: got %s, want a refusal", name, got)
		case c.want != "" && !ok:
			t.Errorf("%s: refused, want %s", name, c.want)
		case c.want != "" && got != netip.MustParseAddr(c.want):
			t.Errorf("%s: got %s, want %s", name, got, c.want)
		}
	}
}

func TestIPAllowTrustedProxies(t *testing.T) {
	a := &IPAllow{Ranges: []string{"mdx"}, TrustedProxies: []string{"private_ranges"}}
	handlertest.Provision(t, a)
	for _, c := range []struct {
		peer   string
		xff    []string
		status int
	}{
		{"10.0.0.5:1", []string{"64.77.254.33"}, 200},
		{"127.0.0.1:1", []string{"64.77.254.33"}, 200}, // private_ranges has loopback
		{"10.0.0.5:1", []string{"64.77.254.33, 203.0.113.9"}, 403},
		{"10.0.0.5:1", []string{"64.77.254.33", "203.0.113.9"}, 403},
		{"10.0.0.5:1", []string{"64.77.254.33%eth0"}, 403},
		{"203.0.113.9:1", []string{"64.77.254.33"}, 403},
		{"10.0.0.5:1", nil, 403},
	} {
		status, next, body := serve(t, a, request(c.peer, "64.77.254.33", c.xff...))
		if status != c.status || (next.Calls == 1) != (c.status == 200) {
			t.Errorf("peer %s, xff %q: %d (next %d), want %d", c.peer, c.xff, status, next.Calls, c.status)
		}
		if c.status == 403 && body != mdxBody {
			t.Errorf("peer %s, xff %q: body %q", c.peer, c.xff, body)
		}
	}

	// another header: X-Forwarded-For is then not read at all
	b := &IPAllow{Ranges: []string{"mdx"}, TrustedProxies: []string{"10.0.0.0/8"}, ClientIPHeader: "x-real-client"}
	handlertest.Provision(t, b)
	r := request("10.0.0.5:1", "", "64.77.254.33")
	if status, _, _ := serve(t, b, r); status != 403 {
		t.Errorf("X-Forwarded-For read with client_ip_header set: %d", status)
	}
	r.Header.Set("X-Real-Client", "64.77.254.33")
	if status, _, _ := serve(t, b, r); status != 200 {
		t.Errorf("client_ip_header not read: %d", status)
	}
}

func TestIPAllowConfigErrors(t *testing.T) {
	for name, c := range map[string]struct {
		a    *IPAllow
		want string
	}{
		"bad proxy":               {&IPAllow{TrustedProxies: []string{"10.0.0.0/33"}}, "trusted_proxies"},
		"forwarded header":        {&IPAllow{TrustedProxies: []string{"10.0.0.0/8"}, ClientIPHeader: "Forwarded"}, "RFC 7239"},
		"bad header name":         {&IPAllow{TrustedProxies: []string{"10.0.0.0/8"}, ClientIPHeader: "X Forwarded"}, "not a header name"},
		"header without proxies":  {&IPAllow{ClientIPHeader: "X-Real-IP"}, "needs trusted_proxies"},
		"bad range":               {&IPAllow{Ranges: []string{"mxx"}}, "ranges"},
		"bad format":              {&IPAllow{ErrorFormat: "xml"}, "error_format"},
		"private_ranges as range": {&IPAllow{Ranges: []string{"private_ranges"}}, "ranges"},
	} {
		err := handlertest.TryProvision(t, c.a)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", name, err, c.want)
		}
	}
}

// TestWarnServerTrust: the server trusts the peer as a proxy but
// mx_ip_allow does not; one warning per configuration says what to add.
func TestWarnServerTrust(t *testing.T) {
	for name, a := range map[string]*IPAllow{
		"no trusted_proxies":     {Ranges: []string{"mdx"}},
		"peer not in the list":   {Ranges: []string{"mdx"}, TrustedProxies: []string{"10.0.0.0/8"}},
		"peer in the list (off)": {Ranges: []string{"mdx"}, TrustedProxies: []string{"127.0.0.1"}},
	} {
		handlertest.Provision(t, a)
		logger, logs := handlertest.Logs()
		a.logger = logger
		for range 3 {
			r := request("127.0.0.1:5000", "64.77.254.33", "64.77.254.33")
			caddyhttp.SetVar(r.Context(), caddyhttp.TrustedProxyVarKey, true)
			serve(t, a, r)
			// a peer the server does not trust: no warning
			serve(t, a, request("127.0.0.1:5000", "127.0.0.1"))
		}
		warns := logs.FilterLevelExact(zap.WarnLevel).All()
		if a.TrustedProxies != nil && a.TrustedProxies[0] == "127.0.0.1" {
			if len(warns) != 0 {
				t.Errorf("%s: warned %d times", name, len(warns))
			}
			continue
		}
		if len(warns) != 1 {
			t.Fatalf("%s: %d warnings, want 1", name, len(warns))
		}
		if msg := warns[0].Message; !strings.Contains(msg, "add `trusted_proxies 127.0.0.1`") {
			t.Errorf("%s: warning does not say what to add: %s", name, msg)
		}
	}
}

func TestErrorFormats(t *testing.T) {
	for format, want := range map[string]struct{ ctype, body string }{
		string(refusal.FormatMDX):  {refusal.MDXContentType, mdxBody},
		string(refusal.FormatJSON): {"application/json; charset=utf-8", `{"error":{"message":"Forbidden: client address is not allowed"}}`},
		string(refusal.FormatText): {"text/plain; charset=utf-8", "Forbidden: client address is not allowed\n"},
	} {
		a := &IPAllow{Ranges: []string{"mx"}, ErrorFormat: format}
		handlertest.Provision(t, a)
		w := httptest.NewRecorder()
		if err := a.ServeHTTP(w, request("10.0.0.1:1", ""), &handlertest.Next{}); err != nil {
			t.Fatal(err)
		}
		if w.Code != 403 || w.Header().Get("Content-Type") != want.ctype || w.Body.String() != want.body {
			t.Errorf("%s: %d %q %q", format, w.Code, w.Header().Get("Content-Type"), w.Body.String())
		}
		if w.Header().Get("Content-Length") != strconv.Itoa(len(want.body)) {
			t.Errorf("%s: Content-Length %q", format, w.Header().Get("Content-Length"))
		}
	}
	a := &IPAllow{ErrorFormat: string(refusal.FormatHandleErrors)}
	handlertest.Provision(t, a)
	w := httptest.NewRecorder()
	err := a.ServeHTTP(w, request("10.0.0.1:1", ""), &handlertest.Next{})
	var he caddyhttp.HandlerError
	if !errors.As(err, &he) || he.StatusCode != 403 || w.Body.Len() != 0 {
		t.Errorf("handle_errors: err %v, body %q", err, w.Body.String())
	}
}
