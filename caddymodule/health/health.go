// Package health is the mx_health handler: a readiness endpoint that
// answers 200 only while every shared store, and every authorization
// server's key set and introspection endpoint, the loaded configuration
// needs can be used.
package health

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/mxgate/mxgate/caddymodule/internal/caddyfileopt"
	"github.com/mxgate/mxgate/caddymodule/internal/readiness"
)

func init() {
	caddy.RegisterModule(Health{})
	httpcaddyfile.RegisterHandlerDirective("mx_health", caddyfileopt.UnmarshalHandler[Health])
}

// Health answers a readiness check: 200 {"status":"ready"} while every
// dependency of the loaded configuration (the Redis of each `store
// redis`, the JWKS and introspection endpoint of each fdx_auth) can be
// used, else 503 {"status":"unready","reasons":[…]} naming what cannot
// and why, never a secret.
// Each check is bounded by Timeout; it never calls the next handler.
// Serve it on an address only the orchestrator reaches.
type Health struct {
	// Timeout bounds one readiness check. Default: 2s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Health) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.mx_health",
		New: func() caddy.Module { return new(Health) },
	}
}

// ServeHTTP answers the check.
func (h *Health) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	timeout := time.Duration(h.Timeout)
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	failed := readiness.Check(ctx)
	v := struct {
		Status  string   `json:"status"`
		Reasons []string `json:"reasons,omitempty"`
	}{Status: "ready", Reasons: failed}
	status := http.StatusOK
	if len(failed) > 0 {
		v.Status, status = "unready", http.StatusServiceUnavailable
	}
	body, _ := json.Marshal(v)
	hd := w.Header()
	hd.Set("Content-Type", "application/json")
	hd.Set("Content-Length", strconv.Itoa(len(body)))
	hd.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
	return nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	mx_health {
//		timeout <duration>   # default 2s
//	}
func (h *Health) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		var err error
		switch d.Val() {
		case "timeout":
			h.Timeout, err = caddyfileopt.PositiveDuration(d)
		default:
			return caddyfileopt.Unrecognized(d, "mx_health")
		}
		if err != nil {
			return err
		}
		if err := caddyfileopt.NoMoreArgs(d); err != nil {
			return err
		}
	}
	return nil
}

// Interface guards
var (
	_ caddyhttp.MiddlewareHandler = (*Health)(nil)
	_ caddyfile.Unmarshaler       = (*Health)(nil)
)
