package e2e

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mxgate/mxgate/internal/testkit/redistest"
	"github.com/mxgate/mxgate/replay"
)

// A hostile shared store: mdx_hmac verify (replay cache) and mx_rate_limit
// right after it on one Redis, where the replay record and the budget's
// token are decided in one script and the concurrent requests of one
// gateway share round trips (one batch in flight). The attacks race
// replays inside one batch and across replicas, plant keys of the wrong
// type, slow Redis down, freeze and kill it mid-batch, flush its data and
// its script cache, and name another gateway's state; each asserts what
// was answered, what reached the upstream, and the tokens left.

// storeChain is one replica's configuration.
type storeChain struct {
	replayOnError, budgetOnError string // local or deny
	get                          string // the get budget
	key                          string // mx_rate_limit's key, if any
	timeout                      string // redis_timeout; default 1s
	replayNS, budgetNS           string // namespaces; defaults below
}

func (c storeChain) caddyfile(port int, up *upstream, url string) string {
	def := func(v, d string) string {
		if v == "" {
			return d
		}
		return v
	}
	key := ""
	if c.key != "" {
		key = "\t\tkey " + c.key + "\n"
	}
	timeout := def(c.timeout, "1s")
	return fmt.Sprintf(`{
	admin {ADMIN}
	servers {
		trusted_proxies static 127.0.0.1/32 ::1/128
		trusted_proxies_strict
		client_ip_headers X-Forwarded-For
	}
}
http://127.0.0.1:%d {
	mx_ip_allow mdx {
		trusted_proxies 127.0.0.1/32 ::1/128
	}
	mdx_hmac verify {
		key %s
		replay_window 10m
		replay_loss_grace 2s
		store redis %s
		redis_timeout %s
		on_store_error %s
		namespace %s
	}
	mx_rate_limit {
		get %s
%s		store redis %s
		redis_timeout %s
		on_store_error %s
		namespace %s
	}
	reverse_proxy %s
}
`, port, demoKey, url, timeout, def(c.replayOnError, "deny"), def(c.replayNS, "hostile-store-replay"),
		def(c.get, "1/h burst 20"), key, url, timeout, def(c.budgetOnError, "deny"), def(c.budgetNS, "hostile-store-budget"),
		up.hostPort())
}

// start runs a replica of c on url and returns its base URL.
func (c storeChain) start(t *testing.T, up *upstream, url string) (string, *gateway) {
	t.Helper()
	port := freePort(t)
	g := startGateway(t, c.caddyfile(port, up, url))
	return fmt.Sprintf("http://127.0.0.1:%d", port), g
}

// ssAnswer is what a request got.
type ssAnswer struct {
	status int
	body   string
	err    error
}

var storeClient = &http.Client{Timeout: 30 * time.Second}

// send sends req (safe from any goroutine: it never fails the test).
func ssSend(req *http.Request) ssAnswer {
	resp, err := storeClient.Do(req)
	if err != nil {
		return ssAnswer{err: err}
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, rerr := resp.Body.Read(buf)
		b.Write(buf[:n])
		if rerr != nil {
			break
		}
	}
	return ssAnswer{status: resp.StatusCode, body: b.String()}
}

// copyTo is req's signed headers on a request to base.
func ssCopy(req *http.Request, base string) *http.Request {
	r, _ := http.NewRequest(req.Method, base+req.URL.Path, nil)
	r.Header = req.Header.Clone()
	return r
}

// signed returns a fresh signed GET to base, with X-Client client if
// given.
func ssSigned(t *testing.T, base, session, client string) *http.Request {
	t.Helper()
	req := mdxReq{method: "GET", path: "/inst1/accounts", session: session}.build(t, base)
	if client != "" {
		req.Header.Set("X-Client", client)
	}
	return req
}

// sendAll sends every request at once and returns the answers, in order.
func ssSendAll(reqs []*http.Request) []ssAnswer {
	out := make([]ssAnswer, len(reqs))
	var wg sync.WaitGroup
	for i, r := range reqs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = ssSend(r)
		}()
	}
	wg.Wait()
	return out
}

// upstreamBySig counts what reached the upstream, by signature.
func ssUpstreamBySig(up *upstream) map[string]int {
	seen := map[string]int{}
	for _, r := range up.Requests() {
		seen[r.Header.Get("Mdx-Hmac")]++
	}
	return seen
}

