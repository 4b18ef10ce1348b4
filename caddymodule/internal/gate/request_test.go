package gate

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/mxgate/mxgate/internal/testkit/handlertest"
)

func TestClientAddr(t *testing.T) {
	for ip, ok := range map[string]bool{"192.0.2.7": true, "2001:db8::1": true, "": false, "192.0.2.7:443": false, "nonsense": false} {
		r := handlertest.Request(httptest.NewRequest("GET", "/", nil), ip)
		if got := ClientIP(r); got != ip {
			t.Errorf("ClientIP: %q, want %q", got, ip)
		}
		addr, got := ClientAddr(r)
		if got != ok || (ok && addr.String() != ip) {
			t.Errorf("ClientAddr(%q) = %v %v", ip, addr, got)
		}
	}
	// a request Caddy's server never saw has no variables at all
	if ip := ClientIP(httptest.NewRequest("GET", "/", nil)); ip != "" {
		t.Errorf("no variables: %q", ip)
	}
}

func TestSetUser(t *testing.T) {
	r := handlertest.Request(httptest.NewRequest("GET", "/", nil), "192.0.2.7")
	SetUser(r, "client-7")
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if got := repl.ReplaceAll("{http.auth.user.id}", "none"); got != "client-7" {
		t.Errorf("{http.auth.user.id} = %q", got)
	}
	SetUser(httptest.NewRequest("GET", "/", nil), "no-replacer") // no replacer: nothing to set, no panic
}

// failingReader yields some bytes, then fails as a client that goes away.
type failingReader struct{ n int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n == 0 {
		return 0, io.ErrUnexpectedEOF
	}
	k := min(f.n, len(p))
	for i := range k {
		p[i] = 'x'
	}
	f.n -= k
	return k, nil
}

// countingReader counts the bytes read from it.
type countingReader struct {
	r    io.Reader
	read int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.read += n
	return n, err
}

func TestReadBody(t *testing.T) {
	body := strings.Repeat("b", 100)
	req := func(length int64, r io.Reader) *http.Request {
		q := httptest.NewRequest("POST", "/", r)
		q.ContentLength = length
		return q
	}
	cases := []struct {
		name string
		r    *http.Request
		want string
		err  error
	}{
		{"declared", req(100, strings.NewReader(body)), body, nil},
		{"declared, exactly max", req(100, strings.NewReader(body)), body, nil},
		{"chunked", req(-1, strings.NewReader(body)), body, nil},
		{"chunked, too large", req(-1, strings.NewReader(body+"!")), "", ErrBodyTooLarge},
		{"declared, too large", req(101, strings.NewReader(body+"!")), "", ErrBodyTooLarge},
		{"declared, cut short", req(100, strings.NewReader(body[:50])), "", ErrBodyUnreadable},
		{"client gone", req(-1, &failingReader{n: 10}), "", ErrBodyUnreadable},
		{"max bytes reader", req(-1, http.MaxBytesReader(httptest.NewRecorder(), io.NopCloser(strings.NewReader(body)), 10)), "", ErrBodyTooLarge},
		{"no body", req(0, nil), "", nil},
	}
	for _, c := range cases {
		got, err := ReadBody(c.r, 100)
		if !errors.Is(err, c.err) || string(got) != c.want {
			t.Errorf("%s: %q %v, want %q %v", c.name, got, err, c.want, c.err)
		}
	}
	// a declared length over the bound is refused before a byte is read
	cr := &countingReader{r: strings.NewReader(body)}
	if _, err := ReadBody(req(1<<30, cr), 100); !errors.Is(err, ErrBodyTooLarge) || cr.read != 0 {
		t.Errorf("declared too large: %v after reading %d bytes", err, cr.read)
	}
	// a streamed body is read no further than one byte past the bound
	cr = &countingReader{r: strings.NewReader(strings.Repeat("s", 10_000))}
	if _, err := ReadBody(req(-1, cr), 100); !errors.Is(err, ErrBodyTooLarge) || cr.read > 101 {
		t.Errorf("streamed too large: %v after reading %d bytes", err, cr.read)
	}
	// http.NoBody with an unknown length
	r := httptest.NewRequest("GET", "/", nil)
	r.Body, r.ContentLength = http.NoBody, -1
	if b, err := ReadBody(r, 100); b != nil || err != nil {
		t.Errorf("NoBody: %q %v", b, err)
	}
}

