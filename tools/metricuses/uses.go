package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"
)

// Use is one metric as a rule or panel uses it.
type Use struct {
	Metric string   `json:"metric"` // the series name as exposed, e.g. mxgate_ratelimit_wait_seconds_bucket
	Labels []string `json:"labels"` // label names the expression relies on, sorted
	Where  string   `json:"where"`  // the rule or panel, for messages
}

// targetLabels are added by Prometheus when it scrapes, not exposed by the
// gateway; they are not reported as uses.
var targetLabels = []string{"instance", "job"}

// synthetic are series Prometheus makes itself; they are not reported.
var synthetic = []string{"up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_series_added", "scrape_samples_post_metric_relabeling", "ALERTS", "ALERTS_FOR_STATE"}

var promql = parser.NewParser(parser.Options{})

// FromExpr returns the metrics a PromQL expression uses, each with the
// label names it relies on: those of its matchers, and those an enclosing
// aggregation groups by (or without), or an enclosing binary operation
// matches on (or ignoring) or copies (group_left, group_right). Grafana's
// variables are given stand-in values first. where labels the uses.
func FromExpr(expr, where string) ([]Use, error) {
	e, err := promql.ParseExpr(grafanaValues(expr))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	var uses []Use
	parser.Inspect(e, func(n parser.Node, path []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		u := Use{Metric: vs.Name, Where: where}
		for _, m := range vs.LabelMatchers {
			switch {
			case m.Name != labels.MetricName:
				u.Labels = append(u.Labels, m.Name)
			case m.Type == labels.MatchEqual:
				u.Metric = m.Value
			}
		}
		for _, outer := range path {
			switch o := outer.(type) {
			case *parser.AggregateExpr:
				u.Labels = append(u.Labels, o.Grouping...)
			case *parser.BinaryExpr:
				if o.VectorMatching != nil {
					u.Labels = append(u.Labels, o.VectorMatching.MatchingLabels...)
					u.Labels = append(u.Labels, o.VectorMatching.Include...)
				}
			}
		}
		if u.Metric != "" && !slices.Contains(synthetic, u.Metric) {
			u.Labels = addLabels(nil, u.Labels...)
			uses = append(uses, u)
		}
		return nil
	})
	out := Merge(uses)
	for i := range out {
		out[i].Where = where
	}
	return out, nil
}

// grafanaVariable is a Grafana template variable: $name, ${name} (with an
// optional :format) or the deprecated [[name]].
var grafanaVariable = regexp.MustCompile(`\$[A-Za-z_][A-Za-z0-9_]*|\$\{[^}]*\}|\[\[[^[\]]*\]\]`)

// grafanaValues gives each Grafana variable outside a string a value
// PromQL accepts where it stands: a duration in a range, a subquery step
// or after offset, else a number. Inside strings (label matchers) they
// stay as they are.
func grafanaValues(expr string) string {
	var b strings.Builder
	for i := 0; i < len(expr); {
		switch c := expr[i]; {
		case c == '"' || c == '\'' || c == '`':
			end := i + 1
			for end < len(expr) && expr[end] != c {
				if expr[end] == '\\' && c != '`' {
					end++
				}
				end++
			}
			end = min(end+1, len(expr))
			b.WriteString(expr[i:end])
			i = end
		case c == '#': // a comment runs to the end of the line
			end := strings.IndexByte(expr[i:], '\n')
			if end < 0 {
				end = len(expr) - i
			}
			b.WriteString(expr[i : i+end])
			i += end
		default:
			loc := grafanaVariable.FindStringIndex(expr[i:])
			if loc == nil || loc[0] != 0 {
				b.WriteByte(c)
				i++
				continue
			}
			before := strings.TrimRight(b.String(), " \t\n")
			if strings.HasSuffix(before, "[") || strings.HasSuffix(before, ":") || strings.HasSuffix(before, "offset") {
				b.WriteString("5m")
			} else {
				b.WriteString("1")
			}
			i += loc[1]
		}
	}
	return b.String()
}

// rulesFile is the part of a Prometheus rules file this tool reads;
// promtool check rules checks the rest.
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
		return nil, fmt.Errorf("rules file: %w", err)
	}
	if len(f.Groups) == 0 {
		return nil, errors.New("rules file has no groups")
	}
	recorded := map[string]bool{}
	var all []Use
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			name := r.Alert
			if name == "" {
				name = r.Record
			}
			if r.Expr == "" {
				return nil, fmt.Errorf("rule %s has no expr", name)
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

// dashboard is the part of a Grafana dashboard this tool reads.
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

// labelValues is Grafana's label_values(selector, label) variable query.
var labelValues = regexp.MustCompile(`^\s*label_values\(\s*(.+)\s*,\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$`)

// FromDashboard returns the metrics every panel target and every query
// variable (label_values(metric, label)) of a Grafana dashboard uses.
func FromDashboard(data []byte) ([]Use, error) {
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
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
		m := labelValues.FindStringSubmatch(q)
		if m == nil {
			if strings.TrimSpace(q) != "" {
				return nil, fmt.Errorf("%s: only label_values(metric, label) queries are read", where)
			}
			continue
		}
		uses, err := FromExpr(m[1], where)
		if err != nil {
			return nil, err
		}
		for i := range uses {
			uses[i].Labels = addLabels(uses[i].Labels, m[2])
		}
		all = append(all, uses...)
	}
	return all, nil
}

// Merge combines uses of the same metric into one, with the union of
// their labels, sorted by metric name; Where lists every place.
func Merge(uses []Use) []Use {
	var out []Use
	for _, u := range uses {
		i, found := slices.BinarySearchFunc(out, u.Metric, func(m Use, name string) int { return strings.Compare(m.Metric, name) })
		if !found {
			out = slices.Insert(out, i, Use{Metric: u.Metric})
		}
		m := &out[i]
		m.Labels = addLabels(m.Labels, u.Labels...)
		if !slices.Contains(strings.Split(m.Where, "; "), u.Where) {
			m.Where = strings.TrimPrefix(m.Where+"; "+u.Where, "; ")
		}
	}
	return out
}

func addLabels(have []string, more ...string) []string {
	for _, l := range more {
		if !slices.Contains(have, l) && !slices.Contains(targetLabels, l) {
			have = append(have, l)
		}
	}
	slices.Sort(have)
	return have
}
