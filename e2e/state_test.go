package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/testkit/redistest"
)

// A second key for rotation tests (64 bytes, base64).
const rotatedKey = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw=="

// replayCaddyfile is an FI-side gateway with a replay window; keys are the
// mdx_hmac key lines, extra more verify options.
func replayCaddyfile(port int, up *upstream, keys []string, extra string) string {
	var kl strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&kl, "\t\tkey %s\n", k)
	}
	return fmt.Sprintf(`{
	admin {ADMIN}
	shutdown_delay 500ms
	servers {
		trusted_proxies static 127.0.0.1/32 ::1/128
		trusted_proxies_strict
		client_ip_headers X-Forwarded-For
	}
}
http://127.0.0.1:%d {
	bind tcp-handover/127.0.0.1
	mx_ip_allow mdx {
		trusted_proxies 127.0.0.1/32 ::1/128
	}
	mdx_hmac verify {
%s		replay_window 10m
		%s
	}
	reverse_proxy %s
}
`, port, kl.String(), extra, up.hostPort())
}

// signedLoad is a stream of unique signed requests with replays of
// accepted ones interleaved; it counts what went wrong.
type signedLoad struct {
	t    *testing.T
	base func() string // where each request goes

	mu       sync.Mutex
	accepted []*http.Request // replayable copies of accepted requests
	n        atomic.Int64

	validFailed    atomic.Int64
	replayAdmitted atomic.Int64
	replays        atomic.Int64
	failures       []string
}

func (l *signedLoad) fail(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.failures) < 10 {
		l.failures = append(l.failures, fmt.Sprintf(format, args...))
	}
}

// fresh sends one new signed request; a valid request must be answered 200.
func (l *signedLoad) fresh(t *testing.T) {
	i := l.n.Add(1)
	m := mdxReq{method: "GET", path: "/inst1/accounts", session: fmt.Sprintf("load-%d-%d", time.Now().UnixNano(), i)}
	req := m.build(t, l.base())
	// Every other request on a connection of its own: a fresh connection
	// shows what the listener does across a reload, a kept-alive one what
	// the old configuration's server does with it.
	req.Close = i%2 == 0
	keep := req.Clone(req.Context())
	status, _, body := do(t, req)
	if status != 200 {
		l.validFailed.Add(1)
		l.fail("valid request: %d %s", status, body)
		return
	}
	l.mu.Lock()
	l.accepted = append(l.accepted, keep)
	l.mu.Unlock()
}

// replay sends again the i-th accepted request (to whichever replica base
// names now); it must be refused.
func (l *signedLoad) replay(t *testing.T, i int) {
	l.mu.Lock()
	if len(l.accepted) == 0 {
		l.mu.Unlock()
		return
	}
	orig := l.accepted[i%len(l.accepted)]
	l.mu.Unlock()
	req, _ := http.NewRequest(orig.Method, l.base()+orig.URL.Path, nil)
	req.Header = orig.Header.Clone()
	l.replays.Add(1)
	if status, _, body := do(t, req); status != 412 {
		l.replayAdmitted.Add(1)
		l.fail("replay: %d %s", status, body)
	}
}

func (l *signedLoad) check(t *testing.T) {
	t.Helper()
	if l.validFailed.Load() != 0 || l.replayAdmitted.Load() != 0 {
		t.Fatalf("%d valid requests failed, %d of %d replays admitted: %v",
			l.validFailed.Load(), l.replayAdmitted.Load(), l.replays.Load(), l.failures)
	}
	if l.n.Load() == 0 || l.replays.Load() == 0 {
		t.Fatal("no load was sent")
	}
}

// run sends, from workers goroutines, fresh requests with a replay after
// every fourth, until stop is closed or limit requests were sent.
func (l *signedLoad) run(t *testing.T, workers, limit int, stop <-chan struct{}) {
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; l.n.Load() < int64(limit); i++ {
				select {
				case <-stop:
					return
				default:
				}
				l.fresh(t)
				if i%4 == 3 {
					l.replay(t, i*workers+w)
				}
			}
		}()
	}
	wg.Wait()
}

