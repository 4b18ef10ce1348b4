package mdx

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/mxgate/mxgate/caddymodule/internal/refusal"
	"github.com/mxgate/mxgate/hmac"
	"github.com/mxgate/mxgate/internal/testkit/handlertest"
)

// countingBody is a request body that records how much of it was read.
type countingBody struct {
	r    io.Reader
	read int
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.read += n
	return n, err
}

func (b *countingBody) Close() error { return nil }

func mdxMessage(msg string) string {
	return `<mdx version="5.0"><error><code></code><message>` + msg + `</message></error></mdx>`
}

// TestVerifyChecksHeadersBeforeBody: every refusal that the headers
// decide comes before a byte of the body is read, though the body is
// declared as large as max_body allows.
func TestVerifyChecksHeadersBeforeBody(t *testing.T) {
	m, _ := newVerify(t, &Verify{})
	other := "QkJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo3ODkwMTI="
	big := strings.Repeat("x", DefaultMaxBody)
	cases := []struct {
		name   string
		s      signed
		mutate func(r *http.Request)
		status int
		msg    string
	}{
		{"bad signature", signed{body: big, key: other}, nil, 412, "MDX-HMAC invalid"},
		{"no signature", signed{body: big, noSig: true}, nil, 412, "MDX-HMAC header missing"},
		{"stale date", signed{body: big, date: hmac.FormatDate(testNow.Add(-time.Hour))}, nil, 412, "Date header outside the allowed clock skew"},
		{"no md5 on a body", signed{body: big, noMD5: true}, nil, 412, "Content-MD5 header missing"},
		{"no md5 on a chunked body", signed{body: big, noMD5: true}, func(r *http.Request) { r.ContentLength = -1 }, 412, "Content-MD5 header missing"},
		{"md5 not hex", signed{body: big}, func(r *http.Request) { r.Header.Set("Content-MD5", strings.Repeat("g", 32)) }, 412, "Content-MD5 does not match the body"},
		{"signature over another md5", signed{body: big}, func(r *http.Request) { r.Header.Set("Content-MD5", hmac.ContentMD5([]byte("other"))) }, 412, "MDX-HMAC invalid"},
		{"unknown resource", signed{body: big, path: "/inst1/admin"}, nil, 404, "Not Found"},
		{"dot segment", signed{body: big, path: "/inst1/../sessions"}, nil, 400, "Request path is not canonical: dot segment"},
		{"duplicate date", signed{body: big}, func(r *http.Request) { r.Header.Add("Date", "1") }, 400, "Duplicate Date header"},
		{"trailer announced", signed{body: big}, func(r *http.Request) { r.Trailer = http.Header{"Mdx-Session-Key": nil} }, 400, "Trailers are not accepted"},
	}
	for _, c := range cases {
		r := c.s.request(t)
		if c.mutate != nil {
			c.mutate(r)
		}
		body := &countingBody{r: strings.NewReader(c.s.body)}
		r.Body = body
		w, rec := serve(t, m, r)
		if w.Code != c.status || w.Body.String() != mdxMessage(c.msg) || rec.Calls != 0 {
			t.Errorf("%s: %d %s (want %d %q), next called %d times", c.name, w.Code, w.Body, c.status, c.msg, rec.Calls)
		}
		if body.read != 0 {
			t.Errorf("%s: %d bytes of the body read before refusing", c.name, body.read)
		}
		if w.Header().Get("Connection") != "close" {
			t.Errorf("%s: the connection is kept for a body left unread", c.name)
		}
	}
}

