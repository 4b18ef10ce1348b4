package mdx

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mxgate/mxgate/caddymodule/internal/refusal"
	"github.com/mxgate/mxgate/caddymodule/internal/store"
	"github.com/mxgate/mxgate/hmac"
	"github.com/mxgate/mxgate/internal/testkit/handlertest"
)

const (
	testKey  = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo3ODkwMTI="
	testKey2 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw=="
	session  = "<?xml version=\"1.0\"?>\n<mdx version=\"5.0\">\n  <session>\n    <userkey><![CDATA[the-userkey]]></userkey>\n  </session>\n</mdx>\n"
)

var testNow = time.Unix(1382975431, 0)

// newVerify returns a provisioned mdx_hmac verify with a fixed clock and a
// log observer.
func newVerify(t *testing.T, m *Verify) (*Verify, *observer.ObservedLogs) {
	t.Helper()
	if len(m.Keys) == 0 {
		m.Keys = []string{testKey}
	}
	m.now = func() time.Time { return testNow }
	handlertest.Provision(t, m)
	var logs *observer.ObservedLogs
	m.logger, logs = handlertest.Logs()
	return m, logs
}

type signed struct {
	method, path, body, accept, ctype, session, md5, date, sig string
	alg                                                        hmac.Algorithm
	key                                                        string
	noMD5, noDate, noSig                                       bool
}

func (s signed) request(t *testing.T) *http.Request {
	t.Helper()
	if s.method == "" {
		s.method = "POST"
	}
	if s.path == "" {
		s.path = "/inst1/sessions"
	}
	if s.accept == "" {
		s.accept = refusal.MDXContentType
	}
	if s.ctype == "" && s.body != "" {
		s.ctype = refusal.MDXContentType
	}
	if s.date == "" {
		s.date = hmac.FormatDate(testNow)
	}
	if s.md5 == "" {
		s.md5 = hmac.ContentMD5([]byte(s.body))
	}
	if s.alg == 0 {
		s.alg = hmac.SHA1
	}
	if s.key == "" {
		s.key = testKey
	}
	var body io.Reader
	if s.body != "" {
		body = strings.NewReader(s.body)
	}
	r := httptest.NewRequest(s.method, s.path, body)
	rr := hmac.FinalSegment()
	res, _ := rr.Resource(r.URL.EscapedPath(), r.URL.RawQuery)
	k, err := hmac.ParseKey(s.key)
	if err != nil {
		t.Fatal(err)
	}
	sig, _ := hmac.Sign(s.alg, k, &hmac.Request{Method: s.method, ContentMD5: s.md5, ContentType: s.ctype, Date: s.date, Accept: s.accept, SessionKey: s.session, Resource: res})
	if s.sig != "" {
		sig = s.sig
	}
	r.Header.Set("Accept", s.accept)
	if s.ctype != "" {
		r.Header.Set("Content-Type", s.ctype)
	}
	if !s.noDate {
		r.Header.Set("Date", s.date)
	}
	if !s.noMD5 {
		r.Header.Set("Content-MD5", s.md5)
	}
	r.Header.Set("MDX-Session-Key", s.session)
	r.Header.Set("MDX-Job-Type", "background")
	if !s.noSig {
		r.Header.Set("MDX-HMAC", sig)
	}
	return handlertest.Request(r, "64.77.254.33")
}

func serve(t *testing.T, m *Verify, r *http.Request) (*httptest.ResponseRecorder, *handlertest.Next) {
	t.Helper()
	rec := &handlertest.Next{}
	w := httptest.NewRecorder()
	if err := m.ServeHTTP(w, r, rec); err != nil {
		t.Fatal(err)
	}
	return w, rec
}

