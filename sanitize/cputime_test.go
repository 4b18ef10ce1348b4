//go:build linux

package sanitize

import (
	"bytes"
	"io"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// BenchmarkCPUThroughput reports throughput per second of CPU time used by
// the process (MB/cpu-s), beside the usual per second of wall time: on a
// machine shared with other work, wall time counts the time spent waiting
// for a core. It runs on one core:
//
//	go test -run '^$' -bench CPUThroughput ./sanitize
func BenchmarkCPUThroughput(b *testing.B) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	in := accountsDoc()
	g := newGuard(b, Options{})
	for _, c := range []struct {
		name string
		run  func() error
	}{
		{"scanner_mask", func() error { _, err := g.Mask(io.Discard, bytes.NewReader(in), Identity); return err }},
		{"scanner_inspect", func() error { _, err := g.Inspect(bytes.NewReader(in), Identity); return err }},
		{"encoding_xml_mask", func() error {
			_, err := refProcess(io.Discard, bytes.NewReader(in), refOptions{Mask: true})
			return err
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(in)))
			start := cpuTime()
			for b.Loop() {
				if err := c.run(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*len(in))/1e6/(cpuTime()-start).Seconds(), "MB/cpu-s")
		})
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
