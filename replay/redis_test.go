package replay

import (
	"encoding/hex"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mxgate/mxgate/internal/testkit/redistest"
)

func TestRedisSharedAcrossReplicas(t *testing.T) {
	srv := redistest.Start(t)
	opts := &redis.Options{Addr: srv.Addr(), DialTimeout: 200 * time.Millisecond, ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond, MaxRetries: -1}
	c1, c2 := redis.NewClient(opts), redis.NewClient(opts)
	defer c1.Close()
	defer c2.Close()
	a, _ := NewRedis(c1, "test:replay:", 300*time.Millisecond)
	b, _ := NewRedis(c2, "test:replay:", 300*time.Millisecond)
	other, _ := NewRedis(c2, "test:other:", 300*time.Millisecond)
	if fresh, err := a.Check(ctx, k(1), time.Time{}); !fresh || err != nil {
		t.Fatalf("first: %v %v", fresh, err)
	}
	if fresh, err := b.Check(ctx, k(1), time.Time{}); fresh || err != nil {
		t.Fatalf("replay on another replica: %v %v", fresh, err)
	}
	if fresh, _ := other.Check(ctx, k(1), time.Time{}); !fresh {
		t.Fatal("another prefix shares keys")
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		if fresh, _ := b.Check(ctx, k(1), time.Time{}); fresh {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("key never expired")
		}
		time.Sleep(50 * time.Millisecond)
	}
	srv.Stop()
	if _, err := a.Check(ctx, k(2), time.Time{}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("outage: %v", err)
	}
	if _, err := a.Check(ctx, k(3), time.Time{}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("outage, breaker open: %v", err)
	}
}

// TestRedisWaitForReplicas: a store that waits for a replica refuses to
// vouch for a fresh key no replica holds, and vouches once one does.
func TestRedisWaitForReplicas(t *testing.T) {
	master := redistest.Start(t)
	opts := &redis.Options{Addr: master.Addr(), DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second, MaxRetries: -1}
	c := redis.NewClient(opts)
	defer c.Close()
	r, _ := NewRedis(c, "test:wait:", time.Minute)
	r.WaitForReplicas(1, 50*time.Millisecond)
	r.SetProbeInterval(time.Millisecond)
	if fresh, err := r.Check(ctx, k(1), time.Time{}); fresh || !errors.Is(err, ErrNotReplicated) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("no replica: %v %v", fresh, err)
	}
	replica := redistest.Start(t, "--replicaof", "127.0.0.1", strconv.Itoa(master.Port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		time.Sleep(20 * time.Millisecond)
		fresh, err := r.Check(ctx, k(2), time.Time{})
		if err == nil {
			if !fresh {
				t.Fatal("a fresh key was reported seen")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replica never acknowledged: %v", err)
		}
	}
	rc := redis.NewClient(&redis.Options{Addr: replica.Addr()})
	defer rc.Close()
	k2 := k(2)
	if n, _ := rc.Exists(ctx, "test:wait:"+hex.EncodeToString(k2[:])).Result(); n != 1 {
		t.Fatal("the acknowledged key is not on the replica")
	}
	if fresh, err := r.Check(ctx, k(2), time.Time{}); fresh || err != nil {
		t.Fatalf("a replay with a replica: %v %v", fresh, err)
	}
}
