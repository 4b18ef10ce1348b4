package deploy

import (
	"fmt"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/mxgate/mxgate/internal/metricnames"
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

// metricsWeExpose are mxgate's metrics (caddymodule/internal/gate's
// metrics.go, and two the credential work adds) and the Caddy metrics the
// rules and the dashboard read, with their label names.
var metricsWeExpose = map[string][]string{
	"mxgate_rejections_total":              {"directive", "reason"},
	"mxgate_ratelimit_admitted_total":      {"class"},
	"mxgate_ratelimit_rejected_total":      {"class"},
	"mxgate_ratelimit_abandoned_total":     {"class"},
	"mxgate_ratelimit_overflow_total":      {"class"},
	"mxgate_ratelimit_wait_seconds_bucket": {"class", "le"},
	"mxgate_ratelimit_wait_seconds_sum":    {"class"},
	"mxgate_ratelimit_wait_seconds_count":  {"class"},
	"mxgate_store_errors_total":            {"directive"},
	"mxgate_retries_total":                 {"status"},
	"mxgate_sanitize_findings_total":       {"action", "rule"},
	"mxgate_sanitize_let_through_total":    {"action", "reason"},
	"mxgate_store_up":                      {"directive", "namespace"},
	"mxgate_store_data_lost_total":         {"directive", "namespace"},
	"mxgate_shed_total":                    {"where"},
	"mxgate_connections_open":              nil,
	// To be added with the credential metrics.
	"mxgate_token_refresh_failures_total": nil,
	"mxgate_jwe_decrypt_failures_total":   nil,
	"mxgate_credential_fetches_total":     {"directive", "kind", "outcome"},
	// Caddy's.
	"caddy_http_request_duration_seconds_bucket": {"code", "handler", "le", "method", "server"},
	"caddy_http_request_duration_seconds_count":  {"code", "handler", "method", "server"},
	"caddy_http_requests_in_flight":              {"handler", "server"},
	"caddy_http_request_errors_total":            {"handler", "server"},
	"caddy_config_last_reload_successful":        nil,
}

// exposition renders metrics as /metrics would show them, one series
// each.
func exposition(metrics map[string][]string) string {
	var b strings.Builder
	for name, labels := range metrics {
		var pairs []string
		for _, l := range labels {
			pairs = append(pairs, fmt.Sprintf("%s=%q", l, "x"))
		}
		fmt.Fprintf(&b, "%s{%s} 1\n", name, strings.Join(pairs, ","))
	}
	return b.String()
}

// TestMetricUses checks that every metric and label the rules and the
// dashboard use is one the gateway exposes, and that every mxgate metric
// is on the dashboard.
func TestMetricUses(t *testing.T) {
	uses, err := MetricUses()
	if err != nil {
		t.Fatal(err)
	}
	exposed, err := metricnames.Exposed(strings.NewReader(exposition(metricsWeExpose)))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range metricnames.Missing(exposed, uses) {
		t.Error(m)
	}

	dash, err := metricnames.FromDashboard(Dashboard)
	if err != nil {
		t.Fatal(err)
	}
	onDashboard := map[string]bool{}
	for _, u := range dash {
		onDashboard[u.Metric] = true
	}
	for name := range metricsWeExpose {
		if strings.HasPrefix(name, "mxgate_") && !onDashboard[name] {
			t.Errorf("%s is not on the dashboard", name)
		}
	}

	// The alert the issue asks for, each on the metric it names.
	rules, err := metricnames.FromRules(AlertRules)
	if err != nil {
		t.Fatal(err)
	}
	alerted := map[string]bool{}
	for _, u := range rules {
		alerted[u.Metric] = true
	}
	for _, name := range []string{
		"mxgate_store_up", "mxgate_store_data_lost_total", "mxgate_rejections_total", "mxgate_ratelimit_rejected_total",
		"mxgate_token_refresh_failures_total", "mxgate_jwe_decrypt_failures_total", "mxgate_shed_total",
	} {
		if !alerted[name] {
			t.Errorf("no alert rule reads %s", name)
		}
	}
}

// TestMissingReportsAbsentMetrics shows the check an end-to-end test makes
// against a gateway: a metric or label the gateway lacks is reported.
func TestMissingReportsAbsentMetrics(t *testing.T) {
	uses, err := MetricUses()
	if err != nil {
		t.Fatal(err)
	}
	lacking := map[string][]string{}
	for k, v := range metricsWeExpose {
		lacking[k] = v
	}
	delete(lacking, "mxgate_store_up")
	lacking["mxgate_rejections_total"] = []string{"directive"}
	exposed, _ := metricnames.Exposed(strings.NewReader(exposition(lacking)))
	got := metricnames.Missing(exposed, uses)
	want := []string{"mxgate_rejections_total has no label \"reason\"", "mxgate_store_up ("}
	for _, w := range want {
		if !slices.ContainsFunc(got, func(m string) bool { return strings.HasPrefix(m, w) }) {
			t.Errorf("Missing did not report %q; it said %v", w, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("Missing said %d things, want %d: %v", len(got), len(want), got)
	}
}

func TestMetricUsesAreMerged(t *testing.T) {
	uses, err := MetricUses()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, u := range uses {
		names = append(names, u.Metric)
	}
	if !slices.IsSorted(names) || len(slices.Compact(slices.Clone(names))) != len(names) {
		t.Errorf("uses are not merged by name: %v", names)
	}
	for _, u := range uses {
		if u.Metric == "mxgate_rejections_total" && !reflect.DeepEqual(u.Labels, []string{"directive", "reason"}) {
			t.Errorf("mxgate_rejections_total labels %v", u.Labels)
		}
	}
}
