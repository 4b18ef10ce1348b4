package store

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/redis/go-redis/v9"

	"github.com/mxgate/mxgate/internal/redisbatch"
	"github.com/mxgate/mxgate/internal/testkit/redistest"
	"github.com/mxgate/mxgate/ratelimit"
	"github.com/mxgate/mxgate/replay"
)

// calls counts the commands (a pipeline counts once) a client sends.
type calls struct{ n atomic.Int64 }

func (c *calls) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *calls) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() != "hello" && cmd.Name() != "client" {
			c.n.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (c *calls) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) > 0 && cmds[0].Name() != "hello" && cmds[0].Name() != "client" {
			c.n.Add(1)
		}
		return next(ctx, cmds)
	}
}

// observed counts a store's failures and successes.
type observed struct{ failed, succeeded atomic.Int64 }

func (o *observed) Failed(error) { o.failed.Add(1) }
func (o *observed) Succeeded()   { o.succeeded.Add(1) }

// pairReplica is one gateway's pair of stores: mdx_hmac verify's tiered
// replay cache and mx_rate_limit's budget, over one Redis client.
type pairReplica struct {
	client    *redis.Client
	calls     *calls
	local     *replay.Memory
	tiered    *replay.Tiered
	rl        *ratelimit.Redis
	rlLocal   *ratelimit.Memory
	fb        *ratelimit.Fallback
	rlObs     *observed
	replayObs *observed
}

type pairOptions struct {
	noBatch                bool
	replayDeny, budgetDeny bool
	wait                   int // replicas a replay record must reach
	policy                 ratelimit.Policy
	localSize              int
	rlAddr                 string // the budget's Redis, if not the replay cache's
}

func newPairReplica(t testing.TB, addr string, o pairOptions) *pairReplica {
	t.Helper()
	opts := func(addr string) *redis.Options {
		return &redis.Options{Addr: addr, MaxRetries: -1, DialerRetries: 1, DialTimeout: 200 * time.Millisecond,
			ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond, PoolTimeout: 200 * time.Millisecond}
	}
	c := redis.NewClient(opts(addr))
	t.Cleanup(func() { c.Close() })
	r := &pairReplica{client: c, calls: new(calls), rlObs: new(observed), replayObs: new(observed)}
	c.AddHook(r.calls)
	batch := redisbatch.New(c, 2)
	if o.localSize == 0 {
		o.localSize = 1000
	}
	r.local, _ = replay.NewMemory(time.Minute, o.localSize)
	shared, err := replay.NewRedis(c, "test:pair:replay:", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !o.noBatch {
		shared.SetBatcher(batch)
	}
	shared.SetProbeInterval(50 * time.Millisecond)
	if o.wait > 0 {
		shared.WaitForReplicas(o.wait, 20*time.Millisecond)
	}
	if r.tiered, err = replay.NewTiered(r.local, shared, o.replayDeny, r.replayObs); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.tiered.Close)
	rlClient := c
	if o.rlAddr != "" {
		rlClient = redis.NewClient(opts(o.rlAddr))
		t.Cleanup(func() { rlClient.Close() })
	}
	if r.rl, err = ratelimit.NewRedis(rlClient, "test:pair:rl:", o.policy); err != nil {
		t.Fatal(err)
	}
	if rlClient == c && !o.noBatch {
		r.rl.SetBatcher(batch)
	}
	r.rl.SetProbeInterval(time.Hour)
	r.rlLocal, _ = ratelimit.NewMemory(o.policy, 100)
	r.fb = &ratelimit.Fallback{Shared: r.rl, Local: r.rlLocal, FailClosed: o.budgetDeny, Observer: r.rlObs}
	return r
}

// outcome is what a request met: the replay cache's answer and the
// budget's.
type outcome struct {
	verdicts int
	fresh    bool
	err      error
	d        Decision
	byCaller bool // the token was taken by the caller, as mx_rate_limit does when d.Took is false
}

