// Package attack drives hostile clients against a running gateway, for the
// end-to-end tests and the benchmarks: many connections that each send a
// request head declaring a large body, a byte or two of it, and wait.
package attack

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// SlowBodies is the memory attack on a gateway that buffers bodies: Conns
// connections, each sending Head(i) (a request line and headers, ending
// in a blank line) and then Body, and holding the connection open.
type SlowBodies struct {
	Addr  string             // host:port of the gateway
	Conns int                // connections
	Head  func(i int) string // the request head of connection i
	Body  []byte             // the part of the body sent after the head
	// Wait is how long, after the last connection has sent its bytes, a
	// connection still waits for an answer before it counts as held.
	// Default: 10s.
	Wait time.Duration
	// Expect, if set, ends the wait as soon as this many connections have
	// been answered: the others count as held.
	Expect int
	// Dialers is how many connections are opened at once. Default: 128.
	Dialers int
}

// Result is what the connections saw.
type Result struct {
	Sent     int         // connections that sent their bytes
	Answers  map[int]int // status -> connections that got it
	Held     int         // connections still open with no answer
	Failures int         // connections that could not be opened or written
	FirstErr error
}

func (r Result) String() string {
	return fmt.Sprintf("sent %d, answered %v, held without an answer %d, failed %d", r.Sent, r.Answers, r.Held, r.Failures)
}

// Run runs the attack. While every connection is still open (the held
// ones waiting for the gateway to cut them off), it calls during, then
// closes them all.
func (a SlowBodies) Run(during func()) Result {
	if a.Wait <= 0 {
		a.Wait = 10 * time.Second
	}
	if a.Dialers <= 0 {
		a.Dialers = 128
	}
	var (
		mu     sync.Mutex
		res    = Result{Answers: map[int]int{}}
		conns  = make([]net.Conn, a.Conns)
		sem    = make(chan struct{}, a.Dialers)
		sendWG sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		res.Failures++
		if res.FirstErr == nil {
			res.FirstErr = err
		}
		mu.Unlock()
	}
	for i := range a.Conns {
		sendWG.Add(1)
		sem <- struct{}{}
		go func() {
			defer sendWG.Done()
			defer func() { <-sem }()
			c, err := net.DialTimeout("tcp", a.Addr, 10*time.Second)
			if err != nil {
				fail(err)
				return
			}
			_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write(append([]byte(a.Head(i)), a.Body...)); err != nil {
				c.Close()
				fail(err)
				return
			}
			conns[i] = c
			mu.Lock()
			res.Sent++
			mu.Unlock()
		}()
	}
	sendWG.Wait()
	deadline := time.Now().Add(a.Wait)
	enough := make(chan struct{})
	answered := 0
	var readWG sync.WaitGroup
	for _, c := range conns {
		if c == nil {
			continue
		}
		readWG.Add(1)
		go func() {
			defer readWG.Done()
			_ = c.SetReadDeadline(deadline)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					res.Held++
					return
				}
				res.Answers[0]++ // closed without an answer
			} else {
				resp.Body.Close()
				res.Answers[resp.StatusCode]++
			}
			if answered++; answered == a.Expect {
				close(enough)
			}
		}()
	}
	go func() {
		select {
		case <-enough:
		case <-time.After(time.Until(deadline)):
			return
		}
		for _, c := range conns { // the others: held
			if c != nil {
				_ = c.SetReadDeadline(time.Now())
			}
		}
	}()
	readWG.Wait()
	if during != nil {
		during()
	}
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
	return res
}

// Status returns a /proc/<pid>/status field in bytes (VmRSS, VmHWM, …).
func Status(pid int, field string) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(raw)) {
		rest, ok := strings.CutPrefix(line, field+":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("attack: %s: unexpected %q", field, line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		return kb << 10, err
	}
	return 0, fmt.Errorf("attack: no %s in /proc/%d/status", field, pid)
}
