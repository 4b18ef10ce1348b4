package mdx

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/mxgate/mxgate/caddymodule/internal/refusal"
	"github.com/mxgate/mxgate/hmac"
	"github.com/mxgate/mxgate/internal/testkit/handlertest"
)

// then runs h in front of next, as one handler.
type then struct {
	h    caddyhttp.MiddlewareHandler
	next caddyhttp.Handler
}

func (c then) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	return c.h.ServeHTTP(w, r, c.next)
}

func newSign(t *testing.T, s *Sign) *Sign {
	t.Helper()
	if len(s.Keys) == 0 {
		s.Keys = []string{testKey}
	}
	s.now = func() time.Time { return testNow }
	handlertest.Provision(t, s)
	return s
}

// TestSignThenVerify: what mdx_hmac sign produces, mdx_hmac verify with the
// same key and rules accepts, and the body reaches the upstream byte for
// byte.
func TestSignThenVerify(t *testing.T) {
	for name, c := range map[string]struct {
		signing      Signing
		method, path string
		body         string
	}{
		"final, session":      {Signing{}, "POST", "/inst1/sessions", session},
		"final, get":          {Signing{}, "GET", "/inst1/accounts/7/transactions?page=2", ""},
		"path, query, sha256": {Signing{Resource: "path", BasePath: "/mdx/{institution_id}", ResourceQuery: true, Algorithm: "sha256"}, "GET", "/mdx/inst1/accounts/7/transactions?start=2024-01-01&page=2", ""},
		"path, binary body":   {Signing{Resource: "path", Algorithm: "sha512"}, "PUT", "/inst1/user", "\x00\xff<a>\r\n</a>"},
	} {
		sg := newSign(t, &Sign{Signing: c.signing})
		v, _ := newVerify(t, &Verify{Signing: c.signing})
		upstream := &handlertest.Next{Body: "ok"}
		var body io.Reader
		if c.body != "" {
			body = strings.NewReader(c.body)
		}
		r := local(httptest.NewRequest(c.method, c.path, body))
		r.Header.Set("Accept", refusal.MDXContentType)
		r.Header.Set("MDX-Session-Key", "a-session-key")
		r.Header.Set("MDX-HMAC", "stale")
		r = handlertest.Request(r, "192.0.2.1")
		w, err := handlertest.Serve(t, sg, r, then{v, upstream})
		if err != nil || w.Code != 200 || upstream.Calls != 1 {
			t.Errorf("%s: %d %v %s", name, w.Code, err, w.Body)
			continue
		}
		if string(upstream.Got) != c.body {
			t.Errorf("%s: upstream body %q", name, upstream.Got)
		}
		got := upstream.Received
		alg, _ := hmac.ParseAlgorithm(sg.Algorithm)
		if got.Get("Date") != "1382975431" || got.Get("Content-MD5") != hmac.ContentMD5([]byte(c.body)) || len(got.Get("MDX-HMAC")) != 2*alg.Size() {
			t.Errorf("%s: signed headers %v", name, got)
		}
	}
}

// TestSignMatchesLibrary: the handler's signature is the library's over
// the same canonical request.
func TestSignMatchesLibrary(t *testing.T) {
	sg := newSign(t, &Sign{})
	next := &handlertest.Next{}
	r := local(httptest.NewRequest("POST", "/inst1/sessions", strings.NewReader(session)))
	r.Header.Set("Accept", refusal.MDXContentType)
	r.Header.Set("Content-Type", refusal.MDXContentType)
	if _, err := handlertest.Serve(t, sg, handlertest.Request(r, ""), next); err != nil {
		t.Fatal(err)
	}
	k, _ := hmac.ParseKey(testKey)
	want, _ := hmac.Sign(hmac.SHA1, k, &hmac.Request{Method: "POST", ContentMD5: hmac.ContentMD5([]byte(session)),
		ContentType: refusal.MDXContentType, Date: "1382975431", Accept: refusal.MDXContentType, Resource: "/sessions"})
	if got := next.Received.Get("MDX-HMAC"); got != want {
		t.Errorf("MDX-HMAC %q, want %q", got, want)
	}
}

