package replay

import (
	"context"
	"encoding/hex"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mxgate/mxgate/internal/testkit/redistest"
)

// waitUntil polls cond until it holds, or fails the test: a wait for an
// event, never a measure of speed.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never happened: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func rawClient(t *testing.T, srv *redistest.Server) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { c.Close() })
	return c
}

func (r *replica) suspected() bool {
	return r.local.rec.verified.Load() != r.local.rec.suspected.Load()
}

// TestTieredDenyWritesBackAfterOutage: with on_store_error deny, a replica
// that saw Redis fail writes back every key it holds when Redis answers
// again (here a Redis that kept its epoch but not a key, as a failover to
// a replica that missed it would), so that another replica refuses it.
func TestTieredDenyWritesBackAfterOutage(t *testing.T) {
	srv := redistest.Start(t)
	raw := rawClient(t, srv)
	a := newReplica(t, srv.Addr(), true)
	if fresh, err := a.check(t, k(1)); !fresh || err != nil {
		t.Fatalf("first use: %v %v", fresh, err)
	}
	k1 := k(1)
	raw.Del(ctx, "test:tiered:"+hex.EncodeToString(k1[:])) // lost, unnoticed
	if err := raw.Do(ctx, "CLIENT", "PAUSE", 600, "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	if fresh, err := a.check(t, k(2)); fresh || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("while Redis does not answer: %v %v", fresh, err)
	}
	waitUntil(t, "the write-back after the outage", func() bool { return a.obs.wroteBack.Load() > 0 && !a.tiered.rec.owed() })
	b := newReplica(t, srv.Addr(), true)
	if fresh, err := b.check(t, k(1)); fresh || err != nil {
		t.Fatalf("a key replica A recorded before the outage, on replica B: %v %v", fresh, err)
	}
	if fresh, err := b.check(t, k(2)); !fresh || err != nil {
		t.Fatalf("the key refused during the outage was recorded: %v %v", fresh, err)
	}
	if n := a.obs.lost.Load() + b.obs.lost.Load(); n != 0 {
		t.Errorf("%d losses reported for a Redis that kept its epoch", n)
	}
}

// TestTieredLossRestartEmpty: Redis restarts empty between two requests,
// which no request sees. Both replicas notice (their watch loses its
// connection), each reports the loss once and writes back what it holds,
// and a replica that never saw a key refuses it after the restart, in
// both on_store_error modes.
func TestTieredLossRestartEmpty(t *testing.T) {
	for _, failClosed := range []bool{true, false} {
		t.Run(map[bool]string{true: "deny", false: "local"}[failClosed], func(t *testing.T) {
			srv := redistest.Start(t)
			a, b := newReplica(t, srv.Addr(), failClosed), newReplica(t, srv.Addr(), failClosed)
			if fresh, err := a.check(t, k(1)); !fresh || err != nil {
				t.Fatalf("first use: %v %v", fresh, err)
			}
			waitUntil(t, "both replicas read the epoch", func() bool { return !a.suspected() && !b.suspected() })
			srv.Stop()
			waitUntil(t, "both replicas notice the lost connection", func() bool { return a.suspected() && b.suspected() })
			srv.Restart()
			if fresh, err := b.check(t, k(1)); fresh || err != nil {
				t.Fatalf("replica A's key on replica B after the restart: %v %v", fresh, err)
			}
			if fresh, err := b.check(t, k(2)); !fresh || err != nil {
				t.Fatalf("a new key after the restart: %v %v", fresh, err)
			}
			if fresh, err := a.check(t, k(2)); fresh || err != nil {
				t.Fatalf("replica B's key on replica A: %v %v", fresh, err)
			}
			for name, r := range map[string]*replica{"A": a, "B": b} {
				if n := r.obs.lost.Load(); n != 1 {
					t.Errorf("replica %s reported %d losses, want 1", name, n)
				}
				if n := r.obs.failed.Load(); n != 0 {
					t.Errorf("replica %s: %d failed calls reported, though no request came during the outage", name, n)
				}
			}
		})
	}
}

