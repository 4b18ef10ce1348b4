// Package readiness is what a loaded configuration needs in order to
// serve (a shared store, an authorization server's keys), registered by
// the directives that need it and checked by mx_health.
package readiness

import (
	"context"
	"sort"
	"sync"
)

// A Dependency is something a loaded configuration needs to serve: a
// shared store, an authorization server's keys. Check reports why it
// cannot be used now (nil when it can); it must honour ctx and never
// return an error that holds a secret.
type Dependency struct {
	Name  string // for the readiness answer: the directive and what it needs
	Check func(context.Context) error
}

var deps = struct {
	sync.Mutex
	set map[*Dependency]struct{}
}{set: map[*Dependency]struct{}{}}

// Register adds d to what readiness checks, until the returned
// function is called (from the directive's Cleanup).
func Register(d Dependency) (unregister func()) {
	p := &d
	deps.Lock()
	deps.set[p] = struct{}{}
	deps.Unlock()
	return func() {
		deps.Lock()
		delete(deps.set, p)
		deps.Unlock()
	}
}

// Check checks every registered dependency at once and returns
// the failures as "name: reason", sorted; none means ready.
func Check(ctx context.Context) []string {
	deps.Lock()
	list := make([]*Dependency, 0, len(deps.set))
	for d := range deps.set {
		list = append(list, d)
	}
	deps.Unlock()
	var mu sync.Mutex
	var failed []string
	var wg sync.WaitGroup
	for _, d := range list {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.Check(ctx); err != nil {
				mu.Lock()
				failed = append(failed, d.Name+": "+err.Error())
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	sort.Strings(failed)
	return failed
}
