// Command mdx measures mxgate's MDX ingress chain side by side with what
// an FI would otherwise run, in one run on loopback:
//
//   - the upstream alone (nginx `return 200`), which shows what the load
//     generator itself can drive;
//   - the peer: a hand-built nginx + njs MDX gateway (../shared/peer);
//   - bare Caddy `reverse_proxy`, the mxgate binary with none of its
//     handlers (the peer's caddy-bare template);
//   - the mxgate chain: mx_ip_allow, mdx_hmac verify with replay_window,
//     mx_rate_limit with limits far above the load, reverse_proxy;
//   - the same chain tuned as mxgate ships it: the mxgate_redact log
//     format, the binary's own collector setting (GOGC 200; the targets
//     above run with Go's stock GOGC=100), and the overload caps
//     mx_conn_limit and mx_shed;
//   - the same chain with the replay cache and the rate limit in Redis;
//   - the tuned chain with mx_rate_limit at MX's 2000 GET/s, in the open
//     loop only: what a configured capacity does with the excess;
//   - over TLS (-targets tls): the MDX site with the server settings of
//     examples/production/mdx-ingress.Caddyfile (tcp-handover, the
//     listener wrappers mx_ip_allow, mx_conn_limit, mx_server_name and
//     tls, strict_sni_host, protocols h1 h2) and the tuned chain's
//     handlers, bare Caddy and the nginx gateway with the same
//     certificate, each loaded by a TLS 1.3 client and by a TLS 1.2 one
//     (ECDHE-ECDSA-AES128-GCM-SHA256); X25519 on every side;
//   - over mutual TLS (-targets fdx): the FDX site as
//     examples/production/fdx-resource-server.Caddyfile builds it
//     (client_auth require_and_verify, fdx_auth discovering its keys from
//     a stand-in authorization server over TLS, a certificate-bound
//     token), bare Caddy with the same mutual TLS, nginx with
//     ssl_verify_client on (no token check).
//
// Certificates and the bound token come from `mxgate fdx-dev`. For each
// TLS target, loops of fresh connections measure new connections a second
// with full and with resumed handshakes (-handshakes). -fleet N starts N
// replicas of the MDX site over TLS sharing one Redis behind nginx's
// stream module (a TCP balancer on loopback) and reports their throughput
// and whether the shared GET budget (-fleet-budget, -fleet-burst) admits
// exactly what it allows.
//
// Load is pre-signed MDX traffic (GETs, and GETs alternating with 1 KiB
// signed POSTs), every request unique so that a replay cache accepts it.
// Closed loop: N connections for D in several rounds, the targets taking
// turns within each round; throughput, p50, p99, the medians of the
// rounds. Open loop: fixed rates over a bounded pool of connections, and a
// connection storm that opens connections freely; latency counts from each
// request's scheduled send time. The tables go to stdout and into
// BENCHMARKS.md between the bench/mdx markers.
//
//	go -C bench run ./mdx [-quick] [-rounds 3] [-duration 8s] [-connections 64]
//	                        [-targets upstream,nginx,caddy,mxgate,mxgate-tuned,mxgate-redis,mxgate-limited,tls,fdx]
//	                        [-rates 2900,2x] [-open-rounds 1 | -open-slice 500ms [-open-slice-total 30s] [-quiet-steal 0.02]]
//	                        [-storm 2x] [-cpuprofile f] [-memprofile f] [-trace f]
//	                        [-variant name:VAR=value[,VAR=value]]...
//	                        [-handshakes 5s] [-handshake-conns 16]
//	                        [-fleet 3 [-fleet-budget 500] [-fleet-burst 50]] [-section name] [-bin mxgate]
//
// The TLS side by side, as documented in BENCHMARKS.md:
//
//	go -C bench run ./mdx -section tls -targets tls,fdx -traffic get -rates 2900 -storm "" \
//	    -open-slice 500ms -open-slice-total 40s -fleet 3
//
// (-section tls: its tables go to their own BENCHMARKS.md section, beside
// the plain side by side's.) bench is a module of its own; the command runs
// in the top of the repository, from which relative paths, those given to
// its flags included, are taken.
//
// It installs nginx-light, libnginx-mod-http-js, libnginx-mod-stream (with
// -fleet) and redis-server from Debian's packages when they are missing,
// as `make test` does.
package main

import (
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mxgate/mxgate/bench/internal/harness"
)

