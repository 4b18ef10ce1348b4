package caddymodule

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mxgate/mxgate/hmac"
	"github.com/mxgate/mxgate/replay"
)

func init() {
	caddy.RegisterModule(MDXHMAC{})
}

// MDX request headers, in canonical form so that lookups need no
// canonicalisation (MDX-HMAC on the wire is Mdx-Hmac in http.Header).
const (
	headerHMAC        = "Mdx-Hmac"
	headerSessionKey  = "Mdx-Session-Key"
	headerContentMD5  = "Content-Md5"
	headerDate        = "Date"
	headerAccept      = "Accept"
	headerContentType = "Content-Type"
)

// MDXHMAC verifies the MDX On Demand v5 signature of each request (the
// MDX-HMAC, Content-MD5 and Date headers) and lets through only requests
// that carry a valid one over an unaltered body. The body is buffered, up to
// MaxBody, and handed on byte for byte.
//
// Refusals, in the order they are checked:
//   - body larger than MaxBody: 413, and nothing is read further;
//   - MDX-HMAC missing or malformed, Date missing, not an integer or
//     outside MaxSkew: 412;
//   - Content-MD5 missing (on a non-empty body) or not the body's MD5, or a
//     signature that matches none of the keys: 412;
//   - a signature already seen inside ReplayWindow: 412;
//   - an Accept header naming an MDX version other than v5: 406.
type MDXHMAC struct {
	// Mode is "verify" (check incoming requests) or "sign" (sign outgoing
	// ones, as MX does: for an aggregator or a test harness).
	Mode string `json:"mode,omitempty"`

	// Keys are the base64 HMAC keys, 32 to 64 bytes each once decoded. A
	// signature made with any of them passes, so that keys can be rotated.
	// {env.*} and {file.*} placeholders are replaced at provisioning; use
	// them to keep keys out of the configuration.
	Keys []string `json:"keys,omitempty"`

	// Algorithm is sha1, sha224, sha256, sha384 or sha512. Default: sha1,
	// as in MX's example.
	Algorithm string `json:"algorithm,omitempty"`

	// MaxSkew bounds |now - Date|. Zero or negative is a configuration
	// error; to drop the bound, set SkewCheckOff instead. Default: 5m.
	MaxSkew *caddy.Duration `json:"max_skew,omitempty"`

	// SkewCheckOff drops the bound on |now - Date|. Date must still be
	// present and an integer. Default: false.
	SkewCheckOff bool `json:"skew_check_off,omitempty"`

	// MaxBody is the largest body accepted, in bytes. Default: 1 MiB.
	MaxBody int64 `json:"max_body,omitempty"`

	// Resource is how the signed resource is derived from the path:
	// "final", the last path segment ("/transactions" for
	// /{institution_id}/accounts/{id}/transactions), or "path", the whole
	// path after BasePath. Default: final.
	Resource string `json:"resource,omitempty"`

	// ResourceQuery, with Resource "path", appends "?" and the raw query
	// string to the signed resource when the request has one.
	ResourceQuery bool `json:"resource_query,omitempty"`

	// BasePath, with Resource "path", is stripped from the front of the
	// path before signing. A segment in braces, such as {institution_id},
	// matches any one segment. Caddy's global placeholders ({env.*}) are
	// replaced at provisioning. Default: none.
	BasePath string `json:"base_path,omitempty"`

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

	// Store is where ReplayWindow remembers signatures: "memory" (this
	// process) or "redis" (shared, so a signature replayed against another
	// replica is caught too). Default: memory.
	Store string `json:"store,omitempty"`

	// RedisURL is the Redis server of a Redis store; {env.*} works.
	RedisURL string `json:"redis_url,omitempty"`

	// RedisTimeout bounds each Redis call. Default: 250ms.
	RedisTimeout caddy.Duration `json:"redis_timeout,omitempty"`

	// OnStoreError is what happens while Redis is unreachable: "local"
	// (this replica's own cache) or "deny" (503). Default: local.
	OnStoreError string `json:"on_store_error,omitempty"`

	// Namespace separates this directive's signatures in Redis; the
	// Caddyfile sets one per directive, JSON must with a Redis store.
	Namespace string `json:"namespace,omitempty"`

	// ErrorFormat is how a refusal is written: mdx, json, text or
	// handle_errors. Default: mdx.
	ErrorFormat string `json:"error_format,omitempty"`

	verifier *hmac.Verifier // verify mode
	signer   *hmac.Signer   // sign mode
	rule     hmac.ResourceRule
	maxSkew  time.Duration
	replay   *replay.Memory // the replay cache, or a Redis store's local fallback
	shared   *replay.Redis
	redis    *redisHandle
	down     *atomic.Bool // a store outage episode is under way
	fullLog  *atomic.Bool // a "replay cache full" episode has been logged
	now      func() time.Time
	logger   *zap.Logger
}