func TestSignRefuses(t *testing.T) {
	sg := newSign(t, &Sign{Signing: Signing{MaxBody: 16, Resource: "path", BasePath: "/mdx"}})
	for _, c := range []struct {
		name   string
		r      *http.Request
		status int
		msg    string
	}{
		{"too large", local(httptest.NewRequest("POST", "/mdx/sessions", strings.NewReader(strings.Repeat("x", 17)))), 413, "Request body too large"},
		{"outside the base path", local(httptest.NewRequest("GET", "/other/accounts", nil)), 412, "MDX-HMAC invalid: request path is outside the signed base path"},
	} {
		next := &handlertest.Next{}
		w, err := handlertest.Serve(t, sg, handlertest.Request(c.r, ""), next)
		want := `<mdx version="5.0"><error><code></code><message>` + c.msg + `</message></error></mdx>`
		if err != nil || w.Code != c.status || w.Body.String() != want || next.Calls != 0 {
			t.Errorf("%s: %d %v %q, next called %d times", c.name, w.Code, err, w.Body, next.Calls)
		}
	}
	// a client gone mid-body; handle_errors gets the status
	he := newSign(t, &Sign{Signing: Signing{ErrorFormat: "handle_errors"}})
	r := local(httptest.NewRequest("POST", "/mdx/sessions", io.MultiReader(strings.NewReader("<a>"), errReader{})))
	r.ContentLength = -1
	_, err := handlertest.Serve(t, he, handlertest.Request(r, ""), &handlertest.Next{})
	var herr caddyhttp.HandlerError
	if !errors.As(err, &herr) || herr.StatusCode != 400 {
		t.Errorf("unreadable body: %v", err)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }

func TestSignProvisionErrors(t *testing.T) {
	t.Setenv("MXGATE_MDX_UNSET", "")
	for name, c := range map[string]struct {
		s   Sign
		msg string
	}{
		"no key":                 {Sign{}, "at least one key is required"},
		"two keys":               {Sign{Signing: Signing{Keys: []string{testKey, testKey2}}}, "exactly one key"},
		"short key":              {Sign{Signing: Signing{Keys: []string{"c2hvcnQ="}}}, "key 1: "},
		"unset key":              {Sign{Signing: Signing{Keys: []string{"{env.MXGATE_MDX_UNSET}"}}}, "key 1: is empty"},
		"base_path, final":       {Sign{Signing: Signing{Keys: []string{testKey}, BasePath: "/x"}}, "apply only to `resource path`"},
		"query, final":           {Sign{Signing: Signing{Keys: []string{testKey}, Resource: "final", ResourceQuery: true}}, "apply only to `resource path`"},
		"bad base_path":          {Sign{Signing: Signing{Keys: []string{testKey}, Resource: "path", BasePath: "relative"}}, ""},
		"bad resource":           {Sign{Signing: Signing{Keys: []string{testKey}, Resource: "query"}}, `unknown resource "query"`},
		"bad algorithm":          {Sign{Signing: Signing{Keys: []string{testKey}, Algorithm: "md5"}}, ""},
		"negative max_body":      {Sign{Signing: Signing{Keys: []string{testKey}, MaxBody: -1}}, "max_body must be positive"},
		"pending below max_body": {Sign{Signing: Signing{Keys: []string{testKey}, MaxBody: 2 << 20}, MaxPendingBodies: 1 << 20}, "max_pending_bodies must be at least max_body"},
		"unknown errorformat":    {Sign{Signing: Signing{Keys: []string{testKey}, ErrorFormat: "xml"}}, "unknown error_format"},
	} {
		err := handlertest.TryProvision(t, &c.s)
		switch {
		case err == nil:
			t.Errorf("%s: provisioned", name)
		case !strings.Contains(err.Error(), c.msg):
			t.Errorf("%s: %v, want %q", name, err, c.msg)
		case strings.Contains(err.Error(), "c2hvcnQ=") || strings.Contains(err.Error(), testKey):
			t.Errorf("%s: the error reveals the key: %v", name, err)
		}
	}
}

// countingReader counts the bytes read from it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// TestSignBodyNotAllocatedAhead: sign reads the body as verify does. A
// declared length beyond max_body is refused before a byte is read; one
// within it (here 1 GiB) with a few bytes behind it allocates blocks for
// the bytes that came, not the length declared.
func TestSignBodyNotAllocatedAhead(t *testing.T) {
	const gib = 1 << 30
	sg := newSign(t, &Sign{})
	body := &countingReader{r: strings.NewReader("<tiny/>")}
	r := local(httptest.NewRequest("POST", "/mdx/sessions", body))
	r.ContentLength = gib
	next := &handlertest.Next{}
	w, _ := handlertest.Serve(t, sg, handlertest.Request(r, ""), next)
	if w.Code != 413 || body.n != 0 || next.Calls != 0 {
		t.Errorf("1 GiB declared, max_body 1MiB: %d, %d bytes read, next called %d times", w.Code, body.n, next.Calls)
	}

	big := newSign(t, &Sign{Signing: Signing{MaxBody: 2 * gib}})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	r = local(httptest.NewRequest("POST", "/mdx/sessions", strings.NewReader("<tiny/>")))
	r.ContentLength = gib
	w, _ = handlertest.Serve(t, big, handlertest.Request(r, ""), next)
	runtime.ReadMemStats(&after)
	if w.Code != 400 || next.Calls != 0 {
		t.Errorf("1 GiB declared, 7 bytes sent: %d, next called %d times", w.Code, next.Calls)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
		t.Errorf("allocated %d bytes for a 7-byte body declared 1 GiB", got)
	}
	if got := big.pending.held.Load(); got != 0 {
		t.Errorf("held after the refusal: %d", got)
	}
}

// TestSignPendingBodies: bodies sign holds at once are bounded as
// verify's are: beyond max_pending_bodies a request is refused with 503
// and Retry-After before its body is read, and the bytes come back when a
// request is done; a chunked body is bounded by max_body too.
func TestSignPendingBodies(t *testing.T) {
	sg := newSign(t, &Sign{Signing: Signing{MaxBody: 4096}, MaxPendingBodies: 6000})
	body := strings.Repeat("b", 4000)
	release := make(chan struct{})
	entered := make(chan struct{})
	block := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		entered <- struct{}{}
		<-release
		_, _ = io.Copy(io.Discard, r.Body)
		return r.Body.Close()
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		r := local(httptest.NewRequest("POST", "/mdx/sessions", strings.NewReader(body)))
		_ = sg.ServeHTTP(httptest.NewRecorder(), r, block)
	}()
	<-entered
	if got := sg.pending.held.Load(); got != 4000 {
		t.Errorf("held while the first is served: %d", got)
	}
	second := &countingReader{r: strings.NewReader(body)}
	r := local(httptest.NewRequest("POST", "/mdx/sessions", second))
	r.ContentLength = int64(len(body))
	next := &handlertest.Next{}
	w, _ := handlertest.Serve(t, sg, handlertest.Request(r, ""), next)
	if w.Code != 503 || w.Header().Get("Retry-After") != "1" || second.n != 0 || next.Calls != 0 ||
		w.Body.String() != `<mdx version="5.0"><error><code></code><message>Service unavailable: too many request bodies in flight</message></error></mdx>` {
		t.Errorf("beyond the bound: %d Retry-After %q, %d bytes read, %s", w.Code, w.Header().Get("Retry-After"), second.n, w.Body)
	}
	close(release)
	<-done
	if got := sg.pending.held.Load(); got != 0 {
		t.Fatalf("held after every request is done: %d", got)
	}
	// chunked: bounded by max_body as it arrives
	r = local(httptest.NewRequest("POST", "/mdx/sessions", strings.NewReader(strings.Repeat("c", 4097))))
	r.ContentLength = -1
	if w, _ := handlertest.Serve(t, sg, handlertest.Request(r, ""), next); w.Code != 413 || next.Calls != 0 {
		t.Errorf("chunked, one byte over max_body: %d", w.Code)
	}
	// and forwarded whole, with its length, when it fits
	r = local(httptest.NewRequest("POST", "/mdx/sessions", strings.NewReader(body)))
	r.ContentLength = -1
	if w, _ := handlertest.Serve(t, sg, handlertest.Request(r, ""), next); w.Code != 200 || string(next.Got) != body {
		t.Errorf("chunked body within max_body: %d, %d bytes forwarded", w.Code, len(next.Got))
	}
	if got := sg.pending.held.Load(); got != 0 {
		t.Fatalf("held after the refusals: %d", got)
	}
}
