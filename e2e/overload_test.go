package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// heldUpstream is an upstream that holds every request until released,
// saying when each arrives.
type heldUpstream struct {
	*upstream
	arrived chan string
	release chan struct{}
}

func newHeldUpstream(t *testing.T) *heldUpstream {
	t.Helper()
	h := &heldUpstream{arrived: make(chan string, 256), release: make(chan struct{})}
	h.upstream = newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		h.arrived <- r.URL.Path
		<-h.release
		_, _ = io.WriteString(w, "ok")
	})
	t.Cleanup(h.Release)
	return h
}

// Release lets every held request, and every later one, through.
func (h *heldUpstream) Release() {
	select {
	case <-h.release:
	default:
		close(h.release)
	}
}

// waitArrivals waits for n requests to reach the upstream.
func (h *heldUpstream) waitArrivals(t *testing.T, n int) {
	t.Helper()
	for i := range n {
		select {
		case <-h.arrived:
		case <-time.After(20 * time.Second):
			t.Fatalf("%d of %d requests reached the upstream", i, n)
		}
	}
}

// rawConn is one client connection to the gateway, spoken to by hand so
// that the test knows which connection each request uses.
type rawConn struct {
	net.Conn
	r *bufio.Reader
}

func dialRaw(t *testing.T, addr string) (*rawConn, error) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	return &rawConn{Conn: c, r: bufio.NewReader(c)}, nil
}

// mustDialRaw is dialRaw failing the test.
func mustDialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := dialRaw(t, addr)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	return c
}

// send writes a request for path with the given extra header lines and
// body (sent as is: a Content-Length line may promise more).
func (c *rawConn) send(method, path, header, body string) error {
	_, err := fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: %s\r\n%s\r\n%s", method, path, c.RemoteAddr(), header, body)
	return err
}

// read reads one response and its body.
func (c *rawConn) read() (*http.Response, string, error) {
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, string(body), err
}

// getOnNewConn sends a GET for path on a new connection and reads the answer.
func getOnNewConn(t *testing.T, addr, path string) (*http.Response, string, error) {
	t.Helper()
	c, err := dialRaw(t, addr)
	if err != nil {
		return nil, "", err
	}
	defer c.Close()
	if err := c.send("GET", path, "", ""); err != nil {
		return nil, "", err
	}
	return c.read()
}

// storm sends n GETs at once, each on a connection of its own, and
// returns what each got (or why it got nothing).
func storm(t *testing.T, addr string, n int) []string {
	t.Helper()
	got := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			resp, body, err := getOnNewConn(t, addr, fmt.Sprintf("/storm/%d", i))
			if err != nil {
				got[i] = err.Error()
				return
			}
			got[i] = fmt.Sprintf("%d Retry-After=%s %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
		})
	}
	wg.Wait()
	return got
}

// metricLine returns the line of the gateway's metrics that starts with
// name, "" for none.
func metricLine(t *testing.T, g *gateway, name string) string {
	t.Helper()
	_, _, body := do(t, mustRequest(t, "GET", g.metrics))
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, name+" ") {
			return l
		}
	}
	return ""
}

