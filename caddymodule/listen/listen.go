// Package listen provides two networks whose sockets are handed over from
// one configuration to the next across a reload, so that a reload (a key
// rotation) drops no connection, and which a second process can neither
// share nor take over:
//
//   - "tcp-handover", for TCP. Caddy's own TCP listeners on Linux bind a
//     fresh socket for each configuration with SO_REUSEPORT. During a
//     reload the kernel spreads new connections over the old and the new
//     socket, and when the old socket closes, the connections still queued
//     on it are reset: a client sees "connection reset by peer" for a
//     request that never reached the gateway. SO_REUSEPORT also lets a
//     second process (a second mxgate started by mistake) bind the same
//     address, and the kernel then splits connections between the two.
//     A tcp-handover socket is bound without SO_REUSEPORT, once per
//     address for as long as any loaded configuration uses it; a few
//     accepting goroutines hand each connection to the newest
//     configuration's listener. A second process is refused the address.
//     Its listen backlog is the kernel's largest, net.core.somaxconn (Go
//     reads it when the process starts): a host that must hold a storm of
//     connections in the accept queue raises it before mxgate starts.
//
//   - "unix-handover", for Unix sockets, with Caddy's syntax
//     (unix-handover//run/mxgate/sidecar.sock|0220; the mode defaults to
//     0200, the owner only). Caddy's own Unix listeners unlink whatever is
//     at the path before they bind, so a second process takes the socket
//     of the first, and unlinks it again when it exits. A unix-handover
//     listener first tries to connect to a socket found at the path:
//     if something answers (or the path is not a socket), it refuses; only
//     a socket nobody listens on (left by a process that was killed) is
//     removed. It unlinks the path when the last configuration using it
//     closes, and only while the path is still its own socket.
//
//     {
//     default_bind tcp-handover/127.0.0.1
//     }
//     http://127.0.0.1:8480 {
//     bind tcp-handover/127.0.0.1
//     …
//     }
//     http:// {
//     bind unix-handover//run/mxgate/sidecar.sock|0220
//     …
//     }
//
// Both work for the admin endpoint too (admin unix-handover//…|0600); a
// client such as `caddy reload` dials them as tcp and unix.
package listen

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// Network is the TCP network's name, to use in bind addresses.
const Network = "tcp-handover"

// UnixNetwork is the Unix network's name, to use in bind addresses.
// Caddy takes any network whose name begins with "unix" for a Unix socket.
const UnixNetwork = "unix-handover"

func init() {
	caddy.RegisterNetwork(Network, Listen)
	caddy.RegisterNetwork(UnixNetwork, ListenUnix)
}

// ErrInUse is the error for an address another process holds.
var ErrInUse = errors.New("in use by another process")

// probeTimeout bounds the connection attempt to a socket found at a
// unix-handover path.
const probeTimeout = time.Second

// socket is one listening socket and the listeners that share it.
type socket struct {
	key     string // the network and address, as sockets knows it
	ln      net.Listener
	release func()        // after ln is closed by the last listener; may be nil
	done    chan struct{} // closed when the last listener closes
	stopped chan struct{} // closed when the last accepting goroutine returns
	loops   atomic.Int32  // accepting goroutines not yet returned

	// under mu:
	open    []*Listener   // oldest first; the last takes new connections
	changed chan struct{} // closed and replaced when open changes
}

var (
	mu      sync.Mutex
	sockets = map[string]*socket{}
)

// Listen is the ListenerFunc of the tcp-handover network: it returns a
// listener on host and the port portOffset into portRange, sharing the
// socket of another loaded configuration on the same address. From then
// on, new connections go to this listener only: a configuration being
// replaced takes none, so its server, when it shuts down, holds no
// connection it has not begun to serve (Go's http.Server drops a request
// it reads after its shutdown has begun).
func Listen(ctx context.Context, _, host, portRange string, portOffset uint, cfg net.ListenConfig) (any, error) {
	start, _, _ := strings.Cut(portRange, "-")
	port, err := strconv.ParseUint(start, 10, 16)
	if err != nil || port+uint64(portOffset) > 65535 {
		return nil, fmt.Errorf("%s: bad port %q", Network, portRange)
	}
	addr := net.JoinHostPort(host, strconv.FormatUint(port+uint64(portOffset), 10))
	return share(Network+"/"+addr, func() (net.Listener, func(), error) {
		ln, err := cfg.Listen(ctx, "tcp", addr)
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, nil, fmt.Errorf("%s/%s: %w (a second mxgate?): %v", Network, addr, ErrInUse, err)
		}
		return ln, nil, err
	})
}

// ListenUnix is the ListenerFunc of the unix-handover network: host is the
// socket's path, with Caddy's optional |mode (octal; default 0200). It
// shares the socket of another loaded configuration on the same path;
// otherwise it binds a new one, unless another process listens there.
func ListenUnix(ctx context.Context, _, host, _ string, _ uint, cfg net.ListenConfig) (any, error) {
	path, mode, err := SplitUnixAddress(host)
	if err != nil {
		return nil, err
	}
	return share(UnixNetwork+"/"+path, func() (net.Listener, func(), error) {
		return bindUnix(ctx, cfg, path, mode)
	})
}

