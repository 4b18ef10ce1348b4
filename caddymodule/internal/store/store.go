// Package store is the one configuration of a directive's state, kept in
// this process or shared among replicas through Redis: the Caddyfile
// options (store, on_store_error, redis_timeout, namespace), the pooled
// Redis clients, the outage observer that logs once per episode and keeps
// the store metrics, and the usage pool that keeps security state (replay
// caches, rate-limit buckets) alive across configuration reloads.
package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/mxgate/mxgate/caddymodule/internal/caddyfileopt"
	"github.com/mxgate/mxgate/caddymodule/internal/metrics"
	"github.com/mxgate/mxgate/caddymodule/internal/provision"
	"github.com/mxgate/mxgate/caddymodule/internal/readiness"
	"github.com/mxgate/mxgate/internal/redisbatch"
	"github.com/mxgate/mxgate/internal/redisconf"
)

// Kinds of store.
const (
	Memory = "memory" // this process
	Redis  = "redis"  // shared by every replica using the same Redis and namespace
)

// What a directive does while its Redis store is unreachable.
const (
	OnErrorLocal = "local" // this replica's own state decides
	OnErrorDeny  = "deny"  // refuse with 503
)

// DefaultRedisTimeout bounds every Redis dial, read, write and pool wait.
const DefaultRedisTimeout = 250 * time.Millisecond

// Config is where a directive keeps its state. Handlers embed it, so its
// fields appear inline in their JSON.
type Config struct {
	// Store is "memory" (this process) or "redis" (shared by every replica
	// using the same Redis and Namespace). Default: memory.
	Store string `json:"store,omitempty"`

	// RedisURL is the Redis of a Redis store: one server
	// (redis://[user:password@]host:port[/db], rediss:// for TLS), a
	// Sentinel group (redis+sentinel://[user:password@]s1:26379,s2/master[/db])
	// or a Cluster (redis+cluster://[user:password@]n1,n2,n3), the last two
	// also over TLS (rediss+…); {env.*} and {file.*} placeholders work.
	RedisURL string `json:"redis_url,omitempty"`

	// RedisTLS configures TLS for a rediss URL: a CA file, a client
	// certificate and key, a server name. Default: the system's roots.
	RedisTLS *RedisTLS `json:"redis_tls,omitempty"`

	// RedisWaitReplicas is how many replicas must hold a recorded replay
	// key before it counts (Redis's WAIT, within half of RedisTimeout);
	// fewer is a store failure. Behind Sentinel a failover otherwise loses
	// what the old master had not replicated yet. Default: 1 for a
	// redis+sentinel URL, 0 otherwise. Rate limits never wait.
	RedisWaitReplicas *int `json:"redis_wait_replicas,omitempty"`

	// RedisTimeout bounds each Redis call. Default: 250ms.
	RedisTimeout caddy.Duration `json:"redis_timeout,omitempty"`

	// OnStoreError is what happens while Redis is unreachable: "local"
	// (this replica's own state decides) or "deny" (503). Default: local.
	OnStoreError string `json:"on_store_error,omitempty"`

	// Namespace names the directive's state: in Redis, and in this process
	// across configuration reloads. Two directives given the same
	// namespace share their state, on purpose. Default: a hash of what the
	// state protects (the site the directive is in; for an egress
	// mx_rate_limit, the MX client id of the credentials it is beside),
	// the directive, its role and the options that say what its state is
	// about; never keys or limits, nor where the directive stands in a
	// file. See Register.
	Namespace string `json:"namespace,omitempty"`
}

// RedisTLS is the TLS of a rediss URL; file names may hold placeholders.
type RedisTLS struct {
	CAFile     string `json:"ca_file,omitempty"`
	CertFile   string `json:"cert_file,omitempty"`
	KeyFile    string `json:"key_file,omitempty"`
	ServerName string `json:"server_name,omitempty"`
}

