package shed

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap/zaptest/observer"

	"github.com/mxgate/mxgate/caddymodule/internal/metrics"
	"github.com/mxgate/mxgate/internal/testkit/handlertest"
)

// Every test here reads process-wide metrics before and after: none is
// parallel.

func shedCount(t *testing.T, where string) float64 {
	t.Helper()
	return handlertest.MetricValue(t, metrics.Shed, map[string]string{"where": where})
}

func openGauge(t *testing.T) float64 {
	t.Helper()
	return handlertest.MetricValue(t, metrics.ConnectionsOpen, nil)
}

// server is a wrapped listener on loopback whose accepted connections
// the test takes from accepted.
type server struct {
	cl       *ConnLimit
	logs     *observer.ObservedLogs
	ln       net.Listener
	accepted chan net.Conn
	done     chan struct{} // closed when the accept loop ends
}

// serve provisions cl and runs its wrapper over a loopback listener
// (inside tls when cfg is not nil), until the test ends.
func serve(t *testing.T, cl *ConnLimit, cfg *tls.Config) *server {
	t.Helper()
	handlertest.Provision(t, cl)
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var inner net.Listener = raw
	if cfg != nil {
		inner = tls.NewListener(raw, cfg)
	}
	s := &server{cl: cl, ln: cl.WrapListener(inner), accepted: make(chan net.Conn, 64), done: make(chan struct{})}
	cl.logger, s.logs = handlertest.Logs()
	if s.ln.Addr() != raw.Addr() {
		t.Error("Addr is not the wrapped listener's")
	}
	go func() {
		defer close(s.done)
		for {
			c, err := s.ln.Accept()
			if err != nil {
				return
			}
			s.accepted <- c
		}
	}()
	t.Cleanup(func() {
		s.ln.Close()
		<-s.done
		for {
			select {
			case c := <-s.accepted:
				c.Close()
				continue
			default:
			}
			break
		}
		// no goroutine outlives the test: every shed connection is done
		s.waitShedders(t)
	})
	return s
}

// count returns how many are at work.
func (s *shedders) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// wait returns when none is at work.
func (s *shedders) wait() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.n > 0 {
		s.idle.Wait()
	}
}

func (s *server) addr() string { return s.ln.Addr().String() }

// waitShedders waits for every connection being answered to be done; a
// shedder that outlives its bounds fails the test rather than hang it.
func (s *server) waitShedders(t *testing.T) {
	t.Helper()
	done := make(chan struct{})
	go func() { s.cl.shedding.wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("%d shed connections still being answered", s.cl.shedding.count())
	}
}

// take returns the next connection the wrapper handed on.
func (s *server) take(t *testing.T) net.Conn {
	t.Helper()
	select {
	case c := <-s.accepted:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no connection was handed on")
		return nil
	}
}

// noneHandedOn fails the test if a connection is waiting in accepted. The
// accept loop hands a connection on before it accepts the next, so once
// a later connection has been answered, an earlier one would be there.
func (s *server) noneHandedOn(t *testing.T) {
	t.Helper()
	select {
	case c := <-s.accepted:
		t.Fatalf("a connection over max was handed on: %v", c.RemoteAddr())
	default:
	}
}

