package main

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParseTargetsGroups(t *testing.T) {
	got, err := parseTargets("fdx,nginx,tls")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"nginx", "nginx-tls13", "caddy-tls13", "mxgate-tls13", "nginx-tls12", "caddy-tls12", "mxgate-tls12", "nginx-fdx", "caddy-fdx", "mxgate-fdx"}
	if !slices.Equal(got, want) {
		t.Errorf("%v, want %v", got, want)
	}
	if _, err := parseTargets("mxgate-tls11"); err == nil {
		t.Error("an unknown TLS target was taken")
	}
	for _, n := range tlsTargetNames {
		if targetTitles[n] == "" {
			t.Errorf("%s has no title", n)
		}
	}
}

func TestTLSName(t *testing.T) {
	for name, want := range map[string]struct {
		kind string
		fdx  bool
		v    tlsVersion
	}{
		"nginx-tls13":  {"nginx", false, tls13},
		"caddy-tls12":  {"caddy", false, tls12},
		"mxgate-fdx":   {"mxgate", true, tls13},
		"mxgate-tls12": {"mxgate", false, tls12},
	} {
		kind, fdx, v, ok := tlsName(name)
		if !ok || kind != want.kind || fdx != want.fdx || v != want.v {
			t.Errorf("%s: %s %v %v %v", name, kind, fdx, v, ok)
		}
	}
	for _, bad := range []string{"mxgate", "mxgate-tuned", "nginx-tls"} {
		if _, _, _, ok := tlsName(bad); ok {
			t.Errorf("%s taken for a TLS target", bad)
		}
	}
}

// TestProductionFDX: the FDX target is the production example with only
// what ties it to a host replaced; its checks stay.
func TestProductionFDX(t *testing.T) {
	p := &pki{etc: "/tmp/bench/etc", serverName: benchServerName}
	cf, err := productionFDX(filepath.Join("..", "..", productionDir), 8443, 8080, p)
	if err != nil {
		t.Fatal(err)
	}
	for _, gone := range []string{"/etc/mxgate/", "0.0.0.0", ":443 ", "fdx.bank.example", "fdx-api.internal", ":2022", ":9182"} {
		if strings.Contains(cf, gone) {
			t.Errorf("still holds %q", gone)
		}
	}
	for _, kept := range []string{"mode require_and_verify", "fdx_auth {", "cert_bound on", "client_cert require", "mx_server_name", "strict_sni_host on",
		"https://localhost:8443 {", "reverse_proxy http://127.0.0.1:8080", "/tmp/bench/etc/tls/fdx-clients-ca.pem", "tcp-handover/127.0.0.1:8443"} {
		if !strings.Contains(cf, kept) {
			t.Errorf("lost %q", kept)
		}
	}
	if strings.Count(cf, "format mxgate_redact") != 1 {
		t.Errorf("want the global log's redacting format only, the site's access log left out:\n%s", cf)
	}
}

func TestBalancerConf(t *testing.T) {
	c := balancerConf(9000, []string{"server 127.0.0.2:8443;", "server 127.0.0.3:8443;"})
	for _, want := range []string{"ngx_stream_module.so", "least_conn;", "server 127.0.0.2:8443;", "server 127.0.0.3:8443;", "listen 127.0.0.1:@PORT@;", "proxy_pass fleet;", "balancer-9000.pid"} {
		if !strings.Contains(c, want) {
			t.Errorf("no %q in\n%s", want, c)
		}
	}
}

func TestFleetExactness(t *testing.T) {
	f := &fleetResult{rate: 500, burst: 50, free: &closedRow{t: &target{title: "fleet"}}}
	f.limited.elapsed = 8 * time.Second
	f.limited.statuses[200] = 4040
	f.limited.statuses[429] = 30000
	f.limited.lat.n = 34040
	if got := f.allowed(); got != 4050 {
		t.Fatalf("allowed %v, want 4050", got)
	}
	md := f.markdown()
	if !strings.Contains(md, "| 34040 | 4040 | 30000 | 0 | 0 | 4050 | -10 (-0.25 %) | 498.8/s (budget 500/s) |") {
		t.Errorf("table:\n%s", md)
	}
}

