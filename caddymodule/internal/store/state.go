package store

import (
	"fmt"

	"github.com/caddyserver/caddy/v2"
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
