package redisconf

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mxgate/mxgate/internal/redisbatch"
	"github.com/mxgate/mxgate/internal/testkit/redistest"
	"github.com/mxgate/mxgate/ratelimit"
	"github.com/mxgate/mxgate/replay"
)

// These tests run against real servers that redistest starts: one Redis,
// one over TLS with an ACL user, a Sentinel group and a three-master
// Cluster. Each uses the stores the gateway uses: the rate limiter's Lua
// script (EVALSHA) and the replay cache's SET NX.

const testTimeout = time.Second

func newClient(t testing.TB, rawURL string, opts Options) redis.UniversalClient {
	t.Helper()
	if opts.Timeout == 0 {
		opts.Timeout = testTimeout
	}
	c, err := NewClient(rawURL, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// gatewayStores are the two Redis stores of the gateway over c.
type gatewayStores struct {
	limiter *ratelimit.Redis
	replay  *replay.Redis
}

func newStores(t testing.TB, c redis.UniversalClient, prefix string) gatewayStores {
	t.Helper()
	policy := ratelimit.Policy{
		ratelimit.Get:    {Rate: 1e6, Burst: 1e6},
		ratelimit.Write:  {Rate: 1, Burst: 3},
		ratelimit.Delete: {Rate: ratelimit.Inf},
		ratelimit.Other:  {Rate: ratelimit.Inf},
	}
	l, err := ratelimit.NewRedis(c, prefix+"rl:", policy)
	if err != nil {
		t.Fatal(err)
	}
	l.SetProbeInterval(time.Millisecond)
	r, err := replay.NewRedis(c, prefix+"replay:", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	r.SetProbeInterval(time.Millisecond)
	return gatewayStores{l, r}
}

func randomKey() replay.Key {
	var k replay.Key
	rand.Read(k[:])
	return k
}

// checkStores exercises both stores through c: a replayed key is caught,
// and a write budget of 3 admits exactly 3 of 5 quick requests, whichever
// slot (or node) each key lands on.
func checkStores(t *testing.T, s gatewayStores, keys int) {
	t.Helper()
	ctx := context.Background()
	for i := range keys {
		k := randomKey()
		fresh, err := s.replay.Check(ctx, k, time.Now())
		if err != nil || !fresh {
			t.Fatalf("replay key %d: fresh %v, %v", i, fresh, err)
		}
		fresh, err = s.replay.Check(ctx, k, time.Now())
		if err != nil || fresh {
			t.Fatalf("replay key %d replayed: fresh %v, %v", i, fresh, err)
		}
	}
	run := randomKey()
	for i := range keys {
		client := fmt.Sprintf("client-%x-%d", run[:4], i)
		admitted := 0
		for range 5 {
			res, err := s.limiter.Take(ctx, client, ratelimit.Write, time.Now(), 0)
			if err != nil {
				t.Fatalf("rate limit %s: %v", client, err)
			}
			if res.Allowed {
				admitted++
			}
		}
		if admitted != 3 {
			t.Errorf("rate limit %s: %d of 5 admitted, want 3", client, admitted)
		}
	}
}

func TestStandalone(t *testing.T) {
	srv := redistest.Start(t)
	c := newClient(t, srv.URL(), Options{})
	if _, ok := c.(*redis.Client); !ok {
		t.Errorf("client is %T, want *redis.Client", c)
	}
	checkStores(t, newStores(t, c, "standalone:"), 10)
}

func TestPasswordNotInClientErrors(t *testing.T) {
	const pass = "Wrong-Password-1234"
	srv := redistest.Start(t, "--user", "default", "off", "--user", "app", "on", ">right-password", "~*", "&*", "+@all")
	c := newClient(t, "redis://app:"+pass+"@"+srv.Addr()+"/0", Options{})
	err := c.Ping(context.Background()).Err()
	if err == nil {
		t.Fatal("a wrong password was accepted")
	}
	if strings.Contains(err.Error(), pass) {
		t.Errorf("the client's error shows the password: %v", err)
	}
	c = newClient(t, "redis://app:right-password@"+srv.Addr()+"/0", Options{})
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Errorf("ACL user: %v", err)
	}
}

func TestTLSWithACLUser(t *testing.T) {
	pki := redistest.NewPKI(t)
	srv := redistest.StartTLS(t, pki, "--user", "default", "off", "--user", "gateway", "on", ">tls-pass", "~mxgate:*", "&*", "+@all")
	url := "rediss://gateway:tls-pass@" + srv.Addr() + "/0"
	opts := Options{TLS: TLSOptions{CAFile: pki.CAFile, CertFile: pki.ClientCert, KeyFile: pki.ClientKey}}

	c := newClient(t, url, opts)
	checkStores(t, newStores(t, c, "mxgate:tls:"), 5)

	// The ACL user may touch only mxgate:* keys.
	if err := c.Set(context.Background(), "other:key", 1, 0).Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Errorf("a key outside the ACL user's pattern: %v, want NOPERM", err)
	}
	// The name the certificate carries, when the address is not it.
	opts.TLS.ServerName = "redis.test"
	if err := newClient(t, url, opts).Ping(context.Background()).Err(); err != nil {
		t.Errorf("with server name: %v", err)
	}

	for name, o := range map[string]TLSOptions{
		"no client certificate": {CAFile: pki.CAFile},
		"unknown CA":            {CertFile: pki.ClientCert, KeyFile: pki.ClientKey},
		"wrong server name":     {CAFile: pki.CAFile, CertFile: pki.ClientCert, KeyFile: pki.ClientKey, ServerName: "other.test"},
	} {
		if err := newClient(t, url, Options{TLS: o}).Ping(context.Background()).Err(); err == nil {
			t.Errorf("%s: connected", name)
		}
	}
	// Plain TCP to a TLS-only server fails rather than sending the password.
	if err := newClient(t, "redis://gateway:tls-pass@"+srv.Addr()+"/0", Options{}).Ping(context.Background()).Err(); err == nil {
		t.Error("redis:// to a TLS server connected")
	}
}

// TestSentinelFailover runs replay checks through a redis+sentinel://
// client while the sentinels move the master to the replica, twice, and
// checks that the client follows: writes land on the new master afterwards,
// and nothing replicated before the failover is lost, so no replay of an
// earlier request is admitted.
//
// Redis replication is asynchronous: the old master acknowledges writes
// until the clients move away from it, and those are lost. The first
// failover measures that with plain SET NX (what the replay cache does
// today); the second shows the remedy, SET NX followed by WAIT 1 on the
// same connection, after which no acknowledged key is lost, at the price
// of failing every check until the demoted master has rejoined as a
// replica. (The sentinels rejoin it some 10-15s after the failover; the
// test does it at once, to stay fast.)
func TestSentinelFailover(t *testing.T) {
	g := redistest.StartSentinel(t, "mxgate-master")
	c := newClient(t, g.URL(), Options{})
	rc, ok := c.(*redis.Client)
	if !ok {
		t.Fatalf("client is %T, want the failover *redis.Client", c)
	}
	s := newStores(t, c, "sentinel:")
	checkStores(t, s, 3)

	plain := func(ctx context.Context, k replay.Key) (bool, error) { return s.replay.Check(ctx, k, time.Now()) }
	t.Run("SET NX, SENTINEL FAILOVER", func(t *testing.T) {
		st := failoverUnderTraffic(t, g, "sentinel:replay:", plain, g.Failover, false)
		t.Logf("%s; %d acknowledged keys lost in the switch", st, st.lost)
		g.Rejoin()
	})
	waited := func(ctx context.Context, k replay.Key) (bool, error) {
		pipe := rc.Pipeline()
		set := pipe.SetNX(ctx, "sentinel:wait:"+hexKey(k), 1, time.Minute)
		wait := pipe.Do(ctx, "WAIT", 1, 100) // one replica, 100ms
		if _, err := pipe.Exec(ctx); err != nil {
			return false, err
		}
		if n, err := wait.Int(); err != nil || n < 1 {
			return false, errors.New("not replicated")
		}
		return set.Val(), nil
	}
	t.Run("SET NX and WAIT, SENTINEL FAILOVER", func(t *testing.T) {
		st := failoverUnderTraffic(t, g, "sentinel:wait:", waited, g.Failover, true)
		t.Logf("%s; none lost", st)
		if st.lost != 0 {
			t.Errorf("%d acknowledged keys lost in the switch", st.lost)
		}
	})
	// The replay record and the token in one script call, with WAIT in the
	// same round trip (a signed request through mdx_hmac verify and
	// mx_rate_limit on one Sentinel group).
	claimed := func(ctx context.Context, k replay.Key) (bool, error) {
		r, err := s.limiter.TakeClaim(ctx, "client", ratelimit.Get, 0, ratelimit.Claim{Key: "sentinel:claim:" + hexKey(k), TTL: time.Minute, WaitReplicas: 1, WaitTimeout: 100 * time.Millisecond})
		if err != nil {
			return false, err
		}
		if r.Claimed && r.Replicas < 1 {
			return false, errors.New("not replicated")
		}
		return r.Claimed, nil
	}
	t.Run("claim script and WAIT, SENTINEL FAILOVER", func(t *testing.T) {
		st := failoverUnderTraffic(t, g, "sentinel:claim:", claimed, g.Failover, true)
		t.Logf("%s; none lost", st)
		if st.lost != 0 {
			t.Errorf("%d acknowledged keys lost in the switch", st.lost)
		}
	})
	// The master crashes: the sentinels notice (down-after 1s), agree, and
	// promote the replica; the client follows.
	t.Run("SET NX, master killed", func(t *testing.T) {
		st := failoverUnderTraffic(t, g, "sentinel:replay:", plain, g.KillMaster, false)
		t.Logf("%s; %d acknowledged keys lost", st, st.lost)
	})
	checkStores(t, s, 3)
}

type failoverStats struct {
	took, recovered time.Duration
	acked, failed   int
	lost            int // acknowledged after the replica had caught up, then lost
}

func (s failoverStats) String() string {
	return fmt.Sprintf("failover took %v, traffic recovered after %v; %d keys acknowledged, %d calls failed",
		s.took.Round(time.Millisecond), s.recovered.Round(time.Millisecond), s.acked, s.failed)
}

// failoverUnderTraffic runs check on fresh keys in a loop, fails the group
// over with failover in the middle, and then checks every acknowledged key again under
// prefix on the new master. Keys acknowledged before the replica had
// caught up with the old master must all be there.
func failoverUnderTraffic(t *testing.T, g *redistest.SentinelGroup, prefix string, check func(context.Context, replay.Key) (bool, error), failover func() string, rejoin bool) failoverStats {
	ctx := context.Background()
	var (
		mu       sync.Mutex
		acked    []replay.Key // keys Redis confirmed as fresh, in order
		failed   atomic.Int64
		stop     = make(chan struct{})
		finished = make(chan struct{})
	)
	go func() {
		defer close(finished)
		for {
			select {
			case <-stop:
				return
			default:
			}
			k := randomKey()
			fresh, err := check(ctx, k)
			switch {
			case err != nil:
				failed.Add(1)
				time.Sleep(time.Millisecond)
			case !fresh:
				t.Error("a fresh key was reported as replayed")
			default:
				mu.Lock()
				acked = append(acked, k)
				mu.Unlock()
			}
		}
	}()
	ackedCount := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	waitUntil(t, 5*time.Second, "traffic before the failover", func() bool { return ackedCount() >= 200 })

	// Everything acknowledged up to here is on the replica once its offset
	// reaches the master's.
	oldMaster := redis.NewClient(&redis.Options{Addr: g.Master.Addr()})
	defer oldMaster.Close()
	replicated := ackedCount()
	offset := replOffset(t, oldMaster, "master_repl_offset")
	replica := redis.NewClient(&redis.Options{Addr: g.Replica.Addr()})
	defer replica.Close()
	waitUntil(t, 5*time.Second, "replica caught up", func() bool { return replOffset(t, replica, "slave_repl_offset") >= offset })

	var st failoverStats
	start := time.Now()
	newMaster := failover()
	st.took = time.Since(start)
	if newMaster == oldMaster.Options().Addr {
		t.Fatalf("the master is still %s", newMaster)
	}
	n := ackedCount()
	if rejoin {
		g.Rejoin()
	}
	waitUntil(t, 10*time.Second, "traffic after the failover", func() bool { return ackedCount() >= n+200 })
	st.recovered = time.Since(start)
	close(stop)
	<-finished

	mu.Lock()
	all := append([]replay.Key(nil), acked...)
	mu.Unlock()
	st.acked, st.failed = len(all), int(failed.Load())
	direct := redis.NewClient(&redis.Options{Addr: newMaster})
	defer direct.Close()
	if n, err := direct.Exists(ctx, prefix+hexKey(all[len(all)-1])).Result(); err != nil || n != 1 {
		t.Errorf("the last acknowledged key is not on the new master: %d, %v", n, err)
	}
	exists := make([]*redis.IntCmd, len(all))
	pipe := direct.Pipeline()
	for i, k := range all {
		exists[i] = pipe.Exists(ctx, prefix+hexKey(k))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatalf("after the failover: %v", err)
	}
	for i, e := range exists {
		if e.Val() == 0 {
			if i < replicated {
				t.Errorf("key %d, replicated before the failover, is lost: its replay would be admitted", i)
			}
			st.lost++
		}
	}
	return st
}

func replOffset(t *testing.T, c *redis.Client, field string) int64 {
	t.Helper()
	info, err := c.Info(context.Background(), "replication").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			var n int64
			fmt.Sscan(v, &n)
			return n
		}
	}
	t.Fatalf("no %s in INFO replication", field)
	return 0
}

