package mdx

import (
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mxgate/mxgate/caddymodule/internal/bodies"
	"github.com/mxgate/mxgate/caddymodule/internal/client"
	"github.com/mxgate/mxgate/caddymodule/internal/metrics"
	"github.com/mxgate/mxgate/caddymodule/internal/provision"
	"github.com/mxgate/mxgate/caddymodule/internal/refusal"
	"github.com/mxgate/mxgate/caddymodule/internal/secret"
	"github.com/mxgate/mxgate/caddymodule/internal/store"
	"github.com/mxgate/mxgate/hmac"
	"github.com/mxgate/mxgate/internal/urlpath"
	"github.com/mxgate/mxgate/replay"
)

func init() {
	caddy.RegisterModule(Verify{})
}

// Verify checks the MDX On Demand v5 signature of each request (the
// MDX-HMAC, Content-MD5 and Date headers) and lets through only requests
// that carry a valid one over an unaltered body, on a canonical path that
// names an MDX resource. Everything that can be checked without the body
// is checked before a byte of it is read; the body is then read into
// pooled blocks, up to MaxBody, hashed as it arrives, and handed on byte
// for byte.
//
// Refusals, in the order they are checked:
//   - a signed header (Date, Content-MD5, Content-Type, Accept,
//     MDX-Session-Key, MDX-HMAC) sent twice, or also under a name with
//     "_" for "-" (which CGI-style servers read as the same header): 400;
//   - trailers announced (a Trailer header): 400;
//   - a path that is not canonical (dot segments, encoded separators,
//     "\", "//", ";" parameters, control bytes, a trailing slash, …):
//     400;
//   - a path whose final segment is not one of Resources, or that matches
//     none of Routes: 404;
//   - a declared body larger than MaxBody: 413;
//   - MDX-HMAC missing or malformed, Date missing, not an integer or
//     outside MaxSkew, Content-MD5 missing on a body (or malformed), or a
//     signature over these headers that matches none of the keys: 412;
//   - MaxPendingBodies already held by other requests: 503, Retry-After;
//   - a streamed body larger than MaxBody: 413; one that cannot be read
//     (the client went away or was too slow): 400;
//   - a body whose MD5 is not Content-MD5: 412;
//   - trailers sent after the body: 400;
//   - a signature already seen inside ReplayWindow: 412;
//   - an Accept header naming an MDX version other than v5, or MDX's
//     JSON encoding, which MDX On Demand does not serve: 406.
//
// The replay cache outlives configuration reloads (a key rotation is a
// reload): it is kept under the directive's namespace for as long as a
// loaded configuration uses it.
type Verify struct {
	Signing

	// MaxSkew bounds |now - Date|. Zero or negative is a configuration
	// error; to drop the bound, set SkewCheckOff instead. Default: 5m.
	MaxSkew *caddy.Duration `json:"max_skew,omitempty"`

	// SkewCheckOff drops the bound on |now - Date|. Date must still be
	// present and an integer. Default: false.
	SkewCheckOff bool `json:"skew_check_off,omitempty"`

	// ReplayWindow, when set, refuses a signature seen before within this
	// long. The same signature legitimately recurs when two requests agree
	// in every signed field within one second (with Resource "final", two
	// GETs of different accounts' transactions, say), so the window suits
	// callers that never do that. Default: off.
	ReplayWindow caddy.Duration `json:"replay_window,omitempty"`

	// ReplayCacheSize bounds the number of signatures remembered. When the
	// cache is full, new requests are refused with 503 until entries expire.
	// Default: 1000000.
	ReplayCacheSize int `json:"replay_cache_size,omitempty"`

	// ReplayLossGrace, with a Redis store, is how long a replica holds the
	// requests whose signature it does not know itself after it found that
	// Redis lost its data (or when it first reads a Redis that has just
	// started), so that every replica has written back what it holds
	// before it decides. At least 2s. Default: 3s.
	ReplayLossGrace caddy.Duration `json:"replay_loss_grace,omitempty"`

	// Resources are the final path segments a request may name: MDX
	// signs only that segment, so a request for anything else is refused
	// with 404 before it reaches the upstream. Mutually exclusive with
	// Routes. Default: the seven resources MDX On Demand v5 defines,
	// sessions, accounts, transactions, user, member, account_owner and
	// account_number (hmac.DefaultResources).
	Resources []string `json:"resources,omitempty"`

	// Routes, when set, pin the whole path instead: a request must match
	// one of these templates (a segment in braces, such as
	// {institution_id}, matches any one segment; the final one must be
	// written out) or is refused with 404. Default: none (Resources
	// applies).
	Routes []string `json:"routes,omitempty"`

	// MaxPendingBodies bounds the bytes of request bodies held at once by
	// this handler, across all its requests: a body's declared length is
	// reserved before its first byte is read (a body of unknown length
	// reserves its bytes as they arrive) and given back when the request
	// is done. A request beyond it is refused with 503 and Retry-After.
	// It must be at least MaxBody. Default: 64 MiB.
	MaxPendingBodies int64 `json:"max_pending_bodies,omitempty"`

	// The replay cache's store: in this process (default) or in Redis,
	// so that a signature replayed against another replica is caught too.
	store.Config

	s        *signing
	routes   *hmac.Routes
	pending  *budget
	verifier *hmac.Verifier
	maxSkew  time.Duration
	replay   *store.Binding[replayState] // nil without a replay window
	verdict  store.Verdict               // replayVerdict, made once
	store    *store.Provisioned
	closers  []func()
	fullLog  *atomic.Bool // a "replay cache full" episode has been logged
	now      func() time.Time
	logger   *zap.Logger
}

