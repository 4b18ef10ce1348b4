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

// Check records key and reports whether it was fresh (not recorded within
// the window, by any replica).
func (c *Redis) Check(ctx context.Context, key Key) (bool, error) {
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
