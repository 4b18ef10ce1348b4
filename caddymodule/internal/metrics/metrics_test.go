package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRegister(t *testing.T) {
	if err := Register(nil); err != nil {
		t.Errorf("nil registry: %v", err)
	}
	reg := prometheus.NewRegistry()
	for i := range 2 { // a second module's registration is tolerated
		if err := Register(reg); err != nil {
			t.Fatalf("registration %d: %v", i+1, err)
		}
	}
	CountRejection("test_metrics", "reason")
	families, err := reg.Gather()
	found := false
	for _, f := range families {
		found = found || f.GetName() == "mxgate_rejections_total"
	}
	if err != nil || !found {
		t.Errorf("mxgate_rejections_total not gathered: %v", err)
	}
	// a different collector under one of the names is a real conflict
	clash := prometheus.NewRegistry()
	clash.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "mxgate_rejections_total", Help: "another"}))
	if err := Register(clash); err == nil {
		t.Error("a conflicting collector was tolerated")
	}
}
