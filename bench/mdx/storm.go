package main

import (
	"fmt"
	"strings"
	"time"
)

// stormTable summarises the connection storm's runs as what became of
// the connections: answered 200, shed with an answer (503, 429), reset
// as they connected (turned away at accept without an answer: past
// mx_conn_limit's max_shedding, or answer close), never accepted (no
// connection by the request's deadline: the kernel's accept queue was
// full and the client's SYNs went unanswered), and the rest.
func stormTable(open []*openRow) string {
	var rows []*openRow
	for _, o := range open {
		if o.storm {
			rows = append(rows, o)
		}
	}
	if len(rows) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("### The connection storm, connection by connection\n\n")
	b.WriteString("The storm rows of the open-loop table, by what each connection met. *Reset as it connected*: turned away at accept, at once and without an answer (over `mx_conn_limit`'s `max_shedding`, or `answer close`). *Never accepted*: no connection by the request's deadline, the kernel's accept queue full and the client's SYNs unanswered; such a client sees a connect timeout. *Server CPU* is the target's CPU time over the storm and its recovery, divided by the connections the storm sent.\n\n")
	b.WriteString("| target | rate | sent | answered 200 | shed with 503/429 | reset as it connected | never accepted | cut or timed out after connecting | other | admitted p99 | client lateness p50 / p99 | recovered after | server CPU per connection sent |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, o := range rows {
		rec := "not within " + recoverMax.String()
		if o.res.recovered {
			rec = ms(o.res.recovery)
		}
		other := o.res.expired + o.res.capped + o.res.other
		perConn := "–"
		if o.res.offered > 0 && o.serverCPU > 0 {
			perConn = us(o.serverCPU / time.Duration(o.res.offered))
		}
		fmt.Fprintf(&b, "| %s | %d/s | %d | %d | %d | %d | %d | %d | %d | %s | %s / %s | %s | %s |\n", o.t.title, o.rate, o.res.offered, o.res.ok, o.res.shed,
			o.res.resets, o.res.dials, o.res.errors, other, ms(o.res.admitted.p99), ms(o.res.late.p50), ms(o.res.late.p99), rec, perConn)
	}
	b.WriteString("\n")
	return b.String()
}
