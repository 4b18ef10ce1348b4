package ratelimit

import (
	"context"
	"time"
)

// Observer hears how a shared store's calls go: Failed for each failed
// call, Succeeded for each successful one. Implementations log an outage
// once per episode and keep health metrics.
type Observer interface {
	Failed(err error)
	Succeeded()
}

// Fallback is a Store that asks Shared and, while Shared fails, Local: the
// replica's own buckets (so a fleet of N replicas may admit up to N times
// the budget during an outage), or, with FailClosed, nothing at all: the
// shared store's error (wrapping ErrStoreUnavailable) is returned.
// It is safe for concurrent use.
type Fallback struct {
	Shared     Store
	Local      *Memory
	FailClosed bool
	Observer   Observer // may be nil
}

// Take implements Store.
func (f *Fallback) Take(ctx context.Context, key string, c Class, now time.Time, maxWait time.Duration) (Result, error) {
	res, err := f.Shared.Take(ctx, key, c, now, maxWait)
	if err == nil {
		if f.Observer != nil {
			f.Observer.Succeeded()
		}
		return res, nil
	}
	if f.Observer != nil {
		f.Observer.Failed(err)
	}
	if f.FailClosed {
		return Result{}, err // wraps ErrStoreUnavailable
	}
	return f.Local.Take(ctx, key, c, now, maxWait)
}
