// Command ratelimit measures mx_rate_limit end to end: real mxgate
// processes started from Caddyfiles on loopback, a real upstream, a real
// redis-server, and open-loop load at a fixed offered rate. The accuracy
// is measured for one replica in memory, three sharing Redis, and three
// sharing Redis behind mdx_hmac verify with a replay window on the same
// Redis (signed requests, each signature's record and its token decided
// in one script call). It prints a Markdown report.
//
//	go -C bench run ./ratelimit [-duration 10s] [-limit 500]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mxgate/mxgate/bench/internal/harness"
	"github.com/mxgate/mxgate/hmac"
	"github.com/mxgate/mxgate/ratelimit"
)

var (
	duration = flag.Duration("duration", 10*time.Second, "how long each load runs")
	limit    = flag.Int("limit", 500, "the GET limit per second")
	burst    = flag.Int("burst", 50, "the GET burst")
)

func main() {
	flag.Parse()
	log.SetFlags(0)
	harness.ToRoot()
	dir, err := os.MkdirTemp("", "mxgate-bench-")
	harness.Check(err)
	defer os.RemoveAll(dir)

	bin := harness.Build(dir)

	var upstreamHits atomic.Int64
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upstreamHits.Add(1)
		io.WriteString(w, "ok")
	})}
	upL, err := net.Listen("tcp", "127.0.0.1:0")
	harness.Check(err)
	go up.Serve(upL)

	redisPort := harness.FreePort()
	redisCmd := exec.Command("redis-server", "--port", fmt.Sprint(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
	harness.Check(redisCmd.Start())
	defer redisCmd.Process.Kill()
	redisURL := fmt.Sprintf("redis://127.0.0.1:%d/0", redisPort)
	harness.WaitTCP(fmt.Sprintf("127.0.0.1:%d", redisPort))

	fmt.Printf("Machine: %d CPUs (`nproc`), everything on loopback: load generator, mxgate processes, upstream, redis-server.\n\n", harness.NumCPU())

	// 1. Accuracy at twice the limit: one replica (memory), three sharing Redis.
	fmt.Printf("### Accuracy: offered %d/s (twice the limit) for %v\n\n", 2**limit, *duration)
	fmt.Printf("Limit `get %d/s burst %d`. Admitted rate = (admitted - burst) / duration.\n\n", *limit, *burst)
	fmt.Println("| setup | offered | admitted | refused | admitted rate | vs limit |")
	fmt.Println("|---|---|---|---|---|---|")
	block := fmt.Sprintf("get %d/s burst %d", *limit, *burst)
	{
		g := start(bin, dir, upL.Addr().String(), block)
		r := offer([]string{g.Base}, 2**limit, *duration, plainGET)
		g.Stop()
		report("1 replica, memory store", r)
	}
	{
		var gs []*harness.Gateway
		var bases []string
		for range 3 {
			g := start(bin, dir, upL.Addr().String(), block+"\n\t\tstore redis "+redisURL+"\n\t\tnamespace bench-accuracy")
			gs = append(gs, g)
			bases = append(bases, g.Base)
		}
		r := offer(bases, 2**limit, *duration, plainGET)
		for _, g := range gs {
			g.Stop()
		}
		report("3 replicas, one Redis", r)
	}
	{
		var gs []*harness.Gateway
		var bases []string
		for range 3 {
			g := startSigned(bin, dir, upL.Addr().String(), redisURL, block)
			gs = append(gs, g)
			bases = append(bases, g.Base)
		}
		sign, err := signedGET()
		harness.Check(err)
		// On a new Redis the replay caches hold their first requests for
		// replay_loss_grace (a new Redis cannot be told from one that lost
		// its data): a load started then would pile up behind the wait and
		// meet the budget all at once. One request to each replica first,
		// then the budget refills.
		for i, base := range bases {
			req, err := sign(base, -1-int64(i))
			harness.Check(err)
			resp, err := http.DefaultClient.Do(req)
			harness.Check(err)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				harness.Fatalf("a warm-up request to %s: %d", base, resp.StatusCode)
			}
		}
		time.Sleep(time.Duration(float64(*burst)/float64(*limit)*float64(time.Second)) + 100*time.Millisecond)
		r := offer(bases, 2**limit, *duration, sign)
		for _, g := range gs {
			g.Stop()
		}
		report("3 replicas, one Redis, behind `mdx_hmac verify` with `replay_window` on it (one round trip)", r)
	}

	// 2. Wait mode at 1.5 times the limit.
	fmt.Printf("\n### Wait mode: offered %d/s (1.5 times the limit), `mode wait`, `max_wait 2s`, for %v\n\n", *limit*3/2, *duration)
	{
		var perSecond sync.Map
		upstreamHits.Store(0)
		up.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			sec := time.Now().Unix()
			v, _ := perSecond.LoadOrStore(sec, new(atomic.Int64))
			v.(*atomic.Int64).Add(1)
			io.WriteString(w, "ok")
		})
		g := start(bin, dir, upL.Addr().String(), fmt.Sprintf("get %d/s burst 1\n\t\tmode wait\n\t\tmax_wait 2s", *limit))
		r := offer([]string{g.Base}, *limit*3/2, *duration, plainGET)
		g.Stop()
		var secs []int64
		perSecond.Range(func(k, _ any) bool { secs = append(secs, k.(int64)); return true })
		sort.Slice(secs, func(i, j int) bool { return secs[i] < secs[j] })
		maxSec := int64(0)
		for _, s := range secs[1 : len(secs)-1] { // whole seconds only
			v, _ := perSecond.Load(s)
			maxSec = max(maxSec, v.(*atomic.Int64).Load())
		}
		// The queue grows by half the limit each second; a request is
		// refused once its wait would pass 2s, i.e. after 2s / 0.5 = 4s.
		fmt.Println("| offered | admitted | refused | first refusal after | predicted | busiest whole second at the upstream |")
		fmt.Println("|---|---|---|---|---|---|")
		first := "none"
		if r.firstRefusal > 0 {
			first = r.firstRefusal.Round(10 * time.Millisecond).String()
		}
		fmt.Printf("| %d | %d | %d | %s | 4s | %d (limit %d) |\n", r.offered, r.ok, r.refused, first, maxSec, *limit)
	}

	// 3. The Redis store's added latency per check, on loopback.
	fmt.Printf("\n### Redis store: latency of one check on loopback\n\n")
	{
		c := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", redisPort), MaxRetries: -1})
		defer c.Close()
		s, err := ratelimit.NewRedis(c, "bench:lat:", ratelimit.Policy{ratelimit.Get: {Rate: 1e9, Burst: 1 << 30}, ratelimit.Write: {Rate: ratelimit.Inf}, ratelimit.Delete: {Rate: ratelimit.Inf}, ratelimit.Other: {Rate: ratelimit.Inf}})
		harness.Check(err)
		ctx := context.Background()
		for range 1000 { // warm the connection and the script cache
			_, err := s.Take(ctx, "client", ratelimit.Get, time.Now(), 0)
			harness.Check(err)
		}
		const n = 20000
		lat := make([]time.Duration, n)
		for i := range lat {
			t := time.Now()
			_, err := s.Take(ctx, "client", ratelimit.Get, t, 0)
			harness.Check(err)
			lat[i] = time.Since(t)
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		fmt.Println("| checks | p50 | p90 | p99 | p99.9 | max |")
		fmt.Println("|---|---|---|---|---|---|")
		q := func(p float64) time.Duration { return lat[int(p*float64(n-1))] }
		fmt.Printf("| %d | %v | %v | %v | %v | %v |\n", n, q(.5).Round(time.Microsecond), q(.9).Round(time.Microsecond), q(.99).Round(time.Microsecond), q(.999).Round(time.Microsecond), lat[n-1].Round(time.Microsecond))
	}
}