// decide runs one signed request's claim through r, as mx_rate_limit does.
func (r *pairReplica) decide(t *testing.T, key replay.Key) outcome {
	t.Helper()
	var o outcome
	verdict := func(w http.ResponseWriter, _ *http.Request, fresh bool, err error) (bool, error) {
		o.verdicts++
		o.fresh, o.err = fresh, err
		if err != nil || !fresh {
			w.WriteHeader(412)
			return false, nil
		}
		return true, nil
	}
	c := NewReplayClaim(nil, r.tiered, key, time.Now(), verdict)
	req := WithClaim(httptest.NewRequest("GET", "/x", nil), c)
	if PendingClaim(req) != c {
		t.Fatal("the claim is not pending on the request")
	}
	o.d = c.DecideWith(httptest.NewRecorder(), req, r.rl, r.fb, "client", ratelimit.Get, time.Now(), 0)
	if PendingClaim(req) != nil || !c.Decided() {
		t.Fatal("the claim is still pending once decided")
	}
	if o.verdicts != 1 {
		t.Fatalf("%d verdicts, want 1", o.verdicts)
	}
	if !o.d.Refused && !o.d.Took {
		o.byCaller = true
		o.d.Res, o.d.TakeErr = r.fb.Take(context.Background(), "client", ratelimit.Get, time.Now(), 0)
	}
	return o
}

func (o outcome) admitted() bool {
	return !o.d.Refused && (o.d.Took || o.byCaller) && o.d.TakeErr == nil && o.d.Res.Allowed
}

func sig(i int) replay.Key { return replay.Key{byte(i), byte(i >> 8), 7} }

var budget2 = ratelimit.Policy{ratelimit.Get: {Rate: 1.0 / 3600, Burst: 2}, ratelimit.Write: {Rate: ratelimit.Inf},
	ratelimit.Delete: {Rate: ratelimit.Inf}, ratelimit.Other: {Rate: ratelimit.Inf}}

// TestDecideWith: one round trip decides a fresh signature and its token;
// a replay, here or on another replica, takes no token; a request the
// budget refuses keeps its signature recorded.
func TestDecideWith(t *testing.T) {
	srv := redistest.Start(t)
	a := newPairReplica(t, srv.Addr(), pairOptions{policy: budget2})
	b := newPairReplica(t, srv.Addr(), pairOptions{policy: budget2})
	// Load the script and open the connections.
	_ = a.decide(t, sig(1000))
	_ = b.decide(t, sig(1001)) // the budget (2) is spent from here on
	_ = a.client.Del(context.Background(), "test:pair:rl:get:client").Err()

	before := a.calls.n.Load()
	o := a.decide(t, sig(1))
	if !o.fresh || !o.admitted() || o.d.Res.Remaining != 1 {
		t.Fatalf("fresh: %+v", o)
	}
	if n := a.calls.n.Load() - before; n != 1 {
		t.Errorf("a fresh signature took %d round trips, want 1", n)
	}
	if !a.local.Seen(sig(1), time.Now()) {
		t.Error("the signature is not remembered by this replica")
	}
	before = b.calls.n.Load()
	if o := b.decide(t, sig(1)); o.fresh || !o.d.Refused || o.d.Took && o.d.Res.Allowed {
		t.Fatalf("replayed on another replica: %+v", o)
	}
	if n := b.calls.n.Load() - before; n != 1 {
		t.Errorf("a replay took %d round trips, want 1", n)
	}
	before = a.calls.n.Load()
	if o := a.decide(t, sig(1)); o.fresh || !o.d.Refused || o.d.Took {
		t.Fatalf("replayed on the same replica: %+v", o)
	}
	if n := a.calls.n.Load() - before; n != 0 {
		t.Errorf("a replay this replica remembers took %d round trips, want 0", n)
	}
	// The replays took no token: one is left.
	if o := b.decide(t, sig(2)); !o.admitted() || o.d.Res.Remaining != 0 {
		t.Fatalf("the last token: %+v", o)
	}
	o = a.decide(t, sig(3))
	if !o.fresh || o.d.Refused || !o.d.Took || o.d.TakeErr != nil || o.d.Res.Allowed {
		t.Fatalf("over budget: %+v", o)
	}
	if o := b.decide(t, sig(3)); o.fresh || !o.d.Refused {
		t.Fatalf("a signature refused by the budget was not recorded: %+v", o)
	}
	if a.rlObs.failed.Load()+a.replayObs.failed.Load() != 0 || a.rlObs.succeeded.Load() == 0 || a.replayObs.succeeded.Load() == 0 {
		t.Errorf("observers: budget %d/%d, replay %d/%d (failed/succeeded)", a.rlObs.failed.Load(), a.rlObs.succeeded.Load(),
			a.replayObs.failed.Load(), a.replayObs.succeeded.Load())
	}
}

