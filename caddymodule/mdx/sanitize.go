package mdx

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/mxgate/mxgate/caddymodule/internal/gate"
	"github.com/mxgate/mxgate/sanitize"
)

func init() {
	caddy.RegisterModule(Sanitize{})
}

// Sanitize inspects the FI's MDX responses on their way to MX and finds,
// in the configured fields of <account> elements, Luhn-valid card numbers
// (13 to 19 digits, grouped by spaces or dashes or not) and any other run
// of 9 or more digits (a bank account number): MDX forbids sending
// complete account or card numbers in account ids and names.
//
// "mask" replaces all but the last four digits, streaming, in bounded
// memory; "block" answers 502 with an MDX error instead of a response that
// holds such a number (it buffers the response, up to MaxBody, to decide);
// "report" only logs and counts. Logs name the account's position and the
// rule, never the number. Responses that are not XML, not successful, or
// not well formed pass on unchanged (the last with a warning). Gzip-encoded
// responses are inspected too.
type Sanitize struct {
	// Action is mask, block or report. Default: mask.
	Action string `json:"action,omitempty"`

	// Fields are the <account> child elements inspected. Default: id, name.
	Fields []string `json:"fields,omitempty"`

	// MaxBody bounds the response held in block mode; a larger one is
	// refused (502), since it cannot be vouched for. Default: 10 MiB.
	MaxBody int64 `json:"max_body,omitempty"`

	logger *zap.Logger
}

// DefaultSanitizeMaxBody bounds the response block mode holds.
const DefaultSanitizeMaxBody = 10 << 20

// CaddyModule returns the Caddy module information.
func (Sanitize) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.mdx_sanitize",
		New: func() caddy.Module { return new(Sanitize) },
	}
}

// Provision sets defaults.
func (s *Sanitize) Provision(ctx caddy.Context) error {
	s.logger = ctx.Logger()
	switch s.Action {
	case "":
		s.Action = "mask"
	case "mask", "block", "report":
	default:
		return fmt.Errorf("action must be mask, block or report, not %q", s.Action)
	}
	if len(s.Fields) == 0 {
		s.Fields = []string{"id", "name"}
	}
	if s.MaxBody == 0 {
		s.MaxBody = DefaultSanitizeMaxBody
	}
	if s.MaxBody < 0 {
		return errors.New("max_body must be positive")
	}
	return gate.RegisterMetrics(ctx.GetMetricsRegistry())
}

var (
	refuseSanitized     = gate.Refusal{Status: http.StatusBadGateway, Reason: "account_number_in_response", Message: "Bad gateway: the response carried a complete account or card number"}
	refuseUninspectable = gate.Refusal{Status: http.StatusBadGateway, Reason: "response_too_large_to_inspect", Message: "Bad gateway: the response is too large to inspect"}
)

// ServeHTTP inspects the response of the handlers after it.
func (s *Sanitize) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	sw := &sanitizeWriter{ResponseWriter: w, s: s, r: r}
	err := next.ServeHTTP(sw, r)
	if ferr := sw.finish(); err == nil {
		err = ferr
	}
	return err
}

// isXML reports whether a Content-Type is XML.
func isXML(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "application/xml" || mt == "text/xml" || strings.HasSuffix(mt, "+xml")
}

// sanitizeWriter routes a response body through the sanitizer.
type sanitizeWriter struct {
	http.ResponseWriter
	s       *Sanitize
	r       *http.Request
	wrote   bool
	mode    string // "" (pass through), mask, report or block
	gzipped bool
	status  int

	pw   *io.PipeWriter
	done chan error

	held     bytes.Buffer // block mode
	overflow bool
}

func (sw *sanitizeWriter) WriteHeader(status int) {
	if sw.wrote {
		return
	}
	sw.wrote = true
	sw.status = status
	h := sw.Header()
	enc := strings.ToLower(strings.TrimSpace(h.Get("Content-Encoding")))
	if status < 200 || status > 299 || sw.r.Method == http.MethodHead || !isXML(h.Get("Content-Type")) || (enc != "" && enc != "gzip") {
		sw.ResponseWriter.WriteHeader(status)
		return
	}
	sw.mode, sw.gzipped = sw.s.Action, enc == "gzip"
	switch sw.mode {
	case "block":
		return // decided in finish
	case "mask":
		if sw.gzipped {
			h.Del("Content-Length") // re-encoded
		}
	}
	sw.ResponseWriter.WriteHeader(status)
	pr, pw := io.Pipe()
	sw.pw, sw.done = pw, make(chan error, 1)
	go func() {
		err := sw.process(pr)
		_, _ = io.Copy(io.Discard, pr) // never leave the writer blocked
		pr.Close()
		sw.done <- err
	}()
}

