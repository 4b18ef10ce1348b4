// Package bodies holds request and response bodies for mxgate's handlers:
// a request's body read whole under a bound, or set afresh; a response held
// whole (up to a bound) so that it can be checked or replaced, and the
// header of a response that is replaced.
package bodies

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"slices"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// Errors of Read.
var (
	ErrTooLarge   = errors.New("request body too large")
	ErrUnreadable = errors.New("request body could not be read")
)

// Read reads r's whole body, refusing one over max (declared or
// streamed) with ErrTooLarge; a client that goes away mid-body gives
// ErrUnreadable. A request without a body gives nil.
func Read(r *http.Request, max int64) ([]byte, error) {
	if r.ContentLength > max {
		return nil, ErrTooLarge
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
			return nil, ErrTooLarge
		}
	}
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, ErrTooLarge
		}
		return nil, ErrUnreadable
	}
	return body, nil
}

// Set makes body r's body, byte for byte.
func Set(r *http.Request, body []byte) {
	if body == nil {
		r.Body, r.ContentLength = http.NoBody, 0
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
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
