// Package refetch fetches a credential that the gateway uses on its
// clients' behalf (an access token, a key set, a metadata document) without
// letting those clients multiply the fetches.
//
// A Value holds the current version of one credential and numbers it: a
// generation, 0 before the first successful fetch, one more after each. A
// caller keeps the generation it used and reports it back:
//
//   - Renew, when its copy is missing or due for renewal: callers share one
//     fetch, and a caller whose generation is no longer current gets the
//     newer one without a fetch.
//   - Refused, when the party that checks the credential refused it: only a
//     report about the current generation fetches, and at most once per
//     MinInterval after the last such fetch that succeeded; a report about
//     an older generation gets the current one, and a report that comes too
//     soon gets ErrTooSoon. N requests that saw the same refused credential
//     cost at most one fetch.
//
// After a failed fetch, no fetch of either kind is made until a backoff
// (doubling from MinBackoff to MaxBackoff) has passed; callers get the
// failure at once. Time comes from Now, so that tests can inject a clock.
//
// A Value may outlive the configuration that made it (a gateway keeps it
// across reloads): SetLimits changes its limits in use, and Close ends it,
// cancelling the fetch under way.
package refetch

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Outcomes of a fetch, as Observe hears them and metrics count them.
const (
	// OK: a fetch was made and succeeded.
	OK = "ok"
	// Error: a fetch was made and failed.
	Error = "error"
	// Suppressed: a fetch was asked for and not made: too soon after the
	// last forced one (ErrTooSoon), or within the backoff after a failure.
	Suppressed = "suppressed"
)

// Defaults of a Value's zero fields.
const (
	DefaultMinInterval = 30 * time.Second
	DefaultMinBackoff  = time.Second
	DefaultMaxBackoff  = 30 * time.Second
)

// ErrTooSoon is Refused's answer when the credential was refreshed less
// than MinInterval ago: the refusal is the caller's answer, not a reason to
// fetch again.
var ErrTooSoon = errors.New("refetch: refreshed too recently to refresh again")

// ErrClosed is the answer of a Value after Close: no fetch is made.
var ErrClosed = errors.New("refetch: closed")

// Fetch obtains a new version of the credential. Its error is handed to
// every caller sharing the fetch, so it must hold no secret.
type Fetch[T any] func(context.Context) (T, error)

// Value is one fetched credential. It is safe for concurrent use; fill the
// exported fields before the first call and do not change them after
// (SetLimits changes the limits of a Value in use). The zero value is
// usable, with the defaults.
type Value[T any] struct {
	// MinInterval is the least time from the start of a fetch forced by a
	// refusal (Refused) that succeeded to the next forced fetch; a failed
	// one is followed by the backoff instead. Default: DefaultMinInterval.
	MinInterval time.Duration
	// MinBackoff and MaxBackoff bound the wait after a failed fetch before
	// the next (doubling after each failure). Defaults: DefaultMinBackoff
	// and DefaultMaxBackoff; a MaxBackoff below MinBackoff means MinBackoff.
	MinBackoff, MaxBackoff time.Duration
	// Now is the clock. Default: time.Now.
	Now func() time.Time
	// Observe, if set, hears the outcome of every fetch (OK, Error) and of
	// every fetch asked for and not made (Suppressed). It runs in the
	// goroutine that fetched or asked, without the Value's lock held, and
	// before any caller waiting for that fetch returns.
	Observe func(outcome string)

	mu      sync.Mutex
	val     T
	gen     uint64
	flight  *flight[T] // the fetch under way, if any
	forced  time.Time  // when the last successful forced fetch started
	backoff Backoff    // after failed fetches
	lastErr error      // the last fetch's error, while failing
	closed  bool
}

type flight[T any] struct {
	done   chan struct{}
	cancel context.CancelFunc
	val    T
	gen    uint64
	err    error
}

// SetLimits changes MinInterval, MinBackoff and MaxBackoff of a Value that
// may be in use (zero means the default, as for the fields). The fetch
// history stays: a forced fetch made a minute ago is a minute old for the
// new MinInterval, and a backoff under way ends when it was due to.
func (v *Value[T]) SetLimits(minInterval, minBackoff, maxBackoff time.Duration) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.MinInterval, v.MinBackoff, v.MaxBackoff = minInterval, minBackoff, maxBackoff
}

// Close cancels the fetch under way, if any (its callers get its error),
// and makes every later call answer ErrClosed without fetching; Load still
// returns the last version. Closing twice does nothing more.
func (v *Value[T]) Close() {
	v.mu.Lock()
	v.closed = true
	f := v.flight
	v.mu.Unlock()
	if f != nil {
		f.cancel()
	}
}

// Load returns the current version and its generation (0: none yet).
func (v *Value[T]) Load() (T, uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.val, v.gen
}

// Failing returns the error of the last fetch if it failed, or nil.
func (v *Value[T]) Failing() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.lastErr
}

// NextForced returns the earliest time at which Refused may fetch again
// after the last successful forced fetch: zero if none was made. (The
// backoff after a failure is another wait; Refused reports it itself.)
func (v *Value[T]) NextForced() time.Time {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.forced.IsZero() {
		return time.Time{}
	}
	return v.forced.Add(v.minInterval())
}

