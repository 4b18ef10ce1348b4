package replay

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// Observer hears how a shared store's calls go: Failed for each failed
// call, Succeeded for each successful one. Implementations log an outage
// once per episode and keep health metrics. An Observer may also have
// these methods, which are then called:
//
//   - WroteBack(n int): a write-back completed, of n entries;
//   - LostData(grace time.Duration): the store was found to have lost its
//     data (its epoch vanished or changed); requests it cannot decide
//     alone are held for grace;
//   - CannotWatch(err error): the store refuses the BLPOP that watches
//     its connection (err says why); a restart is then noticed by the
//     probe alone.
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
//   - once Redis was unreachable, every unexpired key Memory holds (those
//     admitted by this replica alone during the outage too) is written
//     back to Redis as soon as Redis answers again, in case it came back
//     empty, so that no replica admits it afterwards;
//   - a Redis that lost its data without an outage any request saw
//     (restarted between two requests, flushed) is noticed by its epoch,
//     and requests wait for the other replicas to write back theirs (see
//     recovery.go and SetLossGrace).
//
// While Redis is unreachable, a FailClosed store refuses every key with an
// error wrapping ErrUnavailable; otherwise Memory decides alone (a replay
// sent to another replica during the outage is then not caught: that is
// what FailClosed is for).
//
// The Memory should outlive configuration reloads (the Caddy module keeps
// it in a usage pool): what is owed to Redis, the epoch last seen and the
// background work that probes Redis are kept with it, so a write-back
// still owed when a configuration is replaced is made by the next one.
// Tiered is safe for concurrent use; call Close (once or more) when done.
type Tiered struct {
	local      *Memory
	shared     *Redis
	failClosed bool
	obs        Observer
	now        func() time.Time
	probe      time.Duration
	grace      atomic.Int64 // time.Duration
	rec        *recovery

	closeOnce sync.Once
}

// NewTiered returns a Tiered over local and shared, and starts (or joins)
// the background work over local: the probe of Redis, every probe
// interval, and the write-back when one is owed. obs may be nil.
func NewTiered(local *Memory, shared *Redis, failClosed bool, obs Observer) (*Tiered, error) {
	if local == nil || shared == nil {
		return nil, errors.New("replay: a tiered store needs a local and a shared store")
	}
	t := &Tiered{local: local, shared: shared, failClosed: failClosed, obs: obs, now: time.Now,
		probe: shared.breaker.Interval(), rec: local.recovery()}
	t.grace.Store(int64(DefaultLossGrace))
	t.rec.attach(t)
	return t, nil
}

// SetLossGrace sets how long requests whose key this replica does not know
// wait after Redis was found to have lost its data, for the other replicas
// to write back theirs: at least a probe interval more than the longest
// write-back. Default: DefaultLossGrace.
func (t *Tiered) SetLossGrace(d time.Duration) { t.grace.Store(int64(d)) }

func (t *Tiered) lossGrace() time.Duration { return time.Duration(t.grace.Load()) }

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
	// A Redis that may have been replaced is read first, and one that lost
	// its data waited on (recovery.go).
	if err := t.rec.ready(ctx, t); err != nil {
		if !errors.Is(err, ErrUnavailable) {
			return false, err // the caller went away
		}
		return t.alone(ctx, key, now, err)
	}
	fresh, err := t.shared.CheckVia(ctx, key, rec)
	if err == nil {
		t.observe(nil)
		if t.rec.owed() {
			t.rec.kick()
		}
		// Recorded here too, fresh or not, so that an outage does not
		// make this replica forget it.
		if _, lerr := t.local.Check(ctx, key, now); lerr != nil && fresh {
			return false, lerr
		}
		return fresh, nil
	}
	return t.alone(ctx, key, now, err)
}

// alone is Check while Redis cannot be used (err): Redis is owed a
// write-back and is read again before it is used; a FailClosed store
// refuses, otherwise Memory decides.
func (t *Tiered) alone(ctx context.Context, key Key, now time.Time, err error) (bool, error) {
	t.observe(err)
	if !errors.Is(err, ErrNotReplicated) { // Redis answered: it was not replaced
		t.rec.interrupted()
	}
	if t.failClosed {
		return false, err
	}
	fresh, lerr := t.local.Check(ctx, key, now)
	if lerr != nil {
		return false, lerr
	}
	if fresh {
		t.local.unsynced.Add(1)
		t.rec.kick()
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

// Shared returns the Redis cache.
func (t *Tiered) Shared() *Redis { return t.shared }

// Full reports whether this replica's cache is at its bound at now: a
// fresh key would be refused with ErrFull.
func (t *Tiered) Full(now time.Time) bool { return t.local.Full(now) }

// Owed returns how many keys were admitted by this replica alone, while
// Redis was unreachable, and are not yet written back.
func (t *Tiered) Owed() int64 { return t.local.unsynced.Load() }

// Close leaves the background work over the Memory, which stops when no
// Tiered over it is open. What is still owed stays recorded in the Memory,
// for the next Tiered over it.
func (t *Tiered) Close() {
	t.closeOnce.Do(func() { t.rec.detach(t) })
}
