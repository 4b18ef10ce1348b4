package shed

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/mxgate/mxgate/caddymodule/internal/metrics"
	"github.com/mxgate/mxgate/caddymodule/internal/refusal"
	"github.com/mxgate/mxgate/internal/testkit/handlertest"
)

// blocking is a next handler that holds every request until released,
// saying when each arrives.
type blocking struct {
	arrived chan struct{}
	release chan struct{}
	calls   atomic.Int64
}

func newBlocking() *blocking {
	return &blocking{arrived: make(chan struct{}, 64), release: make(chan struct{})}
}

func (b *blocking) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	b.calls.Add(1)
	b.arrived <- struct{}{}
	<-b.release
	w.WriteHeader(http.StatusOK)
	return nil
}

func newShed(t *testing.T, s *Shed) *Shed {
	t.Helper()
	handlertest.Provision(t, s)
	s.logger, _ = handlertest.Logs()
	return s
}

func serveOne(t *testing.T, s *Shed, r *http.Request, next caddyhttp.Handler) (*httptest.ResponseRecorder, error) {
	t.Helper()
	return handlertest.Serve(t, s, handlertest.Request(r, "192.0.2.1"), next)
}

func rejections(t *testing.T) float64 {
	t.Helper()
	return handlertest.MetricValue(t, metrics.Rejections, map[string]string{"directive": "mx_shed", "reason": "overloaded"})
}

// TestShed: up to max_in_flight requests reach the next handler at once;
// the next is answered 503 with Retry-After and MDX's error body without
// reaching it; once they are done, requests pass again.
func TestShed(t *testing.T) {
	s := newShed(t, &Shed{MaxInFlight: 4})
	next := newBlocking()
	shedBefore, rejBefore := shedCount(t, "handler"), rejections(t)

	var wg sync.WaitGroup
	codes := make(chan int, 4)
	for range 4 {
		wg.Go(func() {
			w, err := serveOne(t, s, httptest.NewRequest("GET", "/accounts", nil), next)
			if err != nil {
				t.Error(err)
			}
			codes <- w.Code
		})
	}
	for range 4 {
		<-next.arrived
	}

	// a next handler that answers at once: were it reached, 200
	fifth := &handlertest.Next{}
	w, err := serveOne(t, s, httptest.NewRequest("GET", "/accounts", nil), fifth)
	if err != nil || w.Code != 503 || fifth.Calls != 0 {
		t.Fatalf("the fifth: %d %v, next called %d times", w.Code, err, fifth.Calls)
	}
	if got := w.Header().Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After %q, want 1", got)
	}
	if ct := w.Header().Get("Content-Type"); ct != refusal.MDXContentType {
		t.Errorf("Content-Type %q", ct)
	}
	want := `<mdx version="5.0"><error><code></code><message>Service unavailable: the gateway is at capacity; retry later</message></error></mdx>`
	if w.Body.String() != want {
		t.Errorf("body %q", w.Body)
	}
	if w.Header().Get("Connection") != "" {
		t.Error("a refused GET without a body closes its connection")
	}
	if n := next.calls.Load(); n != 4 {
		t.Errorf("next called %d times, want 4", n)
	}
	if got := shedCount(t, "handler") - shedBefore; got != 1 {
		t.Errorf("mxgate_shed_total{where=handler} grew by %v, want 1", got)
	}
	if got := rejections(t) - rejBefore; got != 1 {
		t.Errorf("mxgate_rejections_total{mx_shed,overloaded} grew by %v, want 1", got)
	}

	close(next.release)
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != 200 {
			t.Errorf("an admitted request got %d", c)
		}
	}
	if n := s.inFlight.Load(); n != 0 {
		t.Fatalf("%d in flight after every request ended", n)
	}
	for i := range 5 { // all places are back
		if w, err := serveOne(t, s, httptest.NewRequest("GET", "/", nil), &handlertest.Next{}); err != nil || w.Code != 200 {
			t.Fatalf("after: request %d got %d %v", i+1, w.Code, err)
		}
	}
}

// TestShedReleases: a place comes back however the next handler ends:
// an answer, an error, or a panic.
func TestShedReleases(t *testing.T) {
	s := newShed(t, &Shed{MaxInFlight: 1})
	boom := errors.New("upstream down")
	for name, next := range map[string]caddyhttp.Handler{
		"answer": &handlertest.Next{Status: 204},
		"error":  caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return boom }),
		"panic":  caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { panic(boom) }),
	} {
		func() {
			defer func() { _ = recover() }()
			_, _ = serveOne(t, s, httptest.NewRequest("GET", "/", nil), next)
		}()
		if n := s.inFlight.Load(); n != 0 {
			t.Errorf("%s: %d in flight after it ended", name, n)
		}
	}
}

