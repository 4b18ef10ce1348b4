package replay

import (
	"context"
	"errors"
	"testing"
	"time"
)

var ctx = context.Background()

func k(i int) Key { return Key{byte(i), byte(i >> 8), byte(i >> 16), 1} }

func TestWindow(t *testing.T) {
	m, err := NewMemory(time.Minute, 100)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1000, 0)
	if fresh, err := m.Check(ctx, k(1), t0); !fresh || err != nil {
		t.Fatalf("first sight: %v %v", fresh, err)
	}
	if fresh, _ := m.Check(ctx, k(1), t0.Add(59*time.Second)); fresh {
		t.Fatal("replay inside the window was fresh")
	}
	if fresh, _ := m.Check(ctx, k(2), t0.Add(30*time.Second)); !fresh {
		t.Fatal("another key was not fresh")
	}
	if fresh, _ := m.Check(ctx, k(1), t0.Add(time.Minute)); !fresh {
		t.Fatal("key not fresh again once its window has passed")
	}
	// k(1) was re-recorded at t0+60s; k(2) expires at t0+90s
	if fresh, _ := m.Check(ctx, k(2), t0.Add(89*time.Second)); fresh {
		t.Fatal("k2 expired early")
	}
	if fresh, _ := m.Check(ctx, k(1), t0.Add(119*time.Second)); fresh {
		t.Fatal("re-recorded k1 expired early")
	}
}

func TestBoundAndRecovery(t *testing.T) {
	m, _ := NewMemory(time.Second, 1000)
	t0 := time.Unix(1000, 0)
	for i := range 1000 {
		if fresh, err := m.Check(ctx, k(i), t0.Add(time.Duration(i)*time.Microsecond)); !fresh || err != nil {
			t.Fatalf("key %d: %v %v", i, fresh, err)
		}
	}
	if _, err := m.Check(ctx, k(5000), t0.Add(time.Millisecond)); !errors.Is(err, ErrFull) {
		t.Fatalf("over the bound: %v", err)
	}
	if m.Len() != 1000 {
		t.Fatalf("Len = %d after a refused insert", m.Len())
	}
	// a replay is still detected while full
	if fresh, err := m.Check(ctx, k(7), t0.Add(time.Millisecond)); fresh || err != nil {
		t.Fatalf("replay while full: %v %v", fresh, err)
	}
	// once the window has passed, everything expires and space returns
	if fresh, err := m.Check(ctx, k(5000), t0.Add(2*time.Second)); !fresh || err != nil {
		t.Fatalf("after expiry: %v %v", fresh, err)
	}
	if m.Len() != 1 {
		t.Fatalf("Len = %d, want 1", m.Len())
	}
}

func TestRingWrap(t *testing.T) {
	m, _ := NewMemory(10*time.Millisecond, 64)
	now := time.Unix(0, 0)
	for i := range 10000 {
		now = now.Add(time.Millisecond)
		if fresh, err := m.Check(ctx, k(i), now); !fresh || err != nil {
			t.Fatalf("key %d: %v %v", i, fresh, err)
		}
		if i >= 5 {
			if fresh, _ := m.Check(ctx, k(i-5), now); fresh {
				t.Fatalf("key %d, 5 ms old, was fresh", i-5)
			}
		}
		if m.Len() > 11 {
			t.Fatalf("Len = %d: expired entries are kept", m.Len())
		}
	}
}

func TestBadConfig(t *testing.T) {
	if _, err := NewMemory(0, 1); err == nil {
		t.Error("zero window accepted")
	}
	if _, err := NewMemory(time.Second, 0); err == nil {
		t.Error("zero size accepted")
	}
}

func BenchmarkCheck(b *testing.B) {
	m, _ := NewMemory(time.Minute, 1<<20)
	now := time.Unix(0, 0)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		now = now.Add(100 * time.Microsecond)
		m.Check(ctx, k(i), now)
		i++
	}
}
