// Package limit is the mx_rate_limit handler: per-verb token-bucket
// budgets, by default MX's per-client limits, kept in this process or
// shared among replicas through Redis, and no way around them by the
// spelling of a method.
package limit

import (
	"cmp"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mxgate/mxgate/caddymodule/internal/client"
	"github.com/mxgate/mxgate/caddymodule/internal/metrics"
	"github.com/mxgate/mxgate/caddymodule/internal/provision"
	"github.com/mxgate/mxgate/caddymodule/internal/refusal"
	"github.com/mxgate/mxgate/caddymodule/internal/store"
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
// Methods are case-sensitive (RFC 9110), Go's server accepts any token as
// one, and an upstream may still treat `get` as GET; so by default a
// method other than GET, HEAD, POST, PUT, PATCH, DELETE and OPTIONS,
// spelt exactly so, is refused with 501 before it draws on any budget.
// With Methods "any" every method is admitted, classified case-blind
// (`get` draws on the GET budget) and anything else on the other budget.
//
// The budget is named by what it protects (see store.Register): its site,
// or, beside MX credentials (mx_auth attach, mxconnect_token), the MX
// client id. With a Redis store, every replica whose budget has the same
// name shares it exactly. The in-memory buckets (the store, or a Redis
// store's fallback) outlive configuration reloads: a reload neither
// refills them nor forgets them, and new limits apply to them.
type RateLimit struct {
	// Limits maps a class (get, write, delete, other) to its budget.
	// Default: get 2000/s, write 750/s, delete 150/s, each with a burst of
	// one second's worth; other unlimited.
	Limits map[string]*ClassLimit `json:"limits,omitempty"`

	// Key selects the budget a request draws on; placeholders are
	// evaluated per request, e.g. {http.vars.client_ip} or
	// {http.request.header.X-Client}. A placeholder whose value is an IP
	// address stands for its group (IPv4Prefix, IPv6Prefix). A key that
	// evaluates to empty draws on the shared empty-key budget. Default: one
	// budget for the whole site.
	Key string `json:"key,omitempty"`

	// IPv4Prefix and IPv6Prefix group the client addresses in keys: each
	// placeholder of Key whose value is an IP address, in any of its
	// spellings (upper or lower case, leading zeros, ::, a %zone, a :port,
	// brackets; an IPv4-mapped IPv6 address counts as IPv4), is replaced
	// by the address's prefix of this many bits, so that every address of
	// one prefix draws on one budget. Default: 32 (each IPv4 address) and
	// 64 (each IPv6 /64, what a single client is commonly given).
	IPv4Prefix int `json:"ipv4_prefix,omitempty"`
	IPv6Prefix int `json:"ipv6_prefix,omitempty"`

	// Mode is "reject" (refuse at once) or "wait" (hold the request until a
	// token is free, if within MaxWait). Default: reject.
	Mode string `json:"mode,omitempty"`

	// MaxWait, in wait mode, is the longest a request is held; one that
	// would wait longer is refused at once. Default: 2s.
	MaxWait caddy.Duration `json:"max_wait,omitempty"`

	// Methods is "standard" (only GET, HEAD, POST, PUT, PATCH, DELETE and
	// OPTIONS, spelt in capitals, pass; any other method is refused with
	// 501 Not Implemented) or "any" (every method passes, classified
	// whatever its case; methods of no class draw on the other budget,
	// which is unlimited unless set). Default: standard.
	Methods string `json:"methods,omitempty"`

	// Where the buckets are kept: this process (default) or Redis.
	store.Config

	// MaxKeys caps the keys held in memory (rounded up to a multiple of
	// 64). A key's buckets are dropped only when they are all full (the
	// same as new ones); at the cap, with none of the least recently used
	// keys full, a new key draws on one overflow budget, of the same
	// limits, shared by every such key. A change takes effect with fresh
	// buckets. Default: 100000.
	MaxKeys int `json:"max_keys,omitempty"`

	// ErrorFormat is how a refusal is written: mdx, json, fdx, text or
	// handle_errors. Default: mdx.
	ErrorFormat string `json:"error_format,omitempty"`

	policy   ratelimit.Policy
	grouping ratelimit.Grouping
	// limitText is each class's bucket size as RateLimit-Limit sends it.
	limitText [ratelimit.NumClasses]string
	shared    *store.Provisioned
	binding   *store.Binding[bound]
	format    refusal.Format
	logger    *zap.Logger
	maxWait   time.Duration
	now       func() time.Time
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

// The values of RateLimit.Methods.
const (
	MethodsStandard = "standard"
	MethodsAny      = "any"
)

// allowStandard is the Allow header of a 501.
const allowStandard = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"

// CaddyModule returns the Caddy module information.
func (RateLimit) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.mx_rate_limit",
		New: func() caddy.Module { return new(RateLimit) },
	}
}

