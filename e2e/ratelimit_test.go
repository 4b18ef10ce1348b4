package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/testkit/redistest"
)

// rateGateway starts an mxgate whose site applies mx_rate_limit with the
// given block body in front of up; its metrics are at g.metrics.
func rateGateway(t *testing.T, up *upstream, block string) (string, *gateway) {
	t.Helper()
	return rateGatewayOn(t, freePort(t), up, block)
}

// rateGatewayOn is rateGateway on port, which replicas share (Caddy's
// TCP listeners set SO_REUSEPORT), as replicas of one configuration on
// hosts of their own listen on one port.
func rateGatewayOn(t *testing.T, port int, up *upstream, block string) (string, *gateway) {
	t.Helper()
	mport := freePort(t)
	g := startGateway(t, fmt.Sprintf(`{
	admin {ADMIN}
}
http://127.0.0.1:%d {
	mx_rate_limit {
		%s
	}
	reverse_proxy %s
}
http://127.0.0.1:%d {
	metrics
}
`, port, block, up.hostPort(), mport))
	g.metrics = fmt.Sprintf("http://127.0.0.1:%d/metrics", mport)
	return fmt.Sprintf("http://127.0.0.1:%d", port), g
}

// waitForMetric polls the gateway's metrics until a line starts with line.
func waitForMetric(t *testing.T, g *gateway, line string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, _, body := do(t, mustRequest(t, "GET", g.metrics))
		for _, l := range strings.Split(body, "\n") {
			if strings.HasPrefix(l, line) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("metric %q never appeared", line)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRateLimitReject(t *testing.T) {
	up := newUpstream(t, nil)
	base, _ := rateGateway(t, up, "get 2/s burst 5\ndelete 1/m burst 1")
	for i := range 5 {
		status, hdr, _ := do(t, mustRequest(t, "GET", base+"/accounts"))
		if status != 200 {
			t.Fatalf("request %d: %d", i, status)
		}
		if hdr.Get("RateLimit-Limit") != "5" || hdr.Get("RateLimit-Remaining") != strconv.Itoa(4-i) || hdr.Get("RateLimit-Reset") == "" {
			t.Fatalf("request %d headers: %v", i, hdr)
		}
	}
	status, hdr, body := do(t, mustRequest(t, "GET", base+"/accounts"))
	if status != 429 || body != mdxError("Too many requests") || hdr.Get("Content-Type") != mdxType {
		t.Fatalf("over budget: %d %q", status, body)
	}
	if hdr.Get("Retry-After") != "1" || hdr.Get("RateLimit-Remaining") != "0" || hdr.Get("RateLimit-Reset") != "3" {
		t.Fatalf("over-budget headers: %v", hdr)
	}
	// other classes have budgets of their own
	if status, _, _ := do(t, mustRequest(t, "DELETE", base+"/x")); status != 200 {
		t.Fatalf("first DELETE: %d", status)
	}
	status, hdr, _ = do(t, mustRequest(t, "DELETE", base+"/x"))
	if status != 429 || hdr.Get("Retry-After") != "60" {
		t.Fatalf("second DELETE: %d Retry-After %q", status, hdr.Get("Retry-After"))
	}
	if status, _, _ := do(t, mustRequest(t, "OPTIONS", base+"/x")); status != 200 {
		t.Fatalf("OPTIONS (other, unlimited): %d", status)
	}
	if n := len(up.Requests()); n != 7 {
		t.Fatalf("upstream saw %d requests, want 7 (5 GET, 1 DELETE, 1 OPTIONS)", n)
	}
}

// TestRateLimitWaitAdmitsWhatFits: a burst that fits within max_wait is
// admitted whole, its requests held for their tokens; what does not fit is
// refused. It asserts what the limiter decided (statuses, what reached the
// upstream, the admissions, refusals and waits it counted), never how fast
// the machine was: the schedule itself (the k-th request of a burst held
// k/rate) is checked on an injected clock by ratelimit's
// TestWaitBurstSchedule.
func TestRateLimitWaitAdmitsWhatFits(t *testing.T) {
	up := newUpstream(t, nil)
	base, g := rateGateway(t, up, "get 20/s burst 1\nmode wait\nmax_wait 2s")
	const (
		admitted = `mxgate_ratelimit_admitted_total{class="get"}`
		rejected = `mxgate_ratelimit_rejected_total{class="get"}`
		waited   = `mxgate_ratelimit_wait_seconds_count{class="get"}`
		waitSum  = `mxgate_ratelimit_wait_seconds_sum{class="get"}`
		inMax    = `mxgate_ratelimit_wait_seconds_bucket{class="get",le="2"}`
	)

	// 30 at once need at most 29 intervals of 50ms = 1.45s of waiting, and
	// less if they reach the limiter apart: all fit.
	statuses := fire(t, base, 30)
	if statuses[200] != 30 {
		t.Fatalf("statuses %v, want 30 admitted", statuses)
	}
	m := metrics(t, g)
	if m[admitted] != 30 || m[rejected] != 0 || len(up.Requests()) != 30 {
		t.Fatalf("admitted %v, rejected %v, upstream saw %d; want 30, 0, 30", m[admitted], m[rejected], len(up.Requests()))
	}
	// The limiter held them: requests racing one token wait (only the
	// first found it), none longer than its place in the queue needs
	// (the k-th at most k intervals: 50ms * (1+...+29) = 21.75s in all)
	// nor than max_wait.
	if m[waited] < 1 || m[waited] > 29 {
		t.Fatalf("%v requests waited, want 1 to 29: the burst was not paced", m[waited])
	}
	if m[waitSum] > 21.75+0.01 || m[inMax] != m[waited] {
		t.Fatalf("waits: %v s in all (at most 21.75), %v of %v within max_wait", m[waitSum], m[inMax], m[waited])
	}

	// 100 at once: whenever they come, at least the 40 tokens of the next
	// 2s fit; unless they reach the limiter more than 3s apart, not all
	// do, and the rest are refused without waiting.
	statuses = fire(t, base, 100)
	ok, refused := statuses[200], statuses[429]
	if ok < 40 || refused < 1 || ok+refused != 100 {
		t.Fatalf("statuses %v, want at least 40 admitted and the rest 429", statuses)
	}
	m2 := metrics(t, g)
	if m2[admitted] != float64(30+ok) || m2[rejected] != float64(refused) || len(up.Requests()) != 30+ok {
		t.Fatalf("admitted %v, rejected %v, upstream saw %d; want %d, %d, %d", m2[admitted], m2[rejected], len(up.Requests()), 30+ok, refused, 30+ok)
	}
	// nothing waited beyond max_wait, and no refusal waited at all
	if m2[inMax] != m2[waited] || m2[waited]-m[waited] > float64(ok) {
		t.Fatalf("waits after the second burst: %v, %v within max_wait, for %d admitted", m2[waited], m2[inMax], ok)
	}
}

// TestRateLimitAbandonedWaitConsumesNothing: a client that gives up while
// waiting leaves the queue, and its token goes to the next request.
func TestRateLimitAbandonedWaitConsumesNothing(t *testing.T) {
	up := newUpstream(t, nil)
	base, g := rateGateway(t, up, "delete 1/s burst 1\nmode wait\nmax_wait 5s")
	if status, _, _ := do(t, mustRequest(t, "DELETE", base+"/a")); status != 200 {
		t.Fatal("first DELETE refused")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "DELETE", base+"/b", nil)
	if _, err := http.DefaultClient.Do(req); err == nil {
		t.Fatal("the impatient request was not cut off")
	}
	// the gateway has seen the client go and given the token back
	waitForMetric(t, g, `mxgate_ratelimit_abandoned_total{class="delete"} 1`)
	if status, _, _ := do(t, mustRequest(t, "DELETE", base+"/c")); status != 200 {
		t.Fatal("third DELETE refused")
	}
	// /c took /b's slot, due 1s after /a: the limiter held it at most 1s
	// (had /b kept its slot, /c would have been held until 2s after /a).
	m := metrics(t, g)
	if n := m[`mxgate_ratelimit_wait_seconds_count{class="delete"}`]; n > 1 ||
		m[`mxgate_ratelimit_wait_seconds_bucket{class="delete",le="1"}`] != n {
		t.Fatalf("the third DELETE was held more than 1s: the abandoned request kept its token (%v waits, %v within 1s)",
			n, m[`mxgate_ratelimit_wait_seconds_bucket{class="delete",le="1"}`])
	}
	for _, r := range up.Requests() {
		if r.URI == "/b" {
			t.Fatal("the abandoned request reached the upstream")
		}
	}
}

// metrics scrapes the gateway's metrics: each sample's value by its name
// and labels as exposed ("name{labels}").
func metrics(t *testing.T, g *gateway) map[string]float64 {
	t.Helper()
	_, _, body := do(t, mustRequest(t, "GET", g.metrics))
	m := map[string]float64{}
	for _, l := range strings.Split(body, "\n") {
		if l == "" || l[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", l, err)
		}
		m[l[:i]] = v
	}
	return m
}

// fire sends n concurrent GETs and counts the statuses.
func fire(t *testing.T, base string, n int) map[int]int {
	t.Helper()
	var mu sync.Mutex
	statuses := map[int]int{}
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(base + "/accounts")
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			mu.Lock()
			statuses[resp.StatusCode]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	return statuses
}

// sharedGateways starts n mxgate processes, replicas of one
// configuration on one port, that share one Redis budget by default.
func sharedGateways(t *testing.T, n int, srv *redistest.Server, up *upstream, block string) []string {
	t.Helper()
	var bases []string
	port := freePort(t)
	for range n {
		base, _ := rateGatewayOn(t, port, up, block+"\nstore redis "+srv.URL()+"\nredis_timeout 200ms")
		bases = append(bases, base)
	}
	return bases
}

// TestRateLimitSharedAcrossThreeReplicas: three replicas on one Redis
// admit, together, exactly the shared budget. It refills one request an
// hour, so however long the load takes the budget is the burst; the
// admitted rate under sustained load is measured by bench/ratelimit.
func TestRateLimitSharedAcrossThreeReplicas(t *testing.T) {
	srv := redistest.Start(t)
	up := newUpstream(t, nil)
	bases := sharedGateways(t, 3, srv, up, "get 1/h burst 20")
	var admitted, refused atomic.Int64
	var wg sync.WaitGroup
	for i := range 9 {
		wg.Add(1)
		go func(base string) {
			defer wg.Done()
			for range 10 {
				resp, err := http.Get(base + "/accounts")
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				switch resp.StatusCode {
				case 200:
					admitted.Add(1)
				case 429:
					refused.Add(1)
				default:
					t.Errorf("status %d", resp.StatusCode)
				}
			}
		}(bases[i%3])
	}
	wg.Wait()
	if a, r := admitted.Load(), refused.Load(); a != 20 || r != 70 {
		t.Fatalf("3 replicas admitted %d and refused %d of 90; the shared budget is 20", a, r)
	}
	if n := len(up.Requests()); n != 20 {
		t.Fatalf("upstream saw %d, gateways admitted %d", n, admitted.Load())
	}
}

// TestRateLimitRedisOutage stops Redis under two gateways, one that falls
// back to its own buckets and one that denies, and brings it back.
func TestRateLimitRedisOutage(t *testing.T) {
	srv := redistest.Start(t)
	up := newUpstream(t, nil)
	local, gLocal := rateGateway(t, up, "get 1000/s\nstore redis "+srv.URL()+"\nredis_timeout 200ms\non_store_error local")
	deny, gDeny := rateGateway(t, up, "get 1000/s\nstore redis "+srv.URL()+"\nredis_timeout 200ms\non_store_error deny")
	for _, b := range []string{local, deny} {
		if status, _, _ := do(t, mustRequest(t, "GET", b+"/a")); status != 200 {
			t.Fatalf("%s before the outage: %d", b, status)
		}
	}
	srv.Stop()
	// Each request is bounded by the 200ms timeout at worst, most skipping
	// Redis while the breaker is open: ratelimit's TestRedisOutage counts
	// the commands sent; here the answers are checked.
	for i := range 50 {
		if status, _, _ := do(t, mustRequest(t, "GET", local+"/a")); status != 200 {
			t.Fatalf("local fallback, request %d: %d", i, status)
		}
		status, hdr, body := do(t, mustRequest(t, "GET", deny+"/a"))
		if status != 503 || body != mdxError("Service unavailable: rate limit store unreachable") || hdr.Get("Content-Type") != mdxType {
			t.Fatalf("deny, request %d: %d %q", i, status, body)
		}
	}
	srv.Restart()
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, _, _ := do(t, mustRequest(t, "GET", deny+"/a"))
		if status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deny gateway never recovered: %d", status)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for name, g := range map[string]*gateway{"local": gLocal, "deny": gDeny} {
		logs := g.Stderr.String()
		if n := strings.Count(logs, "shared store unreachable"); n != 1 {
			t.Errorf("%s: outage logged %d times, want once", name, n)
		}
		if name == "deny" && !strings.Contains(logs, "shared store reachable again") {
			t.Errorf("%s: recovery not logged", name)
		}
	}
}
