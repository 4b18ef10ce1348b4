package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/hmac"
	"github.com/mxgate/mxgate/internal/testkit/redistest"
)

const (
	mdxType    = "application/vnd.moneydesktop.mdx.v5+xml"
	demoKey    = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo3ODkwMTI="
	sessionXML = "<?xml version=\"1.0\"?>\n<mdx version=\"5.0\">\n  <session>\n    <userkey><![CDATA[the-userkey]]></userkey>\n  </session>\n</mdx>\n"
	mxAddr     = "64.77.254.33" // inside MX's mdx ranges
)

// mdxGateway starts an FI-side gateway: MX's mdx ranges, HMAC verification,
// a replay window, and a reverse proxy to up. Loopback is a trusted proxy
// of mx_ip_allow whose X-Forwarded-For names the client, so tests can
// speak as MX's addresses. It also serves Caddy's metrics on a second port.
func mdxGateway(t *testing.T, up *upstream, extra string) (base, metrics string, g *gateway) {
	t.Helper()
	port, mport := freePort(t), freePort(t)
	cf := fmt.Sprintf(`{
	admin {ADMIN}
	log {
		level DEBUG
		format filter {
			request>headers>Mdx-Hmac delete
			request>headers>Mdx-Session-Key delete
		}
	}
	servers {
		trusted_proxies static 127.0.0.1/32 ::1/128
		client_ip_headers X-Forwarded-For
		metrics
	}
}

http://127.0.0.1:%d {
	log {
		output stderr
		format filter {
			request>headers>Mdx-Hmac delete
			request>headers>Mdx-Session-Key delete
		}
	}
	mx_ip_allow mdx {
		trusted_proxies 127.0.0.1/32 ::1/128
	}
	mdx_hmac verify {
		key {env.E2E_MDX_KEY}
		max_body 4KiB
		replay_window 10m
		%s
	}
	reverse_proxy %s
}

http://127.0.0.1:%d {
	metrics
}
`, port, extra, up.hostPort(), mport)
	g = startGateway(t, cf, "E2E_MDX_KEY="+demoKey)
	return fmt.Sprintf("http://127.0.0.1:%d", port), fmt.Sprintf("http://127.0.0.1:%d/metrics", mport), g
}

type mdxReq struct {
	method, path, body, session, accept string
	date                                time.Time
	key                                 string
	alg                                 hmac.Algorithm
	from                                string
}

// build signs r as MX would and returns the HTTP request.
func (r mdxReq) build(t *testing.T, base string) *http.Request {
	t.Helper()
	if r.method == "" {
		r.method = "POST"
	}
	if r.accept == "" {
		r.accept = mdxType
	}
	if r.date.IsZero() {
		r.date = time.Now()
	}
	if r.key == "" {
		r.key = demoKey
	}
	if r.alg == 0 {
		r.alg = hmac.SHA1
	}
	if r.from == "" {
		r.from = mxAddr
	}
	var body io.Reader
	ctype := ""
	if r.body != "" {
		body = strings.NewReader(r.body)
		ctype = mdxType
	}
	req, err := http.NewRequest(r.method, base+r.path, body)
	if err != nil {
		t.Fatal(err)
	}
	res, _ := hmac.FinalSegment().Resource(req.URL.EscapedPath(), req.URL.RawQuery)
	k, err := hmac.ParseKey(r.key)
	if err != nil {
		t.Fatal(err)
	}
	hr := hmac.Request{Method: r.method, ContentMD5: hmac.ContentMD5([]byte(r.body)), ContentType: ctype,
		Date: hmac.FormatDate(r.date), Accept: r.accept, SessionKey: r.session, Resource: res}
	sig, _ := hmac.Sign(r.alg, k, &hr)
	req.Header.Set("Accept", hr.Accept)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	req.Header.Set("Date", hr.Date)
	req.Header.Set("Content-MD5", hr.ContentMD5)
	req.Header.Set("MDX-Session-Key", r.session)
	req.Header.Set("MDX-Job-Type", "foreground")
	req.Header.Set("MDX-HMAC", sig)
	req.Header.Set("X-Forwarded-For", r.from)
	return req
}

