package shed

import (
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/testkit/handlertest"
)

// fakeListener hands out the connections and errors sent on next, from
// any number of goroutines at once, and net.ErrClosed once closed.
type fakeListener struct {
	next      chan any // *fakeConn or error
	closed    chan struct{}
	closeOnce sync.Once
	after     error // returned once next is closed and drained; nil: block
}

func newFakeListener(buffer int) *fakeListener {
	return &fakeListener{next: make(chan any, buffer), closed: make(chan struct{})}
}

func (l *fakeListener) Accept() (net.Conn, error) {
	select {
	case v, ok := <-l.next:
		if !ok {
			if l.after != nil {
				return nil, l.after
			}
			<-l.closed
			return nil, net.ErrClosed
		}
		if err, ok := v.(error); ok {
			return nil, err
		}
		return v.(*fakeConn), nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *fakeListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

func (l *fakeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8443} }

// fakeConn records what the wrapper did with it. Reads find the client's
// end of the stream at once, so a 503's drain ends at once.
type fakeConn struct {
	id      int
	wrote   atomic.Int32 // bytes written
	closes  atomic.Int32
	onClose func(*fakeConn) // on the first Close
}

func (c *fakeConn) Read([]byte) (int, error) { return 0, io.EOF }
func (c *fakeConn) Write(p []byte) (int, error) {
	c.wrote.Add(int32(len(p)))
	return len(p), nil
}

func (c *fakeConn) Close() error {
	if c.closes.Add(1) == 1 && c.onClose != nil {
		c.onClose(c)
	}
	return nil
}
func (c *fakeConn) LocalAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8443} }
func (c *fakeConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000 + c.id}
}
func (c *fakeConn) SetDeadline(time.Time) error      { return nil }
func (c *fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fakeConn) SetWriteDeadline(time.Time) error { return nil }

// temporaryError is a failure to accept one connection.
type temporaryError struct{}

func (temporaryError) Error() string   { return "accept: too many open files" }
func (temporaryError) Temporary() bool { return true }
func (temporaryError) Timeout() bool   { return false }

// wrapFake provisions cl and wraps l in it, closing the wrapper when the
// test ends.
func wrapFake(t *testing.T, cl *ConnLimit, l *fakeListener) net.Listener {
	t.Helper()
	handlertest.Provision(t, cl)
	cl.logger, _ = handlertest.Logs()
	ln := cl.WrapListener(l)
	t.Cleanup(func() { ln.Close() })
	return ln
}

// unwrap returns the fake connection beneath an admitted one.
func unwrap(t *testing.T, c net.Conn) *fakeConn {
	t.Helper()
	for range 4 {
		if f, ok := c.(*fakeConn); ok {
			return f
		}
		nc, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		c = nc.NetConn()
	}
	t.Fatalf("%T does not wrap a fake connection", c)
	return nil
}

// TestConnLimitAcceptorsEachOnce: with several goroutines accepting at
// once and the server closing connections as it goes, every accepted
// connection is handed on or shed (answered 503), never both, never
// neither; the shed count and the places add up.
func TestConnLimitAcceptorsEachOnce(t *testing.T) {
	const n, max = 3000, 7
	shedBefore, openBefore := shedCount(t, "listener"), openGauge(t)
	fl := newFakeListener(n)
	cl := &ConnLimit{Max: max, MaxShedding: n, Acceptors: 8}
	ln := wrapFake(t, cl, fl)
	ended := make(chan int, n) // ids, as each connection is first closed
	conns := make([]*fakeConn, n)
	for i := range conns {
		conns[i] = &fakeConn{id: i, onClose: func(c *fakeConn) { ended <- c.id }}
		fl.next <- conns[i]
	}

	delivered := make([]atomic.Int32, n)
	var server sync.WaitGroup
	server.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					t.Errorf("Accept: %v", err)
				}
				return
			}
			if o := cl.open.Load(); o > max {
				t.Errorf("%d open, max %d", o, max)
			}
			id := c.(*limitedConn).Conn.(*fakeConn).id
			delivered[id].Add(1)
			// served for a while, so that others are shed meanwhile
			server.Go(func() {
				for range id % 50 {
					runtime.Gosched()
				}
				c.Close()
			})
		}
	})
	// every connection is closed once handled, by the server or the shedder
	for range n {
		select {
		case <-ended:
		case <-time.After(30 * time.Second):
			t.Fatal("connections still open: some were neither handed on nor shed")
		}
	}
	ln.Close()
	server.Wait()
	cl.shedding.wait()

	var handed, shed int
	for i, c := range conns {
		d, answered := delivered[i].Load(), c.wrote.Load() > 0
		switch {
		case d == 1 && !answered:
			handed++
		case d == 0 && answered:
			shed++
			if got := c.wrote.Load(); got != int32(len(response503)) {
				t.Errorf("connection %d: %d bytes written, want the 503's %d", i, got, len(response503))
			}
		default:
			t.Errorf("connection %d: handed on %d times, answered 503: %v", i, d, answered)
		}
		if c.closes.Load() == 0 {
			t.Errorf("connection %d never closed", i)
		}
	}
	if handed+shed != n || handed < max || shed == 0 {
		t.Errorf("%d handed on and %d shed of %d", handed, shed, n)
	}
	if got := shedCount(t, "listener") - shedBefore; got != float64(shed) {
		t.Errorf("mxgate_shed_total{where=listener} grew by %v, want %d", got, shed)
	}
	if got := cl.open.Load(); got != 0 {
		t.Errorf("open %d at the end, want 0", got)
	}
	if got := openGauge(t) - openBefore; got != 0 {
		t.Errorf("mxgate_connections_open is %v above where it started", got)
	}
}