// Validate checks the options among themselves, taking nothing. Caddy
// calls it after Provision; Provision calls it first, so that a bad
// configuration fails before the buckets or a Redis client are taken.
func (rl *RateLimit) Validate() (err error) {
	defer provision.NameDirective(&err, "mx_rate_limit")
	if _, err := refusal.ParseFormat(rl.ErrorFormat, refusal.FormatMDX); err != nil {
		return err
	}
	if rl.MaxKeys < 0 {
		return fmt.Errorf("max_keys must be positive")
	}
	switch rl.Mode {
	case "", "reject":
		if rl.MaxWait != 0 {
			return fmt.Errorf("max_wait applies only to mode wait")
		}
	case "wait":
		if rl.MaxWait < 0 {
			return fmt.Errorf("max_wait must be positive")
		}
	default:
		return fmt.Errorf("mode must be reject or wait, not %q", rl.Mode)
	}
	switch rl.Methods {
	case "", MethodsStandard, MethodsAny:
	default:
		return fmt.Errorf("methods must be %s or %s, not %q", MethodsStandard, MethodsAny, rl.Methods)
	}
	if _, err := buildPolicy(rl.Limits); err != nil {
		return err
	}
	if rl.IPv4Prefix < 0 || rl.IPv4Prefix > 32 {
		return fmt.Errorf("ipv4_prefix must be 1 to 32, not %d", rl.IPv4Prefix)
	}
	if rl.IPv6Prefix < 0 || rl.IPv6Prefix > 128 {
		return fmt.Errorf("ipv6_prefix must be 1 to 128, not %d", rl.IPv6Prefix)
	}
	return rl.Config.Validate()
}

// Provision checks the options (Validate), builds the policy and takes
// the buckets.
func (rl *RateLimit) Provision(ctx caddy.Context) (err error) {
	if err := rl.Validate(); err != nil {
		return err // named by Validate
	}
	defer provision.NameDirective(&err, "mx_rate_limit")
	rl.logger = ctx.Logger()
	if rl.now == nil {
		rl.now = time.Now
	}
	if rl.format, err = refusal.ParseFormat(rl.ErrorFormat, refusal.FormatMDX); err != nil {
		return err
	}
	if rl.MaxKeys == 0 {
		rl.MaxKeys = DefaultMaxKeys
	}
	if rl.Mode == "" {
		rl.Mode = "reject"
	}
	if rl.Mode == "wait" {
		rl.maxWait = cmp.Or(time.Duration(rl.MaxWait), DefaultMaxWait)
	}
	if rl.Methods == "" {
		rl.Methods = MethodsStandard
	}
	if rl.policy, err = buildPolicy(rl.Limits); err != nil {
		return err
	}
	rl.grouping = ratelimit.DefaultGrouping
	if rl.IPv4Prefix != 0 {
		rl.grouping.IPv4Bits = rl.IPv4Prefix
	}
	if rl.IPv6Prefix != 0 {
		rl.grouping.IPv6Bits = rl.IPv6Prefix
	}
	for c, l := range rl.policy {
		rl.limitText[c] = strconv.Itoa(l.Burst)
	}
	if rl.shared, err = rl.Config.Provision(ctx, "mx_rate_limit"); err != nil {
		return err
	}
	spec := store.Spec{Directive: "mx_rate_limit", Kind: "rl", Options: []string{"key", rl.Key},
		Limits: policyText(rl.policy), MayBeEgress: true, DecidesClaims: true}
	if rl.binding, err = store.Register(ctx, rl, rl.shared, rl.Namespace, spec, rl.bind); err != nil {
		return err // Caddy calls Cleanup after a failed Provision
	}
	return metrics.Register(ctx.GetMetricsRegistry())
}

// bound is the handler's state once named.
type bound struct {
	store ratelimit.Store
	// For a Redis store: the shared buckets and the store over them and
	// the local ones, for the replay claims decided with a take.
	redis    *ratelimit.Redis
	fallback *ratelimit.Fallback
}