func TestVerifyAccepts(t *testing.T) {
	m, _ := newVerify(t, &Verify{})
	for name, s := range map[string]signed{
		"golden session":    {body: session},
		"get, md5 of empty": {method: "GET", path: "/inst1/accounts/7/transactions?page=2", session: strings.Repeat("s", 64)},
		"get, empty md5":    {method: "GET", path: "/inst1/accounts", md5: "", noMD5: true},
		"upper-case hex":    {body: session, sig: ""},
		"date 5m old":       {body: session, date: hmac.FormatDate(testNow.Add(-5 * time.Minute))},
		"date 5m ahead":     {body: session, date: hmac.FormatDate(testNow.Add(5 * time.Minute))},
		"accept two":        {body: session, accept: "application/vnd.moneydesktop.mdx.v4+xml, application/vnd.moneydesktop.mdx.v5+xml"},
		"accept any":        {body: session, accept: "*/*"},
	} {
		r := s.request(t)
		if name == "upper-case hex" {
			r.Header.Set("MDX-HMAC", strings.ToUpper(r.Header.Get("MDX-HMAC")))
		}
		if name == "get, empty md5" {
			// sign with an empty Content-MD5, as MX may for an empty body
			s.md5 = ""
			r = signedEmptyMD5(t, s)
		}
		wantHdr := r.Header.Clone()
		w, rec := serve(t, m, r)
		if w.Code != 200 || rec.Calls != 1 {
			t.Errorf("%s: status %d, next called %d times; body %s", name, w.Code, rec.Calls, w.Body)
			continue
		}
		if string(rec.Got) != s.body {
			t.Errorf("%s: upstream body %q, want %q", name, rec.Got, s.body)
		}
		for k := range wantHdr {
			if rec.Received.Get(k) != wantHdr.Get(k) {
				t.Errorf("%s: header %s = %q, want %q", name, k, rec.Received.Get(k), wantHdr.Get(k))
			}
		}
	}
}

// signedEmptyMD5 signs a bodyless request whose Content-MD5 header is empty.
func signedEmptyMD5(t *testing.T, s signed) *http.Request {
	r := httptest.NewRequest(s.method, s.path, nil)
	k, _ := hmac.ParseKey(testKey)
	date := hmac.FormatDate(testNow)
	sig, _ := hmac.Sign(hmac.SHA1, k, &hmac.Request{Method: s.method, Date: date, Accept: refusal.MDXContentType, Resource: "/accounts"})
	r.Header.Set("Accept", refusal.MDXContentType)
	r.Header.Set("Date", date)
	r.Header.Set("MDX-HMAC", sig)
	return handlertest.Request(r, "64.77.254.33")
}

