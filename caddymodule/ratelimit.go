package caddymodule

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mxgate/mxgate/ratelimit"
)

func init() {
	caddy.RegisterModule(RateLimit{})
}

// RateLimit applies per-verb token-bucket budgets, by default MX's
// per-client limits (2000 GET, 750 POST+PUT+PATCH, 150 DELETE a second).
// A request over budget is refused with 429 and Retry-After, or, in wait
// mode, held until a token is free if that is within MaxWait. Admitted and
// refused requests carry RateLimit-Limit, RateLimit-Remaining and
// RateLimit-Reset.
//
// With a Redis store, every replica pointing at the same Redis and
// Namespace shares one budget exactly.
type RateLimit struct {
	// Limits maps a class (get, write, delete, other) to its budget.
	// Default: get 2000/s, write 750/s, delete 150/s, each with a burst of
	// one second's worth; other unlimited.
	Limits map[string]*ClassLimit `json:"limits,omitempty"`

	// Key selects the budget a request draws on; placeholders are
	// evaluated per request, e.g. {http.vars.client_ip} or
	// {http.request.header.X-Client}. A key that evaluates to empty draws
	// on the shared empty-key budget. Default: one budget for the whole site.
	Key string `json:"key,omitempty"`

	// Mode is "reject" (refuse at once) or "wait" (hold the request until a
	// token is free, if within MaxWait). Default: reject.
	Mode string `json:"mode,omitempty"`

	// MaxWait, in wait mode, is the longest a request is held; one that
	// would wait longer is refused at once. Default: 2s.
	MaxWait caddy.Duration `json:"max_wait,omitempty"`

	// Store is "memory" (this process) or "redis" (shared). Default: memory.
	Store string `json:"store,omitempty"`

	// RedisURL is the Redis server, redis://[user:password@]host:port[/db]
	// or rediss://… ; {env.*} placeholders work.
	RedisURL string `json:"redis_url,omitempty"`

	// RedisTimeout bounds each Redis dial, read and write. Default: 250ms.
	RedisTimeout caddy.Duration `json:"redis_timeout,omitempty"`

	// OnStoreError is what happens while Redis is unreachable: "local"
	// (this replica's own buckets, so the fleet may admit up to the budget
	// times the number of replicas) or "deny" (503). Default: local.
	OnStoreError string `json:"on_store_error,omitempty"`

	// Namespace separates this directive's buckets in Redis from every
	// other's. The Caddyfile sets one per site and directive; in JSON it is
	// required with a Redis store.
	Namespace string `json:"namespace,omitempty"`

	// MaxKeys caps the keys held in memory (rounded up to a multiple of
	// 64); the least recently used are evicted. Default: 100000.
	MaxKeys int `json:"max_keys,omitempty"`

	// ErrorFormat is how a refusal is written: mdx, json, text or
	// handle_errors. Default: mdx.
	ErrorFormat string `json:"error_format,omitempty"`

	policy  ratelimit.Policy
	store   ratelimit.Store
	memory  *ratelimit.Memory // the store, or the local fallback of a Redis store
	redis   *redisHandle
	down    *atomic.Bool // a store outage episode is under way
	stop    chan struct{}
	logger  *zap.Logger
	maxWait time.Duration
}

// ClassLimit is one class's budget.
type ClassLimit struct {
	// Rate is tokens per second.
	Rate float64 `json:"rate,omitempty"`
	// Burst is the bucket size. Default: one second's worth, at least 1.
	Burst int `json:"burst,omitempty"`
	// Unlimited admits every request of the class.
	Unlimited bool `json:"unlimited,omitempty"`
}

// Defaults of RateLimit.
const (
	DefaultMaxWait = 2 * time.Second
	DefaultMaxKeys = 100_000
)

// CaddyModule returns the Caddy module information.
func (RateLimit) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.mx_rate_limit",
		New: func() caddy.Module { return new(RateLimit) },
	}
}

