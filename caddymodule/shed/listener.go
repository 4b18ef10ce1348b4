package shed

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mxgate/mxgate/caddymodule/internal/metrics"
	"github.com/mxgate/mxgate/caddymodule/internal/provision"
)

func init() {
	caddy.RegisterModule(ConnLimit{})
}

// ConnLimit (caddy.listeners.mx_conn_limit) caps the connections a server
// holds open. A connection accepted while Max are open never reaches the
// server: it is answered at once with a canned
//
//	HTTP/1.1 503 Service Unavailable
//	Retry-After: 1
//	Connection: close
//
// and closed, so that a storm of connections costs the gateway a write and
// a close each instead of a goroutine, buffers and a TLS handshake, and the
// connections already admitted are served as if the storm were not there.
//
// On a plain HTTP server, listener_wrappers needs nothing else:
//
//	servers 127.0.0.1:8480 {
//		listener_wrappers {
//			mx_conn_limit 4096
//		}
//	}
//
// The 503 is plaintext HTTP/1.1: on a TLS site, where a client expects a
// handshake, it would be noise. There, write it before tls (after
// mx_ip_allow, so that strangers are reset without counting) with Answer
// "close", and a connection over Max is reset, no handshake spent on it:
//
//	servers :443 {
//		protocols h1 h2
//		listener_wrappers {
//			mx_ip_allow mdx
//			mx_conn_limit {
//				max 4096
//				answer close
//			}
//			tls
//		}
//	}
//
// After tls (a list without tls puts every wrapper after it) each
// connection is a TLS one not yet shaken hands with: it is counted all the
// same, its TLS state stays in sight of the server, and one over Max is
// always reset, never answered in plaintext.
//
// Max counts over every address the server listens on, and for one loaded
// configuration: during a reload the connections the old configuration
// still serves count against its own wrapper, not the new one's. It sees
// TCP only: HTTP/3 runs over UDP beside the listener wrappers, so on a
// server with TLS it refuses to provision unless the server's protocols
// leave h3 out (`protocols h1 h2`; Caddy's default adds h3).
//
// Connections are accepted by Acceptors goroutines at once, each deciding
// on its own whether a connection is admitted or shed, so that shedding
// never waits for the server's accept loop: under CPU starvation one
// accepting goroutine among thousands falls behind the clients, the
// kernel's accept queue (the listen backlog, net.core.somaxconn) fills,
// and new clients see a connect timeout rather than a fast 503. Admitted
// connections wait for the server in a queue, counted as open.
//
// Answering is bounded too. What the client sent before its connection
// was accepted is read at once, and the connection closed right after the
// 503 (no reset: nothing is left unread). A client that had sent nothing
// yet is waited for (for at most about a second, reading what it sends so
// that it reads the 503 rather than a reset) while fewer than MaxShedding
// are; past that its connection is closed right after the 503. Every
// connection over Max counts in mxgate_shed_total{where="listener"};
// mxgate_connections_open is the number open.
//
// ConnLimit is safe for concurrent use once provisioned.
type ConnLimit struct {
	// Max is how many connections may be open at once. Default: 4096,
	// far above what a gateway's callers (MX's data centres, a load
	// balancer's pool) keep open, and, at tens of KiB each (a goroutine,
	// buffers, TLS state), a few hundred MiB at the most.
	Max int `json:"max,omitempty"`

	// MaxShedding is how many connections over Max may be waited for at
	// once, for the client's request after the 503; past it they are
	// closed right after the 503. Default: 1024.
	MaxShedding int `json:"max_shedding,omitempty"`

	// Answer is what a connection over Max gets: "503", the canned
	// response, or "close", a reset with nothing written (for TLS sites).
	// Default: 503.
	Answer string `json:"answer,omitempty"`

	// Acceptors is how many goroutines accept connections for each
	// listener the server wraps. Default: 4.
	Acceptors int `json:"acceptors,omitempty"`

	open     *atomic.Int64 // connections admitted and not yet closed
	shedding *shedders     // the connections being answered 503
	close    bool          // Answer is "close"
	drain    time.Duration // shedDrainTimeout; longer in tests
	logger   *zap.Logger
}

// The defaults of ConnLimit.
const (
	DefaultMaxConns    = 4096
	DefaultMaxShedding = 1024
	DefaultAcceptors   = 4
)

// Bounds on the back-off of an accepting goroutine after a temporary
// failure (out of file descriptors), as net/http's own accept loop.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// Bounds on answering one connection over Max.
const (
	shedWriteTimeout = 500 * time.Millisecond // the 503 fits a fresh socket's buffer
	shedDrainTimeout = time.Second            // for the client to read it and close
	shedDrainMax     = 4 << 10                // bytes of the client's read and dropped
)

