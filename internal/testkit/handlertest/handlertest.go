// Package handlertest runs mxgate's handlers in process, as Caddy's server
// would: provisioned with a real caddy.Context, requests carrying Caddy's
// variables and replacer, and a next handler that records what reached it.
package handlertest

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// Provision provisions m (and validates it) with a fresh caddy.Context,
// cancelled and cleaned up when the test ends.
func Provision(t testing.TB, m caddy.Module) {
	t.Helper()
	if err := TryProvision(t, m); err != nil {
		t.Fatal(err)
	}
}

// TryProvision is Provision returning the error.
func TryProvision(t testing.TB, m caddy.Module) error {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(func() {
		if c, ok := m.(caddy.CleanerUpper); ok {
			_ = c.Cleanup()
		}
		cancel()
	})
	if p, ok := m.(caddy.Provisioner); ok {
		if err := p.Provision(ctx); err != nil {
			return err
		}
	}
	if v, ok := m.(caddy.Validator); ok {
		return v.Validate()
	}
	return nil
}

// Logs returns a logger that records every entry, and the records.
func Logs() (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(zap.DebugLevel)
	return zap.New(core), logs
}

// Request returns r as Caddy's server hands it to handlers: with its
// variables (the client IP, "" for none) and a replacer.
func Request(r *http.Request, clientIP string) *http.Request {
	r = caddyhttp.PrepareRequest(r, caddy.NewReplacer(), nil, nil)
	if clientIP != "" {
		caddyhttp.SetVar(r.Context(), caddyhttp.ClientIPVarKey, clientIP)
	} else {
		caddyhttp.SetVar(r.Context(), caddyhttp.ClientIPVarKey, nil)
	}
	return r
}

// Next is the handler after the one under test: it records what reaches
// it and answers Status (default 200) with Body.
type Next struct {
	Status int
	Header http.Header // set on the response
	Body   string

	Calls    int
	Received http.Header // the request's header as it arrived
	Got      []byte      // the request's body as it arrived
	Method   string
	URI      string
}

// ServeHTTP implements caddyhttp.Handler.
func (n *Next) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	n.Calls++
	n.Received = r.Header.Clone()
	n.Method, n.URI = r.Method, r.RequestURI
	if r.Body != nil {
		n.Got, _ = io.ReadAll(r.Body)
	}
	for k, v := range n.Header {
		w.Header()[k] = v
	}
	status := n.Status
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, n.Body)
	return nil
}

// Serve runs h on r in front of next and returns the response.
func Serve(t testing.TB, h caddyhttp.MiddlewareHandler, r *http.Request, next caddyhttp.Handler) (*httptest.ResponseRecorder, error) {
	t.Helper()
	w := httptest.NewRecorder()
	err := h.ServeHTTP(w, r, next)
	return w, err
}

// MetricValue returns the value of the counter or gauge that c (a
// collector such as a CounterVec) holds under labels, 0 when it has none.
func MetricValue(t testing.TB, c prometheus.Collector, labels map[string]string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
	metrics:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue metrics
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			}
		}
	}
	return 0
}