// dialShed connects to addr for a connection the server resets at
// accept; nil when the reset came before connect returned.
func dialShed(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if errors.Is(err, syscall.ECONNRESET) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// shedAnswer sends a request on c and reads the canned 503.
func shedAnswer(t *testing.T, c net.Conn) (*http.Response, error) {
	t.Helper()
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: gw\r\n\r\n"); err != nil {
		return nil, err
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	if string(body) != shedBody {
		t.Errorf("body %q", body)
	}
	return resp, nil
}

// closedUnanswered fails the test unless c (from dialShed) is closed by
// the server without a byte written.
func closedUnanswered(t *testing.T, c net.Conn) {
	t.Helper()
	if c == nil {
		return // reset before connect returned
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := c.Read(make([]byte, 64))
	var ne net.Error
	if n != 0 || err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("read %d bytes, %v: want the connection closed unanswered", n, err)
	}
}

// TestConnLimit: connections over max are answered 503 and never handed
// on; closing the admitted ones, twice over, frees their places exactly.
func TestConnLimit(t *testing.T) {
	shedBefore, openBefore := shedCount(t, "listener"), openGauge(t)
	s := serve(t, &ConnLimit{Max: 3}, nil)

	var admitted []net.Conn
	for range 3 {
		dial(t, s.addr())
		admitted = append(admitted, s.take(t))
	}
	if got := s.cl.open.Load(); got != 3 {
		t.Fatalf("open %d, want 3", got)
	}
	if got := openGauge(t) - openBefore; got != 3 {
		t.Errorf("mxgate_connections_open grew by %v, want 3", got)
	}

	for i := range 5 {
		resp, err := shedAnswer(t, dial(t, s.addr()))
		if err != nil {
			t.Fatalf("connection %d over max: %v", i+1, err)
		}
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" || !resp.Close {
			t.Errorf("connection %d over max: %d %v", i+1, resp.StatusCode, resp.Header)
		}
	}
	s.noneHandedOn(t)
	if got := shedCount(t, "listener") - shedBefore; got != 5 {
		t.Errorf("mxgate_shed_total{where=listener} grew by %v, want 5", got)
	}
	if got := s.cl.open.Load(); got != 3 {
		t.Errorf("open %d after shedding, want 3", got)
	}
	logged := s.logs.FilterMessage("connection shed at accept: too many open").All()
	if len(logged) != 5 {
		t.Errorf("%d sheds logged, want 5", len(logged))
	} else if f := logged[0].ContextMap(); f["answered"] != true || f["max"] != int64(3) || f["remote_addr"] == "" {
		t.Errorf("log fields %v", f)
	}

	// closed twice, and from two goroutines at once: one place each
	var wg sync.WaitGroup
	for _, c := range admitted {
		for range 2 {
			wg.Go(func() {
				if err := c.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
					t.Error(err)
				}
			})
		}
	}
	wg.Wait()
	if got := s.cl.open.Load(); got != 0 {
		t.Errorf("open %d after every close, want 0", got)
	}
	if got := openGauge(t) - openBefore; got != 0 {
		t.Errorf("mxgate_connections_open is %v above where it started, want 0", got)
	}

	// recovered: the next connection is handed on
	dial(t, s.addr())
	s.take(t).Close()
}

// TestConnLimitMaxShedding: past max_shedding connections being waited
// for, a connection over max is reset at once, unanswered.
func TestConnLimitMaxShedding(t *testing.T) {
	shedBefore := shedCount(t, "listener")
	// the first shed connection holds its place until its client closes
	s := serve(t, &ConnLimit{Max: 1, MaxShedding: 1, drain: time.Minute}, nil)
	dial(t, s.addr())
	s.take(t)

	// a client that sends nothing before it is accepted is waited for
	first := dial(t, s.addr())
	for s.cl.shedding.count() != 1 { // a wait, bounded by the test's timeout
		time.Sleep(time.Millisecond)
	}
	if resp, err := shedAnswer(t, first); err != nil || resp.StatusCode != 503 {
		t.Fatalf("first over max: %v %v", resp, err)
	}
	// the next is reset without an answer, as the storm's cheapest way out
	// (the reset may come as it connects)
	if second, err := net.Dial("tcp", s.addr()); err == nil {
		_ = second.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(second)
		if err == nil || len(got) != 0 {
			t.Fatalf("past max_shedding: read %q, %v; want a reset and no answer", got, err)
		}
		second.Close()
	}
	if got := s.cl.shedding.count(); got != 1 {
		t.Errorf("shedding %d, want the first's 1", got)
	}
	s.noneHandedOn(t)
	if got := shedCount(t, "listener") - shedBefore; got != 2 {
		t.Errorf("mxgate_shed_total{where=listener} grew by %v, want 2", got)
	}

	// the client closes: its shedder ends
	first.Close()
	s.waitShedders(t)
	if got := s.cl.shedding.count(); got != 0 {
		t.Fatalf("shedding %d after the drain, want 0", got)
	}
	if resp, err := shedAnswer(t, dial(t, s.addr())); err != nil || resp.StatusCode != 503 {
		t.Fatalf("after the drain: %v %v", resp, err)
	}
}

