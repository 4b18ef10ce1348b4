package mdx

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mxgate/mxgate/caddymodule/internal/bodies"
	"github.com/mxgate/mxgate/caddymodule/internal/metrics"
	"github.com/mxgate/mxgate/caddymodule/internal/provision"
	"github.com/mxgate/mxgate/caddymodule/internal/refusal"
	"github.com/mxgate/mxgate/sanitize"
)

func init() {
	caddy.RegisterModule(Sanitize{})
}

// Sanitize keeps complete card and account numbers out of the FI's MDX
// replies on their way to MX, as MDX requires: it runs every reply, of
// any status, through a sanitize.Guard, whose rules (what a number is,
// which fields hold account numbers, what is refused) are those of the
// sanitize package.
//
// What is read: the body of every reply that has one (1xx, 204, 304 and
// replies to HEAD have none), as MDX XML when its Content-Type is an XML
// type, or as text when AllowTypes says so; every header field of the
// reply, name and values, and of each 1xx reply before it; every trailer.
// A body of any other type, or with a missing or unparseable
// Content-Type, is refused. A 206 (a byte range cannot be vouched for
// alone) and a 101 are refused too, and Range and If-Range, which MDX
// does not use and MX does not sign, are removed from every request
// before the next handler sees it.
//
// "mask" replaces all but the last four digits of every number found in
// a body, streaming, in bounded memory, and drops a header or trailer
// field that holds one; "block" holds the reply (up to MaxBody) and
// answers 502 with an MDX error instead of one that holds a number
// anywhere, header and trailers included; "report" only logs and counts.
// The guard fails closed: a reply it cannot fully inspect (another
// encoding, a DTD, an upper-case tag, a number in a name, a field over
// MaxField, a content coding other than one gzip, a media type it does
// not read, malformed XML, ...) is refused with a 502 in mask and block
// modes, and only logged in report mode. In mask mode a reply found bad
// after part of it has left is aborted: the client sees a broken
// transfer, never a complete document, and masks already made stay.
// Trailers are sent as trailers in every mode; one that holds a number
// refuses the reply in block mode, and is dropped in mask mode (and in
// block mode from a reply that was not held: no body, or scan none).
// Logs name the reason, the account's position, the field and the rule,
// never the number.
type Sanitize struct {
	// Action is mask, block or report. Default: mask.
	Action string `json:"action,omitempty"`

	// Fields are more element and attribute names whose numbers of 9 or
	// more digits are account numbers, anywhere in the reply. They add to
	// those that always count: id and name inside <account>,
	// account_number and account_id anywhere. Default: none.
	Fields []string `json:"fields,omitempty"`

	// MaxField bounds, in bytes, each text run, tag, comment and
	// processing instruction of a reply, and each header field's value;
	// a reply with a larger one is refused. Each reply in flight holds
	// about twice this. Default: 64 KiB; at most 16 MiB.
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

	// AllowTypes are media types that are not XML whose replies are let
	// through, each group read as its Scan says. Without it a reply with
	// a body of any type but XML is refused (502) in mask and block
	// modes. Default: none.
	AllowTypes []AllowedTypes `json:"allow_types,omitempty"`

	guard    *sanitize.Guard
	logger   *zap.Logger
	types    map[string]uint8 // media type → how its body is read
	subtypes map[string]uint8 // "text" for text/* → how
}

// AllowedTypes are media types mdx_sanitize lets through although they are
// not XML, and how it reads their bodies.
type AllowedTypes struct {
	// MediaTypes are media types, type/subtype, or type/* for every
	// subtype of a type, matched without regard to case and parameters.
	MediaTypes []string `json:"media_types"`

	// Scan is how the body is read: "text" reads every byte as text,
	// with the rules of XML text (card numbers anywhere; character
	// references and percent-encoded ASCII decoded), masked in mask mode
	// and refused in block mode as an XML body would be; "none" passes
	// the body unread (its header and trailers are still read), and is
	// logged as a warning at start. Required.
	Scan string `json:"scan"`
}