// TestOverloadConnectionStorm: with mx_conn_limit 8 and 8 connections
// busy, a storm of 50 more gets 503 with Retry-After, each connection
// answered and none reset, and none of them reaches the upstream; the 8
// are served when the upstream answers; then the gateway serves again.
func TestOverloadConnectionStorm(t *testing.T) {
	t.Parallel()
	up := newHeldUpstream(t)
	port, mport := freePort(t), freePort(t)
	g := startGateway(t, fmt.Sprintf(`{
	admin {ADMIN}
	servers 127.0.0.1:%[1]d {
		listener_wrappers {
			mx_conn_limit 8
		}
	}
}
http://127.0.0.1:%[1]d {
	bind 127.0.0.1
	reverse_proxy %[2]s
}
http://127.0.0.1:%[3]d {
	bind 127.0.0.1
	metrics
}
`, port, up.hostPort(), mport))
	g.metrics = fmt.Sprintf("http://127.0.0.1:%d/metrics", mport)
	addr := fmt.Sprintf("127.0.0.1:%d", port)

	busy := holdBusy(t, addr, up, 8)

	for i, got := range storm(t, addr, 50) {
		if !strings.HasPrefix(got, "503 Retry-After=1 ") {
			t.Errorf("storm connection %d: %s", i, got)
		}
	}
	if n := len(up.Requests()); n != 8 {
		t.Errorf("the upstream received %d requests, want the 8 admitted", n)
	}
	if l := metricLine(t, g, `mxgate_shed_total{where="listener"}`); l != `mxgate_shed_total{where="listener"} 50` {
		t.Errorf("metrics: %q", l)
	}
	if l := metricLine(t, g, "mxgate_connections_open"); l != "mxgate_connections_open 8" {
		t.Errorf("metrics: %q", l)
	}

	releaseBusy(t, up, busy)

	// recovered: once the gateway has seen the 8 close, it serves again
	waitForMetric(t, g, "mxgate_connections_open 0")
	for i := range 3 {
		resp, body, err := getOnNewConn(t, addr, fmt.Sprintf("/after/%d", i))
		if err != nil || resp.StatusCode != 200 || body != "ok" {
			t.Errorf("after the storm, request %d: %v %q %v", i, resp, body, err)
		}
	}
	if n := len(up.Requests()); n != 11 {
		t.Errorf("the upstream received %d requests, want 11", n)
	}
}

// TestOverloadInFlightCap: with mx_shed 4 and 4 requests in flight, 50
// more get 503 with Retry-After and MDX's error body at once, and none
// reaches the upstream; a refused POST whose body is unread has its
// connection closed; the 4 are served when the upstream answers; then the
// gateway serves again.
func TestOverloadInFlightCap(t *testing.T) {
	t.Parallel()
	up := newHeldUpstream(t)
	port, mport := freePort(t), freePort(t)
	g := startGateway(t, fmt.Sprintf(`{
	admin {ADMIN}
}
http://127.0.0.1:%[1]d {
	bind 127.0.0.1
	mx_shed 4
	reverse_proxy %[2]s
}
http://127.0.0.1:%[3]d {
	bind 127.0.0.1
	metrics
}
`, port, up.hostPort(), mport))
	g.metrics = fmt.Sprintf("http://127.0.0.1:%d/metrics", mport)
	addr := fmt.Sprintf("127.0.0.1:%d", port)

	busy := holdBusy(t, addr, up, 4)

	const mdxBody = `<mdx version="5.0"><error><code></code><message>Service unavailable: the gateway is at capacity; retry later</message></error></mdx>`
	for i, got := range storm(t, addr, 50) {
		if got != "503 Retry-After=1 "+mdxBody {
			t.Errorf("request %d over the cap: %s", i, got)
		}
	}

	t.Run("post_with_unread_body", func(t *testing.T) {
		c := mustDialRaw(t, addr)
		// a megabyte promised, a few bytes sent: the refusal does not wait for the rest
		if err := c.send("POST", "/members", "Content-Type: application/json\r\nContent-Length: 1048576\r\n", `{"member":`); err != nil {
			t.Fatal(err)
		}
		resp, body, err := c.read()
		if err != nil || resp.StatusCode != 503 || body != mdxBody || !resp.Close {
			t.Fatalf("%v %q %v; want 503 and Connection: close", resp, body, err)
		}
		rest, err := io.ReadAll(c.r)
		var ne net.Error
		if len(rest) != 0 || (errors.As(err, &ne) && ne.Timeout()) {
			t.Fatalf("after the 503: read %q, %v; want the connection closed", rest, err)
		}
	})

	if n := len(up.Requests()); n != 4 {
		t.Errorf("the upstream received %d requests, want the 4 admitted", n)
	}
	if l := metricLine(t, g, `mxgate_shed_total{where="handler"}`); l != `mxgate_shed_total{where="handler"} 51` {
		t.Errorf("metrics: %q", l)
	}
	if l := metricLine(t, g, `mxgate_rejections_total{directive="mx_shed",reason="overloaded"}`); l != `mxgate_rejections_total{directive="mx_shed",reason="overloaded"} 51` {
		t.Errorf("metrics: %q", l)
	}

	releaseBusy(t, up, busy)

	// recovered: a place comes back as each request leaves the handler,
	// which may be a moment after its client read the answer
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, _, err := getOnNewConn(t, addr, "/after")
		if err == nil && resp.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never served again: %v %v", resp, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := range 3 {
		resp, body, err := getOnNewConn(t, addr, fmt.Sprintf("/after/%d", i))
		if err != nil || resp.StatusCode != 200 || body != "ok" {
			t.Errorf("after, request %d: %v %q %v", i, resp, body, err)
		}
	}
}

