// Package resend is what a handler that sends a request down the rest of
// the chain more than once (a retry, a refreshed credential) needs: a body
// that can be sent again, request variables of each trip's own, and which
// methods may be sent twice.
package resend

import (
	"bytes"
	"context"
	"io"
	"maps"
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/mxgate/mxgate/caddymodule/internal/bodies"
)

// Replayable reads r's body, up to max, so that the request can be sent
// more than once: replay (nil when the body is larger than max, and then
// r's body is left whole to be sent once) sets the body afresh before each
// attempt.
func Replayable(r *http.Request, max int64) (replay func(), err error) {
	if r.ContentLength > max {
		return nil, nil
	}
	if r.Body == nil || r.Body == http.NoBody {
		return func() {}, nil
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max { // streamed and too large: send once
		r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(b), r.Body))
		return nil, nil
	}
	return func() { bodies.Set(r, b) }, nil
}

// Trip returns r for one trip down the rest of the chain by a handler that
// may send a request more than once (a retry): a shallow copy whose
// context holds its own copy of Caddy's request variables. reverse_proxy
// writes those variables on every trip, and its transport may still read
// them from a dial that outlives the trip that started it, so no two trips
// may share one map. Call back after the trip whose answer is final: it
// copies the trip's variables into r's, for what runs after the chain (the
// access log).
func Trip(r *http.Request) (trip *http.Request, back func()) {
	vars, ok := r.Context().Value(caddyhttp.VarsCtxKey).(map[string]any)
	if !ok {
		return r, func() {}
	}
	own := maps.Clone(vars)
	trip = r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, own))
	return trip, func() { maps.Copy(vars, own) }
}

// Idempotent reports whether a request of method may be sent twice.
func Idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete, http.MethodOptions:
		return true
	}
	return false
}
