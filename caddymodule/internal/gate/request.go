package gate

import (
	"bytes"
	"context"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/netip"
	"slices"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// ClientIP returns Caddy's client IP for r as a string ("" if unknown):
// the TCP peer, unless the server's trusted_proxies option says a
// forwarded header may be believed.
func ClientIP(r *http.Request) string {
	s, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	return s
}

// ClientAddr returns ClientIP parsed; ok is false when it is missing or
// unparseable.
func ClientAddr(r *http.Request) (netip.Addr, bool) {
	ip, err := netip.ParseAddr(ClientIP(r))
	return ip, err == nil
}

// SetUser sets {http.auth.user.id}, usable as a rate-limit key and in logs.
func SetUser(r *http.Request, id string) {
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set("http.auth.user.id", id)
	}
}

// Errors of ReadBody.
var (
	ErrBodyTooLarge   = errors.New("request body too large")
	ErrBodyUnreadable = errors.New("request body could not be read")
)

// ReadBody reads r's whole body, refusing one over max (declared or
// streamed) with ErrBodyTooLarge; a client that goes away mid-body gives
// ErrBodyUnreadable. A request without a body gives nil.
func ReadBody(r *http.Request, max int64) ([]byte, error) {
	if r.ContentLength > max {
		return nil, ErrBodyTooLarge
	}
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return nil, nil
	}
	var body []byte
	var err error
	if r.ContentLength > 0 {
		// Declared length (already checked against max): read exactly
		// that; the server's body reader enforces the framing.
		body = make([]byte, r.ContentLength)
		_, err = io.ReadFull(r.Body, body)
	} else {
		body, err = io.ReadAll(io.LimitReader(r.Body, max+1))
		if err == nil && int64(len(body)) > max {
			return nil, ErrBodyTooLarge
		}
	}
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, ErrBodyTooLarge
		}
		return nil, ErrBodyUnreadable
	}
	return body, nil
}

// SetBody makes body r's body, byte for byte.
func SetBody(r *http.Request, body []byte) {
	if body == nil {
		r.Body, r.ContentLength = http.NoBody, 0
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
}

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
	return func() { SetBody(r, b) }, nil
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

// ClearHeader drops every field of h (the upstream's, in a response that
// is replaced).
func ClearHeader(h http.Header) {
	for k := range h {
		delete(h, k)
	}
}

// RestoreHeader makes h a copy of saved.
func RestoreHeader(h, saved http.Header) {
	ClearHeader(h)
	for k, v := range saved {
		h[k] = slices.Clone(v)
	}
}

// Buffered is a response held whole (up to a bound) by BufferResponse.
type Buffered struct {
	caddyhttp.ResponseRecorder
	buf      bytes.Buffer
	max      int64
	overflow bool
	written  bool
}

// BufferResponse runs next with its whole response held, up to max bytes
// of body; Overflow reports a larger one (whose body is then dropped).
func BufferResponse(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, max int64) (*Buffered, error) {
	b := &Buffered{max: max}
	b.ResponseRecorder = caddyhttp.NewResponseRecorder(w, &b.buf, func(int, http.Header) bool { return true })
	err := next.ServeHTTP(b, r)
	return b, err
}

// Write holds p, or notes an overflow.
func (b *Buffered) Write(p []byte) (int, error) {
	if !b.written {
		b.WriteHeader(http.StatusOK) // as net/http does
	}
	if b.overflow || int64(b.buf.Len()+len(p)) > b.max {
		b.overflow = true
		return len(p), nil
	}
	return b.buf.Write(p)
}

// WriteHeader records the status.
func (b *Buffered) WriteHeader(status int) {
	b.written = true
	b.ResponseRecorder.WriteHeader(status)
}

// Body is the held body.
func (b *Buffered) Body() []byte { return b.buf.Bytes() }

// Overflow reports whether the body was larger than the bound.
func (b *Buffered) Overflow() bool { return b.overflow }

// Unwrap lets http.ResponseController reach the writer beneath.
func (b *Buffered) Unwrap() http.ResponseWriter { return b.ResponseRecorder }
