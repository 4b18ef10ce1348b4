package ipallow

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mxgate/mxgate/caddymodule/internal/provision"
	"github.com/mxgate/mxgate/cidr"
)

func init() {
	caddy.RegisterModule(ListenerWrapper{})
}

// ListenerWrapper (caddy.listeners.mx_ip_allow) closes, as soon as it is
// accepted, a connection whose TCP peer is outside an allow-list, by
// default MX's published ranges: no TLS handshake and no HTTP parsing is
// spent on it. It wraps whatever listener it is given (Caddy's, or a
// tcp-handover one). Put it first in the server's listener_wrappers,
// before tls:
//
//	servers {
//		listener_wrappers {
//			mx_ip_allow mdx
//			tls
//		}
//	}
//
// It sees TCP connections only: HTTP/3 runs over UDP, beside the
// listener wrappers. A server with TLS that uses it must therefore have
// `protocols h1 h2` (Caddy's default adds h3): otherwise it refuses to
// provision, and says so.
//
// The peer is the address the kernel reports, with no forwarded header in
// sight; behind a load balancer that is the balancer. A peer that has no
// IP address (a Unix socket) is refused. When an earlier wrapper has to
// read from the connection to know the peer (proxy_protocol), the check
// happens at the connection's first read, in its own goroutine, so that a
// slow client never holds up the accept loop.
//
// Refused connections are closed with a reset, counted in
// mxgate_listener_refused_total and logged at DEBUG.
type ListenerWrapper struct {
	// Ranges lists presets ("mx", "mdx") and CIDR prefixes or single
	// addresses, IPv4 or IPv6. Default: ["mx"].
	Ranges []string `json:"ranges,omitempty"`

	list   *cidr.List
	logger *zap.Logger
}

// listenerRefused counts connections closed at accept. It is process-wide
// so that counts survive reloads; each configuration's registry gets it
// registered once.
var listenerRefused = prometheus.NewCounter(prometheus.CounterOpts{
	Namespace: "mxgate", Subsystem: "listener", Name: "refused_total",
	Help: "Connections closed at accept by the mx_ip_allow listener wrapper because their peer is not in its list.",
})

// CaddyModule returns the Caddy module information.
func (ListenerWrapper) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.listeners.mx_ip_allow",
		New: func() caddy.Module { return new(ListenerWrapper) },
	}
}

// Provision builds the allow-list.
func (lw *ListenerWrapper) Provision(ctx caddy.Context) (err error) {
	defer provision.NameDirective(&err, "mx_ip_allow (listener wrapper)")
	lw.logger = ctx.Logger()
	if err := provision.TCPOnly(ctx, "mx_ip_allow"); err != nil {
		return err
	}
	ranges := lw.Ranges
	if len(ranges) == 0 {
		ranges = []string{"mx"}
	}
	if lw.list, err = cidr.Parse(ranges...); err != nil {
		return fmt.Errorf("ranges: %w", err)
	}
	if reg := ctx.GetMetricsRegistry(); reg != nil {
		if err := reg.Register(listenerRefused); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return err
			}
		}
	}
	return nil
}

// WrapListener returns ln with the check at accept.
func (lw *ListenerWrapper) WrapListener(ln net.Listener) net.Listener {
	return &allowListener{Listener: ln, lw: lw}
}

// admit reports whether a connection from peer may stay open.
func (lw *ListenerWrapper) admit(peer net.Addr) bool {
	a, ok := peerIP(peer)
	return ok && lw.list.Contains(a)
}

// refuse closes c, whose peer is not admitted, with a reset where it can
// (no FIN handshake, no TIME_WAIT for a connection that gets nothing).
func (lw *ListenerWrapper) refuse(c net.Conn, peer net.Addr) {
	raw := c
	if tc, ok := raw.(*tls.Conn); ok { // no handshake yet: close what is beneath
		raw = tc.NetConn()
	}
	if tc, ok := raw.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = raw.Close()
	listenerRefused.Inc()
	if ce := lw.logger.Check(zapcore.DebugLevel, "connection closed at accept: peer not allowed"); ce != nil {
		p := ""
		if peer != nil {
			p = peer.String()
		}
		ce.Write(zap.String("remote_addr", p))
	}
}

// peerIP returns the IP address of a connection's peer.
func peerIP(addr net.Addr) (netip.Addr, bool) {
	switch a := addr.(type) {
	case *net.TCPAddr:
		ip, ok := netip.AddrFromSlice(a.IP)
		return ip.Unmap(), ok
	case nil:
		return netip.Addr{}, false
	default:
		ap, err := netip.ParseAddrPort(addr.String())
		if err != nil {
			return netip.Addr{}, false
		}
		return ap.Addr().WithZone("").Unmap(), true
	}
}

// allowListener is a listener with the check at accept.
type allowListener struct {
	net.Listener
	lw *ListenerWrapper
}

// Accept returns the next connection whose peer is admitted, closing
// the others; or, when knowing the peer takes a read, the connection
// with the check at its first read or write.
func (l *allowListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if !knownPeer(c) {
			return &checkedConn{Conn: c, lw: l.lw}, nil
		}
		peer := c.RemoteAddr()
		if l.lw.admit(peer) {
			return c, nil
		}
		l.lw.refuse(c, peer)
	}
}

// knownPeer reports whether c's RemoteAddr is known without reading from
// it: a socket, or TLS over one (tls after this wrapper's place).
func knownPeer(c net.Conn) bool {
	switch c.(type) {
	case *net.TCPConn, *net.UnixConn:
		return true
	case *tls.Conn:
		// A TLS connection cannot be wrapped without hiding its state from
		// the server; its peer is read now, whatever is beneath it.
		return true
	}
	return false
}

// checkedConn is a connection whose peer is checked at its first read or
// write, because knowing the peer takes a read (a PROXY protocol header).
type checkedConn struct {
	net.Conn
	lw   *ListenerWrapper
	once sync.Once
	ok   bool
}

func (c *checkedConn) check() bool {
	c.once.Do(func() {
		peer := c.Conn.RemoteAddr()
		if c.ok = c.lw.admit(peer); !c.ok {
			c.lw.refuse(c.Conn, peer)
		}
	})
	return c.ok
}

func (c *checkedConn) Read(p []byte) (int, error) {
	if !c.check() {
		return 0, net.ErrClosed
	}
	return c.Conn.Read(p)
}

func (c *checkedConn) Write(p []byte) (int, error) {
	if !c.check() {
		return 0, net.ErrClosed
	}
	return c.Conn.Write(p)
}

// NetConn returns the wrapped connection.
func (c *checkedConn) NetConn() net.Conn { return c.Conn }

// Interface guards
var (
	_ caddy.Provisioner     = (*ListenerWrapper)(nil)
	_ caddy.ListenerWrapper = (*ListenerWrapper)(nil)
)