// Defaults of MDXHMAC.
const (
	DefaultMaxSkew         = 5 * time.Minute
	DefaultMaxBody         = 1 << 20
	DefaultReplayCacheSize = 1_000_000
)

// CaddyModule returns the Caddy module information.
func (MDXHMAC) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.mdx_hmac",
		New: func() caddy.Module { return new(MDXHMAC) },
	}
}

// Provision decodes the keys and sets defaults.
func (m *MDXHMAC) Provision(ctx caddy.Context) error {
	m.logger = ctx.Logger()
	m.fullLog = new(atomic.Bool)
	m.down = new(atomic.Bool)
	if m.now == nil {
		m.now = time.Now
	}
	if m.Mode == "" {
		m.Mode = "verify"
	}
	if m.Mode != "verify" && m.Mode != "sign" {
		return fmt.Errorf("mdx_hmac: unknown mode %q (want verify or sign)", m.Mode)
	}
	if m.ErrorFormat == "" {
		m.ErrorFormat = FormatMDX
	}
	if m.Algorithm == "" {
		m.Algorithm = "sha1"
	}
	alg, err := hmac.ParseAlgorithm(m.Algorithm)
	if err != nil {
		return fmt.Errorf("mdx_hmac: %w", err)
	}
	if len(m.Keys) == 0 {
		return errors.New("mdx_hmac: at least one key is required")
	}
	repl := caddy.NewReplacer()
	keys := make([]hmac.Key, 0, len(m.Keys))
	for i, raw := range m.Keys {
		k, err := parseKey(repl, raw)
		if err != nil {
			return fmt.Errorf("mdx_hmac: key %d: %w", i+1, err)
		}
		keys = append(keys, k)
	}
	if m.MaxBody == 0 {
		m.MaxBody = DefaultMaxBody
	}
	if m.MaxBody < 0 {
		return errors.New("mdx_hmac: max_body must be positive")
	}
	if m.rule, err = resourceRule(repl, m.Resource, m.BasePath, m.ResourceQuery); err != nil {
		return fmt.Errorf("mdx_hmac: %w", err)
	}
	if m.Mode == "sign" {
		return m.provisionSign(ctx, alg, keys)
	}
	if m.verifier, err = hmac.NewVerifier(alg, keys...); err != nil {
		return fmt.Errorf("mdx_hmac: %w", err)
	}

	switch {
	case m.MaxSkew == nil:
		m.maxSkew = DefaultMaxSkew
	case m.SkewCheckOff:
		return errors.New("mdx_hmac: max_skew and skew_check_off are mutually exclusive")
	case *m.MaxSkew <= 0:
		return errors.New("mdx_hmac: max_skew must be positive; to drop the bound write `max_skew off`")
	default:
		m.maxSkew = time.Duration(*m.MaxSkew)
	}

	if m.ReplayWindow < 0 {
		return errors.New("mdx_hmac: replay_window must be positive")
	}
	if m.ReplayCacheSize < 0 {
		return errors.New("mdx_hmac: replay_cache_size must be positive")
	}
	if m.ReplayWindow > 0 {
		size := m.ReplayCacheSize
		if size == 0 {
			size = DefaultReplayCacheSize
		}
		if m.replay, err = replay.NewMemory(time.Duration(m.ReplayWindow), size); err != nil {
			return fmt.Errorf("mdx_hmac: %w", err)
		}
		if !m.SkewCheckOff && time.Duration(m.ReplayWindow) < 2*m.maxSkew {
			m.logger.Warn("replay_window is shorter than twice max_skew: a signature can be replayed once its window has passed while its Date is still accepted",
				zap.Duration("replay_window", time.Duration(m.ReplayWindow)), zap.Duration("max_skew", m.maxSkew))
		}
	} else if m.ReplayCacheSize != 0 {
		return errors.New("mdx_hmac: replay_cache_size needs replay_window")
	}
	if m.OnStoreError == "" {
		m.OnStoreError = OnStoreErrorLocal
	}
	switch m.Store {
	case "", "memory":
		if m.RedisURL != "" {
			return errors.New("mdx_hmac: redis_url needs store redis")
		}
	case "redis":
		if m.replay == nil {
			return errors.New("mdx_hmac: store redis needs replay_window")
		}
		if m.Namespace == "" {
			return errors.New("mdx_hmac: a Redis store needs a namespace (the Caddyfile sets one per directive)")
		}
		if err := checkOnStoreError(m.OnStoreError); err != nil {
			return fmt.Errorf("mdx_hmac: %w", err)
		}
		if m.redis, err = openRedis(m.RedisURL, time.Duration(m.RedisTimeout)); err != nil {
			return fmt.Errorf("mdx_hmac: %w", err)
		}
		if m.shared, err = replay.NewRedis(m.redis.client, "mxgate:replay:"+m.Namespace+":", time.Duration(m.ReplayWindow)); err != nil {
			return fmt.Errorf("mdx_hmac: %w", err)
		}
	default:
		return fmt.Errorf("mdx_hmac: store must be memory or redis, not %q", m.Store)
	}
	return registerMetrics(ctx.GetMetricsRegistry())
}