// tokensLeft spends the budget of client at base with fresh signatures
// (a budget that does not refill within the test) and returns how many
// were admitted before the first 429; at most limit are sent.
func ssTokensLeft(t *testing.T, base, client, tag string, limit int) int {
	t.Helper()
	for i := range limit + 1 {
		a := ssSend(ssSigned(t, base, fmt.Sprintf("%s-spend-%d", tag, i), client))
		switch {
		case a.err != nil:
			t.Fatalf("spending the budget: %v", a.err)
		case a.status == 429:
			return i
		case a.status != 200:
			t.Fatalf("spending the budget: %d %s", a.status, a.body)
		}
	}
	t.Fatalf("more than %d tokens left", limit)
	return 0
}

// waitReady sends fresh signed requests to base until one is admitted:
// the wait for a replica to use its store again (not an assertion).
func ssWaitReady(t *testing.T, base, client, tag string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; ; i++ {
		a := ssSend(ssSigned(t, base, fmt.Sprintf("%s-ready-%d", tag, i), client))
		if a.err == nil && a.status == 200 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never admitted a request again: %d %s %v", base, a.status, a.body, a.err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// replayName is the Redis key of req's signature in the replay cache
// named ns.
func ssReplayName(t *testing.T, req *http.Request, ns string) string {
	t.Helper()
	var k replay.Key
	sig := req.Header.Get("MDX-HMAC")
	if _, err := hex.Decode(k[:], []byte(sig[:2*len(k)])); err != nil {
		t.Fatal(err)
	}
	return "mxgate:replay:" + ns + ":" + hex.EncodeToString(k[:])
}

func TestHostileSharedStore(t *testing.T) {
	t.Parallel()
	redistest.Require(t, "redis-server")
	used := mdxError("MDX-HMAC already used")

	// A signature sent many times at once to one replica, while Redis is
	// paused, so that its copies wait together and go in one batch (one
	// pipeline): exactly one copy passes the replay cache, the others
	// are 412 and take no token.
	t.Run("replay raced with its original inside one batch", func(t *testing.T) {
		t.Parallel()
		srv := redistest.Start(t)
		up := newUpstream(t, nil)
		const burst, sigs, copies = 12, 8, 10
		base, _ := storeChain{get: fmt.Sprint("1/h burst ", burst)}.start(t, up, srv.URL())
		ssWaitReady(t, base, "", "warm")
		rc := redis.NewClient(&redis.Options{Addr: srv.Addr()})
		defer rc.Close()
		reads0, scripts0 := redisReads(t, rc)
		for i := range sigs {
			orig := ssSigned(t, base, fmt.Sprint("batch-", i), "")
			reqs := make([]*http.Request, copies)
			for j := range reqs {
				reqs[j] = ssCopy(orig, base)
			}
			if err := rc.Do(context.Background(), "CLIENT", "PAUSE", 200, "WRITE").Err(); err != nil {
				t.Fatal(err)
			}
			ok, refused := 0, 0
			for _, a := range ssSendAll(reqs) {
				switch {
				case a.err == nil && a.status == 200:
					ok++
				case a.err == nil && a.status == 412 && a.body == used:
					refused++
				default:
					t.Errorf("signature %d: %d %s %v", i, a.status, a.body, a.err)
				}
			}
			if ok != 1 || refused != copies-1 {
				t.Errorf("signature %d sent %d times at once: %d admitted, %d refused as used; want 1 and %d", i, copies, ok, refused, copies-1)
			}
		}
		// The copies that waited for Redis went together, in script calls
		// shared by several copies each (one call each would be at least
		// one a copy).
		reads1, scripts1 := redisReads(t, rc)
		t.Logf("%d script calls in %d reads for %d copies", scripts1-scripts0, reads1-reads0, sigs*copies)
		if scripts1-scripts0 < sigs || scripts1-scripts0 > sigs*copies/2 || reads1-reads0 > sigs*copies/2 {
			t.Errorf("%d script calls in %d reads for %d copies: the copies were not batched", scripts1-scripts0, reads1-reads0, sigs*copies)
		}
		for sig, n := range ssUpstreamBySig(up) {
			if n != 1 {
				t.Errorf("the upstream saw a signature %d times (%.8s…)", n, sig)
			}
		}
		if n := len(up.Requests()); n != sigs+1 {
			t.Errorf("the upstream saw %d requests, want %d", n, sigs+1)
		}
		// warm-up and sigs admitted: the copies refused took nothing.
		if left := ssTokensLeft(t, base, "", "batch", burst); left != burst-sigs-1 {
			t.Errorf("%d tokens left, want %d: a replay refused in a batch took a token", left, burst-sigs-1)
		}
	})

	// Each signature sent at once to three replicas several times over,
	// while Redis is paused, so that every replica batches its copies:
	// one copy passes in the whole fleet.
	t.Run("replays raced across three replicas in one batch each", func(t *testing.T) {
		t.Parallel()
		srv := redistest.Start(t)
		up := newUpstream(t, nil)
		const burst, sigs, copies = 40, 8, 4
		c := storeChain{get: fmt.Sprint("1/h burst ", burst), replayOnError: "local", budgetOnError: "local"}
		var bases []string
		for range 3 {
			b, _ := c.start(t, up, srv.URL())
			ssWaitReady(t, b, "", "warm-"+b)
			bases = append(bases, b)
		}
		rc := redis.NewClient(&redis.Options{Addr: srv.Addr()})
		defer rc.Close()
		for i := range sigs {
			orig := ssSigned(t, bases[0], fmt.Sprint("fleet-", i), "")
			var reqs []*http.Request
			for _, b := range bases {
				for range copies {
					reqs = append(reqs, ssCopy(orig, b))
				}
			}
			if err := rc.Do(context.Background(), "CLIENT", "PAUSE", 200, "WRITE").Err(); err != nil {
				t.Fatal(err)
			}
			ok, refused := 0, 0
			for _, a := range ssSendAll(reqs) {
				switch {
				case a.err == nil && a.status == 200:
					ok++
				case a.err == nil && a.status == 412 && a.body == used:
					refused++
				default:
					t.Errorf("signature %d: %d %s %v", i, a.status, a.body, a.err)
				}
			}
			if ok != 1 || refused != len(reqs)-1 {
				t.Errorf("signature %d sent %d times to three replicas: %d admitted, %d refused; want 1 and %d", i, len(reqs), ok, refused, len(reqs)-1)
			}
		}
		for sig, n := range ssUpstreamBySig(up) {
			if n != 1 {
				t.Errorf("the upstream saw a signature %d times (%.8s…)", n, sig)
			}
		}
		if left := ssTokensLeft(t, bases[2], "", "fleet", burst); left != burst-sigs-3 {
			t.Errorf("%d tokens left, want %d", left, burst-sigs-3)
		}
	})

	// Requests that are refused before the budget decides (a bad
	// signature, a replay) take no token; a request the budget refused
	// keeps its signature recorded, so that sent again it is a replay
	// (412), and still takes no token.
	t.Run("refused requests take no token", func(t *testing.T) {
		t.Parallel()
		srv := redistest.Start(t)
		up := newUpstream(t, nil)
		const burst = 6
		bases := []string{}
		for range 2 {
			b, _ := storeChain{get: fmt.Sprint("1/h burst ", burst)}.start(t, up, srv.URL())
			bases = append(bases, b)
		}
		ssWaitReady(t, bases[0], "", "warm0")
		ssWaitReady(t, bases[1], "", "warm1")
		var admitted []*http.Request
		for i := range burst - 2 {
			r := ssSigned(t, bases[0], fmt.Sprint("tok-", i), "")
			keep := ssCopy(r, bases[1])
			if a := ssSend(r); a.status != 200 {
				t.Fatalf("request %d: %d %s %v", i, a.status, a.body, a.err)
			}
			admitted = append(admitted, keep)
		}
		var hostile []*http.Request
		for i := range 30 {
			bad := mdxReq{method: "GET", path: "/inst1/accounts", session: fmt.Sprint("bad-", i),
				key: "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"}.build(t, bases[i%2])
			hostile = append(hostile, bad, ssCopy(admitted[i%len(admitted)], bases[i%2]))
		}
		for _, a := range ssSendAll(hostile) {
			if a.err != nil || (a.status != 401 && a.status != 412) {
				t.Errorf("a forged or replayed request: %d %s %v", a.status, a.body, a.err)
			}
		}
		if n := len(up.Requests()); n != burst-2+2 {
			t.Errorf("the upstream saw %d requests, want %d", n, burst)
		}
		// two tokens left: the forged and replayed requests took none.
		if left := ssTokensLeft(t, bases[1], "", "tok", burst); left != 0 {
			t.Errorf("%d tokens left after spending the rest, want 0", left)
		}
		limited := ssSigned(t, bases[0], "tok-limited", "")
		again := ssCopy(limited, bases[1])
		if a := ssSend(limited); a.status != 429 {
			t.Fatalf("past the budget: %d %s", a.status, a.body)
		}
		if a := ssSend(again); a.status != 412 || a.body != used {
			t.Errorf("a request the budget refused, sent again to another replica: %d %s; want 412 (its signature stays used)", a.status, a.body)
		}
	})

	// Another tenant of the Redis plants a list at a client's budget key
	// (WRONGTYPE for the script). That client's requests fail closed and
	// record nothing; requests of other clients, batched with them, are
	// decided as usual: not poisoned, no replay admitted, no token lost.
	t.Run("a key of the wrong type planted at a budget", func(t *testing.T) {
		t.Parallel()
		srv := redistest.Start(t)
		up := newUpstream(t, nil)
		const burst = 5
		c := storeChain{get: fmt.Sprint("1/h burst ", burst), key: "{http.request.header.X-Client}"}
		base, g := c.start(t, up, srv.URL())
		ssWaitReady(t, base, "warm", "warm")
		rc := redis.NewClient(&redis.Options{Addr: srv.Addr()})
		defer rc.Close()
		// A signature of the poisoned client, used before the key is
		// planted, stays a replay after.
		used0 := ssSigned(t, base, "poison-before", "poison")
		usedAgain := ssCopy(used0, base)
		if a := ssSend(used0); a.status != 200 {
			t.Fatalf("before the key was planted: %d %s", a.status, a.body)
		}
		poisoned := "mxgate:rl:hostile-store-budget:get:poison"
		rc.Del(context.Background(), poisoned) // the token spent is counted below
		if err := rc.RPush(context.Background(), poisoned, "planted").Err(); err != nil {
			t.Fatal(err)
		}
		var reqs []*http.Request
		var poison []*http.Request
		for i := range 8 {
			reqs = append(reqs, ssSigned(t, base, fmt.Sprint("clean-", i), fmt.Sprint("clean-", i)))
			if i%2 == 0 {
				p := ssSigned(t, base, fmt.Sprint("poison-", i), "poison")
				poison = append(poison, ssCopy(p, base))
				reqs = append(reqs, p)
			}
		}
		if err := rc.Do(context.Background(), "CLIENT", "PAUSE", 200, "WRITE").Err(); err != nil {
			t.Fatal(err)
		}
		answers := ssSendAll(reqs)
		for i, a := range answers {
			client := reqs[i].Header.Get("X-Client")
			switch {
			case a.err != nil:
				t.Errorf("%s: %v", client, a.err)
			case client == "poison" && a.status != 503:
				t.Errorf("a request whose budget key is of the wrong type: %d %s; want 503", a.status, a.body)
			case client != "poison" && a.status != 200:
				t.Errorf("%s, batched with a request whose budget key is of the wrong type: %d %s; want 200", client, a.status, a.body)
			}
		}
		for _, r := range up.Requests() {
			if r.Header.Get("X-Client") == "poison" && r.Header.Get("Mdx-Session-Key") != "poison-before" {
				t.Error("a request whose budget could not be read reached the upstream")
			}
		}
		if a := ssSend(usedAgain); a.status != 412 || a.body != used {
			t.Errorf("a used signature of the client whose budget key is of the wrong type: %d %s; want 412", a.status, a.body)
		}
		// One client's key fails that client alone: the next request of
		// another client goes to Redis as usual (no breaker opened).
		for i := range 3 {
			if a := ssSend(ssSigned(t, base, fmt.Sprint("poison-next-", i), "poison")); a.status != 503 {
				t.Errorf("the poisoned client again: %d %s", a.status, a.body)
			}
			if a := ssSend(ssSigned(t, base, fmt.Sprint("clean-next-", i), "clean-next")); a.status != 200 {
				t.Errorf("another client right after a request whose budget key is of the wrong type: %d %s; want 200", a.status, a.body)
			}
		}
		// The failed script recorded nothing: once the key is removed, the
		// same signatures are admitted (a client's retry is not a replay).
		if err := rc.Del(context.Background(), poisoned).Err(); err != nil {
			t.Fatal(err)
		}
		ssWaitReady(t, base, "after", "after")
		for i, p := range poison {
			if a := ssSend(p); a.status != 200 {
				t.Errorf("poisoned request %d retried once the key is gone: %d %s; want 200 (nothing was recorded)", i, a.status, a.body)
			}
		}
		// Every clean client spent one token; the poisoned client its
		// retries (the bucket planted over started afresh).
		for i := range 8 {
			if i%3 != 0 {
				continue
			}
			cl := fmt.Sprint("clean-", i)
			if left := ssTokensLeft(t, base, cl, cl, burst); left != burst-1 {
				t.Errorf("%s: %d tokens left, want %d", cl, left, burst-1)
			}
		}
		if left := ssTokensLeft(t, base, "poison", "poison", burst); left != burst-len(poison) {
			t.Errorf("poison: %d tokens left, want %d", left, burst-len(poison))
		}
		if left := ssTokensLeft(t, base, "clean-next", "clean-next", burst); left != burst-3 {
			t.Errorf("clean-next: %d tokens left, want %d", left, burst-3)
		}
		_ = g
	})

	// A key planted at a signature's replay record (of any type) makes the
	// signature a replay: refused, no token taken, nothing upstream.
	t.Run("a key planted at a replay record", func(t *testing.T) {
		t.Parallel()
		srv := redistest.Start(t)
		up := newUpstream(t, nil)
		const burst = 5
		base, _ := storeChain{get: fmt.Sprint("1/h burst ", burst)}.start(t, up, srv.URL())
		ssWaitReady(t, base, "", "warm")
		rc := redis.NewClient(&redis.Options{Addr: srv.Addr()})
		defer rc.Close()
		str := ssSigned(t, base, "planted-string", "")
		list := ssSigned(t, base, "planted-list", "")
		if err := rc.Set(context.Background(), ssReplayName(t, str, "hostile-store-replay"), "x", time.Hour).Err(); err != nil {
			t.Fatal(err)
		}
		if err := rc.RPush(context.Background(), ssReplayName(t, list, "hostile-store-replay"), "x").Err(); err != nil {
			t.Fatal(err)
		}
		for _, r := range []*http.Request{str, list} {
			if a := ssSend(r); a.status != 412 || a.body != used {
				t.Errorf("a signature whose record was planted: %d %s; want 412", a.status, a.body)
			}
		}
		if n := len(up.Requests()); n != 1 {
			t.Errorf("the upstream saw %d requests, want 1 (the warm-up)", n)
		}
		if left := ssTokensLeft(t, base, "", "planted", burst); left != burst-1 {
			t.Errorf("%d tokens left, want %d", left, burst-1)
		}
	})

	// Redis stops answering (DEBUG SLEEP) while requests arrive: with one
	// batch in flight, the waiting requests must not wait for Redis to
	// wake; each is answered within its timeouts (503 under deny, before
	// Redis wakes), none reaches the upstream, and the breaker opens.
	t.Run("a slow Redis does not hold requests behind the batch in flight", func(t *testing.T) {
		t.Parallel()
		srv := redistest.Start(t, "--enable-debug-command", "yes")
		up := newUpstream(t, nil)
		base, g := storeChain{timeout: "200ms", get: "1/h burst 100"}.start(t, up, srv.URL())
		ssWaitReady(t, base, "", "warm")
		rc := redis.NewClient(&redis.Options{Addr: srv.Addr(), ReadTimeout: -1})
		defer rc.Close()
		woke := make(chan struct{})
		go func() {
			defer close(woke)
			_ = rc.Do(context.Background(), "DEBUG", "SLEEP", 6).Err()
		}()
		// Wait until Redis sleeps: a PING times out.
		probe := redis.NewClient(&redis.Options{Addr: srv.Addr(), ReadTimeout: 50 * time.Millisecond, MaxRetries: -1})
		defer probe.Close()
		for probe.Ping(context.Background()).Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		var reqs []*http.Request
		for i := range 30 {
			reqs = append(reqs, ssSigned(t, base, fmt.Sprint("slow-", i), ""))
		}
		answers := ssSendAll(reqs)
		select {
		case <-woke:
			t.Error("requests were answered only after Redis woke: the redis_timeout was not honoured")
		default:
		}
		for i, a := range answers {
			if a.err != nil || a.status != 503 {
				t.Errorf("request %d while Redis sleeps: %d %s %v; want 503", i, a.status, a.body, a.err)
			}
		}
		<-woke
		if n := len(up.Requests()); n != 1 {
			t.Errorf("the upstream saw %d requests, want 1 (the warm-up)", n)
		}
		waitForLog(t, g, "shared store unreachable")
	})

	// Redis is frozen (SIGSTOP) with batches in flight, then killed and
	// restarted empty. Two replicas, both directives on_store_error local:
	// what a replica admitted alone while Redis did not ssAnswer is written
	// back, so no signature is ever admitted twice across the fleet.
	t.Run("Redis frozen and killed mid-batch", func(t *testing.T) {
		t.Parallel()
		srv := redistest.Start(t)
		up := newUpstream(t, nil)
		c := storeChain{timeout: "300ms", get: "1000/s", replayOnError: "local", budgetOnError: "local"}
		a, ga := c.start(t, up, srv.URL())
		b, gb := c.start(t, up, srv.URL())
		ssWaitReady(t, a, "", "warm-a")
		ssWaitReady(t, b, "", "warm-b")
		var before []*http.Request
		for i := range 20 {
			before = append(before, ssSigned(t, a, fmt.Sprint("freeze-before-", i), ""))
		}
		var keep []*http.Request
		for _, r := range before {
			keep = append(keep, ssCopy(r, b))
		}
		for i, x := range ssSendAll(before) {
			if x.status != 200 {
				t.Fatalf("request %d before the freeze: %d %s %v", i, x.status, x.body, x.err)
			}
		}
		if err := syscall.Kill(srv.Pid(), syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		var during []*http.Request
		for i := range 40 {
			during = append(during, ssSigned(t, a, fmt.Sprint("freeze-during-", i), ""))
		}
		for _, r := range during {
			keep = append(keep, ssCopy(r, b))
		}
		answers := ssSendAll(during)
		_ = syscall.Kill(srv.Pid(), syscall.SIGKILL)
		srv.Stop()
		for i, x := range answers {
			if x.err != nil || x.status != 200 {
				t.Errorf("request %d while Redis was frozen (on_store_error local): %d %s %v", i, x.status, x.body, x.err)
			}
		}
		srv.Restart()
		waitForLog(t, ga, "wrote back to the shared store")
		ssWaitReady(t, b, "", "after-b")
		for i, r := range keep {
			if x := ssSend(r); x.status != 412 || x.body != used {
				t.Errorf("signature %d replayed to the other replica after Redis came back empty: %d %s", i, x.status, x.body)
			}
		}
		for sig, n := range ssUpstreamBySig(up) {
			if n != 1 {
				t.Errorf("the upstream saw a signature %d times (%.8s…)", n, sig)
			}
		}
		_ = gb
	})

	// Redis flushed (FLUSHALL) while requests flow: both replicas notice
	// (the epoch), and a signature admitted before the flush is refused by
	// the other replica afterwards (written back within the grace).
	t.Run("Redis flushed mid-traffic", func(t *testing.T) {
		t.Parallel()
		srv := redistest.Start(t)
		up := newUpstream(t, nil)
		c := storeChain{get: "1000/s"}
		a, ga := c.start(t, up, srv.URL())
		b, gb := c.start(t, up, srv.URL())
		ssWaitReady(t, a, "", "warm-a")
		ssWaitReady(t, b, "", "warm-b")
		rc := redis.NewClient(&redis.Options{Addr: srv.Addr()})
		defer rc.Close()
		var sent, keep []*http.Request
		for i := range 40 {
			r := ssSigned(t, a, fmt.Sprint("flush-", i), "")
			sent = append(sent, r)
			keep = append(keep, ssCopy(r, b))
		}
		flushed := make(chan error, 1)
		go func() {
			flushed <- rc.FlushAll(context.Background()).Err()
		}()
		for i, x := range ssSendAll(sent) {
			if x.err != nil || x.status != 200 {
				t.Errorf("request %d while Redis was flushed: %d %s %v", i, x.status, x.body, x.err)
			}
		}
		if err := <-flushed; err != nil {
			t.Fatal(err)
		}
		waitForLog(t, ga, "lost its data")
		waitForLog(t, gb, "lost its data")
		for i, r := range keep {
			if x := ssSend(r); x.status != 412 || x.body != used {
				t.Errorf("signature %d, admitted around the flush, replayed to the other replica: %d %s", i, x.status, x.body)
			}
		}
		for sig, n := range ssUpstreamBySig(up) {
			if n != 1 {
				t.Errorf("the upstream saw a signature %d times (%.8s…)", n, sig)
			}
		}
	})

	// The script cache is flushed (SCRIPT FLUSH) again and again while
	// requests flow in batches: every command answered NOSCRIPT is loaded
	// again; no request fails, and the budget stays exact.
	t.Run("script cache flushed mid-traffic", func(t *testing.T) {
		t.Parallel()
		srv := redistest.Start(t)
		up := newUpstream(t, nil)
		const burst, n = 60, 40
		bases := []string{}
		for range 2 {
			b, _ := storeChain{get: fmt.Sprint("1/h burst ", burst)}.start(t, up, srv.URL())
			ssWaitReady(t, b, "", "warm-"+b)
			bases = append(bases, b)
		}
		rc := redis.NewClient(&redis.Options{Addr: srv.Addr()})
		defer rc.Close()
		stop := make(chan struct{})
		flushes := make(chan int, 1)
		go func() {
			k := 0
			defer func() { flushes <- k }()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if rc.ScriptFlush(context.Background()).Err() == nil {
					k++
				}
			}
		}()
		var reqs, replays []*http.Request
		for i := range n {
			r := ssSigned(t, bases[i%2], fmt.Sprint("noscript-", i), "")
			reqs = append(reqs, r)
			replays = append(replays, ssCopy(r, bases[(i+1)%2]))
		}
		answers := ssSendAll(reqs)
		close(stop)
		if k := <-flushes; k == 0 {
			t.Fatal("no SCRIPT FLUSH ran")
		}
		for i, x := range answers {
			if x.err != nil || x.status != 200 {
				t.Errorf("request %d while the script cache was flushed: %d %s %v", i, x.status, x.body, x.err)
			}
		}
		for i, x := range ssSendAll(replays) {
			if x.status != 412 || x.body != used {
				t.Errorf("replay %d: %d %s", i, x.status, x.body)
			}
		}
		if left := ssTokensLeft(t, bases[0], "", "noscript", burst); left != burst-n-2 {
			t.Errorf("%d tokens left, want %d", left, burst-n-2)
		}
	})

	// On a Redis Cluster (two round trips: the record and the token lie in
	// different slots), batches span the masters: a signature raced to two
	// replicas passes once, a budget key of the wrong type on one master
	// fails only its request, and the budget stays exact.
	t.Run("Redis Cluster: replays raced, a wrong-type key on one master", func(t *testing.T) {
		t.Parallel()
		cl := redistest.StartCluster(t, 3, nil)
		up := newUpstream(t, nil)
		const burst, sigs = 30, 12
		c := storeChain{get: fmt.Sprint("1/h burst ", burst), key: "{http.request.header.X-Client}"}
		a, _ := c.start(t, up, cl.URL())
		b, _ := c.start(t, up, cl.URL())
		ssWaitReady(t, a, "fleet", "warm-a")
		ssWaitReady(t, b, "fleet", "warm-b")
		rc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs()})
		defer rc.Close()
		if err := rc.RPush(context.Background(), "mxgate:rl:hostile-store-budget:get:poison", "planted").Err(); err != nil {
			t.Fatal(err)
		}
		var reqs []*http.Request
		for i := range sigs {
			client := "fleet"
			if i%4 == 0 {
				client = "poison"
			}
			r := ssSigned(t, a, fmt.Sprint("cluster-", i), client)
			reqs = append(reqs, r, ssCopy(r, a), ssCopy(r, b), ssCopy(r, b))
		}
		answers := ssSendAll(reqs)
		for i := 0; i < len(reqs); i += 4 {
			ok, refused := 0, 0
			poison := reqs[i].Header.Get("X-Client") == "poison"
			for _, x := range answers[i : i+4] {
				switch {
				case x.err == nil && x.status == 200 && !poison:
					ok++
				case x.err == nil && x.status == 412 && x.body == used:
					refused++
				case x.err == nil && x.status == 503 && poison:
				default:
					t.Errorf("signature %d (%s): %d %s %v", i/4, reqs[i].Header.Get("X-Client"), x.status, x.body, x.err)
				}
			}
			if !poison && (ok != 1 || refused != 3) {
				t.Errorf("signature %d raced to two replicas: %d admitted, %d refused; want 1 and 3", i/4, ok, refused)
			}
		}
		for sig, n := range ssUpstreamBySig(up) {
			if n != 1 {
				t.Errorf("the upstream saw a signature %d times (%.8s…)", n, sig)
			}
		}
		for _, r := range up.Requests() {
			if r.Header.Get("X-Client") == "poison" {
				t.Error("a request whose budget could not be read reached the upstream")
			}
		}
		admitted := sigs - (sigs+3)/4
		if left := ssTokensLeft(t, b, "fleet", "cluster", burst); left != burst-admitted-2 {
			t.Errorf("%d tokens left, want %d", left, burst-admitted-2)
		}
	})

	// Another gateway on the same Redis, with namespaces of its own, uses
	// the same signatures and spends its own budget: neither touches the
	// other's state. A budget key is namespace:class:key, the key chosen
	// by the client: a namespace holding ':' ("bank-a:get", beside our
	// "bank-a") would let our clients spend the other's budget, so it is
	// refused; one without is another state.
	t.Run("another gateway's namespaces on the same Redis", func(t *testing.T) {
		t.Parallel()
		srv := redistest.Start(t)
		up := newUpstream(t, nil)
		const burst = 4
		ours := storeChain{get: fmt.Sprint("1/h burst ", burst), key: "{http.request.header.X-Client}",
			replayNS: "bank-a-replay", budgetNS: "bank-a"}
		base, _ := ours.start(t, up, srv.URL())
		ssWaitReady(t, base, "warm", "warm")

		colliding := storeChain{get: fmt.Sprint("1/h burst ", burst), replayNS: "bank-b-replay", budgetNS: "bank-a:get"}
		cf := filepath.Join(t.TempDir(), "Caddyfile")
		if err := os.WriteFile(cf, []byte(strings.ReplaceAll(colliding.caddyfile(freePort(t), up, srv.URL()), "{ADMIN}", "off")), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(binary, "validate", "--config", cf, "--adapter", "caddyfile").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "must not hold ':'") {
			t.Errorf("a namespace holding ':' was accepted: %v %s", err, out)
		}

		theirs := storeChain{get: fmt.Sprint("1/h burst ", burst), replayNS: "bank-b-replay", budgetNS: "bank-a.get"}
		other, _ := theirs.start(t, up, srv.URL())
		ssWaitReady(t, other, "", "warm-other")
		// Our clients spend their budgets under names of their choosing,
		// and the same signatures are sent to the other gateway.
		var sent []*http.Request
		for i := range burst + 2 {
			for _, client := range []string{"get:", ".get:get:", "get", ""} {
				r := ssSigned(t, base, fmt.Sprint("collide-", client, i), client)
				sent = append(sent, ssCopy(r, other))
				ssSend(r)
			}
		}
		ok := 0
		for _, r := range sent[:burst-1] {
			if a := ssSend(r); a.status == 200 {
				ok++
			}
		}
		if ok != burst-1 {
			t.Errorf("the other gateway admitted %d of our signatures, want %d: its replay cache or budget is ours", ok, burst-1)
		}
		if left := ssTokensLeft(t, other, "", "other", burst); left != 0 {
			t.Errorf("the other gateway's budget: %d tokens left, want 0", left)
		}
		if a := ssSend(ssSigned(t, base, "ours-after", "someone-else")); a.status != 200 {
			t.Errorf("a client of ours with a budget of its own after the other gateway spent its budget: %d %s", a.status, a.body)
		}
	})
}
