package e2e

// Hostile clients against mx_rate_limit's budgets (issue 18, section 4):
// one client spread over the addresses it holds (an IPv6 /64), over the
// spellings of one address, and over so many fresh keys that the
// in-memory store reaches max_keys while the client is throttled. The
// gateway believes X-Forwarded-For from the test, on 127.0.0.1, as from a
// load balancer, so each request names the client it comes from.

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mxgate/mxgate/internal/testkit/redistest"
)

// budgetSite is one site of the budget gateway: its mx_rate_limit block
// and the upstream behind it.
type budgetSite struct {
	block string
	base  string
	up    *upstream
}

// budgetGateway starts one mxgate whose server takes X-Forwarded-For from
// 127.0.0.1 (strictly: the right-most entry that is not a trusted proxy),
// with a site per block, each in front of its own upstream, and a metrics
// site.
func budgetGateway(t *testing.T, blocks ...string) (*gateway, []*budgetSite) {
	t.Helper()
	var sb strings.Builder
	sb.WriteString(`{
	admin {ADMIN}
	servers {
		trusted_proxies static 127.0.0.1/32
		trusted_proxies_strict
	}
}
`)
	var sites []*budgetSite
	for _, b := range blocks {
		s := &budgetSite{block: b, up: newUpstream(t, nil)}
		port := freePort(t)
		s.base = fmt.Sprintf("http://127.0.0.1:%d", port)
		fmt.Fprintf(&sb, "http://127.0.0.1:%d {\n\tbind 127.0.0.1\n\tmx_rate_limit {\n\t\t%s\n\t}\n\treverse_proxy %s\n}\n",
			port, strings.ReplaceAll(b, "\n", "\n\t\t"), s.up.hostPort())
		sites = append(sites, s)
	}
	mport := freePort(t)
	fmt.Fprintf(&sb, "http://127.0.0.1:%d {\n\tbind 127.0.0.1\n\tmetrics\n}\n", mport)
	g := startGateway(t, sb.String())
	g.metrics = fmt.Sprintf("http://127.0.0.1:%d/metrics", mport)
	return g, sites
}

// budgetClient keeps connections to the gateway open, as a balancer does.
var budgetClient = &http.Client{
	Timeout:   10 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 16},
}

// getAs sends a GET to s, carrying marker, as the balancer forwarding
// for xff (no X-Forwarded-For when xff is ""), with the extra header
// lines given, and returns the status and body.
func (s *budgetSite) getAs(t *testing.T, xff, marker string, header ...string) (int, string) {
	t.Helper()
	req := mustRequest(t, "GET", s.base+"/accounts")
	req.Header.Set("X-Attack", marker)
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := budgetClient.Do(req)
	if err != nil {
		t.Fatalf("GET as %q: %v", xff, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET as %q: %v", xff, err)
	}
	return resp.StatusCode, string(body)
}

// budgetAttack is one request: the client it is forwarded for (or the
// X-Client header it carries), and what the gateway must answer.
type budgetAttack struct {
	name    string
	xff     string
	xClient string
	status  int
}

// runBudgetAttacks sends each attack to s in order and checks the status,
// the body of a refusal, and what the upstream received: the request,
// by its marker, for a 200; nothing for a 429.
func runBudgetAttacks(t *testing.T, s *budgetSite, attacks []budgetAttack) {
	t.Helper()
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			before := len(s.up.Requests())
			marker := "attack-" + a.name
			var header []string
			if a.xClient != "" {
				header = []string{"X-Client", a.xClient}
			}
			status, body := s.getAs(t, a.xff, marker, header...)
			if status != a.status {
				t.Fatalf("status %d, want %d: %s", status, a.status, body)
			}
			got := s.up.Requests()[before:]
			if a.status != 200 {
				if body != mdxError("Too many requests") {
					t.Errorf("body %q", body)
				}
				if len(got) != 0 {
					t.Fatalf("the upstream received %d request(s)", len(got))
				}
				return
			}
			if len(got) != 1 || got[0].Header.Get("X-Attack") != marker {
				t.Fatalf("the upstream received %d request(s), want this one", len(got))
			}
		})
	}
}