// provisionSign finishes provisioning for sign mode, where the options
// that bound what is accepted have no meaning.
func (m *MDXHMAC) provisionSign(ctx caddy.Context, alg hmac.Algorithm, keys []hmac.Key) error {
	if len(keys) != 1 {
		return errors.New("mdx_hmac sign: exactly one key (a signer signs with one key)")
	}
	if m.MaxSkew != nil || m.SkewCheckOff || m.ReplayWindow != 0 || m.ReplayCacheSize != 0 ||
		m.Store != "" || m.RedisURL != "" || m.Namespace != "" {
		return errors.New("mdx_hmac sign: max_skew, replay_window and store belong to mdx_hmac verify")
	}
	var err error
	if m.signer, err = hmac.NewSigner(alg, keys[0]); err != nil {
		return fmt.Errorf("mdx_hmac: %w", err)
	}
	return registerMetrics(ctx.GetMetricsRegistry())
}

// parseKey resolves placeholders in raw and decodes the key. Its errors
// never contain the key.
func parseKey(repl *caddy.Replacer, raw string) (hmac.Key, error) {
	s := repl.ReplaceKnown(raw, "")
	if strings.TrimSpace(s) == "" {
		return hmac.Key{}, errors.New("empty (an unset {env.*} variable or an empty {file.*}?)")
	}
	if strings.ContainsAny(s, "{}") {
		return hmac.Key{}, errors.New("has a placeholder that could not be resolved at provisioning")
	}
	return hmac.ParseKey(s)
}

func resourceRule(repl *caddy.Replacer, mode, basePath string, withQuery bool) (hmac.ResourceRule, error) {
	switch mode {
	case "", "final":
		if basePath != "" || withQuery {
			return hmac.ResourceRule{}, errors.New("base_path and the resource query apply only to `resource path`")
		}
		return hmac.FinalSegment(), nil
	case "path":
		return hmac.PathAfter(repl.ReplaceKnown(basePath, ""), withQuery)
	}
	return hmac.ResourceRule{}, fmt.Errorf("unknown resource %q (want final or path)", mode)
}

// Validate checks the configuration.
func (m *MDXHMAC) Validate() error {
	if err := checkErrorFormat(m.ErrorFormat); err != nil {
		return fmt.Errorf("mdx_hmac: %w", err)
	}
	return nil
}

