package store

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"

	"github.com/mxgate/mxgate/caddymodule/internal/gate"
)

// redisClients shares one client per Redis URL and timeout among every
// handler of every loaded config; the last user's release closes it.
var redisClients = caddy.NewUsagePool()

type pooledRedis struct{ redis.UniversalClient }

func (p pooledRedis) Destruct() error { return p.UniversalClient.Close() }

// openRedis resolves placeholders in rawURL and returns a pooled client,
// its pool key and a log-safe address. Its errors never hold the URL.
func openRedis(rawURL string, timeout time.Duration) (redis.UniversalClient, string, string, error) {
	u := strings.TrimSpace(gate.Resolve(rawURL))
	if u == "" {
		return nil, "", "", errors.New("redis URL is empty (an unset {env.*} variable?)")
	}
	opts, err := redis.ParseURL(u)
	if err != nil {
		return nil, "", "", errors.New("redis URL is invalid; want redis://[user:password@]host:port[/db] or rediss://…")
	}
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout, opts.PoolTimeout = timeout, timeout, timeout, timeout
	opts.MaxRetries = -1 // a retry doubles the worst case; the breaker handles outages
	opts.ContextTimeoutEnabled = true
	key := u + "\x00" + timeout.String()
	v, _, err := redisClients.LoadOrNew(key, func() (caddy.Destructor, error) {
		return pooledRedis{redis.NewClient(opts)}, nil
	})
	if err != nil {
		return nil, "", "", fmt.Errorf("redis client: %w", err)
	}
	return v.(pooledRedis).UniversalClient, key, opts.Addr, nil
}
