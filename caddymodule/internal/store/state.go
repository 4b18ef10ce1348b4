package store

import (
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/mxgate/mxgate/replay"
)

// states keeps security state (replay caches, rate-limit buckets) across
// configuration reloads: a reload provisions the new configuration, which
// takes a reference, before the old one is cleaned up and drops its own,
// so the state lives on as long as some configuration uses it.
var states = caddy.NewUsagePool()

type pooledState struct {
	v        any
	destruct func()
}

func (p *pooledState) Destruct() error {
	if p.destruct != nil {
		p.destruct()
	}
	return nil
}

// State returns the value kept under key, making it with mk when no loaded
// configuration holds one. mk also returns what to do when the last
// configuration lets go (nil for nothing). Call the returned release from
// the handler's Cleanup.
func State[T any](key string, mk func() (T, func(), error)) (T, func(), error) {
	v, _, err := states.LoadOrNew(key, func() (caddy.Destructor, error) {
		val, destruct, err := mk()
		if err != nil {
			return nil, err
		}
		return &pooledState{v: val, destruct: destruct}, nil
	})
	var zero T
	if err != nil {
		return zero, nil, err
	}
	val, ok := v.(*pooledState).v.(T)
	if !ok {
		_, _ = states.Delete(key)
		return zero, nil, fmt.Errorf("state %q is held by another kind of directive", key)
	}
	release := func() { _, _ = states.Delete(key) }
	return val, release, nil
}

// ReplayCache returns the replay cache of window and size kept across
// reloads under key (resized to this configuration) and, when p is a
// Redis store, the shared cache of Redis keys under prefix layered over
// it (a *replay.Tiered). batched sends its records through p's Batcher,
// in round trips shared with concurrent requests. The func lets go of
// both.
func (p *Provisioned) ReplayCache(key, prefix string, window time.Duration, size int, batched bool) (replay.Store, func(), error) {
	local, release, err := State(key, func() (*replay.Memory, func(), error) {
		m, err := replay.NewMemory(window, size)
		return m, nil, err
	})
	if err != nil {
		return nil, nil, err
	}
	if err := local.Resize(window, size); err != nil {
		release()
		return nil, nil, err
	}
	if p.Client == nil {
		return local, release, nil
	}
	shared, err := replay.NewRedis(p.Client, prefix, window)
	if err != nil {
		release()
		return nil, nil, err
	}
	if batched {
		shared.SetBatcher(p.Batch)
	}
	if p.Wait > 0 {
		shared.WaitForReplicas(p.Wait, p.Timeout/2)
	}
	tiered, err := replay.NewTiered(local, shared, !p.FailOpen, p.Health)
	if err != nil {
		release()
		return nil, nil, err
	}
	return tiered, func() { tiered.Close(); release() }, nil
}