func TestVerifyDuplicateSignedHeaders(t *testing.T) {
	m, _ := newVerify(t, &Verify{})
	good := signed{body: session, session: "sess-1"}
	ref := good.request(t)
	for _, name := range []string{"Date", "Content-MD5", "Content-Type", "Accept", "MDX-Session-Key", "MDX-HMAC"} {
		for _, order := range []string{"good first", "bad first"} {
			r := good.request(t)
			v := ref.Header.Get(name)
			other := "x" + v
			if order == "good first" {
				r.Header[http.CanonicalHeaderKey(name)] = []string{v, other}
			} else {
				r.Header[http.CanonicalHeaderKey(name)] = []string{other, v}
			}
			w, rec := serve(t, m, r)
			if w.Code != 400 || w.Body.String() != mdxMessage("Duplicate "+name+" header") || rec.Calls != 0 {
				t.Errorf("%s twice, %s: %d %s", name, order, w.Code, w.Body)
			}
		}
		// the same value twice is refused too, and an empty second value
		r := good.request(t)
		r.Header.Add(name, "")
		if w, rec := serve(t, m, r); w.Code != 400 || rec.Calls != 0 {
			t.Errorf("%s with an empty second value: %d", name, w.Code)
		}
		// a second spelling with underscores, which CGI-style servers merge
		r = good.request(t)
		alias := strings.ReplaceAll(name, "-", "_")
		if alias == name {
			alias = name + "_"
			r.Header[alias] = []string{"x"}
			if w, _ := serve(t, m, r); w.Code != 200 {
				t.Errorf("%s: an unrelated header %s was refused: %d", name, alias, w.Code)
			}
			continue
		}
		r.Header[http.CanonicalHeaderKey(alias)] = []string{"smuggled"}
		if w, rec := serve(t, m, r); w.Code != 400 || w.Body.String() != mdxMessage("Duplicate "+name+" header") || rec.Calls != 0 {
			t.Errorf("%s as %s: %d %s", name, alias, w.Code, w.Body)
		}
	}
	// an unsigned header may still repeat
	r := good.request(t)
	r.Header.Add("MDX-Job-Type", "foreground")
	r.Header.Add("X_Custom", "a")
	if w, _ := serve(t, m, r); w.Code != 200 {
		t.Errorf("repeated unsigned header: %d %s", w.Code, w.Body)
	}
}

// trailerBody sets the request's trailers when it reaches EOF, as
// net/http does for a chunked body with unannounced trailers.
type trailerBody struct {
	r       io.Reader
	req     *http.Request
	trailer http.Header
}

func (b *trailerBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		b.req.Trailer = b.trailer
	}
	return n, err
}

func (b *trailerBody) Close() error { return nil }

func TestVerifyTrailers(t *testing.T) {
	m, _ := newVerify(t, &Verify{ReplayWindow: caddy.Duration(10 * time.Minute)})
	s := signed{body: session, session: "trailer-session"}
	// a Trailer header on a request with a length
	r := s.request(t)
	r.Header.Set("Trailer", "MDX-Session-Key")
	if w, rec := serve(t, m, r); w.Code != 400 || w.Body.String() != mdxMessage("Trailers are not accepted") || rec.Calls != 0 {
		t.Errorf("Trailer header: %d %s", w.Code, w.Body)
	}
	// unannounced trailers after a chunked body
	r = s.request(t)
	r.ContentLength = -1
	r.Body = &trailerBody{r: strings.NewReader(session), req: r, trailer: http.Header{"Mdx-Session-Key": {"victim"}}}
	if w, rec := serve(t, m, r); w.Code != 400 || w.Body.String() != mdxMessage("Trailers are not accepted") || rec.Calls != 0 {
		t.Errorf("unannounced trailer: %d %s", w.Code, w.Body)
	}
	// the refused request's signature was not recorded: it passes without the trailer
	r = s.request(t)
	r.ContentLength = -1
	if w, rec := serve(t, m, r); w.Code != 200 || string(rec.Got) != session || rec.Received.Get("Mdx-Session-Key") != "trailer-session" {
		t.Errorf("the same request without a trailer: %d %s", w.Code, w.Body)
	}
}

