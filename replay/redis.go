package replay

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mxgate/mxgate/internal/breaker"
)

// ErrUnavailable is returned (wrapped) when Redis cannot be reached, and,
// without trying Redis, while the cache waits to probe it again.
var ErrUnavailable = errors.New("replay: store unavailable")

// Redis is a replay cache shared by every replica that uses the same Redis
// and prefix: a key is recorded with SET NX PX, so a signature replayed
// against another replica is caught too. It is safe for concurrent use.
type Redis struct {
	client  redis.Cmdable
	prefix  string
	window  time.Duration
	breaker breaker.Breaker
}

// NewRedis returns a Redis cache remembering each key for window.
func NewRedis(client redis.Cmdable, prefix string, window time.Duration) (*Redis, error) {
	if client == nil {
		return nil, errors.New("replay: nil Redis client")
	}
	if window < time.Millisecond {
		return nil, errors.New("replay: window must be at least 1ms")
	}
	return &Redis{client: client, prefix: prefix, window: window}, nil
}

// Check implements Store: it records key and reports whether it was fresh
// (not recorded within the window, by any replica). Redis's clock, not
// now, times the window.
func (c *Redis) Check(ctx context.Context, key Key, _ time.Time) (bool, error) {
	if !c.breaker.Allow() {
		return false, ErrUnavailable
	}
	ok, err := c.client.SetNX(ctx, c.prefix+hex.EncodeToString(key[:]), 1, c.window).Result()
	if err != nil {
		c.breaker.Fail()
		return false, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	c.breaker.Succeed()
	return ok, nil
}

// Restore records entries (each for what is left of its window at now)
// without overwriting a key already there, in one pipelined round trip.
// It is how keys admitted while Redis was unreachable are written back.
func (c *Redis) Restore(ctx context.Context, entries []Entry, now time.Time) error {
	p := c.client.Pipeline()
	n := 0
	for _, e := range entries {
		if ttl := e.Expires.Sub(now); ttl >= time.Millisecond {
			p.SetNX(ctx, c.prefix+hex.EncodeToString(e.Key[:]), 1, ttl)
			n++
		}
	}
	if n == 0 {
		return nil
	}
	if _, err := p.Exec(ctx); err != nil {
		c.breaker.Fail()
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	c.breaker.Succeed()
	return nil
}

// Healthy reports whether the last call to Redis succeeded.
func (c *Redis) Healthy() bool { return c.breaker.Healthy() }

// SetProbeInterval sets how long after a failure Check waits before
// trying Redis again. Default: 1s.
func (c *Redis) SetProbeInterval(d time.Duration) { c.breaker.Probe = d }
