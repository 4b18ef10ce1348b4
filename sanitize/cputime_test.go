//go:build linux

package sanitize

import (
	"bytes"
	"io"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// TestCPUThroughput measures throughput per second of CPU time used by
// the process, rather than per second of wall time: on a machine shared
// with other work, wall time counts the time spent waiting for a core.
// It runs only with SANITIZE_CPU_BENCH=1:
//
//	SANITIZE_CPU_BENCH=1 go test -run CPUThroughput -v ./sanitize
func TestCPUThroughput(t *testing.T) {
	if os.Getenv("SANITIZE_CPU_BENCH") != "1" {
		t.Skip("set SANITIZE_CPU_BENCH=1 to run")
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	in := accountsDoc()
	g := newGuard(t, Options{})
	for _, c := range []struct {
		name string
		run  func() error
	}{
		{"scanner mask", func() error { _, err := g.Mask(io.Discard, bytes.NewReader(in), Identity); return err }},
		{"scanner inspect", func() error { _, err := g.Inspect(bytes.NewReader(in), Identity); return err }},
		{"encoding/xml mask", func() error {
			_, err := refProcess(io.Discard, bytes.NewReader(in), refOptions{Mask: true})
			return err
		}},
	} {
		var best float64
		for range 5 {
			n := 0
			start := cpuTime()
			for cpuTime()-start < 500*time.Millisecond {
				if err := c.run(); err != nil {
					t.Fatal(err)
				}
				n++
			}
			mbs := float64(n*len(in)) / 1e6 / (cpuTime() - start).Seconds()
			best = max(best, mbs)
		}
		t.Logf("%-18s %7.1f MB per CPU second (best of 5)", c.name, best)
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