func TestVerifyRejects(t *testing.T) {
	m, logs := newVerify(t, &Verify{Signing: Signing{MaxBody: 1024}, ReplayWindow: caddy.Duration(10 * time.Minute)})
	other := "QkJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo3ODkwMTI="
	cases := []struct {
		name   string
		s      signed
		mutate func(r *http.Request)
		status int
		msg    string
	}{
		{"no signature", signed{body: session, noSig: true}, nil, 412, "MDX-HMAC header missing"},
		{"short signature", signed{body: session, sig: "abc"}, nil, 412, "MDX-HMAC header malformed"},
		{"non-hex signature", signed{body: session, sig: strings.Repeat("z", 40)}, nil, 412, "MDX-HMAC header malformed"},
		{"wrong key", signed{body: session, key: other}, nil, 412, "MDX-HMAC invalid"},
		{"wrong algorithm", signed{body: session, alg: hmac.SHA256}, nil, 412, "MDX-HMAC header malformed"},
		{"body altered", signed{body: session}, func(r *http.Request) {
			b := []byte(session)
			b[10] ^= 1
			r.Body = io.NopCloser(bytes.NewReader(b))
		}, 412, "Content-MD5 does not match the body"},
		{"md5 and body altered", signed{body: session}, func(r *http.Request) {
			b := []byte(session + " ")
			r.Body = io.NopCloser(bytes.NewReader(b))
			r.ContentLength = int64(len(b))
			r.Header.Set("Content-MD5", hmac.ContentMD5(b))
		}, 412, "MDX-HMAC invalid"},
		{"md5 missing on body", signed{body: session, noMD5: true}, nil, 412, "Content-MD5 header missing"},
		{"md5 base64", signed{body: session}, func(r *http.Request) { r.Header.Set("Content-MD5", "6aF5+HkWX9ZL3qpXAy00Lw==") }, 412, "Content-MD5 does not match the body"},
		{"empty md5 with body", signed{body: session}, func(r *http.Request) { r.Header.Set("Content-MD5", "") }, 412, "Content-MD5 header missing"},
		{"date missing", signed{body: session, noDate: true}, nil, 412, "Date header missing"},
		{"http date", signed{body: session, date: "Tue, 29 Oct 2013 16:30:31 GMT"}, nil, 412, "Date header is not UNIX epoch seconds"},
		{"date old", signed{body: session, date: hmac.FormatDate(testNow.Add(-301 * time.Second))}, nil, 412, "Date header outside the allowed clock skew"},
		{"date ahead", signed{body: session, date: hmac.FormatDate(testNow.Add(301 * time.Second))}, nil, 412, "Date header outside the allowed clock skew"},
		{"verb changed", signed{body: session}, func(r *http.Request) { r.Method = "PUT" }, 412, "MDX-HMAC invalid"},
		{"session key changed", signed{body: session}, func(r *http.Request) { r.Header.Set("MDX-Session-Key", "x") }, 412, "MDX-HMAC invalid"},
		{"accept changed", signed{body: session}, func(r *http.Request) { r.Header.Set("Accept", "application/xml") }, 412, "MDX-HMAC invalid"},
		{"content type changed", signed{body: session}, func(r *http.Request) { r.Header.Set("Content-Type", "text/xml") }, 412, "MDX-HMAC invalid"},
		{"resource changed", signed{body: session}, func(r *http.Request) { r.URL.Path, r.RequestURI = "/inst1/accounts", "/inst1/accounts" }, 412, "MDX-HMAC invalid"},
		{"too large by length", signed{body: strings.Repeat("x", 1025)}, nil, 413, "Request body too large"},
		{"too large, chunked", signed{body: strings.Repeat("x", 1025)}, func(r *http.Request) { r.ContentLength = -1 }, 413, "Request body too large"},
		{"version 4", signed{body: session, accept: "application/vnd.moneydesktop.mdx.v4+xml"}, nil, 406, "Unsupported MDX version; this endpoint serves MDX v5"},
	}
	for _, c := range cases {
		r := c.s.request(t)
		if c.mutate != nil {
			c.mutate(r)
			r = handlertest.Request(r, "64.77.254.33") // as the client sent it
		}
		w, rec := serve(t, m, r)
		if w.Code != c.status || rec.Calls != 0 {
			t.Errorf("%s: status %d (want %d), next called %d times", c.name, w.Code, c.status, rec.Calls)
			continue
		}
		want := `<mdx version="5.0"><error><code></code><message>` + c.msg + `</message></error></mdx>`
		if w.Body.String() != want || w.Header().Get("Content-Type") != refusal.MDXContentType {
			t.Errorf("%s: body %q", c.name, w.Body)
		}
	}
	// replay: the first passes, the same signature again is refused
	s := signed{body: session, session: "replay-session"}
	if w, _ := serve(t, m, s.request(t)); w.Code != 200 {
		t.Fatalf("first request: %d %s", w.Code, w.Body)
	}
	r := s.request(t)
	r.Header.Set("MDX-HMAC", strings.ToUpper(r.Header.Get("MDX-HMAC")))
	if w, rec := serve(t, m, r); w.Code != 412 || rec.Calls != 0 || !strings.Contains(w.Body.String(), "MDX-HMAC already used") {
		t.Fatalf("replay: %d %s", w.Code, w.Body)
	}
	// nothing secret was logged
	for _, e := range logs.All() {
		line := e.Message
		for k, v := range e.ContextMap() {
			line += " " + k + "=" + toString(v)
		}
		for _, secret := range []string{testKey, "replay-session", "the-userkey"} {
			if strings.Contains(line, secret) {
				t.Errorf("log line reveals a secret: %s", line)
			}
		}
		if strings.Contains(line, "MDX-HMAC:") || len(line) > 0 && containsHexRun(line, 40) {
			t.Errorf("log line carries a signature: %s", line)
		}
	}
	if logs.Len() == 0 {
		t.Error("refusals were not logged")
	}
}

func toString(v any) string { b, _ := json.Marshal(v); return string(b) }

func containsHexRun(s string, n int) bool {
	run := 0
	for i := 0; i < len(s); i++ {
		if _, ok := fromHex(s[i]); ok {
			run++
			if run >= n {
				return true
			}
		} else {
			run = 0
		}
	}
	return false
}

func fromHex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9', 'a' <= c && c <= 'f', 'A' <= c && c <= 'F':
		return c, true
	}
	return 0, false
}

func TestVerifyKeyRotation(t *testing.T) {
	m, _ := newVerify(t, &Verify{Signing: Signing{Keys: []string{testKey, testKey2}, Algorithm: "sha512"}})
	for _, k := range []string{testKey, testKey2} {
		if w, _ := serve(t, m, signed{body: session, key: k, alg: hmac.SHA512}.request(t)); w.Code != 200 {
			t.Errorf("key %.4s…: %d %s", k, w.Code, w.Body)
		}
	}
}

