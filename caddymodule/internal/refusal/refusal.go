// Package refusal is the one way mxgate's handlers refuse a request:
// counted, recorded in the request's variables for the access log, and
// answered in the protocol's own error format (MDX XML, the MX Platform
// API's JSON, FDX JSON, text) or handed to the site's handle_errors.
package refusal

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/mxgate/mxgate/caddymodule/internal/metrics"
)

// MDXContentType is the media type of MDX On Demand v5 bodies, errors included.
const MDXContentType = "application/vnd.moneydesktop.mdx.v5+xml"

// Format is how a refusal's body is written.
type Format string

// The formats. Each directive has a protocol default; error_format
// chooses another.
const (
	// FormatMDX is MDX On Demand's XML error body:
	// <mdx version="5.0"><error><code>…</code><message>…</message></error></mdx>
	FormatMDX Format = "mdx"
	// FormatJSON is the MX Platform API's {"error":{"message":"…"}}.
	FormatJSON Format = "json"
	// FormatFDX is FDX's {"code":"…","message":"…","debugMessage":"…"}.
	FormatFDX Format = "fdx"
	// FormatText is the message alone, as text/plain.
	FormatText Format = "text"
	// FormatHandleErrors writes no body: the handler returns a
	// caddyhttp.HandlerError so that the site's handle_errors renders it
	// ({http.error.status_code}, {http.error.message}).
	FormatHandleErrors Format = "handle_errors"
)

var formats = []Format{FormatMDX, FormatJSON, FormatFDX, FormatText, FormatHandleErrors}

// ParseFormat checks s, a format's name; "" gives def.
func ParseFormat(s string, def Format) (Format, error) {
	if s == "" {
		return def, nil
	}
	for _, f := range formats {
		if string(f) == s {
			return f, nil
		}
	}
	names := make([]string, len(formats))
	for i, f := range formats {
		names[i] = string(f)
	}
	return "", fmt.Errorf("unknown error_format %q (want %s)", s, strings.Join(names, ", "))
}

// Refusal is one reason to refuse a request: the status, a stable reason
// label for metrics and logs, and the message the caller sees. Messages
// say what was wrong and never carry a key, a signature, a token or a
// session key.
type Refusal struct {
	Status  int
	Reason  string // metric and log label
	Code    string // MDX <code>; may be empty
	Message string
}

// Error returns the message, so that a Refusal can be a handler error.
func (rf Refusal) Error() string { return rf.Message }

// The request variables in which Refuse records a refusal, so that the
// access log can carry it (log_append mxgate_refusal
// {http.vars.mxgate.refusal.reason}) instead of a log line per refusal.
// The variables are a trip's (resend.Trip): a request a handler sends again
// carries the refusal of its final trip only.
const (
	DirectiveVar = "mxgate.refusal.directive" // the directive, as metrics label it: mdx_hmac, mx_rate_limit, …
	ReasonVar    = "mxgate.refusal.reason"    // the reason, as metrics label it: replayed, rate_limited, …
)

// Refuse answers r with rf on behalf of directive: it counts the refusal
// in mxgate_rejections_total, records it in r's variables (ReasonVar,
// DirectiveVar) and writes the body of format, or, for
// FormatHandleErrors, returns a caddyhttp.HandlerError carrying rf for the
// site's error routes. Headers the caller set on w (WWW-Authenticate,
// Retry-After, …) are kept.
func Refuse(w http.ResponseWriter, r *http.Request, directive string, format Format, rf Refusal) error {
	metrics.CountRejection(directive, rf.Reason)
	caddyhttp.SetVar(r.Context(), DirectiveVar, directive)
	caddyhttp.SetVar(r.Context(), ReasonVar, rf.Reason)
	if format == FormatHandleErrors {
		return caddyhttp.Error(rf.Status, rf)
	}
	body, ctype := Render(format, rf)
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(rf.Status)
	_, _ = w.Write(body)
	return nil
}

// Render returns the body and Content-Type of rf in format.
func Render(format Format, rf Refusal) ([]byte, string) {
	switch format {
	case FormatJSON:
		var v struct {
			Error struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		v.Error.Message = rf.Message
		b, _ := json.Marshal(v)
		return b, "application/json; charset=utf-8"
	case FormatFDX:
		b, _ := json.Marshal(struct {
			Code         string `json:"code"`
			Message      string `json:"message"`
			DebugMessage string `json:"debugMessage"`
		}{strconv.Itoa(rf.Status), http.StatusText(rf.Status), rf.Message})
		return b, "application/json; charset=UTF-8"
	case FormatText:
		return []byte(rf.Message + "\n"), "text/plain; charset=utf-8"
	default:
		var sb strings.Builder
		sb.WriteString(`<mdx version="5.0"><error><code>`)
		_ = xml.EscapeText(&sb, []byte(rf.Code))
		sb.WriteString(`</code><message>`)
		_ = xml.EscapeText(&sb, []byte(rf.Message))
		sb.WriteString(`</message></error></mdx>`)
		return []byte(sb.String()), MDXContentType
	}
}

// CloseUnread asks for the connection to be closed after the answer when
// r's body is refused unread (or not read to its end), rather than let
// net/http wait for the rest of it before answering: a sender that
// declares a large body and sends it slowly holds nothing for long.
func CloseUnread(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor == 1 && r.ContentLength != 0 {
		w.Header().Set("Connection", "close")
	}
}