// flowed waits until the load has sent k more requests, or has stopped
// (done closed).
func (l *signedLoad) flowed(t *testing.T, k int64, done <-chan struct{}) {
	t.Helper()
	want := l.n.Load() + k
	deadline := time.Now().Add(time.Minute) // a hang guard, not a measure
	for l.n.Load() < want {
		select {
		case <-done:
			return
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the load sent fewer than %d requests in a minute", k)
		}
	}
}

// TestReloadUnderLoadKeepsReplaysRefused: signed traffic with replays
// interleaved flows through three reloads (two of them key rotations);
// no valid request fails, no replay is admitted, and a replay of a request
// from before the reloads is still refused after them. The site binds
// tcp-handover with a shutdown_delay, as the examples do: with Caddy's
// own listeners a reload resets the connections queued on the old socket.
func TestReloadUnderLoadKeepsReplaysRefused(t *testing.T) {
	up := newUpstream(t, nil)
	port := freePort(t)
	g := startGateway(t, replayCaddyfile(port, up, []string{"{env.E2E_MDX_KEY}"}, ""), "E2E_MDX_KEY="+demoKey)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	l := &signedLoad{t: t, base: func() string { return base }}
	for range 20 {
		l.fresh(t)
	}
	first := l.accepted[0]

	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { l.run(t, 4, 1500, stop); close(done) }()
	for _, keys := range [][]string{
		{"{env.E2E_MDX_KEY}", rotatedKey}, // the new key is added
		{rotatedKey, "{env.E2E_MDX_KEY}"},
		{"{env.E2E_MDX_KEY}", rotatedKey},
	} {
		l.flowed(t, 50, done) // traffic flows between reloads
		g.reload(t, replayCaddyfile(port, up, keys, "max_body 8KiB"))
	}
	l.flowed(t, 50, done)
	close(stop)
	<-done
	l.check(t)
	req, _ := http.NewRequest("GET", base+first.URL.Path, nil)
	req.Header = first.Header.Clone()
	if status, _, _ := do(t, req); status != 412 {
		t.Fatalf("a replay from before the reloads: %d", status)
	}
	seen := map[string]int{}
	for _, r := range up.Requests() {
		seen[r.Header.Get("Mdx-Hmac")]++
	}
	for _, n := range seen {
		if n != 1 {
			t.Fatal("the upstream received one signature twice")
		}
	}
	t.Logf("%d valid requests and %d replays through 3 reloads", l.n.Load(), l.replays.Load())
}

// TestReloadDoesNotRefillBudget: a spent budget stays spent through a
// reload, also one that changes the limits.
func TestReloadDoesNotRefillBudget(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, nil)
	base, g := rateGateway(t, up, "get 5/h burst 5\n\t\terror_format text")
	for i := range 5 {
		if status, _, _ := do(t, mustRequest(t, "GET", base+"/a")); status != 200 {
			t.Fatalf("request %d within the budget: %d", i, status)
		}
	}
	if status, _, _ := do(t, mustRequest(t, "GET", base+"/a")); status != 429 {
		t.Fatalf("over the budget: %d", status)
	}
	port := strings.TrimPrefix(base, "http://127.0.0.1:")
	mport := strings.TrimSuffix(strings.TrimPrefix(g.metrics, "http://127.0.0.1:"), "/metrics")
	g.reload(t, fmt.Sprintf(`{
	admin {ADMIN}
}
http://127.0.0.1:%s {
	mx_rate_limit {
		get 10/h burst 6
		error_format text
	}
	reverse_proxy %s
}
http://127.0.0.1:%s {
	metrics
}
`, port, up.hostPort(), mport))
	status, _, _ := do(t, mustRequest(t, "GET", base+"/a"))
	if status != 429 {
		t.Fatalf("the reload refilled the budget: %d", status)
	}
}

