package listen

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
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
	sockets[net.JoinHostPort("127.0.0.1", port)] = cur.s
	cur.s.addr = net.JoinHostPort("127.0.0.1", port)
	delete(sockets, "127.0.0.1:0")
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
	for i := 1; i <= 5; i++ {
		time.Sleep(50 * time.Millisecond)
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
	time.Sleep(50 * time.Millisecond)
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