func TestVerifyPaths(t *testing.T) {
	m, _ := newVerify(t, &Verify{})
	for target, want := range map[string]string{
		"/inst1/./sessions":       "dot segment",
		"/inst1/../sessions":      "dot segment",
		"/inst1/%2e%2e/sessions":  "dot segment",
		"/inst1/%2E/sessions":     "dot segment",
		"/inst1/x%2fsessions":     "encoded separator",
		"/inst1/x%5csessions":     "backslash",
		"/inst1/sessions\\x":      "backslash",
		"/inst1//sessions":        "empty segment",
		"//inst1/sessions":        "empty segment",
		"/inst1/sessions;x=1":     "path parameter (;)",
		"/inst1;x=1/sessions":     "path parameter (;)",
		"/inst1/sessions/":        "trailing slash",
		"/inst1/se\x01ssions":     "control or non-ASCII byte",
		"/inst1/%00/sessions":     "control or non-ASCII byte",
		"/inst1/%73essions":       "needless percent-encoding",
		"/inst1/admin#/sessions":  "character not allowed in a path",
		"/inst1/x%252e/sessions":  "encoded separator",
		"/inst1/sessions%":        "malformed percent-encoding",
		"*":                       "not a path",
		"http://evil/../sessions": "dot segment",
	} {
		r := signed{body: session}.request(t)
		r.RequestURI = target
		r = handlertest.Request(r, "64.77.254.33")
		w, rec := serve(t, m, r)
		if w.Code != 400 || w.Body.String() != mdxMessage("Request path is not canonical: "+want) || rec.Calls != 0 {
			t.Errorf("%q: %d %s", target, w.Code, w.Body)
		}
	}
	for _, p := range []string{"/inst1/admin", "/inst1/accounts/a1", "/inst1/accounts/a1/holdings", "/inst1/Sessions", "/"} {
		w, rec := serve(t, m, signed{method: "GET", path: p}.request(t))
		if w.Code != 404 || w.Body.String() != mdxMessage("Not Found") || w.Header().Get("Content-Type") != refusal.MDXContentType || rec.Calls != 0 {
			t.Errorf("%s: %d %s", p, w.Code, w.Body)
		}
	}
	for _, p := range []string{"/inst1/sessions", "/inst1/accounts", "/inst1/accounts/a1/transactions", "/inst1/users/u/user",
		"/inst1/members/m/member", "/inst1/accounts/a1/account_owner", "/inst1/accounts/a1/account_number", "/inst1/accounts/%C3%A9/transactions"} {
		if w, rec := serve(t, m, signed{method: "GET", path: p}.request(t)); w.Code != 200 || rec.URI != p {
			t.Errorf("%s: %d %s", p, w.Code, w.Body)
		}
	}
	// the path is judged as the client sent it, not as a rewrite left it
	r := signed{method: "GET", path: "/inst1/accounts"}.request(t)
	r.RequestURI = "/inst1/../accounts"
	r = handlertest.Request(r, "64.77.254.33") // the original request
	r.RequestURI, r.URL.Path = "/inst1/accounts", "/inst1/accounts"
	if w, _ := serve(t, m, r); w.Code != 400 {
		t.Errorf("rewritten path: %d", w.Code)
	}
}

func TestVerifyResourcesAndRoutes(t *testing.T) {
	m, _ := newVerify(t, &Verify{Resources: append(append([]string(nil), hmac.DefaultResources...), "holdings")})
	if w, _ := serve(t, m, signed{method: "GET", path: "/inst1/accounts/a1/holdings"}.request(t)); w.Code != 200 {
		t.Errorf("holdings, listed: %d", w.Code)
	}
	m, _ = newVerify(t, &Verify{Resources: []string{"sessions"}})
	if w, _ := serve(t, m, signed{method: "GET", path: "/inst1/accounts"}.request(t)); w.Code != 404 {
		t.Errorf("accounts, not listed: %d", w.Code)
	}
	m, _ = newVerify(t, &Verify{Routes: []string{"/{institution_id}/sessions", "/{institution_id}/accounts/{id}/transactions"}})
	for p, want := range map[string]int{
		"/inst1/sessions":                        200,
		"/inst1/accounts/7/transactions":         200,
		"/inst1/admin/sessions":                  404,
		"/sessions":                              404,
		"/inst1/accounts":                        404,
		"/inst1/accounts/7/../../x/transactions": 400,
	} {
		if w, rec := serve(t, m, signed{method: "GET", path: p}.request(t)); w.Code != want || (want != 200) != (rec.Calls == 0) {
			t.Errorf("routes, %s: %d, want %d", p, w.Code, want)
		}
	}
}

