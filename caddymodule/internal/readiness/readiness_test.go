package readiness

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestDependencies(t *testing.T) {
	ok := Register(Dependency{Name: "b ok", Check: func(context.Context) error { return nil }})
	defer ok()
	bad := Register(Dependency{Name: "a store", Check: func(context.Context) error { return errors.New("unreachable") }})
	slow := Register(Dependency{Name: "c keys", Check: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	failed := Check(ctx)
	if len(failed) != 2 || failed[0] != "a store: unreachable" || !strings.HasPrefix(failed[1], "c keys: ") {
		t.Fatalf("%q", failed)
	}
	bad()
	slow()
	if failed := Check(context.Background()); len(failed) != 0 {
		t.Fatalf("after unregistering: %q", failed)
	}
}