// checkStoresConcurrently is checkStores from goroutines at once, each
// with keys of its own.
func checkStoresConcurrently(t *testing.T, s gatewayStores, goroutines, keys int) {
	t.Helper()
	ctx := context.Background()
	run := randomKey()
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range keys {
				k := randomKey()
				first, err1 := s.replay.Check(ctx, k, time.Now())
				again, err2 := s.replay.Check(ctx, k, time.Now())
				if err1 != nil || err2 != nil || !first || again {
					t.Errorf("replay key %d/%d: fresh %v then %v (%v, %v)", g, i, first, again, err1, err2)
				}
				client := fmt.Sprintf("client-%x-%d-%d", run[:4], g, i)
				admitted := 0
				for range 5 {
					res, err := s.limiter.Take(ctx, client, ratelimit.Write, time.Now(), 0)
					if err != nil {
						t.Errorf("rate limit %s: %v", client, err)
						return
					}
					if res.Allowed {
						admitted++
					}
				}
				if admitted != 3 {
					t.Errorf("rate limit %s: %d of 5 admitted, want 3", client, admitted)
				}
			}
		}()
	}
	wg.Wait()
}

func hexKey(k replay.Key) string { return fmt.Sprintf("%x", k[:]) }

func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestCluster checks that the gateway's stores work on a three-master
// Cluster: each call names one key, so the script and SET NX go to the
// node owning its slot, and the keys spread over every node.
func TestCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3, nil)
	ctx := context.Background()
	for _, url := range []string{cl.URL(), "redis+cluster://" + cl.Addrs()[0]} {
		c := newClient(t, url, Options{})
		if _, ok := c.(*redis.ClusterClient); !ok {
			t.Fatalf("%s: client is %T, want *redis.ClusterClient", Describe(url), c)
		}
		checkStores(t, newStores(t, c, "cluster:"+fmt.Sprint(len(url))+":"), 30)
	}
	// Batched (as the gateway sends them): the commands of concurrent
	// callers go in pipelines, which the client splits by node.
	bc := newClient(t, cl.URL(), Options{})
	bs := newStores(t, bc, "cluster:batched:")
	batch := redisbatch.New(bc, 1)
	bs.limiter.SetBatcher(batch)
	bs.replay.SetBatcher(batch)
	checkStoresConcurrently(t, bs, 16, 20)
	c := newClient(t, cl.URL(), Options{})
	slots := map[int64]bool{}
	for i, n := range cl.Nodes {
		nc := redis.NewClient(&redis.Options{Addr: n.Addr()})
		keys, err := nc.Keys(ctx, "cluster:*").Result()
		nc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) == 0 {
			t.Errorf("node %d holds none of the keys", i)
		}
		for _, k := range keys {
			slot, err := c.ClusterKeySlot(ctx, k).Result()
			if err != nil {
				t.Fatal(err)
			}
			slots[slot] = true
		}
	}
	if len(slots) < 50 {
		t.Errorf("the keys landed on %d slots only", len(slots))
	}
}

