package replay

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultLossGrace is how long, by default, a replica holds the requests
// it cannot decide alone after it found that the shared store lost its
// data (see Tiered.SetLossGrace).
const DefaultLossGrace = 3 * time.Second

// recovery keeps a replica's replay cache and the shared store it mirrors
// in agreement when the store is interrupted or loses what it held. There
// is one per Memory, so one per namespace and process, shared by the
// Tiered stores over that Memory (the configurations loaded one after
// another); it runs while one of them is open:
//
//   - a probe, every probe interval: it reads the store's epoch
//     (epoch.go) and then, if a write-back is owed, writes every unexpired
//     key of the Memory to the store (SET NX, each for what is left of its
//     window);
//   - a watch: a BLPOP that blocks on a connection of its own and fails as
//     soon as that connection is lost, so that a Redis restart is known
//     before the first request after it.
//
// A write-back is owed once the store was interrupted (a request's call
// failed, or the watch lost its connection), whatever a Tiered does
// meanwhile: a store that answers again may have come back empty, and the
// keys this replica recorded before the interruption are then in its
// Memory alone. Keys it admitted alone meanwhile (on_store_error local)
// are owed too.
//
// After an interruption, and when the process starts, a request uses the
// store only once its epoch has been read again (by the probe, or by the
// first request itself). An epoch that is gone or another one is a loss:
// the replica reports it (Observer's LostData), owes a write-back, which
// the probe makes at once, and holds every request whose key it does not
// know itself for the grace, so that the other replicas, which notice
// within a probe interval, have written back theirs before it decides. A
// replica that reads the epoch for the first time holds requests until the
// grace after the epoch was set has passed: it cannot tell a new store
// from one that has just lost its data.
//
// What is not caught: a loss without an interruption (FLUSHALL, a
// failover that keeps the connection) until the next probe reads the
// epoch; a replica that cannot reach the store within the grace, or whose
// write-back takes longer than it; and the keys a failover lost that were
// recorded after the epoch (redis_wait_replicas is for those).
type recovery struct {
	local *Memory
	wake  chan struct{}

	mu      sync.Mutex
	users   []*Tiered          // open, the newest last: its store is probed
	stop    context.CancelFunc // stops the loops; nil while none run
	probing *sync.WaitGroup    // the probe loop; the watch ends within a watchBlock
	known   string             // the store's epoch as last read

	checkMu    sync.Mutex    // one epoch read at a time
	suspected  atomic.Uint64 // counts interruptions (the start is one)
	verified   atomic.Uint64 // suspected as it was when the last good epoch read began
	graceUntil atomic.Int64  // unix ns: keys this replica does not know wait until then; 0 for none
	watching   atomic.Int32  // watch loops running (the server allows BLPOP)
	waiting    atomic.Int64  // requests waiting for the grace
	losses     atomic.Int64  // losses noticed
}

// recovery returns m's recovery, making it on first use.
func (m *Memory) recovery() *recovery {
	m.recOnce.Do(func() {
		m.rec = &recovery{local: m, wake: make(chan struct{}, 1)}
		m.rec.suspected.Store(1)
	})
	return m.rec
}

// attach adds t to the stores r serves, starting the probe and the watch
// if none ran.
func (r *recovery) attach(t *Tiered) {
	r.mu.Lock()
	r.users = append(r.users, t)
	if r.stop == nil {
		ctx, cancel := context.WithCancel(context.Background())
		r.stop, r.probing = cancel, new(sync.WaitGroup)
		r.probing.Add(1)
		r.watching.Add(1)
		go r.probeLoop(ctx, r.probing)
		go r.watchLoop(ctx)
	}
	r.mu.Unlock()
	r.kick()
}

// detach removes t, stopping the loops once no store is open: it waits
// for the probe; the watch, blocked in Redis, ends within a watchBlock.
func (r *recovery) detach(t *Tiered) {
	r.mu.Lock()
	r.users = slices.DeleteFunc(r.users, func(u *Tiered) bool { return u == t })
	var stop context.CancelFunc
	var probing *sync.WaitGroup
	if len(r.users) == 0 && r.stop != nil {
		stop, probing = r.stop, r.probing
		r.stop, r.probing = nil, nil
	}
	r.mu.Unlock()
	if stop != nil {
		stop()
		probing.Wait()
	}
}

// current returns the newest open store, or nil.
func (r *recovery) current() *Tiered {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.users) == 0 {
		return nil
	}
	return r.users[len(r.users)-1]
}

func (r *recovery) kick() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// interrupted records that the store may have been replaced: it is owed
// a write-back, and is read again before a request uses it.
func (r *recovery) interrupted() {
	r.suspected.Add(1)
	r.local.resync.Add(1)
}

// owed reports whether a write-back is owed.
func (r *recovery) owed() bool { return r.local.unsynced.Load() > 0 || r.local.resync.Load() > 0 }

