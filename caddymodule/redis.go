package caddymodule

import (
	"errors"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
)

// redisClients shares one client per Redis URL and timeout among every
// handler of every loaded config; the last user's Cleanup closes it.
var redisClients = caddy.NewUsagePool()

type pooledRedis struct{ *redis.Client }

func (p pooledRedis) Destruct() error { return p.Client.Close() }

// DefaultRedisTimeout bounds every Redis dial, read, write and pool wait.
const DefaultRedisTimeout = 250 * time.Millisecond

// redisHandle is a handler's reference to a pooled client.
type redisHandle struct {
	client  *redis.Client
	poolKey string
	addr    string // host:port, for logs; never the URL (it may hold a password)
}

// openRedis resolves placeholders in rawURL and returns a pooled client.
// Its errors never contain the URL.
func openRedis(rawURL string, timeout time.Duration) (*redisHandle, error) {
	u := caddy.NewReplacer().ReplaceKnown(rawURL, "")
	if u == "" {
		return nil, errors.New("redis URL is empty (an unset {env.*} variable?)")
	}
	opts, err := redis.ParseURL(u)
	if err != nil {
		return nil, errors.New("redis URL is invalid; want redis://[user:password@]host:port[/db] or rediss://…")
	}
	if timeout <= 0 {
		timeout = DefaultRedisTimeout
	}
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout, opts.PoolTimeout = timeout, timeout, timeout, timeout
	opts.MaxRetries = -1 // a retry doubles the worst case; the breaker handles outages
	opts.ContextTimeoutEnabled = true
	key := u + "\x00" + timeout.String()
	v, _, err := redisClients.LoadOrNew(key, func() (caddy.Destructor, error) {
		return pooledRedis{redis.NewClient(opts)}, nil
	})
	if err != nil {
		return nil, fmt.Errorf("redis client: %w", err)
	}
	return &redisHandle{client: v.(pooledRedis).Client, poolKey: key, addr: opts.Addr}, nil
}

func (h *redisHandle) release() {
	if h != nil {
		_, _ = redisClients.Delete(h.poolKey)
	}
}

// storeErrorPolicy is what a handler does when its Redis store fails.
const (
	OnStoreErrorLocal = "local" // use this replica's own in-memory state
	OnStoreErrorDeny  = "deny"  // refuse the request with 503
)

func checkOnStoreError(s string) error {
	if s != OnStoreErrorLocal && s != OnStoreErrorDeny {
		return fmt.Errorf("on_store_error must be local or deny, not %q", s)
	}
	return nil
}

// parseStore reads `store memory` or `store redis <url>` from args.
func parseStore(args []string) (store, url string, err error) {
	switch {
	case len(args) == 1 && args[0] == "memory":
		return "memory", "", nil
	case len(args) == 2 && args[0] == "redis":
		return "redis", args[1], nil
	}
	return "", "", errors.New("store takes `memory` or `redis <url>`")
}
