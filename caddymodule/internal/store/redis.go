package store

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"

	"github.com/mxgate/mxgate/caddymodule/internal/gate"
	"github.com/mxgate/mxgate/internal/redisconf"
)

// redisClients shares one client per Redis URL and timeout among every
// handler of every loaded config; the last user's release closes it.
var redisClients = caddy.NewUsagePool()

type pooledRedis struct{ redis.UniversalClient }

func (p pooledRedis) Destruct() error { return p.UniversalClient.Close() }

// openRedis resolves placeholders in rawURL and the TLS file names and
// returns a pooled client (one Redis, a Sentinel group or a Cluster, as the
// URL says), its pool key and a log-safe description. Its errors never
// hold the URL or a credential.
func openRedis(rawURL string, tlsOpts redisconf.TLSOptions, timeout time.Duration) (redis.UniversalClient, string, string, error) {
	u := strings.TrimSpace(gate.Resolve(rawURL))
	if u == "" {
		return nil, "", "", errors.New("redis URL is empty (an unset {env.*} variable?)")
	}
	tlsOpts = redisconf.TLSOptions{CAFile: gate.Resolve(tlsOpts.CAFile), CertFile: gate.Resolve(tlsOpts.CertFile),
		KeyFile: gate.Resolve(tlsOpts.KeyFile), ServerName: gate.Resolve(tlsOpts.ServerName)}
	opts, err := redisconf.Parse(u, redisconf.Options{TLS: tlsOpts, Timeout: timeout})
	if err != nil {
		return nil, "", "", err // redisconf's errors name the part, never the URL
	}
	key := strings.Join([]string{u, tlsOpts.CAFile, tlsOpts.CertFile, tlsOpts.KeyFile, tlsOpts.ServerName, timeout.String()}, "\x00")
	opts.OnConnect = onConnect // see live.go
	v, _, err := redisClients.LoadOrNew(key, func() (caddy.Destructor, error) {
		return pooledRedis{redis.NewUniversalClient(opts)}, nil
	})
	if err != nil {
		return nil, "", "", fmt.Errorf("redis client: %w", err)
	}
	return v.(pooledRedis).UniversalClient, key, redisconf.Describe(u), nil
}
