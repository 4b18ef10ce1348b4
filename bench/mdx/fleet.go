package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/mxgate/mxgate/bench/internal/harness"
)

// The fleet: -fleet replicas of the MDX site over TLS (tlsChainCaddyfile)
// with the replay cache and the rate limit in one Redis, behind nginx's
// stream module balancing TCP connections (least_conn) on loopback, as a
// load balancer passing TLS through does. Measured twice: with the budget
// far above the load (throughput, p99, CPU of the whole fleet), and with
// the GET budget at -fleet-budget, loaded far past it, to count what the
// replicas admitted together against what the budget allows.
var (
	fleetN      = flag.Int("fleet", 0, "replicas of the MDX site over TLS behind a TCP balancer, sharing one Redis; 0 for none")
	fleetBudget = flag.Int("fleet-budget", 500, "the fleet's GET budget a second for the exactness run")
	fleetBurst  = flag.Int("fleet-burst", 50, "the fleet's GET burst for the exactness run")
)

// fleetResult is the fleet's two runs.
type fleetResult struct {
	replicas   int
	free       *closedRow // budget far above the load
	limited    closedResult
	limitedCPU time.Duration
	rate       int
	burst      int
}

// allowed is what an exact budget admits over elapsed: the burst, then
// the rate.
func (f *fleetResult) allowed() float64 {
	return float64(f.burst) + float64(f.rate)*f.limited.elapsed.Seconds()
}

// startFleet starts n replicas sharing a new Redis, limited to get (""
// for far above any load), and the balancer in front of them, as one
// target.
func startFleet(dir, bin string, up, n int, get string) *target {
	p := setupPKI(dir, bin)
	redis := harness.StartRedis(dir)
	t := &target{name: "fleet", unique: true, verifies: true, pids: []int{redis.Pid()}}
	var servers []string
	var stops []func()
	// Every replica has the same configuration, as in production: the
	// same site address and port, each bound to an address of its own
	// (127.0.0.2, 127.0.0.3, ...), so that their replay caches and budgets
	// have one name in Redis.
	port := harness.FreePort()
	for i := range n {
		ip := fmt.Sprintf("127.0.0.%d", i+2)
		g := harness.StartAt(bin, dir, ip, port, tlsChainCaddyfile(port, up, p, chainOptions{store: redis.URL(), getLimit: get, bind: ip}))
		t.pids = append(t.pids, g.Pid())
		servers = append(servers, fmt.Sprintf("server %s:%d;", ip, port))
		stops = append(stops, g.Stop)
	}
	lbPort := harness.FreePort()
	tmpl := filepath.Join(dir, fmt.Sprintf("balancer-%d.conf.tmpl", lbPort))
	harness.Check(os.WriteFile(tmpl, []byte(balancerConf(lbPort, servers)), 0o644))
	lb := startNginx(dir, fmt.Sprintf("balancer-%d", lbPort), tmpl, up, lbPort)
	t.pids = append(t.pids, lb.pid())
	t.addr = fmt.Sprintf("127.0.0.1:%d", lbPort)
	t.host = fmt.Sprintf("%s:%d", benchServerName, lbPort)
	v := tls13
	t.tls = &v
	cfg, err := clientConfig(p.ca, tls13, nil)
	harness.Check(err)
	tlsClients[t.addr] = cfg
	t.stop = func() {
		lb.stop()
		for _, s := range stops {
			s()
		}
		redis.Stop()
	}
	return t
}

// balancerConf is nginx's stream module passing TCP connections to the
// replicas, the one with the fewest open first.
func balancerConf(port int, servers []string) string {
	return fmt.Sprintf(`load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes 1;
pid @DIR@/balancer-%[1]d.pid;
error_log @DIR@/balancer-%[1]d.err warn;
events { worker_connections 4096; }
stream {
  upstream fleet {
    least_conn;
    %[2]s
  }
  server {
    listen 127.0.0.1:@PORT@;
    proxy_pass fleet;
  }
}
`, port, strings.Join(servers, "\n    "))
}