// Defaults of Verify.
const (
	DefaultMaxSkew          = 5 * time.Minute
	DefaultReplayCacheSize  = 1_000_000
	DefaultMaxPendingBodies = 64 << 20
	DefaultReplayLossGrace  = replay.DefaultLossGrace
	MinReplayLossGrace      = 2 * time.Second
)

// CaddyModule returns the Caddy module information.
func (Verify) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.mdx_hmac_verify",
		New: func() caddy.Module { return new(Verify) },
	}
}

// Validate checks the options among themselves, taking nothing. Caddy
// calls it after Provision; Provision calls it first, so that a bad
// configuration fails before the replay cache or a Redis client is taken.
func (v *Verify) Validate() (err error) {
	defer provision.NameDirective(&err, "mdx_hmac verify")
	if err := v.Signing.validate(); err != nil {
		return err
	}
	if v.MaxPendingBodies != 0 && v.MaxPendingBodies < v.maxBody() {
		return errors.New("max_pending_bodies must be at least max_body")
	}
	switch {
	case v.MaxSkew == nil:
	case v.SkewCheckOff:
		return errors.New("max_skew and skew_check_off are mutually exclusive")
	case *v.MaxSkew <= 0:
		return errors.New("max_skew must be positive; to drop the bound write `max_skew off`")
	}
	switch {
	case v.ReplayWindow < 0:
		return errors.New("replay_window must be positive")
	case v.ReplayCacheSize < 0:
		return errors.New("replay_cache_size must be positive")
	case v.ReplayWindow == 0 && (v.ReplayCacheSize != 0 || v.ReplayLossGrace != 0 || v.Config != store.Config{}):
		return errors.New("replay_cache_size, replay_loss_grace, store, on_store_error, redis_timeout and namespace need replay_window")
	case v.ReplayLossGrace != 0 && v.Store != store.Redis:
		return errors.New("replay_loss_grace needs `store redis <url>`")
	case v.ReplayLossGrace != 0 && time.Duration(v.ReplayLossGrace) < MinReplayLossGrace:
		return fmt.Errorf("replay_loss_grace must be at least %s: a replica notices a loss within a second, and then writes back", MinReplayLossGrace)
	}
	return v.Config.Validate()
}