// holdBusy sends n requests on connections of their own and waits until
// the upstream holds them all.
func holdBusy(t *testing.T, addr string, up *heldUpstream, n int) []*rawConn {
	t.Helper()
	busy := make([]*rawConn, n)
	for i := range busy {
		busy[i] = mustDialRaw(t, addr)
		if err := busy[i].send("GET", fmt.Sprintf("/busy/%d", i), "", ""); err != nil {
			t.Fatal(err)
		}
	}
	up.waitArrivals(t, n)
	return busy
}

// releaseBusy lets the upstream answer, checks that each held request got
// 200, and closes the connections.
func releaseBusy(t *testing.T, up *heldUpstream, busy []*rawConn) {
	t.Helper()
	up.Release()
	for i, c := range busy {
		resp, body, err := c.read()
		if err != nil || resp.StatusCode != 200 || body != "ok" {
			t.Errorf("busy request %d: %v %q %v", i, resp, body, err)
		}
		c.Close()
	}
}

// connLimitReloadCaddyfile is a site on tcp-handover behind mx_conn_limit
// with several accepting goroutines, generation gen of its configuration.
func connLimitReloadCaddyfile(port, mport int, up *upstream, gen int) string {
	return fmt.Sprintf(`{
	admin {ADMIN}
	shutdown_delay 500ms
	servers tcp-handover/127.0.0.1:%[1]d {
		listener_wrappers {
			mx_conn_limit {
				max 64
				acceptors 4
			}
		}
	}
}
http://127.0.0.1:%[1]d {
	bind tcp-handover/127.0.0.1
	header X-Generation %[4]d
	reverse_proxy %[2]s
}
http://127.0.0.1:%[3]d {
	bind 127.0.0.1
	metrics
}
`, port, up.hostPort(), mport, gen)
}

// TestOverloadConnLimitAcrossReloads: clients open a new connection for
// every request, under the cap, while the configuration is reloaded five
// times; on tcp-handover behind mx_conn_limit's accepting goroutines,
// every request is answered (none reset, none lost between the old
// configuration's queue and its shutdown), the upstream sees each once,
// and every place is given back.
func TestOverloadConnLimitAcrossReloads(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, nil)
	port, mport := freePort(t), freePort(t)
	g := startGateway(t, connLimitReloadCaddyfile(port, mport, up, 0))
	g.metrics = fmt.Sprintf("http://127.0.0.1:%d/metrics", mport)
	addr := fmt.Sprintf("127.0.0.1:%d", port)

	var answered sync.WaitGroup
	var ok, bad int64
	var mu sync.Mutex
	var firstErr string
	stop := make(chan struct{})
	for w := range 8 {
		answered.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				resp, body, err := getOnNewConn(t, addr, fmt.Sprintf("/reload/%d/%d", w, i))
				mu.Lock()
				if err == nil && resp.StatusCode == 200 {
					ok++
				} else {
					bad++
					if firstErr == "" {
						firstErr = fmt.Sprintf("%v %v %q", resp, err, body)
					}
				}
				mu.Unlock()
			}
		})
	}
	for gen := 1; gen <= 5; gen++ {
		time.Sleep(200 * time.Millisecond) // let traffic flow between reloads
		g.reload(t, connLimitReloadCaddyfile(port, mport, up, gen))
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	answered.Wait()
	if bad != 0 || ok == 0 {
		t.Fatalf("%d requests answered 200, %d not (the first: %s)", ok, bad, firstErr)
	}
	if n := int64(len(up.Requests())); n != ok {
		t.Errorf("the upstream received %d requests, the clients %d answers", n, ok)
	}
	waitForMetric(t, g, "mxgate_connections_open 0")
	t.Logf("%d requests on new connections through 5 reloads", ok)
}
