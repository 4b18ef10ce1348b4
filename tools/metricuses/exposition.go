package main

import (
	"fmt"
	"io"
	"slices"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Exposed reads the Prometheus text exposition format and returns, for
// each series name (a histogram's _bucket, _sum and _count apart), the
// union of its label names.
func Exposed(r io.Reader) (map[string][]string, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("exposition: %w", err)
	}
	out := map[string][]string{}
	add := func(name string, labels []string, extra ...string) {
		have, ok := out[name]
		if !ok {
			out[name] = nil
		}
		for _, l := range append(labels, extra...) {
			if !slices.Contains(have, l) {
				have = append(have, l)
			}
		}
		if len(have) > 0 {
			slices.Sort(have)
			out[name] = have
		}
	}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName())
			}
			switch f.GetType() {
			case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
				add(name+"_bucket", labels, "le")
				add(name+"_sum", labels)
				add(name+"_count", labels)
			case dto.MetricType_SUMMARY:
				add(name, labels, "quantile")
				add(name+"_sum", labels)
				add(name+"_count", labels)
			default:
				add(name, labels)
			}
		}
	}
	return out, nil
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