// flood sends one GET as each client, eight at a time, and returns how
// many were admitted and how long it took; any status but 200 and 429
// fails the test.
func flood(t *testing.T, s *budgetSite, clients []string) (admitted int, elapsed time.Duration) {
	t.Helper()
	var n atomic.Int64
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range 8 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(clients) || t.Failed() {
					return
				}
				switch status, body := s.getAs(t, clients[i], "flood"); status {
				case 200:
					n.Add(1)
				case 429:
				default:
					t.Errorf("as %s: %d %s", clients[i], status, body)
				}
			}
		})
	}
	wg.Wait()
	return int(n.Load()), time.Since(start)
}

// rotating returns n distinct addresses of the IPv6 prefix p (written
// with a trailing colon, as "2001:db8:aa:bb:"), the rest drawn at random.
func rotating(r *rand.Rand, p string, n int) []string {
	groups := 8 - strings.Count(p, ":")
	out := make([]string, n)
	for i := range out {
		var g []string
		for range groups - 1 {
			g = append(g, strconv.FormatUint(uint64(r.Uint32()&0xffff), 16))
		}
		out[i] = p + strings.Join(append(g, strconv.FormatUint(uint64(i), 16)), ":")
	}
	return out
}

// budgetBound is the most a bucket of burst refilled at rate a second may
// admit over elapsed: the burst and what arrived meanwhile, plus one for
// the token being refilled when the clock was read.
func budgetBound(burst int, rate float64, elapsed time.Duration) int {
	return burst + int(rate*elapsed.Seconds()) + 1
}

// metricValue returns the value of the gateway's metric series named
// exactly by series (name and labels), 0 if it has none yet.
func metricValue(t *testing.T, g *gateway, series string) float64 {
	t.Helper()
	line := metricLine(t, g, series)
	if line == "" {
		return 0
	}
	v, err := strconv.ParseFloat(strings.TrimPrefix(line, series+" "), 64)
	if err != nil {
		t.Fatalf("metric line %q: %v", line, err)
	}
	return v
}

