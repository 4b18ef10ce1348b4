package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mxgate/mxgate/internal/redisbatch"
	"github.com/mxgate/mxgate/internal/testkit/redistest"
)

// TestRedisTakeClaim: a fresh claim is recorded and takes a token; a claim
// already recorded takes nothing; a fresh claim over budget is recorded
// and the refused take consumes nothing; a token given back is free again.
func TestRedisTakeClaim(t *testing.T) {
	srv := redistest.Start(t)
	c := redisClient(t, srv)
	p := Policy{Get: {Rate: 1.0 / 3600, Burst: 2}, Write: {Rate: Inf}, Delete: {Rate: Inf}, Other: {Rate: Inf}}
	s := newRedisStore(t, c, "test:claim:", p)
	ctx := context.Background()
	claim := func(name string) Claim { return Claim{Key: "test:claim:sig:" + name, TTL: time.Minute} }

	r, err := s.TakeClaim(ctx, "k", Get, 0, claim("a"))
	if err != nil || !r.Tried || !r.Claimed || !r.Allowed || r.Remaining != 1 {
		t.Fatalf("fresh claim: %+v %v", r, err)
	}
	if ttl, err := c.PTTL(ctx, "test:claim:sig:a").Result(); err != nil || ttl <= 0 || ttl > time.Minute {
		t.Fatalf("the claim lives %v (%v), want up to a minute", ttl, err)
	}
	r, err = s.TakeClaim(ctx, "k", Get, 0, claim("a"))
	if err != nil || !r.Tried || r.Claimed || r.Allowed {
		t.Fatalf("the same claim again: %+v %v", r, err)
	}
	r, err = s.TakeClaim(ctx, "k", Get, 0, claim("b"))
	if err != nil || !r.Claimed || !r.Allowed || r.Remaining != 0 {
		t.Fatalf("second fresh claim: %+v %v (the first replay took a token?)", r, err)
	}
	r, err = s.TakeClaim(ctx, "k", Get, 0, claim("c"))
	if err != nil || !r.Claimed || r.Allowed || r.RetryAfter <= 0 {
		t.Fatalf("a fresh claim over budget: %+v %v", r, err)
	}
	if n, _ := c.Exists(ctx, "test:claim:sig:c").Result(); n != 1 {
		t.Error("a claim refused by the budget is not recorded")
	}
	// The refusal took nothing: one token given back admits exactly one.
	r, _ = s.TakeClaim(ctx, "k", Get, 0, claim("d"))
	if r.Allowed {
		t.Fatalf("over budget: %+v", r)
	}
	if r, _ := s.TakeClaim(ctx, "other", Get, 0, claim("e")); !r.Allowed {
		t.Fatalf("another key: %+v", r)
	}
	s.GiveBack(ctx, "other", Get)
	if r, _ := s.TakeClaim(ctx, "other", Get, 0, claim("f")); !r.Allowed || r.Remaining != 1 {
		t.Errorf("after a token given back: %+v", r)
	}
	if r, _ := s.TakeClaim(ctx, "other", Get, 0, claim("g")); !r.Allowed || r.Remaining != 0 {
		t.Errorf("the give-back returned one token: %+v", r)
	}
	if r, _ := s.TakeClaim(ctx, "other", Get, 0, claim("h")); r.Allowed {
		t.Errorf("the give-back returned more than one token: %+v", r)
	}
	if _, err := s.TakeClaim(ctx, "k", Write, 0, claim("i")); err == nil {
		t.Error("a claim with an unlimited class")
	}
}

// TestRedisTakeClaimWaitAndNoScript: with WaitReplicas the claim and WAIT
// go in one round trip and the replicas are counted (none here); a
// server that lost its scripts (a restart, SCRIPT FLUSH) is sent them
// again, with and without WAIT.
func TestRedisTakeClaimWaitAndNoScript(t *testing.T) {
	srv := redistest.Start(t)
	c := redisClient(t, srv)
	calls := &countingHook{}
	c.AddHook(calls)
	s := newRedisStore(t, c, "test:claimwait:", Policy{Get: {Rate: 1000, Burst: 1000}, Write: {Rate: Inf}, Delete: {Rate: Inf}, Other: {Rate: Inf}})
	ctx := context.Background()
	// The first two load the script (NOSCRIPT, then EVAL) on a new
	// connection; the next two take one round trip each; then the server
	// loses its scripts.
	for i, wait := range []int{0, 1, 0, 1, 0, 1} {
		if i == 4 {
			if err := c.ScriptFlush(ctx).Err(); err != nil {
				t.Fatal(err)
			}
		}
		before := calls.n.Load()
		r, err := s.TakeClaim(ctx, "k", Get, 0, Claim{Key: fmt.Sprint("test:claimwait:sig:", i), TTL: time.Minute, WaitReplicas: wait, WaitTimeout: 10 * time.Millisecond})
		if err != nil || !r.Claimed || !r.Allowed || r.Replicas != 0 {
			t.Fatalf("claim %d (wait %d): %+v %v", i, wait, r, err)
		}
		if n := calls.n.Load() - before; n != 1 && (i == 2 || i == 3) {
			t.Errorf("claim %d took %d round trips, want 1", i, n)
		}
	}
}