// TestTLSCluster runs the stores through rediss+cluster:// against a
// Cluster whose nodes speak only TLS, to clients and to each other.
func TestTLSCluster(t *testing.T) {
	pki := redistest.NewPKI(t)
	cl := redistest.StartCluster(t, 3, pki)
	opts := Options{TLS: TLSOptions{CAFile: pki.CAFile, CertFile: pki.ClientCert, KeyFile: pki.ClientKey}}
	c := newClient(t, cl.URL(), opts)
	if _, ok := c.(*redis.ClusterClient); !ok {
		t.Fatalf("client is %T, want *redis.ClusterClient", c)
	}
	checkStores(t, newStores(t, c, "tlscluster:"), 20)
	// Without TLS nothing answers.
	if err := newClient(t, strings.Replace(cl.URL(), "rediss+", "redis+", 1), Options{}).Ping(context.Background()).Err(); err == nil {
		t.Error("redis+cluster:// to a TLS cluster connected")
	}
}

// TestUnreachable checks that a client for a server that is down fails
// after one dial and no retry, with an error that names no credential.
func TestUnreachable(t *testing.T) {
	srv := redistest.Start(t)
	srv.Stop()
	c := newClient(t, "redis://app:the-password@"+srv.Addr()+"/0", Options{Timeout: 200 * time.Millisecond})
	dials := &dialCounter{}
	c.AddHook(dials)
	err := c.Ping(context.Background()).Err()
	if err == nil {
		t.Fatal("no error from a stopped server")
	}
	if n := dials.n.Load(); n != 1 {
		t.Errorf("%d dials for one command; one expected (no dial retried, no command retried)", n)
	}
	if strings.Contains(err.Error(), "the-password") {
		t.Errorf("error shows the password: %v", err)
	}
}

// dialCounter counts a client's dials.
type dialCounter struct{ n atomic.Int64 }

func (d *dialCounter) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		d.n.Add(1)
		return next(ctx, network, addr)
	}
}

func (d *dialCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (d *dialCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
