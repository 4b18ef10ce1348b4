package redisconf

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/testkit/redistest"
	"github.com/mxgate/mxgate/ratelimit"
)

// BenchmarkRoundTrip measures one store call as the gateway makes it, per
// topology: the replay cache's SET NX of a fresh key, and the rate
// limiter's script (EVALSHA) on one client's bucket. Run with
//
//	go test -run '^$' -bench RoundTrip -benchtime 2000x ./internal/redisconf
func BenchmarkRoundTrip(b *testing.B) {
	topologies := []struct {
		name  string
		setup func(b *testing.B) (string, Options)
	}{
		{"standalone", func(b *testing.B) (string, Options) { return redistest.Start(b).URL(), Options{} }},
		{"tls", func(b *testing.B) (string, Options) {
			pki := redistest.NewPKI(b)
			srv := redistest.StartTLS(b, pki)
			return srv.URL(), Options{TLS: TLSOptions{CAFile: pki.CAFile, CertFile: pki.ClientCert, KeyFile: pki.ClientKey}}
		}},
		{"sentinel", func(b *testing.B) (string, Options) { return redistest.StartSentinel(b, "bench").URL(), Options{} }},
		{"cluster", func(b *testing.B) (string, Options) { return redistest.StartCluster(b, 3, nil).URL(), Options{} }},
	}
	for _, topo := range topologies {
		b.Run(topo.name, func(b *testing.B) {
			url, opts := topo.setup(b)
			c := newClient(b, url, opts)
			s := newStores(b, c, "bench:")
			ctx := context.Background()
			// Warm the pool and load the script.
			if _, err := s.limiter.Take(ctx, "warm", ratelimit.Get, time.Now(), 0); err != nil {
				b.Fatal(err)
			}
			b.Run("setnx", func(b *testing.B) {
				lat := make([]time.Duration, 0, b.N)
				for b.Loop() {
					t0 := time.Now()
					if _, err := s.replay.Check(ctx, randomKey(), time.Now()); err != nil {
						b.Fatal(err)
					}
					lat = append(lat, time.Since(t0))
				}
				reportPercentiles(b, lat)
			})
			b.Run("evalsha", func(b *testing.B) {
				lat := make([]time.Duration, 0, b.N)
				i := 0
				for b.Loop() {
					i++
					t0 := time.Now()
					// Spread over buckets, and so over a Cluster's slots.
					if _, err := s.limiter.Take(ctx, fmt.Sprint("client-", i%64), ratelimit.Get, time.Now(), 0); err != nil {
						b.Fatal(err)
					}
					lat = append(lat, time.Since(t0))
				}
				reportPercentiles(b, lat)
			})
		})
	}
}

// reportPercentiles adds the median and 99th percentile of lat, in
// microseconds: on a shared machine the mean (ns/op) follows the load of
// other processes more than the median does.
func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