// ready returns when a request may use the store: at once, unless the
// store has to be read again (it does so) or a loss grace runs (it waits
// for its end). An error wrapping ErrUnavailable means that the store
// could not be read; another, that ctx ended first.
func (r *recovery) ready(ctx context.Context, t *Tiered) error {
	for steps := 0; ; steps++ {
		unread := r.verified.Load() != r.suspected.Load()
		until := r.graceUntil.Load()
		wait := time.Duration(0)
		if until != 0 {
			if wait = time.Until(time.Unix(0, until)); wait <= 0 {
				r.graceUntil.CompareAndSwap(until, 0)
			}
		}
		switch {
		case !unread && wait <= 0:
			return nil
		case steps == 4: // the store keeps changing
			return errEpochUnsettled
		case unread:
			if err := r.check(ctx, t, true); err != nil {
				return err
			}
			continue
		}
		r.waiting.Add(1)
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			r.waiting.Add(-1)
			return ctx.Err()
		case <-timer.C:
		}
		r.waiting.Add(-1)
	}
}

// check reads the store's epoch and acts on what it finds. A request's
// check (byRequest) goes through the store's breaker and is skipped if
// another check has read the epoch since the last interruption; the
// probe's does neither, so that a failure no request saw does not make
// requests skip the store.
func (r *recovery) check(ctx context.Context, t *Tiered, byRequest bool) error {
	r.checkMu.Lock()
	defer r.checkMu.Unlock()
	gen := r.suspected.Load()
	if byRequest {
		if r.verified.Load() == gen {
			return nil
		}
		if !t.shared.breaker.Allow() {
			return ErrUnavailable
		}
	}
	e, err := t.shared.epoch(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if byRequest {
			t.shared.breaker.Fail()
		}
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if byRequest {
		t.shared.breaker.Succeed()
	}
	r.note(t, e)
	r.verified.Store(gen)
	return nil
}

// note compares the epoch read with the one last seen.
func (r *recovery) note(t *Tiered, e epochState) {
	r.mu.Lock()
	known := r.known
	r.known = e.value
	r.mu.Unlock()
	grace := t.lossGrace()
	switch {
	case known == e.value:
	case known == "":
		// The first read of this process: hold requests until the grace
		// after the epoch was set, in case it was set after a loss.
		age := time.Duration(e.now-e.start()) * time.Millisecond
		if e.created {
			age = 0
		}
		if age < grace {
			r.hold(min(grace, grace-age))
		}
	default:
		r.losses.Add(1)
		r.local.resync.Add(1)
		r.hold(grace)
		if o, ok := t.obs.(interface{ LostData(time.Duration) }); ok {
			o.LostData(grace)
		}
		r.kick()
	}
}

// hold makes requests wait for at least d from now.
func (r *recovery) hold(d time.Duration) {
	until := time.Now().Add(d).UnixNano()
	for {
		cur := r.graceUntil.Load()
		if cur >= until || r.graceUntil.CompareAndSwap(cur, until) {
			return
		}
	}
}

func (r *recovery) probeLoop(ctx context.Context, loops *sync.WaitGroup) {
	defer loops.Done()
	for {
		t := r.current()
		if t == nil {
			return
		}
		r.probe(ctx, t)
		timer := time.NewTimer(t.probe)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-r.wake:
			timer.Stop()
		case <-timer.C:
		}
	}
}

// probe reads the epoch and, if the store answered and a write-back is
// owed, makes it.
func (r *recovery) probe(ctx context.Context, t *Tiered) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err := r.check(cctx, t, false)
	cancel()
	if err == nil && r.owed() {
		r.writeBack(ctx, t)
	}
}

// restoreBatch bounds one pipelined write-back round trip.
const restoreBatch = 4096

// writeBack writes every unexpired key of the Memory to the store; it
// reports whether nothing is owed any more.
func (r *recovery) writeBack(ctx context.Context, t *Tiered) bool {
	owed, resync := r.local.unsynced.Load(), r.local.resync.Load()
	if owed == 0 && resync == 0 {
		return true
	}
	now := t.now()
	entries := r.local.Entries(now)
	total := len(entries)
	for len(entries) > 0 {
		n := min(len(entries), restoreBatch)
		bctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := t.shared.Restore(bctx, entries[:n], now)
		cancel()
		if err != nil {
			return false
		}
		entries = entries[n:]
	}
	t.observe(nil)
	if wb, ok := t.obs.(interface{ WroteBack(int) }); ok && total > 0 {
		wb.WroteBack(total)
	}
	// What was owed anew while this ran is owed still.
	done := r.local.unsynced.CompareAndSwap(owed, 0)
	return r.local.resync.CompareAndSwap(resync, 0) && done
}

func (r *recovery) watchLoop(ctx context.Context) {
	defer r.watching.Add(-1)
	for {
		t := r.current()
		if t == nil {
			return
		}
		err := t.shared.watch(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err == nil:
			continue
		case cannotWatch(err):
			// The probe alone notices a restart then, within an interval.
			if o, ok := t.obs.(interface{ CannotWatch(error) }); ok {
				o.CannotWatch(err)
			}
			return
		}
		r.interrupted()
		r.kick()
		timer := time.NewTimer(t.probe)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
	}
}

// cannotWatch reports whether err says that the server will never let
// the watch block (an ACL without BLPOP, a key of another type), rather
// than that the connection failed or the server is starting.
func cannotWatch(err error) bool {
	if !isReply(err) {
		return false
	}
	msg := err.Error()
	return strings.HasPrefix(msg, "NOPERM") || strings.HasPrefix(msg, "WRONGTYPE") || strings.Contains(msg, "unknown command")
}