var (
	rounds      = flag.Int("rounds", 3, "closed-loop rounds; the targets take turns within each")
	duration    = flag.Duration("duration", 8*time.Second, "length of one closed-loop round")
	connections = flag.Int("connections", 64, "connections of the closed loop and of the open loop's bounded pool")
	targetsFlag = flag.String("targets", strings.Join(targetNames, ","), "targets to measure, from "+strings.Join(append(targetNames, tlsTargetNames...), ",")+"; tls stands for the six MDX TLS targets, fdx for the three FDX ones")
	trafficFlag = flag.String("traffic", "get,mix", "closed-loop traffic: get (signed GETs) and/or mix (GETs alternating with signed 1 KiB POSTs)")
	ratesFlag   = flag.String("rates", "2900,2x", "open-loop rates over the bounded pool, comma-separated; Nx is N times the mxgate chain's closed-loop GET capacity; empty for none")
	stormFlag   = flag.String("storm", "2x", "rate of the connection storm (an open-loop client opening connections freely); empty for none")
	openDur     = flag.Duration("open-duration", 0, "length of one open-loop run (default: -duration)")
	openSlice   = flag.Duration("open-slice", 0, "interleave the bounded-pool open-loop runs at rates under the chain's capacity in slices this long, the targets taking turns slice by slice and each keeping its connections, for -open-slice-total per target in all: a stall of the shared host lands on every target alike (0: each target's run in one piece)")
	sliceTotal  = flag.Duration("open-slice-total", 30*time.Second, "with -open-slice, each target's time in all, over its slices")
	quietSteal  = flag.Float64("quiet-steal", 0.02, "the fraction of the CPU the hypervisor may take (steal, /proc/stat) for a slice of -open-slice to count as quiet; closed-loop rounds above it say so")
	openRounds  = flag.Int("open-rounds", 1, "rounds of the bounded-pool open-loop runs, the targets taking turns within each; with more than one, a table of each round's p99 and the medians")
	timeout     = flag.Duration("timeout", 10*time.Second, "an open-loop request with no answer this long after its scheduled time has failed")
	maxOpen     = flag.Int("max-open", 16000, "the storm client's most connections open at once (the file-descriptor limit bounds it)")
	recoverMax  = flag.Duration("recover-max", 30*time.Second, "longest wait for a target to recover after an open-loop run")
	warmup      = flag.Duration("warmup", time.Second, "closed-loop warm-up per target and traffic, which must see only 200s")
	quick       = flag.Bool("quick", false, "a short smoke run: 1 round of 2s, open loop 2s, BENCHMARKS.md left alone unless -benchmarks is given")
	benchFile   = flag.String("benchmarks", "BENCHMARKS.md", "file whose bench/mdx section gets the tables; empty for none")
	peerDir     = flag.String("peer", filepath.Join("..", "shared", "peer"), "the peer's templates, relative to the repository root")
	cpuProfile  = flag.String("cpuprofile", "", "write a CPU profile of the -profile-target process, taken through Caddy's admin endpoint during an extra closed-loop GET round")
	memProfile  = flag.String("memprofile", "", "write an allocation profile of the -profile-target process over the same extra round")
	note        = flag.String("note", "", "a paragraph put under the heading of the BENCHMARKS.md section")
	traceFile   = flag.String("trace", "", "write a Go execution trace of the first -profile-target process over its first open-loop run over the bounded pool (go tool trace reads it)")
	profTarget  = flag.String("profile-target", "mxgate", "the mxgate targets to profile, comma-separated: mxgate, mxgate-tuned, mxgate-redis; files after the first get the target's name")
	hsDur       = flag.Duration("handshakes", 5*time.Second, "for each TLS target, the length of each loop of fresh connections (full handshakes, then resumed); 0 for none")
	hsConns     = flag.Int("handshake-conns", 16, "connections at once in the loops of fresh connections")
	binFlag     = flag.String("bin", "", "an mxgate binary to run instead of building cmd/mxgate (another commit's, to compare)")
)

