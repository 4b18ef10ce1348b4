package provision

import "testing"

func TestResolve(t *testing.T) {
	t.Setenv("MXGATE_GATE_HOST", "redis.internal")
	if got := Resolve("redis://{env.MXGATE_GATE_HOST}:6379/{vars.db}"); got != "redis://redis.internal:6379/{vars.db}" {
		t.Errorf("%q", got)
	}
	if got := Resolve("{env.MXGATE_GATE_UNSET}"); got != "" {
		t.Errorf("unset: %q", got)
	}
}