// TestVerifyPendingBodies: bodies held at once are bounded; a request
// beyond the bound is refused with 503 and Retry-After, and the bytes come
// back when the request is done.
func TestVerifyPendingBodies(t *testing.T) {
	m, _ := newVerify(t, &Verify{Signing: Signing{MaxBody: 4096}, MaxPendingBodies: 6000})
	body := strings.Repeat("b", 4000)
	release := make(chan struct{})
	entered := make(chan struct{})
	block := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		entered <- struct{}{}
		<-release
		_, _ = io.Copy(io.Discard, r.Body)
		return r.Body.Close()
	})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		w := httptest.NewRecorder()
		_ = m.ServeHTTP(w, signed{body: body, session: "first"}.request(t), block)
	}()
	<-entered
	if got := m.pending.held.Load(); got != 4000 {
		t.Errorf("held while the first is served: %d", got)
	}
	w, rec := serve(t, m, signed{body: body, session: "second"}.request(t))
	if w.Code != 503 || w.Header().Get("Retry-After") == "" || w.Body.String() != mdxMessage("Service unavailable: too many request bodies in flight") || rec.Calls != 0 {
		t.Errorf("beyond the bound: %d %q %s", w.Code, w.Header().Get("Retry-After"), w.Body)
	}
	// a small one still fits, and one of unknown length up to the bound
	if w, _ := serve(t, m, signed{body: "<small/>", session: "third"}.request(t)); w.Code != 200 {
		t.Errorf("small body beside the held one: %d", w.Code)
	}
	r := signed{body: body, session: "fourth"}.request(t)
	r.ContentLength = -1
	if w, _ := serve(t, m, r); w.Code != 503 {
		t.Errorf("chunked body beyond the bound: %d", w.Code)
	}
	close(release)
	wg.Wait()
	if got := m.pending.held.Load(); got != 0 {
		t.Fatalf("held after every request is done: %d", got)
	}
	if w, rec := serve(t, m, signed{body: body, session: "second"}.request(t)); w.Code != 200 || string(rec.Got) != body {
		t.Errorf("after the first is done: %d", w.Code)
	}
	if got := m.pending.held.Load(); got != 0 {
		t.Fatalf("held after a refusal and a success: %d", got)
	}
}

// TestVerifyBodies: bodies of every size around the block size reach the
// next handler byte for byte, declared or chunked; bodies that end early,
// run long or fail are refused, and nothing stays reserved.
func TestVerifyBodies(t *testing.T) {
	const max = 3*blockSize + 10
	m, _ := newVerify(t, &Verify{Signing: Signing{MaxBody: max}})
	for _, n := range []int{1, blockSize - 1, blockSize, blockSize + 1, 2*blockSize + 7, max} {
		body := make([]byte, n)
		for i := range body {
			body[i] = byte(i * 7)
		}
		for _, chunked := range []bool{false, true} {
			r := signed{body: string(body)}.request(t)
			if chunked {
				r.ContentLength = -1
			}
			w, rec := serve(t, m, r)
			if w.Code != 200 || !bytes.Equal(rec.Got, body) {
				t.Errorf("%d bytes (chunked %v): %d, got %d bytes back", n, chunked, w.Code, len(rec.Got))
			}
		}
	}
	big := strings.Repeat("z", max+1)
	r := signed{body: big}.request(t)
	r.ContentLength = -1
	if w, _ := serve(t, m, r); w.Code != 413 {
		t.Errorf("chunked, one byte too many: %d", w.Code)
	}
	// declared longer than sent: the client went away mid-body
	r = signed{body: session}.request(t)
	r.Body = io.NopCloser(strings.NewReader(session[:10]))
	if w, _ := serve(t, m, r); w.Code != 400 || w.Body.String() != mdxMessage("Request body could not be read") {
		t.Errorf("short body: %d %s", w.Code, w.Body)
	}
	// a read error
	r = signed{body: session}.request(t)
	r.Body = io.NopCloser(io.MultiReader(strings.NewReader("abc"), resetReader{}))
	if w, _ := serve(t, m, r); w.Code != 400 {
		t.Errorf("read error: %d", w.Code)
	}
	// a chunked body cut short: net/http's reader says io.ErrUnexpectedEOF,
	// which is no end of the body
	r = signed{body: session}.request(t)
	r.ContentLength = -1
	r.Body = io.NopCloser(io.MultiReader(strings.NewReader(session[:10]), unexpectedEOF{}))
	if w, rec := serve(t, m, r); w.Code != 400 || rec.Calls != 0 {
		t.Errorf("chunked body cut short: %d", w.Code)
	}
	// a reader that ends with the last byte it gives
	r = signed{body: session}.request(t)
	r.Body = io.NopCloser(eofWithData{s: session})
	if w, rec := serve(t, m, r); w.Code != 200 || string(rec.Got) != session {
		t.Errorf("body ending with its last bytes: %d", w.Code)
	}
	// http.MaxBytesReader in front (request_body max_size)
	r = signed{body: session}.request(t)
	r.Body = http.MaxBytesReader(httptest.NewRecorder(), r.Body, 10)
	if w, _ := serve(t, m, r); w.Code != 413 {
		t.Errorf("request_body limit: %d", w.Code)
	}
	if got := m.pending.held.Load(); got != 0 {
		t.Fatalf("held after the refusals: %d", got)
	}
}