// TestHostileBudget: one client may not multiply its budget by the
// addresses it holds, by spelling its address another way, nor reset it
// by filling the in-memory store with fresh keys.
func TestHostileBudget(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	g, sites := budgetGateway(t,
		"get 5/h burst 5\nkey {client_ip}",                                                 // rotating
		"get 5/h burst 5\nkey {client_ip}\nipv6_prefix 128",                                // per address, by name
		"get 5/h burst 5\nkey {client_ip}\nipv6_prefix /48",                                // a /48
		"get 1/m burst 2\nkey {client_ip}",                                                 // spellings
		"get 1/m burst 1\nkey {http.request.header.X-Client}",                              // a header key
		"get 1/m burst 2\nkey {client_ip}\nmax_keys 64",                                    // eviction
		"get 5/m burst 5\nkey {client_ip}\nstore redis "+srv.URL()+"\nredis_timeout 500ms", // Redis
	)
	rotatingSite, perAddress, slash48, spellings, headerKey, eviction, redisSite :=
		sites[0], sites[1], sites[2], sites[3], sites[4], sites[5], sites[6]
	r := rand.New(rand.NewPCG(18, 4))

	// The attack: 1,200 requests from 1,200 addresses of one /64
	// on a budget of 5: the 5 are admitted, not 1,200. (The budget refills
	// at 5 an hour, so that how long the flood takes on a busy machine
	// changes nothing: the test asserts what the limiter decided.)
	t.Run("rotating_ipv6_in_one_64", func(t *testing.T) {
		admitted, elapsed := flood(t, rotatingSite, rotating(r, "2001:db8:aa:bb:", 1200))
		if bound := budgetBound(5, 5.0/3600, elapsed); admitted < 5 || admitted > bound {
			t.Fatalf("%d of 1200 admitted in %v; one /64's budget allows 5 to %d", admitted, elapsed, bound)
		}
		if n := len(rotatingSite.up.Requests()); n != admitted {
			t.Fatalf("the upstream received %d, the gateway admitted %d", n, admitted)
		}
		before := len(rotatingSite.up.Requests())
		runBudgetAttacks(t, rotatingSite, []budgetAttack{
			{name: "another_address_of_the_64", xff: "2001:db8:aa:bb:1234:5678:9abc:def0", status: 429},
			{name: "control_the_next_64", xff: "2001:db8:aa:bc::1", status: 200},
			{name: "control_an_ipv4_client", xff: "192.0.2.10", status: 200},
		})
		if n := len(rotatingSite.up.Requests()) - before; n != 2 {
			t.Fatalf("the upstream received %d of the controls, want 2", n)
		}
	})

	// The control that shows the attack is real: with ipv6_prefix 128,
	// asked for by name, each address has a budget and all are admitted.
	t.Run("control_per_address_by_name", func(t *testing.T) {
		admitted, _ := flood(t, perAddress, rotating(r, "2001:db8:aa:bb:", 200))
		if admitted != 200 || len(perAddress.up.Requests()) != 200 {
			t.Fatalf("%d of 200 admitted, %d reached the upstream; want every address its own budget",
				admitted, len(perAddress.up.Requests()))
		}
	})

	// ipv6_prefix /48: the /64s of one /48 share a budget.
	t.Run("rotating_64s_in_one_48", func(t *testing.T) {
		var clients []string
		for i := range 300 {
			clients = append(clients, fmt.Sprintf("2001:db8:77:%x::%x", i, r.Uint32()&0xffff))
		}
		admitted, elapsed := flood(t, slash48, clients)
		if bound := budgetBound(5, 5.0/3600, elapsed); admitted < 5 || admitted > bound || len(slash48.up.Requests()) != admitted {
			t.Fatalf("%d of 300 admitted in %v (upstream %d); one /48's budget allows 5 to %d",
				admitted, elapsed, len(slash48.up.Requests()), bound)
		}
	})

	// Spellings of one address, as the server reads X-Forwarded-For:
	// IPv4-mapped IPv6 is the IPv4 client, and case, zeros, ports and
	// zones change nothing.
	t.Run("spellings", func(t *testing.T) {
		runBudgetAttacks(t, spellings, []budgetAttack{
			{name: "control_ipv4_within_budget", xff: "198.51.100.7", status: 200},
			{name: "control_ipv4_within_budget_2", xff: "198.51.100.7", status: 200},
			{name: "ipv4_over_budget", xff: "198.51.100.7", status: 429},
			{name: "ipv4_mapped", xff: "::ffff:198.51.100.7", status: 429},
			{name: "ipv4_mapped_upper", xff: "::FFFF:198.51.100.7", status: 429},
			{name: "ipv4_mapped_hex", xff: "::ffff:c633:6407", status: 429},
			{name: "ipv4_mapped_long", xff: "0:0:0:0:0:ffff:c633:6407", status: 429},
			{name: "ipv4_mapped_bracketed_port", xff: "[::ffff:198.51.100.7]:443", status: 429},
			{name: "ipv4_mapped_zone", xff: "::ffff:198.51.100.7%eth0", status: 429},
			{name: "ipv4_port", xff: "198.51.100.7:8443", status: 429},
			{name: "control_neighbour_ipv4", xff: "198.51.100.8", status: 200},
			{name: "control_ipv6_within_budget", xff: "2001:db8:cc:dd::1", status: 200},
			{name: "control_ipv6_within_budget_2", xff: "2001:db8:cc:dd::2", status: 200},
			{name: "ipv6_upper_case", xff: "2001:DB8:CC:DD::3", status: 429},
			{name: "ipv6_leading_zeros", xff: "2001:0db8:00cc:00dd:ffff:ffff:ffff:ffff", status: 429},
			{name: "ipv6_bracketed_port", xff: "[2001:db8:cc:dd::4]:8443", status: 429},
			{name: "ipv6_zone", xff: "2001:db8:cc:dd::5%eth0", status: 429},
			{name: "ipv6_dotted_tail", xff: "2001:db8:cc:dd::0.0.0.6", status: 429},
			{name: "control_next_64", xff: "2001:db8:cc:de::1", status: 200},
		})
	})

	// A key from a header the balancer writes: the spellings the server
	// would not have rewritten are grouped all the same.
	t.Run("header_key_spellings", func(t *testing.T) {
		runBudgetAttacks(t, headerKey, []budgetAttack{
			{name: "control_within_budget", xClient: "2001:db8:ee:1::1", status: 200},
			{name: "bracketed", xClient: "[2001:db8:ee:1::2]", status: 429},
			{name: "bracketed_zone_port", xClient: "[2001:db8:ee:1::3%25eth0]:443", status: 429},
			{name: "mixed_case_zeros", xClient: "2001:0DB8:00EE:0001:0:0:0:4", status: 429},
			{name: "control_ipv4_within_budget", xClient: "203.0.113.77", status: 200},
			{name: "ipv4_mapped_zone", xClient: "::ffff:203.0.113.77%eth0", status: 429},
			{name: "ipv4_mapped_hex_bracketed", xClient: "[::ffff:cb00:714d]:80", status: 429},
			{name: "control_another_client", xClient: "203.0.113.78", status: 200},
		})
	})

	// At max_keys, a flood of fresh clients does not take the place of a
	// throttled one: the victim stays throttled, and the flood shares one
	// overflow budget, counted.
	t.Run("eviction_flood", func(t *testing.T) {
		const victim = "203.0.113.50"
		runBudgetAttacks(t, eviction, []budgetAttack{
			{name: "control_victim_within_budget", xff: victim, status: 200},
			{name: "control_victim_within_budget_2", xff: victim, status: 200},
			{name: "victim_over_budget", xff: victim, status: 429},
		})
		const overflow = `mxgate_ratelimit_overflow_total{class="get"}`
		before := metricValue(t, g, overflow)
		var clients []string
		for i := range 1000 {
			clients = append(clients, fmt.Sprintf("198.18.%d.%d", i/250, 1+i%250))
		}
		admitted, elapsed := flood(t, eviction, clients)
		// 64 keys are held (one a shard), the victim's among them; the
		// rest share an overflow budget of 2 at 1/m
		if bound := 63 + budgetBound(2, 1.0/60, elapsed); admitted > bound {
			t.Fatalf("%d of 1000 fresh clients admitted; at most %d have room or the overflow budget", admitted, bound)
		}
		if got := metricValue(t, g, overflow) - before; got < 1000-63 {
			t.Fatalf("control: %v requests counted as overflow, want at least %d: the flood did not reach max_keys", got, 1000-63)
		}
		if n := len(eviction.up.Requests()); n != 2+admitted {
			t.Fatalf("the upstream received %d, the gateway admitted %d", n, 2+admitted)
		}
		runBudgetAttacks(t, eviction, []budgetAttack{
			{name: "victim_after_the_flood", xff: victim, status: 429},
			{name: "victim_mapped_after_the_flood", xff: "::ffff:" + victim, status: 429},
		})
	})

	// Redis is keyed alike: one /64, one bucket, named by its prefix.
	t.Run("redis_rotating_ipv6_in_one_64", func(t *testing.T) {
		admitted, elapsed := flood(t, redisSite, rotating(r, "2001:db8:ee:ff:", 600))
		if bound := budgetBound(5, 5.0/60, elapsed); admitted < 5 || admitted > bound || len(redisSite.up.Requests()) != admitted {
			t.Fatalf("%d of 600 admitted in %v (upstream %d); one /64's budget allows 5 to %d",
				admitted, elapsed, len(redisSite.up.Requests()), bound)
		}
		c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
		defer c.Close()
		keys, err := c.Keys(context.Background(), "mxgate:rl:*").Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != 1 || !strings.HasSuffix(keys[0], ":get:2001:db8:ee:ff::/64") {
			t.Fatalf("Redis holds %q, want one bucket for 2001:db8:ee:ff::/64", keys)
		}
	})
}
