package main

import (
	"flag"
	"time"
)

// On a machine shared with other work in the same virtual machine, the
// hypervisor's steal says nothing of it: other processes take the CPU
// the benchmark needs, and an open-loop slice then measures them. A slice
// counts as quiet only if, besides steal, the CPU time of processes other
// than the benchmark's own (this process, the targets, the upstream) was
// at most -quiet-foreign of the machine's.
var quietForeign = flag.Float64("quiet-foreign", 0.05, "the fraction of the machine's CPU that processes other than the benchmark's own (the load generator, the targets, the upstream) may take for a slice of -open-slice to count as quiet (from /proc/stat less the benchmark's processes); 1 to ignore")

// upstreamPid is the upstream's process, one of the benchmark's own.
var upstreamPid int

// sampleOwnCPU returns the CPU time used so far by the benchmark's own
// processes: this one, every target's, the upstream's.
func sampleOwnCPU(ts []*target) time.Duration {
	d := selfCPU()
	for _, t := range ts {
		d += cpuOf(t.pids)
	}
	if upstreamPid != 0 {
		d += treeCPU(upstreamPid)
	}
	return d
}

// foreignSince is the fraction of the machine's CPU time from before to
// after that was busy but not the benchmark's own (ownBefore, ownAfter);
// 0 if /proc/stat could not be read.
func foreignSince(before, after cpuTicks, ownBefore, ownAfter time.Duration) float64 {
	if before.total == 0 || after.total <= before.total {
		return 0
	}
	const tick = 10 * time.Millisecond // USER_HZ is 100
	busy := time.Duration(after.busy-before.busy) * tick
	total := time.Duration(after.total-before.total) * tick
	foreign := busy - (ownAfter - ownBefore)
	if foreign < 0 {
		return 0
	}
	return float64(foreign) / float64(total)
}
