package replay

import (
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mxgate/mxgate/internal/redistest"
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