// Provision checks the options (Validate), decodes the keys, sets
// defaults and takes the replay cache.
func (v *Verify) Provision(ctx caddy.Context) (err error) {
	if err := v.Validate(); err != nil {
		return err // named by Validate
	}
	defer provision.NameDirective(&err, "mdx_hmac verify")
	secret.WarnUnredactedLogs(ctx, "mdx_hmac verify", secret.MDXHeaders...)
	v.logger = ctx.Logger()
	v.fullLog = new(atomic.Bool)
	if v.now == nil {
		v.now = time.Now
	}
	if v.s, err = v.Signing.provision(); err != nil {
		return err
	}
	if v.verifier, err = hmac.NewVerifier(v.s.alg, v.s.keys...); err != nil {
		return err
	}
	if v.routes, err = hmac.NewRoutes(v.Resources, v.Routes); err != nil {
		return err
	}
	if v.MaxPendingBodies == 0 {
		v.MaxPendingBodies = max(DefaultMaxPendingBodies, v.MaxBody)
	}
	v.pending = &budget{max: v.MaxPendingBodies}
	v.maxSkew = DefaultMaxSkew
	if v.MaxSkew != nil {
		v.maxSkew = time.Duration(*v.MaxSkew)
	}
	if v.ReplayWindow == 0 {
		return metrics.Register(ctx.GetMetricsRegistry())
	}
	if err := v.provisionReplay(ctx); err != nil {
		return err
	}
	if !v.SkewCheckOff && time.Duration(v.ReplayWindow) < 2*v.maxSkew {
		v.logger.Warn("replay_window is shorter than twice max_skew: a signature can be replayed once its window has passed while its Date is still accepted",
			zap.Duration("replay_window", time.Duration(v.ReplayWindow)), zap.Duration("max_skew", v.maxSkew))
	}
	return metrics.Register(ctx.GetMetricsRegistry())
}

// provisionReplay registers the directive's replay cache, to be named
// and bound once the configuration is loaded.
func (v *Verify) provisionReplay(ctx caddy.Context) error {
	v.verdict = v.replayVerdict
	var err error
	if v.store, err = v.Config.Provision(ctx, "mdx_hmac"); err != nil {
		return err
	}
	v.closers = append(v.closers, v.store.Release)
	spec := store.Spec{Directive: "mdx_hmac", Kind: "replay", Options: []string{"resource", v.Resource, "base_path", v.BasePath},
		Limits: "replay_window " + time.Duration(v.ReplayWindow).String(), Claims: true}
	if v.replay, err = store.Register(ctx, v, v.store, v.Namespace, spec, v.bindReplay); err != nil {
		return err
	}
	v.closers = append(v.closers, v.replay.Release)
	return nil
}

// bindReplay takes the replay cache named n from the pool that keeps it
// across reloads (resized to this configuration), and, for a Redis
// store, layers the shared cache over it.
func (v *Verify) bindReplay(n store.Naming) (*replayState, func(), error) {
	window := time.Duration(v.ReplayWindow)
	size := v.ReplayCacheSize
	if size == 0 {
		size = DefaultReplayCacheSize
	}
	cache, release, err := v.store.ReplayCache("replay:"+n.Namespace, "mxgate:replay:"+n.Namespace+":", window, size, true)
	if err != nil {
		return nil, nil, err
	}
	tiered, ok := cache.(*replay.Tiered)
	if !ok {
		return &replayState{Store: cache}, release, nil
	}
	if v.ReplayLossGrace != 0 {
		tiered.SetLossGrace(time.Duration(v.ReplayLossGrace))
	}
	return &replayState{Store: tiered, claimsTo: n.ClaimsTo}, release, nil
}

// replayState is the replay cache once named.
type replayState struct {
	replay.Store
	// claimsTo is the mx_rate_limit right after this handler, on the same
	// Redis, that records its signatures with its budget; nil if none.
	claimsTo caddyhttp.MiddlewareHandler
}

// Cleanup lets go of the replay cache and the Redis client.
func (v *Verify) Cleanup() error {
	for i := len(v.closers) - 1; i >= 0; i-- {
		v.closers[i]()
	}
	v.closers = nil
	return nil
}

var (
	refuseReplay      = refusal.Refusal{Status: http.StatusPreconditionFailed, Reason: "replayed", Message: "MDX-HMAC already used"}
	refuseReplayFull  = refusal.Refusal{Status: http.StatusServiceUnavailable, Reason: "replay_cache_full", Message: "Service unavailable"}
	refuseStoreDown   = refusal.Refusal{Status: http.StatusServiceUnavailable, Reason: "store_unavailable", Message: "Service unavailable: replay store unreachable"}
	refuseUnbound     = refusal.Refusal{Status: http.StatusServiceUnavailable, Reason: "state_unavailable", Message: "Service unavailable: replay cache not ready"}
	refuseBadVersion  = refusal.Refusal{Status: http.StatusNotAcceptable, Reason: "unsupported_version", Message: "Unsupported MDX version; this endpoint serves MDX v5"}
	refusePending     = refusal.Refusal{Status: http.StatusServiceUnavailable, Reason: "pending_bodies_full", Message: "Service unavailable: too many request bodies in flight"}
	refuseTrailers    = refusal.Refusal{Status: http.StatusBadRequest, Reason: "trailers", Message: "Trailers are not accepted"}
	refuseNotFound    = refusal.Refusal{Status: http.StatusNotFound, Reason: "unknown_resource", Message: "Not Found"}
	refuseMalformedSg = refusalFor[hmac.ErrMalformedSignature]
)

