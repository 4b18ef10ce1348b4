package mdx

import (
	"encoding/hex"
	"errors"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/mxgate/mxgate/caddymodule/internal/client"
	"github.com/mxgate/mxgate/caddymodule/internal/metrics"
	"github.com/mxgate/mxgate/caddymodule/internal/provision"
	"github.com/mxgate/mxgate/caddymodule/internal/refusal"
	"github.com/mxgate/mxgate/caddymodule/internal/secret"
	"github.com/mxgate/mxgate/caddymodule/internal/store"
	"github.com/mxgate/mxgate/hmac"
)

func init() {
	caddy.RegisterModule(Sign{})
}

// Sign sets Date, Content-MD5 and MDX-HMAC on each request, as MX signs
// its requests to an FI: for an aggregator or a test harness calling an
// FI's MDX endpoint. It uses the same canonical-string builder Verify
// checks with, and buffers the body to forward it byte for byte, as
// verify does: in pooled blocks taken as its bytes arrive, never more than
// MaxBody for one request (a larger declared length is refused with 413
// before anything is read) nor than MaxPendingBodies for all at once (503
// with Retry-After beyond it). It signs the request as it stands when it
// runs.
type Sign struct {
	Signing

	// MaxPendingBodies bounds the bytes of request bodies held at once by
	// this handler, across all its requests, as verify's option of that
	// name does. It must be at least MaxBody. Default: 64 MiB.
	MaxPendingBodies int64 `json:"max_pending_bodies,omitempty"`

	// Callers (allow_callers) are who may have requests signed: by
	// default loopback and Unix-socket peers only; anyone else gets 403.
	client.Callers

	signer  *hmac.Signer
	s       *signing
	pending *budget
	now     func() time.Time
}

// CaddyModule returns the Caddy module information.
func (Sign) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.mdx_hmac_sign",
		New: func() caddy.Module { return new(Sign) },
	}
}

// Validate checks the options among themselves. Caddy calls it after
// Provision; Provision calls it first.
func (sg *Sign) Validate() (err error) {
	defer provision.NameDirective(&err, "mdx_hmac sign")
	if err := sg.Signing.validate(); err != nil {
		return err
	}
	if sg.MaxPendingBodies != 0 && sg.MaxPendingBodies < sg.maxBody() {
		return errors.New("max_pending_bodies must be at least max_body")
	}
	if len(sg.Keys) != 1 {
		return errors.New("exactly one key (a signer signs with one key)")
	}
	return nil
}

// Provision checks the options (Validate) and decodes the key.
func (sg *Sign) Provision(ctx caddy.Context) (err error) {
	if err := sg.Validate(); err != nil {
		return err // named by Validate
	}
	defer provision.NameDirective(&err, "mdx_hmac sign")
	secret.WarnUnredactedLogs(ctx, "mdx_hmac sign", secret.MDXHeaders...)
	if sg.now == nil {
		sg.now = time.Now
	}
	if sg.s, err = sg.Signing.provision(); err != nil {
		return err
	}
	if err := sg.Callers.Provision(ctx, "mdx_hmac", sg.s.format); err != nil {
		return err
	}
	if sg.MaxPendingBodies == 0 {
		sg.MaxPendingBodies = max(DefaultMaxPendingBodies, sg.MaxBody)
	}
	sg.pending = &budget{max: sg.MaxPendingBodies}
	if sg.signer, err = hmac.NewSigner(sg.s.alg, sg.s.keys[0]); err != nil {
		return err
	}
	return metrics.Register(ctx.GetMetricsRegistry())
}

// Credentials says that the requests this handler passes on are signed:
// an mx_rate_limit beside it is an egress budget. A signing key names no
// client, so that budget is its site's.
func (sg *Sign) Credentials() (kind, id string) { return "MDX signing key", "" }

// ServeHTTP signs the request and hands it on.
func (sg *Sign) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if !sg.Callers.Allowed(r) {
		return sg.Callers.Refuse(w, r)
	}
	resource, err := sg.s.rule.Resource(r.URL.EscapedPath(), r.URL.RawQuery)
	if err != nil {
		return refusal.Refuse(w, r, "mdx_hmac", sg.s.format, refusalOf(hmac.ErrOutsideBasePath))
	}
	// The body, read as verify reads it: nothing is allocated for a
	// declared length, only blocks for the bytes that arrive.
	var held *heldBody
	sum := emptySum
	if r.ContentLength != 0 { // as a server reads it: no body (chunked is -1)
		var err error
		held, sum, err = readBody(r, sg.MaxBody, sg.pending)
		if err != nil {
			rf := refusalOf(err)
			if errors.Is(err, errBudget) {
				rf = refusePending
				w.Header().Set("Retry-After", "1")
			}
			refusal.CloseUnread(w, r)
			return refusal.Refuse(w, r, "mdx_hmac", sg.s.format, rf)
		}
		defer held.done(sg.pending)
	}
	req := hmac.Request{
		Method:      r.Method,
		ContentMD5:  hex.EncodeToString(sum[:]),
		ContentType: r.Header.Get(headerContentType),
		Date:        hmac.FormatDate(sg.now()),
		Accept:      r.Header.Get(headerAccept),
		SessionKey:  r.Header.Get(headerSessionKey),
		Resource:    resource,
	}
	h := r.Header
	h.Set(headerDate, req.Date)
	h.Set(headerContentMD5, req.ContentMD5)
	h.Set(headerHMAC, sg.signer.Sign(&req))
	if held == nil {
		r.Body, r.ContentLength = http.NoBody, 0
	} else {
		r.Body, r.ContentLength = held.reader(), held.size
	}
	return next.ServeHTTP(w, r)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Sign)(nil)
	_ caddy.Validator             = (*Sign)(nil)
	_ caddyhttp.MiddlewareHandler = (*Sign)(nil)
	_ store.Credentialed          = (*Sign)(nil)
)
