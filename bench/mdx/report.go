package main

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"time"
)

const (
	beginMarker = "<!-- bench/mdx begin -->"
	endMarker   = "<!-- bench/mdx end -->"
)

// replaceSection puts section between the bench/mdx markers of the file at
// path, replacing what was there, or appends it with the markers.
func replaceSection(path, section string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	begin, end := sectionMarkers()
	out, err := spliceNamed(old, section, begin, end)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return os.WriteFile(path, out, 0o644)
}

// spliceSection returns doc with section between the markers.
func spliceSection(doc []byte, section string) ([]byte, error) {
	return spliceNamed(doc, section, beginMarker, endMarker)
}

// spliceNamed returns doc with section between the markers begin and end.
func spliceNamed(doc []byte, section, beginMarker, endMarker string) ([]byte, error) {
	block := beginMarker + "\n" + strings.TrimSpace(section) + "\n" + endMarker
	b, e := bytes.Index(doc, []byte(beginMarker)), bytes.Index(doc, []byte(endMarker))
	switch {
	case b < 0 && e < 0:
		doc = bytes.TrimRight(doc, "\n")
		if len(doc) > 0 {
			doc = append(doc, "\n\n"...)
		}
		return append(doc, block+"\n"...), nil
	case b < 0 || e < b:
		return nil, fmt.Errorf("the %s and %s markers are not in order", beginMarker, endMarker)
	}
	var out []byte
	out = append(out, doc[:b]...)
	out = append(out, block...)
	out = append(out, doc[e+len(endMarker):]...)
	return out, nil
}

func (r *closedRow) medianRPS() float64 {
	xs := make([]float64, len(r.rounds))
	for i := range r.rounds {
		xs[i] = r.rounds[i].rps()
	}
	return median(xs)
}

func (r *closedRow) medianP50() time.Duration {
	ds := make([]time.Duration, len(r.rounds))
	for i := range r.rounds {
		ds[i] = r.rounds[i].lat.p50
	}
	return medianDuration(ds)
}

func (r *closedRow) medianP99() time.Duration {
	ds := make([]time.Duration, len(r.rounds))
	for i := range r.rounds {
		ds[i] = r.rounds[i].lat.p99
	}
	return medianDuration(ds)
}

// cpuPerRequest is the median over rounds of the CPU time of cpu per
// answered request.
func (r *closedRow) cpuPerRequest(cpu []time.Duration) time.Duration {
	ds := make([]time.Duration, 0, len(r.rounds))
	for i := range r.rounds {
		if n := r.rounds[i].lat.n; n > 0 {
			ds = append(ds, cpu[i]/time.Duration(n))
		}
	}
	return medianDuration(ds)
}

func (r *closedRow) failures() int64 {
	var n int64
	for i := range r.rounds {
		n += r.rounds[i].non200() + r.rounds[i].errors
	}
	return n
}

// report is the whole run's results.
type report struct {
	command  string
	cpus     int
	when     time.Time
	kinds    []traffic
	closed   map[traffic][]*closedRow
	open     []*openRow
	capBase  string
	capacity float64
	profiles []*profiles
	note     string
	title    string // the section's heading; "" for the plain side by side's
}

func (rep *report) closedFailures() int64 {
	var n int64
	for _, rows := range rep.closed {
		for _, r := range rows {
			n += r.failures()
		}
	}
	return n
}

func ms(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

func us(d time.Duration) string { return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond)) }

func kilo(x float64) string {
	if x >= 1000 {
		return fmt.Sprintf("%.1fk", x/1000)
	}
	return fmt.Sprintf("%.0f", x)
}

var trafficTitles = map[traffic]string{
	trafficGET: "pre-signed GETs",
	trafficMix: "GETs alternating with signed 1 KiB POSTs",
}

