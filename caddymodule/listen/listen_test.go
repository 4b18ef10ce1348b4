package listen

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// serve answers each connection's one line with "ok <id>\n", as one
// configuration's server would.
func serve(ln net.Listener, id int, wg *sync.WaitGroup) {
	defer wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			if _, err := bufio.NewReader(c).ReadString('\n'); err == nil {
				fmt.Fprintf(c, "ok %d\n", id)
			}
		}()
	}
}

// TestHandoverAcrossReloads: clients connect without pause while the
// listener is replaced five times (the new one opened before the old one
// closes, as a reload does); every connection is answered.
func TestHandoverAcrossReloads(t *testing.T) {
	ln, err := Listen(context.Background(), Network, "127.0.0.1", "0", 0, net.ListenConfig{})
	if err != nil {
		t.Fatal(err)
	}
	cur := ln.(*Listener)
	addr := cur.Addr().String()
	// port 0 was resolved; later configurations name the real port
	_, port, _ := net.SplitHostPort(addr)
	mu.Lock()
	cur.s.key = Network + "/" + net.JoinHostPort("127.0.0.1", port)
	sockets[cur.s.key] = cur.s
	delete(sockets, Network+"/127.0.0.1:0")
	mu.Unlock()

	var servers sync.WaitGroup
	servers.Add(1)
	go serve(cur, 0, &servers)

	stop := make(chan struct{})
	var answered, failed atomic.Int64
	var clients sync.WaitGroup
	for range 8 {
		clients.Add(1)
		go func() {
			defer clients.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := net.DialTimeout("tcp", addr, 2*time.Second)
				if err != nil {
					failed.Add(1)
					continue
				}
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				fmt.Fprint(c, "hello\n")
				if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
					failed.Add(1)
				} else {
					answered.Add(1)
				}
				c.Close()
			}
		}()
	}
	// flowed waits until the clients have had 20 more answers: traffic
	// flows on each listener before it is replaced.
	flowed := func() {
		t.Helper()
		want := answered.Load() + 20
		for deadline := time.Now().Add(time.Minute); answered.Load() < want; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) { // a hang guard, not a measure
				t.Fatalf("%d answers, %d failures: the clients stalled", answered.Load(), failed.Load())
			}
		}
	}
	for i := 1; i <= 5; i++ {
		flowed()
		next, err := Listen(context.Background(), Network, "127.0.0.1", port, 0, net.ListenConfig{})
		if err != nil {
			t.Fatal(err)
		}
		servers.Add(1)
		go serve(next.(*Listener), i, &servers)
		if err := cur.Close(); err != nil {
			t.Fatal(err)
		}
		cur = next.(*Listener)
	}
	flowed()
	close(stop)
	clients.Wait()
	if failed.Load() != 0 || answered.Load() == 0 {
		t.Fatalf("%d connections failed, %d answered", failed.Load(), answered.Load())
	}
	if err := cur.Close(); err != nil {
		t.Fatal(err)
	}
	servers.Wait()
	if _, err := cur.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v", err)
	}
	mu.Lock()
	n := len(sockets)
	mu.Unlock()
	if n != 0 {
		t.Fatalf("%d sockets left open after the last listener closed", n)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatal("the socket is still listening after the last listener closed")
	}
	t.Logf("%d connections answered across 5 handovers", answered.Load())
}

func TestBadPort(t *testing.T) {
	if _, err := Listen(context.Background(), Network, "127.0.0.1", "http", 0, net.ListenConfig{}); err == nil {
		t.Fatal("a port name was taken")
	}
	if _, err := Listen(context.Background(), Network, "127.0.0.1", "65535", 1, net.ListenConfig{}); err == nil {
		t.Fatal("a port past 65535 was taken")
	}
}

// dialUnix connects to path and sends a line; it returns the answer.
func dialUnix(path string) (string, error) {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprint(c, "hello\n")
	return bufio.NewReader(c).ReadString('\n')
}

// TestUnixHandoverAcrossReloads: a second configuration on the same path
// shares the socket (nothing is unlinked or bound again); after the first
// closes, the second answers on the same file; after the last closes, the
// file is gone.
func TestUnixHandoverAcrossReloads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	first, err := ListenUnix(context.Background(), UnixNetwork, path+"|0600", "", 0, net.ListenConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var servers sync.WaitGroup
	servers.Add(2)
	go serve(first.(*Listener), 1, &servers)
	before, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := before.Mode().Perm(); got != 0o600 {
		t.Fatalf("mode %#o, want 0600", got)
	}
	if got, err := dialUnix(path); err != nil || got != "ok 1\n" {
		t.Fatalf("first configuration: %q, %v", got, err)
	}
	second, err := ListenUnix(context.Background(), UnixNetwork, path+"|0600", "", 0, net.ListenConfig{})
	if err != nil {
		t.Fatalf("the next configuration on the same path: %v", err)
	}
	go serve(second.(*Listener), 2, &servers)
	if err := first.(*Listener).Close(); err != nil {
		t.Fatal(err)
	}
	if got, err := dialUnix(path); err != nil || got != "ok 2\n" {
		t.Fatalf("after the handover: %q, %v", got, err)
	}
	after, err := os.Lstat(path)
	if err != nil || !os.SameFile(before, after) {
		t.Fatalf("the socket file was replaced across the handover (%v)", err)
	}
	if err := second.(*Listener).Close(); err != nil {
		t.Fatal(err)
	}
	servers.Wait()
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the socket file is left after the last listener closed: %v", err)
	}
}