const shedBody = "Service Unavailable: too many connections; retry later\n"

// response503 is the answer to a connection over Max.
var response503 = []byte("HTTP/1.1 503 Service Unavailable\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Content-Length: " + strconv.Itoa(len(shedBody)) + "\r\n" +
	"Retry-After: 1\r\n" +
	"Cache-Control: no-store\r\n" +
	"Connection: close\r\n" +
	"\r\n" + shedBody)

// CaddyModule returns the Caddy module information.
func (ConnLimit) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.listeners.mx_conn_limit",
		New: func() caddy.Module { return new(ConnLimit) },
	}
}

// Provision sets the defaults and checks the settings.
func (cl *ConnLimit) Provision(ctx caddy.Context) (err error) {
	defer provision.NameDirective(&err, "mx_conn_limit (listener wrapper)")
	cl.logger = ctx.Logger()
	if err := provision.TCPOnly(ctx, "mx_conn_limit"); err != nil {
		return err
	}
	if cl.Max == 0 {
		cl.Max = DefaultMaxConns
	}
	if cl.MaxShedding == 0 {
		cl.MaxShedding = DefaultMaxShedding
	}
	if cl.Acceptors == 0 {
		cl.Acceptors = DefaultAcceptors
	}
	switch {
	case cl.Max < 0:
		return fmt.Errorf("max: %d is not a number of connections (at least 1)", cl.Max)
	case cl.MaxShedding < 0:
		return fmt.Errorf("max_shedding: %d is not a number of connections (at least 1)", cl.MaxShedding)
	case cl.Acceptors < 0 || cl.Acceptors > maxAcceptors:
		return fmt.Errorf("acceptors: %d is not a number of goroutines from 1 to %d", cl.Acceptors, maxAcceptors)
	}
	switch cl.Answer {
	case "", "503":
	case "close":
		cl.close = true
	default:
		return fmt.Errorf("answer: %q is neither 503 nor close", cl.Answer)
	}
	cl.open, cl.shedding = new(atomic.Int64), newShedders(cl.MaxShedding)
	if cl.drain == 0 {
		cl.drain = shedDrainTimeout
	}
	return metrics.Register(ctx.GetMetricsRegistry())
}

// maxAcceptors bounds Acceptors: past a few, more goroutines only wait
// for the same socket.
const maxAcceptors = 64

// WrapListener returns ln with the cap at accept. Its accepting goroutines
// start at the first Accept and end with Close.
func (cl *ConnLimit) WrapListener(ln net.Listener) net.Listener {
	return &limitListener{
		Listener: ln,
		cl:       cl,
		admitted: make(chan net.Conn, min(max(cl.Max, 1), maxQueue)),
		failures: make(chan error, 1),
		done:     make(chan struct{}),
		stopped:  make(chan struct{}),
	}
}

// acquire takes a place for a new connection; false when Max are open.
func (cl *ConnLimit) acquire() bool {
	for {
		n := cl.open.Load()
		if n >= int64(cl.Max) {
			return false
		}
		if cl.open.CompareAndSwap(n, n+1) {
			metrics.ConnectionsOpen.Inc()
			return true
		}
	}
}

// release gives back the place of a closed connection.
func (cl *ConnLimit) release() {
	cl.open.Add(-1)
	metrics.ConnectionsOpen.Dec()
}

// shed disposes of c, accepted over Max. When Answer is close, or c is
// TLS, it is reset. Otherwise it is answered 503 at once: what the
// client sent already is read first, without waiting (under a storm,
// accept comes late and the request is there), so that closing sends no
// reset; if the client had sent nothing yet, a goroutine waits for it.
// Past MaxShedding connections answered, it is reset unanswered.
func (cl *ConnLimit) shed(c net.Conn) {
	metrics.ShedListener.Inc()
	answer := !cl.close && !isTLS(c)
	if ce := cl.logger.Check(zapcore.DebugLevel, "connection shed at accept: too many open"); ce != nil {
		ce.Write(zap.String("remote_addr", remoteAddr(c)), zap.Int("max", cl.Max), zap.Bool("answered", answer))
	}
	if !answer {
		reset(c)
		return
	}
	// Past MaxShedding: reset at once, as when answering is off. Under a
	// storm this is what keeps accept ahead of the kernel's queue: an
	// answer and a closing handshake for every connection cost the
	// gateway more than the storm leaves it (BENCHMARKS.md, the accept
	// loop under a connection storm).
	if cl.shedding.full() {
		reset(c)
		return
	}
	got, more := readPending(c)
	// The answer fits a fresh socket's buffer: written here, it reaches
	// the client without waiting for a goroutine to be scheduled.
	if !write503(c) {
		return
	}
	if got > 0 && !more {
		_ = c.Close() // the request is read: a FIN follows the answer
		return
	}
	if cl.shedding.start() {
		go func() {
			defer cl.shedding.done()
			cl.drain503(c)
		}()
		return
	}
	_ = c.Close() // the places were taken meanwhile
}