func (rep *report) markdown() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	if rep.title == "" {
		rep.title = "The MDX chain side by side with bare Caddy and an nginx gateway"
	}
	w("## %s\n\n", rep.title)
	w("```sh\n%s\n```\n\n", rep.command)
	if rep.note != "" {
		w("%s\n\n", rep.note)
	}
	w("One run on %s, %d CPUs (`nproc`), shared by the load generator, every\n", rep.when.UTC().Format("2006-01-02"), rep.cpus)
	w("target, the upstream and Redis; all on loopback. `bench/mdx` builds\n")
	w("`cmd/mxgate` and starts every target itself (see its package comment).\n")
	w("The upstream is the peer's nginx `return 200`; every gateway proxies to\n")
	w("it. Requests are pre-signed with the demo key before each round (signing\n")
	w("is not measured), each with its own signature, so that a replay cache\n")
	w("accepts every one; a warm-up checks that each target answers them 200,\n")
	w("that each gateway refuses a wrong MDX-HMAC and mxgate a replayed\n")
	w("request with 412. The load generator writes\n")
	w("pre-built request bytes to its connections and parses answers itself;\n")
	w("the upstream-alone row shows what it can drive. *Server CPU* is the\n")
	w("target's own processes' CPU time (from /proc) per answered request,\n")
	w("not counting the upstream's (for the Redis chain, Redis's included);\n")
	w("*client CPU* is the load generator's.\n\n")

	for _, k := range rep.kinds {
		rows := rep.closed[k]
		if len(rows) == 0 {
			continue
		}
		w("### Closed loop, %s\n\n", trafficTitles[k])
		w("%d connections, %s of %v per target, the targets taking turns within\n", *connections, plural(len(rows[0].rounds), "round"), *duration)
		w("each round (each round starting one target further on); req/s, p50\n")
		w("and p99 are the medians of the rounds. A round in which the hypervisor\n")
		w("took more than %.0f %% of the CPU (steal, from /proc/stat) says how much.\n\n", 100**quietSteal)
		w("| target | req/s (each round) | req/s | p50 | p99 | server CPU per request | client CPU per request | not 200 |\n")
		w("|---|---|---|---|---|---|---|---|\n")
		for _, r := range rows {
			var each []string
			for i := range r.rounds {
				cell := kilo(r.rounds[i].rps())
				if i < len(r.steal) && r.steal[i] > *quietSteal {
					cell += fmt.Sprintf(" (%.0f %% stolen)", 100*r.steal[i])
				}
				each = append(each, cell)
			}
			w("| %s | %s | %.0f | %s | %s | %s | %s | %d |\n", r.t.title, strings.Join(each, ", "), r.medianRPS(),
				ms(r.medianP50()), ms(r.medianP99()), us(r.cpuPerRequest(r.serverCPU)), us(r.cpuPerRequest(r.clientCPU)), r.failures())
		}
		w("\n")
		rep.ratios(&b, rows)
		rep.redisTable(&b, rows)
	}

	if len(rep.open) > 0 {
		w("### Open loop\n\n")
		d, sliced := rep.open[0].d, false
		for _, o := range rep.open {
			if o.slices > 0 {
				sliced = true
			}
		}
		for _, o := range rep.open {
			if o.slices == 0 {
				d = o.d
				break
			}
		}
		if sliced {
			w("GETs sent on a fixed schedule for %v (rows whose last column counts\n", d)
			w("slices: in all, over their slices), whether or not earlier ones were\n")
		} else {
			w("GETs sent on a fixed schedule for %v, whether or not earlier ones were\n", d)
		}
		w("answered; latency counts from each request's scheduled send time, so\n")
		w("time spent queued in the client behind a slow target counts. *%d conns*:\n", *connections)
		w("a bounded pool, a request waits for a free connection. *storm*: a\n")
		w("connection is opened whenever none is idle, as a client with no\n")
		w("per-host limit does (at most %d open). A request with no answer %v\n", *maxOpen, *timeout)
		w("after its scheduled time has failed. p50 and p99 are of the requests\n")
		w("answered 200 (admitted); *shed* are 429 and 503 answers; *failed* are\n")
		w("errors, timeouts and other statuses. *Recovered after*: from the end of\n")
		w("the schedule until %d probes in a row, one every %v on a fresh\n", recoveryRun, recoveryEvery)
		w("connection, were answered 200 within %v. *Client lateness* is how long\n", recoveryLatency)
		w("after its scheduled time a request was started (a free connection, the\n")
		w("client's timer and its share of the CPU): part of every latency, and the\n")
		w("same for every target at a rate the client keeps up with.")
		if rep.capBase != "" {
			w(" Rates written *N×* are N times the\n%s's closed-loop GET capacity in this run (%.0f req/s).\n\n", targetTitles[rep.capBase], rep.capacity)
		} else {
			w("\n\n")
		}
		w("| target | client | rate | sent | 200 | shed | failed | p50 | p99 | max | client lateness p50 / p99 | recovered after |\n")
		w("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, o := range rep.open {
			mode := fmt.Sprintf("%d conns", *connections)
			if o.storm {
				mode = "storm"
			}
			rate := fmt.Sprintf("%d/s", o.rate)
			if o.spec.times > 0 {
				rate = fmt.Sprintf("%d/s (%s×)", o.rate, strings.TrimSuffix(o.spec.String(), "x"))
			}
			rec := "not within " + recoverMax.String()
			switch {
			case o.slices > 0:
				rec = fmt.Sprintf("– (%d slices of %v)", o.slices, *openSlice)
			case o.res.recovered:
				rec = ms(o.res.recovery)
			}
			failed := fmt.Sprint(o.res.failed())
			if o.res.failed() > 0 {
				var parts []string
				for _, p := range []struct {
					n    int
					what string
				}{{o.res.dials, "not connected in time"}, {o.res.resets, "reset as it connected"}, {o.res.errors, "cut or timed out"}, {o.res.expired, "expired in the client"}, {o.res.capped, "client at its connection cap"}, {o.res.other, "other statuses: " + statusList(&o.res.others)}} {
					if p.n > 0 {
						parts = append(parts, fmt.Sprintf("%d %s", p.n, p.what))
					}
				}
				failed += " (" + strings.Join(parts, ", ") + ")"
			}
			w("| %s | %s | %s | %d | %d | %d | %s | %s | %s | %s | %s / %s | %s |\n", o.t.title, mode, rate, o.res.offered, o.res.ok, o.res.shed,
				failed, ms(o.res.admitted.p50), ms(o.res.admitted.p99), ms(o.res.admitted.max), ms(o.res.late.p50), ms(o.res.late.p99), rec)
		}
		w("\n")
		rep.openRoundsTable(&b)
		rep.openSlicedTable(&b)
		rep.openVsPeer(&b)
	}

	for _, p := range rep.profiles {
		w("### Profile of the %s\n\n", targetTitles[p.target])
		w("Taken through Caddy's admin endpoint (`/debug/pprof/profile?seconds=%d`,\n", p.seconds)
		w("and the heap profile, after a GC, before and after) during one more closed-loop\n")
		w("GET round, not counted above (%.0f req/s).\n\n", p.rps)
		if p.cpuTop != "" {
			w("CPU:\n\n```\n%s\n```\n\n", p.cpuTop)
		}
		if p.memTop != "" {
			w("Allocations during the round (`-sample_index=alloc_space`):\n\n```\n%s\n```\n\n", p.memTop)
		}
	}
	return b.String()
}

