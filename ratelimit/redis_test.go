package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mxgate/mxgate/internal/testkit/redistest"
)

func redisClient(t testing.TB, srv *redistest.Server) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{
		Addr: srv.Addr(), DialTimeout: 200 * time.Millisecond,
		ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond,
		PoolTimeout: 200 * time.Millisecond, MaxRetries: -1,
	})
	t.Cleanup(func() { c.Close() })
	return c
}

func newRedisStore(t testing.TB, c *redis.Client, prefix string, p Policy) *Redis {
	t.Helper()
	s, err := NewRedis(c, prefix, p)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRedisBurstAndRefusal(t *testing.T) {
	srv := redistest.Start(t)
	s := newRedisStore(t, redisClient(t, srv), "test:burst:", Policy{Get: {Rate: 1, Burst: 3}, Write: {Rate: Inf}, Delete: {Rate: Inf}, Other: {Rate: Inf}})
	ctx := context.Background()
	for i := range 3 {
		r, err := s.Take(ctx, "k", Get, time.Now(), 0)
		if err != nil || !r.Allowed || r.Limit != 3 || r.Remaining != 2-i {
			t.Fatalf("request %d: %+v %v", i, r, err)
		}
	}
	r, err := s.Take(ctx, "k", Get, time.Now(), 0)
	if err != nil || r.Allowed || r.RetryAfter <= 900*time.Millisecond || r.RetryAfter > time.Second {
		t.Fatalf("over burst: %+v %v", r, err)
	}
	if r.RetryAfterSeconds() != 1 || r.Reset <= 2*time.Second || r.Reset > 3*time.Second {
		t.Fatalf("headers: retry %d reset %v", r.RetryAfterSeconds(), r.Reset)
	}
	// unlimited classes never touch Redis
	if r, err := s.Take(ctx, "k", Write, time.Now(), 0); err != nil || !r.Allowed {
		t.Fatalf("unlimited: %+v %v", r, err)
	}
	// another prefix (site or directive) has its own bucket
	s2 := newRedisStore(t, redisClient(t, srv), "test:other:", s.policy)
	if r, _ := s2.Take(ctx, "k", Get, time.Now(), 0); !r.Allowed {
		t.Fatal("prefixes share a bucket")
	}
	// a long key is hashed, and still its own bucket
	long := strings.Repeat("x", 10_000)
	if r, err := s.Take(ctx, long, Get, time.Now(), 0); err != nil || !r.Allowed {
		t.Fatalf("long key: %+v %v", r, err)
	}
	if k := s.bucketKey(long, Get); len(k) > 100 {
		t.Fatalf("long key stored as %d bytes", len(k))
	}
}

// TestRedisSharedExactly: three stores (as three replicas would have), one
// Redis, hammered concurrently: together they admit exactly the budget.
// The budget refills one request an hour, so however long the hammering
// takes, the budget is the burst; the rate over time is measured by
// bench/ratelimit.
func TestRedisSharedExactly(t *testing.T) {
	srv := redistest.Start(t)
	p := Policy{Get: {Rate: 1.0 / 3600, Burst: 20}, Write: {Rate: Inf}, Delete: {Rate: Inf}, Other: {Rate: Inf}}
	var stores []*Redis
	for range 3 {
		stores = append(stores, newRedisStore(t, redisClient(t, srv), "test:shared:", p))
	}
	var admitted, refused atomic.Int64
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Add(1)
		go func(s *Redis) {
			defer wg.Done()
			for range 25 {
				r, err := s.Take(context.Background(), "client", Get, time.Now(), 0)
				if err != nil {
					t.Error(err)
					return
				}
				if r.Allowed {
					admitted.Add(1)
				} else {
					refused.Add(1)
				}
			}
		}(stores[i%3])
	}
	wg.Wait()
	if a, r := admitted.Load(), refused.Load(); a != 20 || r != 12*25-20 {
		t.Fatalf("admitted %d and refused %d of %d; the shared budget is 20", a, r, 12*25)
	}
}

// TestRedisWaitAndCancel: Redis's clock (TIME) decides, so the delays are
// checked against an interval of 10s: however slow the machine between two
// calls (seconds, not ten), the k-th waiting request is held more than
// (k-0.5) intervals and never more than k.
func TestRedisWaitAndCancel(t *testing.T) {
	srv := redistest.Start(t)
	const interval = 10 * time.Second
	s := newRedisStore(t, redisClient(t, srv), "test:wait:", Policy{Get: {Rate: Inf}, Write: {Rate: Inf}, Delete: {Rate: 0.1, Burst: 1}, Other: {Rate: Inf}})
	ctx := context.Background()
	maxWait := 2*interval + interval/2
	held := func(r Result, k int) bool {
		return r.Allowed && r.Delay > time.Duration(k)*interval-interval/2 && r.Delay <= time.Duration(k)*interval
	}
	if r, _ := s.Take(ctx, "k", Delete, time.Now(), maxWait); !r.Allowed || r.Delay != 0 {
		t.Fatalf("first: %+v", r)
	}
	r2, _ := s.Take(ctx, "k", Delete, time.Now(), maxWait)
	if !held(r2, 1) {
		t.Fatalf("second should wait one interval: %+v", r2)
	}
	r3, _ := s.Take(ctx, "k", Delete, time.Now(), maxWait)
	if !held(r3, 2) {
		t.Fatalf("third should wait two intervals: %+v", r3)
	}
	if r4, _ := s.Take(ctx, "k", Delete, time.Now(), maxWait); r4.Allowed {
		t.Fatalf("fourth would wait three intervals > max: %+v", r4)
	}
	r3.Cancel(ctx, time.Now())
	if r5, _ := s.Take(ctx, "k", Delete, time.Now(), maxWait); !held(r5, 2) {
		t.Fatalf("after cancel the slot is free again: %+v", r5)
	}
}