// The headers the signature covers, which must each come once.
var signedHeaders = [...]string{headerDate, headerContentMD5, headerContentType, headerAccept, headerSessionKey, headerHMAC}

// refuseDuplicate answers a signed header sent twice, by its index in
// signedHeaders.
var refuseDuplicate [len(signedHeaders)]refusal.Refusal

// refuseNotCanonical answers a path that is not canonical, by reason.
var refuseNotCanonical = map[urlpath.Reason]refusal.Refusal{}

func init() {
	wire := [...]string{"Date", "Content-MD5", "Content-Type", "Accept", "MDX-Session-Key", "MDX-HMAC"}
	for i, name := range wire {
		refuseDuplicate[i] = refusal.Refusal{Status: http.StatusBadRequest, Reason: "duplicate_header", Message: "Duplicate " + name + " header"}
	}
	for _, r := range []urlpath.Reason{urlpath.NotAPath, urlpath.EmptySegment, urlpath.TrailingSlash, urlpath.DotSegment,
		urlpath.Backslash, urlpath.Parameter, urlpath.EncodedSeparator, urlpath.ControlByte, urlpath.NeedlessEncoding,
		urlpath.BadEncoding, urlpath.BadCharacter} {
		refuseNotCanonical[r] = refusal.Refusal{Status: http.StatusBadRequest, Reason: "path_not_canonical", Message: "Request path is not canonical: " + string(r)}
	}
}

// ServeHTTP verifies the request and, if it is authentic, hands it on with
// its body intact.
func (v *Verify) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	held, claim, rf, ok := v.verify(r)
	if !ok {
		refusal.CloseUnread(w, r)
		return v.refuse(w, r, rf)
	}
	if held != nil {
		defer held.done(v.pending)
	}
	if claim == nil {
		return next.ServeHTTP(w, r)
	}
	err := next.ServeHTTP(w, store.WithClaim(r, claim))
	if !claim.Decided() {
		// The loaded routes said the next handler decides it; it did not.
		v.logger.Error("a replay record left to the next handler was not decided; this is a bug, please report it",
			zap.String("method", r.Method), zap.String("path", r.URL.Path))
	}
	return err
}

// refuse logs and writes mdx_hmac's refusal rf.
func (v *Verify) refuse(w http.ResponseWriter, r *http.Request, rf refusal.Refusal) error {
	if ce := v.logger.Check(zapcore.DebugLevel, "MDX request refused"); ce != nil {
		ce.Write(zap.String("reason", rf.Reason), zap.Int("status", rf.Status),
			zap.String("client_ip", client.IP(r)), zap.String("method", r.Method), zap.String("path", r.URL.Path))
	}
	if rf.Status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	return refusal.Refuse(w, r, "mdx_hmac", v.s.format, rf)
}

