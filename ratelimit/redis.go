package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mxgate/mxgate/internal/breaker"
)

// ErrStoreUnavailable is returned (wrapped) when Redis cannot be reached or
// answered wrongly, and, without trying Redis, while the store waits to
// probe it again after such a failure.
var ErrStoreUnavailable = errors.New("ratelimit: store unavailable")

// takeScript is GCRA (the generic cell rate algorithm) over one key holding
// the bucket's theoretical arrival time (TAT) in microseconds on the Redis
// server's clock. A request is admitted when its TAT lies no further than
// burst intervals (plus the allowed wait) ahead of now; a refused request
// changes nothing.
//
// KEYS[1] bucket; ARGV[1] interval (µs, may be fractional); ARGV[2] burst;
// ARGV[3] max wait (µs). Returns {allowed, reset µs, delay or retry µs}.
var takeScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local maxwait = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat or tat < now then tat = now end
local newtat = tat + interval
local delay = newtat - now - burst * interval
if delay < 0 then delay = 0 end
if delay > maxwait then
	return {0, math.ceil(tat - now), math.ceil(delay)}
end
redis.call('SET', KEYS[1], string.format('%.3f', newtat), 'PX', math.ceil((newtat - now) / 1000) + 1)
return {1, math.ceil(newtat - now), math.ceil(delay)}
`)

// cancelScript gives back one interval of a reservation that will not be
// used. KEYS[1] bucket; ARGV[1] interval (µs).
var cancelScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat then return 0 end
tat = tat - tonumber(ARGV[1])
if tat <= now then
	redis.call('DEL', KEYS[1])
else
	redis.call('SET', KEYS[1], string.format('%.3f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
end
return 1
`)

// Redis is a Store shared by every replica that uses the same Redis and
// prefix. Each Take is one atomic script run; time is the Redis server's
// (the now argument is ignored), so replicas' clocks do not matter.
//
// After a failure the store reports ErrStoreUnavailable at once, without
// trying Redis, until ProbeInterval has passed; then one request probes
// Redis again. It is safe for concurrent use. The zero value is not
// usable: call NewRedis.
type Redis struct {
	client  redis.Scripter
	prefix  string
	policy  Policy
	breaker breaker.Breaker
}

// DefaultProbeInterval is how long a Redis store waits after a failure
// before trying Redis again.
const DefaultProbeInterval = time.Second

// NewRedis returns a Redis store for policy. prefix namespaces its keys;
// give every site and directive its own. client should have short
// timeouts: a Take waits no longer than they allow.
func NewRedis(client redis.Scripter, prefix string, policy Policy) (*Redis, error) {
	if err := policy.Validate(); err != nil {
		return nil, err
	}
	if client == nil {
		return nil, errors.New("ratelimit: nil Redis client")
	}
	return &Redis{client: client, prefix: prefix, policy: policy, breaker: breaker.Breaker{Probe: DefaultProbeInterval}}, nil
}

// SetProbeInterval sets how long to wait after a failure before trying
// Redis again. Call it before use.
func (s *Redis) SetProbeInterval(d time.Duration) { s.breaker.Probe = d }

// bucketKey is prefix + class + ":" + key; keys longer than 64 bytes (they
// may come from request input) are replaced by their SHA-256.
func (s *Redis) bucketKey(key string, c Class) string {
	if len(key) > 64 {
		sum := sha256.Sum256([]byte(key))
		key = "sha256:" + hex.EncodeToString(sum[:])
	}
	return s.prefix + c.String() + ":" + key
}

func (s *Redis) fail(err error) error {
	s.breaker.Fail()
	return fmt.Errorf("%w: %v", ErrStoreUnavailable, err)
}

// Healthy reports whether the last contact with Redis succeeded.
func (s *Redis) Healthy() bool { return s.breaker.Healthy() }

// Take implements Store.
func (s *Redis) Take(ctx context.Context, key string, c Class, _ time.Time, maxWait time.Duration) (Result, error) {
	l := s.policy[c]
	if l.Unlimited() {
		return Result{Allowed: true}, nil
	}
	if !s.breaker.Allow() {
		return Result{}, ErrStoreUnavailable
	}
	interval := 1e6 / l.Rate // µs
	bk := s.bucketKey(key, c)
	v, err := takeScript.Run(ctx, s.client, []string{bk},
		strconv.FormatFloat(interval, 'f', 3, 64), l.Burst, max(0, maxWait.Microseconds())).Int64Slice()
	if err != nil || len(v) != 3 {
		if err == nil {
			err = errors.New("unexpected script reply")
		}
		return Result{}, s.fail(err)
	}
	s.breaker.Succeed()
	reset := time.Duration(v[1]) * time.Microsecond
	res := Result{Allowed: v[0] == 1, Limit: l.Burst, Reset: reset}
	used := float64(v[1]) / interval // tokens' worth of TAT ahead of now
	res.Remaining = max(0, int(float64(l.Burst)-used))
	if res.Allowed {
		res.Delay = time.Duration(v[2]) * time.Microsecond
		if res.Delay > 0 {
			res.cancel = redisReservation{s, bk, interval}
		}
	} else {
		res.Remaining = 0
		res.RetryAfter = time.Duration(v[2]) * time.Microsecond
	}
	return res, nil
}

type redisReservation struct {
	s        *Redis
	key      string
	interval float64
}

func (rr redisReservation) cancel(ctx context.Context, _ time.Time) {
	// Best effort, on a context of its own: the request's is already done.
	ctx, stop := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer stop()
	_ = cancelScript.Run(ctx, rr.s.client, []string{rr.key}, strconv.FormatFloat(rr.interval, 'f', 3, 64)).Err()
}