// countingHook counts the commands a Redis client sends.
type countingHook struct{ n atomic.Int64 }

func (h *countingHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *countingHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}

func (h *countingHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

// TestRedisOutage: with Redis gone, Take fails within the client's
// timeouts, then at once (no Redis call) until the probe interval passes;
// when Redis returns, the store recovers by itself.
func TestRedisOutage(t *testing.T) {
	srv := redistest.Start(t)
	client := redisClient(t, srv)
	calls := &countingHook{}
	client.AddHook(calls)
	s := newRedisStore(t, client, "test:outage:", MXPolicy())
	const probe = 300 * time.Millisecond
	s.SetProbeInterval(probe)
	if _, err := s.Take(context.Background(), "k", Get, time.Now(), 0); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	// The client's own timeouts end the call: the test's deadline, far
	// beyond them, only keeps a hang from lasting.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := s.Take(ctx, "k", Get, time.Now(), 0)
	if !errors.Is(err, ErrStoreUnavailable) || ctx.Err() != nil {
		t.Fatalf("first call in the outage: %v (test deadline: %v)", err, ctx.Err())
	}
	if s.Healthy() {
		t.Fatal("store still healthy")
	}
	// While the breaker is open, calls skip Redis: at most one probe per
	// probe interval goes out, however long the 1000 calls take.
	before := calls.n.Load()
	start := time.Now()
	for range 1000 {
		if _, err := s.Take(ctx, "k", Get, time.Now(), 0); !errors.Is(err, ErrStoreUnavailable) {
			t.Fatalf("during the outage: %v", err)
		}
	}
	probes := calls.n.Load() - before
	if allowed := 1 + int64(time.Since(start)/probe); probes > allowed {
		t.Fatalf("1000 calls in the outage sent %d commands to Redis; the breaker allows %d probes", probes, allowed)
	}
	srv.Restart()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r, err := s.Take(ctx, "k", Get, time.Now(), 0)
		if err == nil && r.Allowed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recovery: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !s.Healthy() {
		t.Fatal("recovered store not healthy")
	}
}

// TestRedisThrottledKeyKeptUntilFull: a bucket's state in Redis expires
// only when the bucket is full again, so no churn of other keys, and no
// refused request, resets a throttled key; the budget is reset only by
// Redis losing the key (maxmemory eviction: see docs/rate-limits-and-state.md).
func TestRedisThrottledKeyKeptUntilFull(t *testing.T) {
	srv := redistest.Start(t)
	c := redisClient(t, srv)
	p := Policy{Get: {Rate: 10, Burst: 5}, Write: {Rate: Inf}, Delete: {Rate: 1.0 / 1800, Burst: 2}, Other: {Rate: Inf}}
	s := newRedisStore(t, c, "test:kept:", p)
	ctx := context.Background()
	for i := range 3 {
		r, err := s.Take(ctx, "victim", Delete, time.Now(), 0)
		if err != nil || r.Allowed != (i < 2) {
			t.Fatalf("DELETE %d: %+v %v", i+1, r, err)
		}
	}
	for i := range 2000 {
		if _, err := s.Take(ctx, fmt.Sprintf("churn-%d", i), Get, time.Now(), 0); err != nil {
			t.Fatal(err)
		}
	}
	for range 100 {
		if r, _ := s.Take(ctx, "victim", Delete, time.Now(), 0); r.Allowed {
			t.Fatal("the throttled key was admitted")
		}
	}
	// two tokens of 30 minutes are owed: the state lives that long
	ttl, err := c.PTTL(ctx, s.bucketKey("victim", Delete)).Result()
	if err != nil || ttl < time.Hour-time.Minute || ttl > time.Hour+time.Second {
		t.Fatalf("the throttled bucket expires in %v (%v), want an hour, when it is full", ttl, err)
	}
}

func BenchmarkRedisTake(b *testing.B) {
	srv := redistest.Start(b)
	s := newRedisStore(b, redisClient(b, srv), "bench:", Policy{Get: {Rate: 1e9, Burst: 1 << 30}, Write: {Rate: Inf}, Delete: {Rate: Inf}, Other: {Rate: Inf}})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Take(ctx, "client", Get, time.Now(), 0); err != nil {
			b.Fatal(err)
		}
	}
}