// verify checks r and, on success, replaces its body with the held bytes,
// which the caller gives back (done) once the request is served, and
// returns the replay claim the next handler decides, if any. Nothing of
// the body is read before the signature over the headers has been found
// good, and never more than MaxBody+1 bytes.
func (v *Verify) verify(r *http.Request) (*heldBody, *store.ReplayClaim, refusal.Refusal, bool) {
	// The request's form: no secret and no byte of the body is needed.
	if rf, ok := checkHeaders(r.Header); !ok {
		return nil, nil, rf, false
	}
	if _, ok := r.Header["Trailer"]; ok || len(r.Trailer) > 0 {
		return nil, nil, refuseTrailers, false
	}
	// The path and query as the caller sent them, before any rewrite in
	// this site.
	target, rawQuery := r.RequestURI, r.URL.RawQuery
	if orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok && orig.RequestURI != "" {
		target = orig.RequestURI
		if orig.URL != nil {
			rawQuery = orig.URL.RawQuery
		}
	}
	p, ok := urlpath.FromRequestURI(target)
	if !ok {
		return nil, nil, refuseNotCanonical[urlpath.NotAPath], false
	}
	if err := v.routes.Check(p); err != nil {
		var pe *urlpath.Error
		if errors.As(err, &pe) {
			return nil, nil, refuseNotCanonical[pe.Reason], false
		}
		return nil, nil, refuseNotFound, false
	}
	if r.ContentLength > v.MaxBody {
		return nil, nil, refusalOf(bodies.ErrTooLarge), false
	}

	// The signature over the headers.
	sig := r.Header.Get(headerHMAC)
	switch {
	case sig == "":
		return nil, nil, refusalOf(hmac.ErrMissingSignature), false
	case len(sig) != 2*v.verifier.Algorithm().Size():
		return nil, nil, refuseMalformedSg, false
	}
	date := r.Header.Get(headerDate)
	var err error
	if v.SkewCheckOff {
		_, err = hmac.ParseDate(date)
	} else {
		err = hmac.CheckDate(date, v.now(), v.maxSkew)
	}
	if err != nil {
		return nil, nil, refusalOf(err), false
	}
	md5 := r.Header.Get(headerContentMD5)
	switch {
	case md5 == "" && r.ContentLength != 0:
		// a body declared, or of unknown length, and nothing to check it by
		return nil, nil, refusalOf(hmac.ErrContentMD5Missing), false
	case md5 != "":
		if _, err := hmac.ParseContentMD5(md5); err != nil {
			return nil, nil, refusalOf(err), false
		}
	}
	resource, err := v.s.rule.Resource(p, rawQuery)
	if err != nil {
		return nil, nil, refusalOf(hmac.ErrOutsideBasePath), false
	}
	req := hmac.Request{
		Method:      r.Method,
		ContentMD5:  md5,
		ContentType: r.Header.Get(headerContentType),
		Date:        date,
		Accept:      r.Header.Get(headerAccept),
		SessionKey:  r.Header.Get(headerSessionKey),
		Resource:    resource,
	}
	if err := v.verifier.Verify(&req, sig); err != nil {
		return nil, nil, refusalOf(err), false
	}

	// The body, now that the headers are known to be MX's. A request
	// without one (a GET) has nothing to read, hold or give back.
	if r.ContentLength == 0 { // as a server reads it: no body (chunked is -1)
		return v.finish(r, nil, md5, sig, emptySum[:], 0)
	}
	held, sum, err := readBody(r, v.MaxBody, v.pending)
	switch {
	case errors.Is(err, errBudget):
		return nil, nil, refusePending, false
	case err != nil:
		return nil, nil, refusalOf(err), false
	}
	return v.finish(r, held, md5, sig, sum[:], held.size)
}

// emptySum is the MD5 of no bytes.
var emptySum = md5.Sum(nil)

// finish checks what needs the body (its MD5 sum, of size bytes, against
// the Content-MD5 header; no trailers), then freshness and the version,
// and hands r the held body. held is nil for a request without a body.
// Freshness is left to the next handler, as a claim, when it records
// signatures with its budget and nothing else refuses the request here.
func (v *Verify) finish(r *http.Request, held *heldBody, md5Header, sig string, sum []byte, size int64) (*heldBody, *store.ReplayClaim, refusal.Refusal, bool) {
	fail := func(rf refusal.Refusal) (*heldBody, *store.ReplayClaim, refusal.Refusal, bool) {
		if held != nil {
			held.done(v.pending)
		}
		r.Body, r.ContentLength = http.NoBody, 0 // read to its end
		return nil, nil, rf, false
	}
	if err := hmac.CheckContentMD5Sum(sum, size, md5Header); err != nil {
		return fail(refusalOf(err))
	}
	if len(r.Trailer) > 0 { // sent after a chunked body, unannounced
		return fail(refuseTrailers)
	}
	r.Trailer = nil
	accepts := acceptsMDXv5(r.Header.Values(headerAccept))
	var claim *store.ReplayClaim
	if v.replay != nil {
		var rf refusal.Refusal
		var ok bool
		if claim, rf, ok = v.checkReplay(r, sig, accepts); !ok {
			return fail(rf)
		}
	}
	if !accepts {
		return fail(refuseBadVersion)
	}
	if held == nil {
		r.Body, r.ContentLength = http.NoBody, 0
		return nil, claim, refusal.Refusal{}, true
	}
	r.Body, r.ContentLength = held.reader(), held.size
	return held, claim, refusal.Refusal{}, true
}