// UnmarshalOption reads the store option d is on, if it is one:
//
//	store memory | redis <url>
//	on_store_error local|deny
//	redis_timeout <duration>
//	redis_tls {
//		ca <file>
//		cert <file> <key file>
//		server_name <name>
//	}
//	namespace <name>
func (c *Config) UnmarshalOption(d *caddyfile.Dispenser) (bool, error) {
	var err error
	switch d.Val() {
	case "redis_tls":
		if d.NextArg() {
			return true, d.ArgErr()
		}
		c.RedisTLS = new(RedisTLS)
		for nesting := d.Nesting(); d.NextBlock(nesting); {
			switch d.Val() {
			case "ca":
				c.RedisTLS.CAFile, err = caddyfileopt.String(d)
			case "cert":
				args := d.RemainingArgs()
				if len(args) != 2 {
					return true, d.Err("cert takes a certificate file and a key file")
				}
				c.RedisTLS.CertFile, c.RedisTLS.KeyFile = args[0], args[1]
			case "server_name":
				c.RedisTLS.ServerName, err = caddyfileopt.String(d)
			default:
				return true, caddyfileopt.Unrecognized(d, "redis_tls")
			}
			if err != nil {
				return true, err
			}
			if err := caddyfileopt.NoMoreArgs(d); err != nil {
				return true, err
			}
		}
	case "store":
		args := d.RemainingArgs()
		switch {
		case len(args) == 1 && args[0] == Memory:
			c.Store = Memory
		case len(args) == 2 && args[0] == Redis:
			c.Store, c.RedisURL = Redis, args[1]
		default:
			return true, d.Err("store takes `memory` or `redis <url>`")
		}
	case "on_store_error":
		c.OnStoreError, err = caddyfileopt.OneOf(d, OnErrorLocal, OnErrorDeny)
	case "redis_timeout":
		c.RedisTimeout, err = caddyfileopt.PositiveDuration(d)
	case "redis_wait_replicas":
		var v string
		if v, err = caddyfileopt.String(d); err == nil {
			n, perr := strconv.Atoi(v)
			if perr != nil || n < 0 {
				return true, d.Errf("redis_wait_replicas: invalid number '%s' (0 or more)", v)
			}
			c.RedisWaitReplicas = &n
		}
	case "namespace":
		if c.Namespace, err = caddyfileopt.String(d); err == nil {
			if nerr := CheckNamespace(c.Namespace); nerr != nil {
				return true, d.Err(nerr.Error())
			}
		}
	default:
		return false, nil
	}
	return true, err
}

// Provisioned is a directive's store, ready to use once its state is
// named (bound): Namespace and Health are set then.
type Provisioned struct {
	Namespace string
	Client    redis.UniversalClient // nil for a memory store
	FailOpen  bool                  // on_store_error local
	Health    *Health               // nil for a memory store
	Timeout   time.Duration         // each Redis call
	Wait      int                   // replicas a recorded replay key must reach
	// Batch runs the hot commands (a replay record, a budget's script)
	// of concurrent requests in shared round trips; nil for a memory
	// store.
	Batch *redisbatch.Batcher
	// Cluster: the store is a Redis Cluster, whose slots keep a replay
	// record and a budget apart (see pair.go).
	Cluster bool

	directive  string
	logger     *zap.Logger
	addr       string // the Redis's log-safe description
	policy     string // on_store_error
	poolKey    string
	unregister func()
}

// Validate checks c's options among themselves, and takes nothing: the
// directive that embeds c calls it before anything is taken, and so does
// Provision.
func (c *Config) Validate() error {
	if err := CheckNamespace(c.Namespace); err != nil {
		return err
	}
	switch c.Store {
	case "", Memory:
		if c.RedisURL != "" || c.OnStoreError != "" || c.RedisTimeout != 0 || c.RedisTLS != nil || c.RedisWaitReplicas != nil {
			return errors.New("redis_url, on_store_error, redis_timeout, redis_tls and redis_wait_replicas need `store redis <url>`")
		}
		return nil
	case Redis:
	default:
		return fmt.Errorf("store must be memory or redis, not %q", c.Store)
	}
	switch c.OnStoreError {
	case "", OnErrorLocal, OnErrorDeny:
	default:
		return fmt.Errorf("on_store_error must be local or deny, not %q", c.OnStoreError)
	}
	if c.RedisTimeout < 0 {
		return errors.New("redis_timeout must be positive")
	}
	return nil
}

