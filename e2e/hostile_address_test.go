package e2e

// Hostile clients against mx_ip_allow: forged client addresses behind a
// proxy (issue 10, class 1) and connections refused before TLS (class 3's
// listener wrapper). Each attack runs against a real mxgate in front of an
// upstream that records what reaches it.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// httpClientFrom is an HTTP client whose connections leave from the local
// address src, on fresh connections each time.
func httpClientFrom(src string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DialContext:       d.DialContext,
			DisableKeepAlives: true,
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, // the gateway's internal CA
		},
	}
}

// sendFromAddr sends req from src and returns the status and body.
func sendFromAddr(t *testing.T, src string, req *http.Request) (int, string) {
	t.Helper()
	resp, err := httpClientFrom(src).Do(req)
	if err != nil {
		t.Fatalf("%s %s from %s: %v", req.Method, req.URL, src, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// hostileAttack is one request: its header lines, where it comes from,
// and what the gateway must answer.
type hostileAttack struct {
	name   string
	from   string              // local address to send from; default 127.0.0.1
	header map[string][]string // every value is its own header line
	status int
}

// runAddressAttacks sends each attack to base and checks the status and
// what the upstream received: one request carrying the attack's marker
// for a 200, nothing for a refusal.
func runAddressAttacks(t *testing.T, base string, up *upstream, attacks []hostileAttack) {
	t.Helper()
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			before := len(up.Requests())
			req := mustRequest(t, "GET", base+"/inst1/accounts")
			marker := "attack-" + a.name
			req.Header.Set("X-Attack", marker)
			for k, vs := range a.header {
				for _, v := range vs {
					req.Header.Add(k, v)
				}
			}
			from := a.from
			if from == "" {
				from = "127.0.0.1"
			}
			status, body := sendFromAddr(t, from, req)
			if status != a.status {
				t.Fatalf("status %d, want %d: %s", status, a.status, body)
			}
			got := up.Requests()[before:]
			if a.status != 200 {
				if body != mdxError("Forbidden: client address is not allowed") {
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

// xffLines is an X-Forwarded-For header, one line per argument.
func xffLines(lines ...string) map[string][]string {
	return map[string][]string{"X-Forwarded-For": lines}
}

// TestHostileAddress: clients that write their own forwarded headers to
// pass as MX's addresses.
func TestHostileAddress(t *testing.T) {
	t.Parallel()
	const mx, other = mxAddr, "203.0.113.9"

	// The setup of the issue: the server trusts loopback as a proxy, not
	// strictly (Caddy's default), and believes X-Forwarded-For and
	// X-Real-IP; mx_ip_allow has no trusted proxies of its own.
	t.Run("server_trusts_proxies", func(t *testing.T) {
		t.Parallel()
		for _, strict := range []string{"", "trusted_proxies_strict"} {
			up := newUpstream(t, nil)
			port := freePort(t)
			g := startGateway(t, fmt.Sprintf(`{
	admin {ADMIN}
	servers {
		trusted_proxies static 127.0.0.1/32 ::1/128
		%s
		client_ip_headers X-Forwarded-For X-Real-IP
	}
}
http://127.0.0.1:%d {
	bind 127.0.0.1
	mx_ip_allow mdx
	reverse_proxy %s
}
`, strict, port, up.hostPort()))
			base := fmt.Sprintf("http://127.0.0.1:%d", port)
			name := "server_trusted_proxies_not_strict"
			if strict != "" {
				name = "server_trusted_proxies_strict"
			}
			runAddressAttacks(t, base, up, []hostileAttack{
				{name: name, header: xffLines(mx), status: 403},
				{name: name + "/x_real_ip", header: map[string][]string{"X-Real-IP": {mx}}, status: 403},
				// strict mode skips an entry it cannot parse and takes the next
				{name: name + "/garbage_rightmost", header: xffLines(mx + ", garbage"), status: 403},
				{name: name + "/xff_zone", header: xffLines(mx + "%eth0"), status: 403},
				{name: name + "/xff_ipv4_mapped", header: xffLines("::ffff:" + mx), status: 403},
			})
			// one warning says what to add, however many requests came
			const advice = "add `trusted_proxies 127.0.0.1` (or its range) to mx_ip_allow"
			waitForLog(t, g, advice)
			if n := strings.Count(g.Stderr.String(), advice); n != 1 {
				t.Errorf("the advice was logged %d times, want once", n)
			}
		}
	})

	// The load-balancer setup of docs/mdx-ingress.md: mx_ip_allow trusts the
	// balancer (here the test, on 127.0.0.1), which appends the address
	// it saw to what the client sent.
	t.Run("behind_load_balancer", func(t *testing.T) {
		t.Parallel()
		up := newUpstream(t, nil)
		port := freePort(t)
		startGateway(t, fmt.Sprintf(`{
	admin {ADMIN}
	servers {
		trusted_proxies static private_ranges
	}
}
http://127.0.0.1:%d {
	bind 127.0.0.1
	mx_ip_allow mdx {
		trusted_proxies 127.0.0.1/32
	}
	reverse_proxy %s
}
`, port, up.hostPort()))
		base := fmt.Sprintf("http://127.0.0.1:%d", port)
		runAddressAttacks(t, base, up, []hostileAttack{
			// the controls: MX behind the balancer gets through
			{name: "control_mx_behind_balancer", header: xffLines(mx), status: 200},
			{name: "control_mx_after_client_junk", header: xffLines("garbage, " + other + ", " + mx), status: 200},
			{name: "control_mx_mapped_with_port", header: xffLines("[::ffff:" + mx + "]:443"), status: 200},
			{name: "control_mx_on_its_own_line", header: xffLines(other, mx), status: 200},

			{name: "xff_spoof_leftmost", header: xffLines(mx + ", " + other), status: 403},
			{name: "xff_ipv4_mapped", header: xffLines("::ffff:" + mx + ", " + other), status: 403},
			{name: "xff_with_port", header: xffLines(mx + ":443, " + other), status: 403},
			{name: "xff_bracketed_mapped_with_port", header: xffLines("[::ffff:" + mx + "]:443, " + other), status: 403},
			{name: "xff_zone", header: xffLines(mx + "%eth0"), status: 403},
			{name: "xff_zone_mapped", header: xffLines("::ffff:" + mx + "%eth0"), status: 403},
			{name: "xff_two_lines", header: xffLines(mx, other), status: 403},
			{name: "xff_two_lines_trusted_hop_last", header: xffLines(mx, other+", 127.0.0.1"), status: 403},
			{name: "xff_behind_trusted_hop", header: xffLines(mx + ", " + other + ", 127.0.0.1"), status: 403},
			{name: "xff_garbage_rightmost", header: xffLines(mx + ", garbage"), status: 403},
			{name: "xff_empty_entry", header: xffLines(mx + ","), status: 403},
			{name: "xff_empty_line", header: xffLines(mx, ""), status: 403},
			{name: "xff_leading_zeros", header: xffLines("064.077.254.033"), status: 403},
			{name: "xff_unknown", header: xffLines("unknown"), status: 403},
			{name: "xff_hostname", header: xffLines("mx.com"), status: 403},
			{name: "no_xff_from_balancer", status: 403},
			{name: "forwarded_rfc7239", header: map[string][]string{"Forwarded": {"for=" + mx}}, status: 403},
			{name: "x_real_ip", header: map[string][]string{"X-Real-IP": {mx}}, status: 403},
			// 127.0.0.2 is loopback, and private_ranges for the server, but
			// not mx_ip_allow's trusted proxy: its header is not read
			{name: "untrusted_peer_with_xff", from: "127.0.0.2", header: xffLines(mx), status: 403},
		})
	})
}

// listenerGateway starts an HTTPS site on tlsPort whose server closes
// connections from outside 127.0.0.2/32 at accept; bind is its bind
// address. Metrics are on a second, plain site.
func listenerGateway(t *testing.T, up *upstream, bind string) (tlsPort int, metricsURL string) {
	t.Helper()
	tlsPort, mport := freePort(t), freePort(t)
	startGateway(t, fmt.Sprintf(`{
	admin {ADMIN}
	skip_install_trust
	auto_https disable_redirects
	log {
		level DEBUG
	}
	servers %[1]s:%[2]d {
		protocols h1 h2 # tcp-handover is TCP: no HTTP/3
		listener_wrappers {
			mx_ip_allow {
				ranges 127.0.0.2/32
			}
			tls
		}
	}
}
https://localhost:%[2]d {
	bind %[1]s
	tls internal
	reverse_proxy %[3]s
}
http://127.0.0.1:%[4]d {
	bind 127.0.0.1
	metrics
}
`, bind, tlsPort, up.hostPort(), mport))
	return tlsPort, fmt.Sprintf("http://127.0.0.1:%d/metrics", mport)
}

// handshakeFrom runs a TLS handshake from src to 127.0.0.1:port.
func handshakeFrom(src string, port int) (*tls.Conn, error) {
	d := &tls.Dialer{
		NetDialer: &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second},
		Config:    &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return nil, err
	}
	return c.(*tls.Conn), nil
}

// TestHostileListener: a peer outside the listener wrapper's list never
// gets a TLS handshake, on Caddy's own TCP listener and on tcp-handover.
func TestHostileListener(t *testing.T) {
	t.Parallel()
	for name, bind := range map[string]string{"tcp": "127.0.0.1", "tcp_handover": "tcp-handover/127.0.0.1"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			up := newUpstream(t, nil)
			port, metricsURL := listenerGateway(t, up, bind)

			// the control: an allowed peer completes the handshake and is served
			var c *tls.Conn
			var err error
			for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				// the internal CA's certificate may still be in the making
				if c, err = handshakeFrom("127.0.0.2", port); err == nil || time.Now().After(deadline) {
					break
				}
			}
			if err != nil {
				t.Fatalf("allowed peer: %v", err)
			}
			c.Close()
			status, _ := sendFromAddr(t, "127.0.0.2", mustRequest(t, "GET", fmt.Sprintf("https://localhost:%d/inst1/accounts", port)))
			if status != 200 || len(up.Requests()) != 1 {
				t.Fatalf("allowed peer: %d, %d upstream request(s)", status, len(up.Requests()))
			}

			for _, attack := range []string{"handshake_from_refused_peer", "second_handshake_from_refused_peer"} {
				t.Run(attack, func(t *testing.T) {
					_, err := handshakeFrom("127.0.0.1", port)
					if err == nil {
						t.Fatal("the TLS handshake succeeded")
					}
					if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.ErrUnexpectedEOF) {
						t.Fatalf("handshake failed, but not by the connection closing: %v", err)
					}
				})
			}
			t.Run("request_from_refused_peer", func(t *testing.T) {
				req := mustRequest(t, "GET", fmt.Sprintf("https://localhost:%d/inst1/accounts", port))
				req.Header.Set("X-Forwarded-For", "127.0.0.2")
				if resp, err := httpClientFrom("127.0.0.1").Do(req); err == nil {
					resp.Body.Close()
					t.Fatalf("answered %d", resp.StatusCode)
				}
			})
			t.Run("raw_bytes_from_refused_peer", func(t *testing.T) {
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.1")}, Timeout: 5 * time.Second}
				c, err := d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
				if err != nil {
					return // reset before connect returned: closed all the same
				}
				defer c.Close()
				_, _ = c.Write([]byte("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"))
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				n, err := c.Read(make([]byte, 512))
				var ne net.Error
				if n != 0 || err == nil || (errors.As(err, &ne) && ne.Timeout()) {
					t.Fatalf("read %d bytes, %v: the connection was not closed", n, err)
				}
			})
			if len(up.Requests()) != 1 {
				t.Errorf("the upstream received %d requests, want the control's one", len(up.Requests()))
			}
			_, _, metrics := do(t, mustRequest(t, "GET", metricsURL))
			if !strings.Contains(metrics, "\nmxgate_listener_refused_total 4\n") {
				t.Errorf("mxgate_listener_refused_total is not 4:\n%s", grepLines(metrics, "mxgate_listener"))
			}
		})
	}
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