// checkHeaders refuses a signed header sent twice, or under a second
// spelling with "_" for "-": verification reads the first value, and the
// application behind the gateway might read another.
func checkHeaders(h http.Header) (refusal.Refusal, bool) {
	for i, k := range signedHeaders {
		if len(h[k]) > 1 {
			return refuseDuplicate[i], false
		}
	}
	for k := range h {
		if strings.IndexByte(k, '_') < 0 {
			continue
		}
		alias := http.CanonicalHeaderKey(strings.ReplaceAll(k, "_", "-"))
		for i, name := range signedHeaders {
			if alias == name {
				return refuseDuplicate[i], false
			}
		}
	}
	return refusal.Refusal{}, true
}

// checkReplay records the signature (only authentic ones reach here) and
// refuses one seen before, or any while freshness cannot be established;
// or, for a request that nothing else here refuses (pass), leaves that to
// the next handler if it records signatures with its budget, and returns
// the claim it must decide.
func (v *Verify) checkReplay(r *http.Request, sig string, pass bool) (*store.ReplayClaim, refusal.Refusal, bool) {
	var key replay.Key
	if _, err := hex.Decode(key[:], []byte(sig[:2*len(key)])); err != nil {
		return nil, refuseMalformedSg, false
	}
	cache, err := v.replay.Get()
	if err != nil {
		return nil, refuseUnbound, false
	}
	if pass && cache.claimsTo != nil {
		return store.NewReplayClaim(cache.claimsTo, cache.Store, key, v.now(), v.verdict), refusal.Refusal{}, true
	}
	fresh, err := cache.Check(r.Context(), key, v.now())
	rf, ok := v.replayOutcome(fresh, err)
	return nil, rf, ok
}

// replayVerdict is the store.Verdict of this handler's replay claims: the
// refusal of a signature seen before, or of any while freshness cannot be
// established, written as this handler writes its own.
func (v *Verify) replayVerdict(w http.ResponseWriter, r *http.Request, fresh bool, err error) (bool, error) {
	rf, ok := v.replayOutcome(fresh, err)
	if ok {
		return true, nil
	}
	return false, v.refuse(w, r, rf)
}

// replayOutcome is the answer to the replay cache's outcome.
func (v *Verify) replayOutcome(fresh bool, err error) (refusal.Refusal, bool) {
	switch {
	case errors.Is(err, replay.ErrFull):
		if !v.fullLog.Swap(true) {
			v.logger.Error("replay cache full; refusing requests until entries expire",
				zap.Duration("replay_window", time.Duration(v.ReplayWindow)))
		}
		return refuseReplayFull, false
	case err != nil:
		return refuseStoreDown, false
	}
	if v.fullLog.Load() && v.fullLog.Swap(false) {
		v.logger.Info("replay cache has room again")
	}
	if !fresh {
		return refuseReplay, false
	}
	return refusal.Refusal{}, true
}

// acceptsMDXv5 reports whether the Accept header values admit an MDX v5
// XML answer: true unless every MDX media type named is of another version
// or another encoding. A request naming no MDX version gets the latest,
// v5, in XML; one naming only MDX's JSON encoding (…mdx.v5+json), which
// MDX On Demand does not serve, gets none.
func acceptsMDXv5(values []string) bool {
	namedOther := false
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			mt, _, _ := strings.Cut(part, ";")
			mt = strings.ToLower(strings.TrimSpace(mt))
			rest, ok := strings.CutPrefix(mt, "application/vnd.moneydesktop.mdx")
			switch {
			case !ok || rest == "+xml": // not MDX; or MDX of no version, in XML
				continue
			case rest == ".v5+xml":
				return true
			case rest != "" && (rest[0] == '.' || rest[0] == '+'):
				namedOther = true
			}
		}
	}
	return !namedOther
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Verify)(nil)
	_ caddy.Validator             = (*Verify)(nil)
	_ caddy.CleanerUpper          = (*Verify)(nil)
	_ caddyhttp.MiddlewareHandler = (*Verify)(nil)
)