// ratios lists each target's throughput and p99 against bare Caddy's and
// the nginx gateway's.
func (rep *report) ratios(b *strings.Builder, rows []*closedRow) {
	var caddy, peer *closedRow
	for _, r := range rows {
		switch r.t.name {
		case "caddy":
			caddy = r
		case "nginx":
			peer = r
		}
	}
	if caddy == nil && peer == nil {
		return
	}
	fmt.Fprintf(b, "| target | req/s ÷ bare Caddy's | p99 ÷ bare Caddy's | req/s ÷ nginx gateway's | p99 ÷ nginx gateway's |\n|---|---|---|---|---|\n")
	ratio := func(x, y float64) string {
		if y == 0 {
			return "–"
		}
		return fmt.Sprintf("%.3f", x/y)
	}
	for _, r := range rows {
		if r.t.name == "upstream" {
			continue
		}
		cells := []string{"–", "–", "–", "–"}
		if caddy != nil && r != caddy {
			cells[0] = ratio(r.medianRPS(), caddy.medianRPS())
			cells[1] = ratio(float64(r.medianP99()), float64(caddy.medianP99()))
		}
		if peer != nil && r != peer {
			cells[2] = ratio(r.medianRPS(), peer.medianRPS())
			cells[3] = ratio(float64(r.medianP99()), float64(peer.medianP99()))
		}
		fmt.Fprintf(b, "| %s | %s |\n", r.t.title, strings.Join(cells, " | "))
	}
	b.WriteString("\n")
}

