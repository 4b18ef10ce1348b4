package mdx

import (
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mxgate/mxgate/caddymodule/internal/gate"
	"github.com/mxgate/mxgate/caddymodule/internal/store"
	"github.com/mxgate/mxgate/hmac"
	"github.com/mxgate/mxgate/replay"
)

func init() {
	caddy.RegisterModule(Verify{})
}

// Verify checks the MDX On Demand v5 signature of each request (the
// MDX-HMAC, Content-MD5 and Date headers) and lets through only requests
// that carry a valid one over an unaltered body. The body is buffered, up
// to MaxBody, and handed on byte for byte.
//
// Refusals, in the order they are checked:
//   - body larger than MaxBody: 413, and nothing is read further;
//   - MDX-HMAC missing or malformed, Date missing, not an integer or
//     outside MaxSkew: 412;
//   - Content-MD5 missing (on a non-empty body) or not the body's MD5, or a
//     signature that matches none of the keys: 412;
//   - a signature already seen inside ReplayWindow: 412;
//   - an Accept header naming an MDX version other than v5: 406.
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

	// The replay cache's store: in this process (default) or in Redis,
	// so that a signature replayed against another replica is caught too.
	store.Config

	s        *signing
	verifier *hmac.Verifier
	maxSkew  time.Duration
	replay   replay.Store
	store    *store.Provisioned
	closers  []func()
	fullLog  *atomic.Bool // a "replay cache full" episode has been logged
	now      func() time.Time
	logger   *zap.Logger
}

// Defaults of Verify.
const (
	DefaultMaxSkew         = 5 * time.Minute
	DefaultReplayCacheSize = 1_000_000
)

// CaddyModule returns the Caddy module information.
func (Verify) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.mdx_hmac_verify",
		New: func() caddy.Module { return new(Verify) },
	}
}

// Provision decodes the keys, sets defaults and takes the replay cache.
func (v *Verify) Provision(ctx caddy.Context) error {
	gate.WarnUnredactedLogs(ctx, "mdx_hmac verify", gate.MDXSecretHeaders...)
	v.logger = ctx.Logger()
	v.fullLog = new(atomic.Bool)
	if v.now == nil {
		v.now = time.Now
	}
	var err error
	if v.s, err = v.Signing.provision(); err != nil {
		return err
	}
	if v.verifier, err = hmac.NewVerifier(v.s.alg, v.s.keys...); err != nil {
		return err
	}
	switch {
	case v.MaxSkew == nil:
		v.maxSkew = DefaultMaxSkew
	case v.SkewCheckOff:
		return errors.New("max_skew and skew_check_off are mutually exclusive")
	case *v.MaxSkew <= 0:
		return errors.New("max_skew must be positive; to drop the bound write `max_skew off`")
	default:
		v.maxSkew = time.Duration(*v.MaxSkew)
	}
	switch {
	case v.ReplayWindow < 0:
		return errors.New("replay_window must be positive")
	case v.ReplayCacheSize < 0:
		return errors.New("replay_cache_size must be positive")
	case v.ReplayWindow == 0 && (v.ReplayCacheSize != 0 || v.Store != "" || v.RedisURL != "" || v.Namespace != ""):
		return errors.New("replay_cache_size, store and namespace need replay_window")
	case v.ReplayWindow == 0:
		return gate.RegisterMetrics(ctx.GetMetricsRegistry())
	}
	if err := v.provisionReplay(ctx); err != nil {
		return err
	}
	if !v.SkewCheckOff && time.Duration(v.ReplayWindow) < 2*v.maxSkew {
		v.logger.Warn("replay_window is shorter than twice max_skew: a signature can be replayed once its window has passed while its Date is still accepted",
			zap.Duration("replay_window", time.Duration(v.ReplayWindow)), zap.Duration("max_skew", v.maxSkew))
	}
	return gate.RegisterMetrics(ctx.GetMetricsRegistry())
}