// TestRedisTakeClaimBreaker: while the store waits to probe Redis again,
// TakeClaim sends nothing and says so.
func TestRedisTakeClaimBreaker(t *testing.T) {
	srv := redistest.Start(t)
	s := newRedisStore(t, redisClient(t, srv), "test:claimdown:", MXPolicy())
	s.SetProbeInterval(time.Hour)
	srv.Stop()
	ctx := context.Background()
	r, err := s.TakeClaim(ctx, "k", Get, 0, Claim{Key: "test:claimdown:sig", TTL: time.Minute})
	if !errors.Is(err, ErrStoreUnavailable) || !r.Tried {
		t.Fatalf("first call in the outage: %+v %v", r, err)
	}
	r, err = s.TakeClaim(ctx, "k", Get, 0, Claim{Key: "test:claimdown:sig", TTL: time.Minute})
	if !errors.Is(err, ErrStoreUnavailable) || r.Tried {
		t.Fatalf("while waiting to probe: %+v %v", r, err)
	}
}

// TestRedisTakeClaimUnreadableBucket: a bucket key of another type (a
// list planted by another user of the Redis) fails the call, and the
// claim is not recorded: once the key is gone, the same claim is fresh. A
// claim recorded before is still found (a replay, not an error). The
// failure is that key's alone: other keys go to Redis at once.
func TestRedisTakeClaimUnreadableBucket(t *testing.T) {
	srv := redistest.Start(t)
	c := redisClient(t, srv)
	p := Policy{Get: {Rate: 1.0 / 3600, Burst: 2}, Write: {Rate: Inf}, Delete: {Rate: Inf}, Other: {Rate: Inf}}
	s := newRedisStore(t, c, "test:wrongtype:", p)
	s.SetProbeInterval(time.Hour)
	ctx := context.Background()
	recorded := Claim{Key: "test:wrongtype:old", TTL: time.Minute}
	if r, err := s.TakeClaim(ctx, "k", Get, 0, recorded); err != nil || !r.Claimed {
		t.Fatalf("a fresh claim: %+v %v", r, err)
	}
	if err := c.Del(ctx, "test:wrongtype:get:k").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.RPush(ctx, "test:wrongtype:get:k", "planted").Err(); err != nil {
		t.Fatal(err)
	}
	claim := Claim{Key: "test:wrongtype:sig", TTL: time.Minute}
	r, err := s.TakeClaim(ctx, "k", Get, 0, claim)
	if !errors.Is(err, ErrStoreUnavailable) || !redisbatch.IsKeyError(err) || !r.Tried || r.Claimed {
		t.Fatalf("a bucket of another type: %+v %v", r, err)
	}
	if n, _ := c.Exists(ctx, claim.Key).Result(); n != 0 {
		t.Fatal("the claim was recorded by a call that failed")
	}
	if r, err := s.TakeClaim(ctx, "k", Get, 0, recorded); err != nil || !r.Tried || r.Claimed {
		t.Errorf("a claim recorded before, over a bucket of another type: %+v %v; want it found", r, err)
	}
	if r, err := s.TakeClaim(ctx, "other", Get, 0, Claim{Key: "test:wrongtype:other", TTL: time.Minute}); err != nil || !r.Claimed || !r.Allowed {
		t.Errorf("another key right after: %+v %v; want Redis asked (the breaker closed)", r, err)
	}
	if _, err := s.Take(ctx, "k", Get, time.Now(), 0); !redisbatch.IsKeyError(err) || !s.Healthy() {
		t.Errorf("Take of the bucket of another type: %v, healthy %v", err, s.Healthy())
	}
	c.Del(ctx, "test:wrongtype:get:k")
	if r, err := s.TakeClaim(ctx, "k", Get, 0, claim); err != nil || !r.Claimed || !r.Allowed || r.Remaining != 1 {
		t.Fatalf("the same claim once the key is gone: %+v %v", r, err)
	}
}