// Provision builds the policy and the store.
func (rl *RateLimit) Provision(ctx caddy.Context) error {
	rl.logger = ctx.Logger()
	rl.down = new(atomic.Bool)
	if rl.ErrorFormat == "" {
		rl.ErrorFormat = FormatMDX
	}
	if rl.Mode == "" {
		rl.Mode = "reject"
	}
	if rl.Store == "" {
		rl.Store = "memory"
	}
	if rl.OnStoreError == "" {
		rl.OnStoreError = OnStoreErrorLocal
	}
	if rl.MaxKeys == 0 {
		rl.MaxKeys = DefaultMaxKeys
	}
	switch rl.Mode {
	case "reject":
		if rl.MaxWait != 0 {
			return errors.New("mx_rate_limit: max_wait applies only to mode wait")
		}
	case "wait":
		rl.maxWait = time.Duration(rl.MaxWait)
		if rl.maxWait == 0 {
			rl.maxWait = DefaultMaxWait
		}
		if rl.maxWait < 0 {
			return errors.New("mx_rate_limit: max_wait must be positive")
		}
	default:
		return fmt.Errorf("mx_rate_limit: mode must be reject or wait, not %q", rl.Mode)
	}
	var err error
	if rl.policy, err = buildPolicy(rl.Limits); err != nil {
		return fmt.Errorf("mx_rate_limit: %w", err)
	}
	if rl.memory, err = ratelimit.NewMemory(rl.policy, rl.MaxKeys); err != nil {
		return fmt.Errorf("mx_rate_limit: %w", err)
	}
	switch rl.Store {
	case "memory":
		if rl.RedisURL != "" {
			return errors.New("mx_rate_limit: redis_url needs store redis")
		}
		rl.store = rl.memory
	case "redis":
		if rl.Namespace == "" {
			return errors.New("mx_rate_limit: a Redis store needs a namespace (the Caddyfile sets one per site and directive)")
		}
		if err := checkOnStoreError(rl.OnStoreError); err != nil {
			return fmt.Errorf("mx_rate_limit: %w", err)
		}
		if rl.redis, err = openRedis(rl.RedisURL, time.Duration(rl.RedisTimeout)); err != nil {
			return fmt.Errorf("mx_rate_limit: %w", err)
		}
		if rl.store, err = ratelimit.NewRedis(rl.redis.client, "mxgate:rl:"+rl.Namespace+":", rl.policy); err != nil {
			return fmt.Errorf("mx_rate_limit: %w", err)
		}
	default:
		return fmt.Errorf("mx_rate_limit: store must be memory or redis, not %q", rl.Store)
	}
	rl.stop = make(chan struct{})
	go rl.sweep(rl.stop)
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	return nil
}

// buildPolicy fills the defaults into the configured limits.
func buildPolicy(limits map[string]*ClassLimit) (ratelimit.Policy, error) {
	p := ratelimit.MXPolicy()
	for name, cl := range limits {
		c, ok := ratelimit.ParseClass(name)
		if !ok {
			return p, fmt.Errorf("unknown class %q (want get, write, delete or other)", name)
		}
		if cl == nil {
			return p, fmt.Errorf("%s: empty limit", name)
		}
		if cl.Unlimited {
			if cl.Rate != 0 || cl.Burst != 0 {
				return p, fmt.Errorf("%s: unlimited takes no rate or burst", name)
			}
			p[c] = ratelimit.Limit{Rate: ratelimit.Inf}
			continue
		}
		burst := cl.Burst
		if burst == 0 {
			burst = max(1, int(math.Ceil(cl.Rate)))
		}
		p[c] = ratelimit.Limit{Rate: cl.Rate, Burst: burst}
	}
	return p, p.Validate()
}

// sweep drops refilled buckets now and then, until stop closes.
func (rl *RateLimit) sweep(stop chan struct{}) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			rl.memory.Sweep(now)
		}
	}
}

// Validate checks the configuration.
func (rl *RateLimit) Validate() error {
	if err := checkErrorFormat(rl.ErrorFormat); err != nil {
		return fmt.Errorf("mx_rate_limit: %w", err)
	}
	return nil
}

