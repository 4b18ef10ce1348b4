package secret

import (
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// The headers that carry a credential through mxgate's directives.
var (
	MDXHeaders  = []string{"Mdx-Hmac", "Mdx-Session-Key"}
	AuthHeaders = []string{"Authorization"}
)

// headerLoggers are the loggers whose lines hold a request's headers:
// every access log, the error log (a 502's line), and reverse_proxy's
// debug lines (the request sent upstream).
var headerLoggers = []string{"http.log.access", "http.log.error", "http.handlers.reverse_proxy"}

// caddyRedacts are the headers Caddy's own log marshalers replace with
// REDACTED, unless a server's log_credentials option is on.
var caddyRedacts = []string{"Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie"}

// warned de-duplicates warnings within one loaded configuration.
var warned sync.Map // warnKey -> struct{}

type warnKey struct {
	config    <-chan struct{}
	directive string
}

// WarnUnredactedLogs warns, loudly and once per configuration and
// directive, when a log that receives request headers (an access log, the
// error log or reverse_proxy's debug log) would record any of headers,
// the credential-carrying headers of directive: that is, when a log's
// encoder neither redacts nor deletes them. The check is behavioural: it
// hands each such log's encoder a request shaped as Caddy logs one
// (request>headers>Name) and sees which header values the encoder reads.
// mxgate_redact passes it; so does a `format filter` that deletes or
// replaces request>headers>Name. Authorization (like Cookie) counts only
// where a server turns log_credentials on: otherwise Caddy itself writes
// REDACTED in its place.
func WarnUnredactedLogs(ctx caddy.Context, directive string, headers ...string) {
	key := warnKey{ctx.Done(), directive}
	if _, done := warned.LoadOrStore(key, struct{}{}); done {
		return
	}
	ctx.OnCancel(func() { warned.Delete(key) })

	logCredentials := serversLogCredentials(ctx)
	var probed []string
	for _, h := range headers {
		h = http.CanonicalHeaderKey(h)
		if !logCredentials && slices.Contains(caddyRedacts, h) {
			continue
		}
		probed = append(probed, h)
	}
	if len(probed) == 0 {
		return
	}
	var leaked, loggers []string
	for _, name := range headerLoggers {
		l := ctx.Logger(loggerName(name))
		if got := LeakedHeaders(l.Core(), probed); len(got) > 0 {
			loggers = append(loggers, name)
			for _, h := range got {
				if !slices.Contains(leaked, h) {
					leaked = append(leaked, h)
				}
			}
		}
	}
	if len(leaked) == 0 {
		return
	}
	ctx.Logger().Warn("SECRETS WILL BE LOGGED: "+directive+" handles credentials in "+strings.Join(leaked, ", ")+
		", and a log that records request headers does not redact them; in every log block (the global one included) name no format, which mxgate's commands load as mxgate_redact, or `format mxgate_redact`",
		zap.String("directive", directive), zap.Strings("headers", leaked), zap.Strings("loggers", loggers))
}

// serversLogCredentials reports whether a server of the http app being
// provisioned has log_credentials on.
func serversLogCredentials(ctx caddy.Context) bool {
	for _, m := range ctx.Modules() {
		if app, ok := m.(*caddyhttp.App); ok {
			for _, srv := range app.Servers {
				if srv != nil && srv.Logs != nil && srv.Logs.ShouldLogCredentials {
					return true
				}
			}
		}
	}
	return false
}

// loggerName stands for a logger's name where caddy.Context.Logger wants
// a module: it selects the logs that accept that name.
type loggerName string

func (n loggerName) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: caddy.ModuleID(n), New: func() caddy.Module { return n }}
}

// LeakedHeaders returns those of headers whose values core's encoders
// would write: it adds to core (With, whose result is dropped: nothing
// is written) a field shaped as Caddy logs a request,
// request>headers>Name, and returns the names whose value was read.
func LeakedHeaders(core zapcore.Core, headers []string) []string {
	p := &probe{headers: headers, read: make([]bool, len(headers))}
	_ = core.With([]zapcore.Field{zap.Object("request", probeRequest{p})})
	var out []string
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, h := range headers {
		if p.read[i] {
			out = append(out, h)
		}
	}
	return out
}

type probe struct {
	headers []string
	mu      sync.Mutex
	read    []bool
}

type probeRequest struct{ p *probe }

func (r probeRequest) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddString("method", "GET")
	return enc.AddObject("headers", probeHeaders(r))
}

type probeHeaders struct{ p *probe }

func (h probeHeaders) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	for i, name := range h.p.headers {
		if err := enc.AddArray(name, probeValue{h.p, i}); err != nil {
			return err
		}
	}
	return nil
}

type probeValue struct {
	p *probe
	i int
}

func (v probeValue) MarshalLogArray(enc zapcore.ArrayEncoder) error {
	v.p.mu.Lock()
	v.p.read[v.i] = true
	v.p.mu.Unlock()
	enc.AppendString("probe")
	return nil
}