// TestDecideWithExact: three replicas on one Redis, every signature sent
// three times at once across them: each is admitted by the replay cache
// exactly once, and the budget admits exactly its burst.
func TestDecideWithExact(t *testing.T) {
	srv := redistest.Start(t)
	const burst, sigs, copies = 40, 150, 3
	p := ratelimit.Policy{ratelimit.Get: {Rate: 1.0 / 3600, Burst: burst}, ratelimit.Write: {Rate: ratelimit.Inf},
		ratelimit.Delete: {Rate: ratelimit.Inf}, ratelimit.Other: {Rate: ratelimit.Inf}}
	var replicas []*pairReplica
	for range 3 {
		replicas = append(replicas, newPairReplica(t, srv.Addr(), pairOptions{policy: p}))
	}
	var fresh [sigs]atomic.Int64
	var admitted, refusedFresh atomic.Int64
	var wg sync.WaitGroup
	for i := range sigs * copies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := replicas[i%3].decide(t, sig(i%sigs))
			if o.err != nil {
				t.Error(o.err)
			}
			if o.fresh {
				fresh[i%sigs].Add(1)
				if !o.d.Res.Allowed {
					refusedFresh.Add(1)
				}
			}
			if o.admitted() {
				admitted.Add(1)
			}
		}()
	}
	wg.Wait()
	for i := range fresh {
		if n := fresh[i].Load(); n != 1 {
			t.Errorf("signature %d admitted by the replay cache %d times", i, n)
		}
	}
	if admitted.Load() != burst || refusedFresh.Load() != sigs-burst {
		t.Errorf("%d admitted (want %d), %d fresh refused by the budget (want %d)", admitted.Load(), burst, refusedFresh.Load(), sigs-burst)
	}
	if r, _ := replicas[0].rl.Take(context.Background(), "client", ratelimit.Get, time.Now(), 0); r.Allowed {
		t.Error("a token is left: a replay or a refusal took none, or too few were taken")
	}
}