var (
	rejectRateLimited = rejection{status: http.StatusTooManyRequests, reason: "rate_limited", message: "Too many requests"}
	rejectStoreDown   = rejection{status: http.StatusServiceUnavailable, reason: "store_unavailable", message: "Service unavailable: rate limit store unreachable"}
)

// ServeHTTP admits, delays or refuses the request.
func (rl *RateLimit) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	class := ratelimit.ClassOf(r.Method)
	if rl.policy[class].Unlimited() {
		return next.ServeHTTP(w, r)
	}
	key := ""
	if rl.Key != "" {
		if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
			key = repl.ReplaceAll(rl.Key, "")
		}
	}
	now := time.Now()
	res, err := rl.store.Take(r.Context(), key, class, now, rl.maxWait)
	if err != nil {
		rl.storeFailed(err)
		if rl.OnStoreError == OnStoreErrorDeny {
			countRejection("mx_rate_limit", rejectStoreDown.reason)
			return rejectStoreDown.respond(w, rl.ErrorFormat)
		}
		res, _ = rl.memory.Take(r.Context(), key, class, now, rl.maxWait)
	} else if rl.redis != nil && rl.down.Load() && rl.down.Swap(false) {
		rl.logger.Info("rate limit store reachable again; shared budgets restored", zap.String("redis", rl.redis.addr))
	}

	h := w.Header()
	h.Set("RateLimit-Limit", strconv.Itoa(res.Limit))
	h.Set("RateLimit-Remaining", strconv.Itoa(res.Remaining))
	h.Set("RateLimit-Reset", strconv.FormatInt(res.ResetSeconds(), 10))
	cls := class.String()
	if !res.Allowed {
		metrics.rlRejected.WithLabelValues(cls).Inc()
		countRejection("mx_rate_limit", rejectRateLimited.reason)
		h.Set("Retry-After", strconv.FormatInt(res.RetryAfterSeconds(), 10))
		if ce := rl.logger.Check(zapcore.DebugLevel, "rate limited"); ce != nil {
			ce.Write(zap.String("class", cls), zap.Duration("retry_after", res.RetryAfter))
		}
		return rejectRateLimited.respond(w, rl.ErrorFormat)
	}
	if res.Delay > 0 {
		t := time.NewTimer(res.Delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			res.Cancel(r.Context(), time.Now())
			metrics.rlAbandoned.WithLabelValues(class.String()).Inc()
			// The client is gone: nobody reads an answer.
			return caddyhttp.Error(499, r.Context().Err())
		}
		metrics.rlWait.WithLabelValues(cls).Observe(res.Delay.Seconds())
	}
	metrics.rlAdmitted.WithLabelValues(cls).Inc()
	return next.ServeHTTP(w, r)
}

// storeFailed counts a store error and logs the first of an episode.
func (rl *RateLimit) storeFailed(err error) {
	metrics.storeErrors.WithLabelValues("mx_rate_limit").Inc()
	if !rl.down.Swap(true) {
		rl.logger.Error("rate limit store unreachable",
			zap.String("redis", rl.redis.addr), zap.String("on_store_error", rl.OnStoreError), zap.Error(err))
	}
}

// Cleanup stops the sweeper and releases the Redis client.
func (rl *RateLimit) Cleanup() error {
	if rl.stop != nil {
		close(rl.stop)
	}
	rl.redis.release()
	return nil
}

// namespaceFor derives a Redis namespace from a directive's tokens and its
// ordinal among directives with the same tokens, so that two directives (in
// one site or two) never share buckets by accident, while replicas loading
// the same Caddyfile agree.
func namespaceFor(tokens []string, ordinal int) string {
	h := sha256.New()
	for _, t := range tokens {
		h.Write([]byte(t))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:8]) + "-" + strconv.Itoa(ordinal)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*RateLimit)(nil)
	_ caddy.Validator             = (*RateLimit)(nil)
	_ caddy.CleanerUpper          = (*RateLimit)(nil)
	_ caddyhttp.MiddlewareHandler = (*RateLimit)(nil)
)
