// Command metricuses finds the metrics, and the label names, that
// Prometheus alert rules and Grafana dashboards use, and checks them
// against what a gateway exposes on /metrics, so that a rule or a panel
// cannot silently refer to a metric that does not exist. It reads PromQL
// with Prometheus's own parser.
//
//	metricuses -rules mxgate-alerts.yml -dashboard mxgate-dashboard.json
//	metricuses -rules … -dashboard … -exposition metrics.txt
//
// Without -exposition it prints the uses as JSON, merged by metric. With
// it (a file of the text exposition format, or - for standard input) it
// prints one line for each metric or label that is used and not exposed,
// and exits 1 if there is any. A counter or histogram with labels appears
// on /metrics only once it has counted something, so a check against a
// live gateway first makes it refuse, limit, retry and so on.
//
// It is a module of its own so that Prometheus's packages never become
// requirements of the gateway's module.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// files is a repeatable flag.
type files []string

func (f *files) String() string     { return strings.Join(*f, ",") }
func (f *files) Set(s string) error { *f = append(*f, s); return nil }

func main() {
	var rules, dashboards files
	flag.Var(&rules, "rules", "a Prometheus rules file (repeatable)")
	flag.Var(&dashboards, "dashboard", "a Grafana dashboard (repeatable)")
	exposition := flag.String("exposition", "", "check against this /metrics text (- for standard input)")
	flag.Parse()
	if err := run(os.Stdout, rules, dashboards, *exposition); err != nil {
		fmt.Fprintln(os.Stderr, "metricuses:", err)
		os.Exit(1)
	}
}

func run(w io.Writer, rules, dashboards []string, exposition string) error {
	if len(rules)+len(dashboards) == 0 {
		return fmt.Errorf("nothing to read: give -rules or -dashboard")
	}
	uses, err := read(rules, dashboards)
	if err != nil {
		return err
	}
	if exposition == "" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(uses)
	}
	in := os.Stdin
	if exposition != "-" {
		if in, err = os.Open(exposition); err != nil {
			return err
		}
		defer in.Close()
	}
	exposed, err := Exposed(in)
	if err != nil {
		return err
	}
	missing := Missing(exposed, uses)
	for _, m := range missing {
		fmt.Fprintln(w, m)
	}
	if len(missing) > 0 {
		return fmt.Errorf("%d uses not exposed", len(missing))
	}
	return nil
}

// read returns the merged uses of the rules files and dashboards.
func read(rules, dashboards []string) ([]Use, error) {
	var all []Use
	for _, list := range []struct {
		paths []string
		from  func([]byte) ([]Use, error)
	}{{rules, FromRules}, {dashboards, FromDashboard}} {
		for _, p := range list.paths {
			data, err := os.ReadFile(p)
			if err != nil {
				return nil, err
			}
			uses, err := list.from(data)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p, err)
			}
			all = append(all, uses...)
		}
	}
	return Merge(all), nil
}
