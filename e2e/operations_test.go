package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/testkit/redistest"
)

// TestOperationsMetricsAndReadiness starts a gateway with every directive
// the alert rules and the dashboard watch, makes each count something,
// and checks that every metric and label they use is on /metrics. Then
// mx_health: ready while Redis answers, 503 naming the store while it is
// down, ready again after.
func TestOperationsMetricsAndReadiness(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	card := "4111111111111111"
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/busy"):
			w.WriteHeader(http.StatusServiceUnavailable)
		case strings.HasPrefix(r.URL.Path, "/jose"):
			w.Header().Set("Content-Type", "application/jose")
			_, _ = w.Write([]byte("not.a.jwe.at.all"))
		default:
			w.Header().Set("Content-Type", mdxType)
			fmt.Fprintf(w, `<mdx version="5.0"><accounts><account><id>%s</id><name>AT&T</name></account></accounts></mdx>`, card)
		}
	})
	mdxPort, egressPort, waitPort, metricsPort, healthPort, deadPort, brokenPort := freePort(t), freePort(t), freePort(t), freePort(t), freePort(t), freePort(t), freePort(t)
	cf := fmt.Sprintf(`{
	admin {ADMIN}
	default_bind tcp-handover/127.0.0.1
	servers {
		protocols h1 h2
		metrics
	}
}
http://127.0.0.1:%d {
	mx_ip_allow {
		ranges 127.0.0.1
	}
	mdx_hmac verify {
		key %s
		replay_window 10m
		store redis %s
	}
	mdx_sanitize {
		allow_malformed # the reply's bare & is let through, and counted
	}
	mx_rate_limit {
		get 1/h burst 1
		store redis %s
	}
	reverse_proxy %s
}
http://127.0.0.1:%d {
	mxconnect_token {
		endpoint http://127.0.0.1:%d/authenticate
		username u
		password p
		api_key k
		timeout 200ms
	}
	reverse_proxy %s
}
http://127.0.0.1:%d {
	handle /jose {
		mx_jwe decrypt
		reverse_proxy %s
	}
	handle {
		mx_retry {
			max_time 300ms
			base_delay 10ms
			max_delay 20ms
		}
		mx_rate_limit {
			get 2/s burst 1
			mode wait
			max_wait 5s
		}
		reverse_proxy %s
	}
}
http://127.0.0.1:%d {
	metrics
}
http://127.0.0.1:%d {
	mx_health
}
http://127.0.0.1:%d {
	reverse_proxy 127.0.0.1:%d
}
`, mdxPort, demoKey, srv.URL(), srv.URL(), up.hostPort(), egressPort, deadPort, up.hostPort(),
		waitPort, up.hostPort(), up.hostPort(), metricsPort, healthPort, brokenPort, deadPort)
	startGateway(t, cf)
	mdx := fmt.Sprintf("http://127.0.0.1:%d", mdxPort)
	egress := fmt.Sprintf("http://127.0.0.1:%d", egressPort)
	wait := fmt.Sprintf("http://127.0.0.1:%d", waitPort)
	health := fmt.Sprintf("http://127.0.0.1:%d/ready", healthPort)

	ready := func() (int, string) {
		status, _, body := do(t, mustRequest(t, "GET", health))
		return status, body
	}
	if status, body := ready(); status != 200 || body != `{"status":"ready"}` {
		t.Fatalf("ready: %d %s", status, body)
	}

	// a refusal, a masked card (findings), an admitted and a limited request
	do(t, mustRequest(t, "GET", mdx+"/inst1/accounts"))
	for i := range 2 {
		req := mdxReq{method: "GET", path: "/inst1/accounts", session: fmt.Sprintf("ops-%d", i), from: "127.0.0.1"}.build(t, mdx)
		req.Header.Del("X-Forwarded-For")
		status, _, body := do(t, req)
		if strings.Contains(body, card) || (i == 0 && status != 200) || (i == 1 && status != 429) {
			t.Fatalf("MDX request %d: %d %s", i, status, body)
		}
	}
	// no MX Connect token (the Security API is not there)
	if status, _, _ := do(t, mustRequest(t, "GET", egress+"/members")); status != 503 {
		t.Fatalf("without a token: %d", status)
	}
	// a reply that claims to be encrypted and is not
	if status, _, _ := do(t, mustRequest(t, "GET", wait+"/jose")); status != 502 {
		t.Fatalf("undecryptable reply: %d", status)
	}
	// retries of a 503, waits, and an abandoned wait
	do(t, mustRequest(t, "GET", wait+"/busy"))
	do(t, mustRequest(t, "GET", wait+"/a"))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	req, _ := http.NewRequestWithContext(ctx, "GET", wait+"/b", nil)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
	cancel()
	// a handler error: an upstream that is not there
	if status, _, _ := do(t, mustRequest(t, "GET", fmt.Sprintf("http://127.0.0.1:%d/", brokenPort))); status != 502 {
		t.Fatalf("a dead upstream: %d", status)
	}
	// the store goes away: store_up 0, store errors, and readiness fails
	srv.Stop()
	req = mdxReq{method: "GET", path: "/inst1/accounts", session: "ops-down", from: "127.0.0.1"}.build(t, mdx)
	req.Header.Del("X-Forwarded-For")
	do(t, req)
	status, body := ready()
	var answer struct {
		Status  string   `json:"status"`
		Reasons []string `json:"reasons"`
	}
	if err := json.Unmarshal([]byte(body), &answer); status != 503 || err != nil || answer.Status != "unready" ||
		len(answer.Reasons) != 2 || !strings.Contains(answer.Reasons[0], "store") {
		t.Fatalf("with Redis down: %d %s", status, body)
	}
	if strings.Contains(body, srv.Addr()) {
		t.Fatalf("the readiness answer names the Redis address: %s", body)
	}

	waitForMetric(t, &gateway{metrics: fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)}, "mxgate_ratelimit_abandoned_total")
	_, _, exposed := do(t, mustRequest(t, "GET", fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)))
	if out, err := metricUses(t, exposed); err != nil {
		t.Errorf("the alert rules and the dashboard use what the gateway does not expose (%v):\n%s", err, out)
	}

	srv.Restart()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if status, _ := ready(); status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("never ready again after Redis came back")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// metricUses checks, with tools/metricuses (Prometheus's PromQL parser, in
// a module of its own), that every metric and label the alert rules and
// the dashboard use is in exposed, the text of a gateway's /metrics. It
// returns the tool's report.
func metricUses(t *testing.T, exposed string) (string, error) {
	t.Helper()
	dir := t.TempDir()
	metrics := filepath.Join(dir, "metrics.txt")
	if err := os.WriteFile(metrics, []byte(exposed), 0o600); err != nil {
		t.Fatal(err)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "-C", filepath.Join(root, "tools", "metricuses"), "run", ".",
		"-rules", filepath.Join(root, "deploy", "prometheus", "mxgate-alerts.yml"),
		"-dashboard", filepath.Join(root, "deploy", "grafana", "mxgate-dashboard.json"),
		"-exposition", metrics)
	out, err := cmd.CombinedOutput()
	return string(out), err
}
