package main

import (
	"reflect"
	"strings"
	"testing"
)

func TestFromExpr(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want map[string][]string // metric -> labels
	}{
		{`up == 0`, map[string][]string{}},
		{`mxgate_store_up == 0`, map[string][]string{"mxgate_store_up": nil}},
		{`mxgate_store_up{directive="mdx_hmac", instance=~"$instance"}`, map[string][]string{"mxgate_store_up": {"directive"}}},
		{`sum by (directive, reason) (rate(mxgate_rejections_total[5m]))`,
			map[string][]string{"mxgate_rejections_total": {"directive", "reason"}}},
		{`sum(rate(mxgate_rejections_total{reason!="x"}[$__rate_interval])) without (directive)`,
			map[string][]string{"mxgate_rejections_total": {"directive", "reason"}}},
		{`histogram_quantile(0.99, sum by (le, class) (rate(mxgate_ratelimit_wait_seconds_bucket[5m])))`,
			map[string][]string{"mxgate_ratelimit_wait_seconds_bucket": {"class", "le"}}},
		{`sum by (class) (rate(a_total[5m])) / (sum by (class) (rate(a_total[5m])) + sum by (kind) (rate(b_total[1h:5m] offset 5m)))`,
			map[string][]string{"a_total": {"class"}, "b_total": {"kind"}}},
		{`rate(x_total[5m]) / on (instance, server) group_left (region) y_info`,
			map[string][]string{"x_total": {"region", "server"}, "y_info": {"region", "server"}}},
		{`{__name__="by_name", code="200"}`, map[string][]string{"by_name": {"code"}}},
		{`topk(5, sum by (route) (increase(req_total[1h]))) > bool 3`, map[string][]string{"req_total": {"route"}}},
		{`label_replace(sum by (svc) (rate(q_total[5m])), "dst", "$1", "svc", "(.*)")`, map[string][]string{"q_total": {"svc"}}},
		{`count_values("version", build_info) # a comment`, map[string][]string{"build_info": nil}},
		{`SUM BY (a) (m1) and on() vector(1)`, map[string][]string{"m1": {"a"}}},
		{`max(m2{a="1"}) by (b) or absent(m3) * -1e3`, map[string][]string{"m2": {"a", "b"}, "m3": nil}},
		{`rate(m4[$__rate_interval]) * ${factor} + m5 offset $off`, map[string][]string{"m4": nil, "m5": nil}},
		{`rate(m6{path="$a[[b]]"}[[[interval]]:$step])`, map[string][]string{"m6": {"path"}}},
	} {
		uses, err := FromExpr(tc.expr, "test")
		if err != nil {
			t.Errorf("%s: %v", tc.expr, err)
			continue
		}
		got := map[string][]string{}
		for _, u := range uses {
			got[u.Metric] = u.Labels
			if u.Where != "test" {
				t.Errorf("%s: where %q", tc.expr, u.Where)
			}
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s:\n got %v\nwant %v", tc.expr, got, tc.want)
		}
	}
}

func TestFromExprErrors(t *testing.T) {
	for _, expr := range []string{
		`sum(rate(x[5m])`,
		`rate(x[5m]))`,
		`x{a="$v"} $v`,
		`x{a="1"`,
		`x{a=}`,
		`rate(x[5m)`,
		`sum by (a (x)`,
		`x{a="unclosed}`,
		`sum by (a)`,
	} {
		if _, err := FromExpr(expr, "test"); err == nil {
			t.Errorf("%s: no error", expr)
		}
	}
}

