package redisconf

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mxgate/mxgate/internal/redisbatch"
	"github.com/mxgate/mxgate/internal/testkit/redistest"
	"github.com/mxgate/mxgate/ratelimit"
)

// BenchmarkConcurrent measures what concurrent requests of one gateway pay
// per store call (the rate limiter's script) when they share one client:
// go-redis's connection pool (one connection, and one round trip, per call
// in flight) against its autopipeliner (calls in flight on several
// goroutines written and read together). It reports this process's CPU
// (the client's), redis-server's CPU and its socket reads, each per call,
// and calls a second. Run with
//
//	go test -run '^$' -bench Concurrent -benchtime 40000x ./internal/redisconf
func BenchmarkConcurrent(b *testing.B) {
	srv := redistest.Start(b)
	for _, mode := range []string{"pool", "batch1", "batch2", "batch4", "autopipeline"} {
		for _, n := range []int{1, 8, 64} {
			b.Run(fmt.Sprintf("%s/goroutines=%d", mode, n), func(b *testing.B) {
				var c redis.UniversalClient = newClient(b, srv.URL(), Options{Timeout: time.Second})
				var batcher *redisbatch.Batcher
				switch mode {
				case "autopipeline":
					ap, err := c.AutoPipeline()
					if err != nil {
						b.Fatal(err)
					}
					c = ap
				case "batch1", "batch2", "batch4":
					batcher = redisbatch.New(c, int(mode[len(mode)-1]-'0'))
				}
				l, err := ratelimit.NewRedis(c, "bench:conc:", ratelimit.Policy{
					ratelimit.Get: {Rate: 1e9, Burst: 1e9}, ratelimit.Write: {Rate: 1, Burst: 1},
					ratelimit.Delete: {Rate: 1, Burst: 1}, ratelimit.Other: {Rate: ratelimit.Inf}})
				if err != nil {
					b.Fatal(err)
				}
				if batcher != nil {
					l.SetBatcher(batcher)
				}
				ctx := context.Background()
				if _, err := l.Take(ctx, "warm", ratelimit.Get, time.Now(), 0); err != nil {
					b.Fatal(err)
				}
				calls := b.N
				r0, c0, t0 := redisCounters(b, c, srv.Pid()), processCPU(), time.Now()
				b.ResetTimer()
				var wg sync.WaitGroup
				for g := range n {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := g; i < calls; i += n {
							if _, err := l.Take(ctx, "", ratelimit.Get, time.Now(), 0); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				b.StopTimer()
				elapsed, c1, r1 := time.Since(t0), processCPU(), redisCounters(b, c, srv.Pid())
				per := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) / float64(calls) }
				b.ReportMetric(per(c1-c0), "client-cpu-µs/call")
				b.ReportMetric(per(r1.cpu-r0.cpu), "redis-cpu-µs/call")
				b.ReportMetric(float64(r1.reads-r0.reads-1)/float64(calls), "reads/call")
				b.ReportMetric(float64(calls)/elapsed.Seconds(), "calls/s")
			})
		}
	}
}

type counters struct {
	cpu   time.Duration
	reads int64
}

// redisCounters reads redis-server's CPU time and its socket reads.
func redisCounters(b *testing.B, c redis.UniversalClient, pid int) counters {
	info, err := c.Info(context.Background(), "stats").Result()
	if err != nil {
		b.Fatal(err)
	}
	var out counters
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "total_reads_processed:"); ok {
			out.reads, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(stat)[strings.LastIndexByte(string(stat), ')')+1:])
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	out.cpu = time.Duration(u+s) * 10 * time.Millisecond
	return out
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
