package main

import (
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// percentile returns the p-th percentile (0 < p <= 100) of sorted by the
// nearest-rank method: the smallest sample such that at least p % of the
// samples are less than or equal to it. It returns 0 for no samples.
func percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	// The tolerance keeps float error (99.9 % of 1000 is 999.0000000000001)
	// from moving the rank up by one.
	rank := int(math.Ceil(p*float64(n)/100 - 1e-9))
	rank = min(max(rank, 1), n)
	return sorted[rank-1]
}

// median returns the median of xs (the mean of the middle two for an even
// count), or 0 for none. xs is not changed.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// medianDuration is median for durations.
func medianDuration(ds []time.Duration) time.Duration {
	xs := make([]float64, len(ds))
	for i, d := range ds {
		xs[i] = float64(d)
	}
	return time.Duration(median(xs))
}

// latencies summarises a sample of latencies.
type latencies struct {
	n             int
	p50, p99, max time.Duration
	p90, p999     time.Duration
}

// summarise sorts ds in place and summarises it.
func summarise(ds []time.Duration) latencies {
	slices.Sort(ds)
	l := latencies{n: len(ds), p50: percentile(ds, 50), p90: percentile(ds, 90), p99: percentile(ds, 99), p999: percentile(ds, 99.9)}
	if len(ds) > 0 {
		l.max = ds[len(ds)-1]
	}
	return l
}

// cpuTicks is the machine's CPU time from /proc/stat's first line: all of
// it, the part the hypervisor gave to other guests (steal), and the part
// processes used (busy).
type cpuTicks struct{ total, steal, busy uint64 }

// readSteal reads cpuTicks; zero if /proc/stat cannot be read.
func readSteal() cpuTicks {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTicks{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return parseCPULine(line)
}

// parseCPULine reads "cpu  user nice system idle iowait irq softirq steal
// guest guest_nice"; steal is the eighth number.
func parseCPULine(line string) cpuTicks {
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return cpuTicks{}
	}
	var t cpuTicks
	for i, v := range f[1:] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return cpuTicks{}
		}
		if i < 8 { // guest time is already counted in user
			t.total += n
		}
		// Processes' time: user, nice, system. Interrupts are left out:
		// loopback traffic, the benchmark's own, is handled in softirq
		// time that no process is charged with.
		if i <= 2 {
			t.busy += n
		}
		if i == 7 {
			t.steal = n
		}
	}
	return t
}

// since is the fraction of the CPU time from before to t that was stolen;
// 0 if none passed or either reading failed.
func (t cpuTicks) since(before cpuTicks) float64 {
	if t.total <= before.total || before.total == 0 {
		return 0
	}
	return float64(t.steal-before.steal) / float64(t.total-before.total)
}

// readFileString returns the file's contents.
func readFileString(path string) (string, error) {
	b, err := os.ReadFile(path)
	return string(b), err
}