// Wait waits for the fetch under way, if any, to end, or for ctx to end
// (returning its error).
func (v *Value[T]) Wait(ctx context.Context) error {
	v.mu.Lock()
	f := v.flight
	v.mu.Unlock()
	if f == nil {
		return nil
	}
	select {
	case <-f.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Renew returns a version newer than generation seen: the current one if
// it is already newer, else the result of a fetch (one shared with every
// caller that asks while it runs). Within the backoff after a failed fetch
// it returns the current version and the failure, without fetching. Its
// error is the fetch's, or ctx's if ctx ends first (the fetch goes on for
// the others). Whatever the error, the current version is returned too.
func (v *Value[T]) Renew(ctx context.Context, seen uint64, fetch Fetch[T]) (T, uint64, error) {
	return v.get(ctx, seen, fetch, false, true)
}

// Prefetch starts Renew's fetch in the background and returns at once. It
// does nothing if seen is no longer current, a fetch is under way, or the
// backoff after a failure has not passed; nor is it counted then.
func (v *Value[T]) Prefetch(ctx context.Context, seen uint64, fetch Fetch[T]) {
	_, _, _ = v.get(ctx, seen, fetch, false, false)
}

// Refused reports that generation seen was refused by whoever checks it,
// and returns the version to try next:
//
//   - if seen is no longer current, the current version, without a fetch;
//   - if a fetch is under way, its result;
//   - within the backoff after a failed fetch, the failure, without a fetch;
//   - if the last successful forced fetch started less than MinInterval
//     ago, ErrTooSoon, without a fetch;
//   - otherwise the result of a fetch, shared as with Renew.
//
// Whatever the error, the current version is returned too.
func (v *Value[T]) Refused(ctx context.Context, seen uint64, fetch Fetch[T]) (T, uint64, error) {
	return v.get(ctx, seen, fetch, true, true)
}

func (v *Value[T]) get(ctx context.Context, seen uint64, fetch Fetch[T], forced, wait bool) (T, uint64, error) {
	now := v.now()
	v.mu.Lock()
	val, gen := v.val, v.gen
	if gen != seen {
		v.mu.Unlock()
		return val, gen, nil
	}
	f := v.flight
	var suppressed error
	switch {
	case v.closed:
		v.mu.Unlock()
		return val, gen, ErrClosed
	case f != nil:
	case now.Before(v.backoff.Until()):
		suppressed = v.lastErr
	case forced && !v.forced.IsZero() && now.Sub(v.forced) < v.minInterval():
		suppressed = ErrTooSoon
	default:
		f = v.start(ctx, fetch, forced, now)
	}
	v.mu.Unlock()
	switch {
	case !wait:
		return val, gen, nil
	case suppressed != nil:
		v.observe(Suppressed)
		return val, gen, suppressed
	}
	select {
	case <-f.done:
		return f.val, f.gen, f.err
	case <-ctx.Done():
		val, gen := v.Load()
		return val, gen, ctx.Err()
	}
}

// start begins a fetch; v.mu is held.
func (v *Value[T]) start(ctx context.Context, fetch Fetch[T], forced bool, now time.Time) *flight[T] {
	// shared: no one caller may cancel it, only Close
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	f := &flight[T]{done: make(chan struct{}), cancel: cancel}
	v.flight = f
	go func() {
		defer cancel()
		val, err := fetch(ctx)
		outcome := OK
		v.mu.Lock()
		if err != nil {
			outcome = Error
			v.lastErr = err
			v.backoff.Min, v.backoff.Max = v.MinBackoff, v.MaxBackoff
			v.backoff.Failed(v.now())
		} else {
			v.val, v.gen = val, v.gen+1
			v.lastErr = nil
			v.backoff.Succeeded()
			if forced {
				v.forced = now
			}
		}
		f.val, f.gen, f.err = v.val, v.gen, err
		v.flight = nil
		closed := v.closed
		v.mu.Unlock()
		if !closed || err == nil { // a fetch Close cancelled is no outcome
			v.observe(outcome)
		}
		close(f.done)
	}()
	return f
}

func (v *Value[T]) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

func (v *Value[T]) observe(outcome string) {
	if v.Observe != nil {
		v.Observe(outcome)
	}
}

func (v *Value[T]) minInterval() time.Duration {
	if v.MinInterval > 0 {
		return v.MinInterval
	}
	return DefaultMinInterval
}

// Backoff is the wait after failures in a row: Min after the first,
// doubling after each further one up to Max; a success ends it. The zero
// value is usable, with DefaultMinBackoff and DefaultMaxBackoff (a Max
// below Min means Min). It is not safe for concurrent use: its owner
// holds a lock.
type Backoff struct {
	Min, Max time.Duration

	failures int       // in a row
	until    time.Time // no attempt before this
}

// Failed records a failure at now and returns the time before which no
// attempt is to be made.
func (b *Backoff) Failed(now time.Time) time.Time {
	b.failures++
	b.until = now.Add(b.wait())
	return b.until
}

// Succeeded ends the backoff.
func (b *Backoff) Succeeded() { b.failures, b.until = 0, time.Time{} }

// Until returns the time before which no attempt is to be made: zero when
// the last attempt succeeded.
func (b *Backoff) Until() time.Time { return b.until }

// wait is the wait after the b.failures-th failure in a row.
func (b *Backoff) wait() time.Duration {
	lo, hi := b.Min, b.Max
	if lo <= 0 {
		lo = DefaultMinBackoff
	}
	if hi <= 0 {
		hi = DefaultMaxBackoff
	}
	d := lo
	for i := 1; i < b.failures && d < hi; i++ {
		d *= 2
	}
	return max(min(d, hi), lo)
}
