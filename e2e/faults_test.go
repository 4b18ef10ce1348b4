package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/testkit/attack"
)

// Faults under load for the MDX ingress and FDX: an upstream killed and
// restarted, an authorization server down, while signed traffic flows.
// (Reloads and Redis outages are in state_test.go.)

// restartable is an upstream that can be killed (its listener and every
// connection closed at once) and started again on the same address, and
// that records the MDX-HMAC of every request it receives.
type restartable struct {
	addr string
	mu   sync.Mutex
	srv  *http.Server
	seen map[string]int // MDX-HMAC -> requests received with it
	n    int
}

func newRestartable(t *testing.T) *restartable {
	u := &restartable{addr: fmt.Sprintf("127.0.0.1:%d", freePort(t)), seen: map[string]int{}}
	u.start(t)
	t.Cleanup(u.kill)
	return u
}

func (u *restartable) start(t *testing.T) {
	t.Helper()
	l, err := net.Listen("tcp", u.addr)
	if err != nil {
		t.Fatalf("restarting the upstream: %v", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		u.mu.Lock()
		u.seen[r.Header.Get("Mdx-Hmac")]++
		u.n++
		u.mu.Unlock()
		w.Header().Set("Content-Type", mdxType)
		_, _ = io.WriteString(w, `<mdx version="5.0"><ok/></mdx>`)
	})}
	u.mu.Lock()
	u.srv = srv
	u.mu.Unlock()
	go srv.Serve(l)
}

func (u *restartable) kill() {
	u.mu.Lock()
	srv := u.srv
	u.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

func (u *restartable) received() (n int, seen map[string]int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	cp := make(map[string]int, len(u.seen))
	for k, v := range u.seen {
		cp[k] = v
	}
	return u.n, cp
}

// goroutines returns the gateway's goroutine count, from its admin
// endpoint's profile.
func goroutines(t *testing.T, g *gateway) int {
	t.Helper()
	resp, err := http.Get("http://" + g.admin + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, _ := bufio.NewReader(resp.Body).ReadString('\n')
	n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "goroutine profile: total ")))
	if err != nil {
		t.Fatalf("goroutine profile: %q", line)
	}
	return n
}

// settles waits until the gateway's goroutines are at most max, and fails
// if they never are: what the load left behind must go away.
func settles(t *testing.T, g *gateway, max int) int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		n := goroutines(t, g)
		if n <= max {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway still has %d goroutines, bound %d", n, max)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tally counts answers by status, safe for concurrent use.
type tally struct {
	mu sync.Mutex
	m  map[int]int
}

func (c *tally) add(status int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[int]int{}
	}
	c.m[status]++
}

func (c *tally) get() map[int]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	cp := map[int]int{}
	for k, v := range c.m {
		cp[k] = v
	}
	return cp
}

func total(m map[int]int) (n int) {
	for _, v := range m {
		n += v
	}
	return n
}

