package mdx

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mxgate/mxgate/caddymodule/internal/gate"
	"github.com/mxgate/mxgate/sanitize"
)

func init() {
	caddy.RegisterModule(Sanitize{})
}

// Sanitize keeps complete card and account numbers out of the FI's MDX
// replies on their way to MX, as MDX requires: it runs each successful XML
// reply through a sanitize.Guard, whose rules (what a number is, which
// fields hold account numbers, what is refused) are those of the sanitize
// package.
//
// "mask" replaces all but the last four digits of every number found,
// streaming, in bounded memory; "block" holds the reply (up to MaxBody)
// and answers 502 with an MDX error instead of one that holds a number;
// "report" only logs and counts. The guard fails closed: a reply it cannot
// fully inspect (another encoding, a DTD, an upper-case tag, a field over
// MaxField, a content coding other than one gzip, a missing or unparseable
// Content-Type, malformed XML, ...) is refused with a 502 in mask and
// block modes, and only logged in report mode. In mask mode a reply found
// bad after part of it has left is aborted: the client sees a broken
// transfer, never a complete document, and masks already made stay.
// Replies that are not successful, to HEAD, 204, or of a non-XML type
// pass untouched. Logs name the reason, the account's position, the field
// and the rule, never the number.
type Sanitize struct {
	// Action is mask, block or report. Default: mask.
	Action string `json:"action,omitempty"`

	// Fields are more element and attribute names whose numbers of 9 or
	// more digits are account numbers, anywhere in the reply. They add to
	// those that always count: id and name inside <account>,
	// account_number and account_id anywhere. Default: none.
	Fields []string `json:"fields,omitempty"`

	// MaxField bounds, in bytes, each text run, tag, comment and
	// processing instruction of a reply; a reply with a larger one is
	// refused. Each reply in flight holds about twice this. Default:
	// 64 KiB; at most 16 MiB.
	MaxField int `json:"max_field,omitempty"`

	// MaxBody bounds the reply held in block mode; a larger one is
	// refused (502), since it cannot be vouched for. Default: 10 MiB.
	MaxBody int64 `json:"max_body,omitempty"`

	// MaxDecoded bounds the decoded size of a gzip-encoded reply, in
	// every mode; a reply that decodes to more is refused (a gzip bomb
	// costs no more than this much decoding). Default: 8 × MaxBody.
	MaxDecoded int64 `json:"max_decoded,omitempty"`

	// AllowMalformed lets through replies that are not well-formed XML,
	// refer to undeclared entities or have names that are not lower-case
	// ASCII, masked as far as the guard can read them, with a log line
	// for each. Every other condition is still refused. Default: false.
	AllowMalformed bool `json:"allow_malformed,omitempty"`

	guard  *sanitize.Guard
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

// Provision sets defaults and builds the guard.
func (s *Sanitize) Provision(ctx caddy.Context) error {
	s.logger = ctx.Logger()
	if err := s.setup(); err != nil {
		return err
	}
	return gate.RegisterMetrics(ctx.GetMetricsRegistry())
}

// setup is Provision's work but for the context: defaults, the guard, and
// the warnings at start.
func (s *Sanitize) setup() error {
	switch s.Action {
	case "":
		s.Action = "mask"
	case "mask", "block", "report":
	default:
		return fmt.Errorf("action must be mask, block or report, not %q", s.Action)
	}
	if s.MaxBody == 0 {
		s.MaxBody = DefaultSanitizeMaxBody
	}
	if s.MaxBody < 0 {
		return errors.New("max_body must be positive")
	}
	if s.MaxDecoded == 0 {
		s.MaxDecoded = 8 * s.MaxBody
	}
	if s.MaxDecoded < 0 {
		return errors.New("max_decoded must be positive")
	}
	g, err := sanitize.New(sanitize.Options{Fields: s.Fields, MaxField: s.MaxField, MaxDecoded: s.MaxDecoded, AllowMalformed: s.AllowMalformed})
	if err != nil {
		return err
	}
	s.guard = g
	for _, f := range s.Fields {
		if strings.EqualFold(f, "id") || strings.EqualFold(f, "name") {
			s.logger.Warn("fields: id and name always count inside <account>; listed in fields they count anywhere, transaction ids too",
				zap.String("field", f))
		}
	}
	if s.AllowMalformed {
		s.logger.Warn("allow_malformed: MDX responses that are not well-formed XML, refer to undeclared entities or have upper-case names will pass, masked as far as they can be read")
	}
	return nil
}

var (
	refuseSanitized     = gate.Refusal{Status: http.StatusBadGateway, Reason: "account_number_in_response", Message: "Bad gateway: the response carried a complete account or card number"}
	refuseUninspectable = gate.Refusal{Status: http.StatusBadGateway, Reason: "response_too_large_to_inspect", Message: "Bad gateway: the response is too large to inspect"}
)

// guardRefusal is the answer to a reply the guard refused with err.
func guardRefusal(err error) gate.Refusal {
	return gate.Refusal{Status: http.StatusBadGateway, Reason: sanitize.Reason(err),
		Message: "Bad gateway: the response could not be inspected (" + sanitize.Reason(err) + ")"}
}

// Errors the writer gives the next handler to stop a reply it will not
// pass on, so that no more of it is read.
var (
	errRefused  = errors.New("mdx_sanitize: the response is refused")
	errTooLarge = errors.New("mdx_sanitize: the response is too large to inspect")
	errAborted  = errors.New("mdx_sanitize: the handler ended the response abnormally")
)

// ServeHTTP inspects the response of the handlers after it.
func (s *Sanitize) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	sw := &sanitizeWriter{ResponseWriter: w, s: s, r: r}
	p, err := serveNext(next, sw, r)
	return sw.finish(p, err)
}

