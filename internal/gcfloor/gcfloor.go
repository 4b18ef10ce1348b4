// Package gcfloor keeps the Go collector's heap goal from falling below a
// floor.
//
// Go sets the heap goal at the live heap times 1+GOGC/100. A gateway's live
// heap is a few megabytes and nearly everything it allocates is per-request
// garbage, so at a steady load the collector runs several times a second,
// and each cycle (a few milliseconds of marking, with assists and two short
// stops of the world on a busy machine) lands on the requests in flight. A
// floor under the goal makes cycles rare while the live heap is small, and
// changes nothing once the live heap times 1+GOGC/100 is above it: a large
// live heap (many slow clients holding bodies, say) is collected as GOGC
// says. A memory limit (GOMEMLIMIT, or runtime/debug.SetMemoryLimit) still
// wins over the floor: the collector runs whenever the limit needs it.
//
// The floor is kept by raising the collector's percentage after each cycle,
// from the live heap the cycle measured, as far as the floor needs and
// never below the base percentage.
package gcfloor

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"sync"

	"github.com/dustin/go-humanize"
)

// maxPercent bounds the percentage the floor sets: with a live heap of a
// few hundred kilobytes (a process that has done nothing yet) the floor
// alone would ask for hundreds of times the live heap.
const maxPercent = 100_000

// minHeap is the runtime's smallest heap goal at GOGC=100. It scales with
// the percentage (4 MiB × GOGC/100), so a percentage raised for a tiny
// live heap would raise the smallest goal far past the floor.
const minHeap = 4 << 20

// Percent returns the collector percentage that gives a heap goal of at
// least floor bytes for a live heap of live bytes, and never less than
// base. roots is the scannable stack and global bytes, which the runtime
// counts with the live heap when it sets the goal: live + (live + roots) ×
// percentage/100. It returns base when base is negative (the collector is
// off), when live is not known (0), or when floor is 0. The percentage is
// also kept low enough that the runtime's smallest goal (4 MiB ×
// percentage/100) does not go past the floor.
func Percent(base int, live, roots, floor uint64) int {
	if base < 0 || live == 0 || floor == 0 || live >= floor {
		return base
	}
	scanned := live + roots
	var p uint64
	if (floor-live)/scanned >= maxPercent/100 {
		p = maxPercent
	} else {
		// p = ceil((floor − live) × 100 / scanned)
		p = (floor - live) * 100 / scanned
		if (floor-live)*100%scanned != 0 {
			p++
		}
	}
	if floor <= math.MaxUint64/100 {
		p = min(p, floor*100/minHeap)
	}
	return max(base, int(p))
}

// A Floor keeps the heap goal at or above its size until stopped.
type Floor struct {
	size uint64
	base int

	mu      sync.Mutex
	stopped bool
	current int
	sample  []metrics.Sample

	adjusted func() // tests: runs after each adjustment that follows a collection
}

// The runtime's measures of the last cycle: the live heap, and the stack
// and global bytes it scanned.
var sampleNames = []string{"/gc/heap/live:bytes", "/gc/scan/stack:bytes", "/gc/scan/globals:bytes"}

// Keep starts keeping the heap goal at or above size bytes, with base as
// the collector percentage it never goes below (GOGC's value: the caller
// passes what it has set). It adjusts after every collection. A size of 0,
// or a negative base (the collector off), keeps nothing and returns a
// Floor whose Stop does nothing.
func Keep(size uint64, base int) *Floor { return keep(size, base, nil) }

func keep(size uint64, base int, adjusted func()) *Floor {
	f := &Floor{size: size, base: base, current: base, sample: make([]metrics.Sample, len(sampleNames)), adjusted: adjusted}
	for i, n := range sampleNames {
		f.sample[i].Name = n
	}
	if size == 0 || base < 0 {
		f.stopped = true
		return f
	}
	f.adjust()
	f.arm()
	return f
}

// Stop ends the adjustments and puts the base percentage back.
func (f *Floor) Stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return
	}
	f.stopped = true
	if f.current != f.base {
		debug.SetGCPercent(f.base)
		f.current = f.base
	}
}

// sentinel is garbage from the moment it is made: its cleanup runs after
// the next collection, adjusts, and makes the next sentinel.
type sentinel struct{ _ [2]*int }

func (f *Floor) arm() {
	s := &sentinel{}
	runtime.AddCleanup(s, func(f *Floor) {
		if f.adjust() {
			f.arm()
		}
		if f.adjusted != nil {
			f.adjusted()
		}
	}, f)
}

// adjust sets the percentage for the live heap the last collection
// measured, and reports whether the floor is still kept.
func (f *Floor) adjust() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return false
	}
	metrics.Read(f.sample)
	var v [3]uint64
	for i := range f.sample {
		if f.sample[i].Value.Kind() != metrics.KindUint64 {
			return true // not measured by this runtime: keep what is set
		}
		v[i] = f.sample[i].Value.Uint64()
	}
	p := Percent(f.base, v[0], v[1]+v[2], f.size)
	// Setting the percentage costs little, but a fall of a few percent is
	// not worth one. A rise always is: the goal must not sit under the
	// floor.
	if p > f.current || p != f.current && (p == f.base || f.current-p > f.current/16) {
		debug.SetGCPercent(p)
		f.current = p
	}
	return true
}

// ParseSize reads a floor as written in the environment: a size such as
// 64MiB (binary units) or 64MB (decimal: 64,000,000 bytes), a plain
// number of bytes, or 0 or off for none. An empty value is an error: the
// caller treats an empty variable as unset.
func ParseSize(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty size")
	}
	if strings.EqualFold(s, "off") {
		return 0, nil
	}
	n, err := humanize.ParseBytes(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size such as 64MiB, or off", s)
	}
	return n, nil
}

// CurrentPercent returns the collector percentage in force (GOGC's value,
// -1 when the collector is off), read without changing it.
func CurrentPercent() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		// Not measured by this runtime: read it by setting it back.
		p := debug.SetGCPercent(-1)
		debug.SetGCPercent(p)
		return p
	}
	return int(int64(s[0].Value.Uint64()))
}
