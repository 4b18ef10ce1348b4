package bodies

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

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

func TestRead(t *testing.T) {
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
		{"chunked, too large", req(-1, strings.NewReader(body+"!")), "", ErrTooLarge},
		{"declared, too large", req(101, strings.NewReader(body+"!")), "", ErrTooLarge},
		{"declared, cut short", req(100, strings.NewReader(body[:50])), "", ErrUnreadable},
		{"client gone", req(-1, &failingReader{n: 10}), "", ErrUnreadable},
		{"max bytes reader", req(-1, http.MaxBytesReader(httptest.NewRecorder(), io.NopCloser(strings.NewReader(body)), 10)), "", ErrTooLarge},
		{"no body", req(0, nil), "", nil},
	}
	for _, c := range cases {
		got, err := Read(c.r, 100)
		if !errors.Is(err, c.err) || string(got) != c.want {
			t.Errorf("%s: %q %v, want %q %v", c.name, got, err, c.want, c.err)
		}
	}
	// a declared length over the bound is refused before a byte is read
	cr := &countingReader{r: strings.NewReader(body)}
	if _, err := Read(req(1<<30, cr), 100); !errors.Is(err, ErrTooLarge) || cr.read != 0 {
		t.Errorf("declared too large: %v after reading %d bytes", err, cr.read)
	}
	// a streamed body is read no further than one byte past the bound
	cr = &countingReader{r: strings.NewReader(strings.Repeat("s", 10_000))}
	if _, err := Read(req(-1, cr), 100); !errors.Is(err, ErrTooLarge) || cr.read > 101 {
		t.Errorf("streamed too large: %v after reading %d bytes", err, cr.read)
	}
	// http.NoBody with an unknown length
	r := httptest.NewRequest("GET", "/", nil)
	r.Body, r.ContentLength = http.NoBody, -1
	if b, err := Read(r, 100); b != nil || err != nil {
		t.Errorf("NoBody: %q %v", b, err)
	}
}

func TestSet(t *testing.T) {
	r := httptest.NewRequest("POST", "/", strings.NewReader("old"))
	Set(r, []byte("new body"))
	if b, _ := io.ReadAll(r.Body); string(b) != "new body" || r.ContentLength != 8 {
		t.Errorf("body %q, length %d", b, r.ContentLength)
	}
	Set(r, nil)
	if r.Body != http.NoBody || r.ContentLength != 0 {
		t.Errorf("nil body: %v %d", r.Body, r.ContentLength)
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