func TestVerifySkewOff(t *testing.T) {
	m, _ := newVerify(t, &Verify{SkewCheckOff: true})
	if w, _ := serve(t, m, signed{body: session, date: "1000"}.request(t)); w.Code != 200 {
		t.Errorf("old date with skew off: %d", w.Code)
	}
	if w, _ := serve(t, m, signed{body: session, date: "yesterday"}.request(t)); w.Code != 412 {
		t.Errorf("malformed date with skew off: %d", w.Code)
	}
}

func TestVerifyPathResource(t *testing.T) {
	m, _ := newVerify(t, &Verify{Signing: Signing{Resource: "path", BasePath: "/{institution_id}", ResourceQuery: true}})
	k, _ := hmac.ParseKey(testKey)
	r := httptest.NewRequest("GET", "/inst1/accounts/7/transactions?start_date=2024-01-01&page=2", nil)
	date := hmac.FormatDate(testNow)
	sig, _ := hmac.Sign(hmac.SHA1, k, &hmac.Request{Method: "GET", ContentMD5: hmac.EmptyBodyMD5, Date: date, Accept: refusal.MDXContentType, Resource: "/accounts/7/transactions?start_date=2024-01-01&page=2"})
	r.Header.Set("Accept", refusal.MDXContentType)
	r.Header.Set("Date", date)
	r.Header.Set("Content-MD5", hmac.EmptyBodyMD5)
	r.Header.Set("MDX-HMAC", sig)
	if w, _ := serve(t, m, handlertest.Request(r, "64.77.254.33")); w.Code != 200 {
		t.Fatalf("path resource: %d %s", w.Code, w.Body)
	}
	r2 := r.Clone(r.Context())
	r2.URL.RawQuery = "start_date=2024-01-01&page=3"
	if w, _ := serve(t, m, r2); w.Code != 412 {
		t.Fatalf("query changed: %d", w.Code)
	}
	m2, _ := newVerify(t, &Verify{Signing: Signing{Resource: "path", BasePath: "/mdx/{institution_id}"}})
	r3 := httptest.NewRequest("GET", "/other/inst1/accounts", nil)
	r3.Header = r.Header.Clone()
	if w, _ := serve(t, m2, handlertest.Request(r3, "64.77.254.33")); w.Code != 412 || !strings.Contains(w.Body.String(), "outside the signed base path") {
		t.Fatalf("outside base path: %d %s", w.Code, w.Body)
	}
}

func TestReplayCacheFullFailsClosed(t *testing.T) {
	m, logs := newVerify(t, &Verify{ReplayWindow: caddy.Duration(time.Hour), ReplayCacheSize: 2})
	for i, want := range []int{200, 200, 503, 503} {
		s := signed{body: session, session: strings.Repeat("k", i+1)}
		if w, _ := serve(t, m, s.request(t)); w.Code != want {
			t.Errorf("request %d: %d, want %d", i, w.Code, want)
		}
	}
	n := 0
	for _, e := range logs.All() {
		if strings.Contains(e.Message, "replay cache full") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("cache-full logged %d times, want once per episode", n)
	}
}

func TestAcceptsMDXv5(t *testing.T) {
	for v, want := range map[string]bool{
		"":                                     true,
		"*/*":                                  true,
		"application/xml":                      true,
		"application/vnd.moneydesktop.mdx+xml": true,
		"application/vnd.moneydesktop.mdx.v5+xml":                                           true,
		"application/vnd.moneydesktop.mdx.V5+XML; q=0.9":                                    true,
		"application/vnd.moneydesktop.mdx.v4+xml":                                           false,
		"application/vnd.moneydesktop.mdx.v6+xml, */*":                                      false,
		"application/vnd.moneydesktop.mdx.v4+xml, application/vnd.moneydesktop.mdx.v5+xml":  true,
		"application/vnd.moneydesktop.mdx.v5+json":                                          false,
		"application/vnd.moneydesktop.mdx.V5+JSON; q=1":                                     false,
		"application/vnd.moneydesktop.mdx+json":                                             false,
		"application/vnd.moneydesktop.mdx.v5":                                               false,
		"application/vnd.moneydesktop.mdx.v5+json, application/vnd.moneydesktop.mdx.v5+xml": true,
		"application/vnd.moneydesktop.mdx.v5+json, */*":                                     false,
		"application/vnd.moneydesktop.mdxfoo":                                               true,
	} {
		if got := acceptsMDXv5([]string{v}); got != want {
			t.Errorf("acceptsMDXv5(%q) = %v", v, got)
		}
	}
}