func TestSetBody(t *testing.T) {
	r := httptest.NewRequest("POST", "/", strings.NewReader("old"))
	SetBody(r, []byte("new body"))
	if b, _ := io.ReadAll(r.Body); string(b) != "new body" || r.ContentLength != 8 {
		t.Errorf("body %q, length %d", b, r.ContentLength)
	}
	SetBody(r, nil)
	if r.Body != http.NoBody || r.ContentLength != 0 {
		t.Errorf("nil body: %v %d", r.Body, r.ContentLength)
	}
}

func TestReplayable(t *testing.T) {
	// a body within the bound is set afresh, byte for byte, on each replay
	payload := []byte("\x00binary\xffbody")
	r := httptest.NewRequest("PUT", "/", bytes.NewReader(payload))
	r.ContentLength = -1
	replay, err := Replayable(r, 64)
	if err != nil || replay == nil {
		t.Fatalf("replay %v, err %v", replay != nil, err)
	}
	for i := range 3 {
		replay()
		b, _ := io.ReadAll(r.Body)
		if !bytes.Equal(b, payload) || r.ContentLength != int64(len(payload)) {
			t.Fatalf("replay %d: %q (length %d)", i, b, r.ContentLength)
		}
	}

	// no body: replays are no-ops
	r = httptest.NewRequest("GET", "/", nil)
	if replay, err := Replayable(r, 64); err != nil || replay == nil {
		t.Fatalf("no body: %v", err)
	} else if replay(); r.Body != http.NoBody {
		t.Errorf("no body: replay set %v", r.Body)
	}

	// a declared length over the bound: sent once, untouched
	r = httptest.NewRequest("PUT", "/", strings.NewReader(strings.Repeat("d", 65)))
	if replay, err := Replayable(r, 64); replay != nil || err != nil {
		t.Errorf("declared too large: replay %v, err %v", replay != nil, err)
	}
	if b, _ := io.ReadAll(r.Body); len(b) != 65 {
		t.Errorf("declared too large: body left with %d bytes", len(b))
	}

	// streamed over the bound: sent once, whole
	long := strings.Repeat("0123456789", 20)
	r = httptest.NewRequest("PUT", "/", strings.NewReader(long))
	r.ContentLength = -1
	if replay, err := Replayable(r, 64); replay != nil || err != nil {
		t.Errorf("streamed too large: replay %v, err %v", replay != nil, err)
	}
	if b, _ := io.ReadAll(r.Body); string(b) != long {
		t.Errorf("streamed too large: body %q", b)
	}

	// a client that goes away
	r = httptest.NewRequest("PUT", "/", &failingReader{n: 3})
	r.ContentLength = -1
	if replay, err := Replayable(r, 64); replay != nil || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("client gone: replay %v, err %v", replay != nil, err)
	}
}

func TestIdempotent(t *testing.T) {
	for m, want := range map[string]bool{"GET": true, "HEAD": true, "PUT": true, "DELETE": true, "OPTIONS": true, "POST": false, "PATCH": false, "CONNECT": false, "TRACE": false} {
		if Idempotent(m) != want {
			t.Errorf("%s: %v", m, !want)
		}
	}
}

func TestRestoreHeader(t *testing.T) {
	h := http.Header{"X-Upstream": {"1"}, "Content-Type": {"text/html"}}
	saved := http.Header{"X-Early": {"a", "b"}}
	RestoreHeader(h, saved)
	if len(h) != 1 || len(h["X-Early"]) != 2 {
		t.Fatalf("restored %v", h)
	}
	h["X-Early"][0] = "changed"
	if saved["X-Early"][0] != "a" {
		t.Error("the restored header shares values with the saved one")
	}
	ClearHeader(h)
	if len(h) != 0 {
		t.Errorf("cleared %v", h)
	}
}