// How a reply's body is read.
const (
	readXML = iota
	readText
	readNone
)

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
func (s *Sanitize) Provision(ctx caddy.Context) (err error) {
	defer provision.NameDirective(&err, "mdx_sanitize")
	s.logger = ctx.Logger()
	if err := s.setup(); err != nil {
		return err
	}
	return metrics.Register(ctx.GetMetricsRegistry())
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
	if err := s.setupTypes(); err != nil {
		return err
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
	for _, a := range s.AllowTypes {
		if a.Scan == "none" {
			s.logger.Warn("allow_types scan none: responses of these media types pass with their bodies unread; only their header and trailers are inspected",
				zap.Strings("media_types", a.MediaTypes))
		}
	}
	return nil
}

// setupTypes checks AllowTypes and builds the maps it is looked up in.
func (s *Sanitize) setupTypes() error {
	s.types, s.subtypes = map[string]uint8{}, map[string]uint8{}
	for _, a := range s.AllowTypes {
		var how uint8
		switch a.Scan {
		case "text":
			how = readText
		case "none":
			how = readNone
		default:
			return fmt.Errorf("allow_types: scan must be text or none, not %q", a.Scan)
		}
		if len(a.MediaTypes) == 0 {
			return errors.New("allow_types: no media type named")
		}
		for _, t := range a.MediaTypes {
			mt, _, err := mime.ParseMediaType(t)
			typ, sub, ok := strings.Cut(mt, "/")
			switch {
			case err != nil || !ok || typ == "" || sub == "" || strings.ContainsRune(sub, '/') || mt != strings.ToLower(strings.TrimSpace(t)):
				return fmt.Errorf("allow_types: %q is not a media type (type/subtype or type/*, without parameters)", t)
			case typ == "*":
				return fmt.Errorf("allow_types: %q: name the types to let through", t)
			case mt == "application/xml" || mt == "text/xml" || strings.HasSuffix(mt, "+xml"):
				return fmt.Errorf("allow_types: %q is XML, which is always read as XML", t)
			case sub == "*":
				s.subtypes[typ] = how
			default:
				s.types[mt] = how
			}
		}
	}
	return nil
}

// reading says from a reply's header how its body is read, and with
// which coding, or the condition under which it is refused.
func (s *Sanitize) reading(h http.Header) (uint8, sanitize.Coding, error) {
	coding, err := sanitize.CheckContentEncoding(h.Values("Content-Encoding"))
	if err != nil {
		return readNone, coding, err
	}
	if len(h.Values("Content-Type")) > 1 {
		return readText, coding, sanitize.ErrContentType
	}
	mt, xml, err := sanitize.ParseContentType(h.Get("Content-Type"))
	switch {
	case err != nil:
		return readText, coding, err
	case xml:
		return readXML, coding, nil
	}
	if how, ok := s.types[mt]; ok {
		return how, coding, nil
	}
	typ, _, _ := strings.Cut(mt, "/")
	if how, ok := s.subtypes[typ]; ok {
		return how, coding, nil
	}
	return readText, coding, sanitize.ErrMediaType
}

var (
	refuseSanitized     = refusal.Refusal{Status: http.StatusBadGateway, Reason: "account_number_in_response", Message: "Bad gateway: the response carried a complete account or card number"}
	refuseUninspectable = refusal.Refusal{Status: http.StatusBadGateway, Reason: "response_too_large_to_inspect", Message: "Bad gateway: the response is too large to inspect"}
)

// guardRefusal is the answer to a reply the guard refused with err.
func guardRefusal(err error) refusal.Refusal {
	return refusal.Refusal{Status: http.StatusBadGateway, Reason: reasonOf(err),
		Message: "Bad gateway: the response could not be inspected (" + reasonOf(err) + ")"}
}

// replyError is a condition of the reply as HTTP, outside the guard's
// reading of it: a reason for logs and metrics, and a text.
type replyError struct{ reason, text string }

func (e *replyError) Error() string { return e.text }

var (
	errPartial   = &replyError{"partial_content", "mdx_sanitize: a 206 reply carries a part of a representation, which cannot be inspected as a whole"}
	errUpgrade   = &replyError{"switching_protocols", "mdx_sanitize: a 101 reply switches to a protocol the guard does not read"}
	errInHeader  = &replyError{"number_in_header", "mdx_sanitize: a header field of the reply holds a complete account or card number"}
	errInTrailer = &replyError{"number_in_trailer", "mdx_sanitize: a trailer of the reply holds a complete account or card number"}
)

// reasonOf names the condition of err for logs, metrics and the refusal.
func reasonOf(err error) string {
	if r := sanitize.Reason(err); r != "" {
		return r
	}
	var e *replyError
	if errors.As(err, &e) {
		return e.reason
	}
	return ""
}

// Errors the writer gives the next handler to stop a reply it will not
// pass on, so that no more of it is read.
var (
	errRefused  = errors.New("mdx_sanitize: the response is refused")
	errTooLarge = errors.New("mdx_sanitize: the response is too large to inspect")
	errAborted  = errors.New("mdx_sanitize: the handler ended the response abnormally")
)

// ServeHTTP inspects the response of the handlers after it. Range and
// If-Range are removed from the request first: MDX does not use them, MX
// does not sign them, and a part of a reply cannot be inspected alone.
func (s *Sanitize) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if r.Header["Range"] != nil || r.Header["If-Range"] != nil {
		delete(r.Header, "Range")
		delete(r.Header, "If-Range")
	}
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
	modePass   = iota // no body to read, or one read by nobody: passed through
	modeMask          // streamed through Guard.Mask or MaskText
	modeBlock         // held, then Guard.Inspect or InspectText
	modeReport        // passed through and teed into Guard.Inspect or InspectText
	modeRefuse        // refused from its header (if it has a body, with lazy)
)