// shedders counts the goroutines answering connections over Max.
type shedders struct {
	max  int
	mu   sync.Mutex
	n    int
	idle sync.Cond // signalled when n falls to 0 (tests wait for it)
}

func newShedders(max int) *shedders {
	s := &shedders{max: max}
	s.idle.L = &s.mu
	return s
}

// full reports whether max are at work.
func (s *shedders) full() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n >= s.max
}

// start takes a place for one more; false when max are at work.
func (s *shedders) start() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n >= s.max {
		return false
	}
	s.n++
	return true
}

// done gives a place back.
func (s *shedders) done() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n--; s.n == 0 {
		s.idle.Broadcast()
	}
}

// write503 writes the canned 503 to c and shuts c's write side; on a
// failure it resets c and returns false.
func write503(c net.Conn) bool {
	_ = c.SetWriteDeadline(time.Now().Add(shedWriteTimeout))
	if _, err := c.Write(response503); err != nil {
		reset(c)
		return false
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	return true
}

// drain503 reads what the client of c, answered 503, sent, for a bounded
// time and up to a bounded size, before closing: closing with unread
// bytes would reset the connection, and the reset could reach the client
// before it reads the answer.
func (cl *ConnLimit) drain503(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(cl.drain))
	_, _ = io.CopyN(io.Discard, c, shedDrainMax)
	_ = c.Close()
}

// connectionStater is a TLS connection, or one that says it carries one.
type connectionStater interface {
	ConnectionState() tls.ConnectionState
}

// isTLS reports whether c speaks TLS (the wrapper is after tls), so
// that a plaintext answer means nothing to its client.
func isTLS(c net.Conn) bool {
	_, ok := c.(connectionStater)
	return ok
}

// reset closes c with a reset where it can (no FIN handshake, no
// TIME_WAIT for a connection that gets nothing), on the socket beneath
// any wrapping (a TLS connection with no handshake yet).
func reset(c net.Conn) {
	raw := c
	for range 8 {
		nc, ok := raw.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		raw = nc.NetConn()
	}
	if l, ok := raw.(interface{ SetLinger(int) error }); ok {
		_ = l.SetLinger(0)
	}
	_ = raw.Close()
	if raw != c {
		_ = c.Close()
	}
}

func remoteAddr(c net.Conn) string {
	if a := c.RemoteAddr(); a != nil {
		return a.String()
	}
	return ""
}

// limitListener is a listener with the cap at accept: cl.Acceptors
// goroutines take connections from the wrapped listener, shed those over
// Max and queue the others for Accept.
//
// The queue holds as many as Max (up to maxQueue), so that queueing never
// waits: every queued connection holds one of the Max places. Close does
// not wait for anything the server's loop does (http.Server closes its
// listeners holding the lock its loop takes for each new connection):
// the connections queued when it is called are still handed to the
// server's next Accept calls, as a listener's accept queue would be, and
// once Accept has reported the end, anything an acceptor still brings is
// closed.
type limitListener struct {
	net.Listener
	cl *ConnLimit

	admitted chan net.Conn // admitted connections waiting for Accept
	failures chan error    // a temporary failure, for Accept to report
	done     chan struct{} // closed by Close
	stopped  chan struct{} // closed when the last acceptor has returned

	started   atomic.Bool
	live      atomic.Int32 // acceptors not yet returned
	mu        sync.Mutex   // orders starting, queueing and the end
	closing   bool         // under mu: Close has begun; start no acceptor
	final     bool         // under mu: Accept has reported the end; queue nothing
	closeOnce sync.Once
	closeErr  error
	errOnce   sync.Once
	err       error // the first permanent error; set before stopped is closed
}

// maxQueue bounds the queue of admitted connections when Max is larger.
const maxQueue = 1 << 16

// Accept returns the next connection admitted under Max. It returns the
// wrapped listener's temporary failures as they happen (the server backs
// off and calls again); once the wrapped listener has failed for good, or
// after Close, and every connection queued before has been handed on,
// its error (net.ErrClosed after Close).
func (l *limitListener) Accept() (net.Conn, error) {
	if !l.started.Load() {
		l.run()
	}
	select {
	case c := <-l.admitted:
		return c, nil
	default:
	}
	select {
	case c := <-l.admitted:
		return c, nil
	case err := <-l.failures:
		return nil, err
	case <-l.stopped:
		select {
		case <-l.done:
			return l.end(net.ErrClosed)
		default:
			return l.end(l.err)
		}
	case <-l.done:
		return l.end(net.ErrClosed)
	}
}

