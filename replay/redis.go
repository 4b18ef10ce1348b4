package replay

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mxgate/mxgate/internal/breaker"
	"github.com/mxgate/mxgate/internal/redisbatch"
)

// ErrUnavailable is returned (wrapped) when Redis cannot be reached, and,
// without trying Redis, while the cache waits to probe it again.
var ErrUnavailable = errors.New("replay: store unavailable")

// Redis is a replay cache shared by every replica that uses the same Redis
// and prefix: a key is recorded with SET NX PX, so a signature replayed
// against another replica is caught too. It is safe for concurrent use.
type Redis struct {
	client  redis.UniversalClient
	proc    redisbatch.Processor // runs SET NX: client, or a Batcher over it
	prefix  string
	window  time.Duration
	breaker breaker.Breaker

	waitReplicas int           // WAIT for this many replicas after recording
	waitTimeout  time.Duration // for at most this long
}

// ErrNotReplicated is wrapped (with ErrUnavailable) when fewer replicas
// than asked acknowledged a recorded key in time.
var ErrNotReplicated = errors.New("replay: not replicated")

// WaitForReplicas makes Check, after recording a fresh key, wait until n
// replicas hold it (Redis's WAIT), for at most timeout; fewer is a store
// failure. Behind Sentinel, a failover promotes a replica: without the
// wait, what the old master acknowledged but had not yet replicated is
// lost, and a signature recorded in that moment could be used again.
func (c *Redis) WaitForReplicas(n int, timeout time.Duration) {
	c.waitReplicas, c.waitTimeout = n, timeout
}

// NewRedis returns a Redis cache remembering each key for window.
func NewRedis(client redis.UniversalClient, prefix string, window time.Duration) (*Redis, error) {
	if client == nil {
		return nil, errors.New("replay: nil Redis client")
	}
	if window < time.Millisecond {
		return nil, errors.New("replay: window must be at least 1ms")
	}
	return &Redis{client: client, proc: client, prefix: prefix, window: window}, nil
}

// SetBatcher makes Check send its SET NX through p, a redisbatch.Batcher
// over the cache's client, so that the calls of concurrent requests share
// round trips; a SET NX followed by WAIT never goes through it. Call it
// before use.
func (c *Redis) SetBatcher(p redisbatch.Processor) {
	if p != nil {
		c.proc = p
	}
}

// Recorder records the key name for ttl unless it is there already (SET
// NX), and reports whether it did. With waitReplicas > 0 it also waits
// (Redis's WAIT, on the connection that recorded the key) until that many
// replicas hold it, for at most waitTimeout, and reports how many did. An
// error means it is unknown whether the key was recorded.
type Recorder func(ctx context.Context, name string, ttl time.Duration, waitReplicas int, waitTimeout time.Duration) (set bool, replicas int, err error)

// Check implements Store: it records key and reports whether it was fresh
// (not recorded within the window, by any replica). Redis's clock, not
// now, times the window.
func (c *Redis) Check(ctx context.Context, key Key, _ time.Time) (bool, error) {
	return c.CheckVia(ctx, key, c.Record)
}

// CheckVia is Check with the key recorded by rec, which may record it
// together with other work in one round trip. rec is not called while the
// cache waits to probe Redis again after a failure.
func (c *Redis) CheckVia(ctx context.Context, key Key, rec Recorder) (bool, error) {
	if !c.breaker.Allow() {
		return false, ErrUnavailable
	}
	name := c.Name(key)
	set, n, err := rec(ctx, name, c.window, c.waitReplicas, c.waitTimeout)
	if err != nil {
		if !redisbatch.IsKeyError(err) { // one key's failure (a budget's, beside it): Redis is up
			c.breaker.Fail()
		}
		return false, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if set && n < c.waitReplicas {
		// Not vouched for: take it back, so that the caller's retry is not
		// taken for a replay (a tiered store writes it back later).
		c.client.Del(context.WithoutCancel(ctx), name)
		c.breaker.Fail()
		return false, fmt.Errorf("%w: %w: %d of %d replicas", ErrUnavailable, ErrNotReplicated, n, c.waitReplicas)
	}
	c.breaker.Succeed()
	return set, nil
}

// Name returns the Redis key that records key.
func (c *Redis) Name(key Key) string { return c.prefix + hex.EncodeToString(key[:]) }

// Record is the cache's own Recorder: SET NX PX, through the batcher if
// one is set; with waitReplicas, SET NX and WAIT pipelined on one
// connection of the client.
func (c *Redis) Record(ctx context.Context, name string, ttl time.Duration, waitReplicas int, waitTimeout time.Duration) (bool, int, error) {
	if waitReplicas <= 0 {
		set := redis.NewBoolCmd(ctx, "set", name, 1, "px", ttl.Milliseconds(), "nx")
		_ = c.proc.Process(ctx, set)
		ok, err := set.Result()
		return ok, 0, err
	}
	// WAIT counts the replicas that have every write of the connection it
	// runs on.
	p := c.client.Pipeline()
	set := p.SetNX(ctx, name, 1, ttl)
	wait := p.Do(ctx, "WAIT", waitReplicas, waitTimeout.Milliseconds())
	if _, err := p.Exec(ctx); err != nil {
		return false, 0, err
	}
	n, err := wait.Int()
	if err != nil && set.Val() {
		return true, 0, nil // recorded, vouched for by no replica
	}
	return set.Val(), n, nil
}

// Restore records entries (each for what is left of its window at now)
// without overwriting a key already there, in one pipelined round trip.
// It is how a replica writes back the keys it holds, after an outage or
// a loss of Redis's data.
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