// TestReloadKeepsReplayCache: a key rotation is a reload; the new
// configuration, provisioned before the old one is cleaned up, shares the
// old one's replay cache, so a replay stays refused.
func TestReloadKeepsReplayCache(t *testing.T) {
	old, _ := newVerify(t, &Verify{ReplayWindow: caddy.Duration(10 * time.Minute)})
	s := signed{body: session, session: "reload-session"}
	if w, _ := serve(t, old, s.request(t)); w.Code != 200 {
		t.Fatalf("first use: %d %s", w.Code, w.Body)
	}
	// the rotated configuration: a second key, a larger cache
	next, _ := newVerify(t, &Verify{Signing: Signing{Keys: []string{testKey2, testKey}}, ReplayWindow: caddy.Duration(10 * time.Minute), ReplayCacheSize: 5000})
	if err := old.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if w, rec := serve(t, next, s.request(t)); w.Code != 412 || rec.Calls != 0 {
		t.Fatalf("replay after the reload: %d %s", w.Code, w.Body)
	}
	if w, _ := serve(t, next, signed{body: session, session: "another"}.request(t)); w.Code != 200 {
		t.Fatalf("a fresh request after the reload: %d", w.Code)
	}
	// once every configuration using it is gone, the cache goes too
	if err := next.Cleanup(); err != nil {
		t.Fatal(err)
	}
	fresh, _ := newVerify(t, &Verify{ReplayWindow: caddy.Duration(10 * time.Minute)})
	if w, _ := serve(t, fresh, s.request(t)); w.Code != 200 {
		t.Fatalf("a new process-lifetime cache: %d", w.Code)
	}
}

func TestVerifyProvisionErrors(t *testing.T) {
	neg := caddy.Duration(-time.Second)
	for name, v := range map[string]*Verify{
		"skew and off":         {MaxSkew: new(caddy.Duration), SkewCheckOff: true},
		"negative skew":        {MaxSkew: &neg},
		"store, no window":     {Config: store.Config{Store: "redis", RedisURL: "redis://127.0.0.1:1"}},
		"cache, no window":     {ReplayCacheSize: 5},
		"policy, no window":    {Config: store.Config{OnStoreError: "deny"}},
		"timeout, no window":   {Config: store.Config{RedisTimeout: caddy.Duration(time.Second)}},
		"namespace, no window": {Config: store.Config{Namespace: "ns"}},
		"grace, no window":     {ReplayLossGrace: caddy.Duration(5 * time.Second)},
		"grace, memory store":  {ReplayWindow: caddy.Duration(time.Minute), ReplayLossGrace: caddy.Duration(5 * time.Second)},
		"grace too short":      {ReplayWindow: caddy.Duration(time.Minute), ReplayLossGrace: caddy.Duration(time.Second), Config: store.Config{Store: "redis", RedisURL: "redis://127.0.0.1:1"}},
		"bad store":            {ReplayWindow: caddy.Duration(time.Minute), Config: store.Config{Store: "disk"}},
		"bad on_store_error":   {ReplayWindow: caddy.Duration(time.Minute), Config: store.Config{Store: "redis", RedisURL: "redis://127.0.0.1:1", OnStoreError: "ignore"}},
		"empty redis url":      {ReplayWindow: caddy.Duration(time.Minute), Config: store.Config{Store: "redis"}},
		"bad redis url":        {ReplayWindow: caddy.Duration(time.Minute), Config: store.Config{Store: "redis", RedisURL: "http://x"}},
		"bad algorithm":        {Signing: Signing{Algorithm: "md5"}},
		"bad resource":         {Signing: Signing{Resource: "query"}},
		"negative max_body":    {Signing: Signing{MaxBody: -1}},
		"bad format":           {Signing: Signing{ErrorFormat: "html"}},
	} {
		if len(v.Keys) == 0 {
			v.Keys = []string{testKey}
		}
		if err := handlertest.TryProvision(t, v); err == nil {
			t.Errorf("%s: provisioned", name)
		} else if strings.Contains(err.Error(), testKey) {
			t.Errorf("%s: the error reveals the key", name)
		}
	}
}