// SplitUnixAddress splits a Unix socket address as Caddy writes it,
// path|mode, into the path and the mode (octal; 0200 when absent). The
// owner must be able to write (connect), as Caddy requires.
func SplitUnixAddress(host string) (string, fs.FileMode, error) {
	path, bits, found := strings.Cut(host, "|")
	if path == "" {
		return "", 0, fmt.Errorf("%s: no socket path", UnixNetwork)
	}
	if !found {
		return path, 0o200, nil
	}
	n, err := strconv.ParseUint(bits, 8, 32)
	if err != nil || n&^0o777 != 0 {
		return "", 0, fmt.Errorf("%s: %s: bad mode %q (octal permission bits, such as 0600)", UnixNetwork, path, bits)
	}
	mode := fs.FileMode(n)
	if mode&0o200 == 0 {
		return "", 0, fmt.Errorf("%s: %s: mode %q: the owner needs write permission (2) to connect", UnixNetwork, path, bits)
	}
	return path, mode, nil
}

// bindUnix binds a Unix socket at path with mode, after removing a socket
// left there by a process that is gone. It returns the listener and the
// function that removes the path once the listener is closed.
func bindUnix(ctx context.Context, cfg net.ListenConfig, path string, mode fs.FileMode) (net.Listener, func(), error) {
	abstract := strings.HasPrefix(path, "@") // Linux: no file, no mode
	if !abstract {
		if err := removeStale(path); err != nil {
			return nil, nil, err
		}
	}
	ln, err := cfg.Listen(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, nil, fmt.Errorf("%s/%s: %w (a second mxgate?): %v", UnixNetwork, path, ErrInUse, err)
		}
		return nil, nil, err
	}
	if abstract {
		return ln, nil, nil
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false) // only while it is ours: release
	mine, err := os.Lstat(path)
	if err == nil {
		err = os.Chmod(path, mode)
	}
	if err != nil {
		_ = ln.Close()
		_ = os.Remove(path)
		return nil, nil, fmt.Errorf("%s/%s: setting mode %#o: %w", UnixNetwork, path, mode, err)
	}
	release := func() {
		if now, err := os.Lstat(path); err == nil && os.SameFile(mine, now) {
			_ = os.Remove(path)
		}
	}
	return ln, release, nil
}

// removeStale removes a socket at path that no process listens on. It
// refuses when the path is not a socket, when a process answers on it, or
// when it cannot tell (a socket it may not connect to, a full backlog).
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s/%s: %w", UnixNetwork, path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("%s/%s: exists and is not a socket (%s); it is left alone", UnixNetwork, path, fi.Mode().Type())
	}
	c, err := net.DialTimeout("unix", path, probeTimeout)
	if err == nil {
		_ = c.Close()
		return fmt.Errorf("%s/%s: %w: a process answers on it (a second mxgate?)", UnixNetwork, path, ErrInUse)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%s/%s: %w, or cannot tell: %v", UnixNetwork, path, ErrInUse, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s/%s: removing a socket nobody listens on: %w", UnixNetwork, path, err)
	}
	return nil
}

// share returns a new listener on the socket that key names, which bind
// opens when no loaded configuration holds it yet.
func share(key string, bind func() (net.Listener, func(), error)) (*Listener, error) {
	mu.Lock()
	defer mu.Unlock()
	s := sockets[key]
	if s == nil {
		ln, release, err := bind()
		if err != nil {
			return nil, err
		}
		s = &socket{key: key, ln: ln, release: release, done: make(chan struct{}), stopped: make(chan struct{}), changed: make(chan struct{})}
		sockets[key] = s
		s.loops.Store(acceptors)
		for range acceptors {
			go s.acceptLoop()
		}
	}
	l := &Listener{s: s, conns: make(chan net.Conn), closed: make(chan struct{})}
	s.open = append(s.open, l)
	close(s.changed)
	s.changed = make(chan struct{})
	return l, nil
}

// acceptors is how many goroutines accept on one socket. One goroutine
// among the thousands of a loaded server falls behind a storm of
// connections when the CPU is short: the kernel's accept queue fills and
// clients time out connecting. With several, one hands a connection on
// (which waits for the server's loop) while the others accept.
const acceptors = 4

// acceptLoop accepts connections and hands each to the newest listener,
// until the last listener closes. Several run on one socket at once.
func (s *socket) acceptLoop() {
	defer func() {
		if s.loops.Add(-1) == 0 {
			close(s.stopped)
		}
	}()
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
			if s.release != nil {
				s.release()
			}
			delete(sockets, s.key)
		}
	})
	return err
}

// Addr is the socket's address.
func (l *Listener) Addr() net.Addr { return l.s.ln.Addr() }

// Interface guards
var _ net.Listener = (*Listener)(nil)
