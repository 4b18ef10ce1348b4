package store

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/testkit/redistest"
	"github.com/mxgate/mxgate/ratelimit"
)

// BenchmarkSignedRequestStores is what a signed request passing mdx_hmac
// verify (replay window) and mx_rate_limit, both on one Redis, costs the
// two stores, from 64 goroutines at once: decided in turn (the replay
// record, then the token: two round trips) or together (one script), each
// with go-redis's connection pool alone or with requests sharing round
// trips (redisbatch). It reports this process's CPU, redis-server's CPU
// and its socket reads, per request. Run with
//
//	go test -run '^$' -bench SignedRequestStores -benchtime 40000x ./caddymodule/internal/store
func BenchmarkSignedRequestStores(b *testing.B) {
	srv := redistest.Start(b)
	policy := ratelimit.Policy{ratelimit.Get: {Rate: 1e9, Burst: 1e9}, ratelimit.Write: {Rate: ratelimit.Inf},
		ratelimit.Delete: {Rate: ratelimit.Inf}, ratelimit.Other: {Rate: ratelimit.Inf}}
	var seq atomic.Int64
	for _, mode := range []string{"in-turn", "in-turn-batched", "together", "together-batched"} {
		b.Run(mode, func(b *testing.B) {
			r := newPairReplica(b, srv.Addr(), pairOptions{policy: policy, noBatch: !strings.HasSuffix(mode, "batched"), localSize: 1 << 22})
			together := strings.HasPrefix(mode, "together")
			verdict := func(w http.ResponseWriter, _ *http.Request, fresh bool, err error) (bool, error) {
				return fresh && err == nil, err
			}
			req, w := httptest.NewRequest("GET", "/", nil), httptest.NewRecorder()
			one := func() error {
				key := sig(0)
				n := seq.Add(1)
				key[8], key[9], key[10], key[11] = byte(n), byte(n>>8), byte(n>>16), byte(n>>24)
				ctx := context.Background()
				if together {
					c := NewReplayClaim(nil, r.tiered, key, time.Now(), verdict)
					d := c.DecideWith(w, req, r.rl, r.fb, "client", ratelimit.Get, time.Now(), 0)
					if d.Refused || !d.Took || d.TakeErr != nil || !d.Res.Allowed {
						return fmt.Errorf("refused: %+v", d)
					}
					return nil
				}
				if fresh, err := r.tiered.Check(ctx, key, time.Now()); err != nil || !fresh {
					return fmt.Errorf("replay cache: %v %v", fresh, err)
				}
				if res, err := r.fb.Take(ctx, "client", ratelimit.Get, time.Now(), 0); err != nil || !res.Allowed {
					return fmt.Errorf("budget: %+v %v", res, err)
				}
				return nil
			}
			if err := one(); err != nil { // connections, scripts
				b.Fatal(err)
			}
			const goroutines = 64
			calls := b.N
			reads0, cpu0, rcpu0 := serverReads(b, r), selfCPU(), procCPU(srv.Pid())
			b.ResetTimer()
			var wg sync.WaitGroup
			for g := range goroutines {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := g; i < calls; i += goroutines {
						if err := one(); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			cpu1, rcpu1, reads1 := selfCPU(), procCPU(srv.Pid()), serverReads(b, r)
			per := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) / float64(calls) }
			b.ReportMetric(per(cpu1-cpu0), "client-cpu-µs/req")
			b.ReportMetric(per(rcpu1-rcpu0), "redis-cpu-µs/req")
			b.ReportMetric(float64(reads1-reads0-1)/float64(calls), "reads/req")
		})
	}
}

func serverReads(b *testing.B, r *pairReplica) int64 {
	info, err := r.client.Info(context.Background(), "stats").Result()
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "total_reads_processed:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is a process's user and system time, from /proc (10ms ticks).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * 10 * time.Millisecond
}
