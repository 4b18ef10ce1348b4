package mxapi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/mxgate/mxgate/caddymodule/internal/metrics"
	"github.com/mxgate/mxgate/internal/testkit/handlertest"
)

// scripted answers each attempt with the next of its replies (the last
// one again once they run out), and records the bodies it received.
type scripted struct {
	replies []reply
	bodies  [][]byte
	after   func(attempt int) // runs after each answer
}

type reply struct {
	status     int
	retryAfter string
	body       string
}

func (s *scripted) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	b, _ := io.ReadAll(r.Body)
	s.bodies = append(s.bodies, b)
	n := len(s.bodies)
	rp := s.replies[min(n, len(s.replies))-1]
	w.Header().Set("X-Attempt", strconv.Itoa(n))
	if rp.retryAfter != "" {
		w.Header().Set("Retry-After", rp.retryAfter)
	}
	w.WriteHeader(rp.status)
	_, _ = io.WriteString(w, rp.body)
	if s.after != nil {
		s.after(n)
	}
	return nil
}

// newRetry provisions rt with no jitter: every backoff is zero, so tests
// never wait on a timer unless they ask for it.
func newRetry(t *testing.T, rt *Retry) *Retry {
	t.Helper()
	handlertest.Provision(t, rt)
	rt.jitter = func(int64) int64 { return 0 }
	return rt
}

func retries(t *testing.T, status string) float64 {
	return handlertest.MetricValue(t, metrics.Retries, map[string]string{"status": status})
}

func TestRetryUntilSuccess(t *testing.T) {
	rt := newRetry(t, &Retry{})
	next := &scripted{replies: []reply{{503, "", "busy"}, {429, "", "slow down"}, {200, "", "done"}}}
	body := []byte("\x00\x01binary\r\n\xff")
	r := httptest.NewRequest("PUT", "/users/USR-1", bytes.NewReader(body))
	before503, before429 := retries(t, "503"), retries(t, "429")
	w := httptest.NewRecorder()
	w.Header().Set("X-Early", "kept")
	if err := rt.ServeHTTP(w, r, next); err != nil {
		t.Fatal(err)
	}
	if w.Code != 200 || w.Body.String() != "done" || len(next.bodies) != 3 {
		t.Fatalf("%d %q after %d attempts", w.Code, w.Body, len(next.bodies))
	}
	for i, b := range next.bodies {
		if !bytes.Equal(b, body) {
			t.Errorf("attempt %d: body %q", i+1, b)
		}
	}
	if got := w.Header().Values("X-Attempt"); len(got) != 1 || got[0] != "3" || w.Header().Get("X-Early") != "kept" {
		t.Errorf("headers of held-back answers leaked or earlier ones lost: %v", w.Header())
	}
	if retries(t, "503") != before503+1 || retries(t, "429") != before429+1 {
		t.Error("retries not counted by status")
	}
}

func TestRetryGivesUp(t *testing.T) {
	rt := newRetry(t, &Retry{MaxAttempts: 3, Statuses: []int{502}})
	next := &scripted{replies: []reply{{502, "", "bad gateway"}}}
	w, err := handlertest.Serve(t, rt, httptest.NewRequest("GET", "/users", nil), next)
	if err != nil || w.Code != 502 || w.Body.String() != "bad gateway" || len(next.bodies) != 3 {
		t.Errorf("max_attempts 3: %d %q after %d attempts", w.Code, w.Body, len(next.bodies))
	}
	// a status not in the list is final
	next = &scripted{replies: []reply{{503, "", "unavailable"}}}
	if w, _ := handlertest.Serve(t, rt, httptest.NewRequest("GET", "/users", nil), next); w.Code != 503 || len(next.bodies) != 1 {
		t.Errorf("503 not listed: %d after %d attempts", w.Code, len(next.bodies))
	}
}

func TestRetryNeverPOST(t *testing.T) {
	rt := newRetry(t, &Retry{})
	for _, method := range []string{"POST", "PATCH"} {
		next := &scripted{replies: []reply{{503, "", "busy"}, {200, "", "done"}}}
		w, err := handlertest.Serve(t, rt, httptest.NewRequest(method, "/users", strings.NewReader(`{"user":{}}`)), next)
		if err != nil || w.Code != 503 || len(next.bodies) != 1 || string(next.bodies[0]) != `{"user":{}}` {
			t.Errorf("%s: %d after %d attempts", method, w.Code, len(next.bodies))
		}
	}
}

