package breaker

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clock is a test clock that moves only when told.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Add(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }

func TestBreaker(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	b := Breaker{Probe: 50 * time.Millisecond, Now: c.Now}
	if !b.Allow() || !b.Healthy() {
		t.Fatal("new breaker refuses")
	}
	b.Fail()
	if b.Allow() || b.Healthy() {
		t.Fatal("allowed right after a failure")
	}
	c.Add(49 * time.Millisecond)
	if b.Allow() {
		t.Fatal("allowed before the probe interval passed")
	}
	c.Add(time.Millisecond)
	if !b.Allow() {
		t.Fatal("no probe once the interval passed")
	}
	if b.Allow() {
		t.Fatal("a second probe in the same interval")
	}
	// one probe per interval, however many callers
	b.Fail()
	c.Add(60 * time.Millisecond)
	var probes atomic.Int32
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if b.Allow() {
				probes.Add(1)
			}
		}()
	}
	wg.Wait()
	if probes.Load() != 1 {
		t.Fatalf("%d probes, want 1", probes.Load())
	}
	// the probe that went out failed: the next is an interval later
	b.Fail()
	c.Add(49 * time.Millisecond)
	if b.Allow() {
		t.Fatal("probed again before the interval after a failed probe")
	}
	b.Succeed()
	if !b.Allow() || !b.Healthy() {
		t.Fatal("not healthy after success")
	}
}

func TestZeroValue(t *testing.T) {
	var b Breaker
	if b.Interval() != DefaultProbe || !b.Allow() || !b.Healthy() {
		t.Fatalf("zero value: interval %v, allow %v, healthy %v", b.Interval(), b.Allow(), b.Healthy())
	}
}