func main() {
	flag.Func("variant", "one more target, repeatable: the chain as shipped with more environment, as name:VAR=value[,VAR=value] (a value cannot hold a comma); measured as mxgate-tuned/name", addVariant)
	flag.Parse()
	log.SetFlags(0)
	harness.ToRoot()
	harness.ExitOnSignal()
	explicit := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	if *quick {
		set := func(name string, v string) {
			if !explicit[name] {
				harness.Check(flag.Set(name, v))
			}
		}
		set("rounds", "1")
		set("duration", "2s")
		set("open-duration", "2s")
		set("timeout", "3s")
		set("recover-max", "5s")
		set("warmup", "500ms")
		set("handshakes", "2s")
		set("benchmarks", "")
	}
	if *openDur == 0 {
		*openDur = *duration
	}
	if *openSlice < 0 || *openSlice > 0 && (*openRounds > 1 || *openSlice > *sliceTotal || *traceFile != "") {
		harness.Fatalf("-open-slice must be positive, no longer than -open-slice-total, and not used with -open-rounds or -trace")
	}
	if *rounds < 1 || *openRounds < 1 || *duration <= 0 || *connections < 1 || *timeout <= 0 || *maxOpen < 1 || *warmup <= 0 {
		harness.Fatalf("-rounds, -open-rounds, -duration, -connections, -timeout, -max-open and -warmup must be positive")
	}
	names, err := parseTargets(*targetsFlag)
	harness.Check(err)
	for _, v := range variants {
		names = append(names, v.target())
		targetTitles[v.target()] = v.title()
	}
	var kinds []traffic
	for _, s := range splitList(*trafficFlag) {
		k, err := parseTraffic(s)
		harness.Check(err)
		kinds = append(kinds, k)
	}
	rates, err := parseRates(*ratesFlag)
	harness.Check(err)
	storm, err := parseRates(*stormFlag)
	harness.Check(err)
	if len(storm) > 1 {
		harness.Fatalf("-storm takes one rate")
	}
	profTargets := splitList(*profTarget)
	for _, pt := range profTargets {
		if (*cpuProfile != "" || *memProfile != "" || *traceFile != "") && !slices.Contains(names, pt) {
			harness.Fatalf("-profile-target %s is not among -targets", pt)
		}
		if !strings.HasPrefix(pt, "mxgate") || pt == "mxgate-limited" {
			harness.Fatalf("-profile-target takes mxgate, mxgate-tuned or mxgate-redis")
		}
	}
	if len(profTargets) > 0 {
		firstProfiled = profTargets[0]
	}

	peer, err := filepath.Abs(*peerDir)
	harness.Check(err)
	for _, f := range []string{"upstream.conf.tmpl", "nginx-peer.conf.tmpl", "mdx.js", "caddy-bare.Caddyfile.tmpl"} {
		if _, err := os.Stat(filepath.Join(peer, f)); err != nil {
			harness.Fatalf("the peer's %s is not in %s (in CI, shared/ is beside the repository; -peer sets the place): %v", f, peer, err)
		}
	}

	needs := []harness.Need{
		{Package: "nginx-light", File: "nginx"},
		{Package: "libnginx-mod-http-js", File: "/usr/lib/nginx/modules/ngx_http_js_module.so"},
	}
	if slices.Contains(names, "mxgate-redis") || *fleetN > 0 {
		needs = append(needs, harness.Need{Package: "redis-server", File: "redis-server"})
	}
	if *fleetN > 0 {
		needs = append(needs, harness.Need{Package: "libnginx-mod-stream", File: "/usr/lib/nginx/modules/ngx_stream_module.so"})
	}
	harness.Check(harness.Install(needs...))

	dir, err := os.MkdirTemp("", "mxgate-bench-mdx-")
	harness.Check(err)
	harness.OnExit(func() { os.RemoveAll(dir) })
	bin := *binFlag
	if bin == "" {
		log.Printf("building mxgate")
		bin = harness.Build(dir)
	}

	runStart, stealStart := time.Now(), readSteal()
	targets := startTargets(names, dir, peer, bin)
	gen, err := newGenerator(time.Now)
	harness.Check(err)
	b := &bench{gen: gen, targets: targets, capacity: map[string]float64{}}

	for _, k := range kinds {
		for _, t := range targets {
			if k == trafficMix && t.getOnly {
				continue
			}
			if t.openOnly {
				b.check(t, k)
				continue
			}
			b.warm(t, k)
		}
	}
	closed := map[traffic][]*closedRow{}
	for _, k := range kinds {
		closed[k] = b.closed(k)
	}
	var prof []*profiles
	if *cpuProfile != "" || *memProfile != "" {
		for _, pt := range profTargets {
			prof = append(prof, b.profile(targetNamed(targets, pt), bin))
		}
	}
	var hs []*handshakeRow
	if *hsDur > 0 {
		for _, t := range targets {
			if t.tls != nil {
				hs = append(hs, b.handshakes(t, false, *hsConns, *hsDur), b.handshakes(t, true, *hsConns, *hsDur))
			}
		}
	}
	capBase, capacity := b.capacityBase(closed[trafficGET])
	var open []*openRow
	for _, r := range rates {
		rate := r.resolve(capacity)
		if rate < 1 {
			harness.Fatalf("open-loop rate %s needs the closed-loop GET capacity; add get to -traffic", r)
		}
		if *openSlice > 0 && (capacity == 0 || float64(rate) < capacity) {
			open = append(open, b.openSliced(rate, r)...)
			continue
		}
		for round := range *openRounds {
			for j := range targets {
				t := targets[(round+j)%len(targets)] // each round starts one target further on
				row := b.open(t, rate, r, false)
				row.round = round
				open = append(open, row)
			}
		}
	}
	for _, r := range storm {
		rate := r.resolve(capacity)
		if rate < 1 {
			harness.Fatalf("storm rate %s needs the closed-loop GET capacity; add get to -traffic", r)
		}
		for _, t := range targets {
			open = append(open, b.open(t, rate, r, true))
		}
	}
	var fl *fleetResult
	if *fleetN > 0 {
		fl = b.fleet(dir, bin, upstreamPort)
	}
	rep := report{
		command: commandLine(), cpus: harness.NumCPU(), when: time.Now(),
		kinds: kinds, closed: closed, open: open, capBase: capBase, capacity: capacity,
		profiles: prof, note: *note, title: sectionTitle(),
	}
	section := rep.markdown() + stormTable(open) + tlsSection(closed[trafficGET], hs, open, fl, machineLoad(stealStart, runStart))
	fmt.Println(section)
	if *benchFile != "" {
		harness.Check(replaceSection(*benchFile, section))
		log.Printf("wrote the tables into %s", *benchFile)
	}
	if rep.closedFailures() > 0 {
		log.Printf("WARNING: %d closed-loop requests were not answered 200; the figures above are not comparable", rep.closedFailures())
		harness.Exit(1)
	}
	harness.Exit(0)
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// parseTargets returns the named targets in the tables' order.
func parseTargets(s string) ([]string, error) {
	var want []string
	for _, n := range splitList(s) {
		if g, ok := targetGroups[n]; ok {
			want = append(want, g...)
			continue
		}
		want = append(want, n)
	}
	for _, n := range want {
		if !slices.Contains(targetNames, n) {
			return nil, fmt.Errorf("unknown target %q (want some of %s)", n, strings.Join(targetNames, ","))
		}
	}
	var out []string
	for _, n := range targetNames {
		if slices.Contains(want, n) {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no targets")
	}
	return out, nil
}

// rateSpec is an open-loop rate: a number a second, or a multiple of the
// measured capacity.
type rateSpec struct {
	perSecond int
	times     float64
}

func (r rateSpec) String() string {
	if r.times > 0 {
		return strconv.FormatFloat(r.times, 'f', -1, 64) + "x"
	}
	return strconv.Itoa(r.perSecond)
}

func (r rateSpec) resolve(capacity float64) int {
	if r.times > 0 {
		return int(r.times * capacity)
	}
	return r.perSecond
}

func parseRates(s string) ([]rateSpec, error) {
	var out []rateSpec
	for _, f := range splitList(s) {
		if f == "off" {
			continue
		}
		if m, ok := strings.CutSuffix(f, "x"); ok {
			x, err := strconv.ParseFloat(m, 64)
			if err != nil || x <= 0 || x > 100 {
				return nil, fmt.Errorf("bad rate %q: want a positive multiple such as 2x", f)
			}
			out = append(out, rateSpec{times: x})
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || n > 1_000_000 {
			return nil, fmt.Errorf("bad rate %q: want requests a second (1 to 1000000) or a multiple such as 2x", f)
		}
		out = append(out, rateSpec{perSecond: n})
	}
	return out, nil
}

func commandLine() string {
	args := []string{"go", "-C", "bench", "run", "./mdx"}
	for _, a := range os.Args[1:] {
		if a == "" || strings.ContainsAny(a, " \t'\"") {
			a = strconv.Quote(a)
		}
		args = append(args, a)
	}
	return strings.Join(args, " ")
}

func targetNamed(ts []*target, name string) *target {
	for _, t := range ts {
		if t.name == name {
			return t
		}
	}
	return nil
}

// A variant is the chain as shipped run with more environment (-variant),
// to measure a runtime setting side by side with the default.
type variant struct {
	name string
	env  []string
}

var variants []*variant

func (v *variant) target() string { return "mxgate-tuned/" + v.name }

func (v *variant) title() string {
	return targetTitles["mxgate-tuned"] + " with `" + strings.Join(v.env, " ") + "`"
}

func variantNamed(target string) *variant {
	for _, v := range variants {
		if v.target() == target {
			return v
		}
	}
	return nil
}

// addVariant parses one -variant: name:VAR=value[,VAR=value].
func addVariant(s string) error {
	name, list, ok := strings.Cut(s, ":")
	if !ok || name == "" || strings.ContainsAny(name, " ,/") {
		return fmt.Errorf("%q: want name:VAR=value[,VAR=value], the name without spaces, commas or slashes", s)
	}
	v := &variant{name: name}
	for _, kv := range splitList(list) {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return fmt.Errorf("%q: %q is not VAR=value", s, kv)
		}
		v.env = append(v.env, kv)
	}
	if len(v.env) == 0 {
		return fmt.Errorf("%q: no VAR=value", s)
	}
	if variantNamed(v.target()) != nil {
		return fmt.Errorf("%q: variant %s given twice", s, name)
	}
	variants = append(variants, v)
	return nil
}

// stockEnv runs bare Caddy and the untuned chains with Go's stock
// garbage-collector settings, where mxgate's binary would otherwise apply
// its own default (GOGC 200).
var stockEnv = []string{"GOGC=100"}

// startTargets starts the upstream and every named target.
func startTargets(names []string, dir, peer, bin string) []*target {
	upPort := harness.FreePort()
	upstreamPort = upPort
	up := startNginx(dir, "upstream", filepath.Join(peer, "upstream.conf.tmpl"), upPort, upPort)
	upstreamPid = up.pid()
	var ts []*target
	for _, n := range names {
		t := &target{name: n, title: targetTitles[n]}
		kind := n
		if variantNamed(n) != nil {
			kind = "variant"
		}
		switch kind {
		case "upstream":
			t.addr = fmt.Sprintf("127.0.0.1:%d", upPort)
			t.pids = []int{up.pid()}
		case "nginx":
			port := harness.FreePort()
			js, err := os.ReadFile(filepath.Join(peer, "mdx.js"))
			harness.Check(err)
			harness.Check(os.WriteFile(filepath.Join(dir, "mdx.js"), js, 0o644))
			p := startNginx(dir, "nginx-peer", filepath.Join(peer, "nginx-peer.conf.tmpl"), upPort, port)
			t.addr = fmt.Sprintf("127.0.0.1:%d", port)
			t.pids = []int{p.pid()}
			t.verifies = true
		case "caddy":
			port := harness.FreePort()
			tmpl, err := os.ReadFile(filepath.Join(peer, "caddy-bare.Caddyfile.tmpl"))
			harness.Check(err)
			cf := strings.NewReplacer("@PORT@", strconv.Itoa(port), "@UP@", strconv.Itoa(upPort), "@DIR@", dir).Replace(string(tmpl))
			g := harness.Start(bin, dir, port, cf, stockEnv...)
			t.addr = fmt.Sprintf("127.0.0.1:%d", port)
			t.pids = []int{g.Pid()}
		case "mxgate", "mxgate-redis", "mxgate-tuned", "mxgate-limited", "variant":
			var o chainOptions
			redisPid := 0
			var env []string
			switch n {
			case "mxgate-redis":
				r := harness.StartRedis(dir)
				o.store, redisPid = r.URL(), r.Pid()
				t.redisAddr, t.redisPid = r.Addr, r.Pid()
			case "mxgate-tuned":
				o.tuned = true
			case "mxgate-limited":
				o.tuned, o.getLimit = true, "2000/s"
				t.openOnly = true
			default:
				if v := variantNamed(n); v != nil {
					o.tuned, env = true, v.env
				}
			}
			port := harness.FreePort()
			if n == "mxgate" || n == "mxgate-redis" {
				env = stockEnv
			}
			g := harness.Start(bin, dir, port, chainCaddyfile(port, upPort, o), env...)
			t.addr = fmt.Sprintf("127.0.0.1:%d", port)
			t.pids = []int{g.Pid()}
			if redisPid != 0 {
				t.pids = append(t.pids, redisPid) // its store is part of its cost
			}
			t.admin = g.Admin
			t.unique, t.verifies = true, true
		default:
			startTLSTarget(t, dir, peer, bin, upPort)
		}
		ts = append(ts, t)
	}
	return ts
}

// bench holds what the phases share.
type bench struct {
	gen      *generator
	targets  []*target
	capacity map[string]float64 // target/traffic -> estimated req/s, for sizing pools
	traced   bool               // -trace has been taken
}

// cyclicPool is the size of a pool for a target without a replay cache.
const cyclicPool = 1 << 15

// maxUnique bounds a pool of unique requests (about 350 bytes a GET).
const maxUnique = 2_000_000

// pool returns requests for need sends to t: need unique ones if t keeps a
// replay cache, else up to cyclicPool reused in turn.
func (b *bench) pool(t *target, k traffic, need int) *pool {
	if t.unique {
		need = min(need, maxUnique)
		return &pool{reqs: b.build(t, k, need)}
	}
	return &pool{reqs: b.build(t, k, min(need, cyclicPool)), cyclic: true}
}

// need returns how many requests a closed-loop run of d against t should
// have ready: half as many again as the best rate seen so far would send.
func (b *bench) need(t *target, k traffic, d time.Duration) int {
	est := b.capacity[t.name+"/"+k.String()]
	if est == 0 {
		est = 150_000
	}
	return int(est*d.Seconds()*1.5) + 10_000
}

func (b *bench) seen(t *target, k traffic, rps float64) {
	key := t.name + "/" + k.String()
	b.capacity[key] = max(b.capacity[key], rps)
}

// check is warm's first part, for a target that refuses part of any
// load: a few pre-signed requests, each answered 200.
func (b *bench) check(t *target, k traffic) {
	for _, req := range b.build(t, k, 3) {
		c, err := dial(t.addr, 5*time.Second)
		harness.Check(err)
		var body []byte
		_ = c.nc.SetDeadline(time.Now().Add(10 * time.Second))
		status, _, err := c.roundTrip(req, &body)
		c.close()
		if err != nil || status != 200 {
			harness.Fatalf("%s: a pre-signed %s request: status %d, %v: %s", t.name, k, status, err, body)
		}
	}
}

// warm checks that t answers k's requests with 200 (and, for a target
// with a replay cache, that a replayed request is refused), then runs a
// short closed loop, which must see only 200s, to estimate t's capacity.
func (b *bench) warm(t *target, k traffic) {
	reqs := b.build(t, k, 20)
	c, err := dial(t.addr, 5*time.Second)
	harness.Check(err)
	logTLS(t, c)
	defer func() { c.close() }() // the last connection: try may replace c
	try := func(req []byte) (int, string) {
		var body []byte
		_ = c.nc.SetDeadline(time.Now().Add(10 * time.Second))
		status, keep, err := c.roundTrip(req, &body)
		if err != nil {
			harness.Fatalf("%s: warm-up request failed: %v", t.name, err)
		}
		if !keep {
			c.close()
			if c, err = dial(t.addr, 5*time.Second); err != nil {
				harness.Fatalf("%s: %v", t.name, err)
			}
		}
		return status, string(body)
	}
	for _, req := range reqs {
		if status, body := try(req); status != 200 {
			harness.Fatalf("%s refused a pre-signed %s request with %d: %s\nrequest:\n%s\nA benchmark of refusals measures nothing; fix the requests or the configuration.",
				t.name, k, status, body, req)
		}
	}
	if t.verifies {
		bad := tamper(b.build(t, k, 1)[0])
		if status, body := try(bad); status != 412 {
			harness.Fatalf("%s answered a request with a wrong MDX-HMAC with %d, not 412: does it verify? %s", t.name, status, body)
		}
	}
	if t.refuse != nil {
		if status, body := try(t.refuse); status != t.refuseStatus {
			harness.Fatalf("%s answered a request it must refuse with %d, not %d: %s", t.name, status, t.refuseStatus, body)
		}
	}
	if t.unique {
		if status, body := try(reqs[0]); status != 412 {
			harness.Fatalf("%s answered a replayed request with %d, not 412: is replay_window on? %s", t.name, status, body)
		}
	}
	p := b.pool(t, k, b.need(t, k, *warmup))
	runtime.GC()
	r := closedLoop(t.addr, p, *connections, *warmup, *timeout)
	if r.non200() > 0 || r.errors > 0 || r.ok() == 0 {
		harness.Fatalf("%s: warm-up (%s) saw %d non-200 answers and %d errors in %d answers: %s",
			t.name, k, r.non200(), r.errors, r.lat.n, statusList(&r.statuses))
	}
	b.seen(t, k, r.rps())
	log.Printf("warm-up %-12s %-3s %8.0f req/s", t.name, k, r.rps())
}

// logDialErrors logs the causes of failed connects since the last call.
func logDialErrors() {
	for msg, n := range takeDialErrors() {
		log.Printf("  %d connects failed: %s", n, msg)
	}
}

func statusList(s *statusCounts) string {
	var parts []string
	for st, n := range s {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%d×%d", n, st))
		}
	}
	return strings.Join(parts, " ")
}

// closedRow is one target's closed-loop rounds.
type closedRow struct {
	t         *target
	rounds    []closedResult
	serverCPU []time.Duration // the target's processes, per round
	clientCPU []time.Duration // this process, per round
	steal     []float64       // the fraction of the CPU the hypervisor took, per round
	redis     []redisStats    // the target's Redis, per round; nil without one
}

// closed runs the closed-loop rounds of traffic k.
func (b *bench) closed(k traffic) []*closedRow {
	var targets []*target
	for _, t := range b.targets {
		if !t.openOnly && !(k == trafficMix && t.getOnly) {
			targets = append(targets, t)
		}
	}
	rows := make([]*closedRow, len(targets))
	for i, t := range targets {
		rows[i] = &closedRow{t: t}
	}
	for r := range *rounds {
		for j := range targets {
			i := (r + j) % len(targets) // each round starts one target further on
			t := targets[i]
			p := b.pool(t, k, b.need(t, k, *duration))
			runtime.GC()
			r0 := t.readRedis()
			s0, c0, st0 := cpuOf(t.pids), selfCPU(), readSteal()
			res := closedLoop(t.addr, p, *connections, *duration, *timeout)
			s1, c1, st1 := cpuOf(t.pids), selfCPU(), readSteal()
			if t.redisAddr != "" {
				rows[i].redis = append(rows[i].redis, t.readRedis().since(r0))
			}
			rows[i].steal = append(rows[i].steal, st1.since(st0))
			rows[i].rounds = append(rows[i].rounds, res)
			rows[i].serverCPU = append(rows[i].serverCPU, s1-s0)
			rows[i].clientCPU = append(rows[i].clientCPU, c1-c0)
			b.seen(t, k, res.rps())
			log.Printf("closed %-3s round %d %-12s %8.0f req/s  p50 %-9v p99 %-9v non-200 %d errors %d  steal %.0f%%",
				k, r+1, t.name, res.rps(), res.lat.p50, res.lat.p99, res.non200(), res.errors, 100*st1.since(st0))
			logDialErrors()
			if res.exhausted {
				log.Printf("  %s used up its %d unique requests before %v; the round ran %v", t.name, len(p.reqs), *duration, res.elapsed.Round(time.Millisecond))
			}
		}
	}
	return rows
}

// readRedis reads the counters of t's Redis, if it has one.
func (t *target) readRedis() redisStats {
	if t.redisAddr == "" {
		return redisStats{}
	}
	s, err := readRedisStats(t.redisAddr, t.redisPid)
	if err != nil {
		log.Printf("%s: reading its Redis's counters: %v", t.name, err)
	}
	return s
}

// capacityBase picks the closed-loop GET capacity that Nx rates multiply:
// the mxgate chain's, or failing that bare Caddy's, or the first target's.
func (b *bench) capacityBase(rows []*closedRow) (string, float64) {
	for _, name := range []string{"mxgate", "caddy", ""} {
		for _, r := range rows {
			if name == "" || r.t.name == name {
				return r.t.name, r.medianRPS()
			}
		}
	}
	return "", 0
}

// openRow is one open-loop run against one target.
type openRow struct {
	round  int // of -open-rounds, from 0
	slices int // of -open-slice; 0 if the run was in one piece
	// quiet summarises the slices of the cycles (one slice of every
	// target) in which the host's hypervisor took no more than
	// -quiet-steal of the CPU; quietSlices counts them.
	quiet       openResult
	quietSlices int
	t           *target
	storm       bool
	spec        rateSpec
	rate        int
	res         openResult
	d           time.Duration
	serverCPU   time.Duration // the target's CPU time over the run and its recovery (runs in one piece)
}

// openSliced runs every target over the bounded pool at rate for
// -open-slice-total in all, in slices of -open-slice, the targets taking
// turns slice by slice (each slice starting one target further on), each
// target keeping its connections and its own unique requests across its
// slices. Its outcomes are summarised as one row per target. A stall of
// the host lasting a second lands in one slice of one target; spread over
// many slices, stalls land on every target alike, so the rows compare the
// targets rather than the moments each was measured. Recovery is not
// measured (the targets never stop being loaded).
func (b *bench) openSliced(rate int, spec rateSpec) []*openRow {
	perSlice := max(1, int(float64(rate)*openSlice.Seconds()))
	n := max(1, int(sliceTotal.Seconds()/openSlice.Seconds()+0.5))
	type run struct {
		t        *target
		send     func(w int, req []byte, deadline time.Time) (int, error)
		closeAll func()
		out      []outcome
		quiet    []outcome
	}
	runs := make([]*run, 0, len(b.targets))
	var whole []*target
	for _, t := range b.targets {
		if t.openOnly {
			// A rate limit below the load refuses by its budget, which
			// refills while the other targets take their turns: it is
			// measured in one piece.
			whole = append(whole, t)
			continue
		}
		send, closeAll := pooledConns(t.addr, *connections)
		runs = append(runs, &run{t: t, send: send, closeAll: closeAll, out: make([]outcome, 0, n*perSlice)})
	}
	if readSteal().total == 0 {
		log.Printf("open-slice: /proc/stat cannot be read; no cycle can be told quiet")
	}
	// The order of the targets is shuffled in every cycle (with a fixed
	// seed, so that runs repeat), so that what one target leaves behind
	// after its slice (a collection, Redis expiring keys) does not always
	// land on the same next target.
	rng := rand.New(rand.NewPCG(1, uint64(rate)))
	quietCycles, quietOK := 0, true
	for range n {
		quiet := true
		outs := make([][]outcome, len(runs))
		for _, idx := range rng.Perm(len(runs)) {
			r := runs[idx]
			// Each slice's requests are signed just before it, so that a
			// long run never sends a request older than the gateways'
			// clock skew allows.
			reqs := b.pool(r.t, trafficGET, perSlice).reqs
			before, fBefore := readSteal(), sampleOwnCPU(b.targets)
			s := schedule{start: time.Now().Add(5 * time.Millisecond), rate: rate, count: perSlice}
			outs[idx] = runPooled(realClock{}, s, *connections, *timeout, func(w, i int, deadline time.Time) (int, error) {
				return r.send(w, reqs[i%len(reqs)], deadline)
			})
			after, fAfter := readSteal(), sampleOwnCPU(b.targets)
			if after.total == 0 || before.total == 0 {
				quietOK = false
			}
			if after.since(before) > *quietSteal || !quietOK {
				quiet = false
			}
			if foreign := foreignSince(before, after, fBefore, fAfter); foreign > *quietForeign {
				quiet = false
			}
		}
		if quiet {
			quietCycles++
		}
		for i, r := range runs {
			r.out = append(r.out, outs[i]...)
			if quiet {
				r.quiet = append(r.quiet, outs[i]...)
			}
		}
	}
	log.Printf("open-slice: %d of %d cycles had at most %.0f%% of the CPU stolen and at most %.0f%% taken by other processes in each slice", quietCycles, n, 100**quietSteal, 100**quietForeign)
	rows := make([]*openRow, 0, len(runs))
	for _, r := range runs {
		r.closeAll()
		res := summariseOpen(r.out)
		log.Printf("open %-9s %6d/s %-12s 200: %d shed: %d failed: %d  p50 %v p99 %v  (%d slices of %v)",
			fmt.Sprintf("%d conns", *connections), rate, r.t.name, res.ok, res.shed, res.failed(), res.admitted.p50, res.admitted.p99, n, *openSlice)
		rows = append(rows, &openRow{t: r.t, spec: spec, rate: rate, res: res, d: time.Duration(n) * *openSlice, slices: n,
			quiet: summariseOpen(r.quiet), quietSlices: quietCycles})
	}
	time.Sleep(time.Second) // let the targets settle before the next run
	for _, t := range whole {
		rows = append(rows, b.open(t, rate, spec, false))
	}
	return rows
}

// open runs one open-loop run of GETs at rate against t, over the bounded
// pool of connections or as a storm, then measures the time to recover.
func (b *bench) open(t *target, rate int, spec rateSpec, storm bool) *openRow {
	count := int(float64(rate) * openDur.Seconds())
	probes := int(*recoverMax/recoveryEvery) + recoveryRun + 1
	p := b.pool(t, trafficGET, count+probes)
	reqs := p.reqs
	probeReqs := reqs[len(reqs)-probes:]
	if !t.unique {
		probeReqs = reqs[:probes]
	}
	runtime.GC()
	s := schedule{start: time.Now().Add(50 * time.Millisecond), rate: rate, count: count}
	type rec struct {
		at time.Duration
		ok bool
	}
	recovered := make(chan rec, 1)
	go func() {
		time.Sleep(time.Until(s.end()))
		at, ok := probeRecovery(t.addr, probeReqs, s.end(), *recoverMax)
		recovered <- rec{at, ok}
	}()
	traceDone := b.startTrace(t, storm)
	cpu0 := cpuOf(t.pids)
	var out []outcome
	if storm {
		send, closeAll := stormSender(t.addr, reqs, 4096, int64(*maxOpen))
		out = make([]outcome, count)
		var wg waitGroup
		runStorm(realClock{}, s, *timeout, wg.spawn, send, out)
		wg.Wait()
		closeAll()
	} else {
		send, closeAll := pooledSender(t.addr, reqs, *connections)
		out = runPooled(realClock{}, s, *connections, *timeout, send)
		closeAll()
	}
	rv := <-recovered
	serverCPU := cpuOf(t.pids) - cpu0 // the run and its recovery
	harness.Check(<-traceDone)
	time.Sleep(time.Second) // let the target settle before the next run
	res := summariseOpen(out)
	res.recovery, res.recovered = rv.at, rv.ok
	mode := fmt.Sprintf("%d conns", *connections)
	if storm {
		mode = "storm"
	}
	log.Printf("open %-9s %6d/s %-12s 200: %d shed: %d failed: %d  p50 %v p99 %v  recovered: %v %v",
		mode, rate, t.name, res.ok, res.shed, res.failed(), res.admitted.p50, res.admitted.p99, res.recovered, res.recovery)
	logDialErrors()
	return &openRow{t: t, storm: storm, spec: spec, rate: rate, res: res, d: *openDur, serverCPU: serverCPU}
}
