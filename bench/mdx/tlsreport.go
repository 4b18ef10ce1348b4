package main

import (
	"flag"
	"fmt"
	"strings"
	"time"
)

// tlsGroups are the TLS targets compared together: the nginx gateway,
// bare Caddy and mxgate over the same TLS.
var tlsGroups = []struct{ suffix, title string }{
	{"tls13", "MDX over TLS 1.3"},
	{"tls12", "MDX over TLS 1.2"},
	{"fdx", "FDX over mutual TLS 1.3"},
}

// tlsRatios compares, for each TLS group in rows, mxgate with the nginx
// target and bare Caddy of the group: throughput, p99 and server CPU per
// request.
func tlsRatios(rows []*closedRow) string {
	byName := map[string]*closedRow{}
	for _, r := range rows {
		byName[r.t.name] = r
	}
	var b strings.Builder
	ratio := func(x, y float64) string {
		if y == 0 {
			return "–"
		}
		return fmt.Sprintf("%.3f", x/y)
	}
	for _, g := range tlsGroups {
		m, n, c := byName["mxgate-"+g.suffix], byName["nginx-"+g.suffix], byName["caddy-"+g.suffix]
		if m == nil || (n == nil && c == nil) {
			continue
		}
		if b.Len() == 0 {
			b.WriteString("| TLS | against | req/s ratio | p99 ratio | server CPU per request ratio |\n|---|---|---|---|---|\n")
		}
		for _, o := range []*closedRow{n, c} {
			if o == nil {
				continue
			}
			fmt.Fprintf(&b, "| %s | mxgate ÷ %s | %s | %s | %s |\n", g.title, o.t.title,
				ratio(m.medianRPS(), o.medianRPS()), ratio(float64(m.medianP99()), float64(o.medianP99())),
				ratio(float64(m.cpuPerRequest(m.serverCPU)), float64(o.cpuPerRequest(o.serverCPU))))
		}
		if n != nil && c != nil {
			fmt.Fprintf(&b, "| %s | bare Caddy ÷ nginx | %s | %s | %s |\n", g.title,
				ratio(c.medianRPS(), n.medianRPS()), ratio(float64(c.medianP99()), float64(n.medianP99())),
				ratio(float64(c.cpuPerRequest(c.serverCPU)), float64(n.cpuPerRequest(n.serverCPU))))
		}
	}
	if b.Len() > 0 {
		b.WriteString("\n")
	}
	return b.String()
}

// tlsOpenGap splits, for each TLS group run in slices, mxgate's open-loop
// p99 over the quiet slices less the nginx target's into bare Caddy's
// own part (bare Caddy over the same TLS less nginx) and mxgate's (mxgate
// less bare Caddy).
func tlsOpenGap(open []*openRow) string {
	type key struct {
		name string
		rate int
	}
	rows := map[key]*openRow{}
	var rates []int
	for _, o := range open {
		if o.slices == 0 || o.storm {
			continue
		}
		k := key{o.t.name, o.rate}
		rows[k] = o
		if len(rates) == 0 || rates[len(rates)-1] != o.rate {
			rates = append(rates, o.rate)
		}
	}
	var b strings.Builder
	for _, rate := range rates {
		for _, g := range tlsGroups {
			m, n, c := rows[key{"mxgate-" + g.suffix, rate}], rows[key{"nginx-" + g.suffix, rate}], rows[key{"caddy-" + g.suffix, rate}]
			if m == nil || n == nil {
				continue
			}
			if b.Len() == 0 {
				b.WriteString("Over TLS, the open loop's admitted p99 over the quiet cycles of slices, mxgate's gap to the nginx target split into bare Caddy's own (bare Caddy over the same TLS less nginx) and mxgate's (mxgate less bare Caddy):\n\n")
				b.WriteString("| TLS | rate | quiet cycles | nginx p99 | bare Caddy p99 | mxgate p99 | mxgate − nginx | of it Caddy's own | of it mxgate's |\n|---|---|---|---|---|---|---|---|---|\n")
			}
			if m.quietSlices == 0 {
				fmt.Fprintf(&b, "| %s | %d/s | 0 of %d | – | – | – | – | – | – |\n", g.title, rate, m.slices)
				continue
			}
			cp99, own, ours := "–", "–", "–"
			if c != nil {
				cp99 = ms(c.quiet.admitted.p99)
				own = plusMinus(c.quiet.admitted.p99 - n.quiet.admitted.p99)
				ours = plusMinus(m.quiet.admitted.p99 - c.quiet.admitted.p99)
			}
			fmt.Fprintf(&b, "| %s | %d/s | %d of %d | %s | %s | %s | %s | %s | %s |\n", g.title, rate, m.quietSlices, m.slices,
				ms(n.quiet.admitted.p99), cp99, ms(m.quiet.admitted.p99), plusMinus(m.quiet.admitted.p99-n.quiet.admitted.p99), own, ours)
		}
	}
	if b.Len() > 0 {
		b.WriteString("\n")
	}
	return b.String()
}

// machineLoad describes the load on the machine: the load averages and
// the share of the CPU the hypervisor took over the run.
func machineLoad(before cpuTicks, started time.Time) string {
	la := "unknown"
	if b, err := readFileString("/proc/loadavg"); err == nil {
		f := strings.Fields(b)
		if len(f) >= 3 {
			la = strings.Join(f[:3], " ")
		}
	}
	return fmt.Sprintf("load average at the end %s; over the run's %v the hypervisor took %.1f %% of the CPU (steal)",
		la, time.Since(started).Round(time.Second), 100*readSteal().since(before))
}

// upstreamPort is the upstream's port, for targets started after the
// others (the fleet).
var upstreamPort int

// tlsSection is what the TLS targets and the fleet add to the report:
// the closed loop's ratios over the same TLS, the loops of fresh
// connections, the open loop's gap split, the fleet, and the load of the
// machine during the run.
func tlsSection(closed []*closedRow, hs []*handshakeRow, open []*openRow, fl *fleetResult, load string) string {
	var b strings.Builder
	ratios, gap := tlsRatios(closed), tlsOpenGap(open)
	if ratios != "" || gap != "" {
		b.WriteString("### Over the same TLS\n\n")
		if ratios != "" {
			b.WriteString("The closed loop's pre-signed GETs (FDX: the GET with its token) above, each TLS group's mxgate against the nginx target and bare Caddy with the same certificate and TLS settings (medians of the rounds):\n\n")
			b.WriteString(ratios)
		}
		b.WriteString(gap)
	}
	b.WriteString(handshakeTable(hs, *hsConns, *hsDur))
	b.WriteString(fl.markdown())
	fmt.Fprintf(&b, "The machine during the run: %s.\n", load)
	return b.String()
}

var sectionFlag = flag.String("section", "", "the name of the BENCHMARKS.md section the tables go to, between <!-- bench/mdx NAME begin --> and its end marker (default: the plain side by side's, <!-- bench/mdx begin -->); the TLS run's is tls")

// sectionMarkers are the markers of -section's section.
func sectionMarkers() (string, string) {
	if *sectionFlag == "" {
		return beginMarker, endMarker
	}
	return "<!-- bench/mdx " + *sectionFlag + " begin -->", "<!-- bench/mdx " + *sectionFlag + " end -->"
}

// sectionTitle is the heading of -section's section.
func sectionTitle() string {
	switch *sectionFlag {
	case "tls":
		return "The MDX and FDX sites over TLS side by side with bare Caddy and nginx"
	case "redis":
		return "The Redis chain beside the same chain in memory"
	}
	return ""
}