type result struct {
	offered, ok, refused, other int64
	elapsed                     time.Duration
	firstRefusal                time.Duration
}

func report(name string, r result) {
	rate := float64(r.ok-int64(*burst)) / r.elapsed.Seconds()
	fmt.Printf("| %s | %d | %d | %d | %.1f/s | %+.2f %% |\n", name, r.offered, r.ok, r.refused, rate, 100*(rate-float64(*limit))/float64(*limit))
	if r.other > 0 {
		fmt.Printf("\n(%d requests failed otherwise)\n\n", r.other)
	}
}

// plainGET is a GET of base's /accounts.
func plainGET(base string, _ int64) (*http.Request, error) {
	return http.NewRequest("GET", base+"/accounts", nil)
}

// signedGET returns a builder of GETs of /inst/accounts signed with the
// demo key, the n-th with a session key of its own (so a signature of its
// own).
func signedGET() (func(base string, n int64) (*http.Request, error), error) {
	key, err := hmac.ParseKey(demoKey)
	if err != nil {
		return nil, err
	}
	run := time.Now().UnixNano()
	return func(base string, n int64) (*http.Request, error) {
		req, err := http.NewRequest("GET", base+"/inst/accounts", nil)
		if err != nil {
			return nil, err
		}
		hr := hmac.Request{Method: "GET", Date: hmac.FormatDate(time.Now()), Accept: mdxType,
			SessionKey: fmt.Sprintf("bench-%d-%d", run, n), Resource: "/accounts"}
		sig, err := hmac.Sign(hmac.SHA1, key, &hr)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Accept", hr.Accept)
		req.Header.Set("Date", hr.Date)
		req.Header.Set("MDX-Session-Key", hr.SessionKey)
		req.Header.Set("MDX-HMAC", sig)
		return req, nil
	}, nil
}