// TestRetryAfterHonoured: a Retry-After that ends past max_time is not
// waited for; one of zero (or a date passed) is taken at once, whatever the
// backoff would have been.
func TestRetryAfterHonoured(t *testing.T) {
	rt := newRetry(t, &Retry{MaxTime: caddy.Duration(30 * time.Minute), BaseDelay: caddy.Duration(time.Hour), MaxDelay: caddy.Duration(time.Hour)})
	rt.jitter = func(n int64) int64 { return n - 1 } // a backoff would be an hour: past max_time

	next := &scripted{replies: []reply{{503, "3600", "come back in an hour"}, {200, "", "done"}}}
	w, err := handlertest.Serve(t, rt, httptest.NewRequest("GET", "/users", nil), next)
	if err != nil || w.Code != 503 || w.Header().Get("Retry-After") != "3600" || len(next.bodies) != 1 {
		t.Errorf("Retry-After past max_time: %d %v after %d attempts", w.Code, w.Header(), len(next.bodies))
	}
	for _, ra := range []string{"0", time.Now().Add(-time.Minute).UTC().Format(http.TimeFormat)} {
		next = &scripted{replies: []reply{{429, ra, "slow down"}, {200, "", "done"}}}
		w, err = handlertest.Serve(t, rt, httptest.NewRequest("GET", "/users", nil), next)
		if err != nil || w.Code != 200 || len(next.bodies) != 2 || w.Header().Get("Retry-After") != "" {
			t.Errorf("Retry-After %q: %d after %d attempts", ra, w.Code, len(next.bodies))
		}
	}
}

func TestRetrySendsOnce(t *testing.T) {
	rt := newRetry(t, &Retry{MaxBody: 8})
	// a body too large to hold is sent once, whole
	next := &scripted{replies: []reply{{503, "", "busy"}, {200, "", "done"}}}
	r := httptest.NewRequest("PUT", "/users/1", strings.NewReader("0123456789"))
	if w, _ := handlertest.Serve(t, rt, r, next); w.Code != 503 || len(next.bodies) != 1 || string(next.bodies[0]) != "0123456789" {
		t.Errorf("declared too large: %d after %d attempts", w.Code, len(next.bodies))
	}
	next = &scripted{replies: []reply{{503, "", "busy"}, {200, "", "done"}}}
	r = httptest.NewRequest("PUT", "/users/1", strings.NewReader("0123456789"))
	r.ContentLength = -1
	if w, _ := handlertest.Serve(t, rt, r, next); w.Code != 503 || len(next.bodies) != 1 || string(next.bodies[0]) != "0123456789" {
		t.Errorf("streamed too large: %d after %d attempts, body %q", w.Code, len(next.bodies), next.bodies)
	}
	// a client gone mid-body
	r = httptest.NewRequest("PUT", "/users/1", io.MultiReader(strings.NewReader("01"), errReader{}))
	r.ContentLength = -1
	_, err := handlertest.Serve(t, rt, r, next)
	var he caddyhttp.HandlerError
	if !errors.As(err, &he) || he.StatusCode != 400 {
		t.Errorf("unreadable body: %v", err)
	}
	// the chain's error ends the attempts
	boom := errors.New("boom")
	if _, err := handlertest.Serve(t, rt, httptest.NewRequest("GET", "/", nil), failing{boom}); !errors.Is(err, boom) {
		t.Errorf("error %v", err)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }

// TestRetryClientGone: a client that goes away during a backoff ends the
// wait at once with 499.
func TestRetryClientGone(t *testing.T) {
	rt := newRetry(t, &Retry{MaxTime: caddy.Duration(2 * time.Hour), BaseDelay: caddy.Duration(time.Hour), MaxDelay: caddy.Duration(time.Hour)})
	rt.jitter = func(n int64) int64 { return n - 1 }
	ctx, cancel := context.WithCancel(context.Background())
	next := &scripted{replies: []reply{{503, "", "busy"}}, after: func(int) { cancel() }}
	// The backoff is an hour: a wait that ignored the client would hold
	// the test that long. The minute below is a hang guard, not a measure.
	done := make(chan error, 1)
	go func() {
		_, err := handlertest.Serve(t, rt, httptest.NewRequest("GET", "/", nil).WithContext(ctx), next)
		done <- err
	}()
	var err error
	select {
	case err = <-done:
	case <-time.After(time.Minute):
		t.Fatal("the backoff went on after the client had gone")
	}
	var he caddyhttp.HandlerError
	if !errors.As(err, &he) || he.StatusCode != 499 || len(next.bodies) != 1 {
		t.Errorf("%v after %d attempts", err, len(next.bodies))
	}
}

func TestRetryProvision(t *testing.T) {
	rt := &Retry{}
	handlertest.Provision(t, rt)
	if rt.MaxAttempts != 5 || time.Duration(rt.MaxTime) != 10*time.Second || time.Duration(rt.BaseDelay) != 100*time.Millisecond ||
		time.Duration(rt.MaxDelay) != 2*time.Second || rt.MaxBody != 1<<20 || len(rt.Statuses) != 2 {
		t.Errorf("defaults %+v", rt)
	}
	for name, c := range map[string]struct {
		rt  Retry
		msg string
	}{
		"status 302":        {Retry{Statuses: []int{302}}, "status 302 is not an error status"},
		"status 600":        {Retry{Statuses: []int{600}}, "status 600 is not an error status"},
		"negative max_time": {Retry{MaxTime: -1}, "durations and sizes must be positive"},
		"negative max_body": {Retry{MaxBody: -1}, "durations and sizes must be positive"},
		"attempts":          {Retry{MaxAttempts: -1}, "max_attempts must be at least 1"},
		"max under base":    {Retry{BaseDelay: caddy.Duration(time.Second), MaxDelay: caddy.Duration(time.Millisecond)}, "max_delay must be at least base_delay"},
	} {
		if err := handlertest.TryProvision(t, &c.rt); err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %v, want %q", name, err, c.msg)
		}
	}
}