// gatedListener accepts only when the test lets it, one connection per
// value sent on next.
type gatedListener struct {
	net.Listener
	next chan struct{}
}

func (l *gatedListener) Accept() (net.Conn, error) {
	<-l.next
	return l.Listener.Accept()
}

// TestConnLimitShedPending: a connection over max whose request arrived
// before it was accepted is answered 503 and closed at once, the request
// read so that the close is clean (no reset), and no goroutine waits for
// its client.
func TestConnLimitShedPending(t *testing.T) {
	cl := &ConnLimit{Max: 1, Acceptors: 1, drain: time.Minute}
	handlertest.Provision(t, cl)
	cl.logger, _ = handlertest.Logs()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gl := &gatedListener{Listener: raw, next: make(chan struct{}, 2)}
	ln := cl.WrapListener(gl)
	t.Cleanup(func() { close(gl.next); ln.Close() })
	gl.next <- struct{}{}
	dial(t, raw.Addr().String())
	held, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()

	c := dial(t, raw.Addr().String())
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: gw\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	// the request is in the server's socket before it is accepted: wait
	// until the kernel says so
	waitQueued(t, raw.Addr(), c.LocalAddr())
	gl.next <- struct{}{}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || string(got) != string(response503) {
		t.Fatalf("read %q, %v; want the 503 and the end of the stream, no reset", got, err)
	}
	if n := cl.shedding.count(); n != 0 {
		t.Errorf("%d goroutines wait for a client whose request was read", n)
	}
}

// TestConnLimitDrainBounded: a client that sends more than the drain reads
// still gets its 503 first, and its shedder ends.
func TestConnLimitDrainBounded(t *testing.T) {
	s := serve(t, &ConnLimit{Max: 1, drain: time.Minute}, nil)
	dial(t, s.addr())
	s.take(t)
	c := dial(t, s.addr())
	go func() { _, _ = c.Write(make([]byte, 4*shedDrainMax)) }()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 503 {
		t.Fatalf("%v %v", resp, err)
	}
	s.waitShedders(t) // after shedDrainMax bytes, not after a minute
}

// TestConnLimitHalfClose: the 503 is followed by the end of the stream at
// once (the write side is shut), not when the drain gives up, so that a
// client reading to the end is not held.
func TestConnLimitHalfClose(t *testing.T) {
	s := serve(t, &ConnLimit{Max: 1, drain: time.Minute}, nil)
	dial(t, s.addr())
	s.take(t)
	c := dial(t, s.addr())
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || string(got) != string(response503) {
		t.Fatalf("read %q, %v; want the 503 and the end of the stream", got, err)
	}
	c.Close()
	s.waitShedders(t)
}

// TestConnLimitAnswerClose: with answer close, a connection over max is
// reset without a byte.
func TestConnLimitAnswerClose(t *testing.T) {
	s := serve(t, &ConnLimit{Max: 1, Answer: "close"}, nil)
	dial(t, s.addr())
	s.take(t)
	c := dialShed(t, s.addr())
	if c != nil {
		_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: gw\r\n\r\n")
	}
	closedUnanswered(t, c)
	s.noneHandedOn(t)
	if got := s.cl.shedding.count(); got != 0 {
		t.Errorf("shedding %d, want 0: nothing is answered", got)
	}
}

