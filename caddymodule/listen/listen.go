// Package listen provides the network "tcp-handover": TCP listeners that
// hand connections over from one configuration to the next across a
// reload, so that a reload (a key rotation) drops no connection.
//
// Caddy's own TCP listeners on Linux bind a fresh socket for each
// configuration with SO_REUSEPORT. During a reload the kernel spreads new
// connections over the old and the new socket, and when the old socket
// closes, the connections still queued on it are reset: a client sees
// "connection reset by peer" for a request that never reached the
// gateway. A tcp-handover listener instead keeps one socket per address
// for as long as any loaded configuration uses it; one accept loop hands
// each connection to the newest configuration's listener.
//
//	{
//		default_bind tcp-handover/127.0.0.1
//	}
//	http://127.0.0.1:8480 {
//		bind tcp-handover/127.0.0.1
//		…
//	}
package listen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// Network is the network name to use in bind addresses.
const Network = "tcp-handover"

func init() {
	caddy.RegisterNetwork(Network, Listen)
}

// socket is one listening socket and the listeners that share it.
type socket struct {
	addr string
	ln   net.Listener
	done chan struct{} // closed when the last listener closes

	// under mu:
	open    []*Listener   // oldest first; the last takes new connections
	changed chan struct{} // closed and replaced when open changes
}

var (
	mu      sync.Mutex
	sockets = map[string]*socket{}
)

// Listen is the ListenerFunc of the network: it returns a listener on
// host and the port portOffset into portRange, sharing the socket of
// another loaded configuration on the same address. From then on, new
// connections go to this listener only: a configuration being replaced
// takes none, so its server, when it shuts down, holds no connection it
// has not begun to serve (Go's http.Server drops a request it reads after
// its shutdown has begun).
func Listen(ctx context.Context, _, host, portRange string, portOffset uint, cfg net.ListenConfig) (any, error) {
	start, _, _ := strings.Cut(portRange, "-")
	port, err := strconv.ParseUint(start, 10, 16)
	if err != nil || port+uint64(portOffset) > 65535 {
		return nil, fmt.Errorf("%s: bad port %q", Network, portRange)
	}
	addr := net.JoinHostPort(host, strconv.FormatUint(port+uint64(portOffset), 10))
	mu.Lock()
	defer mu.Unlock()
	s := sockets[addr]
	if s == nil {
		ln, err := cfg.Listen(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		s = &socket{addr: addr, ln: ln, done: make(chan struct{}), changed: make(chan struct{})}
		sockets[addr] = s
		go s.acceptLoop()
	}
	l := &Listener{s: s, conns: make(chan net.Conn), closed: make(chan struct{})}
	s.open = append(s.open, l)
	close(s.changed)
	s.changed = make(chan struct{})
	return l, nil
}

// acceptLoop accepts connections and hands each to the newest listener,
// until the last listener closes.
func (s *socket) acceptLoop() {
	var delay time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// a temporary failure (out of file descriptors, say): back off
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			time.Sleep(delay)
			continue
		}
		delay = 0
		s.deliver(c)
	}
}

// deliver gives c to the newest open listener, waiting for it to ask, or
// closes c when no listener is left.
func (s *socket) deliver(c net.Conn) {
	for {
		mu.Lock()
		var newest *Listener
		if n := len(s.open); n > 0 {
			newest = s.open[n-1]
		}
		changed := s.changed
		mu.Unlock()
		if newest == nil {
			_ = c.Close()
			return
		}
		select {
		case newest.conns <- c:
			return
		case <-changed: // a newer listener, or this one closed: pick again
		case <-s.done:
			_ = c.Close()
			return
		}
	}
}

// Listener is one configuration's listener on a shared socket. It is safe
// for concurrent use.
type Listener struct {
	s      *socket
	conns  chan net.Conn // unbuffered
	closed chan struct{}
	once   sync.Once
}

// Accept waits for a connection on the shared socket.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// Close releases this configuration's use of the socket; the socket
// closes with the last.
func (l *Listener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.closed)
		mu.Lock()
		defer mu.Unlock()
		s := l.s
		for i, o := range s.open {
			if o == l {
				s.open = append(s.open[:i], s.open[i+1:]...)
				break
			}
		}
		close(s.changed)
		s.changed = make(chan struct{})
		if len(s.open) == 0 {
			close(s.done)
			err = s.ln.Close()
			delete(sockets, s.addr)
		}
	})
	return err
}

// Addr is the socket's address.
func (l *Listener) Addr() net.Addr { return l.s.ln.Addr() }

// Interface guards
var _ net.Listener = (*Listener)(nil)
