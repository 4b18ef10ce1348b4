// Package metrics holds mxgate's Prometheus collectors, process-wide so that
// counts survive configuration reloads, and their registration with each
// configuration's registry.
package metrics

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mxgate/mxgate/internal/refetch"
)

// mxgate's collectors. They are process-wide so that counts survive config
// reloads; each config's registry gets them registered once (Register).
var (
	Rejections = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mxgate", Name: "rejections_total",
		Help: "Requests refused by an mxgate handler, by directive and reason.",
	}, []string{"directive", "reason"})
	RLAdmitted = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mxgate", Subsystem: "ratelimit", Name: "admitted_total",
		Help: "Requests admitted by mx_rate_limit, by class.",
	}, []string{"class"})
	RLRejected = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mxgate", Subsystem: "ratelimit", Name: "rejected_total",
		Help: "Requests refused by mx_rate_limit for want of a token, by class.",
	}, []string{"class"})
	RLWait = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "mxgate", Subsystem: "ratelimit", Name: "wait_seconds",
		Help:    "How long admitted requests waited for a token in wait mode, by class.",
		Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2, 5},
	}, []string{"class"})
	RLAbandoned = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mxgate", Subsystem: "ratelimit", Name: "abandoned_total",
		Help: "Requests whose client went away while they waited for a token, by class; their tokens were given back.",
	}, []string{"class"})
	RLOverflow = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mxgate", Subsystem: "ratelimit", Name: "overflow_total",
		Help: "Requests whose key mx_rate_limit's in-memory store had no room for (max_keys reached, no full bucket to drop), which drew on the shared overflow budget, by class.",
	}, []string{"class"})
	StoreErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mxgate", Name: "store_errors_total",
		Help: "Failed calls to a shared store (Redis), by directive.",
	}, []string{"directive"})
	StoreUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "mxgate", Name: "store_up",
		Help: "Whether a directive's shared store (Redis) answered its last call: 1 up, 0 down.",
	}, []string{"directive", "namespace"})
	StoreLost = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mxgate", Name: "store_data_lost_total",
		Help: "Times a directive found that its shared store (Redis) had lost its data: restarted empty, flushed, or failed over to a replica without it (mdx_hmac's replay cache checks; 0 for the others), by directive and namespace.",
	}, []string{"directive", "namespace"})
	Retries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mxgate", Name: "retries_total",
		Help: "Requests sent again by mx_retry, by the status that caused it.",
	}, []string{"status"})
	TokenRefreshFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "mxgate", Name: "token_refresh_failures_total",
		Help: "Failed calls to MX Connect's Security API for a token (mxconnect_token).",
	})
	CredentialFetches = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mxgate", Name: "credential_fetches_total",
		Help: "Fetches the gateway makes on its clients' behalf (kind: token, jwks, introspection, discovery), by directive and outcome: ok, error, or suppressed (asked for and not made: too soon after the last forced refresh, or within the backoff after a failure).",
	}, []string{"directive", "kind", "outcome"})
	JWEDecryptFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "mxgate", Name: "jwe_decrypt_failures_total",
		Help: "Upstream replies that claimed to be encrypted but did not decrypt (mx_jwe decrypt).",
	})
	Shed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mxgate", Name: "shed_total",
		Help: "Work refused for want of capacity, with 503: connections at accept by mx_conn_limit (where=listener), requests by mx_shed (where=handler), credential checks beyond mx_auth check's max_slow_hashes (where=mx_auth).",
	}, []string{"where"})
	ConnectionsOpen = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "mxgate", Name: "connections_open",
		Help: "Connections open that an mx_conn_limit listener wrapper admitted, over every server and loaded configuration.",
	})
	SanitizeFindings = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mxgate", Subsystem: "sanitize", Name: "findings_total",
		Help: "Complete account or card numbers found in MDX responses, by rule and the action taken.",
	}, []string{"rule", "action"})
	SanitizeLetThrough = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "mxgate", Subsystem: "sanitize", Name: "let_through_total",
		Help: "MDX responses mdx_sanitize let through although it refuses such responses by default (report mode, or allow_malformed), by reason and action.",
	}, []string{"reason", "action"})
)

// The places mxgate_shed_total counts, as series that exist from the start
// (at 0), so that a rate over them is defined before the first shed.
var (
	ShedListener = Shed.WithLabelValues("listener")
	ShedHandler  = Shed.WithLabelValues("handler")
	ShedAuth     = Shed.WithLabelValues("mx_auth")
)

// Register registers mxgate's collectors with reg (a config's registry),
// tolerating their registration by another module before.
func Register(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{Rejections, RLAdmitted, RLRejected, RLWait, RLAbandoned, RLOverflow,
		StoreErrors, StoreUp, StoreLost, Retries, SanitizeFindings, SanitizeLetThrough, TokenRefreshFailures, JWEDecryptFailures, CredentialFetches, Shed, ConnectionsOpen} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return err
			}
		}
	}
	return nil
}

// CountRejection counts one refusal.
func CountRejection(directive, reason string) {
	Rejections.WithLabelValues(directive, reason).Inc()
}

// CountCredentialFetches returns an observer of the fetches of one kind
// (token, jwks, introspection, discovery) a directive makes, counting them
// in mxgate_credential_fetches_total by outcome. The series of the three
// outcomes exist from then on, at 0.
func CountCredentialFetches(directive, kind string) func(outcome string) {
	counters := map[string]prometheus.Counter{}
	for _, o := range []string{refetch.OK, refetch.Error, refetch.Suppressed} {
		counters[o] = CredentialFetches.WithLabelValues(directive, kind, o)
	}
	return func(outcome string) {
		if c, ok := counters[outcome]; ok {
			c.Inc()
		}
	}
}