// TestConnLimitAcceptErrors: a temporary failure of the wrapped listener
// reaches the server once and accepting goes on; a permanent one reaches
// it after every connection accepted before it, and again on every call.
func TestConnLimitAcceptErrors(t *testing.T) {
	permanent := errors.New("accept: the socket is gone")
	fl := newFakeListener(8)
	fl.after = permanent
	ln := wrapFake(t, &ConnLimit{Max: 100, Acceptors: 4}, fl)
	fl.next <- temporaryError{}
	for i := range 3 {
		fl.next <- &fakeConn{id: i}
	}
	close(fl.next)

	var temporary, conns int
	for {
		c, err := ln.Accept()
		if err == nil {
			conns++
			c.Close()
			continue
		}
		if errors.Is(err, temporaryError{}) {
			temporary++
			continue
		}
		if !errors.Is(err, permanent) {
			t.Fatalf("Accept: %v, want the listener's error", err)
		}
		break
	}
	if temporary != 1 || conns != 3 {
		t.Errorf("%d temporary failures and %d connections before the permanent error, want 1 and 3", temporary, conns)
	}
	if _, err := ln.Accept(); !errors.Is(err, permanent) {
		t.Errorf("Accept again: %v, want the listener's error", err)
	}
}

// TestConnLimitCloseUnblocks: after Close, Accept hands on the
// connections admitted before it, each once, then returns net.ErrClosed;
// the accepting goroutines return.
func TestConnLimitCloseUnblocks(t *testing.T) {
	const queued = 20
	fl := newFakeListener(queued + 1)
	cl := &ConnLimit{Max: 1000, Acceptors: 4}
	ln := wrapFake(t, cl, fl)
	first := &fakeConn{id: 0}
	fl.next <- first
	c, err := ln.Accept() // starts the acceptors
	if err != nil || unwrap(t, c) != first {
		t.Fatalf("Accept: %v %v", c, err)
	}
	c.Close()
	for i := range queued {
		fl.next <- &fakeConn{id: i + 1}
	}
	for cl.open.Load() < queued { // a wait, bounded by the test's timeout
		runtime.Gosched()
	}
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for {
		c, err := ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				t.Fatalf("Accept after Close: %v", err)
			}
			break
		}
		id := unwrap(t, c).id
		if seen[id] {
			t.Errorf("connection %d handed on twice", id)
		}
		seen[id] = true
		c.Close()
	}
	if len(seen) != queued {
		t.Errorf("%d of the %d admitted connections handed on after Close", len(seen), queued)
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept again: %v", err)
	}
	if got := cl.open.Load(); got != 0 {
		t.Errorf("open %d, want 0", got)
	}
	select {
	case <-ln.(*limitListener).stopped:
	case <-time.After(30 * time.Second):
		t.Fatalf("%d accepting goroutines still running after Close", ln.(*limitListener).live.Load())
	}
	if err := ln.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestConnLimitLateConnClosed: a connection an acceptor queues after
// Accept has reported the end is closed, its place given back.
func TestConnLimitLateConnClosed(t *testing.T) {
	cl := &ConnLimit{Max: 10}
	ln := wrapFake(t, cl, newFakeListener(0)).(*limitListener)
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept: %v", err)
	}
	if !cl.acquire() {
		t.Fatal("no place")
	}
	late := &fakeConn{id: 1}
	ln.queue(&limitedConn{Conn: late, cl: cl})
	if late.closes.Load() != 1 || cl.open.Load() != 0 {
		t.Errorf("closed %d times, open %d; want closed once and 0 open", late.closes.Load(), cl.open.Load())
	}
}

// TestConnLimitAcceptBlockedClose: an Accept waiting for a connection
// that never comes returns net.ErrClosed when the wrapper is closed.
func TestConnLimitAcceptBlockedClose(t *testing.T) {
	ln := wrapFake(t, &ConnLimit{Max: 4}, newFakeListener(0))
	got := make(chan error, 1)
	go func() {
		_, err := ln.Accept()
		got <- err
	}()
	// whether Accept has started its wait or not, Close must end it
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept: %v, want net.ErrClosed", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Accept still waiting after Close")
	}
}