// TestRedisTakeClaimExact: three replicas' stores, batched, on one Redis:
// each claim is recorded by exactly one of the requests that carry it, and
// together they admit exactly the burst.
func TestRedisTakeClaimExact(t *testing.T) {
	srv := redistest.Start(t)
	p := Policy{Get: {Rate: 1.0 / 3600, Burst: 50}, Write: {Rate: Inf}, Delete: {Rate: Inf}, Other: {Rate: Inf}}
	var stores []*Redis
	for range 3 {
		c := redisClient(t, srv)
		s := newRedisStore(t, c, "test:claimexact:", p)
		s.SetBatcher(redisbatch.New(c, 2))
		stores = append(stores, s)
	}
	const claims, copies = 200, 3
	var admitted, claimed atomic.Int64
	var perClaim [claims]atomic.Int64
	var wg sync.WaitGroup
	for i := range claims * copies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := i % claims
			r, err := stores[i%3].TakeClaim(context.Background(), "client", Get, 0, Claim{Key: fmt.Sprint("test:claimexact:sig:", n), TTL: time.Minute})
			if err != nil {
				t.Error(err)
				return
			}
			if r.Claimed {
				claimed.Add(1)
				perClaim[n].Add(1)
			}
			if r.Allowed {
				admitted.Add(1)
			}
		}()
	}
	wg.Wait()
	if claimed.Load() != claims || admitted.Load() != 50 {
		t.Errorf("%d claims recorded (want %d), %d requests admitted (want the burst, 50)", claimed.Load(), claims, admitted.Load())
	}
	for n := range perClaim {
		if perClaim[n].Load() != 1 {
			t.Errorf("claim %d recorded %d times", n, perClaim[n].Load())
		}
	}
}

// holdPing holds the first PING sent through it until release is closed,
// and counts the script commands and the keys each carried.
type holdPing struct {
	release chan struct{}
	once    sync.Once
	out     atomic.Bool
	mu      sync.Mutex
	scripts []int
}

func (h *holdPing) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *holdPing) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "ping" {
			h.once.Do(func() { h.out.Store(true); <-h.release })
		}
		h.count(cmd)
		return next(ctx, cmd)
	}
}
func (h *holdPing) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			h.count(cmd)
		}
		return next(ctx, cmds)
	}
}
func (h *holdPing) count(cmd redis.Cmder) {
	if cmd.Name() == "evalsha" || cmd.Name() == "eval" {
		n, _ := cmd.Args()[2].(int)
		h.mu.Lock()
		h.scripts = append(h.scripts, n)
		h.mu.Unlock()
	}
}

