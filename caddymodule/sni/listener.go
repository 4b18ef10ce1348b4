// Package sni is the mx_server_name listener wrapper: TLS server names
// (SNI) that Caddy's readers of them could read differently are refused in
// the handshake, before any connection policy, certificate or site sees
// them.
package sni

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mxgate/mxgate/internal/servername"
)

func init() {
	caddy.RegisterModule(ServerName{})
}

// ServerName (caddy.listeners.mx_server_name) refuses a TLS connection
// whose ClientHello names a server that is not a plain ASCII host name
// (internal/servername's Check): "fdx.ban\u212a.example" with the KELVIN
// SIGN, a long s, a space, a NUL, an empty label. Caddy reads the name
// three ways (its SNI matcher punycodes it without mapping, its
// certificate lookup lower-cases and trims it, strict_sni_host compares it
// by Unicode case folding), so such a name could pass the catch-all
// connection policy, with no client authentication, yet get the protected
// site's certificate and Host. A connection without SNI is let through:
// whether its requests may be served is the Host check's to say
// (strict_sni_host, fdx_auth).
//
// It must come before tls in the server's listener_wrappers (a list
// without tls puts every wrapper after it, where the name cannot be read
// without hiding the TLS state from the server):
//
//	servers {
//		listener_wrappers {
//			mx_server_name
//			tls
//		}
//		strict_sni_host on
//		protocols h1 h2
//	}
//
// Placed after tls, it refuses every connection and logs an error. It sees
// TCP only: HTTP/3 runs over UDP beside the listener wrappers, so a server
// that relies on it needs `protocols h1 h2`.
//
// The name is read on the connection's own goroutine, at its first read,
// never on the accept loop: the ClientHello is parsed by crypto/tls itself
// (the parser the real handshake uses, so that the two cannot disagree on
// the name) from the bytes as they arrive, which are then handed, all of
// them, to the real handshake. The server's handshake deadline bounds the
// wait; at most 70 KiB is held (crypto/tls refuses a larger ClientHello).
// A connection whose first byte is not a TLS handshake record is passed
// through untouched (a plaintext server, or a client the TLS handshake
// will refuse anyway), so the wrapper may sit in a `servers` block that
// plaintext servers share. A handshake record from which no ClientHello
// can be read is refused.
//
// A refused connection gets a fatal unrecognized_name alert (RFC 6066) and
// is closed; it is counted in
// mxgate_listener_server_name_refused_total{reason} and logged at DEBUG.
//
// ServerName is safe for concurrent use once provisioned.
type ServerName struct {
	logger *zap.Logger
}

// refused counts connections refused for their server name. It is
// process-wide so that counts survive reloads; each configuration's
// registry gets it registered once.
var refused = prometheus.NewCounterVec(prometheus.CounterOpts{
	Namespace: "mxgate", Subsystem: "listener", Name: "server_name_refused_total",
	Help: "TLS connections refused by the mx_server_name listener wrapper, by reason: not_ascii, malformed, no_client_hello, misplaced (the wrapper is after tls).",
}, []string{"reason"})

// The reasons, as series that exist from the start.
var (
	refusedNotASCII  = refused.WithLabelValues("not_ascii")
	refusedMalformed = refused.WithLabelValues("malformed")
	refusedNoHello   = refused.WithLabelValues("no_client_hello")
	refusedMisplaced = refused.WithLabelValues("misplaced")
)

// CaddyModule returns the Caddy module information.
func (ServerName) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.listeners.mx_server_name",
		New: func() caddy.Module { return new(ServerName) },
	}
}

// Provision sets up logging and metrics.
func (s *ServerName) Provision(ctx caddy.Context) (err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("mx_server_name (listener wrapper): %w", err)
		}
	}()
	s.logger = ctx.Logger()
	if reg := ctx.GetMetricsRegistry(); reg != nil {
		if err := reg.Register(refused); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return err
			}
		}
	}
	return nil
}

// WrapListener returns ln with the check on each connection.
func (s *ServerName) WrapListener(ln net.Listener) net.Listener {
	return &listener{Listener: ln, s: s}
}

// listener wraps each accepted connection.
type listener struct {
	net.Listener
	s         *ServerName
	misplaced sync.Once // logs the misplacement once per listener
}

// connectionStater is a TLS connection, or one that says it carries one.
type connectionStater interface {
	ConnectionState() tls.ConnectionState
}

// Accept returns the next connection, wrapped so that its server name is
// checked at its first read. A TLS connection (the wrapper is after tls)
// is refused: its ClientHello cannot be read here without hiding the TLS
// state from the HTTP server.
func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if _, ok := c.(connectionStater); ok {
			l.misplaced.Do(func() {
				l.s.logger.Error("mx_server_name is after tls in listener_wrappers: every TLS connection is refused; write it before tls")
			})
			refusedMisplaced.Inc()
			_ = c.Close()
			continue
		}
		return &conn{Conn: c, s: l.s}, nil
	}
}

// recordTypeHandshake is the first byte of a TLS handshake record.
const recordTypeHandshake = 22

// maxHello bounds the bytes read to find the ClientHello: crypto/tls's
// largest handshake message (64 KiB) in records of 16 KiB, with headers
// and room to spare.
const maxHello = 70 << 10

