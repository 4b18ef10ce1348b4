package caddymodule

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// The collectors are process-wide so that counts survive config reloads;
// each config's registry gets them registered once.
var metrics = struct {
	once       sync.Once
	rejections *prometheus.CounterVec
}{}

func initMetrics() {
	metrics.once.Do(func() {
		metrics.rejections = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mxgate",
			Name:      "rejections_total",
			Help:      "Requests refused by an mxgate handler, by directive and reason.",
		}, []string{"directive", "reason"})
	})
}

// registerMetrics registers mxgate's collectors with reg (a config's
// registry), tolerating a second registration by another module.
func registerMetrics(reg prometheus.Registerer) error {
	initMetrics()
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{metrics.rejections} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return err
			}
		}
	}
	return nil
}

func countRejection(directive, reason string) {
	metrics.rejections.WithLabelValues(directive, reason).Inc()
}
