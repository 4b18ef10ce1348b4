package replay

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mxgate/mxgate/internal/testkit/redistest"
)

// replica is one gateway process: its own Memory (kept across reloads) and
// its own client of the shared Redis.
type replica struct {
	local  *Memory
	tiered *Tiered
	obs    *countingObserver
}

type countingObserver struct {
	failed, succeeded, wroteBack, lost, cannotWatch atomic.Int64
}

func (o *countingObserver) Failed(error)           { o.failed.Add(1) }
func (o *countingObserver) Succeeded()             { o.succeeded.Add(1) }
func (o *countingObserver) WroteBack(int)          { o.wroteBack.Add(1) }
func (o *countingObserver) LostData(time.Duration) { o.lost.Add(1) }
func (o *countingObserver) CannotWatch(error)      { o.cannotWatch.Add(1) }

// testGrace is the loss grace of the test replicas: longer than their
// probe interval and write-back, with room for a busy machine.
const testGrace = 2 * time.Second

func newReplica(t *testing.T, addr string, failClosed bool) *replica {
	t.Helper()
	return newReplicaWith(t, &redis.Options{Addr: addr}, failClosed, 50*time.Millisecond)
}

// newReplicaWith is a replica whose client has opts (with the tests'
// timeouts) and whose probe runs every probe.
func newReplicaWith(t *testing.T, opts *redis.Options, failClosed bool, probe time.Duration) *replica {
	t.Helper()
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout, opts.MaxRetries = 200*time.Millisecond, 200*time.Millisecond, 200*time.Millisecond, -1
	c := redis.NewClient(opts)
	t.Cleanup(func() { c.Close() })
	shared, err := NewRedis(c, "test:tiered:", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	shared.SetProbeInterval(probe)
	local, _ := NewMemory(time.Minute, 1000)
	obs := &countingObserver{}
	tiered, err := NewTiered(local, shared, failClosed, obs)
	if err != nil {
		t.Fatal(err)
	}
	tiered.SetLossGrace(testGrace)
	t.Cleanup(func() { tiered.Close() })
	return &replica{local: local, tiered: tiered, obs: obs}
}

func (r *replica) check(t *testing.T, key Key) (bool, error) {
	t.Helper()
	return r.tiered.Check(context.Background(), key, time.Now())
}

// waitOwed polls until r owes no write-back, or fails the test.
func waitOwed(t *testing.T, r *replica) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for r.tiered.Owed() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d keys still owed to Redis", r.tiered.Owed())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTieredOutageBothWays: a signature first used while Redis was up is
// refused while Redis is down, and one used while Redis was down is
// refused by every replica once Redis is back, even a Redis that came back
// empty.
func TestTieredOutageBothWays(t *testing.T) {
	srv := redistest.Start(t)
	a, b := newReplica(t, srv.Addr(), false), newReplica(t, srv.Addr(), false)

	if fresh, err := a.check(t, k(1)); !fresh || err != nil {
		t.Fatalf("first use: %v %v", fresh, err)
	}
	if fresh, _ := b.check(t, k(1)); fresh {
		t.Fatal("replay on another replica admitted while Redis is up")
	}

	srv.Stop()
	if fresh, err := a.check(t, k(1)); fresh || err != nil {
		t.Fatalf("replay of a key recorded while Redis was up, during the outage: %v %v", fresh, err)
	}
	if fresh, err := a.check(t, k(2)); !fresh || err != nil {
		t.Fatalf("new key during the outage (on_store_error local): %v %v", fresh, err)
	}
	if fresh, _ := a.check(t, k(2)); fresh {
		t.Fatal("replay during the outage admitted by the same replica")
	}
	if a.tiered.Owed() == 0 {
		t.Fatal("a key admitted alone is not owed to Redis")
	}
	if a.obs.failed.Load() == 0 {
		t.Fatal("the outage was not observed")
	}

	srv.Restart() // an empty Redis: no persistence
	waitOwed(t, a)
	for _, key := range []Key{k(1), k(2)} {
		if fresh, err := b.check(t, key); fresh || err != nil {
			t.Fatalf("key %x on another replica after the outage: %v %v", key[:3], fresh, err)
		}
	}
	if fresh, err := b.check(t, k(3)); !fresh || err != nil {
		t.Fatalf("a new key after the outage: %v %v", fresh, err)
	}
}

// TestTieredFailClosed: with on_store_error deny, nothing is admitted and
// nothing recorded while Redis is down, so the caller's retry after the
// outage is not taken for a replay.
func TestTieredFailClosed(t *testing.T) {
	srv := redistest.Start(t)
	a := newReplica(t, srv.Addr(), true)
	srv.Stop()
	if fresh, err := a.check(t, k(1)); fresh || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("during the outage: %v %v", fresh, err)
	}
	if a.local.Len() != 0 || a.tiered.Owed() != 0 {
		t.Fatal("a refused key was recorded")
	}
	srv.Restart()
	deadline := time.Now().Add(5 * time.Second)
	for {
		fresh, err := a.check(t, k(1))
		if err == nil {
			if !fresh {
				t.Fatal("the retry after the outage was taken for a replay")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Redis never came back: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTieredOwedSurvivesClose: a write-back still owed when a Tiered is
// closed (a configuration reload) is made by the next Tiered over the same
// Memory.
func TestTieredOwedSurvivesClose(t *testing.T) {
	srv := redistest.Start(t)
	a := newReplica(t, srv.Addr(), false)
	srv.Stop()
	if fresh, _ := a.check(t, k(9)); !fresh {
		t.Fatal("not admitted during the outage")
	}
	a.tiered.Close()
	srv.Restart()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	defer c.Close()
	shared, _ := NewRedis(c, "test:tiered:", time.Minute)
	next, err := NewTiered(a.local, shared, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	waitOwed(t, &replica{tiered: next})
	b := newReplica(t, srv.Addr(), false)
	if fresh, _ := b.check(t, k(9)); fresh {
		t.Fatal("a key owed across a reload was never written back")
	}
}
