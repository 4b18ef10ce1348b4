package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/mxgate/mxgate/internal/testkit/redistest"
)

// chainReplica starts an FI's MDX ingress with mdx_hmac verify (replay
// window) and mx_rate_limit right after it, both in srv under namespaces
// of their own (so that replicas on other ports share them), each with
// its on_store_error, and returns its base URL.
func chainReplica(t *testing.T, up *upstream, srv *redistest.Server, replayOnError, get, budgetOnError string) (string, *gateway) {
	t.Helper()
	return storeChain{replayOnError: replayOnError, budgetOnError: budgetOnError, get: get,
		replayNS: "e2e-chain-replay", budgetNS: "e2e-chain-budget"}.start(t, up, srv.URL())
}

// redisReads returns how many socket reads srv has processed (a round
// trip each, or several commands pipelined) and how many scripts it ran.
func redisReads(t *testing.T, c *redis.Client) (reads, scripts int64) {
	t.Helper()
	info, err := c.Info(context.Background(), "stats", "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		k, v, _ := strings.Cut(line, ":")
		switch k {
		case "total_reads_processed":
			reads, _ = strconv.ParseInt(v, 10, 64)
		case "cmdstat_evalsha", "cmdstat_eval":
			calls, _, _ := strings.Cut(strings.TrimPrefix(v, "calls="), ",")
			n, _ := strconv.ParseInt(calls, 10, 64)
			scripts += n
		}
	}
	return reads, scripts
}

