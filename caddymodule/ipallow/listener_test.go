package ipallow

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mxgate/mxgate/internal/testkit/handlertest"
)

// refusedCount reads mxgate_listener_refused_total.
func refusedCount(t *testing.T) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	if err := reg.Register(listenerRefused); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 {
		t.Fatalf("gather: %v", err)
	}
	return mfs[0].GetMetric()[0].GetCounter().GetValue()
}

// dialFrom connects to addr from the local address src.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitFor polls cond for up to five seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
	}
}

// wrappedConn hides the socket beneath: a conn whose peer the wrapper
// cannot know without a read, as after proxy_protocol.
type wrappedConn struct{ net.Conn }

type wrappingListener struct{ net.Listener }

func (l wrappingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return wrappedConn{c}, nil
}

func TestListenerWrapper(t *testing.T) {
	for _, lazy := range []bool{false, true} {
		name := map[bool]string{false: "socket", true: "wrapped"}[lazy]
		t.Run(name, func(t *testing.T) {
			lw := &ListenerWrapper{Ranges: []string{"127.0.0.2/32"}}
			handlertest.Provision(t, lw)
			raw, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			var inner net.Listener = raw
			if lazy {
				inner = wrappingListener{raw}
			}
			ln := lw.WrapListener(inner)
			defer ln.Close()
			if ln.Addr() != raw.Addr() {
				t.Error("Addr is not the wrapped listener's")
			}
			accepted := make(chan net.Conn, 4)
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						close(accepted)
						return
					}
					accepted <- c
					// echo one line, so the client sees a served connection
					go func() {
						buf := make([]byte, 5)
						if _, err := io.ReadFull(c, buf); err == nil {
							_, _ = c.Write(buf)
						}
					}()
				}
			}()
			before := refusedCount(t)

			// refused: the connection is closed without a byte from the
			// server (the reset may even reach the client's connect)
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.1")}, Timeout: 5 * time.Second}
			if bad, err := d.Dial("tcp", raw.Addr().String()); err == nil {
				defer bad.Close()
				if lazy {
					// the check waits for the server's first read
					_, _ = bad.Write([]byte("hello"))
				}
				_ = bad.SetReadDeadline(time.Now().Add(5 * time.Second))
				n, err := bad.Read(make([]byte, 1))
				var ne net.Error
				if n != 0 || err == nil || (errors.As(err, &ne) && ne.Timeout()) {
					t.Fatalf("refused peer: read %d, %v; want the connection closed", n, err)
				}
			} else if !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("refused peer: %v", err)
			}
			waitFor(t, func() bool { return refusedCount(t)-before == 1 })
			if !lazy {
				select {
				case c := <-accepted:
					t.Fatalf("a refused connection was handed on: %v", c.RemoteAddr())
				default:
				}
			}

			// admitted
			good := dialFrom(t, "127.0.0.2", raw.Addr().String())
			if _, err := good.Write([]byte("hello")); err != nil {
				t.Fatal(err)
			}
			_ = good.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 5)
			if _, err := io.ReadFull(good, buf); err != nil || string(buf) != "hello" {
				t.Fatalf("admitted peer: %q, %v", buf, err)
			}
			if got := refusedCount(t) - before; got != 1 {
				t.Errorf("mxgate_listener_refused_total grew by %v, want 1", got)
			}
			if lazy {
				return
			}
			select {
			case c := <-accepted:
				if c.RemoteAddr().(*net.TCPAddr).IP.String() != "127.0.0.2" {
					t.Errorf("handed on a connection from %v", c.RemoteAddr())
				}
			case <-time.After(5 * time.Second):
				t.Error("the admitted connection was not handed on")
			}
		})
	}
}

func TestListenerWrapperDefaultIsMX(t *testing.T) {
	lw := &ListenerWrapper{}
	handlertest.Provision(t, lw)
	for addr, want := range map[net.Addr]bool{
		&net.TCPAddr{IP: net.ParseIP("66.43.0.1")}:            true,
		&net.TCPAddr{IP: net.ParseIP("::ffff:66.43.0.1")}:     true,
		&net.TCPAddr{IP: net.ParseIP("127.0.0.1")}:            false,
		&net.UnixAddr{Name: "@", Net: "unix"}:                 false,
		&net.UDPAddr{IP: net.ParseIP("66.43.0.1"), Port: 443}: true,
	} {
		if got := lw.admit(addr); got != want {
			t.Errorf("%v: %v, want %v", addr, got, want)
		}
	}
	if lw.admit(nil) {
		t.Error("nil peer admitted")
	}
}

func TestListenerWrapperCaddyfile(t *testing.T) {
	for in, want := range map[string]string{
		"mx_ip_allow":                              "[]",
		"mx_ip_allow mdx 10.0.0.0/8":               "[mdx 10.0.0.0/8]",
		"mx_ip_allow {\n ranges 127.0.0.2/32\n}":   "[127.0.0.2/32]",
		"mx_ip_allow mdx {\n ranges ::1 ::2\n}":    "[mdx ::1 ::2]",
		"mx_ip_allow {\n trusted_proxies 10/8\n}":  "error: unrecognized mx_ip_allow listener wrapper option 'trusted_proxies'",
		"mx_ip_allow mxx":                          "error: not a preset",
		"mx_ip_allow {\n ranges\n}":                "error: wrong argument count",
		"mx_ip_allow {\n ranges 10.0.0.0/33\n}":    "error: not a preset",
		"mx_ip_allow {\n ranges private_ranges\n}": "error: not a preset",
	} {
		lw := new(ListenerWrapper)
		err := lw.UnmarshalCaddyfile(caddyfile.NewTestDispenser(in))
		if wantErr, isErr := strings.CutPrefix(want, "error: "); isErr {
			if err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Errorf("%q: %v, want an error containing %q", in, err, wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		if got := fmt.Sprint(lw.Ranges); got != want {
			t.Errorf("%q: ranges %v, want %s", in, lw.Ranges, want)
		}
	}
}