// TestFaultMDXUpstreamKilled: while four clients send signed requests
// (each unique), forgeries and replays, the upstream is killed and later
// restarted. Signed requests get 200 or, while it is down, 502; forgeries
// and replays are refused throughout and never reach it; the gateway
// recovers, and its goroutines and memory come back down.
func TestFaultMDXUpstreamKilled(t *testing.T) {
	t.Parallel()
	up := newRestartable(t)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	g := startGateway(t, mdxChain(addr, up.addr, "", "30s"), "E2E_MDX_KEY="+demoKey)
	base := "http://" + addr
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	defer client.CloseIdleConnections()
	send := func(req *http.Request) int {
		resp, err := client.Do(req)
		if err != nil {
			t.Errorf("%s: %v", req.URL.Path, err)
			return 0
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}

	// warm up, then take the baseline with no client connection open
	for i := range 20 {
		if s := send(mdxReq{method: "GET", path: "/inst1/accounts", session: fmt.Sprintf("warm-%d", i)}.build(t, base)); s != 200 {
			t.Fatalf("warm-up: %d", s)
		}
	}
	client.CloseIdleConnections()
	g0 := settles(t, g, 1<<30)
	rss0, _ := attack.Status(g.cmd.Process.Pid, "VmRSS")

	var (
		phase            atomic.Int32 // 0 up, 1 down, 2 up again
		valid            [3]tally
		straddling       tally // sent in one phase, answered in the next
		forged, replayed tally
		answered         atomic.Int64
		mu               sync.Mutex
		forgedSigs       = map[string]bool{}
		ctx, stop        = context.WithCancel(context.Background())
		wg               sync.WaitGroup
		other            = "QkJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo3ODkwMTI="
		sessionFor       = func(w, i int) string { return fmt.Sprintf("fault-%d-%d-%d", time.Now().UnixNano(), w, i) }
	)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				p := phase.Load()
				m := mdxReq{path: "/inst1/sessions", body: sessionXML, session: sessionFor(w, i)}
				if i%2 == 1 {
					m = mdxReq{method: "GET", path: "/inst1/accounts/a1/transactions?page=" + strconv.Itoa(i), session: sessionFor(w, i)}
				}
				req := m.build(t, base)
				again := req.Clone(context.Background())
				if m.body != "" {
					again.Body = io.NopCloser(strings.NewReader(m.body))
				}
				s := send(req)
				if p == phase.Load() {
					valid[p].add(s)
				} else {
					straddling.add(s)
				}
				// the same request again: verified once, so refused now,
				// whether the upstream answered it (200) or not (502)
				replayed.add(send(again))
				if i%3 == 0 {
					f := m
					f.key = other
					freq := f.build(t, base)
					mu.Lock()
					forgedSigs[freq.Header.Get("MDX-HMAC")] = true
					mu.Unlock()
					forged.add(send(freq))
				}
				answered.Add(1)
			}
		}()
	}
	// wait for progress by count, never by time
	waitFor := func(n int64) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for answered.Load() < n {
			if time.Now().After(deadline) {
				stop()
				t.Fatalf("the load stalled at %d requests", answered.Load())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor(100)
	up.kill()
	phase.Store(1)
	waitFor(answered.Load() + 100)
	up.start(t)
	phase.Store(2)
	waitFor(answered.Load() + 100)
	stop()
	wg.Wait()

	for p, want := range []string{"before the kill", "while the upstream is down", "after the restart"} {
		got := valid[p].get()
		if total(got) != got[200]+got[502] {
			t.Errorf("signed requests %s: %v; want only 200 and 502", want, got)
		}
		if p == 1 && got[502] == 0 {
			t.Errorf("signed requests %s: %v; the upstream's death was never seen", want, got)
		}
		if p == 2 && got[200] == 0 {
			t.Errorf("signed requests %s: %v; the gateway did not recover", want, got)
		}
	}
	if got := straddling.get(); total(got) != got[200]+got[502] {
		t.Errorf("signed requests across a phase change: %v; want only 200 and 502", got)
	}
	if got := forged.get(); total(got) != got[412] || total(got) == 0 {
		t.Errorf("forgeries: %v; want every one 412", got)
	}
	if got := replayed.get(); total(got) != got[412] || total(got) == 0 {
		t.Errorf("replays: %v; want every one 412", got)
	}
	n, seen := up.received()
	admitted := valid[0].get()[200] + valid[1].get()[200] + valid[2].get()[200] + straddling.get()[200]
	if n < admitted {
		t.Errorf("the upstream received %d requests; the gateway answered %d of them 200", n, admitted)
	}
	for sig, count := range seen {
		if forgedSigs[sig] {
			t.Fatal("a forged signature reached the upstream")
		}
		if count > 1 {
			t.Fatalf("a signature reached the upstream %d times", count)
		}
	}
	t.Logf("signed: %v / %v / %v; forged: %v; replayed: %v; upstream received %d",
		valid[0].get(), valid[1].get(), valid[2].get(), forged.get(), replayed.get(), n)

	// nothing the load or the fault started is left running
	client.CloseIdleConnections()
	after := settles(t, g, g0+32)
	rss1, _ := attack.Status(g.cmd.Process.Pid, "VmRSS")
	t.Logf("gateway goroutines %d before, %d after; VmRSS %d MiB before, %d MiB after", g0, after, rss0>>20, rss1>>20)
	if rss1 > rss0+128<<20 {
		t.Errorf("resident memory grew from %d MiB to %d MiB", rss0>>20, rss1>>20)
	}
}

// TestFaultFDXAuthorizationServerDown: FDX traffic flows while the
// authorization server (JWKS and introspection) is down, answering 503 or
// not answering at all. Tokens that cannot be checked are answered 503
// with Retry-After, never admitted and never a 401; tokens whose key or
// introspection answer is cached keep working; the gateway recovers when
// the server comes back, and its goroutines come back down.
func TestFaultFDXAuthorizationServerDown(t *testing.T) {
	t.Parallel()
	e := newFDXEnv(t)
	active := func(tok string) {
		e.as.mu.Lock()
		e.as.active[tok] = map[string]any{"active": true, "scope": allFDX, "client_id": "recipient-7", "sub": "user-42",
			"iss": "https://as.test", "aud": "https://rs.test", "exp": time.Now().Add(time.Hour).Unix(), "cnf": map[string]string{"x5t#S256": e.thumbA}}
		e.as.mu.Unlock()
	}
	retryAfter := func(t *testing.T, path, tok string) fdxAnswer {
		t.Helper()
		req, _ := http.NewRequest("GET", e.base+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := e.client(&e.clientA).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return fdxAnswer{status: resp.StatusCode, challenge: resp.Header.Get("Retry-After")}
	}

	// down from the start: nothing cached, so nothing can be checked
	e.as.down.Store(true)
	before := len(e.up.Requests())
	for _, tok := range []string{e.token("es-1", allFDX, nil), "opaque-never-seen"} {
		if a := retryAfter(t, "/fdx/v6/core/accounts", tok); a.status != 503 || a.challenge == "" {
			t.Fatalf("a token while the server was never reached: %d, Retry-After %q", a.status, a.challenge)
		}
	}
	// up: the keys are fetched (a failed fetch is retried after a second)
	e.as.down.Store(false)
	deadline := time.Now().Add(10 * time.Second)
	for e.do(&e.clientA, "GET", "/fdx/v6/core/accounts", e.token("es-1", allFDX, nil)).status != 200 {
		if time.Now().After(deadline) {
			t.Fatal("the gateway never recovered the key set")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// introspection has a backoff of its own, from the failed call for
	// "opaque-never-seen", which may outlast the key set's
	active("opaque-cached")
	deadline = time.Now().Add(10 * time.Second)
	for a := e.do(&e.clientA, "GET", "/fdx/v6/core/accounts", "opaque-cached"); a.status != 200; a = e.do(&e.clientA, "GET", "/fdx/v6/core/accounts", "opaque-cached") {
		if a.status != 503 || time.Now().After(deadline) {
			t.Fatalf("introspected token: %+v", a)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, c := range e.clients.Range {
		c.(*http.Client).CloseIdleConnections()
	}
	g0 := settles(t, e.g, 1<<30)

	// a key the server signs with but never publishes
	e.as.addKey("es-unpublished", "ES256")
	var unpublished []string
	for range 8 {
		unpublished = append(unpublished, e.token("es-unpublished", allFDX, nil))
	}
	e.as.mu.Lock()
	e.as.keys = e.as.keys[:len(e.as.keys)-1]
	e.as.mu.Unlock()

	// down under load, first answering 503, then not at all (all within
	// the introspection cache's 30s)
	for round, how := range []string{"answering 503", "unreachable"} {
		if how == "answering 503" {
			e.as.down.Store(true)
		} else {
			e.as.Close()
		}
		var cached, fresh, unknownKid tally
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 10 {
					cached.add(e.do(&e.clientA, "GET", "/fdx/v6/core/accounts", e.token("es-1", allFDX, nil)).status)
					cached.add(e.do(&e.clientA, "GET", "/fdx/v6/core/accounts/a1/transactions", "opaque-cached").status)
					a := e.do(&e.clientA, "GET", "/fdx/v6/core/accounts", fmt.Sprintf("opaque-%d-%d-%d", round, w, i))
					if a.status == 503 && a.challenge != "" {
						a.status = -503 // a 503 must not carry a challenge
					}
					fresh.add(a.status)
				}
				unknownKid.add(e.do(&e.clientA, "GET", "/fdx/v6/core/accounts", unpublished[4*round+w]).status)
			}()
		}
		wg.Wait()
		if got := cached.get(); got[200] != 80 {
			t.Errorf("%s: cached key and cached introspection: %v; want 200 throughout", how, got)
		}
		if got := fresh.get(); got[503] != 40 {
			t.Errorf("%s: tokens that cannot be checked: %v; want 503 (with Retry-After, no challenge) throughout", how, got)
		}
		if got := unknownKid.get(); got[401] != 4 {
			t.Errorf("%s: a key id the cached set does not hold: %v; want 401", how, got)
		}
	}
	// every admitted request is one of the cached tokens'; nothing else got through
	if n := len(e.up.Requests()) - before; n != 2+2*80 {
		t.Errorf("the upstream received %d requests; want %d", n, 2+2*80)
	}
	for _, c := range e.clients.Range {
		c.(*http.Client).CloseIdleConnections()
	}
	after := settles(t, e.g, g0+32)
	t.Logf("gateway goroutines %d before the outage, %d after", g0, after)
}
