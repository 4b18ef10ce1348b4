package store

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"

	"github.com/mxgate/mxgate/caddymodule/internal/provision"
	"github.com/mxgate/mxgate/internal/redisbatch"
	"github.com/mxgate/mxgate/internal/redisconf"
)

// redisClients shares one client per Redis URL and timeout among every
// handler of every loaded config; the last user's release closes it.
var redisClients = caddy.NewUsagePool()

type pooledRedis struct {
	redis.UniversalClient
	batch *redisbatch.Batcher
}

func (p pooledRedis) Destruct() error { return p.UniversalClient.Close() }

// batchesInFlight is how many batches of commands each pooled client's
// Batcher keeps in flight. With one, the commands that come while a batch
// is out all go in the next, so batches are as deep as the load makes
// them; a command then waits at most one round trip more. Measured on
// the MDX chain (bench/mdx, BENCHMARKS.md): with one, 20 requests to a
// batch and the least CPU per request; with two, 9; with eight, 3.
const batchesInFlight = 1

// openRedis resolves placeholders in rawURL and the TLS file names and
// returns a pooled client (one Redis, a Sentinel group or a Cluster, as the
// URL says), the Batcher over it that its users share, its pool key and a
// log-safe description. Its errors never hold the URL or a credential.
func openRedis(rawURL string, tlsOpts redisconf.TLSOptions, timeout time.Duration) (redis.UniversalClient, *redisbatch.Batcher, string, string, error) {
	u := strings.TrimSpace(provision.Resolve(rawURL))
	if u == "" {
		return nil, nil, "", "", errors.New("redis URL is empty (an unset {env.*} variable?)")
	}
	tlsOpts = redisconf.TLSOptions{CAFile: provision.Resolve(tlsOpts.CAFile), CertFile: provision.Resolve(tlsOpts.CertFile),
		KeyFile: provision.Resolve(tlsOpts.KeyFile), ServerName: provision.Resolve(tlsOpts.ServerName)}
	opts, err := redisconf.Parse(u, redisconf.Options{TLS: tlsOpts, Timeout: timeout})
	if err != nil {
		return nil, nil, "", "", err // redisconf's errors name the part, never the URL
	}
	key := strings.Join([]string{u, tlsOpts.CAFile, tlsOpts.CertFile, tlsOpts.KeyFile, tlsOpts.ServerName, timeout.String()}, "\x00")
	opts.OnConnect = onConnect // see live.go
	v, _, err := redisClients.LoadOrNew(key, func() (caddy.Destructor, error) {
		c := redis.NewUniversalClient(opts)
		return pooledRedis{c, redisbatch.New(c, batchesInFlight)}, nil
	})
	if err != nil {
		return nil, nil, "", "", fmt.Errorf("redis client: %w", err)
	}
	p := v.(pooledRedis)
	return p.UniversalClient, p.batch, key, redisconf.Describe(u), nil
}
