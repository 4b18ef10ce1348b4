package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mxgate/mxgate/hmac"
	"github.com/mxgate/mxgate/internal/testkit/redistest"
)

// The state of mdx_hmac verify (its replay cache) and mx_rate_limit (its
// budgets) is named by what it protects: a site, or, beside MX
// credentials, the MX client id. These tests run real gateways, the
// production configurations among them, on one Redis.

// parallel runs f(i) for i in [0, n) from workers goroutines.
func parallel(n, workers int, f func(i int)) {
	var wg sync.WaitGroup
	next := make(chan int)
	for range workers {
		wg.Go(func() {
			for i := range next {
				f(i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// sendWith sends req with client and returns the status.
func sendWith(t *testing.T, client *http.Client, req *http.Request) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(req.Context(), 15*time.Second)
	defer cancel()
	resp, err := client.Do(req.WithContext(ctx))
	if err != nil {
		t.Errorf("%s %s: %v", req.Method, req.URL, err)
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// again is req sent anew, to base: the same signed headers.
func again(req *http.Request, base string) *http.Request {
	r, _ := http.NewRequest(req.Method, base+req.URL.Path, nil)
	r.Header = req.Header.Clone()
	return r
}

// prodIngress starts examples/production/mdx-ingress.Caddyfile on port,
// as TestProductionMDXIngress does, with its GET budget replaced by
// getLimit; extra are more replacements.
func prodIngress(t *testing.T, e *prodEnv, redisEnv string, port int, app *upstream, getLimit string, extra ...string) *gateway {
	t.Helper()
	replace := append([]string{
		":443", fmt.Sprintf(":%d", port),
		"mdx.bank.example", "localhost",
		"10.0.1.0/24", "127.0.0.1",
		"https://fi-app.internal:8443", app.URL,
		":2020", fmt.Sprintf(":%d", freePort(t)),
		":9180", fmt.Sprintf(":%d", freePort(t)),
		"get 200/s", getLimit,
	}, extra...)
	return startGateway(t, prodConfig(t, "mdx-ingress.Caddyfile", e, replace...), redisEnv)
}

// signedGet is a GET of /inst1/accounts signed with e's next key, as MX
// sends it through the balancer.
func signedGet(t *testing.T, e *prodEnv, base, session string) *http.Request {
	return mdxReq{method: "GET", path: "/inst1/accounts", session: session, key: e.keyNext, alg: hmac.SHA256, from: "64.77.254.40"}.build(t, base)
}

// prodSidecar starts examples/production/egress-sidecar.Caddyfile with
// its socket at sock, MX at mx, a GET budget of getLimit, and the client
// id read from clientIDFile ("" for the environment's).
func prodSidecar(t *testing.T, e *prodEnv, redisEnv, sock string, mx *upstream, getLimit, clientIDFile string) *gateway {
	t.Helper()
	replace := []string{
		"/run/mxgate/sidecar.sock", sock,
		"https://api.mx.com", mx.URL,
		":2021", fmt.Sprintf(":%d", freePort(t)),
		":9181", fmt.Sprintf(":%d", freePort(t)),
		"\t\tmode wait\n", "\t\t" + getLimit + "\n\t\tmode wait\n",
	}
	if clientIDFile != "" {
		replace = append(replace, e.etc+"/keys/mx-client-id", clientIDFile)
	}
	return startGateway(t, prodConfig(t, "egress-sidecar.Caddyfile", e, replace...), redisEnv)
}

// socketClient talks HTTP over the Unix socket sock.
func socketClient(t *testing.T, sock string) *http.Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// mxNotFound answers every request 404, as MX does for an unknown user, in
// MX's JSON: the sidecar passes it on as it is.
func mxNotFound(t *testing.T) *upstream {
	return newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/vnd.mx.api.v1+json")
		w.WriteHeader(404)
		_, _ = w.Write([]byte(`{"error":{"message":"Not Found"}}`))
	})
}

func redisKeys(t *testing.T, srv *redistest.Server, pattern string) map[string]map[string]string {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer c.Close()
	ctx := context.Background()
	keys, err := c.Keys(ctx, pattern).Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]string{}
	for _, k := range keys {
		out[k] = c.HGetAll(ctx, k).Val()
	}
	return out
}

// TestStateProductionRolesApart: the production ingress and egress
// sidecar, and another institution's ingress, on one Redis (all reading
// one MXGATE_REDIS_URL, as a bank's fleet would), under concurrent load:
// the sidecar's traffic does not draw on the ingress's budget nor the
// other way round, each admits exactly its own budget; one signed request
// sent to both institutions is admitted by each (their replay caches are
// apart) and refused as a replay by each after that.
func TestStateProductionRolesApart(t *testing.T) {
	t.Parallel()
	e := newProdEnv(t)
	srv := redistest.Start(t)
	redisEnv := "MXGATE_REDIS_URL=" + srv.URL()
	app, app2, mx := newUpstream(t, nil), newUpstream(t, nil), mxNotFound(t)

	port := freePort(t)
	prodIngress(t, e, redisEnv, port, app, "get 20/h burst 20")
	ingress := fmt.Sprintf("https://localhost:%d", port)
	tlsClient := devTLS(t, e.dev, "")

	sock := filepath.Join(t.TempDir(), "sidecar.sock")
	prodSidecar(t, e, redisEnv, sock, mx, "get 10/h burst 10", "")
	sidecar := socketClient(t, sock)

	port2 := freePort(t)
	startGateway(t, fmt.Sprintf(`{
	admin {ADMIN}
}
http://127.0.0.1:%d {
	mdx_hmac verify {
		key %s
		algorithm sha256
		replay_window 10m
		store redis {env.MXGATE_REDIS_URL}
	}
	mx_rate_limit {
		get 5/h burst 5
		store redis {env.MXGATE_REDIS_URL}
	}
	reverse_proxy %s
}
`, port2, e.keyNext, app2.URL), redisEnv)
	other := fmt.Sprintf("http://127.0.0.1:%d", port2)

	// one signed request, to both institutions: admitted by each once
	r := signedGet(t, e, ingress, "both-institutions")
	if s := sendWith(t, tlsClient, again(r, ingress)); s != 200 {
		t.Fatalf("the ingress: %d", s)
	}
	if s := sendWith(t, http.DefaultClient, again(r, other)); s != 200 {
		t.Fatalf("the other institution, the same signature: %d (a replay cache shared with the ingress?)", s)
	}
	if s := sendWith(t, tlsClient, again(r, ingress)); s != 412 {
		t.Fatalf("a replay to the ingress: %d", s)
	}
	if s := sendWith(t, http.DefaultClient, again(r, other)); s != 412 {
		t.Fatalf("a replay to the other institution: %d", s)
	}

	// all three under load at once
	var in, out, inst2 tally
	var wg sync.WaitGroup
	wg.Go(func() {
		parallel(40, 4, func(i int) { in.add(sendWith(t, tlsClient, signedGet(t, e, ingress, fmt.Sprintf("in-%d", i)))) })
	})
	wg.Go(func() {
		parallel(30, 4, func(i int) {
			req, _ := http.NewRequest("GET", fmt.Sprintf("http://sidecar/users/USR-%d", i), nil)
			out.add(sendWith(t, sidecar, req))
		})
	})
	wg.Go(func() {
		parallel(20, 4, func(i int) {
			inst2.add(sendWith(t, http.DefaultClient, signedGet(t, e, other, fmt.Sprintf("o-%d", i))))
		})
	})
	wg.Wait()

	// the ingress's 20: one before the load, 19 in it
	if in.get()[200] != 19 || in.get()[429] != 21 || len(app.Requests()) != 20 {
		t.Errorf("ingress: %v, the FI's application saw %d; want 19 admitted, 21 refused, 20 seen", in.get(), len(app.Requests()))
	}
	// the sidecar's 10, all reaching MX
	if out.get()[404] != 10 || out.get()[429] != 20 || len(mx.Requests()) != 10 {
		t.Errorf("sidecar: %v, MX saw %d; want 10 passed, 20 refused, 10 seen", out.get(), len(mx.Requests()))
	}
	if inst2.get()[200] != 4 || inst2.get()[429] != 16 || len(app2.Requests()) != 5 {
		t.Errorf("other institution: %v, its application saw %d; want 4 admitted, 16 refused, 5 seen", inst2.get(), len(app2.Requests()))
	}

	// what Redis says each namespace is
	rl := redisKeys(t, srv, "mxgate:ns:rl:*")
	roles := map[string]int{}
	for _, rec := range rl {
		roles[rec["role"]+" "+strings.SplitN(rec["protects"], " #", 2)[0]]++
	}
	if len(rl) != 3 || roles["ingress site localhost on port "+fmt.Sprint(port)] != 1 || roles["egress MX Platform API client id"] != 1 ||
		roles["ingress site 127.0.0.1 on port "+fmt.Sprint(port2)] != 1 {
		t.Errorf("rate-limit namespaces recorded: %v", rl)
	}
	if replay := redisKeys(t, srv, "mxgate:ns:replay:*"); len(replay) != 2 {
		t.Errorf("replay namespaces recorded: %v", replay)
	}
}

// TestStateSidecarsByClientID: three sidecars on one Redis, two for MX
// client CLIENT-1234 and one for CLIENT-5678, under concurrent load: the
// two of one client id share one budget exactly (as MX keeps one for
// them), the other client id has its own.
func TestStateSidecarsByClientID(t *testing.T) {
	t.Parallel()
	e := newProdEnv(t)
	srv := redistest.Start(t)
	redisEnv := "MXGATE_REDIS_URL=" + srv.URL()
	mx := mxNotFound(t)
	otherID := filepath.Join(t.TempDir(), "mx-client-id")
	if err := os.WriteFile(otherID, []byte("CLIENT-5678\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var clients []*http.Client
	for i, idFile := range []string{"", "", otherID} {
		sock := filepath.Join(dir, fmt.Sprintf("sidecar%d.sock", i))
		prodSidecar(t, e, redisEnv, sock, mx, "get 10/h burst 10", idFile)
		clients = append(clients, socketClient(t, sock))
	}
	passed := make([]tally, 3)
	parallel(45, 6, func(i int) {
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://sidecar/users/USR-%d", i), nil)
		passed[i%3].add(sendWith(t, clients[i%3], req))
	})
	one, other := passed[0].get()[404]+passed[1].get()[404], passed[2].get()[404]
	if one != 10 || other != 10 {
		t.Errorf("CLIENT-1234's two sidecars passed %d (%v, %v), CLIENT-5678's %d (%v); want 10 and 10",
			one, passed[0].get(), passed[1].get(), other, passed[2].get())
	}
	seen := map[string]int{}
	for _, r := range mx.Requests() {
		seen[r.Header.Get("Authorization")]++
	}
	basic := func(id string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(id+":API-KEY-4567"))
	}
	if seen[basic("CLIENT-1234")] != 10 || seen[basic("CLIENT-5678")] != 10 || len(seen) != 2 {
		t.Errorf("MX saw %d requests of CLIENT-1234 and %d of CLIENT-5678 (%d credentials in all); want 10 and 10",
			seen[basic("CLIENT-1234")], seen[basic("CLIENT-5678")], len(seen))
	}
	if rl := redisKeys(t, srv, "mxgate:ns:rl:*"); len(rl) != 2 {
		t.Errorf("rate-limit namespaces recorded: %v", rl)
	}
}

// TestStateIngressReplicasShare: two replicas of the production ingress,
// as written but for its port, listening on one port (SO_REUSEPORT, as
// two hosts behind one balancer would), share one replay cache and one
// budget by default: a signature is admitted once whichever replica gets
// it, and the two admit exactly one budget.
func TestStateIngressReplicasShare(t *testing.T) {
	t.Parallel()
	e := newProdEnv(t)
	srv := redistest.Start(t)
	redisEnv := "MXGATE_REDIS_URL=" + srv.URL()
	app := newUpstream(t, nil)
	port := freePort(t)
	// plain TCP listeners: Caddy's bind one port in each process
	var gs []*gateway
	for range 2 {
		gs = append(gs, prodIngress(t, e, redisEnv, port, app, "get 20/h burst 20", "tcp-handover/0.0.0.0", "127.0.0.1"))
	}
	base := fmt.Sprintf("https://localhost:%d", port)
	// a connection of its own for each request, so that both replicas
	// are reached
	fresh := func() *http.Client {
		c := devTLS(t, e.dev, "")
		c.Transport.(*http.Transport).DisableKeepAlives = true
		return c
	}()
	r := signedGet(t, e, base, "replicas")
	if s := sendWith(t, fresh, again(r, base)); s != 200 {
		t.Fatalf("first: %d", s)
	}
	var replays, load tally
	parallel(20, 4, func(int) { replays.add(sendWith(t, fresh, again(r, base))) })
	parallel(40, 4, func(i int) { load.add(sendWith(t, fresh, signedGet(t, e, base, fmt.Sprintf("rep-%d", i)))) })
	if replays.get()[412] != 20 {
		t.Errorf("replays across replicas: %v, want 20 refused", replays.get())
	}
	if load.get()[200] != 19 || load.get()[429] != 21 || len(app.Requests()) != 20 {
		t.Errorf("two replicas: %v, the application saw %d; want one budget of 20", load.get(), len(app.Requests()))
	}
	for i, g := range gs {
		if !strings.Contains(g.Stderr.String(), `"handled request"`) {
			t.Fatalf("replica %d served nothing: the test did not reach both", i)
		}
	}
}

// reorderedCaddyfile is a gateway of sites, each an MDX endpoint on its
// own port with a replay cache and a GET budget (in memory), in the order
// given.
func reorderedCaddyfile(up *upstream, sites ...string) string {
	var b strings.Builder
	b.WriteString("{\n\tadmin {ADMIN}\n\tshutdown_delay 500ms\n}\n")
	for _, s := range sites {
		port, budget, _ := strings.Cut(s, " ")
		fmt.Fprintf(&b, `http://127.0.0.1:%s {
	bind tcp-handover/127.0.0.1
	mdx_hmac verify {
		key %s
		replay_window 10m
	}
	mx_rate_limit {
		get %s
		error_format text
	}
	reverse_proxy %s
}
`, port, demoKey, budget, up.hostPort())
	}
	return b.String()
}

// TestStateSitesReorderedAcrossReload: signed load with replays
// interleaved flows to site A while the gateway is reloaded twice, each
// time with its sites in another order and, the first time, a site alike
// in every directive added before them. No valid request fails, no replay
// is admitted, at A or at B; B's spent budget stays spent; the new site
// starts with a budget and a cache of its own.
func TestStateSitesReorderedAcrossReload(t *testing.T) {
	up := newUpstream(t, nil)
	pa, pb, pc := freePort(t), freePort(t), freePort(t)
	siteA := fmt.Sprintf("%d 100000/h burst 100000", pa)
	siteB := fmt.Sprintf("%d 10/h burst 10", pb)
	siteC := fmt.Sprintf("%d 10/h burst 10", pc)
	g := startGateway(t, reorderedCaddyfile(up, siteA, siteB))
	a, b, c := fmt.Sprintf("http://127.0.0.1:%d", pa), fmt.Sprintf("http://127.0.0.1:%d", pb), fmt.Sprintf("http://127.0.0.1:%d", pc)

	// B's budget, spent
	onB := &signedLoad{t: t, base: func() string { return b }}
	for range 10 {
		onB.fresh(t)
	}
	if s, _, _ := do(t, mdxReq{method: "GET", path: "/inst1/accounts", session: "b-over"}.build(t, b)); s != 429 {
		t.Fatalf("B over its budget: %d", s)
	}

	l := &signedLoad{t: t, base: func() string { return a }}
	for range 20 {
		l.fresh(t)
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() { l.run(t, 4, 1500, stop); close(done) }()
	for _, order := range [][]string{{siteC, siteB, siteA}, {siteB, siteC, siteA}} {
		l.flowed(t, 50, done) // traffic flows between reloads
		g.reload(t, reorderedCaddyfile(up, order...))
	}
	l.flowed(t, 50, done)
	close(stop)
	<-done
	l.check(t)
	for i := range len(onB.accepted) {
		onB.replay(t, i)
	}
	if onB.replayAdmitted.Load() != 0 || onB.validFailed.Load() != 0 {
		t.Fatalf("B: %d replays admitted, %d valid failed: %v", onB.replayAdmitted.Load(), onB.validFailed.Load(), onB.failures)
	}
	if s, _, _ := do(t, mdxReq{method: "GET", path: "/inst1/accounts", session: "b-after"}.build(t, b)); s != 429 {
		t.Fatalf("B after the reloads: %d, want its budget still spent", s)
	}
	// C: its own budget and cache; a request A admitted is new to C
	onC := &signedLoad{t: t, base: func() string { return c }}
	for range 9 {
		onC.fresh(t)
	}
	if onC.validFailed.Load() != 0 {
		t.Fatalf("the new site inherited a spent budget or a cache: %v", onC.failures)
	}
	if s, _, _ := do(t, again(l.accepted[0], c)); s != 200 {
		t.Fatalf("a signature A admitted, at C: %d", s)
	}
	t.Logf("%d valid requests and %d replays at A through 2 reloads", l.n.Load(), l.replays.Load())
}

// startFails runs mxgate on caddyfile ({ADMIN} as in startGateway), which
// must refuse to start, and returns what it wrote.
func startFails(t *testing.T, caddyfile string, env ...string) string {
	t.Helper()
	dir := t.TempDir()
	caddyfile = strings.ReplaceAll(caddyfile, "{ADMIN}", fmt.Sprintf("127.0.0.1:%d", freePort(t)))
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "run", "--config", path, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	if err == nil || ctx.Err() != nil {
		t.Fatalf("mxgate started (or hung) with a configuration it must refuse: %v\n%s", err, out)
	}
	return strings.ReplaceAll(string(out), `\"`, `"`)
}

// tryReload is gateway.reload returning the failure.
func tryReload(t *testing.T, g *gateway, caddyfile string) (string, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(caddyfile, "{ADMIN}", g.admin)), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(binary, "reload", "--config", path, "--adapter", "caddyfile", "--address", g.admin).CombinedOutput()
	return strings.ReplaceAll(string(out), `\"`, `"`), err
}

// namedState waits for the namespace a gateway logs for its one directive
// logged by logger.
func namedState(t *testing.T, g *gateway, logger string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for line := range strings.SplitSeq(g.Stderr.String(), "\n") {
			var m struct {
				Logger, Msg, Namespace string
			}
			if json.Unmarshal([]byte(line), &m) == nil && m.Msg == "state named" && m.Logger == logger {
				return m.Namespace
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no state named by %s:\n%s", logger, g.Stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestStateCollisionRefused: a gateway whose state would be shared by
// accident refuses to start (or to reload, keeping its configuration),
// naming both sides: an egress budget given the namespace of an ingress
// one on the same Redis; another site given the default namespace of an
// ingress; two alike directives in one site that nothing tells apart.
func TestStateCollisionRefused(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	up := newUpstream(t, nil)
	ingress := func(port int, ns string) string {
		line := ""
		if ns != "" {
			line = "namespace " + ns
		}
		return fmt.Sprintf(`{
	admin {ADMIN}
}
http://127.0.0.1:%d {
	mx_rate_limit {
		store redis %s
		%s
	}
	reverse_proxy %s
}
`, port, srv.URL(), line, up.hostPort())
	}
	egress := func(port int, ns string) string {
		return fmt.Sprintf(`{
	admin {ADMIN}
}
http://127.0.0.1:%d {
	mx_auth attach {
		client_id CLIENT-1234
		api_key {env.E2E_API_KEY}
	}
	mx_rate_limit {
		store redis %s
		namespace %s
	}
	reverse_proxy %s
}
`, port, srv.URL(), ns, up.hostPort())
	}
	pi := freePort(t)
	startGateway(t, ingress(pi, "bank"))
	gd := startGateway(t, ingress(freePort(t), ""))
	defaultNS := namedState(t, gd, "http.handlers.mx_rate_limit")
	// both recorded before the others start
	for _, ns := range []string{"bank", defaultNS} {
		deadline := time.Now().Add(10 * time.Second)
		for len(redisKeys(t, srv, "mxgate:ns:rl:"+ns)) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("namespace %s never recorded", ns)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	out := startFails(t, egress(freePort(t), "bank"), "E2E_API_KEY=secret-api-key")
	for _, want := range []string{`state namespace "bank"`, "mx_rate_limit (egress, MX Platform API client id #",
		"records it as the namespace of mx_rate_limit (ingress, site 127.0.0.1 on port " + fmt.Sprint(pi) + ", namespace given)", "give one of them its own `namespace`"} {
		if !strings.Contains(out, want) {
			t.Errorf("egress on the ingress's namespace: want %q in\n%s", want, out)
		}
	}
	for _, secret := range []string{"secret-api-key", "CLIENT-1234"} {
		if strings.Contains(out, secret) {
			t.Errorf("the refusal holds %q", secret)
		}
	}

	out = startFails(t, ingress(freePort(t), defaultNS))
	if !strings.Contains(out, `state namespace "`+defaultNS+`"`) || !strings.Contains(out, "records it as the namespace of mx_rate_limit (ingress, site 127.0.0.1 on port") {
		t.Errorf("another site on an ingress's default namespace:\n%s", out)
	}

	// in one configuration: two alike budgets in one site
	out = startFails(t, fmt.Sprintf(`{
	admin {ADMIN}
}
http://127.0.0.1:%d {
	@get method GET
	handle @get {
		mx_rate_limit {
			get 5/s
		}
	}
	handle {
		mx_rate_limit {
			get 10/s
		}
	}
	reverse_proxy %s
}
`, freePort(t), up.hostPort()))
	if !strings.Contains(out, "would share one state: nothing tells them apart") || !strings.Contains(out, "give each its own `namespace`") {
		t.Errorf("two alike budgets in one site:\n%s", out)
	}

	// a reload into a collision is refused; the gateway keeps serving
	pe := freePort(t)
	ge := startGateway(t, egress(pe, "egress-only"), "E2E_API_KEY=secret-api-key")
	namedState(t, ge, "http.handlers.mx_rate_limit") // the configuration is running
	if out, err := tryReload(t, ge, egress(pe, "bank")); err == nil || !strings.Contains(out, "records it as the namespace of mx_rate_limit (ingress") {
		t.Errorf("a reload into a collision: %v\n%s", err, out)
	}
	if s, _, _ := do(t, mustRequest(t, "GET", fmt.Sprintf("http://127.0.0.1:%d/a", pe))); s != 200 {
		t.Errorf("the egress gateway after the refused reload: %d", s)
	}
	if s, _, _ := do(t, mustRequest(t, "GET", fmt.Sprintf("http://127.0.0.1:%d/a", pi))); s != 200 {
		t.Errorf("the ingress after the refusals: %d", s)
	}
}
