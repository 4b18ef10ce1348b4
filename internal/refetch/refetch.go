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

// Fetch obtains a new version of the credential. Its error is handed to
// every caller sharing the fetch, so it must hold no secret.
type Fetch[T any] func(context.Context) (T, error)

// Value is one fetched credential. It is safe for concurrent use; fill the
// exported fields before the first call and do not change them after. The
// zero value is usable, with the defaults.
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

	mu       sync.Mutex
	val      T
	gen      uint64
	flight   *flight[T] // the fetch under way, if any
	forced   time.Time  // when the last successful forced fetch started
	failures int        // consecutive failed fetches
	retryAt  time.Time  // no fetch before this, after a failure
	lastErr  error      // the last fetch's error, while failing
}

type flight[T any] struct {
	done chan struct{}
	val  T
	gen  uint64
	err  error
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
	case f != nil:
	case now.Before(v.retryAt):
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
	f := &flight[T]{done: make(chan struct{})}
	v.flight = f
	ctx = context.WithoutCancel(ctx) // shared: no one caller may cancel it
	go func() {
		val, err := fetch(ctx)
		outcome := OK
		v.mu.Lock()
		if err != nil {
			outcome = Error
			v.failures++
			v.lastErr = err
			v.retryAt = v.now().Add(v.backoff())
		} else {
			v.val, v.gen = val, v.gen+1
			v.failures, v.lastErr, v.retryAt = 0, nil, time.Time{}
			if forced {
				v.forced = now
			}
		}
		f.val, f.gen, f.err = v.val, v.gen, err
		v.flight = nil
		v.mu.Unlock()
		v.observe(outcome)
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

// backoff is the wait after the v.failures-th failure in a row.
func (v *Value[T]) backoff() time.Duration {
	lo, hi := v.MinBackoff, v.MaxBackoff
	if lo <= 0 {
		lo = DefaultMinBackoff
	}
	if hi <= 0 {
		hi = DefaultMaxBackoff
	}
	d := lo
	for i := 1; i < v.failures && d < hi; i++ {
		d *= 2
	}
	return max(min(d, hi), lo)
}
