// Package breaker stops callers from paying a dependency's timeout on every
// request while it is down: after a failure, Allow answers false until the
// probe interval has passed, then lets exactly one caller through to probe.
package breaker

import (
	"sync/atomic"
	"time"
)

// Breaker is safe for concurrent use. The zero value allows everything and
// probes every DefaultProbe after a failure, on the system clock.
type Breaker struct {
	Probe time.Duration    // wait after a failure before probing; 0 means DefaultProbe
	Now   func() time.Time // the clock; nil means time.Now. Set it before first use.

	downUntil atomic.Int64 // unix ns when the next probe may go; 0 while healthy
}

// DefaultProbe is the wait after a failure when Probe is zero.
const DefaultProbe = time.Second

// Interval returns the wait after a failure before the next probe.
func (b *Breaker) Interval() time.Duration {
	if b.Probe > 0 {
		return b.Probe
	}
	return DefaultProbe
}

func (b *Breaker) now() time.Time {
	if b.Now != nil {
		return b.Now()
	}
	return time.Now()
}

// Allow reports whether the dependency may be called now.
func (b *Breaker) Allow() bool {
	until := b.downUntil.Load()
	if until == 0 {
		return true
	}
	now := b.now().UnixNano()
	return now >= until && b.downUntil.CompareAndSwap(until, now+int64(b.Interval()))
}

// Fail records a failed call.
func (b *Breaker) Fail() { b.downUntil.Store(b.now().Add(b.Interval()).UnixNano()) }

// Succeed records a successful call.
func (b *Breaker) Succeed() {
	if b.downUntil.Load() != 0 {
		b.downUntil.Store(0)
	}
}

// Healthy reports whether the last call succeeded.
func (b *Breaker) Healthy() bool { return b.downUntil.Load() == 0 }
