package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// The operator's files this tool checks, in the gateway's module.
var (
	rulesPath     = filepath.Join("..", "..", "deploy", "prometheus", "mxgate-alerts.yml")
	dashboardPath = filepath.Join("..", "..", "deploy", "grafana", "mxgate-dashboard.json")
)

func readRules(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(rulesPath)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readDashboard(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// deployUses are the uses of the gateway's alert rules and dashboard.
func deployUses(t *testing.T) ([]Use, error) {
	t.Helper()
	return read([]string{rulesPath}, []string{dashboardPath})
}

// metricsWeExpose are mxgate's metrics (caddymodule/internal/metrics,
// and two the credential work adds) and the Caddy metrics the rules and
// the dashboard read, with their label names.
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
	uses, err := deployUses(t)
	if err != nil {
		t.Fatal(err)
	}
	exposed, err := Exposed(strings.NewReader(exposition(metricsWeExpose)))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range Missing(exposed, uses) {
		t.Error(m)
	}

	dash, err := FromDashboard(readDashboard(t))
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
	rules, err := FromRules(readRules(t))
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
	uses, err := deployUses(t)
	if err != nil {
		t.Fatal(err)
	}
	lacking := map[string][]string{}
	for k, v := range metricsWeExpose {
		lacking[k] = v
	}
	delete(lacking, "mxgate_store_up")
	lacking["mxgate_rejections_total"] = []string{"directive"}
	exposed, _ := Exposed(strings.NewReader(exposition(lacking)))
	got := Missing(exposed, uses)
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
	uses, err := deployUses(t)
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

// TestRun runs the command as the end-to-end test does: the uses as JSON,
// and a check against an exposition that reports what it lacks.
func TestRun(t *testing.T) {
	var out bytes.Buffer
	if err := run(&out, []string{rulesPath}, []string{dashboardPath}, ""); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `"metric": "mxgate_rejections_total"`) {
		t.Errorf("the JSON lacks mxgate_rejections_total:\n%.300s", out.String())
	}
	dir := t.TempDir()
	full, lacking := filepath.Join(dir, "full.txt"), filepath.Join(dir, "lacking.txt")
	os.WriteFile(full, []byte(exposition(metricsWeExpose)), 0o600)
	less := map[string][]string{}
	for k, v := range metricsWeExpose {
		if k != "mxgate_shed_total" {
			less[k] = v
		}
	}
	os.WriteFile(lacking, []byte(exposition(less)), 0o600)
	out.Reset()
	if err := run(&out, []string{rulesPath}, []string{dashboardPath}, full); err != nil || out.Len() != 0 {
		t.Errorf("against everything exposed: %v\n%s", err, out.String())
	}
	out.Reset()
	if err := run(&out, []string{rulesPath}, []string{dashboardPath}, lacking); err == nil || !strings.HasPrefix(out.String(), "mxgate_shed_total (used by ") {
		t.Errorf("against an exposition without mxgate_shed_total: %v\n%s", err, out.String())
	}
	if err := run(&out, nil, nil, ""); err == nil {
		t.Error("nothing to read was accepted")
	}
}