// end returns a connection still queued, or else err, after which nothing
// is queued any more.
func (l *limitListener) end(err error) (net.Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case c := <-l.admitted:
		return c, nil
	default:
	}
	l.final = true
	return nil, err
}

// run starts the accepting goroutines, once, unless Close has begun.
func (l *limitListener) run() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closing || l.started.Load() {
		return
	}
	n := max(1, l.cl.Acceptors)
	l.live.Store(int32(n))
	l.started.Store(true)
	for range n {
		go l.acceptLoop()
	}
}

// acceptLoop accepts until the wrapped listener fails for good (as it
// does once closed), shedding each connection over Max at once and
// queueing the others.
func (l *limitListener) acceptLoop() {
	defer func() {
		if l.live.Add(-1) == 0 {
			close(l.stopped)
		}
	}()
	var delay time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if !isTemporary(err) {
				l.errOnce.Do(func() { l.err = err })
				return
			}
			select { // the server logs it; one waiting is enough
			case l.failures <- err:
			default:
			}
			delay = min(max(2*delay, acceptBackoffMin), acceptBackoffMax)
			t := time.NewTimer(delay)
			select {
			case <-t.C:
				continue
			case <-l.done:
				t.Stop()
				return
			}
		}
		delay = 0
		if !l.cl.acquire() {
			l.cl.shed(c)
			continue
		}
		lc := &limitedConn{Conn: c, cl: l.cl}
		var out net.Conn = lc
		if isTLS(c) {
			out = &limitedTLSConn{lc}
		}
		l.queue(out)
	}
}

// queue hands c to Accept, or closes it once Accept has reported the end.
func (l *limitListener) queue(c net.Conn) {
	l.mu.Lock()
	if l.final {
		l.mu.Unlock()
		_ = c.Close()
		return
	}
	select {
	case l.admitted <- c:
		l.mu.Unlock()
		return
	default: // only when Max is above maxQueue
	}
	l.mu.Unlock()
	select {
	case l.admitted <- c:
	case <-l.done:
		_ = c.Close()
		return
	}
	// queued outside the lock: if Accept reported the end meanwhile,
	// nothing will take what is queued
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.final {
		for {
			select {
			case q := <-l.admitted:
				_ = q.Close()
				continue
			default:
			}
			return
		}
	}
}

// isTemporary reports whether err is a failure to accept one connection
// (out of file descriptors, say) after which accepting may go on, as
// net/http's accept loop tells it.
func isTemporary(err error) bool {
	var te interface{ Temporary() bool }
	return errors.As(err, &te) && te.Temporary() && !errors.Is(err, net.ErrClosed)
}

// Close closes the wrapped listener, which ends the accepting goroutines.
// An Accept waiting returns the connections still queued, then
// net.ErrClosed.
func (l *limitListener) Close() error {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closing = true
		l.mu.Unlock()
		close(l.done)
		l.closeErr = l.Listener.Close()
	})
	return l.closeErr
}

// limitedConn is an admitted connection; closing it, once or more, gives
// its place back once.
type limitedConn struct {
	net.Conn
	cl     *ConnLimit
	closed atomic.Bool
}

// Close closes the connection and gives its place back, the first time.
func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	if c.closed.CompareAndSwap(false, true) {
		c.cl.release()
	}
	return err
}

// CloseWrite shuts the write side, where the connection beneath can: the
// HTTP server does so before closing a connection whose request body it
// did not read, so that the client reads the answer rather than a reset.
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errCloseWrite
}

var errCloseWrite = errors.New("mx_conn_limit: the connection cannot shut its write side alone")

// ReadFrom lets a copy into the connection use the socket's own (sendfile,
// splice) where the connection beneath has one.
func (c *limitedConn) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(c.Conn, r)
}

// NetConn returns the wrapped connection.
func (c *limitedConn) NetConn() net.Conn { return c.Conn }

// limitedTLSConn is an admitted TLS connection (the wrapper is after tls):
// it keeps the TLS state in sight of the server.
type limitedTLSConn struct {
	*limitedConn
}

// ConnectionState returns the TLS state of the connection.
func (c *limitedTLSConn) ConnectionState() tls.ConnectionState {
	return c.Conn.(connectionStater).ConnectionState()
}

// Interface guards
var (
	_ caddy.Provisioner     = (*ConnLimit)(nil)
	_ caddy.ListenerWrapper = (*ConnLimit)(nil)
	_ io.ReaderFrom         = (*limitedConn)(nil)
)