// serveNext runs next, recovering a panic (reverse_proxy aborts a reply
// whose body it cannot copy with http.ErrAbortHandler), so that the reply
// is settled before the panic goes on.
func serveNext(next caddyhttp.Handler, w http.ResponseWriter, r *http.Request) (p any, err error) {
	defer func() { p = recover() }()
	return nil, next.ServeHTTP(w, r)
}

// Modes of a sanitizeWriter, set by WriteHeader.
const (
	modePass   = iota // not inspected: passed through
	modeMask          // streamed through Guard.Mask
	modeBlock         // held, then Guard.Inspect
	modeReport        // passed through and teed into Guard.Inspect
	modeRefuse        // refused from its header
)

// sanitizeWriter routes a reply through the guard.
type sanitizeWriter struct {
	http.ResponseWriter
	s      *Sanitize
	r      *http.Request
	wrote  bool
	mode   int
	status int
	coding sanitize.Coding
	header http.Header // mask mode: what Header gives once the stream runs
	bad    error       // refuse mode: the header's condition

	pw      *io.PipeWriter // mask and report modes: to the guard
	done    chan result
	out     *startWriter // mask mode
	teeDone bool         // report mode: the guard stopped reading

	held     bytes.Buffer // block mode
	overflow bool
}

// result is what the guard's goroutine hands back.
type result struct {
	rep sanitize.Report
	err error
}

// startWriter writes the status line only with the first byte of the
// body, so that a reply the guard refuses before writing anything can
// still be answered with a 502.
type startWriter struct {
	w       http.ResponseWriter
	status  int
	started bool
}

func (o *startWriter) Write(b []byte) (int, error) {
	if !o.started {
		o.started = true
		o.w.WriteHeader(o.status)
	}
	return o.w.Write(b)
}

// Header returns the reply's header; in mask mode, once the stream runs,
// a copy, so that the guard's goroutine alone touches the real one.
func (sw *sanitizeWriter) Header() http.Header {
	if sw.header != nil {
		return sw.header
	}
	return sw.ResponseWriter.Header()
}

// inspected reports whether a reply of status is one to inspect:
// successful, with a body.
func (sw *sanitizeWriter) inspected(status int) bool {
	return status >= 200 && status <= 299 && status != http.StatusNoContent &&
		sw.r.Method != http.MethodHead
}

// checkHeader decides from the reply's header whether to inspect it, and
// with which coding, or refuses it.
func checkHeader(h http.Header) (bool, sanitize.Coding, error) {
	coding, err := sanitize.CheckContentEncoding(h.Values("Content-Encoding"))
	if err != nil {
		return false, coding, err
	}
	if len(h.Values("Content-Type")) > 1 {
		return false, coding, sanitize.ErrContentType
	}
	inspect, err := sanitize.CheckContentType(h.Get("Content-Type"), h.Get("Content-Length") != "0")
	return inspect, coding, err
}