// bind takes the buckets named n: in memory from the pool that keeps them
// across reloads (with this configuration's limits), and, for a Redis
// store, the shared buckets over them.
func (rl *RateLimit) bind(n store.Naming) (*bound, func(), error) {
	local, release, err := store.State(fmt.Sprintf("ratelimit:%s:%d", n.Namespace, rl.MaxKeys), func() (*ratelimit.Memory, func(), error) {
		m, err := ratelimit.NewMemory(rl.policy, rl.MaxKeys)
		if err != nil {
			return nil, nil, err
		}
		return m, sweepEvery(m, time.Minute), nil
	})
	if err != nil {
		return nil, nil, err
	}
	if err := local.SetPolicy(rl.policy); err != nil {
		release()
		return nil, nil, err
	}
	b := &bound{store: local}
	if rl.shared.Client != nil {
		shared, err := ratelimit.NewRedis(rl.shared.Client, "mxgate:rl:"+n.Namespace+":", rl.policy)
		if err != nil {
			release()
			return nil, nil, err
		}
		shared.SetBatcher(rl.shared.Batch)
		b.redis = shared
		b.fallback = &ratelimit.Fallback{Shared: shared, Local: local, FailClosed: !rl.shared.FailOpen, Observer: rl.shared.Health}
		b.store = b.fallback
	}
	return b, release, nil
}

// policyText describes p, as a namespace records it.
func policyText(p ratelimit.Policy) string {
	var parts []string
	for c, l := range p {
		name := ratelimit.Class(c).String()
		if l.Unlimited() {
			parts = append(parts, name+" unlimited")
			continue
		}
		parts = append(parts, name+" "+strconv.FormatFloat(l.Rate, 'g', -1, 64)+"/s burst "+strconv.Itoa(l.Burst))
	}
	return strings.Join(parts, ", ")
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

// sweepEvery drops refilled buckets of m every period until the returned
// stop is called.
func sweepEvery(m *ratelimit.Memory, period time.Duration) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				m.Sweep(now)
			}
		}
	}()
	return func() { close(done) }
}

var (
	refuseMethod      = refusal.Refusal{Status: http.StatusNotImplemented, Reason: "method_not_implemented", Message: "Method not implemented"}
	refuseRateLimited = refusal.Refusal{Status: http.StatusTooManyRequests, Reason: "rate_limited", Message: "Too many requests"}
	refuseStoreDown   = refusal.Refusal{Status: http.StatusServiceUnavailable, Reason: "store_unavailable", Message: "Service unavailable: rate limit store unreachable"}
	refuseUnbound     = refusal.Refusal{Status: http.StatusServiceUnavailable, Reason: "state_unavailable", Message: "Service unavailable: rate limit state not ready"}
)

// ServeHTTP admits, delays or refuses the request. A replay record that
// mdx_hmac verify, right before it, left to it (store.ReplayClaim) is
// decided first, whichever way the request goes: in the same Redis call
// as the token when there is one to take, on its own otherwise.
func (rl *RateLimit) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	claim := store.PendingClaim(r)
	if rl.Methods == MethodsStandard && !ratelimit.Standard(r.Method) {
		if claim != nil {
			if ok, err := claim.Decide(w, r); !ok {
				return err
			}
		}
		w.Header().Set("Allow", allowStandard)
		if ce := rl.logger.Check(zapcore.DebugLevel, "method not implemented"); ce != nil {
			ce.Write(zap.String("method", r.Method), zap.String("client_ip", client.IP(r)))
		}
		refusal.CloseUnread(w, r)
		return refusal.Refuse(w, r, "mx_rate_limit", rl.format, refuseMethod)
	}
	class := ratelimit.ClassOf(r.Method)
	b, err := rl.binding.Get()
	if claim != nil && (err != nil || b.redis == nil || !claim.For(rl) || rl.policy[class].Unlimited()) {
		if ok, err := claim.Decide(w, r); !ok {
			return err
		}
		claim = nil
	}
	if rl.policy[class].Unlimited() {
		return next.ServeHTTP(w, r)
	}
	if err != nil {
		w.Header().Set("Retry-After", "1")
		refusal.CloseUnread(w, r)
		return refusal.Refuse(w, r, "mx_rate_limit", rl.format, refuseUnbound)
	}
	key, now := rl.key(r), rl.now()
	var res ratelimit.Result
	took := false
	if claim != nil {
		d := claim.DecideWith(w, r, b.redis, b.fallback, key, class, now, rl.maxWait)
		if d.Refused {
			return d.Err
		}
		res, err, took = d.Res, d.TakeErr, d.Took
	}
	if !took {
		res, err = b.store.Take(r.Context(), key, class, now, rl.maxWait)
	}
	if err != nil {
		w.Header().Set("Retry-After", "1")
		refusal.CloseUnread(w, r)
		return refusal.Refuse(w, r, "mx_rate_limit", rl.format, refuseStoreDown)
	}
	h := w.Header()
	rl.setRateHeaders(h, class, res)
	cls := class.String()
	if res.Overflow {
		classMetrics[class].overflow.Inc()
	}
	if !res.Allowed {
		classMetrics[class].rejected.Inc()
		h.Set("Retry-After", strconv.FormatInt(res.RetryAfterSeconds(), 10))
		if ce := rl.logger.Check(zapcore.DebugLevel, "rate limited"); ce != nil {
			ce.Write(zap.String("class", cls), zap.Duration("retry_after", res.RetryAfter))
		}
		refusal.CloseUnread(w, r)
		return refusal.Refuse(w, r, "mx_rate_limit", rl.format, refuseRateLimited)
	}
	if res.Delay > 0 {
		t := time.NewTimer(res.Delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			res.Cancel(r.Context(), rl.now())
			classMetrics[class].abandoned.Inc()
			// The client is gone: nobody reads an answer.
			return caddyhttp.Error(499, r.Context().Err())
		}
		classMetrics[class].wait.Observe(res.Delay.Seconds())
	}
	classMetrics[class].admitted.Inc()
	return next.ServeHTTP(w, r)
}

