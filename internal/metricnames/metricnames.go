// Package metricnames finds the metric names and label names that
// Prometheus alert rules and Grafana dashboards use, and checks them
// against what a running gateway exposes on /metrics, so that a rule or a
// panel cannot silently refer to a metric that does not exist.
//
// The PromQL reading is deliberately small: it knows selectors, label
// matchers, aggregations with by/without, vector matching with
// on/ignoring/group_left/group_right, function calls, range and subquery
// brackets, and Grafana's $variables. A label named in by(…) or on(…) is
// taken as a label of every metric inside the aggregated (or matched)
// expression.
package metricnames

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Use is one metric as a rule or panel uses it.
type Use struct {
	Metric string   // the series name as exposed, e.g. mxgate_ratelimit_wait_seconds_bucket
	Labels []string // label names the expression relies on, sorted
	Where  string   // the rule or panel, for messages
}

// TargetLabels are added by Prometheus when it scrapes, not exposed by the
// gateway; they are not reported as uses.
var TargetLabels = []string{"instance", "job"}

// Synthetic are series Prometheus makes itself; they are not reported.
var Synthetic = []string{"up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_series_added", "scrape_samples_post_metric_relabeling", "ALERTS", "ALERTS_FOR_STATE"}

// FromExpr returns the metrics a PromQL expression uses, each with the
// label names it relies on. where labels the uses.
func FromExpr(expr, where string) ([]Use, error) {
	toks, err := tokenize(expr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	p := &parser{toks: toks}
	uses, err := p.sequence("")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	return merge(uses, where), nil
}

// rulesFile is the part of a Prometheus rules file this package reads.
type rulesFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert  string `yaml:"alert"`
			Record string `yaml:"record"`
			Expr   string `yaml:"expr"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// FromRules returns the metrics every rule of a Prometheus rules file
// uses. Series that a recording rule of the same file makes are not
// reported.
func FromRules(data []byte) ([]Use, error) {
	var f rulesFile
	if err := yaml.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("metricnames: rules file: %w", err)
	}
	if len(f.Groups) == 0 {
		return nil, errors.New("metricnames: rules file has no groups")
	}
	recorded := map[string]bool{}
	var all []Use
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			name := cmpOr(r.Alert, r.Record)
			if r.Expr == "" {
				return nil, fmt.Errorf("metricnames: rule %s has no expr", name)
			}
			if r.Record != "" {
				recorded[r.Record] = true
			}
			uses, err := FromExpr(r.Expr, "rule "+name)
			if err != nil {
				return nil, err
			}
			all = append(all, uses...)
		}
	}
	return slices.DeleteFunc(all, func(u Use) bool { return recorded[u.Metric] }), nil
}

// dashboard is the part of a Grafana dashboard this package reads.
type dashboard struct {
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"` // a string, or {"query": "..."} in newer Grafana
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	Title   string  `json:"title"`
	Panels  []panel `json:"panels"` // a collapsed row's
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

var labelValuesRE = regexp.MustCompile(`^\s*label_values\(\s*(.+)\s*,\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$`)

// FromDashboard returns the metrics every panel target and every query
// variable (label_values(metric, label)) of a Grafana dashboard uses.
func FromDashboard(data []byte) ([]Use, error) {
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("metricnames: dashboard: %w", err)
	}
	var all []Use
	var walk func([]panel) error
	walk = func(ps []panel) error {
		for _, p := range ps {
			for _, t := range p.Targets {
				if t.Expr == "" {
					continue
				}
				uses, err := FromExpr(t.Expr, "panel "+p.Title)
				if err != nil {
					return err
				}
				all = append(all, uses...)
			}
			if err := walk(p.Panels); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(d.Panels); err != nil {
		return nil, err
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(string)
		if m, ok := v.Query.(map[string]any); ok {
			q, _ = m["query"].(string)
		}
		where := "variable " + v.Name
		if m := labelValuesRE.FindStringSubmatch(q); m != nil {
			uses, err := FromExpr(m[1], where)
			if err != nil {
				return nil, err
			}
			for i := range uses {
				uses[i].Labels = addLabels(uses[i].Labels, m[2])
			}
			all = append(all, uses...)
		} else if strings.TrimSpace(q) != "" && !strings.HasPrefix(strings.TrimSpace(q), "label_values(") {
			return nil, fmt.Errorf("metricnames: %s: only label_values(metric, label) queries are read", where)
		}
	}
	return all, nil
}

// Merge combines uses of the same metric into one, with the union of
// their labels, sorted by metric name; Where lists every place.
func Merge(uses []Use) []Use {
	by := map[string]*Use{}
	for _, u := range uses {
		m := by[u.Metric]
		if m == nil {
			m = &Use{Metric: u.Metric}
			by[u.Metric] = m
		}
		m.Labels = addLabels(m.Labels, u.Labels...)
		if !slices.Contains(strings.Split(m.Where, "; "), u.Where) {
			m.Where = strings.TrimPrefix(m.Where+"; "+u.Where, "; ")
		}
	}
	out := make([]Use, 0, len(by))
	for _, m := range by {
		out = append(out, *m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Metric < out[j].Metric })
	return out
}

// Exposed reads the Prometheus text exposition format and returns, for
// each series name, the union of its label names.
func Exposed(r io.Reader) (map[string][]string, error) {
	out := map[string][]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, rest := line, ""
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name, rest = line[:i], line[i:]
		}
		labels, err := sampleLabels(rest)
		if err != nil {
			return nil, fmt.Errorf("metricnames: exposition line %q: %w", line, err)
		}
		out[name] = addLabels(out[name], labels...)
	}
	return out, sc.Err()
}