// conn is an accepted connection whose server name is checked at its
// first read.
type conn struct {
	net.Conn
	s *ServerName

	passed atomic.Bool // checked and admitted, nothing left to replay
	mu     sync.Mutex  // guards the fields below, until passed
	read   bool        // the check has run
	err    error       // the connection was refused
	replay []byte      // bytes read by the check, not yet handed on
}

// Read reads from the connection, checking the ClientHello first.
func (c *conn) Read(p []byte) (int, error) {
	if c.passed.Load() {
		return c.Conn.Read(p)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.err != nil:
		return 0, c.err
	case !c.read:
		if len(p) == 0 {
			return 0, nil
		}
		n, err := c.Conn.Read(p)
		if n == 0 {
			return 0, err
		}
		c.read = true
		if p[0] != recordTypeHandshake {
			c.passed.Store(true) // not TLS: nothing to check
			return n, err
		}
		if err := c.check(p[:n], err); err != nil {
			c.err = err
			return 0, err
		}
	}
	if len(c.replay) > 0 {
		n := copy(p, c.replay)
		if c.replay = c.replay[n:]; len(c.replay) == 0 {
			c.replay = nil
			c.passed.Store(true)
		}
		return n, nil
	}
	c.passed.Store(true)
	return c.Conn.Read(p)
}

// errRefused is what a refused connection's reads return.
var errRefused = errors.New("mx_server_name: TLS server name refused")

// errHelloRead ends the reading of the ClientHello once its name is known.
var errHelloRead = errors.New("mx_server_name: ClientHello read")

// check reads the ClientHello that begins with first (readErr is the
// error of the read that got first), and refuses the connection if it
// names a server that may not be served, or cannot be read. On success
// every byte read is left in c.replay.
func (c *conn) check(first []byte, readErr error) error {
	rec := &recorder{Conn: c.Conn, data: append(make([]byte, 0, 2048), first...), err: readErr}
	var name string
	seen := false
	peek := tls.Server(rec, &tls.Config{GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		name, seen = hello.ServerName, true
		return nil, errHelloRead
	}})
	_ = peek.Handshake()
	switch err := servername.Check(name); {
	case !seen:
		c.refuse(refusedNoHello, "no ClientHello could be read", "")
	case err == servername.ErrNotASCII:
		c.refuse(refusedNotASCII, "server name is not plain ASCII", name)
	case err != nil:
		c.refuse(refusedMalformed, "server name is not a host name", name)
	default:
		c.replay = rec.data
		return nil
	}
	return errRefused
}

// alertUnrecognizedName is a fatal unrecognized_name alert (RFC 6066, 3),
// in a record of the version crypto/tls writes before one is agreed.
var alertUnrecognizedName = []byte{21, 3, 1, 0, 2, 2, 112}

// refuse counts the connection, logs it, sends the alert and closes it.
func (c *conn) refuse(counter prometheus.Counter, why, name string) {
	counter.Inc()
	defer func() {
		_ = c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = c.Conn.Write(alertUnrecognizedName)
		_ = c.Conn.Close()
	}()
	if ce := c.s.logger.Check(zapcore.DebugLevel, "TLS connection refused: "+why); ce != nil {
		if len(name) > servername.MaxLen {
			name = name[:servername.MaxLen]
		}
		remote := ""
		if a := c.Conn.RemoteAddr(); a != nil {
			remote = a.String()
		}
		ce.Write(zap.String("remote_addr", remote), zap.String("server_name", name))
	}
}

// recorder is the connection as the ClientHello reader sees it: it reads
// from the client, keeping every byte for the real handshake, and
// swallows what the reader writes (the alert it sends when it stops).
type recorder struct {
	net.Conn
	data []byte // every byte read from the client
	pos  int    // how much of data the reader has had
	err  error  // the error of the read that got data's first bytes
}

func (r *recorder) Read(p []byte) (int, error) {
	if r.pos < len(r.data) {
		n := copy(p, r.data[r.pos:])
		r.pos += n
		return n, nil
	}
	if r.err != nil {
		return 0, r.err
	}
	room := maxHello - len(r.data)
	if room <= 0 {
		return 0, errHelloTooLong
	}
	if len(p) > room {
		p = p[:room]
	}
	n, err := r.Conn.Read(p)
	r.data = append(r.data, p[:n]...)
	r.pos += n
	return n, err
}

var errHelloTooLong = errors.New("mx_server_name: ClientHello too long")

func (r *recorder) Write(p []byte) (int, error) { return len(p), nil }

func (r *recorder) Close() error { return nil }

// CloseWrite shuts the write side, where the connection beneath can: the
// HTTP server does so on a plaintext connection before closing it.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errCloseWrite
}

var errCloseWrite = errors.New("mx_server_name: the connection cannot shut its write side alone")

// ReadFrom lets a copy into the connection use the socket's own (sendfile,
// splice) where the connection beneath has one.
func (c *conn) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(c.Conn, r)
}

// NetConn returns the wrapped connection.
func (c *conn) NetConn() net.Conn { return c.Conn }

// Interface guards
var (
	_ caddy.Provisioner     = (*ServerName)(nil)
	_ caddy.ListenerWrapper = (*ServerName)(nil)
)