func TestTLSOpenGap(t *testing.T) {
	row := func(name string, p99 time.Duration) *openRow {
		return &openRow{t: &target{name: name}, rate: 2900, slices: 80, quietSlices: 7, quiet: openResult{admitted: latencies{p99: p99}}}
	}
	got := tlsOpenGap([]*openRow{row("nginx-tls13", 2*time.Millisecond), row("caddy-tls13", 7*time.Millisecond), row("mxgate-tls13", 4*time.Millisecond)})
	if !strings.Contains(got, "| MDX over TLS 1.3 | 2900/s | 7 of 80 | 2.00 ms | 7.00 ms | 4.00 ms | +2.00 ms | +5.00 ms | −3.00 ms |") {
		t.Errorf("table:\n%s", got)
	}
	if tlsOpenGap([]*openRow{row("nginx", time.Millisecond)}) != "" {
		t.Error("a table without TLS targets")
	}
}

func TestTLSRatios(t *testing.T) {
	row := func(name string, rps float64, p99, cpu time.Duration) *closedRow {
		r := &closedRow{t: &target{name: name, title: name}, serverCPU: []time.Duration{cpu * 1000}}
		res := closedResult{elapsed: time.Second, lat: latencies{p99: p99, n: 1000}}
		res.statuses[200] = int64(rps)
		r.rounds = []closedResult{res}
		return r
	}
	got := tlsRatios([]*closedRow{row("nginx-tls12", 10000, 4*time.Millisecond, 30*time.Microsecond), row("mxgate-tls12", 5000, 8*time.Millisecond, 60*time.Microsecond)})
	if !strings.Contains(got, "| MDX over TLS 1.2 | mxgate ÷ nginx-tls12 | 0.500 | 2.000 | 2.000 |") {
		t.Errorf("table:\n%s", got)
	}
}

func TestSectionMarkers(t *testing.T) {
	defer func(old string) { *sectionFlag = old }(*sectionFlag)
	*sectionFlag = "tls"
	b, e := sectionMarkers()
	doc := []byte("# B\n\n" + beginMarker + "\nplain\n" + endMarker + "\n")
	out, err := spliceNamed(doc, "## TLS", b, e)
	if err != nil {
		t.Fatal(err)
	}
	want := "# B\n\n" + beginMarker + "\nplain\n" + endMarker + "\n\n<!-- bench/mdx tls begin -->\n## TLS\n<!-- bench/mdx tls end -->\n"
	if string(out) != want {
		t.Errorf("%q\nwant %q", out, want)
	}
}

// TestFinishReset: a connection reset or refused as it is made is a
// refusal, told apart from one never made by its deadline.
func TestFinishReset(t *testing.T) {
	for err, want := range map[error]failure{
		&dialError{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNRESET)}}:   failReset,
		&dialError{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}: failReset,
		&dialError{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ETIMEDOUT)}}:    failDial,
		&dialError{errDeadline}: failDial,
		&net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}: failError,
	} {
		if got := finish(0, 0, 0, err).fail; got != want {
			t.Errorf("%v: %v, want %v", err, got, want)
		}
	}
	r := summariseOpen([]outcome{{fail: failReset}, {fail: failDial}, {status: 200}, {status: 503}})
	if r.resets != 1 || r.dials != 1 || r.ok != 1 || r.shed != 1 || r.failed() != 2 {
		t.Errorf("%+v", r)
	}
	got := stormTable([]*openRow{{t: &target{title: "gw"}, storm: true, rate: 100, res: r}})
	if !strings.Contains(got, "| gw | 100/s | 4 | 1 | 1 | 1 | 1 | 0 | 0 |") {
		t.Errorf("table:\n%s", got)
	}
}

// TestForeignCPU: busy time from /proc/stat less the benchmark's own is
// what other processes took, as a fraction of the machine's.
func TestForeignCPU(t *testing.T) {
	before := parseCPULine("cpu  1000 0 500 8000 0 0 0 0 0 0")
	// 200 ticks pass on 2 CPUs: 120 busy (100 user, 20 system), 80 idle
	after := parseCPULine("cpu  1100 0 520 8080 0 0 0 0 0 0")
	if before.busy != 1500 || after.busy != 1620 {
		t.Fatalf("busy %d, %d", before.busy, after.busy)
	}
	// the benchmark's processes used 0.9 s of the 1.2 s busy: 0.3 s of 2 s is foreign
	if got := foreignSince(before, after, time.Second, 1900*time.Millisecond); got < 0.1499 || got > 0.1501 {
		t.Errorf("foreign %v, want 0.15", got)
	}
	if got := foreignSince(before, after, 0, 5*time.Second); got != 0 {
		t.Errorf("more of our own than busy: %v, want 0", got)
	}
	if got := foreignSince(cpuTicks{}, after, 0, 0); got != 0 {
		t.Errorf("no reading: %v", got)
	}
}