// Missing returns one message for each use whose metric, or one of whose
// labels, is not in exposed (from Exposed). Target labels are not
// checked.
func Missing(exposed map[string][]string, uses []Use) []string {
	var msgs []string
	for _, u := range Merge(uses) {
		have, ok := exposed[u.Metric]
		if !ok {
			msgs = append(msgs, fmt.Sprintf("%s (used by %s) is not exposed", u.Metric, u.Where))
			continue
		}
		for _, l := range u.Labels {
			if !slices.Contains(have, l) {
				msgs = append(msgs, fmt.Sprintf("%s has no label %q (used by %s)", u.Metric, l, u.Where))
			}
		}
	}
	return msgs
}

func sampleLabels(rest string) ([]string, error) {
	if !strings.HasPrefix(rest, "{") {
		return nil, nil
	}
	var names []string
	i := 1
	for {
		for i < len(rest) && (rest[i] == ' ' || rest[i] == ',') {
			i++
		}
		if i >= len(rest) {
			return nil, errors.New("unclosed {")
		}
		if rest[i] == '}' {
			return names, nil
		}
		eq := strings.IndexByte(rest[i:], '=')
		if eq < 0 {
			return nil, errors.New("label without =")
		}
		names = append(names, strings.Trim(strings.TrimSpace(rest[i:i+eq]), `"`))
		i += eq + 1
		if i >= len(rest) || rest[i] != '"' {
			return nil, errors.New("label value not quoted")
		}
		i++
		for i < len(rest) && rest[i] != '"' {
			if rest[i] == '\\' {
				i++
			}
			i++
		}
		i++ // closing quote
	}
}

func addLabels(have []string, more ...string) []string {
	for _, l := range more {
		if !slices.Contains(have, l) && !slices.Contains(TargetLabels, l) {
			have = append(have, l)
		}
	}
	sort.Strings(have)
	return have
}

func merge(uses []*Use, where string) []Use {
	var out []Use
	for _, u := range uses {
		if slices.Contains(Synthetic, u.Metric) {
			continue
		}
		out = append(out, Use{Metric: u.Metric, Labels: addLabels(nil, u.Labels...), Where: where})
	}
	out = Merge(out)
	for i := range out {
		out[i].Where = where
	}
	return out
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