func mdxError(msg string) string {
	return `<mdx version="5.0"><error><code></code><message>` + msg + `</message></error></mdx>`
}

func TestMDXIngressAcceptsSignedRequests(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, nil)
	base, _, _ := mdxGateway(t, up, "")

	sessionKey := strings.Repeat("5e", 32)
	cases := []mdxReq{
		{path: "/inst1/sessions", body: sessionXML},
		{method: "GET", path: "/inst1/accounts", session: sessionKey},
		{method: "GET", path: "/inst1/accounts/acct-7/transactions?start_date=2024-01-01&page=2", session: sessionKey},
		{method: "PUT", path: "/inst1/sessions", body: "<mdx version=\"5.0\"><session><mfa/></session></mdx>", session: sessionKey},
		{method: "GET", path: "/inst1/accounts", session: sessionKey + "1", from: "192.41.58.190"},
		{method: "GET", path: "/inst1/accounts", session: sessionKey + "2", from: "::ffff:68.142.151.129"},
	}
	for i, c := range cases {
		req := c.build(t, base)
		sent := req.Header.Clone()
		status, hdr, body := do(t, req)
		if status != 200 || body != `<mdx version="5.0"><ok/></mdx>` {
			t.Fatalf("case %d (%s %s): %d %s", i, c.method, c.path, status, body)
		}
		if hdr.Get("Content-Type") != mdxType {
			t.Errorf("case %d: response Content-Type %q", i, hdr.Get("Content-Type"))
		}
		reqs := up.Requests()
		if len(reqs) != i+1 {
			t.Fatalf("upstream saw %d requests, want %d", len(reqs), i+1)
		}
		got := reqs[i]
		if string(got.Body) != c.body {
			t.Errorf("case %d: upstream body %q, want %q", i, got.Body, c.body)
		}
		wantURI := strings.TrimPrefix(req.URL.RequestURI(), "")
		if got.URI != wantURI {
			t.Errorf("case %d: upstream URI %q, want %q", i, got.URI, wantURI)
		}
		for _, h := range []string{"Accept", "Content-Type", "Date", "Content-MD5", "MDX-HMAC", "MDX-Session-Key", "MDX-Job-Type"} {
			if got.Header.Get(h) != sent.Get(h) || len(got.Header.Values(h)) != len(sent.Values(h)) {
				t.Errorf("case %d: upstream %s = %q, want %q", i, h, got.Header.Get(h), sent.Get(h))
			}
		}
	}
}