// TestDecideWithOutage: with Redis gone, each directive does what its
// on_store_error says, the replay cache first; a replay refused (or a
// request refused by the replay cache) takes no token, even locally; what
// the replay cache admitted alone is written back.
func TestDecideWithOutage(t *testing.T) {
	for _, tc := range []struct {
		name                   string
		replayDeny, budgetDeny bool
		admitted, takeErr      bool
	}{
		{"replay deny", true, false, false, false},
		{"replay local, budget deny", false, true, false, true},
		{"both local", false, false, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t)
			a := newPairReplica(t, srv.Addr(), pairOptions{policy: budget2, replayDeny: tc.replayDeny, budgetDeny: tc.budgetDeny})
			if o := a.decide(t, sig(1)); !o.admitted() {
				t.Fatalf("before the outage: %+v", o)
			}
			srv.Stop()
			o := a.decide(t, sig(2))
			if got := !o.d.Refused && o.d.TakeErr == nil && o.d.Res.Allowed; got != tc.admitted {
				t.Fatalf("fresh in the outage: admitted %v, want %v: %+v", got, tc.admitted, o)
			}
			if tc.replayDeny != (o.err != nil) || o.err != nil && !errors.Is(o.err, replay.ErrUnavailable) {
				t.Errorf("the replay cache's answer: %v", o.err)
			}
			if (o.d.TakeErr != nil) != tc.takeErr || o.d.TakeErr != nil && !errors.Is(o.d.TakeErr, ratelimit.ErrStoreUnavailable) {
				t.Errorf("the budget's answer: %v", o.d.TakeErr)
			}
			// The budget is asked only for a request the replay cache
			// admits (whether its Redis call or the watch of the
			// connection notices the outage first).
			if a.replayObs.failed.Load() == 0 || !tc.replayDeny && a.rlObs.failed.Load() == 0 {
				t.Errorf("the failure was not observed: budget %d, replay %d", a.rlObs.failed.Load(), a.replayObs.failed.Load())
			}
			// A replay of what was recorded before is refused, and the
			// local buckets are untouched by refusals.
			if o := a.decide(t, sig(1)); o.fresh || !o.d.Refused {
				t.Fatalf("a replay in the outage: %+v", o)
			}
			want := 2
			if tc.admitted {
				want = 1
			}
			if r, _ := a.rlLocal.Take(context.Background(), "client", ratelimit.Get, time.Now(), 0); !r.Allowed || r.Remaining != want-1 {
				t.Errorf("the local bucket: %+v, want %d tokens before this one", r, want)
			}
			srv.Restart()
			if !tc.replayDeny {
				deadline := time.Now().Add(10 * time.Second)
				for a.tiered.Owed() > 0 {
					if time.Now().After(deadline) {
						t.Fatal("never written back")
					}
					time.Sleep(10 * time.Millisecond)
				}
				b := newPairReplica(t, srv.Addr(), pairOptions{policy: budget2})
				if o := b.decide(t, sig(2)); o.fresh || !o.d.Refused {
					t.Fatalf("what was admitted in the outage is replayable on another replica: %+v", o)
				}
			}
		})
	}
}

// TestDecideWithBudgetBreaker: while the budget's store waits to probe its
// Redis again, the signature is recorded on its own and the token taken
// by the caller (the budget's fallback).
func TestDecideWithBudgetBreaker(t *testing.T) {
	srv := redistest.Start(t)
	dead := redistest.Start(t)
	deadAddr := dead.Addr()
	dead.Stop()
	a := newPairReplica(t, srv.Addr(), pairOptions{policy: budget2, rlAddr: deadAddr})
	if _, err := a.rl.Take(context.Background(), "client", ratelimit.Get, time.Now(), 0); !errors.Is(err, ratelimit.ErrStoreUnavailable) {
		t.Fatalf("the budget's Redis is up: %v", err)
	}
	o := a.decide(t, sig(2))
	if !o.fresh || o.err != nil || o.d.Took || o.d.Refused {
		t.Fatalf("while the budget waits to probe: %+v", o)
	}
	if n, _ := a.client.Exists(context.Background(), a.tiered.Shared().Name(sig(2))).Result(); n != 1 {
		t.Error("the signature was not recorded in Redis")
	}
}

// TestDecideWithNotReplicated: a fresh signature no replica vouched for is
// taken back; refused (on_store_error deny), it gives its token back;
// admitted by this replica's cache (local), it keeps it.
func TestDecideWithNotReplicated(t *testing.T) {
	for _, deny := range []bool{true, false} {
		t.Run(fmt.Sprint("deny=", deny), func(t *testing.T) {
			srv := redistest.Start(t)
			a := newPairReplica(t, srv.Addr(), pairOptions{policy: budget2, replayDeny: deny, wait: 1})
			o := a.decide(t, sig(1))
			if deny != o.d.Refused || deny != errors.Is(o.err, replay.ErrNotReplicated) {
				t.Fatalf("no replica: %+v", o)
			}
			name := a.tiered.Shared().Name(sig(1))
			if deny {
				if n, _ := a.client.Exists(context.Background(), name).Result(); n != 0 {
					t.Error("the record no replica holds was left")
				}
			} else {
				// Admitted by this replica alone: owed, and written back
				// (at once or by the background write-back).
				for deadline := time.Now().Add(10 * time.Second); a.tiered.Owed() > 0; time.Sleep(10 * time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatal("never written back")
					}
				}
				if n, _ := a.client.Exists(context.Background(), name).Result(); n != 1 {
					t.Error("the signature admitted alone was not written back")
				}
			}
			want := 1
			if deny {
				want = 2
			}
			if r, _ := a.rl.Take(context.Background(), "client", ratelimit.Get, time.Now(), 0); !r.Allowed || r.Remaining != want-1 {
				t.Errorf("tokens left: %+v, want %d", r, want)
			}
		})
	}
}