// TestUnixPathHeldElsewhere: a socket on which another process listens is
// neither unlinked nor taken over, and the error names the address.
func TestUnixPathHeldElsewhere(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	other, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	var servers sync.WaitGroup
	servers.Add(1)
	go serve(other, 7, &servers)
	defer servers.Wait()
	defer other.Close()

	_, err = ListenUnix(context.Background(), UnixNetwork, path+"|0220", "", 0, net.ListenConfig{})
	if err == nil {
		t.Fatal("a live socket was taken over")
	}
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "unix-handover/"+path) {
		t.Fatalf("error %q does not say that unix-handover/%s is in use", err, path)
	}
	if got, err := dialUnix(path); err != nil || got != "ok 7\n" {
		t.Fatalf("the other process's socket after the refusal: %q, %v", got, err)
	}
}

// TestUnixStaleSocket: a socket file nobody listens on (its process was
// killed) is replaced.
func TestUnixStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	old, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	old.(*net.UnixListener).SetUnlinkOnClose(false)
	old.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatal(err)
	}
	ln, err := ListenUnix(context.Background(), UnixNetwork, path, "", 0, net.ListenConfig{})
	if err != nil {
		t.Fatalf("a stale socket was not replaced: %v", err)
	}
	defer ln.(*Listener).Close()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o200 {
		t.Fatalf("default mode %#o, want Caddy's 0200", got)
	}
}

// TestUnixNotASocket: a file that is not a socket is left alone.
func TestUnixNotASocket(t *testing.T) {
	dir := t.TempDir()
	for name, create := range map[string]func(string) error{
		"file":    func(p string) error { return os.WriteFile(p, []byte("keep"), 0o600) },
		"dir":     func(p string) error { return os.Mkdir(p, 0o700) },
		"symlink": func(p string) error { return os.Symlink("/dev/null", p) },
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, name)
			if err := create(path); err != nil {
				t.Fatal(err)
			}
			before, _ := os.Lstat(path)
			if ln, err := ListenUnix(context.Background(), UnixNetwork, path, "", 0, net.ListenConfig{}); err == nil {
				ln.(*Listener).Close()
				t.Fatal("bound over a file that is not a socket")
			} else if !strings.Contains(err.Error(), "not a socket") {
				t.Fatalf("error %q", err)
			}
			after, err := os.Lstat(path)
			if err != nil || !os.SameFile(before, after) {
				t.Fatalf("the file was touched: %v", err)
			}
		})
	}
}

// TestUnixReleaseOnlyOwnSocket: when the path no longer names the
// listener's own socket at its close, it is left alone.
func TestUnixReleaseOnlyOwnSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	ln, err := ListenUnix(context.Background(), UnixNetwork, path, "", 0, net.ListenConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	other, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := ln.(*Listener).Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("another socket's file was removed: %v", err)
	}
}

func TestSplitUnixAddress(t *testing.T) {
	for _, c := range []struct {
		in   string
		path string
		mode fs.FileMode
		ok   bool
	}{
		{"/run/a.sock", "/run/a.sock", 0o200, true},
		{"/run/a.sock|0600", "/run/a.sock", 0o600, true},
		{"/run/a.sock|0220", "/run/a.sock", 0o220, true},
		{"@abstract", "@abstract", 0o200, true},
		{"/run/a.sock|0400", "", 0, false}, // the owner could not connect
		{"/run/a.sock|rw", "", 0, false},
		{"/run/a.sock|01777", "", 0, false},
		{"/run/a.sock|", "", 0, false},
		{"|0600", "", 0, false},
		{"", "", 0, false},
	} {
		path, mode, err := SplitUnixAddress(c.in)
		if (err == nil) != c.ok || path != c.path || mode != c.mode {
			t.Errorf("SplitUnixAddress(%q) = %q, %#o, %v", c.in, path, mode, err)
		}
	}
}

// TestHandoverAcceptorsEachOnce: connections made at once, taken by the
// socket's several accepting goroutines, each reach the server once; the
// goroutines return when the last listener closes.
func TestHandoverAcceptorsEachOnce(t *testing.T) {
	ln, err := Listen(context.Background(), Network, "127.0.0.1", "0", 0, net.ListenConfig{})
	if err != nil {
		t.Fatal(err)
	}
	l := ln.(*Listener)
	const n = 200
	got := make(chan string, n)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			got <- c.RemoteAddr().String()
			c.Close()
		}
	}()
	var clients sync.WaitGroup
	for range n {
		clients.Go(func() {
			c, err := net.DialTimeout("tcp", l.Addr().String(), 10*time.Second)
			if err != nil {
				t.Error(err)
				return
			}
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, _ = c.Read(make([]byte, 1)) // until the server closes it
			c.Close()
		})
	}
	clients.Wait()
	seen := map[string]bool{}
	for range n {
		a := <-got
		if seen[a] {
			t.Errorf("%s handed on twice", a)
		}
		seen[a] = true
	}
	select {
	case a := <-got:
		t.Errorf("%s handed on after all %d", a, n)
	default:
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.s.stopped:
	case <-time.After(30 * time.Second):
		t.Fatalf("%d accepting goroutines still running after the last listener closed", l.s.loops.Load())
	}
}