// key evaluates Key for r, each placeholder whose value is a client
// address standing for the address's group. Without a replacer (a request
// not served by Caddy's server) it is the empty key.
func (rl *RateLimit) key(r *http.Request) string {
	if rl.Key == "" {
		return ""
	}
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		return ""
	}
	key, err := repl.ReplaceFunc(rl.Key, rl.group)
	if err != nil { // malformed placeholders in Key itself: one budget
		return ""
	}
	return key
}

// group is the caddy.ReplacementFunc of key.
func (rl *RateLimit) group(_ string, val any) (any, error) {
	if s, ok := val.(string); ok {
		return rl.grouping.Key(s), nil
	}
	return rl.grouping.Key(caddy.ToString(val)), nil
}

// classMetrics are the rate-limit metrics of each class, looked up once
// rather than by label on every request.
var classMetrics = func() (m [ratelimit.NumClasses]struct {
	admitted, rejected, abandoned, overflow prometheus.Counter
	wait                                    prometheus.Observer
}) {
	for c := range ratelimit.NumClasses {
		cls := c.String()
		m[c].admitted = metrics.RLAdmitted.WithLabelValues(cls)
		m[c].rejected = metrics.RLRejected.WithLabelValues(cls)
		m[c].abandoned = metrics.RLAbandoned.WithLabelValues(cls)
		m[c].overflow = metrics.RLOverflow.WithLabelValues(cls)
		m[c].wait = metrics.RLWait.WithLabelValues(cls)
	}
	return m
}()

// setRateHeaders sets RateLimit-Limit, -Remaining and -Reset in one
// allocation for the three values (numbers under 100 are Go's static
// strings), where three Header.Set calls made six.
func (rl *RateLimit) setRateHeaders(h http.Header, class ratelimit.Class, res ratelimit.Result) {
	v := new([3]string)
	if res.Limit == rl.policy[class].Burst {
		v[0] = rl.limitText[class]
	} else {
		v[0] = strconv.Itoa(res.Limit)
	}
	v[1] = strconv.Itoa(res.Remaining)
	v[2] = strconv.FormatInt(res.ResetSeconds(), 10)
	h["Ratelimit-Limit"] = v[0:1:1]
	h["Ratelimit-Remaining"] = v[1:2:2]
	h["Ratelimit-Reset"] = v[2:3:3]
}

// Cleanup lets go of the buckets and the Redis client.
func (rl *RateLimit) Cleanup() error {
	rl.binding.Release()
	rl.shared.Release()
	rl.binding, rl.shared = nil, nil
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*RateLimit)(nil)
	_ caddy.Validator             = (*RateLimit)(nil)
	_ caddy.CleanerUpper          = (*RateLimit)(nil)
	_ caddyhttp.MiddlewareHandler = (*RateLimit)(nil)
)