func (sw *sanitizeWriter) WriteHeader(status int) {
	if sw.wrote {
		return
	}
	if status >= 100 && status <= 199 && status != http.StatusSwitchingProtocols {
		sw.ResponseWriter.WriteHeader(status) // informational: the reply follows
		return
	}
	sw.wrote, sw.status = true, status
	if !sw.inspected(status) {
		sw.ResponseWriter.WriteHeader(status)
		return
	}
	h := sw.ResponseWriter.Header()
	inspect, coding, err := checkHeader(h)
	switch {
	case err != nil && sw.s.Action == "report":
		sw.letThrough(err)
		sw.ResponseWriter.WriteHeader(status)
		return
	case err != nil:
		sw.mode, sw.bad = modeRefuse, err
		return
	case !inspect:
		sw.ResponseWriter.WriteHeader(status)
		return
	}
	sw.coding = coding
	switch sw.s.Action {
	case "block":
		sw.mode = modeBlock // decided in finish
	case "report":
		sw.mode = modeReport
		sw.ResponseWriter.WriteHeader(status)
		sw.start(func(pr *io.PipeReader) (sanitize.Report, error) {
			return sw.s.guard.Inspect(pr, coding)
		})
	default:
		sw.mode = modeMask
		if coding == sanitize.Gzip {
			h.Del("Content-Length") // encoded again; a masked identity reply keeps its length
		}
		sw.header = h.Clone()
		sw.out = &startWriter{w: sw.ResponseWriter, status: status}
		sw.start(func(pr *io.PipeReader) (sanitize.Report, error) {
			return sw.s.guard.Mask(sw.out, pr, coding)
		})
	}
}

// start runs the guard on the body in a goroutine of its own. When the
// guard stops early, the pipe is closed with its error, so that the next
// handler's writes fail instead of blocking; the error is handed back to
// ServeHTTP, which alone decides how the reply ends.
func (sw *sanitizeWriter) start(run func(*io.PipeReader) (sanitize.Report, error)) {
	pr, pw := io.Pipe()
	sw.pw, sw.done = pw, make(chan result, 1)
	go func() {
		rep, err := run(pr)
		if err != nil {
			pr.CloseWithError(err)
		}
		sw.done <- result{rep, err}
	}()
}

func (sw *sanitizeWriter) Write(b []byte) (int, error) {
	if !sw.wrote {
		sw.WriteHeader(http.StatusOK)
	}
	switch sw.mode {
	case modeMask:
		return sw.pw.Write(b)
	case modeReport:
		n, err := sw.ResponseWriter.Write(b)
		if n > 0 && !sw.teeDone {
			if _, perr := sw.pw.Write(b[:n]); perr != nil {
				sw.teeDone = true // the guard has stopped; the reply goes on
			}
		}
		return n, err
	case modeBlock:
		if sw.overflow || int64(sw.held.Len()+len(b)) > sw.s.MaxBody {
			sw.overflow = true
			return 0, errTooLarge
		}
		return sw.held.Write(b)
	case modeRefuse:
		return 0, errRefused
	}
	return sw.ResponseWriter.Write(b)
}

// FlushError passes flushes on only when no other goroutine writes and
// nothing is held.
func (sw *sanitizeWriter) FlushError() error {
	if sw.mode == modePass || sw.mode == modeReport {
		return http.NewResponseController(sw.ResponseWriter).Flush()
	}
	return nil
}

// finish settles the reply once the next handler has returned (err) or
// panicked (p).
func (sw *sanitizeWriter) finish(p any, err error) error {
	switch sw.mode {
	case modeMask:
		return sw.finishMask(p, err)
	case modeReport:
		res := sw.wait(p, err)
		sw.record(res.rep)
		if res.err != nil && !errors.Is(res.err, sanitize.ErrRead) {
			sw.letThrough(res.err)
		}
	case modeBlock:
		return sw.finishBlock(p, err)
	case modeRefuse:
		repanic(p) // the handler's write failed because of us: only that is ours
		return sw.refuse(guardRefusal(sw.bad), sw.bad)
	}
	if p != nil {
		panic(p)
	}
	return err
}

// repanic goes on with a panic of the next handler, unless it is the
// abort that our own write error caused.
func repanic(p any) {
	if p != nil && p != http.ErrAbortHandler {
		panic(p)
	}
}

// wait ends the body and waits for the guard's goroutine. A handler that
// failed leaves the body cut short: the guard reads an error, not the end.
func (sw *sanitizeWriter) wait(p any, err error) result {
	if p != nil || err != nil {
		sw.pw.CloseWithError(errAborted)
	} else {
		sw.pw.Close()
	}
	return <-sw.done
}

