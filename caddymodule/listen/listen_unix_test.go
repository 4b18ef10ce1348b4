//go:build unix

package listen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// reusePortListen binds addr with SO_REUSEPORT, as Caddy's own tcp
// network does in another process.
func reusePortListen(t *testing.T, addr string) net.Listener {
	t.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		})
		return errors.Join(err, serr)
	}}
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// TestTCPAddressHeldElsewhere: an address another socket holds, with or
// without SO_REUSEPORT, is refused with an error that names it, and the
// other socket keeps it.
func TestTCPAddressHeldElsewhere(t *testing.T) {
	for _, reuse := range []bool{false, true} {
		t.Run(fmt.Sprintf("reuseport_%v", reuse), func(t *testing.T) {
			var other net.Listener
			if reuse {
				other = reusePortListen(t, "127.0.0.1:0")
			} else {
				var err error
				if other, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
					t.Fatal(err)
				}
				defer other.Close()
			}
			_, port, _ := net.SplitHostPort(other.Addr().String())
			ln, err := Listen(context.Background(), Network, "127.0.0.1", port, 0, net.ListenConfig{})
			if err == nil {
				ln.(*Listener).Close()
				t.Fatal("a second socket was bound on an address another one holds")
			}
			if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "tcp-handover/127.0.0.1:"+port) {
				t.Fatalf("error %q does not say that tcp-handover/127.0.0.1:%s is in use", err, port)
			}
			mu.Lock()
			n := len(sockets)
			mu.Unlock()
			if n != 0 {
				t.Fatalf("%d sockets recorded after a failed bind", n)
			}
		})
	}
}
