// Command sidecar compares the egress sidecar's throughput with a bare
// reverse_proxy's, side by side in one run: both in front of the same
// local stand-in for MX (mx_auth check, mx_jwe encrypt, canned JSON),
// driven by the same closed-loop load, alternating in rounds.
//
//	go -C bench run ./sidecar [-rounds 3] [-round 5s] [-workers 16]
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mxgate/mxgate/bench/internal/harness"
)

var (
	rounds  = flag.Int("rounds", 3, "alternating rounds of each setup")
	round   = flag.Duration("round", 5*time.Second, "length of one round")
	workers = flag.Int("workers", 16, "concurrent clients")
)

const body = `{"users":[{"guid":"USR-fa7537f3-48aa-a683-a02a-b18940482f54","id":"partner-user-1","email":"someone@example.com","is_disabled":false,"metadata":"` + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" + `"}],"pagination":{"current_page":1,"per_page":25,"total_entries":1,"total_pages":1}}`

func main() {
	flag.Parse()
	log.SetFlags(0)
	harness.ToRoot()
	dir, err := os.MkdirTemp("", "mxgate-sidecar-")
	harness.Check(err)
	defer os.RemoveAll(dir)
	bin := harness.Build(dir)
	env := []string{"MX_CLIENT_ID=CLIENT-1234", "MX_API_KEY=API-KEY-4567"}

	mxPort, barePort, sidePort, plainPort, p256Port := harness.FreePort(), harness.FreePort(), harness.FreePort(), harness.FreePort(), harness.FreePort()
	quiet := "{\n\tadmin {ADMIN}\n\tlog {\n\t\tlevel WARN\n\t}\n}\n"
	mx := harness.Start(bin, dir, mxPort, quiet+fmt.Sprintf(`http://127.0.0.1:%d {
	mx_auth check {
		client {env.MX_CLIENT_ID} {env.MX_API_KEY}
	}
	mx_jwe encrypt
	header Content-Type application/vnd.mx.api.v1+json
	respond `+"`"+body+"`"+`
}
`, mxPort), env...)
	defer mx.Stop()
	bare := harness.Start(bin, dir, barePort, quiet+fmt.Sprintf(`http://127.0.0.1:%d {
	reverse_proxy 127.0.0.1:%d
}
`, barePort, mxPort), env...)
	defer bare.Stop()
	// sidecar is the egress sidecar's site on port, with jwe (an mx_jwe
	// line, or nothing) before the proxy.
	sidecar := func(port int, jwe string) *harness.Gateway {
		return harness.Start(bin, dir, port, quiet+fmt.Sprintf(`http://127.0.0.1:%d {
	mx_auth attach {
		client_id {env.MX_CLIENT_ID}
		api_key {env.MX_API_KEY}
	}
	mx_retry
	mx_rate_limit {
		get 1000000/s
		mode wait
	}
	%s
	reverse_proxy 127.0.0.1:%d
}
`, port, jwe, mxPort), env...)
	}
	side := sidecar(sidePort, "mx_jwe decrypt")
	defer side.Stop()
	plain := sidecar(plainPort, "")
	defer plain.Stop()
	p256 := sidecar(p256Port, "mx_jwe decrypt {\n\t\tcurve p256\n\t}")
	defer p256.Stop()

	// The bare proxy's app must hold the secret itself and gets plain JSON;
	// the sidecar's app holds nothing and gets the decrypted JSON.
	setups := []struct {
		name, url string
		basic     bool
	}{
		{"bare reverse_proxy (app sends Basic auth, plain JSON)", bare.Base + "/users", true},
		{"sidecar without encryption: mx_auth attach, mx_retry, mx_rate_limit wait", plain.Base + "/users", false},
		{"full sidecar, + mx_jwe decrypt (P-384, a256gcm; the stand-in encrypts each reply)", side.Base + "/users", false},
		{"full sidecar with curve p256", p256.Base + "/users", false},
	}
	for _, s := range setups { // both answer the same body
		got := get(s.url, s.basic)
		if got != body {
			log.Fatalf("%s answered %q", s.name, got)
		}
	}
	results := make([][]time.Duration, len(setups))
	counts := make([]int, len(setups))
	elapsed := make([]time.Duration, len(setups))
	for range *rounds {
		for i, s := range setups {
			lat, d := load(s.url, s.basic, *round, *workers)
			results[i] = append(results[i], lat...)
			counts[i] += len(lat)
			elapsed[i] += d
		}
	}
	fmt.Printf("Machine: %d CPUs; load generator, both gateways and the stand-in share them. %d workers, closed loop, %d alternating rounds of %v each.\n\n", harness.NumCPU(), *workers, *rounds, *round)
	fmt.Println("| setup | requests | requests/s | p50 | p99 |")
	fmt.Println("|---|---|---|---|---|")
	var rps []float64
	for i, s := range setups {
		lat := results[i]
		sort.Slice(lat, func(a, b int) bool { return lat[a] < lat[b] })
		r := float64(counts[i]) / elapsed[i].Seconds()
		rps = append(rps, r)
		fmt.Printf("| %s | %d | %.0f | %v | %v |\n", s.name, counts[i], r,
			lat[len(lat)/2].Round(time.Microsecond), lat[len(lat)*99/100].Round(time.Microsecond))
	}
	fmt.Println()
	for i := 1; i < len(setups); i++ {
		fmt.Printf("- %s: %.2f of the bare reverse_proxy's throughput\n", setups[i].name, rps[i]/rps[0])
	}
}

func get(url string, basic bool) string {
	req, _ := http.NewRequest("GET", url, nil)
	if basic {
		req.SetBasicAuth("CLIENT-1234", "API-KEY-4567")
	}
	resp, err := http.DefaultClient.Do(req)
	harness.Check(err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b))
}

// load runs workers clients in a closed loop for d.
func load(url string, basic bool, d time.Duration, workers int) ([]time.Duration, time.Duration) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	var mu sync.Mutex
	var all []time.Duration
	start := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for time.Since(start) < d {
				req, _ := http.NewRequest("GET", url, nil)
				if basic {
					req.SetBasicAuth("CLIENT-1234", "API-KEY-4567")
				}
				t := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					log.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					log.Fatalf("status %d", resp.StatusCode)
				}
				mine = append(mine, time.Since(t))
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return all, time.Since(start)
}