// The demo key of MDX On Demand's document (reference 004); never a real one.
const demoKey = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo3ODkwMTI="

const mdxType = "application/vnd.moneydesktop.mdx.v5+xml"

// offer sends rate requests a second, round robin over bases, for d,
// without waiting for answers (open loop), and counts the answers; build
// makes the n-th request.
func offer(bases []string, rate int, d time.Duration, build func(base string, n int64) (*http.Request, error)) result {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4096, MaxConnsPerHost: 0}, Timeout: 30 * time.Second}
	var ok, refused, other, firstRefusal atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	interval := time.Second / time.Duration(rate)
	var n int64
	for {
		next := start.Add(time.Duration(n) * interval)
		if next.Sub(start) >= d {
			break
		}
		if w := time.Until(next); w > 0 {
			time.Sleep(w)
		}
		req, err := build(bases[n%int64(len(bases))], n)
		harness.Check(err)
		n++
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Do(req)
			if err != nil {
				other.Add(1)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			switch resp.StatusCode {
			case 200:
				ok.Add(1)
			case 429:
				refused.Add(1)
				firstRefusal.CompareAndSwap(0, int64(time.Since(start)))
			default:
				other.Add(1)
			}
		}()
	}
	elapsed := time.Since(start)
	wg.Wait()
	return result{offered: n, ok: ok.Load(), refused: refused.Load(), other: other.Load(), elapsed: elapsed, firstRefusal: time.Duration(firstRefusal.Load())}
}

// startSigned runs an mxgate whose site applies mdx_hmac verify with a
// replay window and then mx_rate_limit with block, both on the Redis at
// url, under namespaces that replicas share.
func startSigned(bin, dir, upstream, url, block string) *harness.Gateway {
	port := harness.FreePort()
	return harness.Start(bin, dir, port, fmt.Sprintf(`{
	admin {ADMIN}
	log {
		level WARN
	}
}
http://127.0.0.1:%d {
	mdx_hmac verify {
		key %s
		replay_window 10m
		store redis %s
		namespace bench-accuracy-replay
	}
	mx_rate_limit {
		%s
		store redis %s
		namespace bench-accuracy-signed
	}
	reverse_proxy %s
}
`, port, demoKey, url, block, url, upstream))
}

// start runs an mxgate whose site applies mx_rate_limit with block.
func start(bin, dir, upstream, block string) *harness.Gateway {
	port := harness.FreePort()
	return harness.Start(bin, dir, port, fmt.Sprintf(`{
	admin {ADMIN}
	log {
		level WARN
	}
}
http://127.0.0.1:%d {
	mx_rate_limit {
		%s
	}
	reverse_proxy %s
}
`, port, block, upstream))
}