// Provision checks c (Validate), fills its defaults and, for a Redis
// store, takes a pooled client. The state is named later, when the
// configuration is loaded (see Register). Errors never hold the URL.
func (c *Config) Provision(ctx caddy.Context, directive string) (*Provisioned, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.Store == "" {
		c.Store = Memory
	}
	p := &Provisioned{directive: directive, logger: ctx.Logger()}
	if c.Store == Memory {
		return p, nil
	}
	if c.OnStoreError == "" {
		c.OnStoreError = OnErrorLocal
	}
	timeout := time.Duration(c.RedisTimeout)
	if timeout == 0 {
		timeout = DefaultRedisTimeout
	}
	var tlsOpts redisconf.TLSOptions
	if t := c.RedisTLS; t != nil {
		tlsOpts = redisconf.TLSOptions{CAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile, ServerName: t.ServerName}
	}
	client, batch, key, addr, err := openRedis(c.RedisURL, tlsOpts, timeout)
	if err != nil {
		return nil, err
	}
	p.Client, p.Batch, p.poolKey, p.FailOpen, p.Timeout = client, batch, key, c.OnStoreError == OnErrorLocal, timeout
	p.addr, p.policy = addr, c.OnStoreError
	t, err := redisconf.ParseTarget(provision.Resolve(c.RedisURL))
	p.Cluster = err == nil && t.Topology == redisconf.Cluster
	if c.RedisWaitReplicas != nil {
		p.Wait = *c.RedisWaitReplicas
	} else if err == nil && t.Topology == redisconf.Sentinel {
		p.Wait = 1
	}
	return p, nil
}

// CheckNamespace checks a namespace the operator gives. A namespace is
// one part of a Redis key (mxgate:rl:<namespace>:<class>:<key>,
// mxgate:replay:<namespace>:…), so it must not hold the separator ':':
// otherwise a budget named "a" and one named "a:get" would share keys,
// one of them chosen by a client (the key), and an ACL pattern
// mxgate:rl:a:* would cover the other's. Nor may it hold what an ACL key
// pattern reads as a wildcard (* ? [ ] \), white space or control
// characters. The empty namespace (none given) passes.
func CheckNamespace(ns string) error {
	for _, r := range ns {
		if r == ':' || r == '*' || r == '?' || r == '[' || r == ']' || r == '\\' || r <= ' ' || r == 0x7f || unicode.IsSpace(r) || unicode.IsControl(r) {
			return fmt.Errorf("namespace %q: a namespace must not hold ':', '*', '?', '[', ']', '\\', white space or control characters "+
				"(it is part of Redis keys and ACL key patterns); use letters, digits, '-', '_' and '.'", ns)
		}
	}
	return nil
}

// bindNamespace names the store's state: for a Redis store, it sets up
// the health observer (its gauge is labelled with the namespace), checks
// the store once, and makes it a dependency of readiness.
func (p *Provisioned) bindNamespace(namespace string) {
	p.Namespace = namespace
	if p.Client == nil || p.Health != nil {
		return
	}
	p.Health = newHealth(p.logger, p.directive, namespace, p.addr, p.policy)
	client, timeout := p.Client, p.Timeout
	pctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := client.Ping(pctx).Err(); err != nil {
		p.Health.Failed(err)
	} else {
		p.Health.Succeeded()
	}
	p.unregister = readiness.Register(readiness.Dependency{
		Name: p.directive + " store (namespace " + namespace + ")",
		Check: func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			if err := client.Ping(ctx).Err(); err != nil {
				return errors.New("the Redis store is unreachable")
			}
			return nil
		},
	})
}