// TestReplayAcrossRedisOutage: two replicas share a Redis replay store
// (on_store_error local) under signed load with replays interleaved. Redis
// is killed and restarted empty. No valid request fails; replays sent to
// the replica that saw the original are refused throughout; after the
// outage, what a replica admitted alone is written back, so the other
// replica refuses it too.
func TestReplayAcrossRedisOutage(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	up := newUpstream(t, nil)
	// The outage is Redis killed and restarted (refused at once); a
	// generous timeout keeps a busy machine's slow answer from being
	// taken for one, which with on_store_error local lets a replica decide
	// alone, as documented.
	extra := "store redis " + srv.URL() + "\n\t\tnamespace outage\n\t\tredis_timeout 1s"
	pa, pb := freePort(t), freePort(t)
	ga := startGateway(t, replayCaddyfile(pa, up, []string{demoKey}, extra))
	startGateway(t, replayCaddyfile(pb, up, []string{demoKey}, extra))
	a, b := fmt.Sprintf("http://127.0.0.1:%d", pa), fmt.Sprintf("http://127.0.0.1:%d", pb)

	// Redis up: used on A, then replayed to A and to B
	up1 := &signedLoad{t: t, base: func() string { return a }}
	up1.run(t, 2, 40, nil)
	toB := &signedLoad{t: t, base: func() string { return b }, accepted: up1.accepted}
	for i := range 40 {
		toB.replay(t, i)
	}

	// Redis down: replays of what A saw before are refused by A; fresh
	// requests pass on A's own cache, and their replays are refused
	srv.Stop()
	down := &signedLoad{t: t, base: func() string { return a }, accepted: append([]*http.Request(nil), up1.accepted...)}
	down.run(t, 2, 60, nil)
	waitForLog(t, ga, "shared store unreachable")

	// Redis back, empty: A writes back what it holds; B refuses all of it
	srv.Restart()
	waitForLog(t, ga, "wrote back to the shared store")
	after := &signedLoad{t: t, base: func() string { return b }, accepted: down.accepted}
	for i := range len(down.accepted) {
		after.replay(t, i)
	}
	after.fresh(t)
	for _, l := range []*signedLoad{up1, toB, down, after} {
		if l.validFailed.Load() != 0 || l.replayAdmitted.Load() != 0 {
			t.Fatalf("%d valid requests failed, %d replays admitted: %v", l.validFailed.Load(), l.replayAdmitted.Load(), l.failures)
		}
	}
	seen := map[string]int{}
	for _, r := range up.Requests() {
		if seen[r.Header.Get("Mdx-Hmac")]++; seen[r.Header.Get("Mdx-Hmac")] > 1 {
			t.Fatal("the upstream received one signature twice")
		}
	}
}

// TestReplayDenyDuringOutage: with on_store_error deny nothing is admitted
// while Redis is down (503), and service resumes when it is back.
func TestReplayDenyDuringOutage(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	up := newUpstream(t, nil)
	port := freePort(t)
	startGateway(t, replayCaddyfile(port, up, []string{demoKey}, "store redis "+srv.URL()+"\n\t\ton_store_error deny\n\t\tredis_timeout 100ms"))
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	srv.Stop()
	for i := range 20 {
		req := mdxReq{method: "GET", path: "/inst1/accounts", session: fmt.Sprintf("deny-%d", i)}.build(t, base)
		if status, _, body := do(t, req); status != 503 || !strings.Contains(body, "replay store unreachable") {
			t.Fatalf("during the outage: %d %s", status, body)
		}
	}
	if n := len(up.Requests()); n != 0 {
		t.Fatalf("%d requests reached the upstream during the outage", n)
	}
	srv.Restart()
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		req := mdxReq{method: "GET", path: "/inst1/accounts", session: fmt.Sprintf("back-%d", i)}.build(t, base)
		if status, _, _ := do(t, req); status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("never recovered after the outage")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