// TestShedNeverOverAdmits: with many requests at once, the next handler
// never holds more than max_in_flight, and every place comes back.
func TestShedNeverOverAdmits(t *testing.T) {
	const max, n = 3, 400
	s := newShed(t, &Shed{MaxInFlight: max, ErrorFormat: "text"})
	var now, peak, passed, shed atomic.Int64
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		c := now.Add(1)
		for p := peak.Load(); c > p && !peak.CompareAndSwap(p, c); p = peak.Load() {
		}
		now.Add(-1)
		return nil
	})
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			w, _ := serveOne(t, s, httptest.NewRequest("GET", "/", nil), next)
			switch w.Code {
			case 200:
				passed.Add(1)
			case 503:
				shed.Add(1)
			default:
				t.Errorf("status %d", w.Code)
			}
		})
	}
	wg.Wait()
	if p := peak.Load(); p > max {
		t.Errorf("%d requests in the next handler at once, max %d", p, max)
	}
	if passed.Load() == 0 || passed.Load()+shed.Load() != n {
		t.Errorf("%d passed, %d shed, of %d", passed.Load(), shed.Load(), n)
	}
	if got := s.inFlight.Load(); got != 0 {
		t.Errorf("%d in flight at the end", got)
	}
}

// TestShedUnreadBody: a refused request with a body it leaves unread
// closes its HTTP/1 connection.
func TestShedUnreadBody(t *testing.T) {
	s := newShed(t, &Shed{MaxInFlight: 1, RetryAfter: caddy.Duration(1500 * time.Millisecond), ErrorFormat: "json"})
	next := newBlocking()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = serveOne(t, s, httptest.NewRequest("GET", "/", nil), next)
	}()
	<-next.arrived
	w, err := serveOne(t, s, httptest.NewRequest("POST", "/members", strings.NewReader(`{"member":{}}`)), &handlertest.Next{})
	if err != nil || w.Code != 503 || w.Header().Get("Connection") != "close" || w.Header().Get("Retry-After") != "2" ||
		w.Body.String() != `{"error":{"message":"Service unavailable: the gateway is at capacity; retry later"}}` {
		t.Errorf("%d %v %v %q", w.Code, err, w.Header(), w.Body)
	}
	r := httptest.NewRequest("POST", "/members", strings.NewReader(`{}`))
	r.ProtoMajor, r.ProtoMinor, r.Proto = 2, 0, "HTTP/2.0"
	if w, _ := serveOne(t, s, r, &handlertest.Next{}); w.Code != 503 || w.Header().Get("Connection") != "" {
		t.Errorf("HTTP/2: %d %v", w.Code, w.Header())
	}
	close(next.release)
	<-done
}

// TestShedHandleErrors: with error_format handle_errors, the refusal is a
// handler error for the site's error routes, Retry-After already set.
func TestShedHandleErrors(t *testing.T) {
	s := newShed(t, &Shed{MaxInFlight: 1, RetryAfter: caddy.Duration(3 * time.Second), ErrorFormat: "handle_errors"})
	next := newBlocking()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = serveOne(t, s, httptest.NewRequest("GET", "/", nil), next)
	}()
	<-next.arrived
	w, err := serveOne(t, s, httptest.NewRequest("GET", "/", nil), &handlertest.Next{})
	var he caddyhttp.HandlerError
	if !errors.As(err, &he) || he.StatusCode != 503 || w.Header().Get("Retry-After") != "3" || w.Body.Len() != 0 {
		t.Errorf("%v %v %q", err, w.Header(), w.Body)
	}
	close(next.release)
	<-done
}

func TestRetryAfterSeconds(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "1", time.Millisecond: "1", time.Second: "1", 1001 * time.Millisecond: "2", time.Minute: "60",
	} {
		if got := retryAfterSeconds(d); got != want {
			t.Errorf("%v: %s, want %s", d, got, want)
		}
	}
}

func TestShedProvision(t *testing.T) {
	for name, s := range map[string]*Shed{
		"no max":         {},
		"negative max":   {MaxInFlight: -1},
		"negative retry": {MaxInFlight: 1, RetryAfter: -1},
		"bad format":     {MaxInFlight: 1, ErrorFormat: "html"},
	} {
		if err := handlertest.TryProvision(t, s); err == nil {
			t.Errorf("%s: provisioned", name)
		}
	}
	err := handlertest.TryProvision(t, &Shed{})
	if err == nil || !strings.Contains(err.Error(), "max_in_flight is required") {
		t.Errorf("no max: %v", err)
	}
}

// TestShedAdmitAllocs: admitting a request allocates nothing.
func TestShedAdmitAllocs(t *testing.T) {
	s := newShed(t, &Shed{MaxInFlight: 1})
	r := httptest.NewRequest("GET", "/", nil)
	w := httptest.NewRecorder()
	nop := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
	if n := testing.AllocsPerRun(100, func() { _ = s.ServeHTTP(w, r, nop) }); n != 0 {
		t.Errorf("%v allocations per admitted request, want 0", n)
	}
}