// sanitizeWriter routes a reply through the guard.
type sanitizeWriter struct {
	http.ResponseWriter
	s      *Sanitize
	r      *http.Request
	wrote  bool
	mode   int
	status int
	read   uint8 // readXML or readText
	coding sanitize.Coding
	header http.Header // mask mode: what Header gives once the stream runs
	bad    error       // refuse mode: the header's condition; block mode: a 1xx's
	lazy   bool        // refuse mode: only if the reply has a body
	body   bool        // refuse mode: the handler wrote a byte of body

	announced []string // the reply's Trailer header: the trailers it announced

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

// bodyless reports whether a final reply of status has no body.
func (sw *sanitizeWriter) bodyless(status int, h http.Header) bool {
	return status == http.StatusNoContent || status == http.StatusNotModified ||
		sw.r.Method == http.MethodHead || h.Get("Content-Length") == "0"
}

func (sw *sanitizeWriter) WriteHeader(status int) {
	if sw.wrote {
		return
	}
	h := sw.ResponseWriter.Header()
	if status >= 100 && status <= 199 && status != http.StatusSwitchingProtocols {
		// informational: its header is read like the final one's, and the
		// reply follows
		if err := sw.fields(h, "informational", false); err != nil {
			if sw.bad == nil {
				sw.bad = err // block mode: the reply is refused; this is not sent
			}
			return
		}
		sw.ResponseWriter.WriteHeader(status)
		return
	}
	sw.wrote, sw.status = true, status
	sw.announced = h["Trailer"]
	report := sw.s.Action == "report"
	if sw.bad == nil {
		sw.bad = sw.fields(h, "header", false)
	}
	if sw.bad == nil && !report {
		switch status {
		case http.StatusPartialContent:
			sw.bad = errPartial
		case http.StatusSwitchingProtocols:
			sw.bad = errUpgrade
		}
	}
	if sw.bad != nil {
		sw.mode = modeRefuse
		return
	}
	switch {
	case report && status == http.StatusPartialContent:
		sw.letThrough(errPartial)
	case report && status == http.StatusSwitchingProtocols:
		sw.letThrough(errUpgrade)
	}
	if sw.bodyless(status, h) {
		sw.ResponseWriter.WriteHeader(status)
		return
	}
	read, coding, err := sw.s.reading(h)
	switch {
	case err != nil && report:
		sw.letThrough(err)
		if errors.Is(err, sanitize.ErrContentEncoding) {
			sw.ResponseWriter.WriteHeader(status) // unreadable: passed unread
			return
		}
	case err != nil:
		sw.mode, sw.bad, sw.lazy = modeRefuse, err, true
		return
	case read == readNone:
		sw.ResponseWriter.WriteHeader(status)
		return
	}
	sw.read, sw.coding = read, coding
	switch sw.s.Action {
	case "block":
		sw.mode = modeBlock // decided in finish
	case "report":
		sw.mode = modeReport
		sw.ResponseWriter.WriteHeader(status)
		sw.start(func(pr *io.PipeReader) (sanitize.Report, error) {
			if read == readText {
				return sw.s.guard.InspectText(pr, coding)
			}
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
			if read == readText {
				return sw.s.guard.MaskText(sw.out, pr, coding)
			}
			return sw.s.guard.Mask(sw.out, pr, coding)
		})
	}
}

// fields reads every field of h (a header, or trailers with trailer),
// name and values. A field that holds a number (or that the guard cannot
// read whole) refuses the reply in block mode, where it has not left:
// fields returns the condition. In mask mode, and in block mode once the
// reply has left (trailers of a reply that was not held), the field is
// dropped from h; in report mode it stays. Each is logged and counted.
func (sw *sanitizeWriter) fields(h http.Header, part string, left bool) error {
	for k, vv := range h {
		rep, err := sw.s.guard.InspectHeader(k, vv)
		if err == nil && rep.Found() == 0 {
			continue
		}
		sw.recordField(part, rep, err)
		switch {
		case sw.s.Action == "report":
			continue
		case sw.s.Action == "block" && !left:
			if err != nil {
				return err
			}
			if part == "trailer" {
				return errInTrailer
			}
			return errInHeader
		}
		delete(h, k)
	}
	return nil
}

// recordField logs and counts what the guard found in a header field.
func (sw *sanitizeWriter) recordField(part string, rep sanitize.Report, err error) {
	sw.count(rep)
	what := "response header field dropped: it holds a complete account or card number"
	if err != nil {
		what = "response header field dropped: it cannot be inspected"
	}
	switch sw.s.Action {
	case "report":
		what = "complete account or card number in an MDX response header field"
	case "block":
		what = "MDX response refused for a header field"
	}
	field := "-"
	if len(rep.Findings) > 0 {
		field = rep.Findings[0].Field
	}
	if c := sw.s.logger.Check(zapcore.WarnLevel, what); c != nil {
		fields := []zap.Field{zap.String("part", part), zap.String("field", field), zap.Int("numbers", rep.Found()),
			zap.String("action", sw.s.Action), zap.String("path", sw.r.URL.Path)}
		if err != nil {
			fields = append(fields, zap.String("reason", reasonOf(err)))
		}
		c.Write(fields...)
	}
}

// trailers takes the reply's trailers out of h, the header map the next
// handler wrote them into: the fields the reply announced (its Trailer
// header) and those named with http.TrailerPrefix. It reads them as
// fields does, and returns those to send, each to be set with
// http.TrailerPrefix once the body has been written (sendTrailers), so
// that a trailer is never sent as a header. left says whether the reply
// has left (so that block mode cannot refuse it any more).
func (sw *sanitizeWriter) trailers(h http.Header, left bool) (http.Header, error) {
	var t http.Header
	for k, vv := range h {
		name, ok := strings.CutPrefix(k, http.TrailerPrefix)
		if !ok && !sw.isAnnounced(k) {
			continue
		}
		if t == nil {
			t = http.Header{}
		}
		delete(h, k)
		t[http.CanonicalHeaderKey(name)] = vv
	}
	if t == nil {
		return nil, nil
	}
	if err := sw.fields(t, "trailer", left); err != nil {
		return nil, err
	}
	return t, nil
}

func (sw *sanitizeWriter) isAnnounced(k string) bool {
	for _, v := range sw.announced {
		for name := range strings.SplitSeq(v, ",") {
			if http.CanonicalHeaderKey(strings.TrimSpace(name)) == k {
				return true
			}
		}
	}
	return false
}

// sendTrailers sets the trailers t to be sent after the body.
func (sw *sanitizeWriter) sendTrailers(t http.Header) {
	h := sw.ResponseWriter.Header()
	for k, vv := range t {
		h[http.TrailerPrefix+k] = vv
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
		if len(b) == 0 && sw.lazy {
			return 0, nil
		}
		sw.body = true
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
		if sw.lazy && !sw.body && p == nil && err == nil {
			// refused for what its body would be, and it had none
			return sw.sendHeld(nil)
		}
		repanic(p) // the handler's write failed because of us: only that is ours
		return sw.refuse(guardRefusal(sw.bad), sw.bad)
	}
	switch {
	case sw.wrote && p == nil:
		t, _ := sw.trailers(sw.ResponseWriter.Header(), true)
		sw.sendTrailers(t)
	case !sw.wrote && p == nil && err == nil:
		// the handler wrote nothing: net/http sends the header as it is
		if bad := sw.fields(sw.ResponseWriter.Header(), "header", false); bad != nil {
			return sw.refuse(guardRefusal(bad), bad)
		}
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
		t, _ := sw.trailers(sw.header, true)
		sw.sendTrailers(t)
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
	metrics.CountRejection("mdx_sanitize", reasonOf(res.err))
	if c := sw.s.logger.Check(zapcore.WarnLevel, "MDX response aborted: the guard refused it after part of it was sent"); c != nil {
		c.Write(zap.String("reason", reasonOf(res.err)), zap.Error(res.err), zap.String("action", sw.s.Action), zap.String("path", sw.r.URL.Path))
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
	var rep sanitize.Report
	var ierr error
	if sw.read == readText {
		rep, ierr = sw.s.guard.InspectText(bytes.NewReader(sw.held.Bytes()), sw.coding)
	} else {
		rep, ierr = sw.s.guard.Inspect(bytes.NewReader(sw.held.Bytes()), sw.coding)
	}
	sw.record(rep)
	switch {
	case ierr != nil:
		return sw.refuse(guardRefusal(ierr), ierr)
	case rep.Found() > 0:
		return sw.refuse(refuseSanitized, nil)
	}
	return sw.sendHeld(sw.held.Bytes())
}

// sendHeld sends a reply that was held whole, body and all, with its
// trailers as trailers; one that holds a number refuses it in block mode.
func (sw *sanitizeWriter) sendHeld(body []byte) error {
	t, err := sw.trailers(sw.ResponseWriter.Header(), false)
	if err != nil {
		return sw.refuse(guardRefusal(err), err)
	}
	sw.ResponseWriter.WriteHeader(sw.status)
	var werr error
	if len(body) > 0 {
		_, werr = sw.ResponseWriter.Write(body)
	}
	sw.sendTrailers(t)
	return werr
}

// refuse answers 502 in place of the upstream's reply, none of which has
// been sent.
func (sw *sanitizeWriter) refuse(rf refusal.Refusal, err error) error {
	if c := sw.s.logger.Check(zapcore.WarnLevel, "MDX response refused"); c != nil {
		fields := []zap.Field{zap.String("reason", rf.Reason), zap.String("action", sw.s.Action), zap.String("path", sw.r.URL.Path)}
		if err != nil {
			fields = append(fields, zap.Error(err))
		}
		c.Write(fields...)
	}
	bodies.ClearHeader(sw.ResponseWriter.Header())
	return refusal.Refuse(sw.ResponseWriter, sw.r, "mdx_sanitize", refusal.FormatMDX, rf)
}

// record logs and counts what the guard found in a body.
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
	sw.count(rep)
	if rep.Malformed != nil {
		sw.letThrough(rep.Malformed)
	}
}

// count counts the numbers found, by rule.
func (sw *sanitizeWriter) count(rep sanitize.Report) {
	if rep.Cards > 0 {
		metrics.SanitizeFindings.WithLabelValues(sanitize.RuleCard, sw.s.Action).Add(float64(rep.Cards))
	}
	if rep.Accounts > 0 {
		metrics.SanitizeFindings.WithLabelValues(sanitize.RuleAccount, sw.s.Action).Add(float64(rep.Accounts))
	}
}

// letThrough logs and counts a condition under which the reply passed:
// in report mode, or with allow_malformed.
func (sw *sanitizeWriter) letThrough(err error) {
	reason := reasonOf(err)
	metrics.SanitizeLetThrough.WithLabelValues(reason, sw.s.Action).Inc()
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