// openVsPeer states each gateway's admitted p99 against the nginx
// gateway's at the same rate and client.
func (rep *report) openVsPeer(b *strings.Builder) {
	var lines []string
	for _, o := range rep.open {
		if o.t.name == "nginx" || o.t.name == "upstream" {
			continue
		}
		for _, p := range rep.open {
			if p.t.name == "nginx" && p.rate == o.rate && p.storm == o.storm && p.round == o.round && (p.slices > 0) == (o.slices > 0) {
				mode := "over the bounded pool"
				if o.storm {
					mode = "in the storm"
				}
				lines = append(lines, fmt.Sprintf("- %d/s %s: %s's p99 is %s the nginx gateway's (%s against %s)",
					o.rate, mode, o.t.title, signedMS(o.res.admitted.p99-p.res.admitted.p99), ms(o.res.admitted.p99), ms(p.res.admitted.p99)))
			}
		}
	}
	if len(lines) > 0 {
		b.WriteString(strings.Join(lines, "\n") + "\n\n")
	}
}

func signedMS(d time.Duration) string {
	if d < 0 {
		return ms(-d) + " under"
	}
	return ms(d) + " over"
}

// plusMinus writes d with its sign: +1.20 ms, −0.30 ms.
func plusMinus(d time.Duration) string {
	if d < 0 {
		return "−" + ms(-d)
	}
	return "+" + ms(d)
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// openRoundsTable, when the bounded-pool runs had several rounds, lists
// each target's admitted p99 in every round, their median, and the median
// over rounds of its p99 less the nginx gateway's in the same round: a
// stall of the shared host that lands in one round moves one figure, not
// the medians.
func (rep *report) openRoundsTable(b *strings.Builder) {
	type key struct {
		name string
		rate int
	}
	byKey := map[key][]*openRow{}
	var order []key
	maxRound := 0
	for _, o := range rep.open {
		if o.storm {
			continue
		}
		k := key{o.t.name, o.rate}
		if _, ok := byKey[k]; !ok {
			order = append(order, k)
		}
		byKey[k] = append(byKey[k], o)
		maxRound = max(maxRound, o.round)
	}
	if maxRound == 0 {
		return
	}
	fmt.Fprintf(b, "Each round's admitted p99 over the bounded pool (%d rounds, the targets taking turns within each):\n\n", maxRound+1)
	b.WriteString("| target | rate | p99 of each round | median p99 | median of (p99 − nginx gateway's, same round) |\n|---|---|---|---|---|\n")
	for _, k := range order {
		rows := byKey[k]
		var cells []string
		var p99s, diffs []time.Duration
		for _, o := range rows {
			cells = append(cells, ms(o.res.admitted.p99))
			p99s = append(p99s, o.res.admitted.p99)
			if k.name == "nginx" {
				continue
			}
			for _, p := range byKey[key{"nginx", k.rate}] {
				if p.round == o.round {
					diffs = append(diffs, o.res.admitted.p99-p.res.admitted.p99)
				}
			}
		}
		diff := "–"
		if len(diffs) > 0 {
			diff = plusMinus(medianDuration(diffs))
		}
		fmt.Fprintf(b, "| %s | %d/s | %s | %s | %s |\n", targetTitles[k.name], k.rate, strings.Join(cells, ", "), ms(medianDuration(p99s)), diff)
	}
	b.WriteString("\n")
}

// openSlicedTable, when the bounded-pool runs were interleaved in slices,
// lists each target's admitted latencies over all its slices and over the
// cycles of slices the hypervisor left alone (steal at most -quiet-steal
// in each slice), with the p99 against the nginx gateway's over the same
// slices.
func (rep *report) openSlicedTable(b *strings.Builder) {
	var rates []int
	byRate := map[int][]*openRow{}
	peer := map[int]*openRow{}
	for _, o := range rep.open {
		if o.slices == 0 {
			continue
		}
		if _, ok := byRate[o.rate]; !ok {
			rates = append(rates, o.rate)
		}
		byRate[o.rate] = append(byRate[o.rate], o)
		if o.t.name == "nginx" {
			peer[o.rate] = o
		}
	}
	diff := func(x, y time.Duration, ok bool) string {
		if !ok {
			return "–"
		}
		return plusMinus(x - y)
	}
	for _, rate := range rates {
		rows := byRate[rate]
		fmt.Fprintf(b, "At %d/s, interleaved in slices of %v, %v per target in all (the targets taking turns slice by slice, in a new order every cycle): admitted latencies over all slices, and over the %d of %d cycles of slices in each of which the hypervisor took at most %.0f %% of the CPU (steal, from /proc/stat) and processes other than the benchmark's own at most %.0f %%:\n\n",
			rate, *openSlice, rows[0].d, rows[0].quietSlices, rows[0].slices, 100**quietSteal, 100**quietForeign)
		b.WriteString("| target | rate | all: p50 | all: p99 | all: p99 − nginx gateway's | quiet: p50 | quiet: p90 | quiet: p99 | quiet: p99 − nginx gateway's | quiet: client lateness p99 |\n|---|---|---|---|---|---|---|---|---|---|\n")
		for _, o := range rows {
			p, ok := peer[o.rate]
			ok = ok && o != p
			var peerAll, peerQuiet time.Duration
			if ok {
				peerAll, peerQuiet = p.res.admitted.p99, p.quiet.admitted.p99
			}
			qp50, qp90, qp99, qd, ql := "–", "–", "–", "–", "–"
			if o.quietSlices > 0 {
				qp50, qp90, qp99, ql = ms(o.quiet.admitted.p50), ms(o.quiet.admitted.p90), ms(o.quiet.admitted.p99), ms(o.quiet.late.p99)
				qd = diff(o.quiet.admitted.p99, peerQuiet, ok)
			}
			fmt.Fprintf(b, "| %s | %d/s | %s | %s | %s | %s | %s | %s | %s | %s |\n", o.t.title, o.rate, ms(o.res.admitted.p50), ms(o.res.admitted.p99),
				diff(o.res.admitted.p99, peerAll, ok), qp50, qp90, qp99, qd, ql)
		}
		b.WriteString("\n")
	}
}

// redisTable, for the targets with a Redis of their own, lists what each
// request cost that Redis (the medians of the rounds) and compares the
// Redis chain with the same chain in memory, in this run: throughput,
// p99 and server CPU per request (Redis's included) as ratios.
func (rep *report) redisTable(b *strings.Builder, rows []*closedRow) {
	var with []*closedRow
	byName := map[string]*closedRow{}
	for _, r := range rows {
		byName[r.t.name] = r
		if len(r.redis) > 0 {
			with = append(with, r)
		}
	}
	if len(with) == 0 {
		return
	}
	b.WriteString("What each request cost the target's Redis (medians of the rounds): its CPU time (part of the server CPU above), the socket reads it processed (each a round trip from one connection, or several commands pipelined in one), its script calls (EVALSHA, EVAL) and its other commands (INFO commandstats, which counts a script's own calls too):\n\n")
	b.WriteString("| target | Redis CPU per request | socket reads per request | script calls per request | other commands per request |\n|---|---|---|---|---|\n")
	for _, r := range with {
		var cpus []time.Duration
		var reads, scripts []float64
		others := "–"
		for i, d := range r.redis {
			if i >= len(r.rounds) {
				break
			}
			cpu, rd, sc, oth := d.perRequest(int64(r.rounds[i].lat.n))
			cpus, reads, scripts = append(cpus, cpu), append(reads, rd), append(scripts, sc)
			if i == len(r.redis)/2 {
				others = oth
			}
		}
		fmt.Fprintf(b, "| %s | %s | %.2f | %.2f | %s |\n", r.t.title, us(medianDuration(cpus)), median(reads), median(scripts), others)
	}
	b.WriteString("\n")
	var lines []string
	for _, r := range with {
		for _, base := range []string{"mxgate", "mxgate-tuned"} {
			m := byName[base]
			if m == nil || m.medianRPS() == 0 || m.medianP99() == 0 {
				continue
			}
			mc := m.cpuPerRequest(m.serverCPU)
			cpu := "–"
			if mc > 0 {
				cpu = fmt.Sprintf("%.2f×", float64(r.cpuPerRequest(r.serverCPU))/float64(mc))
			}
			lines = append(lines, fmt.Sprintf("- %s against the %s (in memory): req/s %.3f×, p99 %.2f×, server CPU per request %s (%s against %s)",
				r.t.title, targetTitles[base], r.medianRPS()/m.medianRPS(), float64(r.medianP99())/float64(m.medianP99()), cpu,
				us(r.cpuPerRequest(r.serverCPU)), us(mc)))
		}
	}
	if len(lines) > 0 {
		b.WriteString(strings.Join(lines, "\n") + "\n\n")
	}
}