func (sw *sanitizeWriter) finishMask(p any, err error) error {
	res := sw.wait(p, err)
	sw.record(res.rep)
	switch {
	case res.err == nil:
		if !sw.out.started { // an empty reply
			sw.ResponseWriter.WriteHeader(sw.status)
		}
		return err // nil: a failed handler makes the guard fail
	case errors.Is(res.err, sanitize.ErrRead) || errors.Is(res.err, sanitize.ErrWrite):
		// the next handler, or the client, failed: not a refusal
		if sw.out.started {
			panic(http.ErrAbortHandler)
		}
		if p != nil {
			panic(p)
		}
		if err == nil {
			err = caddyhttp.Error(http.StatusBadGateway, res.err)
		}
		return err
	}
	repanic(p)
	if !sw.out.started {
		return sw.refuse(guardRefusal(res.err), res.err)
	}
	// Part of the reply has left; the rest never will, and the client
	// must not take what it has for the whole.
	gate.CountRejection("mdx_sanitize", sanitize.Reason(res.err))
	if c := sw.s.logger.Check(zapcore.WarnLevel, "MDX response aborted: the guard refused it after part of it was sent"); c != nil {
		c.Write(zap.String("reason", sanitize.Reason(res.err)), zap.Error(res.err), zap.String("action", sw.s.Action), zap.String("path", sw.r.URL.Path))
	}
	panic(http.ErrAbortHandler)
}

func (sw *sanitizeWriter) finishBlock(p any, err error) error {
	if sw.overflow {
		repanic(p)
		return sw.refuse(refuseUninspectable, nil)
	}
	if p != nil {
		panic(p)
	}
	if err != nil {
		return err
	}
	rep, ierr := sw.s.guard.Inspect(bytes.NewReader(sw.held.Bytes()), sw.coding)
	sw.record(rep)
	switch {
	case ierr != nil:
		return sw.refuse(guardRefusal(ierr), ierr)
	case rep.Found() > 0:
		return sw.refuse(refuseSanitized, nil)
	}
	sw.ResponseWriter.WriteHeader(sw.status)
	_, werr := sw.ResponseWriter.Write(sw.held.Bytes())
	return werr
}

// refuse answers 502 in place of the upstream's reply, none of which has
// been sent.
func (sw *sanitizeWriter) refuse(rf gate.Refusal, err error) error {
	if c := sw.s.logger.Check(zapcore.WarnLevel, "MDX response refused"); c != nil {
		fields := []zap.Field{zap.String("reason", rf.Reason), zap.String("action", sw.s.Action), zap.String("path", sw.r.URL.Path)}
		if err != nil {
			fields = append(fields, zap.Error(err))
		}
		c.Write(fields...)
	}
	gate.ClearHeader(sw.ResponseWriter.Header())
	return gate.Refuse(sw.ResponseWriter, "mdx_sanitize", gate.FormatMDX, rf)
}

// record logs and counts what the guard found.
func (sw *sanitizeWriter) record(rep sanitize.Report) {
	action := sw.s.Action
	for _, f := range rep.Findings {
		if c := sw.s.logger.Check(zapcore.WarnLevel, "complete account or card number in an MDX response"); c != nil {
			c.Write(zap.Int("account", f.Account), zap.String("field", f.Field), zap.String("rule", f.Rule),
				zap.String("action", action), zap.String("path", sw.r.URL.Path))
		}
	}
	if more := rep.Found() - len(rep.Findings); more > 0 {
		if c := sw.s.logger.Check(zapcore.WarnLevel, "more account or card numbers in the MDX response, not listed"); c != nil {
			c.Write(zap.Int("more", more), zap.String("action", action), zap.String("path", sw.r.URL.Path))
		}
	}
	if rep.Cards > 0 {
		gate.Metrics.SanitizeFindings.WithLabelValues(sanitize.RuleCard, action).Add(float64(rep.Cards))
	}
	if rep.Accounts > 0 {
		gate.Metrics.SanitizeFindings.WithLabelValues(sanitize.RuleAccount, action).Add(float64(rep.Accounts))
	}
	if rep.Malformed != nil {
		sw.letThrough(rep.Malformed)
	}
}

// letThrough logs and counts a condition under which the reply passed:
// in report mode, or with allow_malformed.
func (sw *sanitizeWriter) letThrough(err error) {
	reason := sanitize.Reason(err)
	gate.Metrics.SanitizeLetThrough.WithLabelValues(reason, sw.s.Action).Inc()
	if c := sw.s.logger.Check(zapcore.WarnLevel, "MDX response let through although the guard refuses such responses"); c != nil {
		c.Write(zap.String("reason", reason), zap.Error(err), zap.String("action", sw.s.Action),
			zap.Bool("allow_malformed", sw.s.AllowMalformed), zap.String("path", sw.r.URL.Path))
	}
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Sanitize)(nil)
	_ caddyhttp.MiddlewareHandler = (*Sanitize)(nil)
)