// process runs in its own goroutine: it reads the body from pr and, in
// mask mode, writes the output.
func (sw *sanitizeWriter) process(pr io.Reader) error {
	opts := sanitize.Options{Fields: sw.s.Fields, Mask: sw.mode == "mask"}
	var out io.Writer = io.Discard
	if sw.mode == "mask" {
		out = sw.ResponseWriter
	}
	if !sw.gzipped {
		findings, err := sanitize.Process(out, pr, opts)
		sw.report(findings, err)
		return nil
	}
	br := bufio.NewReader(pr)
	magic, _ := br.Peek(2) // consumes nothing
	var zr *gzip.Reader
	var err error
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err = gzip.NewReader(br)
	}
	if zr == nil || err != nil { // says gzip, is not: pass on unchanged
		sw.s.logger.Warn("response not inspected: Content-Encoding gzip but not gzip data", zap.String("path", sw.r.URL.Path))
		if sw.mode == "mask" && zr == nil {
			_, err = io.Copy(out, br)
		}
		return err
	}
	var zw *gzip.Writer
	if sw.mode == "mask" {
		zw = gzip.NewWriter(out)
		out = zw
	}
	findings, perr := sanitize.Process(out, zr, opts)
	sw.report(findings, perr)
	if zw != nil {
		return zw.Close()
	}
	return nil
}

func (sw *sanitizeWriter) report(findings []sanitize.Finding, err error) {
	for _, f := range findings {
		gate.Metrics.SanitizeFindings.WithLabelValues(f.Rule, sw.s.Action).Inc()
		sw.s.logger.Warn("complete account or card number in an MDX response",
			zap.Int("account", f.Account), zap.String("field", f.Field), zap.String("rule", f.Rule),
			zap.String("action", sw.s.Action), zap.String("path", sw.r.URL.Path))
	}
	if err != nil {
		sw.s.logger.Warn("response not fully inspected", zap.String("path", sw.r.URL.Path), zap.Error(err))
	}
}

func (sw *sanitizeWriter) Write(b []byte) (int, error) {
	if !sw.wrote {
		sw.WriteHeader(http.StatusOK)
	}
	switch sw.mode {
	case "":
		return sw.ResponseWriter.Write(b)
	case "block":
		if int64(sw.held.Len()+len(b)) > sw.s.MaxBody {
			sw.overflow = true
			return len(b), nil
		}
		return sw.held.Write(b)
	case "report":
		n, err := sw.ResponseWriter.Write(b)
		if n > 0 {
			_, _ = sw.pw.Write(b[:n])
		}
		return n, err
	}
	return sw.pw.Write(b) // mask
}

// FlushError passes flushes on only when no other goroutine writes.
func (sw *sanitizeWriter) FlushError() error {
	if sw.mode == "" || sw.mode == "report" {
		return http.NewResponseController(sw.ResponseWriter).Flush()
	}
	return nil
}

// finish ends the stream and, in block mode, decides.
func (sw *sanitizeWriter) finish() error {
	switch sw.mode {
	case "mask", "report":
		sw.pw.Close()
		return <-sw.done
	case "block":
		return sw.decide()
	}
	return nil
}

func (sw *sanitizeWriter) decide() error {
	if sw.overflow {
		gate.ClearHeader(sw.Header())
		return gate.Refuse(sw.ResponseWriter, "mdx_sanitize", gate.FormatMDX, refuseUninspectable)
	}
	var src io.Reader = bytes.NewReader(sw.held.Bytes())
	if sw.gzipped {
		zr, err := gzip.NewReader(src)
		if err != nil {
			sw.s.logger.Warn("response not inspected: Content-Encoding gzip but not gzip data", zap.String("path", sw.r.URL.Path))
			src = bytes.NewReader(nil)
		} else {
			src = io.LimitReader(zr, 8*sw.s.MaxBody)
		}
	}
	findings, err := sanitize.Process(io.Discard, src, sanitize.Options{Fields: sw.s.Fields})
	sw.report(findings, err)
	if len(findings) > 0 {
		gate.ClearHeader(sw.Header())
		return gate.Refuse(sw.ResponseWriter, "mdx_sanitize", gate.FormatMDX, refuseSanitized)
	}
	sw.ResponseWriter.WriteHeader(sw.status)
	_, werr := sw.ResponseWriter.Write(sw.held.Bytes())
	return werr
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Sanitize)(nil)
	_ caddyhttp.MiddlewareHandler = (*Sanitize)(nil)
)