// loggedCalls returns the commands srv ran since the slow log was reset
// (every command is logged), each as its arguments: the script calls, and
// how many others there were, the test's own INFO left out.
func loggedCalls(t *testing.T, c *redis.Client) (scripts [][]string, others int) {
	t.Helper()
	logs, err := c.SlowLogGet(context.Background(), -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range logs {
		switch {
		case len(l.Args) == 0 || strings.EqualFold(l.Args[0], "info") || strings.EqualFold(l.Args[0], "slowlog"):
		case strings.EqualFold(l.Args[0], "evalsha") || strings.EqualFold(l.Args[0], "eval"):
			scripts = append(scripts, l.Args)
		default:
			others++
		}
	}
	return scripts, others
}

// TestSharedStoreOneRoundTrip: a signed request that passes mdx_hmac
// verify and the mx_rate_limit right after it, both on one Redis, costs
// Redis one round trip and one script: the replay record and the token
// decided together. A replay is refused, as before.
func TestSharedStoreOneRoundTrip(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	up := newUpstream(t, nil)
	base, _ := chainReplica(t, up, srv, "local", "1000/s", "local")
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer c.Close()
	send := func(i int) *http.Request {
		req := mdxReq{method: "GET", path: "/inst1/accounts", session: fmt.Sprint("one-", i)}.build(t, base)
		keep := req.Clone(req.Context())
		if status, _, body := do(t, req); status != 200 {
			t.Fatalf("request %d: %d %s", i, status, body)
		}
		return keep
	}
	first := send(0) // opens the connection, loads the script
	const n = 20
	// Every command is logged, with its keys: the replay cache's periodic
	// read of the store's epoch is told apart from a request's calls.
	for _, cmd := range [][]any{{"config", "set", "slowlog-log-slower-than", "0"}, {"config", "set", "slowlog-max-len", "10000"}, {"slowlog", "reset"}} {
		if err := c.Do(context.Background(), cmd...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	reads0, _ := redisReads(t, c)
	for i := 1; i <= n; i++ {
		send(i)
	}
	reads1, _ := redisReads(t, c)
	calls, others := loggedCalls(t, c)
	var both, replayOnly, budgetOnly, other int
	for _, args := range calls {
		all := strings.Join(args, " ")
		r, b := strings.Contains(all, "e2e-chain-replay"), strings.Contains(all, "e2e-chain-budget")
		switch {
		case r && b:
			both++
		case r && strings.Contains(all, "epoch"):
			other++ // the epoch, read by the probe
		case r:
			replayOnly++
		case b:
			budgetOnly++
		default:
			other++
		}
	}
	if both != n || replayOnly != 0 || budgetOnly != 0 {
		t.Errorf("%d signed requests: %d scripts deciding the replay record and the token together, %d the record alone, %d the token alone; want %d, 0, 0 (all: %q)",
			n, both, replayOnly, budgetOnly, n, calls)
	}
	// One read more: the second INFO's own; at most one for each other
	// call (the probe's, the watch's).
	if reads := reads1 - reads0 - 1; reads < n || reads > n+int64(other+others) {
		t.Errorf("%d signed requests cost Redis %d reads (%d other calls); want %d", n, reads, other+others, n)
	}
	if status, _, body := do(t, first); status != 412 || body != mdxError("MDX-HMAC already used") {
		t.Fatalf("a replay: %d %s", status, body)
	}
	if got := len(up.Requests()); got != n+1 {
		t.Errorf("the upstream saw %d requests, want %d", got, n+1)
	}
}

// TestSharedStoreExactAcrossReplicas: three replicas share a replay cache
// and a budget on one Redis; every signed request is sent to all three at
// once. Each signature passes the replay cache exactly once; the budget
// admits exactly its burst, however many replays and refusals there were
// (neither takes a token); a signature the budget refused stays used.
func TestSharedStoreExactAcrossReplicas(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	up := newUpstream(t, nil)
	const burst, sigs = 30, 60
	var bases []string
	for range 3 {
		b, _ := chainReplica(t, up, srv, "deny", fmt.Sprint("1/h burst ", burst), "deny")
		bases = append(bases, b)
	}
	type answer struct{ ok, limited, replayed, other int }
	per := make([]answer, sigs)
	var mu sync.Mutex
	var wg sync.WaitGroup
	var originals []*http.Request
	for i := range sigs {
		req := mdxReq{method: "GET", path: "/inst1/accounts", session: fmt.Sprint("exact-", i)}.build(t, bases[0])
		originals = append(originals, req.Clone(req.Context()))
		for _, base := range bases {
			r, _ := http.NewRequest("GET", base+"/inst1/accounts", nil)
			r.Header = req.Header.Clone()
			wg.Add(1)
			go func() {
				defer wg.Done()
				status, _, body := do(t, r)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case status == 200:
					per[i].ok++
				case status == 429:
					per[i].limited++
				case status == 412 && body == mdxError("MDX-HMAC already used"):
					per[i].replayed++
				default:
					per[i].other++
					t.Errorf("signature %d: %d %s", i, status, body)
				}
			}()
		}
	}
	wg.Wait()
	admitted := 0
	for i, a := range per {
		if a.ok+a.limited != 1 || a.replayed != 2 {
			t.Errorf("signature %d: %+v; want it past the replay cache once, and its two copies refused", i, a)
		}
		admitted += a.ok
	}
	if admitted != burst {
		t.Errorf("%d admitted, want exactly the burst, %d", admitted, burst)
	}
	seen := map[string]int{}
	for _, r := range up.Requests() {
		seen[r.Header.Get("Mdx-Hmac")]++
	}
	if len(seen) != admitted || len(up.Requests()) != admitted {
		t.Errorf("the upstream saw %d requests with %d signatures; %d were admitted", len(up.Requests()), len(seen), admitted)
	}
	for i, req := range originals {
		if status, _, _ := do(t, req); status != 412 {
			t.Errorf("signature %d sent again: %d, want 412 (used, whether admitted or refused by the budget)", i, status)
		}
	}
	fresh := mdxReq{method: "GET", path: "/inst1/accounts", session: "exact-last"}.build(t, bases[1])
	if status, _, _ := do(t, fresh); status != 429 {
		t.Errorf("a new request after the burst: %d, want 429", status)
	}
}

// TestSharedStoreRedisOutage: two replicas, the replay cache and the
// budget both on_store_error local, under signed load with replays
// interleaved; Redis is killed and restarted empty. No valid request
// fails, no replay is admitted, and what a replica admitted alone is
// written back, so the other refuses it. With on_store_error deny, the
// replay cache refuses first (no token), the budget after it.
func TestSharedStoreRedisOutage(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	up := newUpstream(t, nil)
	a, ga := chainReplica(t, up, srv, "local", "1000/s", "local")
	b, _ := chainReplica(t, up, srv, "local", "1000/s", "local")
	denyReplay, _ := chainReplica(t, up, srv, "deny", "1000/s", "local")
	denyBudget, _ := chainReplica(t, up, srv, "local", "1000/s", "deny")

	before := &signedLoad{t: t, base: func() string { return a }}
	before.run(t, 2, 40, nil)
	srv.Stop()
	down := &signedLoad{t: t, base: func() string { return a }, accepted: append([]*http.Request(nil), before.accepted...)}
	down.run(t, 2, 60, nil)
	waitForLog(t, ga, "shared store unreachable")
	for i, c := range []struct{ base, body string }{
		{denyReplay, "Service unavailable: replay store unreachable"},
		{denyBudget, "Service unavailable: rate limit store unreachable"},
	} {
		req := mdxReq{method: "GET", path: "/inst1/accounts", session: fmt.Sprint("deny-", i)}.build(t, c.base)
		if status, hdr, body := do(t, req); status != 503 || body != mdxError(c.body) || hdr.Get("Retry-After") != "1" {
			t.Errorf("%s during the outage: %d %s", c.base, status, body)
		}
	}

	srv.Restart()
	waitForLog(t, ga, "wrote back to the shared store")
	after := &signedLoad{t: t, base: func() string { return b }, accepted: down.accepted}
	for i := range len(down.accepted) {
		after.replay(t, i)
	}
	after.fresh(t)
	for _, l := range []*signedLoad{before, down, after} {
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
