package replay

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mxgate/mxgate/internal/redisbatch"
	"github.com/mxgate/mxgate/internal/testkit/redistest"
)

// TestRedisCheckVia: a key recorded by another recorder counts as recorded
// by the cache (and the cache's own names it); a recorder's failure opens
// the breaker, which then keeps the recorder from being called; a fresh
// key short of replicas is taken back and refused.
func TestRedisCheckVia(t *testing.T) {
	srv := redistest.Start(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	r, _ := NewRedis(c, "test:via:", time.Minute)
	r.SetBatcher(redisbatch.New(c, 1))
	r.SetProbeInterval(time.Hour)
	ctx := context.Background()
	var names []string
	var ttls []time.Duration
	rec := func(ctx context.Context, name string, ttl time.Duration, wait int, wt time.Duration) (bool, int, error) {
		names, ttls = append(names, name), append(ttls, ttl)
		return r.Record(ctx, name, ttl, wait, wt)
	}
	if fresh, err := r.CheckVia(ctx, k(1), rec); !fresh || err != nil {
		t.Fatalf("fresh: %v %v", fresh, err)
	}
	if len(names) != 1 || names[0] != r.Name(k(1)) || ttls[0] != time.Minute {
		t.Fatalf("recorded %v for %v, want %s for a minute", names, ttls, r.Name(k(1)))
	}
	if fresh, err := r.Check(ctx, k(1), time.Time{}); fresh || err != nil {
		t.Fatalf("a key recorded through another recorder is not seen by Check: %v %v", fresh, err)
	}
	if ttl, _ := c.PTTL(ctx, r.Name(k(1))).Result(); ttl <= 0 || ttl > time.Minute {
		t.Fatalf("the record lives %v", ttl)
	}

	// A recorder that fails on one key of another type (a budget's,
	// recorded with it) fails that check alone: Redis is up.
	c.RPush(ctx, "test:via:list", "x")
	wrongType := func(ctx context.Context, _ string, _ time.Duration, _ int, _ time.Duration) (bool, int, error) {
		return false, 0, c.Incr(ctx, "test:via:list").Err()
	}
	if fresh, err := r.CheckVia(ctx, k(3), wrongType); fresh || !errors.Is(err, ErrUnavailable) || !r.Healthy() {
		t.Fatalf("a recorder failing on a key of another type: %v %v, healthy %v", fresh, err, r.Healthy())
	}

	failing := 0
	boom := func(context.Context, string, time.Duration, int, time.Duration) (bool, int, error) {
		failing++
		return false, 0, errors.New("connection reset")
	}
	if fresh, err := r.CheckVia(ctx, k(2), boom); fresh || !errors.Is(err, ErrUnavailable) || r.Healthy() {
		t.Fatalf("a failing recorder: %v %v, healthy %v", fresh, err, r.Healthy())
	}
	if fresh, err := r.CheckVia(ctx, k(2), boom); fresh || !errors.Is(err, ErrUnavailable) || failing != 1 {
		t.Fatalf("while waiting to probe: %v %v, recorder called %d times", fresh, err, failing)
	}

	w, _ := NewRedis(c, "test:via:", time.Minute)
	w.WaitForReplicas(1, 10*time.Millisecond)
	short := func(ctx context.Context, name string, ttl time.Duration, wait int, wt time.Duration) (bool, int, error) {
		if wait != 1 || wt != 10*time.Millisecond {
			t.Errorf("the recorder was asked to wait for %d replicas for %v", wait, wt)
		}
		ok, err := c.SetNX(ctx, name, 1, ttl).Result()
		return ok, 0, err
	}
	if fresh, err := w.CheckVia(ctx, k(3), short); fresh || !errors.Is(err, ErrNotReplicated) {
		t.Fatalf("short of replicas: %v %v", fresh, err)
	}
	if n, _ := c.Exists(ctx, w.Name(k(3))).Result(); n != 0 {
		t.Error("a key no replica vouched for was left recorded")
	}
}

// TestTieredCheckVia: a key this replica has seen is refused without the
// recorder; one the recorder records is remembered here too.
func TestTieredCheckVia(t *testing.T) {
	srv := redistest.Start(t)
	a := newReplica(t, srv.Addr(), true)
	calls := 0
	rec := func(ctx context.Context, name string, ttl time.Duration, wait int, wt time.Duration) (bool, int, error) {
		calls++
		return a.tiered.Shared().Record(ctx, name, ttl, wait, wt)
	}
	ctx := context.Background()
	if fresh, err := a.tiered.CheckVia(ctx, k(1), time.Now(), rec); !fresh || err != nil || calls != 1 {
		t.Fatalf("fresh: %v %v, %d calls", fresh, err, calls)
	}
	if !a.local.Seen(k(1), time.Now()) {
		t.Fatal("not remembered locally")
	}
	if fresh, err := a.tiered.CheckVia(ctx, k(1), time.Now(), rec); fresh || err != nil || calls != 1 {
		t.Fatalf("seen here: %v %v, %d calls", fresh, err, calls)
	}
}

func TestMemoryFull(t *testing.T) {
	m, _ := NewMemory(time.Second, 2)
	now := time.Unix(1000, 0)
	for i := range 2 {
		if m.Full(now) {
			t.Fatalf("full with %d of 2", i)
		}
		_, _ = m.Check(context.Background(), k(i), now)
	}
	if !m.Full(now) {
		t.Fatal("not full with 2 of 2")
	}
	if m.Full(now.Add(time.Second)) {
		t.Fatal("full once every key expired")
	}
}