// The refusals of mdx_hmac. Messages name the faulty header and never
// reveal the expected value.
var (
	rejectTooLarge     = rejection{status: http.StatusRequestEntityTooLarge, reason: "body_too_large", message: "Request body too large"}
	rejectUnreadable   = rejection{status: http.StatusBadRequest, reason: "body_unreadable", message: "Request body could not be read"}
	rejectNoHMAC       = rejection{status: http.StatusPreconditionFailed, reason: "hmac_missing", message: "MDX-HMAC header missing"}
	rejectBadHMAC      = rejection{status: http.StatusPreconditionFailed, reason: "hmac_malformed", message: "MDX-HMAC header malformed"}
	rejectHMAC         = rejection{status: http.StatusPreconditionFailed, reason: "hmac_mismatch", message: "MDX-HMAC invalid"}
	rejectNoMD5        = rejection{status: http.StatusPreconditionFailed, reason: "md5_missing", message: "Content-MD5 header missing"}
	rejectMD5          = rejection{status: http.StatusPreconditionFailed, reason: "md5_mismatch", message: "Content-MD5 does not match the body"}
	rejectNoDate       = rejection{status: http.StatusPreconditionFailed, reason: "date_missing", message: "Date header missing"}
	rejectBadDate      = rejection{status: http.StatusPreconditionFailed, reason: "date_malformed", message: "Date header is not UNIX epoch seconds"}
	rejectSkew         = rejection{status: http.StatusPreconditionFailed, reason: "date_skew", message: "Date header outside the allowed clock skew"}
	rejectReplay       = rejection{status: http.StatusPreconditionFailed, reason: "replayed", message: "MDX-HMAC already used"}
	rejectReplayFull   = rejection{status: http.StatusServiceUnavailable, reason: "replay_cache_full", message: "Service unavailable"}
	rejectPath         = rejection{status: http.StatusPreconditionFailed, reason: "resource_underivable", message: "MDX-HMAC invalid: request path is outside the signed base path"}
	rejectBadVersion   = rejection{status: http.StatusNotAcceptable, reason: "unsupported_version", message: "Unsupported MDX version; this endpoint serves MDX v5"}
	errReasonForHeader = map[error]rejection{
		hmac.ErrMissingSignature:   rejectNoHMAC,
		hmac.ErrMalformedSignature: rejectBadHMAC,
		hmac.ErrSignatureMismatch:  rejectHMAC,
		hmac.ErrContentMD5Missing:  rejectNoMD5,
		hmac.ErrContentMD5Mismatch: rejectMD5,
		hmac.ErrDateMissing:        rejectNoDate,
		hmac.ErrDateMalformed:      rejectBadDate,
		hmac.ErrDateSkew:           rejectSkew,
		hmac.ErrOutsideBasePath:    rejectPath,
	}
)

// ServeHTTP verifies the request and, if it is authentic, hands it on with
// its body intact.
func (m *MDXHMAC) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if m.signer != nil {
		if rej, ok := m.sign(r); !ok {
			countRejection("mdx_hmac", rej.reason)
			return rej.respond(w, m.ErrorFormat)
		}
		return next.ServeHTTP(w, r)
	}
	if rej, ok := m.verify(r); !ok {
		countRejection("mdx_hmac", rej.reason)
		if ce := m.logger.Check(zapcore.InfoLevel, "MDX request refused"); ce != nil {
			ce.Write(zap.String("reason", rej.reason), zap.Int("status", rej.status),
				zap.String("client_ip", clientIPString(r)), zap.String("method", r.Method), zap.String("path", r.URL.Path))
		}
		return rej.respond(w, m.ErrorFormat)
	}
	return next.ServeHTTP(w, r)
}