// TestRedisCombinedCallsDecideInTurn: the takes and claims of concurrent
// requests that go to Redis as one script call are decided as if each had
// been a call of its own, in turn: a burst of 3 admits 3 of them, a
// signature sent twice is recorded once and takes one token, a take
// without a claim draws on the same bucket, and a call whose bucket
// cannot be read fails alone, recording nothing, while the others are
// decided.
func TestRedisCombinedCallsDecideInTurn(t *testing.T) {
	srv := redistest.Start(t)
	c := redisClient(t, srv)
	p := Policy{Get: {Rate: 1.0 / 3600, Burst: 3}, Write: {Rate: Inf}, Delete: {Rate: Inf}, Other: {Rate: Inf}}
	s := newRedisStore(t, c, "test:combined:", p)
	ctx := context.Background()
	if _, err := s.TakeClaim(ctx, "warm", Get, 0, Claim{Key: "test:combined:sig:warm", TTL: time.Minute}); err != nil {
		t.Fatal(err) // the script is loaded
	}
	if err := c.RPush(ctx, "test:combined:get:broken", "planted").Err(); err != nil {
		t.Fatal(err)
	}
	hook := &holdPing{release: make(chan struct{})}
	c.AddHook(hook)
	b := redisbatch.New(c, 1)
	s.SetBatcher(b)
	first := make(chan error, 1)
	go func() { first <- b.Process(ctx, redis.NewStatusCmd(ctx, "ping")) }()
	for !hook.out.Load() {
		time.Sleep(time.Millisecond)
	}

	type answer struct {
		what string
		r    ClaimResult
		err  error
	}
	answers := make(chan answer, 16)
	var sent sync.WaitGroup
	send := func(what string, do func() (ClaimResult, error)) {
		sent.Add(1)
		go func() {
			defer sent.Done()
			r, err := do()
			answers <- answer{what, r, err}
		}()
	}
	claim := func(key, sig string) func() (ClaimResult, error) {
		return func() (ClaimResult, error) {
			return s.TakeClaim(ctx, key, Get, 0, Claim{Key: "test:combined:sig:" + sig, TTL: time.Minute})
		}
	}
	for i := range 4 {
		send("fresh", claim("k", fmt.Sprint("fresh", i)))
	}
	send("twice", claim("k", "twice"))
	send("twice", claim("k", "twice"))
	send("take", func() (ClaimResult, error) {
		r, err := s.Take(ctx, "k", Get, time.Now(), 0)
		return ClaimResult{Result: r, Tried: true, Claimed: true}, err
	})
	send("broken", claim("broken", "broken"))
	const calls = 8
	for deadline := time.Now().Add(10 * time.Second); b.Queued() < calls; {
		if time.Now().After(deadline) {
			t.Fatalf("%d calls queued, want %d", b.Queued(), calls)
		}
		time.Sleep(time.Millisecond)
	}
	close(hook.release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	sent.Wait()
	close(answers)
	admitted, recordedTwice := 0, 0
	for a := range answers {
		switch {
		case a.what == "broken":
			if !redisbatch.IsKeyError(a.err) || !errors.Is(a.err, ErrStoreUnavailable) || a.r.Claimed {
				t.Errorf("the call of an unreadable bucket: %+v %v", a.r, a.err)
			}
			continue
		case a.err != nil:
			t.Errorf("%s: %v", a.what, a.err)
			continue
		case a.what == "twice" && a.r.Claimed:
			recordedTwice++
		}
		if a.r.Allowed {
			admitted++
		}
	}
	if admitted != 3 || recordedTwice != 1 {
		t.Errorf("%d admitted (want the burst, 3), the signature sent twice recorded %d times (want 1)", admitted, recordedTwice)
	}
	if n, _ := c.Exists(ctx, "test:combined:sig:broken").Result(); n != 0 {
		t.Error("the call of an unreadable bucket recorded its claim")
	}
	if !s.Healthy() {
		t.Error("one unreadable bucket opened the breaker")
	}
	hook.mu.Lock()
	defer hook.mu.Unlock()
	if len(hook.scripts) != 1 || hook.scripts[0] != 2*calls {
		t.Errorf("script commands of %v keys; want one, of %d", hook.scripts, 2*calls)
	}
}

// TestRedisTakeClaimForbiddenRead: a read of the bucket that Redis
// refuses for another reason than the key's type (an ACL without GET) is
// Redis's failure, not one key's: it is no key error, the store waits to
// probe Redis again, and nothing is recorded.
func TestRedisTakeClaimForbiddenRead(t *testing.T) {
	srv := redistest.Start(t)
	admin := redisClient(t, srv)
	ctx := context.Background()
	if err := admin.Do(ctx, "ACL", "SETUSER", "noget", "on", ">test-only", "~*", "&*", "+@all", "-get").Err(); err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), Username: "noget", Password: "test-only", MaxRetries: -1,
		DialTimeout: 200 * time.Millisecond, ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { c.Close() })
	p := Policy{Get: {Rate: 1.0 / 3600, Burst: 2}, Write: {Rate: Inf}, Delete: {Rate: Inf}, Other: {Rate: Inf}}
	s := newRedisStore(t, c, "test:noget:", p)
	s.SetProbeInterval(time.Hour)
	r, err := s.TakeClaim(ctx, "k", Get, 0, Claim{Key: "test:noget:sig", TTL: time.Minute})
	if err == nil || !errors.Is(err, ErrStoreUnavailable) || redisbatch.IsKeyError(err) || r.Claimed {
		t.Fatalf("a bucket read the ACL forbids: %+v %v; want the store's failure, no key error", r, err)
	}
	if s.Healthy() {
		t.Error("the store is healthy after Redis refused the script")
	}
	if n, _ := admin.Exists(ctx, "test:noget:sig").Result(); n != 0 {
		t.Error("the claim was recorded by a call that failed")
	}
}

