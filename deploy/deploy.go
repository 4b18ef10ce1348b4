// Package deploy holds what operators install besides the binary: the
// systemd unit (systemd/), the container image's definition (the
// Dockerfile at the top of the repository), the Prometheus alert rules
// (prometheus/) and the Grafana dashboard (grafana/). Its tests check them
// with the tools that read them; its functions let an end-to-end test
// check the rules and the dashboard against a running gateway's /metrics.
package deploy

import (
	_ "embed"

	"github.com/mxgate/mxgate/internal/metricnames"
)

// AlertRules is the Prometheus alert rules file, prometheus/mxgate-alerts.yml.
//
//go:embed prometheus/mxgate-alerts.yml
var AlertRules []byte

// Dashboard is the Grafana dashboard, grafana/mxgate-dashboard.json.
//
//go:embed grafana/mxgate-dashboard.json
var Dashboard []byte

// MetricUses returns every metric that the alert rules and the dashboard
// use, each with the label names they rely on (less the target labels
// instance and job), merged by metric name. To check them against a
// gateway, read its /metrics with metricnames.Exposed and pass both to
// metricnames.Missing. A counter or histogram with labels appears on
// /metrics only once it has counted something, so such a test first makes
// the gateway refuse, limit, retry and so on.
func MetricUses() ([]metricnames.Use, error) {
	rules, err := metricnames.FromRules(AlertRules)
	if err != nil {
		return nil, err
	}
	panels, err := metricnames.FromDashboard(Dashboard)
	if err != nil {
		return nil, err
	}
	return metricnames.Merge(append(rules, panels...)), nil
}
