package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/mxgate/mxgate/internal/testkit/redistest"
)

// TestStateRedisACLPerRole: a Redis shared by an ingress and an egress
// sidecar, each with the ACL user docs/rate-limits-and-state.md's "A
// shared Redis" writes, read from that page
// (its own namespaces' keys, the commands mxgate uses): both work, and a
// sidecar that names the ingress's namespace is refused by Redis, so it
// neither records the namespace nor spends the ingress's budget.
func TestStateRedisACLPerRole(t *testing.T) {
	t.Parallel()
	manual, err := os.ReadFile("../docs/rate-limits-and-state.md")
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"--user", "default", "off", "--user", "admin", "on", ">admin-pw", "~*", "&*", "+@all"}
	passwords := map[string]string{"mdx-ingress-bank-a": "ingress-pw", "sidecar-bank-a": "sidecar-pw"}
	for _, line := range strings.Split(string(manual), "\n") {
		rule, ok := strings.CutPrefix(line, "ACL SETUSER ")
		if !ok {
			continue
		}
		fields := strings.Fields(rule)
		pw, known := passwords[fields[0]]
		if !known || !slices.Contains(fields, ">…") {
			t.Fatalf("the manual's ACL user %q is not one this test knows, or has no elided password", fields[0])
		}
		delete(passwords, fields[0])
		for _, f := range fields {
			if f == ">…" {
				f = ">" + pw
			}
			args = append(args, f)
		}
		args = slices.Insert(args, len(args)-len(fields), "--user")
	}
	if len(passwords) != 0 {
		t.Fatalf("the manual no longer writes the ACL users %v", passwords)
	}
	srv := redistest.Start(t, args...)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr(), Username: "admin", Password: "admin-pw"})
	t.Cleanup(func() { admin.Close() })
	ingressURL := fmt.Sprintf("redis://mdx-ingress-bank-a:ingress-pw@%s/0", srv.Addr())
	sidecarURL := fmt.Sprintf("redis://sidecar-bank-a:sidecar-pw@%s/0", srv.Addr())

	app, mx := newUpstream(t, nil), newUpstream(t, nil)
	port := freePort(t)
	ingress := startGateway(t, fmt.Sprintf(`{
	admin {ADMIN}
	default_bind tcp-handover/127.0.0.1
}
http://127.0.0.1:%d {
	mdx_hmac verify {
		key {env.MDX_HMAC_KEY}
		replay_window 10m
		store redis {env.MXGATE_REDIS_URL}
		namespace bank-a-mdx
		on_store_error deny
	}
	mx_rate_limit {
		get 3/h burst 3
		store redis {env.MXGATE_REDIS_URL}
		namespace bank-a-mdx
		on_store_error deny
	}
	reverse_proxy %s
}
`, port, app.URL), "MDX_HMAC_KEY="+hoKeyA, "MXGATE_REDIS_URL="+ingressURL)
	url := fmt.Sprintf("http://127.0.0.1:%d/inst1/accounts", port)
	signed := hoSign(t, hoKeyA, url, hoSession(t))
	if status := hoSend(t, url, signed, ""); status != 200 {
		t.Fatalf("the ingress with its ACL user: %d", status)
	}
	if status := hoSend(t, url, signed, ""); status != 412 {
		t.Fatalf("a replay to the ingress: %d", status)
	}

	sidecar := func(namespace string) string {
		p := freePort(t)
		startGateway(t, fmt.Sprintf(`{
	admin {ADMIN}
	default_bind tcp-handover/127.0.0.1
}
http://127.0.0.1:%d {
	mx_auth attach {
		client_id CLIENT-BANK-A
		api_key SOME-KEY
	}
	mx_rate_limit {
		get 3/h burst 3
		store redis {env.MXGATE_REDIS_URL}
		namespace %s
		on_store_error deny
	}
	reverse_proxy %s
}
`, p, namespace, mx.URL), "MXGATE_REDIS_URL="+sidecarURL)
		return fmt.Sprintf("http://127.0.0.1:%d/users", p)
	}
	// the sidecar in its own namespace: its budget in Redis
	own := sidecar("bank-a-egress")
	for i, want := range []int{200, 200, 200, 429} {
		if status, _ := hoGet(t, own); status != want {
			t.Fatalf("the sidecar's request %d with its ACL user: %d, want %d", i, status, want)
		}
	}
	// a sidecar naming the ingress's namespace: Redis refuses it
	squat := sidecar("bank-a-mdx")
	for i := 0; i < 5; i++ {
		if status, _ := hoGet(t, squat); status != 503 {
			t.Errorf("a sidecar on the ingress's namespace, request %d: %d, want 503 (Redis refuses its user)", i, status)
		}
	}
	if n := len(mx.Requests()); n != 3 {
		t.Errorf("MX saw %d requests, want the sidecar's 3", n)
	}
	// the ingress's budget of 3: one spent above, two left
	for i, want := range []int{200, 200, 429} {
		if status := hoSend(t, url, hoSign(t, hoKeyA, url, hoSession(t)), ""); status != want {
			t.Errorf("the ingress's request %d after the squatter's: %d, want %d", i, status, want)
		}
	}
	ctx := context.Background()
	if rec := admin.HGetAll(ctx, "mxgate:ns:rl:bank-a-mdx").Val(); rec["role"] != "ingress" {
		t.Errorf("the ingress's namespace record: %v", rec)
	}
	if rec := admin.HGetAll(ctx, "mxgate:ns:rl:bank-a-egress").Val(); rec["role"] != "egress" {
		t.Errorf("the sidecar's namespace record: %v", rec)
	}
	var signatures []string // beside them, the cache's epoch (it notices a Redis that lost its data)
	for _, k := range admin.Keys(ctx, "mxgate:replay:bank-a-mdx:*").Val() {
		if k != "mxgate:replay:bank-a-mdx:epoch" {
			signatures = append(signatures, k)
		}
	}
	if len(signatures) != 4 {
		t.Errorf("%d signatures in the ingress's namespace, want 4 (one per signature it checked): %v", len(signatures), signatures)
	}
	// the ACL of the manual's example is all the ingress needs
	if logs := ingress.Stderr.String(); strings.Contains(logs, "NOPERM") || strings.Contains(logs, "refuses BLPOP") {
		t.Errorf("the ingress's ACL user lacks a permission:\n%s", logs)
	}
	if strings.Contains(fmt.Sprint(admin.Keys(ctx, "*").Val()), "sidecar-pw") {
		t.Error("a password in a key")
	}
}
