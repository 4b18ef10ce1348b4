package breaker

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestBreaker(t *testing.T) {
	var b Breaker
	b.Probe = 50 * time.Millisecond
	if !b.Allow() || !b.Healthy() {
		t.Fatal("new breaker refuses")
	}
	b.Fail()
	if b.Allow() || b.Healthy() {
		t.Fatal("allowed right after a failure")
	}
	deadline := time.Now().Add(2 * time.Second)
	for !b.Allow() {
		if time.Now().After(deadline) {
			t.Fatal("never probed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// one probe per interval, however many callers
	b.Fail()
	time.Sleep(60 * time.Millisecond)
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
	b.Succeed()
	if !b.Allow() || !b.Healthy() {
		t.Fatal("not healthy after success")
	}
}
