package ratelimit

import (
	"context"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// keysInShard returns n keys that m keeps in the shard of key.
func keysInShard(m *Memory, key string, n int) []string {
	want := maphash.String(m.seed, key) % numShards
	var keys []string
	for i := 0; len(keys) < n; i++ {
		if k := fmt.Sprintf("%s-%d", key, i); maphash.String(m.seed, k)%numShards == want {
			keys = append(keys, k)
		}
	}
	return keys
}

// slowDelete is a policy whose DELETE budget takes half an hour to
// refill a token: a client that spent it stays throttled for a test.
func slowDelete() Policy {
	p := testPolicy()
	p[Delete] = Limit{Rate: 1.0 / 1800, Burst: 2}
	return p
}

// drain spends key's DELETE budget and checks that the next is refused.
func drain(t *testing.T, m *Memory, key string, now time.Time) {
	t.Helper()
	for i := range 2 {
		if !take(t, m, key, Delete, now).Allowed {
			t.Fatalf("%s: DELETE %d refused within the burst", key, i+1)
		}
	}
	if take(t, m, key, Delete, now).Allowed {
		t.Fatalf("%s: admitted past the burst", key)
	}
}

// TestThrottledKeyNeverResetByChurn: at the key cap, a flood of fresh keys
// never takes the place of a throttled key, however long the victim has
// been left alone (it is the least recently used of all): its budget
// stays spent. The control: the flood did fill the store and evict (the
// flood's keys refill) or overflow (they do not), so an eviction of the
// victim had every chance to happen.
func TestThrottledKeyNeverResetByChurn(t *testing.T) {
	for name, step := range map[string]time.Duration{
		"flood_of_refilled_keys":  time.Millisecond, // a GET refills in 100ms
		"flood_of_throttled_keys": time.Microsecond,
	} {
		t.Run(name, func(t *testing.T) {
			m, _ := NewMemory(slowDelete(), 64*4)
			victims := []string{"victim", "victim-2", "victim-3"}
			for _, v := range victims {
				drain(t, m, v, t0)
			}
			now := t0
			for i := range 50_000 {
				now = t0.Add(time.Duration(i) * step)
				take(t, m, fmt.Sprintf("flood-%d", i), Get, now)
			}
			if m.Evicted()+m.Overflowed() < 25_000 {
				t.Fatalf("control: the flood neither evicted nor overflowed (evicted %d, overflowed %d)", m.Evicted(), m.Overflowed())
			}
			for _, v := range victims {
				if r := take(t, m, v, Delete, now); r.Allowed || r.Overflow {
					t.Fatalf("%s: the flood reset a throttled key: %+v", v, r)
				}
			}
		})
	}
}

// TestFullBucketsEvictedFirst: a key whose buckets are full is evicted
// before, and instead of, one that is older but not full; with no full
// key left, a new key draws on the overflow budget.
func TestFullBucketsEvictedFirst(t *testing.T) {
	m, _ := NewMemory(testPolicy(), 64*4) // 4 keys a shard
	k := keysInShard(m, "k", 6)
	take(t, m, k[0], Delete, t0) // the least recently used; full again at 1s
	take(t, m, k[1], Get, t0)    // full again at 100ms
	take(t, m, k[2], Delete, t0)
	take(t, m, k[3], Delete, t0)
	at := t0.Add(200 * time.Millisecond)
	if r := take(t, m, k[4], Get, at); !r.Allowed || r.Overflow || m.Evicted() != 1 || m.Overflowed() != 0 {
		t.Fatalf("the new key: %+v; evicted %d, overflowed %d", r, m.Evicted(), m.Overflowed())
	}
	for _, key := range []string{k[0], k[2], k[3]} {
		if r := take(t, m, key, Delete, at); r.Allowed || r.Overflow {
			t.Fatalf("%s: a key that was not full was evicted: %+v", key, r)
		}
	}
	// no key is full: the next new key, and the evicted one coming back,
	// draw on the overflow budget
	for i, key := range []string{k[5], k[1]} {
		if r := take(t, m, key, Get, at); !r.Allowed || !r.Overflow || m.Overflowed() != uint64(i+1) || m.Evicted() != 1 {
			t.Fatalf("%s at the cap with no full key: %+v; evicted %d, overflowed %d", key, r, m.Evicted(), m.Overflowed())
		}
	}
	if m.Len() != 4 {
		t.Fatalf("%d keys held, cap 4", m.Len())
	}
	// once keys have refilled, a new key has room of its own again
	if r := take(t, m, k[5], Get, t0.Add(time.Second)); !r.Allowed || r.Overflow || m.Evicted() != 2 {
		t.Fatalf("after the refill: %+v; evicted %d", r, m.Evicted())
	}
}

// TestOverflowShared: the keys that find no room share one budget of the
// policy's size, whatever their number, and it refills at the policy's
// rate; a key with buckets of its own is not charged for them.
func TestOverflowShared(t *testing.T) {
	m, _ := NewMemory(testPolicy(), 64) // 1 key a shard
	k := keysInShard(m, "k", 30)
	drain5 := func(key string, now time.Time) {
		for range 5 {
			take(t, m, key, Get, now)
		}
	}
	drain5(k[0], t0)
	admitted := 0
	for _, key := range k[1:] {
		r := take(t, m, key, Get, t0)
		if !r.Overflow || r.Limit != 5 {
			t.Fatalf("%s: %+v, want the overflow budget", key, r)
		}
		if r.Allowed {
			admitted++
		} else if r.RetryAfter != 100*time.Millisecond {
			t.Fatalf("%s: Retry-After %v, want the overflow budget's 100ms", key, r.RetryAfter)
		}
	}
	if admitted != 5 || m.Overflowed() != 29 {
		t.Fatalf("%d admitted on the overflow budget (want its burst, 5); %d counted", admitted, m.Overflowed())
	}
	// it refills at the policy's rate: one GET 100ms later, not two
	at := t0.Add(100 * time.Millisecond)
	if r := take(t, m, k[1], Get, at); !r.Allowed || !r.Overflow {
		t.Fatalf("a token 100ms later: %+v", r)
	}
	if r := take(t, m, k[2], Get, at); r.Allowed {
		t.Fatalf("two tokens 100ms later: %+v", r)
	}
	// the overflow follows the policy
	p := testPolicy()
	p[Get] = Limit{Rate: 10, Burst: 7}
	if err := m.SetPolicy(p); err != nil {
		t.Fatal(err)
	}
	if r := take(t, m, k[3], Get, at); r.Limit != 7 || !r.Overflow {
		t.Fatalf("after SetPolicy: %+v", r)
	}
}

// TestEvictionConcurrent: floods of new keys, sweeps and policy changes
// running at once never reset throttled keys, nor let the store grow past
// its cap (run with -race).
func TestEvictionConcurrent(t *testing.T) {
	const maxKeys = 64 * 2
	m, _ := NewMemory(slowDelete(), maxKeys)
	var clock atomic.Int64 // microseconds after t0
	now := func() time.Time { return t0.Add(time.Duration(clock.Load()) * time.Microsecond) }
	victims := []string{"v0", "v1", "v2", "v3"}
	for _, v := range victims {
		drain(t, m, v, t0)
	}
	ctx := context.Background()
	var floods, others sync.WaitGroup
	var victimAdmitted atomic.Int64
	stop := make(chan struct{})
	for g := range 4 { // floods, one with waiting requests
		floods.Go(func() {
			for i := range 10_000 {
				clock.Add(100)
				wait := time.Duration(0)
				if g == 0 {
					wait = time.Second
				}
				r, _ := m.Take(ctx, fmt.Sprintf("flood-%d-%d", g, i), Class(i%3), now(), wait)
				if i%7 == 0 {
					r.Cancel(ctx, now())
				}
			}
		})
	}
	others.Go(func() { // the victims keep asking
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, v := range victims {
				if r, _ := m.Take(ctx, v, Delete, now(), 0); r.Allowed {
					victimAdmitted.Add(1)
				}
			}
		}
	})
	others.Go(func() { // sweeps and reloads
		p := slowDelete()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			m.Sweep(now())
			p[Get] = Limit{Rate: float64(10 + i%5), Burst: 5 + i%3}
			if err := m.SetPolicy(p); err != nil {
				t.Error(err)
				return
			}
			if n := m.Len(); n > maxKeys {
				t.Errorf("%d keys held, cap %d", n, maxKeys)
				return
			}
		}
	})
	// the floods run for 4s of the clock; a victim's token takes 30 minutes
	floods.Wait()
	close(stop)
	others.Wait()
	if n := victimAdmitted.Load(); n != 0 {
		t.Fatalf("throttled keys were admitted %d times", n)
	}
	if m.Evicted() == 0 || m.Overflowed() == 0 {
		t.Fatalf("control: evicted %d, overflowed %d; the floods did not reach the cap", m.Evicted(), m.Overflowed())
	}
}