// TestDecideWithLocalFull: a replica whose cache is full decides on its
// own (503), taking no token.
func TestDecideWithLocalFull(t *testing.T) {
	srv := redistest.Start(t)
	a := newPairReplica(t, srv.Addr(), pairOptions{policy: budget2, localSize: 1})
	if o := a.decide(t, sig(1)); !o.admitted() {
		t.Fatalf("first: %+v", o)
	}
	o := a.decide(t, sig(2))
	if !errors.Is(o.err, replay.ErrFull) || !o.d.Refused || o.d.Took {
		t.Fatalf("full: %+v", o)
	}
	if r, _ := a.rl.Take(context.Background(), "client", ratelimit.Get, time.Now(), 0); !r.Allowed || r.Remaining != 0 {
		t.Errorf("a refused request took a token: %+v", r)
	}
}

// TestDecideAlone: a claim decided on its own is the replay cache's
// check.
func TestDecideAlone(t *testing.T) {
	m, _ := replay.NewMemory(time.Minute, 10)
	var got []bool
	verdict := func(w http.ResponseWriter, _ *http.Request, fresh bool, err error) (bool, error) {
		got = append(got, fresh)
		return fresh, err
	}
	for range 2 {
		c := NewReplayClaim(nil, m, sig(1), time.Now(), verdict)
		_, _ = c.Decide(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	}
	if len(got) != 2 || !got[0] || got[1] {
		t.Errorf("verdicts %v, want fresh then replayed", got)
	}
	if PendingClaim(httptest.NewRequest("GET", "/", nil)) != nil {
		t.Error("a claim on a request that has none")
	}
}

// TestClaimInRequestVariables: on a request with Caddy's variables (every
// request a server serves), the claim rides in them, with no copy of the
// request; a variable of the same name that is not a claim (a vars
// directive's) is no claim; and a placeholder of the variable shows no
// part of the record.
func TestClaimInRequestVariables(t *testing.T) {
	vars := map[string]any{}
	req := httptest.NewRequest("GET", "/", nil)
	req = req.WithContext(context.WithValue(req.Context(), caddyhttp.VarsCtxKey, vars))
	m, err := replay.NewMemory(time.Minute, 16)
	if err != nil {
		t.Fatal(err)
	}
	verdict := func(http.ResponseWriter, *http.Request, bool, error) (bool, error) { return true, nil }
	vars[claimVar] = "planted by a vars directive"
	if PendingClaim(req) != nil {
		t.Fatal("a variable that is not a claim was taken for one")
	}
	c := NewReplayClaim(nil, m, sig(7), time.Now(), verdict)
	if got := WithClaim(req, c); got != req {
		t.Error("the request was copied to carry the claim")
	}
	if PendingClaim(req) != c {
		t.Fatal("the claim is not pending on the request")
	}
	repl := caddy.NewReplacer()
	repl.Map(func(key string) (any, bool) {
		v, ok := vars[strings.TrimPrefix(key, "http.vars.")]
		return v, ok
	})
	shown := repl.ReplaceAll("{http.vars."+claimVar+"}", "")
	if shown != "replay record (pending)" || strings.Contains(shown, fmt.Sprintf("%x", sig(7))) {
		t.Errorf("the variable shows %q", shown)
	}
	if _, err := c.Decide(httptest.NewRecorder(), req); err != nil {
		t.Fatal(err)
	}
	if PendingClaim(req) != nil {
		t.Error("the claim is still pending once decided")
	}
}
