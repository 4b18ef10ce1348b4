package deploy

import (
	"os/exec"
	"strings"
	"testing"
)

// TestPromtool checks the alert rules' syntax and runs their unit tests
// (prometheus/mxgate-alerts.test.yml) with Prometheus's own promtool.
func TestPromtool(t *testing.T) {
	promtool := requireTool(t, "promtool", "prometheus")
	for _, args := range [][]string{
		{"check", "rules", "mxgate-alerts.yml"},
		{"test", "rules", "mxgate-alerts.test.yml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "prometheus"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
