package resend

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

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