// fleet runs the fleet's two runs.
func (b *bench) fleet(dir, bin string, up int) *fleetResult {
	res := &fleetResult{replicas: *fleetN, rate: *fleetBudget, burst: *fleetBurst}
	log.Printf("fleet: %d replicas, one Redis, nginx stream balancer", *fleetN)

	t := startFleet(dir, bin, up, *fleetN, "")
	t.title = fmt.Sprintf("%d × mxgate MDX site over TLS 1.3, `store redis` (one Redis), behind nginx `stream` (least_conn)", *fleetN)
	b.warm(t, trafficGET)
	row := &closedRow{t: t}
	for r := range *rounds {
		p := b.pool(t, trafficGET, b.need(t, trafficGET, *duration))
		runtime.GC()
		s0, c0, st0 := cpuOf(t.pids), selfCPU(), readSteal()
		out := closedLoop(t.addr, p, *connections, *duration, *timeout)
		s1, c1, st1 := cpuOf(t.pids), selfCPU(), readSteal()
		row.rounds = append(row.rounds, out)
		row.serverCPU = append(row.serverCPU, s1-s0)
		row.clientCPU = append(row.clientCPU, c1-c0)
		row.steal = append(row.steal, st1.since(st0))
		b.seen(t, trafficGET, out.rps())
		log.Printf("fleet round %d %8.0f req/s  p50 %-9v p99 %-9v non-200 %d errors %d  steal %.0f%%",
			r+1, out.rps(), out.lat.p50, out.lat.p99, out.non200(), out.errors, 100*st1.since(st0))
		logDialErrors()
	}
	res.free = row
	t.stop()

	lt := startFleet(dir, bin, up, *fleetN, fmt.Sprintf("%d/s burst %d", *fleetBudget, *fleetBurst))
	lt.title = t.title
	// A few requests first: on a new Redis the replay caches hold their
	// first requests for replay_loss_grace (they cannot tell it from a
	// Redis that lost its data), and a load started then would pile up
	// behind the wait and meet the budget all at once. All replicas read
	// the same epoch, so once one answers, none waits. Then let the budget
	// fill again, and load it far past its rate.
	b.check(lt, trafficGET)
	time.Sleep(time.Duration(float64(*fleetBurst)/float64(*fleetBudget)*float64(time.Second)) + 100*time.Millisecond)
	p := b.pool(lt, trafficGET, 2*b.need(t, trafficGET, *duration)) // refusals are cheaper than answers
	runtime.GC()
	s0 := cpuOf(lt.pids)
	res.limited = closedLoop(lt.addr, p, *connections, *duration, *timeout)
	res.limitedCPU = cpuOf(lt.pids) - s0
	lt.stop()
	l := &res.limited
	log.Printf("fleet budget %d/s burst %d over %v: admitted %d, refused %d (429), other %d, errors %d; the budget allows %.0f",
		res.rate, res.burst, l.elapsed.Round(time.Millisecond), l.ok(), l.statuses[429], l.non200()-l.statuses[429], l.errors, res.allowed())
	logDialErrors()
	return res
}

// markdown is the fleet's tables.
func (f *fleetResult) markdown() string {
	if f == nil {
		return ""
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("### A fleet behind a TCP balancer\n\n")
	w("%s: each replica is the MDX site over TLS above with its replay\n", f.free.t.title)
	w("cache and rate limit in one shared Redis; the balancer passes TCP\n")
	w("through (TLS ends at the replicas). The load generator's %d\n", *connections)
	w("keep-alive connections are spread over the replicas by the balancer.\n")
	w("*Server CPU* counts every replica, Redis and the balancer.\n\n")
	w("| run | req/s (each round) | req/s | p50 | p99 | server CPU per request | not 200 |\n|---|---|---|---|---|---|---|\n")
	r := f.free
	var each []string
	for i := range r.rounds {
		cell := kilo(r.rounds[i].rps())
		if i < len(r.steal) && r.steal[i] > *quietSteal {
			cell += fmt.Sprintf(" (%.0f %% stolen)", 100*r.steal[i])
		}
		each = append(each, cell)
	}
	w("| budget far above the load | %s | %.0f | %s | %s | %s | %d |\n\n", strings.Join(each, ", "), r.medianRPS(), ms(r.medianP50()), ms(r.medianP99()), us(r.cpuPerRequest(r.serverCPU)), r.failures())
	l := &f.limited
	w("The budget's exactness: GET budget `%d/s burst %d`, shared through\n", f.rate, f.burst)
	w("Redis, loaded by the same closed loop for %v (a new fleet and Redis,\n", l.elapsed.Round(time.Millisecond))
	w("the budget full at the start). An exact budget admits at most the\n")
	w("burst plus the rate times the run's length, and, loaded past it, no\n")
	w("fewer.\n\n")
	w("| offered (answered) | admitted (200) | refused (429) | other | errors | the budget allows | admitted − allowed | admitted rate after the burst |\n|---|---|---|---|---|---|---|---|\n")
	admittedRate := (float64(l.ok()) - float64(f.burst)) / l.elapsed.Seconds()
	w("| %d | %d | %d | %d | %d | %.0f | %+.0f (%+.2f %%) | %.1f/s (budget %d/s) |\n\n",
		l.lat.n, l.ok(), l.statuses[429], l.non200()-l.statuses[429], l.errors, f.allowed(), float64(l.ok())-f.allowed(),
		100*(float64(l.ok())-f.allowed())/f.allowed(), admittedRate, f.rate)
	return b.String()
}