func TestMDXIngressRejections(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, nil)
	base, metricsURL, g := mdxGateway(t, up, "")
	otherKey := "QkJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo3ODkwMTI="
	secretSession := "session-" + strings.Repeat("9", 56)

	type tc struct {
		name   string
		req    func() *http.Request
		status int
		msg    string
	}
	good := func() mdxReq { return mdxReq{path: "/inst1/sessions", body: sessionXML, session: secretSession} }
	mut := func(f func(r *http.Request)) func() *http.Request {
		return func() *http.Request { r := good().build(t, base); f(r); return r }
	}
	cases := []tc{
		{"outside mdx ranges", mut(func(r *http.Request) { r.Header.Set("X-Forwarded-For", "203.0.113.9") }), 403, "Forbidden: client address is not allowed"},
		{"mx but not mdx", mut(func(r *http.Request) { r.Header.Set("X-Forwarded-For", "66.43.0.1") }), 403, "Forbidden: client address is not allowed"},
		{"just past a range", mut(func(r *http.Request) { r.Header.Set("X-Forwarded-For", "64.77.254.64") }), 403, "Forbidden: client address is not allowed"},
		{"loopback itself", mut(func(r *http.Request) { r.Header.Del("X-Forwarded-For") }), 403, "Forbidden: client address is not allowed"},
		{"hmac missing", mut(func(r *http.Request) { r.Header.Del("MDX-HMAC") }), 412, "MDX-HMAC header missing"},
		{"hmac malformed", mut(func(r *http.Request) { r.Header.Set("MDX-HMAC", "not-hex") }), 412, "MDX-HMAC header malformed"},
		{"hmac wrong key", func() *http.Request { m := good(); m.key = otherKey; return m.build(t, base) }, 412, "MDX-HMAC invalid"},
		{"md5 missing", mut(func(r *http.Request) { r.Header.Del("Content-MD5") }), 412, "Content-MD5 header missing"},
		// the signature covers the Content-MD5 header: another value is a bad signature, found before the body is read
		{"md5 wrong", mut(func(r *http.Request) { r.Header.Set("Content-MD5", hmac.EmptyBodyMD5) }), 412, "MDX-HMAC invalid"},
		{"body byte changed", mut(func(r *http.Request) {
			b := []byte(sessionXML)
			b[len(b)-3] = 'X'
			r.Body = io.NopCloser(strings.NewReader(string(b)))
		}), 412, "Content-MD5 does not match the body"},
		{"date missing", mut(func(r *http.Request) { r.Header.Del("Date") }), 412, "Date header missing"},
		{"date not integer", mut(func(r *http.Request) { r.Header.Set("Date", time.Now().UTC().Format(http.TimeFormat)) }), 412, "Date header is not UNIX epoch seconds"},
		{"date stale", func() *http.Request { m := good(); m.date = time.Now().Add(-6 * time.Minute); return m.build(t, base) }, 412, "Date header outside the allowed clock skew"},
		{"session key swapped", mut(func(r *http.Request) { r.Header.Set("MDX-Session-Key", "other") }), 412, "MDX-HMAC invalid"},
		{"too large", func() *http.Request { m := good(); m.body = strings.Repeat("x", 5000); return m.build(t, base) }, 413, "Request body too large"},
		{"too large, chunked", func() *http.Request {
			m := good()
			m.body = strings.Repeat("y", 5000)
			r := m.build(t, base)
			r.Body = io.NopCloser(strings.NewReader(m.body))
			r.ContentLength = -1
			return r
		}, 413, "Request body too large"},
		{"mdx v4", func() *http.Request {
			m := good()
			m.accept = "application/vnd.moneydesktop.mdx.v4+xml"
			return m.build(t, base)
		}, 406, "Unsupported MDX version; this endpoint serves MDX v5"},
	}
	for _, c := range cases {
		status, hdr, body := do(t, c.req())
		if status != c.status || body != mdxError(c.msg) {
			t.Errorf("%s: %d %q; want %d %q", c.name, status, body, c.status, mdxError(c.msg))
		}
		if ct := hdr.Get("Content-Type"); ct != mdxType {
			t.Errorf("%s: Content-Type %q", c.name, ct)
		}
	}
	if n := len(up.Requests()); n != 0 {
		t.Fatalf("upstream saw %d rejected requests", n)
	}

	// a replay: the first copy passes, the second is refused
	req := good().build(t, base)
	replayed := req.Clone(req.Context())
	replayed.Body = io.NopCloser(strings.NewReader(sessionXML))
	if status, _, body := do(t, req); status != 200 {
		t.Fatalf("original: %d %s", status, body)
	}
	if status, _, body := do(t, replayed); status != 412 || body != mdxError("MDX-HMAC already used") {
		t.Fatalf("replay: %d %s", status, body)
	}
	if n := len(up.Requests()); n != 1 {
		t.Fatalf("upstream saw %d requests, want 1", n)
	}

	// every refusal is counted by directive and reason
	_, _, metrics := do(t, mustRequest(t, "GET", metricsURL))
	for _, want := range []string{
		`mxgate_rejections_total{directive="mx_ip_allow",reason="ip_not_allowed"} 4`,
		`mxgate_rejections_total{directive="mdx_hmac",reason="hmac_mismatch"} 3`,
		`mxgate_rejections_total{directive="mdx_hmac",reason="body_too_large"} 2`,
		`mxgate_rejections_total{directive="mdx_hmac",reason="replayed"} 1`,
		`mxgate_rejections_total{directive="mdx_hmac",reason="unsupported_version"} 1`,
		`mxgate_rejections_total{directive="mdx_hmac",reason="date_skew"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	// nothing secret reached the logs, though they are at DEBUG with an access log
	logs := g.Stderr.String()
	if !strings.Contains(logs, "MDX request refused") || !strings.Contains(logs, `"status":412`) {
		t.Fatalf("the logs do not show the refusals:\n%s", logs)
	}
	for _, secret := range []string{demoKey, secretSession, "the-userkey", req.Header.Get("MDX-HMAC")} {
		if strings.Contains(logs, secret) {
			t.Errorf("a secret (%.6s…) appears in the logs", secret)
			for _, l := range strings.Split(logs, "\n") {
				if strings.Contains(l, secret) {
					t.Logf("in: %s", describeLine(l))
					break
				}
			}
		}
	}
}

// TestMDXSignCommand signs with `mxgate mdx-sign` and sends the result.
func TestMDXSignCommand(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, nil)
	base, _, _ := mdxGateway(t, up, "")
	bodyFile := t.TempDir() + "/session.xml"
	if err := os.WriteFile(bodyFile, []byte(sessionXML), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "mdx-sign", "--url", base+"/inst1/sessions", "--body", bodyFile)
	cmd.Env = append(os.Environ(), "MDX_HMAC_KEY="+demoKey)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("mdx-sign: %v", err)
	}
	req := mustRequest(t, "POST", base+"/inst1/sessions")
	req.Body = io.NopCloser(strings.NewReader(sessionXML))
	req.ContentLength = int64(len(sessionXML))
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ": ")
		if !ok {
			t.Fatalf("mdx-sign printed %q", sc.Text())
		}
		req.Header.Set(k, v)
	}
	req.Header.Set("X-Forwarded-For", mxAddr)
	if status, _, body := do(t, req); status != 200 {
		t.Fatalf("request signed by mdx-sign: %d %s\n%s", status, body, out)
	}

	// without a key it fails clearly and prints no half-made headers
	cmd = exec.Command(binary, "mdx-sign", "--url", base+"/inst1/sessions")
	cmd.Env = append(os.Environ(), "MDX_HMAC_KEY=")
	out, err = cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "no key: set MDX_HMAC_KEY") {
		t.Fatalf("mdx-sign without a key: %v\n%s", err, out)
	}
}

func mustRequest(t *testing.T, method, url string) *http.Request {
	t.Helper()
	r, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestHandleErrorsFormat: with error_format handle_errors the site's own
// error routes render the refusal.
func TestHandleErrorsFormat(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, nil)
	port := freePort(t)
	startGateway(t, fmt.Sprintf(`{
	admin {ADMIN}
}
http://127.0.0.1:%d {
	mx_ip_allow mdx {
		error_format handle_errors
	}
	reverse_proxy %s
	handle_errors {
		respond "site says {err.status_code}" {err.status_code}
	}
}
`, port, up.hostPort()))
	status, _, body := do(t, mustRequest(t, "GET", fmt.Sprintf("http://127.0.0.1:%d/inst1/accounts", port)))
	if status != 403 || body != "site says 403" {
		t.Fatalf("got %d %q", status, body)
	}
	if len(up.Requests()) != 0 {
		t.Fatal("upstream reached")
	}
}

// TestReplayCaughtAcrossReplicas: two gateways share a Redis replay store;
// a signature accepted by one is refused by the other.
func TestReplayCaughtAcrossReplicas(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	up := newUpstream(t, nil)
	extra := "store redis " + srv.URL() + "\n\t\tnamespace fi-prod"
	a, _, _ := mdxGateway(t, up, extra)
	b, _, _ := mdxGateway(t, up, extra)
	m := mdxReq{path: "/inst1/sessions", body: sessionXML}
	req := m.build(t, a)
	replay, _ := http.NewRequest("POST", b+"/inst1/sessions", strings.NewReader(sessionXML))
	replay.Header = req.Header.Clone()
	if status, _, body := do(t, req); status != 200 {
		t.Fatalf("original on replica A: %d %s", status, body)
	}
	if status, _, body := do(t, replay); status != 412 || body != mdxError("MDX-HMAC already used") {
		t.Fatalf("replay on replica B: %d %s", status, body)
	}
	if n := len(up.Requests()); n != 1 {
		t.Fatalf("upstream saw %d requests", n)
	}
}
