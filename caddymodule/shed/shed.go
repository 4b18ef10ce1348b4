// Package shed keeps mxgate calm under overload: it caps what the gateway
// takes on and turns the rest away at once with 503, so that what it has
// taken on is served as if the excess were not there. Two modules:
//
//   - mx_conn_limit, a listener wrapper, caps the connections a server
//     holds open and answers one over the cap with a canned 503 before
//     the server ever sees it;
//   - mx_shed, a handler, caps the requests in flight in the rest of its
//     route and answers one over the cap with 503 and Retry-After in the
//     site's error format.
package shed

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mxgate/mxgate/caddymodule/internal/metrics"
	"github.com/mxgate/mxgate/caddymodule/internal/provision"
	"github.com/mxgate/mxgate/caddymodule/internal/refusal"
)

func init() {
	caddy.RegisterModule(Shed{})
}

// Shed (http.handlers.mx_shed) caps the requests in flight in the handlers
// after it: a request that arrives while MaxInFlight are there is answered
// at once with 503, Retry-After and the error body of ErrorFormat, counted
// in mxgate_shed_total{where="handler"} and in mxgate_rejections_total
// {directive="mx_shed", reason="overloaded"}. A shed request whose body is
// unread closes its connection. Admitting a request costs a load, a
// compare-and-swap and an add, and no allocation.
//
// The count is this handler's own, for one loaded configuration: each
// mx_shed of a Caddyfile counts apart, and a reload starts from zero
// while the old configuration finishes what it holds.
//
// Shed is safe for concurrent use once provisioned.
type Shed struct {
	// MaxInFlight is how many requests may be in the handlers after this
	// one at once: what the upstream serves well at the same time.
	// Required; at least 1.
	MaxInFlight int `json:"max_in_flight,omitempty"`

	// RetryAfter is the Retry-After of a 503, in whole seconds rounded up.
	// Default: 1s.
	RetryAfter caddy.Duration `json:"retry_after,omitempty"`

	// ErrorFormat is how a refusal is written: "mdx" (MDX On Demand's XML
	// error body), "json" (MX's {"error":{"message":…}}), "fdx", "text", or
	// "handle_errors" (no body; the site's handle_errors renders it).
	// Default: mdx.
	ErrorFormat string `json:"error_format,omitempty"`

	inFlight   *atomic.Int64
	retryAfter string
	format     refusal.Format
	logger     *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Shed) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.mx_shed",
		New: func() caddy.Module { return new(Shed) },
	}
}

// Provision checks the settings and sets the defaults.
func (s *Shed) Provision(ctx caddy.Context) (err error) {
	defer provision.NameDirective(&err, "mx_shed")
	s.logger = ctx.Logger()
	if s.MaxInFlight < 1 {
		return errors.New("max_in_flight is required: how many requests the handlers after mx_shed may hold at once (at least 1)")
	}
	if s.RetryAfter < 0 {
		return fmt.Errorf("retry_after: %s is negative", time.Duration(s.RetryAfter))
	}
	s.retryAfter = retryAfterSeconds(time.Duration(s.RetryAfter))
	if s.format, err = refusal.ParseFormat(s.ErrorFormat, refusal.FormatMDX); err != nil {
		return err
	}
	s.inFlight = new(atomic.Int64)
	return metrics.Register(ctx.GetMetricsRegistry())
}

// retryAfterSeconds is d in whole seconds, rounded up; 1 for none.
func retryAfterSeconds(d time.Duration) string {
	if d <= 0 {
		return "1"
	}
	return strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10)
}

var refuseOverloaded = refusal.Refusal{Status: http.StatusServiceUnavailable, Reason: "overloaded",
	Message: "Service unavailable: the gateway is at capacity; retry later"}

// ServeHTTP passes the request on while fewer than MaxInFlight are in
// flight, and refuses it otherwise.
func (s *Shed) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if !s.acquire() {
		return s.refuse(w, r)
	}
	defer s.inFlight.Add(-1)
	return next.ServeHTTP(w, r)
}

// acquire takes a place for a request; false when MaxInFlight are taken.
func (s *Shed) acquire() bool {
	for {
		n := s.inFlight.Load()
		if n >= int64(s.MaxInFlight) {
			return false
		}
		if s.inFlight.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// refuse answers 503 with Retry-After.
func (s *Shed) refuse(w http.ResponseWriter, r *http.Request) error {
	metrics.ShedHandler.Inc()
	if ce := s.logger.Check(zapcore.DebugLevel, "request shed: too many in flight"); ce != nil {
		ce.Write(zap.Int("max_in_flight", s.MaxInFlight), zap.String("remote_addr", r.RemoteAddr),
			zap.String("method", r.Method), zap.String("path", r.URL.Path))
	}
	w.Header().Set("Retry-After", s.retryAfter)
	refusal.CloseUnread(w, r)
	return refusal.Refuse(w, r, "mx_shed", s.format, refuseOverloaded)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Shed)(nil)
	_ caddyhttp.MiddlewareHandler = (*Shed)(nil)
)