// writer is a next handler that writes status and chunks.
type writer struct {
	status int
	chunks []string
	err    error
}

func (wr writer) ServeHTTP(w http.ResponseWriter, _ *http.Request) error {
	w.Header().Set("X-Next", "yes")
	if wr.status != 0 {
		w.WriteHeader(wr.status)
	}
	for _, c := range wr.chunks {
		_, _ = io.WriteString(w, c)
	}
	return wr.err
}

func TestBufferResponse(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)

	w := httptest.NewRecorder()
	b, err := BufferResponse(w, r, writer{status: 201, chunks: []string{"ab", "cd"}}, 4)
	if err != nil || b.Overflow() || string(b.Body()) != "abcd" || b.Status() != 201 {
		t.Fatalf("within bound: %v %v %q %d", err, b.Overflow(), b.Body(), b.Status())
	}
	if w.Body.Len() != 0 || w.Code != 200 || w.Flushed {
		t.Fatal("the response reached the client before it was released")
	}
	if err := b.WriteResponse(); err != nil || w.Code != 201 || w.Body.String() != "abcd" || w.Header().Get("X-Next") != "yes" {
		t.Fatalf("released: %v %d %q", err, w.Code, w.Body)
	}

	// a body over the bound is dropped and reported
	w = httptest.NewRecorder()
	b, err = BufferResponse(w, r, writer{chunks: []string{"abc", "de", "f"}}, 4)
	if err != nil || !b.Overflow() || string(b.Body()) != "abc" || b.Status() != 200 {
		t.Fatalf("over bound: %v %v %q %d", err, b.Overflow(), b.Body(), b.Status())
	}
	if w.Body.Len() != 0 {
		t.Fatalf("overflowing body reached the client: %q", w.Body)
	}
	if b.Unwrap() == nil {
		t.Error("Unwrap gives nothing for http.ResponseController")
	}

	// the next handler's error is returned
	boom := errors.New("boom")
	if _, err := BufferResponse(httptest.NewRecorder(), r, writer{err: boom}, 4); !errors.Is(err, boom) {
		t.Errorf("error %v", err)
	}
}

func TestCloseUnread(t *testing.T) {
	for _, c := range []struct {
		length int64
		major  int
		want   string
	}{{1 << 20, 1, "close"}, {-1, 1, "close"}, {0, 1, ""}, {1 << 20, 2, ""}} {
		r := httptest.NewRequest("POST", "/", nil)
		r.ContentLength, r.ProtoMajor = c.length, c.major
		w := httptest.NewRecorder()
		CloseUnread(w, r)
		if got := w.Header().Get("Connection"); got != c.want {
			t.Errorf("length %d, HTTP/%d: Connection %q, want %q", c.length, c.major, got, c.want)
		}
	}
}

// TestTripOwnVariables: each trip down the chain writes its own copy of
// the request variables (a dial that outlives one trip may still read
// them while the next trip writes), and back hands the final trip's
// variables to the request for the access log.
func TestTripOwnVariables(t *testing.T) {
	vars := map[string]any{"before": 1}
	r := httptest.NewRequest("GET", "/", nil)
	r = r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, vars))

	first, _ := Trip(r)
	caddyhttp.SetVar(first.Context(), "trip", 1)
	second, back := Trip(r)
	caddyhttp.SetVar(second.Context(), "trip", 2)

	if got := caddyhttp.GetVar(first.Context(), "trip"); got != 1 {
		t.Fatalf("the first trip's variable became %v when the second wrote its own", got)
	}
	if _, ok := vars["trip"]; ok {
		t.Fatal("a trip wrote the request's own variables")
	}
	if caddyhttp.GetVar(second.Context(), "before") != 1 {
		t.Fatal("a trip lost the variables set before it")
	}
	back()
	if vars["trip"] != 2 || vars["before"] != 1 {
		t.Fatalf("after back the request's variables are %v, want the final trip's", vars)
	}
}