// provisionReplay takes the directive's replay cache from the pool that
// keeps it across reloads (resized to this configuration), and, for a
// Redis store, layers the shared cache over it.
func (v *Verify) provisionReplay(ctx caddy.Context) error {
	window := time.Duration(v.ReplayWindow)
	size := v.ReplayCacheSize
	if size == 0 {
		size = DefaultReplayCacheSize
	}
	var err error
	if v.store, err = v.Config.Provision(ctx, "mdx_hmac", v.Resource, v.BasePath); err != nil {
		return err
	}
	v.closers = append(v.closers, v.store.Release)
	local, release, err := store.State("replay:"+v.store.Namespace, func() (*replay.Memory, func(), error) {
		m, err := replay.NewMemory(window, size)
		return m, nil, err
	})
	if err != nil {
		return err
	}
	v.closers = append(v.closers, release)
	if err := local.Resize(window, size); err != nil {
		return err
	}
	if v.store.Client == nil {
		v.replay = local
		return nil
	}
	shared, err := replay.NewRedis(v.store.Client, "mxgate:replay:"+v.store.Namespace+":", window)
	if err != nil {
		return err
	}
	tiered, err := replay.NewTiered(local, shared, !v.store.FailOpen, v.store.Health)
	if err != nil {
		return err
	}
	v.closers = append(v.closers, tiered.Close)
	v.replay = tiered
	return nil
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
	refuseReplay      = gate.Refusal{Status: http.StatusPreconditionFailed, Reason: "replayed", Message: "MDX-HMAC already used"}
	refuseReplayFull  = gate.Refusal{Status: http.StatusServiceUnavailable, Reason: "replay_cache_full", Message: "Service unavailable"}
	refuseStoreDown   = gate.Refusal{Status: http.StatusServiceUnavailable, Reason: "store_unavailable", Message: "Service unavailable: replay store unreachable"}
	refuseBadVersion  = gate.Refusal{Status: http.StatusNotAcceptable, Reason: "unsupported_version", Message: "Unsupported MDX version; this endpoint serves MDX v5"}
	refuseMalformedSg = refusalFor[hmac.ErrMalformedSignature]
)

// ServeHTTP verifies the request and, if it is authentic, hands it on with
// its body intact.
func (v *Verify) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if rf, ok := v.verify(r); !ok {
		if ce := v.logger.Check(zapcore.InfoLevel, "MDX request refused"); ce != nil {
			ce.Write(zap.String("reason", rf.Reason), zap.Int("status", rf.Status),
				zap.String("client_ip", gate.ClientIP(r)), zap.String("method", r.Method), zap.String("path", r.URL.Path))
		}
		return gate.Refuse(w, "mdx_hmac", v.s.format, rf)
	}
	return next.ServeHTTP(w, r)
}

// verify checks r and, on success, replaces its body with the buffered
// bytes. It never reads more than MaxBody+1 bytes.
func (v *Verify) verify(r *http.Request) (gate.Refusal, bool) {
	if r.ContentLength > v.MaxBody {
		return refusal(gate.ErrBodyTooLarge), false
	}
	sig := r.Header.Get(headerHMAC)
	switch {
	case sig == "":
		return refusal(hmac.ErrMissingSignature), false
	case len(sig) != 2*v.verifier.Algorithm().Size():
		return refuseMalformedSg, false
	}
	date := r.Header.Get(headerDate)
	var err error
	if v.SkewCheckOff {
		_, err = hmac.ParseDate(date)
	} else {
		err = hmac.CheckDate(date, v.now(), v.maxSkew)
	}
	if err != nil {
		return refusal(err), false
	}

	// The resource comes from the request as the caller sent it, before
	// any rewrite in this site.
	u := r.URL
	if orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok && orig.URL != nil {
		u = orig.URL
	}
	resource, err := v.s.rule.Resource(u.EscapedPath(), u.RawQuery)
	if err != nil {
		return refusal(hmac.ErrOutsideBasePath), false
	}

	body, err := gate.ReadBody(r, v.MaxBody)
	if err != nil {
		return refusal(err), false
	}
	md5 := r.Header.Get(headerContentMD5)
	if err := hmac.CheckContentMD5(body, md5); err != nil {
		return refusal(err), false
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
		return refusal(err), false
	}
	if v.replay != nil {
		if rf, ok := v.checkReplay(r, sig); !ok {
			return rf, false
		}
	}
	if !acceptsMDXv5(r.Header.Values(headerAccept)) {
		return refuseBadVersion, false
	}
	gate.SetBody(r, body)
	return gate.Refusal{}, true
}

// checkReplay records the signature (only authentic ones reach here) and
// refuses one seen before, or any while freshness cannot be established.
func (v *Verify) checkReplay(r *http.Request, sig string) (gate.Refusal, bool) {
	var key replay.Key
	if _, err := hex.Decode(key[:], []byte(sig[:2*len(key)])); err != nil {
		return refuseMalformedSg, false
	}
	fresh, err := v.replay.Check(r.Context(), key, v.now())
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
	return gate.Refusal{}, true
}

// acceptsMDXv5 reports whether the Accept header values admit an MDX v5
// answer: true unless every MDX media type named is of another version.
// A request naming no MDX version gets the latest, v5.
func acceptsMDXv5(values []string) bool {
	namedOther := false
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			mt, _, _ := strings.Cut(part, ";")
			mt = strings.ToLower(strings.TrimSpace(mt))
			rest, ok := strings.CutPrefix(mt, "application/vnd.moneydesktop.mdx.")
			if !ok {
				continue
			}
			version, ok := strings.CutSuffix(rest, "+xml")
			if !ok || version == "" {
				continue
			}
			if version == "v5" {
				return true
			}
			namedOther = true
		}
	}
	return !namedOther
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Verify)(nil)
	_ caddy.CleanerUpper          = (*Verify)(nil)
	_ caddyhttp.MiddlewareHandler = (*Verify)(nil)
)
