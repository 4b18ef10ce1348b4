package replay

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Observer hears how a shared store's calls go: Failed for each failed
// call, Succeeded for each successful one. Implementations log an outage
// once per episode and keep health metrics. An Observer that also has a
// method WroteBack(n int) hears of each completed write-back, with the
// number of entries written.
type Observer interface {
	Failed(err error)
	Succeeded()
}

// Tiered is the replay store of replicas that share a Redis. Every key is
// recorded both in this process's Memory and in Redis, and checked in both,
// so that neither direction of a Redis outage reopens a replay:
//
//   - a key recorded while Redis was up is still refused by this replica
//     while Redis is down (Memory remembers it);
//   - a key admitted by this replica while Redis was down is written back
//     to Redis as soon as Redis answers again, together with every other
//     unexpired key Memory holds (in case Redis came back empty), so that
//     no replica admits it afterwards.
//
// While Redis is unreachable, a FailClosed store refuses every key with an
// error wrapping ErrUnavailable; otherwise Memory decides alone (a replay
// sent to another replica during the outage is then not caught: that is
// what FailClosed is for).
//
// The Memory should outlive configuration reloads (the Caddy module keeps
// it in a usage pool): the count of keys it admitted alone is kept in it,
// so a write-back still owed when a configuration is replaced is made by
// the next one. Tiered is safe for concurrent use; call Close (once or
// more) when done.
type Tiered struct {
	local      *Memory
	shared     *Redis
	failClosed bool
	obs        Observer
	now        func() time.Time
	probe      time.Duration

	wake      chan struct{}
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// NewTiered returns a Tiered over local and shared and starts its
// write-back loop, which wakes every probe interval while a write-back is
// owed. obs may be nil.
func NewTiered(local *Memory, shared *Redis, failClosed bool, obs Observer) (*Tiered, error) {
	if local == nil || shared == nil {
		return nil, errors.New("replay: a tiered store needs a local and a shared store")
	}
	t := &Tiered{local: local, shared: shared, failClosed: failClosed, obs: obs, now: time.Now,
		probe: shared.breaker.Interval(), wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go t.writeBackLoop()
	if local.unsynced.Load() > 0 {
		t.kick()
	}
	return t, nil
}

// Check implements Store.
func (t *Tiered) Check(ctx context.Context, key Key, now time.Time) (bool, error) {
	return t.CheckVia(ctx, key, now, t.shared.Record)
}

// CheckVia is Check with the key recorded in Redis by rec, which may
// record it together with other work in one round trip (see
// Redis.CheckVia). rec is not called for a key this replica has seen, nor
// while Redis is waited on after a failure.
func (t *Tiered) CheckVia(ctx context.Context, key Key, now time.Time, rec Recorder) (bool, error) {
	if t.local.Seen(key, now) {
		return false, nil
	}
	fresh, err := t.shared.CheckVia(ctx, key, rec)
	if err == nil {
		t.observe(nil)
		if t.local.unsynced.Load() > 0 {
			t.kick()
		}
		// Recorded here too, fresh or not, so that an outage does not
		// make this replica forget it.
		if _, lerr := t.local.Check(ctx, key, now); lerr != nil && fresh {
			return false, lerr
		}
		return fresh, nil
	}
	t.observe(err)
	if t.failClosed {
		return false, err
	}
	fresh, lerr := t.local.Check(ctx, key, now)
	if lerr != nil {
		return false, lerr
	}
	if fresh {
		t.local.unsynced.Add(1)
		t.kick()
	}
	return fresh, nil
}

func (t *Tiered) observe(err error) {
	switch {
	case t.obs == nil:
	case err != nil:
		t.obs.Failed(err)
	default:
		t.obs.Succeeded()
	}
}

func (t *Tiered) kick() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// restoreBatch bounds one pipelined write-back round trip.
const restoreBatch = 4096

// writeBack writes every unexpired local key to Redis; it reports whether
// nothing is owed any more.
func (t *Tiered) writeBack() bool {
	owed := t.local.unsynced.Load()
	if owed == 0 {
		return true
	}
	if !t.shared.breaker.Allow() {
		return false
	}
	now := t.now()
	entries := t.local.Entries(now)
	total := len(entries)
	for len(entries) > 0 {
		n := min(len(entries), restoreBatch)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := t.shared.Restore(ctx, entries[:n], now)
		cancel()
		if err != nil {
			t.observe(err)
			return false
		}
		entries = entries[n:]
	}
	t.observe(nil)
	if wb, ok := t.obs.(interface{ WroteBack(int) }); ok {
		wb.WroteBack(total)
	}
	// Keys admitted alone while this ran are owed still.
	return t.local.unsynced.CompareAndSwap(owed, 0)
}

func (t *Tiered) writeBackLoop() {
	defer close(t.done)
	tick := time.NewTicker(t.probe)
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-t.wake:
		case <-tick.C:
		}
		if t.local.unsynced.Load() > 0 {
			t.writeBack()
		}
	}
}

// Shared returns the Redis cache.
func (t *Tiered) Shared() *Redis { return t.shared }

// Full reports whether this replica's cache is at its bound at now: a
// fresh key would be refused with ErrFull.
func (t *Tiered) Full(now time.Time) bool { return t.local.Full(now) }

// Owed returns how many keys were admitted by this replica alone, while
// Redis was unreachable, and are not yet written back.
func (t *Tiered) Owed() int64 { return t.local.unsynced.Load() }

// Close stops the write-back loop. What is still owed stays recorded in
// the Memory, for the next Tiered over it.
func (t *Tiered) Close() {
	t.closeOnce.Do(func() { close(t.stop) })
	<-t.done
}
