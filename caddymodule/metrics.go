package caddymodule

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// The collectors are process-wide so that counts survive config reloads;
// each config's registry gets them registered once.
var metrics = struct {
	once        sync.Once
	rejections  *prometheus.CounterVec
	rlAdmitted  *prometheus.CounterVec
	rlRejected  *prometheus.CounterVec
	rlWait      *prometheus.HistogramVec
	rlAbandoned *prometheus.CounterVec
	storeErrors *prometheus.CounterVec
	retries     *prometheus.CounterVec

	sanitizeFindings *prometheus.CounterVec
}{}

func initMetrics() {
	metrics.once.Do(func() {
		metrics.rejections = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mxgate",
			Name:      "rejections_total",
			Help:      "Requests refused by an mxgate handler, by directive and reason.",
		}, []string{"directive", "reason"})
		metrics.rlAdmitted = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mxgate", Subsystem: "ratelimit", Name: "admitted_total",
			Help: "Requests admitted by mx_rate_limit, by class.",
		}, []string{"class"})
		metrics.rlRejected = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mxgate", Subsystem: "ratelimit", Name: "rejected_total",
			Help: "Requests refused by mx_rate_limit for want of a token, by class.",
		}, []string{"class"})
		metrics.rlWait = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "mxgate", Subsystem: "ratelimit", Name: "wait_seconds",
			Help:    "How long admitted requests waited for a token in wait mode, by class.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2, 5},
		}, []string{"class"})
		metrics.rlAbandoned = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mxgate", Subsystem: "ratelimit", Name: "abandoned_total",
			Help: "Requests whose client went away while they waited for a token, by class; their tokens were given back.",
		}, []string{"class"})
		metrics.retries = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mxgate", Name: "retries_total",
			Help: "Requests sent again by mx_retry, by the status that caused it.",
		}, []string{"status"})
		metrics.sanitizeFindings = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mxgate", Subsystem: "sanitize", Name: "findings_total",
			Help: "Complete account or card numbers found in MDX responses, by rule and the action taken.",
		}, []string{"rule", "action"})
		metrics.storeErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mxgate", Name: "store_errors_total",
			Help: "Failed calls to a shared store (Redis), by directive.",
		}, []string{"directive"})
	})
}

// registerMetrics registers mxgate's collectors with reg (a config's
// registry), tolerating a second registration by another module.
func registerMetrics(reg prometheus.Registerer) error {
	initMetrics()
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{metrics.rejections, metrics.rlAdmitted, metrics.rlRejected, metrics.rlWait, metrics.rlAbandoned, metrics.storeErrors, metrics.retries, metrics.sanitizeFindings} {
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