// TestTieredLossFlushAllGrace: Redis is flushed (no connection is lost).
// Replica B, which holds nothing to write back, notices first and holds a
// request for replica A's key for the grace; replica A notices only when
// the test lets it, then writes back; B's request is refused. A request
// whose caller leaves during the grace records nothing, and one for a key
// B knows is refused without waiting.
func TestTieredLossFlushAllGrace(t *testing.T) {
	for _, failClosed := range []bool{true, false} {
		t.Run(map[bool]string{true: "deny", false: "local"}[failClosed], func(t *testing.T) {
			srv := redistest.Start(t)
			raw := rawClient(t, srv)
			// A probes only at start and when kicked
			a := newReplicaWith(t, &redis.Options{Addr: srv.Addr()}, failClosed, time.Hour)
			b := newReplica(t, srv.Addr(), failClosed)
			if fresh, err := a.check(t, k(1)); !fresh || err != nil {
				t.Fatalf("first use on A: %v %v", fresh, err)
			}
			if fresh, err := b.check(t, k(7)); !fresh || err != nil {
				t.Fatalf("first use on B: %v %v", fresh, err)
			}
			if err := raw.FlushAll(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			waitUntil(t, "replica B notices the loss", func() bool { return b.obs.lost.Load() == 1 })
			rec := b.local.rec

			// a key B knows: refused at once, while the grace runs
			if fresh, err := b.check(t, k(7)); fresh || err != nil {
				t.Fatalf("B's own key during the grace: %v %v", fresh, err)
			}
			if time.Now().UnixNano() >= rec.graceUntil.Load() {
				t.Fatal("the grace was over before B's own key was refused: raise testGrace")
			}

			// a caller that leaves during the grace
			cctx, cancel := context.WithCancel(context.Background())
			left := make(chan error, 1)
			go func() {
				_, err := b.tiered.Check(cctx, k(9), time.Now())
				left <- err
			}()
			waitUntil(t, "the request waits", func() bool { return rec.waiting.Load() == 1 })
			cancel()
			if err := <-left; !errors.Is(err, context.Canceled) {
				t.Fatalf("a caller that left: %v", err)
			}

			type result struct {
				fresh bool
				err   error
			}
			replay := make(chan result, 1)
			go func() {
				fresh, err := b.tiered.Check(context.Background(), k(1), time.Now())
				replay <- result{fresh, err}
			}()
			waitUntil(t, "the replay waits", func() bool { return rec.waiting.Load() == 1 })
			if n := a.obs.lost.Load(); n != 0 {
				t.Fatal("replica A noticed the loss before the test let it")
			}
			a.local.rec.kick()
			if r := <-replay; r.fresh || r.err != nil {
				t.Fatalf("replica A's key on replica B after the flush: %v %v", r.fresh, r.err)
			}
			if n := a.obs.lost.Load(); n != 1 {
				t.Errorf("replica A reported %d losses, want 1", n)
			}
			if fresh, err := b.check(t, k(9)); !fresh || err != nil {
				t.Fatalf("the key whose caller left was recorded: %v %v", fresh, err)
			}
			if n := b.obs.lost.Load(); n != 1 {
				t.Errorf("replica B reported %d losses, want 1", n)
			}
		})
	}
}

// TestTieredStartAfterLoss: a replica that starts just after the epoch was
// set (by itself, or after a loss) holds requests for the grace, so that
// a replica that held keys before the loss writes them back first.
func TestTieredStartAfterLoss(t *testing.T) {
	srv := redistest.Start(t)
	raw := rawClient(t, srv)
	a := newReplicaWith(t, &redis.Options{Addr: srv.Addr()}, true, time.Hour)
	if fresh, err := a.check(t, k(1)); !fresh || err != nil {
		t.Fatalf("first use: %v %v", fresh, err)
	}
	if err := raw.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	c := newReplica(t, srv.Addr(), true) // sets the epoch anew
	replay := make(chan bool, 1)
	go func() {
		fresh, _ := c.tiered.Check(context.Background(), k(1), time.Now())
		replay <- fresh
	}()
	waitUntil(t, "the new replica's request waits", func() bool { return c.local.rec.waiting.Load() == 1 })
	a.local.rec.kick()
	if <-replay {
		t.Fatal("a key admitted before the loss was admitted by a replica started after it")
	}
	if n := c.obs.lost.Load(); n != 0 {
		t.Errorf("the new replica reported %d losses: it cannot tell", n)
	}
}

// TestTieredWatchRefused: a Redis user without BLPOP cannot be watched;
// that is reported once, and a restart is then noticed by the probe.
func TestTieredWatchRefused(t *testing.T) {
	srv := redistest.Start(t, "--user", "default", "off", "--user", "app", "on", ">pw", "~*", "&*", "+@all", "-blpop")
	opts := func() *redis.Options { return &redis.Options{Addr: srv.Addr(), Username: "app", Password: "pw"} }
	a := newReplicaWith(t, opts(), true, 50*time.Millisecond)
	b := newReplicaWith(t, opts(), true, 50*time.Millisecond)
	waitUntil(t, "the refusal is reported", func() bool { return a.obs.cannotWatch.Load() == 1 && b.obs.cannotWatch.Load() == 1 })
	if fresh, err := a.check(t, k(1)); !fresh || err != nil {
		t.Fatalf("first use: %v %v", fresh, err)
	}
	srv.Stop()
	srv.Restart()
	waitUntil(t, "both probes notice the loss", func() bool { return a.obs.lost.Load() == 1 && b.obs.lost.Load() == 1 })
	if fresh, err := b.check(t, k(1)); fresh || err != nil {
		t.Fatalf("replica A's key on replica B after the restart: %v %v", fresh, err)
	}
	if n := a.obs.cannotWatch.Load(); n != 1 {
		t.Errorf("the refusal was reported %d times", n)
	}
}

// TestTieredBackgroundStops: the probe and the watch stop when the last
// Tiered over a Memory closes, and start again with the next one, which
// keeps the epoch seen (no loss is reported for an unchanged Redis).
func TestTieredBackgroundStops(t *testing.T) {
	srv := redistest.Start(t)
	a := newReplica(t, srv.Addr(), true)
	if fresh, err := a.check(t, k(1)); !fresh || err != nil {
		t.Fatalf("first use: %v %v", fresh, err)
	}
	rec := a.local.rec
	waitUntil(t, "the watch runs", func() bool { return rec.watching.Load() == 1 })
	a.tiered.Close()
	if rec.current() != nil || rec.stop != nil {
		t.Fatal("the probe outlived the last Tiered")
	}
	waitUntil(t, "the watch ends", func() bool { return rec.watching.Load() == 0 })
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	defer c.Close()
	shared, _ := NewRedis(c, "test:tiered:", time.Minute)
	obs := &countingObserver{}
	next, err := NewTiered(a.local, shared, true, obs)
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	waitUntil(t, "the watch runs again", func() bool { return rec.watching.Load() == 1 })
	if fresh, err := next.Check(ctx, k(2), time.Now()); !fresh || err != nil {
		t.Fatalf("after the reload: %v %v", fresh, err)
	}
	if n := obs.lost.Load(); n != 0 {
		t.Errorf("%d losses reported across a reload", n)
	}
}

// FuzzEpochStart: whatever the epoch key holds (anyone who can write to
// the Redis can write it), reading when it was set never fails, and a
// well-formed epoch gives back its time.
func FuzzEpochStart(f *testing.F) {
	for _, s := range []string{"", ":", "0f:1700000000000", "id:-5", "id:99999999999999999999", "no colon", "a:b:c", "id:12\x00"} {
		f.Add(s, int64(1700000000000))
	}
	f.Fuzz(func(t *testing.T, v string, ms int64) {
		_ = epochState{value: v}.start()
		if ms >= 0 {
			if got := (epochState{value: hex.EncodeToString([]byte(v)) + ":" + strconv.FormatInt(ms, 10)}).start(); got != ms {
				t.Fatalf("start of a well-formed epoch: %d, want %d", got, ms)
			}
		}
	})
}