// verify checks r and, on success, replaces its body with the buffered
// bytes. It never reads more than MaxBody+1 bytes.
func (m *MDXHMAC) verify(r *http.Request) (rejection, bool) {
	if r.ContentLength > m.MaxBody {
		return rejectTooLarge, false
	}
	sig := r.Header.Get(headerHMAC)
	switch {
	case sig == "":
		return rejectNoHMAC, false
	case len(sig) != 2*m.verifier.Algorithm().Size():
		return rejectBadHMAC, false
	}
	date := r.Header.Get(headerDate)
	var err error
	if m.SkewCheckOff {
		_, err = hmac.ParseDate(date)
	} else {
		err = hmac.CheckDate(date, m.now(), m.maxSkew)
	}
	if err != nil {
		return errReasonForHeader[err], false
	}

	// The resource comes from the request as the caller sent it, before
	// any rewrite in this site.
	u := r.URL
	if orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok && orig.URL != nil {
		u = orig.URL
	}
	resource, err := m.rule.Resource(u.EscapedPath(), u.RawQuery)
	if err != nil {
		return rejectPath, false
	}

	body, rej, ok := m.readBody(r)
	if !ok {
		return rej, false
	}
	md5 := r.Header.Get(headerContentMD5)
	if err := hmac.CheckContentMD5(body, md5); err != nil {
		return errReasonForHeader[err], false
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
	if err := m.verifier.Verify(&req, sig); err != nil {
		return errReasonForHeader[err], false
	}
	if m.replay != nil {
		var key replay.Key
		if _, err := hex.Decode(key[:], []byte(sig[:2*len(key)])); err != nil {
			return rejectBadHMAC, false
		}
		fresh, deny, err := m.checkReplay(r, key)
		if deny {
			return rejectStoreDown, false
		}
		if err != nil {
			if !m.fullLog.Swap(true) {
				m.logger.Error("replay cache full; refusing requests until entries expire",
					zap.Duration("replay_window", time.Duration(m.ReplayWindow)))
			}
			return rejectReplayFull, false
		}
		if m.fullLog.Swap(false) {
			m.logger.Info("replay cache has room again")
		}
		if !fresh {
			return rejectReplay, false
		}
	}
	if !acceptsMDXv5(r.Header.Values(headerAccept)) {
		return rejectBadVersion, false
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	return rejection{}, true
}

// checkReplay asks the shared store, if any, whether key is fresh, and
// falls back as OnStoreError says; deny is true when the request must be
// refused because the store is down.
func (m *MDXHMAC) checkReplay(r *http.Request, key replay.Key) (fresh, deny bool, err error) {
	if m.shared != nil {
		fresh, err := m.shared.Check(r.Context(), key)
		if err == nil {
			if m.down.Load() && m.down.Swap(false) {
				m.logger.Info("replay store reachable again", zap.String("redis", m.redis.addr))
			}
			return fresh, false, nil
		}
		metrics.storeErrors.WithLabelValues("mdx_hmac").Inc()
		if !m.down.Swap(true) {
			m.logger.Error("replay store unreachable", zap.String("redis", m.redis.addr),
				zap.String("on_store_error", m.OnStoreError), zap.Error(err))
		}
		if m.OnStoreError == OnStoreErrorDeny {
			return false, true, nil
		}
	}
	fresh, err = m.replay.Check(key, m.now())
	return fresh, false, err
}

// Cleanup releases the Redis client.
func (m *MDXHMAC) Cleanup() error {
	m.redis.release()
	return nil
}

// sign sets Date, Content-MD5 and MDX-HMAC on r for the request as it
// will be forwarded (after any rewrite in this site), from the same
// canonical string verify checks. The body is buffered (up to MaxBody) and
// forwarded byte for byte.
func (m *MDXHMAC) sign(r *http.Request) (rejection, bool) {
	if r.ContentLength > m.MaxBody {
		return rejectTooLarge, false
	}
	resource, err := m.rule.Resource(r.URL.EscapedPath(), r.URL.RawQuery)
	if err != nil {
		return rejectPath, false
	}
	body, rej, ok := m.readBody(r)
	if !ok {
		return rej, false
	}
	req := hmac.Request{
		Method:      r.Method,
		ContentMD5:  hmac.ContentMD5(body),
		ContentType: r.Header.Get(headerContentType),
		Date:        hmac.FormatDate(m.now()),
		Accept:      r.Header.Get(headerAccept),
		SessionKey:  r.Header.Get(headerSessionKey),
		Resource:    resource,
	}
	h := r.Header
	h.Set(headerDate, req.Date)
	h.Set(headerContentMD5, req.ContentMD5)
	h.Set(headerHMAC, m.signer.Sign(&req))
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	return rejection{}, true
}

// readBody reads the whole body, refusing one over MaxBody.
func (m *MDXHMAC) readBody(r *http.Request) ([]byte, rejection, bool) {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return nil, rejection{}, true
	}
	var body []byte
	var err error
	if r.ContentLength > 0 {
		// Declared length (already checked against MaxBody): read exactly
		// that; the server's body reader enforces the framing.
		body = make([]byte, r.ContentLength)
		_, err = io.ReadFull(r.Body, body)
	} else {
		body, err = io.ReadAll(io.LimitReader(r.Body, m.MaxBody+1))
		if int64(len(body)) > m.MaxBody {
			return nil, rejectTooLarge, false
		}
	}
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, rejectTooLarge, false
		}
		return nil, rejectUnreadable, false
	}
	return body, rejection{}, true
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
	_ caddy.Provisioner           = (*MDXHMAC)(nil)
	_ caddy.Validator             = (*MDXHMAC)(nil)
	_ caddy.CleanerUpper          = (*MDXHMAC)(nil)
	_ caddyhttp.MiddlewareHandler = (*MDXHMAC)(nil)
)