// TestConnLimitAfterTLS: after tls, admitted connections keep their TLS
// state in sight of the server, and one over max is reset, never
// answered in plaintext nor shaken hands with.
func TestConnLimitAfterTLS(t *testing.T) {
	cert := httptest.NewTLSServer(http.NotFoundHandler())
	cert.Close()
	clientCfg := cert.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	clientCfg.ServerName = "example.com"
	s := serve(t, &ConnLimit{Max: 1}, &tls.Config{Certificates: cert.TLS.Certificates})

	dialTLS := func() (*tls.Conn, error) {
		raw, err := net.DialTimeout("tcp", s.addr(), 5*time.Second)
		if err != nil {
			return nil, err
		}
		t.Cleanup(func() { raw.Close() })
		c := tls.Client(raw, clientCfg)
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		return c, c.Handshake()
	}
	// the handshake happens at the server's first read
	client := make(chan error, 1)
	go func() {
		c, err := dialTLS()
		if err == nil {
			_, err = c.Write([]byte("ping"))
		}
		client <- err
	}()
	sc := s.take(t)
	cs, ok := sc.(connectionStater)
	if !ok {
		t.Fatalf("the admitted connection (%T) hides its TLS state", sc)
	}
	_ = sc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(sc, make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	if err := <-client; err != nil {
		t.Fatal(err)
	}
	if !cs.ConnectionState().HandshakeComplete {
		t.Error("ConnectionState does not show the handshake")
	}

	if _, err := dialTLS(); err == nil {
		t.Fatal("a connection over max completed a TLS handshake")
	} else if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("handshake failed, but not by the connection closing: %v", err)
	}
	s.noneHandedOn(t)
	sc.Close()
	if got := s.cl.open.Load(); got != 0 {
		t.Errorf("open %d, want 0", got)
	}
}

// TestConnLimitConcurrent: whatever the interleaving of accepts and
// closes, never more than max are open and every place comes back.
func TestConnLimitConcurrent(t *testing.T) {
	const max, n = 8, 200
	s := serve(t, &ConnLimit{Max: max, MaxShedding: n}, nil)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case c := <-s.accepted:
				if n := s.cl.open.Load(); n > max {
					t.Errorf("%d open, max %d", n, max)
				}
				// the server and a timeout both close it
				wg.Go(func() { c.Close() })
				wg.Go(func() { c.Close() })
			case <-stop:
				return
			}
		}
	})
	var clients sync.WaitGroup
	for range n {
		clients.Go(func() {
			c, err := net.DialTimeout("tcp", s.addr(), 5*time.Second)
			if errors.Is(err, syscall.ECONNRESET) {
				return
			}
			if err != nil {
				t.Error(err)
				return
			}
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, _ = io.Copy(io.Discard, c) // until the server closes it
			c.Close()
		})
	}
	clients.Wait() // each was closed by the server: handed on and closed, or shed
	close(stop)
	wg.Wait()
	s.waitShedders(t)
	if got := s.cl.open.Load(); got != 0 {
		t.Errorf("open %d after every close, want 0", got)
	}
}

func TestConnLimitProvision(t *testing.T) {
	cl := &ConnLimit{}
	handlertest.Provision(t, cl)
	if cl.Max != DefaultMaxConns || cl.MaxShedding != DefaultMaxShedding || cl.Acceptors != DefaultAcceptors || cl.close {
		t.Errorf("defaults: %+v", cl)
	}
	for name, bad := range map[string]*ConnLimit{
		"negative max":          {Max: -1},
		"negative max_shedding": {MaxShedding: -1},
		"unknown answer":        {Answer: "reset"},
		"negative acceptors":    {Acceptors: -1},
		"too many acceptors":    {Acceptors: maxAcceptors + 1},
	} {
		if err := handlertest.TryProvision(t, bad); err == nil {
			t.Errorf("%s: provisioned", name)
		}
	}
}

// waitQueued waits until the server's end of the connection from client
// to server, not yet accepted, holds bytes to read (its rx_queue in
// /proc/net/tcp).
func waitQueued(t *testing.T, server, client net.Addr) {
	t.Helper()
	local := fmt.Sprintf(":%04X ", server.(*net.TCPAddr).Port)
	remote := fmt.Sprintf(":%04X ", client.(*net.TCPAddr).Port)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile("/proc/net/tcp")
		if err != nil {
			t.Skipf("cannot read /proc/net/tcp: %v", err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) < 5 || !strings.HasSuffix(f[1]+" ", local) || !strings.HasSuffix(f[2]+" ", remote) {
				continue
			}
			if _, rx, ok := strings.Cut(f[4], ":"); ok && strings.Trim(rx, "0") != "" {
				return
			}
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("the request never reached the server's socket")
}
