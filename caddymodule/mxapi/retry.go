package mxapi

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mxgate/mxgate/caddymodule/internal/bodies"
	"github.com/mxgate/mxgate/caddymodule/internal/metrics"
	"github.com/mxgate/mxgate/caddymodule/internal/provision"
	"github.com/mxgate/mxgate/caddymodule/internal/resend"
)

func init() {
	caddy.RegisterModule(Retry{})
}

// Retry retries idempotent requests (GET, HEAD, PUT, DELETE, OPTIONS) that
// the handlers after it answer with a retryable status, by default 429 and
// 503, with exponential backoff and full jitter, honouring Retry-After when
// present, within a bounded total time. POST and PATCH are never retried.
// The client sees the final answer; a retryable answer is held back only
// while another attempt will follow.
type Retry struct {
	// Statuses are the answers worth retrying. Default: [429, 503].
	Statuses []int `json:"statuses,omitempty"`

	// MaxTime bounds the time spent waiting between attempts, from the
	// first attempt's start; a wait that would end past it is not taken.
	// Default: 10s.
	MaxTime caddy.Duration `json:"max_time,omitempty"`

	// MaxAttempts bounds the attempts, the first included. Default: 5.
	MaxAttempts int `json:"max_attempts,omitempty"`

	// BaseDelay is the first backoff's upper bound; it doubles each
	// attempt up to MaxDelay, and the wait is drawn uniformly below it.
	// Default: 100ms.
	BaseDelay caddy.Duration `json:"base_delay,omitempty"`

	// MaxDelay caps one backoff (not a Retry-After). Default: 2s.
	MaxDelay caddy.Duration `json:"max_delay,omitempty"`

	// MaxBody is the largest request body held for replay; a larger
	// request is sent once, unretried. Default: 1 MiB.
	MaxBody int64 `json:"max_body,omitempty"`

	logger *zap.Logger
	jitter func(n int64) int64
}

// CaddyModule returns the Caddy module information.
func (Retry) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.mx_retry",
		New: func() caddy.Module { return new(Retry) },
	}
}

// Validate checks the options among themselves. Caddy calls it after
// Provision; Provision calls it first.
func (rt *Retry) Validate() (err error) {
	defer provision.NameDirective(&err, "mx_retry")
	for _, s := range rt.Statuses {
		if s < 400 || s > 599 {
			return fmt.Errorf("status %d is not an error status", s)
		}
	}
	switch {
	case rt.MaxTime < 0, rt.BaseDelay < 0, rt.MaxDelay < 0, rt.MaxBody < 0:
		return errors.New("durations and sizes must be positive")
	case rt.MaxAttempts < 0:
		return errors.New("max_attempts must be at least 1")
	case cmp.Or(rt.MaxDelay, defaultMaxDelay) < cmp.Or(rt.BaseDelay, defaultBaseDelay):
		return errors.New("max_delay must be at least base_delay")
	}
	return nil
}

// The defaults of BaseDelay and MaxDelay.
const (
	defaultBaseDelay = caddy.Duration(100 * time.Millisecond)
	defaultMaxDelay  = caddy.Duration(2 * time.Second)
)

// Provision checks the options (Validate) and sets defaults.
func (rt *Retry) Provision(ctx caddy.Context) (err error) {
	if err := rt.Validate(); err != nil {
		return err // named by Validate
	}
	defer provision.NameDirective(&err, "mx_retry")
	rt.logger = ctx.Logger()
	rt.jitter = rand.Int64N
	if len(rt.Statuses) == 0 {
		rt.Statuses = []int{http.StatusTooManyRequests, http.StatusServiceUnavailable}
	}
	if rt.MaxTime == 0 {
		rt.MaxTime = caddy.Duration(10 * time.Second)
	}
	if rt.MaxAttempts == 0 {
		rt.MaxAttempts = 5
	}
	rt.BaseDelay = cmp.Or(rt.BaseDelay, defaultBaseDelay)
	rt.MaxDelay = cmp.Or(rt.MaxDelay, defaultMaxDelay)
	if rt.MaxBody == 0 {
		rt.MaxBody = 1 << 20
	}
	return metrics.Register(ctx.GetMetricsRegistry())
}

// ServeHTTP runs the rest of the chain, again while it answers a
// retryable status and time and attempts remain.
func (rt *Retry) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if !resend.Idempotent(r.Method) {
		return next.ServeHTTP(w, r)
	}
	replay, err := resend.Replayable(r, rt.MaxBody)
	if err != nil {
		return caddyhttp.Error(http.StatusBadRequest, err)
	}
	if replay == nil { // too large to hold: sent once
		return next.ServeHTTP(w, r)
	}
	start := time.Now()
	deadline := start.Add(time.Duration(rt.MaxTime))
	header := w.Header().Clone() // what earlier handlers set, restored before each retry
	buf := new(bytes.Buffer)
	back := func() {}
	defer func() { back() }() // the final trip's variables, for the access log
	for attempt := 1; ; attempt++ {
		replay()
		var trip *http.Request
		trip, back = resend.Trip(r)
		last := attempt >= rt.MaxAttempts
		buf.Reset()
		rec := caddyhttp.NewResponseRecorder(w, buf, func(status int, _ http.Header) bool {
			return !last && slices.Contains(rt.Statuses, status)
		})
		if err := next.ServeHTTP(rec, trip); err != nil {
			return err
		}
		if !rec.Buffered() {
			return nil // streamed to the client: a final answer
		}
		delay := rt.backoff(attempt, w.Header().Get("Retry-After"), time.Now())
		if time.Now().Add(delay).After(deadline) {
			return rec.WriteResponse() // no time left: the client gets this answer
		}
		metrics.Retries.WithLabelValues(strconv.Itoa(rec.Status())).Inc()
		if ce := rt.logger.Check(zapcore.DebugLevel, "retrying"); ce != nil {
			ce.Write(zap.Int("status", rec.Status()), zap.Int("attempt", attempt), zap.Duration("delay", delay))
		}
		bodies.RestoreHeader(w.Header(), header)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return caddyhttp.Error(499, r.Context().Err())
		}
	}
}

// backoff is how long to wait before attempt+1: the Retry-After the answer
// gave, or a full-jitter exponential backoff.
func (rt *Retry) backoff(attempt int, retryAfter string, now time.Time) time.Duration {
	if d, ok := parseRetryAfter(retryAfter, now); ok {
		return d
	}
	ceiling := time.Duration(rt.BaseDelay) << min(attempt-1, 30)
	if ceiling <= 0 || ceiling > time.Duration(rt.MaxDelay) {
		ceiling = time.Duration(rt.MaxDelay)
	}
	return time.Duration(rt.jitter(int64(ceiling) + 1))
}

// parseRetryAfter reads delay-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
		return time.Duration(min(n, 1<<20)) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(0, t.Sub(now)), true
	}
	return 0, false
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Retry)(nil)
	_ caddy.Validator             = (*Retry)(nil)
	_ caddyhttp.MiddlewareHandler = (*Retry)(nil)
)
