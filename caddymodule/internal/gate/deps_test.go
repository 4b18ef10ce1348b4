package gate

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestDependencies(t *testing.T) {
	ok := RegisterDependency(Dependency{Name: "b ok", Check: func(context.Context) error { return nil }})
	defer ok()
	bad := RegisterDependency(Dependency{Name: "a store", Check: func(context.Context) error { return errors.New("unreachable") }})
	slow := RegisterDependency(Dependency{Name: "c keys", Check: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	failed := CheckDependencies(ctx)
	if len(failed) != 2 || failed[0] != "a store: unreachable" || !strings.HasPrefix(failed[1], "c keys: ") {
		t.Fatalf("%q", failed)
	}
	bad()
	slow()
	if failed := CheckDependencies(context.Background()); len(failed) != 0 {
		t.Fatalf("after unregistering: %q", failed)
	}
}

func TestAllowCallersOption(t *testing.T) {
	d := caddyfile.NewTestDispenser("allow_callers loopback 10.1.0.0/16 private_ranges")
	d.Next()
	if got, err := AllowCallers(d); err != nil || len(got) != 3 {
		t.Fatalf("%v %v", got, err)
	}
	for _, bad := range []string{"allow_callers", "allow_callers 10.1.0.0/33", "allow_callers somewhere"} {
		d := caddyfile.NewTestDispenser(bad)
		d.Next()
		if _, err := AllowCallers(d); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