func TestFromRules(t *testing.T) {
	rules := `
groups:
  - name: g
    rules:
      - record: job:req:rate5m
        expr: sum by (job, code) (rate(req_total[5m]))
      - alert: HighErrors
        expr: job:req:rate5m{code="500"} > 1 and up == 1
        labels: {severity: warning}
`
	uses, err := FromRules([]byte(rules))
	if err != nil {
		t.Fatal(err)
	}
	want := []Use{{Metric: "req_total", Labels: []string{"code"}, Where: "rule job:req:rate5m"}}
	if !reflect.DeepEqual(uses, want) {
		t.Errorf("got %+v, want %+v", uses, want)
	}
	for _, bad := range []string{"groups: [", "groups: []", "groups:\n  - name: g\n    rules:\n      - alert: A\n"} {
		if _, err := FromRules([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestFromDashboard(t *testing.T) {
	dash := `{
  "panels": [
    {"title": "A", "targets": [{"expr": "sum by (x) (rate(a_total[$__rate_interval]))"}, {"expr": ""}]},
    {"title": "Row", "type": "row", "panels": [{"title": "B", "targets": [{"expr": "b_gauge{y=\"1\"}"}]}]}
  ],
  "templating": {"list": [
    {"name": "datasource", "type": "datasource", "query": "prometheus"},
    {"name": "instance", "type": "query", "query": "label_values(c_info, instance)"},
    {"name": "svc", "type": "query", "query": {"query": "label_values(d_total{env=\"p\"}, service)", "refId": "x"}}
  ]}
}`
	uses, err := FromDashboard([]byte(dash))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, u := range Merge(uses) {
		got[u.Metric] = strings.Join(u.Labels, ",") + " @ " + u.Where
	}
	want := map[string]string{
		"a_total": "x @ panel A",
		"b_gauge": "y @ panel B",
		"c_info":  " @ variable instance",
		"d_total": "env,service @ variable svc",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
	if _, err := FromDashboard([]byte(`{"templating":{"list":[{"name":"v","type":"query","query":"query_result(x)"}]}}`)); err == nil {
		t.Error("an unreadable variable query was accepted")
	}
}

func TestExposedAndMissing(t *testing.T) {
	text := `# HELP mxgate_rejections_total Requests refused.
# TYPE mxgate_rejections_total counter
mxgate_rejections_total{directive="mdx_hmac",reason="hmac_mismatch"} 3
mxgate_rejections_total{directive="mx_ip_allow",reason="ip_not_allowed"} 1
# TYPE w histogram
w_bucket{class="get",le="0.1"} 1
w_bucket{class="get",le="+Inf"} 1
w_sum{class="get"} 0.01
w_count{class="get"} 1
odd{path="a\"b,c=d",x="\\"} 1
plain 4 1700000000
`
	exposed, err := Exposed(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"mxgate_rejections_total": {"directive", "reason"},
		"w_bucket":                {"class", "le"},
		"w_sum":                   {"class"},
		"w_count":                 {"class"},
		"odd":                     {"path", "x"},
		"plain":                   nil,
	}
	if !reflect.DeepEqual(exposed, want) {
		t.Errorf("Exposed:\n got %v\nwant %v", exposed, want)
	}

	uses := []Use{
		{Metric: "mxgate_rejections_total", Labels: []string{"directive"}, Where: "rule A"},
		{Metric: "mxgate_rejections_total", Labels: []string{"reason", "status"}, Where: "panel B"},
		{Metric: "w_bucket", Labels: []string{"le"}, Where: "panel C"},
		{Metric: "gone_total", Where: "rule D"},
	}
	got := Missing(exposed, uses)
	wantMsgs := []string{
		`gone_total (used by rule D) is not exposed`,
		`mxgate_rejections_total has no label "status" (used by rule A; panel B)`,
	}
	if !reflect.DeepEqual(got, wantMsgs) {
		t.Errorf("Missing:\n got %q\nwant %q", got, wantMsgs)
	}

	if _, err := Exposed(strings.NewReader(`x{a="1" 1`)); err == nil {
		t.Error("a malformed line was accepted")
	}
}

func FuzzFromExpr(f *testing.F) {
	for _, s := range []string{
		`sum by (a) (rate(x{b="c"}[5m]))`, `histogram_quantile(0.9, sum(rate(h_bucket[1m])) by (le))`,
		`a / on(b) group_left(c) d`, `{__name__="x"}`, `rate(x[$__rate_interval])`, `${v}`, `x{a="$b"}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		uses, err := FromExpr(s, "fuzz")
		if err != nil {
			return
		}
		for _, u := range uses {
			if u.Metric == "" {
				t.Fatalf("%q: a use without a metric", s)
			}
		}
	})
}