// Release drops the directive's reference to its Redis client.
func (p *Provisioned) Release() {
	if p == nil {
		return
	}
	if p.unregister != nil {
		p.unregister()
		p.unregister = nil
	}
	if p.poolKey != "" {
		_, _ = redisClients.Delete(p.poolKey)
		p.poolKey = ""
	}
}

// Healthy reports whether the store answered its last call (always true
// for a memory store).
func (p *Provisioned) Healthy() bool { return p.Health == nil || !p.Health.down.Load() }

// Health observes a Redis store's calls: it counts failures, keeps the
// mxgate_store_up gauge, and logs an outage once when it starts and once
// when it ends. It also hears of a store found to have lost its data
// (mxgate_store_data_lost_total). It is safe for concurrent use.
type Health struct {
	logger    *zap.Logger
	up        prometheus.Gauge
	errs      prometheus.Counter
	lost      prometheus.Counter
	addr      string // host list, never credentials
	namespace string
	policy    string
	down      atomic.Bool
	noWatch   atomic.Bool            // CannotWatch was logged
	change    atomic.Pointer[func()] // called when an outage starts or ends
}

// onChange has f called whenever an outage starts or ends.
func (h *Health) onChange(f func()) { h.change.Store(&f) }

func (h *Health) changed() {
	if f := h.change.Load(); f != nil {
		(*f)()
	}
}

func newHealth(logger *zap.Logger, directive, namespace, addr, policy string) *Health {
	h := &Health{logger: logger, addr: addr, namespace: namespace, policy: policy,
		up:   metrics.StoreUp.WithLabelValues(directive, namespace),
		errs: metrics.StoreErrors.WithLabelValues(directive),
		lost: metrics.StoreLost.WithLabelValues(directive, namespace)} // at 0 from the start
	return h
}

// Failed records a failed call.
func (h *Health) Failed(err error) {
	h.errs.Inc()
	h.up.Set(0)
	if !h.down.Swap(true) { // errors carry the cause, never the URL or a password
		h.logger.Error("shared store unreachable", zap.String("redis", h.addr),
			zap.String("on_store_error", h.policy), zap.Error(err))
		h.changed()
	}
}

// WroteBack records that the n entries this replica holds (with those it
// kept alone during an outage) were written to the shared store, after
// an outage or a loss of the store's data.
func (h *Health) WroteBack(n int) {
	h.logger.Info("wrote back to the shared store every signature this replica holds",
		zap.String("redis", h.addr), zap.String("namespace", h.namespace), zap.Int("entries", n))
}

// LostData records that the shared store was found to have lost its data
// (once per loss and replica): requests are held for grace while the
// replicas write back what they hold.
func (h *Health) LostData(grace time.Duration) {
	h.lost.Inc()
	h.logger.Error("the shared replay cache lost its data (Redis restarted empty, was flushed, or failed over to a replica without it): "+
		"signatures used before may be admitted again; give Redis persistence (appendonly) or replicas. "+
		"Writing back every signature this replica holds; new signatures wait for the other replicas to write back theirs",
		zap.String("redis", h.addr), zap.String("namespace", h.namespace), zap.Duration("replay_loss_grace", grace))
}

// CannotWatch records, once, that the store refuses the blocking call that
// watches its connection.
func (h *Health) CannotWatch(err error) {
	if !h.noWatch.Swap(true) {
		h.logger.Warn("the shared store refuses BLPOP, which watches its connection: a Redis restart is noticed within a second instead of at once; allow BLPOP on the namespace's keys",
			zap.String("redis", h.addr), zap.String("namespace", h.namespace), zap.Error(err))
	}
}

// Succeeded records a successful call.
func (h *Health) Succeeded() {
	if h.down.Load() && h.down.Swap(false) {
		h.logger.Info("shared store reachable again", zap.String("redis", h.addr))
		h.changed()
	}
	h.up.Set(1)
}