type unexpectedEOF struct{}

func (unexpectedEOF) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }

// eofWithData returns its whole text and io.EOF in one Read.
type eofWithData struct{ s string }

func (e eofWithData) Read(p []byte) (int, error) { return copy(p, e.s), io.EOF }

type resetReader struct{}

func (resetReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

// TestVerifyReplayRecordsOnlyVerified: a request with good headers and a
// tampered body is refused without its signature being recorded, so the
// genuine request that carries it still passes; the genuine one, once
// passed, cannot pass again.
func TestVerifyReplayRecordsOnlyVerified(t *testing.T) {
	m, _ := newVerify(t, &Verify{ReplayWindow: caddy.Duration(10 * time.Minute)})
	s := signed{body: session, session: "race"}
	r := s.request(t)
	r.Body = io.NopCloser(strings.NewReader(strings.Replace(session, "userkey", "USERKEY", 1)))
	if w, _ := serve(t, m, r); w.Code != 412 || w.Body.String() != mdxMessage("Content-MD5 does not match the body") || w.Header().Get("Connection") != "" {
		t.Fatalf("tampered body: %d %s %v", w.Code, w.Body, w.Header())
	}
	if w, _ := serve(t, m, s.request(t)); w.Code != 200 {
		t.Fatalf("genuine after a tampered copy: %d %s", w.Code, w.Body)
	}
	if w, _ := serve(t, m, s.request(t)); w.Code != 412 || w.Body.String() != mdxMessage("MDX-HMAC already used") {
		t.Fatalf("replay: %d %s", w.Code, w.Body)
	}
}

// TestHeldReader: the body handed on reads whole, then refuses reads once
// closed (its blocks may by then be another request's).
func TestHeldReader(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789"), 5000)
	r := httptest.NewRequest("POST", "/x", bytes.NewReader(body))
	b := &budget{max: 1 << 20}
	h, _, err := readBody(r, 1<<20, b)
	if err != nil {
		t.Fatal(err)
	}
	rd := h.reader()
	got, err := io.ReadAll(iotestOneByte{rd})
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("read %d bytes, %v", len(got), err)
	}
	if n, err := rd.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("after the end: %d %v", n, err)
	}
	h.done(b)
	if h.blocks == nil {
		t.Fatal("blocks freed while the reader is open")
	}
	_ = rd.Close()
	if h.blocks != nil {
		t.Fatal("blocks kept after the handler and the reader are done")
	}
	if _, err := rd.Read(make([]byte, 1)); !errors.Is(err, http.ErrBodyReadAfterClose) {
		t.Fatalf("read after close: %v", err)
	}
	if b.held.Load() != 0 {
		t.Fatal("budget not given back")
	}
}

// iotestOneByte reads at most 7 bytes at a time, to cross block edges.
type iotestOneByte struct{ r io.Reader }

func (o iotestOneByte) Read(p []byte) (int, error) { return o.r.Read(p[:min(len(p), 7)]) }

func TestVerifyProvisionRoutes(t *testing.T) {
	for name, v := range map[string]*Verify{
		"pending below max_body": {Signing: Signing{MaxBody: 2 << 20}, MaxPendingBodies: 1 << 20},
		"bad resource":           {Resources: []string{"a/b"}},
		"bad route":              {Routes: []string{"/{i}/{resource}"}},
		"both":                   {Resources: []string{"accounts"}, Routes: []string{"/{i}/accounts"}},
	} {
		v.Keys = []string{testKey}
		if err := handlertest.TryProvision(t, v); err == nil {
			t.Errorf("%s: provisioned", name)
		}
	}
	v := &Verify{Signing: Signing{Keys: []string{testKey}, MaxBody: 100 << 20}}
	handlertest.Provision(t, v)
	if v.MaxPendingBodies != 100<<20 {
		t.Errorf("default max_pending_bodies with a large max_body: %d", v.MaxPendingBodies)
	}
}
