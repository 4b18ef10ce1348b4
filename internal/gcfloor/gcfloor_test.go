package gcfloor

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		name               string
		base               int
		live, roots, floor uint64
		want               int
	}{
		{"small live heap is raised to the floor", 200, 8 * mib, 0, 64 * mib, 700},
		{"stacks and globals count with the live heap", 200, 8 * mib, 8 * mib, 64 * mib, 350},
		{"rounds up so the goal is not under the floor", 100, 3 * mib, 0, 10 * mib, 234},
		{"never below the base", 200, 30 * mib, 0, 64 * mib, 200},
		{"live heap above the floor keeps the base", 200, 100 * mib, 0, 64 * mib, 200},
		{"collector off stays off", -1, 8 * mib, 0, 64 * mib, -1},
		{"no floor keeps the base", 150, 8 * mib, 0, 0, 150},
		{"live heap unknown keeps the base", 200, 0, 0, 64 * mib, 200},
		{"tiny live heap: the runtime's smallest goal is the floor", 100, 1, 0, 64 * mib, 1600},
		{"small live heap: the runtime's smallest goal caps it", 100, 1 * mib, 0, 64 * mib, 1600},
		{"huge floor is capped", 100, 1, 0, 1 << 62, maxPercent},
		{"floor that would overflow", 100, 3, 0, 1<<64 - 1, maxPercent},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := Percent(c.base, c.live, c.roots, c.floor)
			if got != c.want {
				t.Fatalf("Percent(%d, %d, %d, %d) = %d, want %d", c.base, c.live, c.roots, c.floor, got, c.want)
			}
			if c.base < 0 || c.live == 0 || c.floor <= c.live || got == maxPercent {
				return
			}
			// The runtime's goal: the larger of its formula and its
			// smallest goal, both scaled by the percentage.
			goal := max(c.live+(c.live+c.roots)*uint64(got)/100, minHeap*uint64(got)/100)
			if goal < c.floor {
				t.Fatalf("goal %d is under the floor %d", goal, c.floor)
			}
			if got > c.base && goal > c.floor+c.floor/50 {
				t.Fatalf("goal %d overshoots the floor %d", goal, c.floor)
			}
		})
	}
}

func heapGoal() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// keepHeard is Keep, with a channel that hears every adjustment that
// follows a collection.
func keepHeard(size uint64, base int) (*Floor, <-chan struct{}) {
	ch := make(chan struct{}, 64)
	f := keep(size, base, func() {
		select {
		case ch <- struct{}{}:
		default:
		}
	})
	return f, ch
}

// collect runs a collection and waits for the floor's adjustment after it.
func collect(t *testing.T, adjusted <-chan struct{}) {
	t.Helper()
	for len(adjusted) > 0 { // adjustments after earlier collections
		<-adjusted
	}
	runtime.GC()
	select {
	case <-adjusted:
	case <-time.After(time.Minute): // a hang guard, not a measure
		t.Fatal("no adjustment after a collection")
	}
}

// TestKeepRaisesTheGoalAndStopRestores runs the floor in this process:
// the test binary's live heap is a few MiB, under the floor.
func TestKeepRaisesTheGoalAndStopRestores(t *testing.T) {
	old := debug.SetGCPercent(100)
	defer debug.SetGCPercent(old)
	const floor = 256 << 20
	runtime.GC()
	if g := heapGoal(); g >= floor/2 {
		t.Fatalf("before the floor: heap goal %d MiB", g>>20)
	}

	f, adjusted := keepHeard(floor, 100)
	// At or above the floor, and not far above it: the percentage is not
	// raised so far that the runtime's smallest goal passes the floor.
	near := func(g uint64) bool { return g >= floor && g <= floor+floor/10 }
	if g := heapGoal(); !near(g) {
		t.Fatalf("with the floor: heap goal %d MiB", g>>20)
	}
	// It keeps adjusting after later collections, not only the first.
	for i := range 3 {
		collect(t, adjusted)
		if g := heapGoal(); !near(g) {
			t.Fatalf("after collection %d: heap goal %d MiB", i+1, g>>20)
		}
	}

	f.Stop()
	f.Stop() // twice is harmless
	runtime.GC()
	if g := heapGoal(); g >= floor/2 {
		t.Fatalf("after Stop: heap goal %d MiB", g>>20)
	}
	if p := debug.SetGCPercent(100); p != 100 {
		t.Fatalf("after Stop the percentage is %d, want the base 100", p)
	}
}

// TestKeepLeavesACollectorThatIsOffAlone: GOGC=off is the operator's
// choice; the floor must not turn the collector back on, nor watch the
// collections.
func TestKeepLeavesACollectorThatIsOffAlone(t *testing.T) {
	old := debug.SetGCPercent(-1)
	defer debug.SetGCPercent(old)
	f := Keep(64<<20, -1)
	if !f.stopped {
		t.Fatal("Keep armed a floor under a collector that is off")
	}
	runtime.GC()
	if p := debug.SetGCPercent(-1); p != -1 {
		t.Fatalf("the percentage is %d, want -1 (off)", p)
	}
	f.Stop()
	if p := debug.SetGCPercent(-1); p != -1 {
		t.Fatalf("after Stop the percentage is %d, want -1 (off)", p)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]uint64{
		"64MiB": 64 << 20, "64MB": 64_000_000, " 128 MiB ": 128 << 20, "0": 0, "off": 0, "OFF": 0, "1048576": 1 << 20,
	} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "lots", "-1MiB", "64XB"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) gave no error", in)
		}
	}
}

func TestCurrentPercent(t *testing.T) {
	old := debug.SetGCPercent(150)
	defer debug.SetGCPercent(old)
	if got := CurrentPercent(); got != 150 {
		t.Fatalf("CurrentPercent() = %d, want 150", got)
	}
	debug.SetGCPercent(-1)
	if got := CurrentPercent(); got != -1 {
		t.Fatalf("with the collector off CurrentPercent() = %d, want -1", got)
	}
}