// TestTakeScriptCombinedIsInTurn: the script run once for many calls
// answers each call, and leaves every bucket and claim (values and times
// to live), as runs of one call each, in turn, would at the same instant:
// random mixes of shared buckets with various limits, waits and bursts, a
// bucket of another type, claims fresh, repeated and already recorded,
// and takes without a claim. Redis's clock is replaced by a key, so that
// both runs see one now, and each run is one transaction, so that no key
// expires in real time while a run lasts.
func TestTakeScriptCombinedIsInTurn(t *testing.T) {
	srv := redistest.Start(t)
	c := redisClient(t, srv)
	ctx := context.Background()
	clock := "local t = redis.call('TIME')\nlocal now = tonumber(t[1]) * 1000000 + tonumber(t[2])"
	if !strings.Contains(takeLua, clock) {
		t.Fatal("the script reads Redis's clock otherwise: update this test")
	}
	src := strings.Replace(takeLua, clock, "local now = tonumber(redis.call('GET', 'test:now'))", 1)
	const now = 1_700_000_000_000_000
	type call struct {
		bucket, claim, interval, ttl string
		burst, wait                  int
	}
	keys := []string{"test:b1", "test:b2", "test:b3", "test:c1", "test:c2", "test:c3", "test:c4"}
	// Each run is one transaction: Redis samples its clock once for an
	// EXEC, so a bucket the script sets to live 2 ms does not expire, in
	// real time, between the calls run in turn or before the state is read.
	run := func(runs ...[]call) (answers []int64, values []string, ttls []time.Duration) {
		var evals []*redis.Cmd
		var gets []*redis.StringCmd
		var pttls []*redis.DurationCmd
		_, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
			for _, calls := range runs {
				var callKeys []string
				var args []any
				for _, cl := range calls {
					callKeys = append(callKeys, cl.bucket, cl.claim)
				}
				for _, cl := range calls {
					args = append(args, cl.interval, cl.burst, cl.wait, cl.ttl)
				}
				evals = append(evals, p.Eval(ctx, src, callKeys, args...))
			}
			for _, k := range keys {
				gets, pttls = append(gets, p.Get(ctx, k)), append(pttls, p.PTTL(ctx, k))
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			t.Fatal(err)
		}
		for _, e := range evals {
			v, err := e.Int64Slice()
			if err != nil {
				t.Fatal(err)
			}
			answers = append(answers, v...)
		}
		for i := range gets {
			values, ttls = append(values, gets[i].Val()), append(ttls, pttls[i].Val())
		}
		return answers, values, ttls
	}
	setUp := func(seed int64) {
		r := rand.New(rand.NewSource(seed))
		if err := c.FlushAll(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		c.Set(ctx, "test:now", now, 0)
		c.RPush(ctx, "test:bad", "planted")
		for _, k := range keys[:3] {
			if r.Intn(3) > 0 {
				c.Set(ctx, k, fmt.Sprintf("%.3f", float64(now+r.Intn(4000)-1000)), 0)
			}
		}
		for _, k := range keys[3:] {
			if r.Intn(4) == 0 {
				c.Set(ctx, k, "1", 0)
			}
		}
	}
	r := rand.New(rand.NewSource(1))
	for mix := range 300 {
		calls := make([]call, 1+r.Intn(8))
		for i := range calls {
			cl := call{bucket: []string{"test:b1", "test:b2", "test:b3", "test:bad"}[r.Intn(4)],
				interval: []string{"1000.000", "333.333", "100000.000"}[r.Intn(3)],
				burst:    r.Intn(4), wait: []int{0, 0, 500, 5000, 200000}[r.Intn(5)]}
			if r.Intn(3) > 0 {
				cl.claim, cl.ttl = keys[3+r.Intn(4)], fmt.Sprint(1+r.Intn(5000))
			} else {
				cl.claim, cl.ttl = cl.bucket, "0"
			}
			calls[i] = cl
		}
		setUp(int64(mix))
		together, values, ttls := run(calls)
		setUp(int64(mix))
		var each [][]call
		for _, cl := range calls {
			each = append(each, []call{cl})
		}
		inTurn, values2, ttls2 := run(each...)
		if fmt.Sprint(together) != fmt.Sprint(inTurn) || fmt.Sprint(values) != fmt.Sprint(values2) {
			t.Fatalf("mix %d %+v:\n together %v %v\n in turn  %v %v", mix, calls, together, values, inTurn, values2)
		}
		for i := range ttls {
			if d := ttls[i] - ttls2[i]; d < -time.Second || d > time.Second {
				t.Fatalf("mix %d: %s lives %v after the run together, %v after the runs in turn", mix, keys[i], ttls[i], ttls2[i])
			}
		}
	}
}
