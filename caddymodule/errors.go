package caddymodule

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// MDXContentType is the media type of MDX On Demand v5 bodies, errors included.
const MDXContentType = "application/vnd.moneydesktop.mdx.v5+xml"

// Error formats a handler can answer rejections in.
const (
	// FormatMDX is MDX On Demand's XML error body:
	// <mdx version="5.0"><error><code>…</code><message>…</message></error></mdx>
	FormatMDX = "mdx"
	// FormatJSON is the MX Platform API's {"error":{"message":"…"}}.
	FormatJSON = "json"
	// FormatText is the message alone, as text/plain.
	FormatText = "text"
	// FormatHandleErrors writes no body: the handler returns a
	// caddyhttp.HandlerError so that the site's handle_errors renders it.
	FormatHandleErrors = "handle_errors"
)

var errorFormats = []string{FormatMDX, FormatJSON, FormatText, FormatHandleErrors}

func checkErrorFormat(f string) error {
	for _, ok := range errorFormats {
		if f == ok {
			return nil
		}
	}
	return fmt.Errorf("unknown error_format %q (want %s)", f, strings.Join(errorFormats, ", "))
}

// rejection is one reason to refuse a request: the status, a stable reason
// label for metrics and logs, and the message the caller sees. Messages say
// what was wrong and never carry a key, a signature or a session key.
type rejection struct {
	status  int
	reason  string
	code    string // MDX <code>; may be empty
	message string
}

func (r rejection) Error() string { return r.message }

// respond writes the rejection in format, or, for FormatHandleErrors, hands
// it to the site's error routes by returning a caddyhttp.HandlerError.
func (r rejection) respond(w http.ResponseWriter, format string) error {
	if format == FormatHandleErrors {
		return caddyhttp.Error(r.status, errors.New(r.message))
	}
	body, ctype := renderError(format, r.code, r.message)
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(r.status)
	_, _ = w.Write(body)
	return nil
}

// renderError returns the body and Content-Type of an error in format.
func renderError(format, code, message string) ([]byte, string) {
	switch format {
	case FormatJSON:
		var v struct {
			Error struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		v.Error.Message = message
		b, _ := json.Marshal(v)
		return b, "application/json; charset=utf-8"
	case FormatText:
		return []byte(message + "\n"), "text/plain; charset=utf-8"
	default:
		var sb strings.Builder
		sb.WriteString(`<mdx version="5.0"><error><code>`)
		_ = xml.EscapeText(&sb, []byte(code))
		sb.WriteString(`</code><message>`)
		_ = xml.EscapeText(&sb, []byte(message))
		sb.WriteString(`</message></error></mdx>`)
		return []byte(sb.String()), MDXContentType
	}
}
