// Package freeport hands out TCP ports for tests and benchmarks that start
// servers in other processes.
//
// A port found by binding port 0 comes from the kernel's ephemeral range,
// the same range every outgoing connection on the machine draws from, so
// between the test choosing it and the server binding it a client socket
// (of this process or of another test binary running beside it) can take
// it. Get therefore chooses below the ephemeral range, checks that the port
// is free on loopback and on every interface, and reserves it across
// processes with a byte-range lock on a shared file, which the kernel
// releases when the process exits. Within a process it never returns a
// port twice.
package freeport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// lowest is the first port Get considers; below it live the well-known and
// commonly configured service ports.
const lowest = 15000

var (
	mu        sync.Mutex
	handedOut = map[int]bool{}
	lockFile  *os.File
	lockErr   error
	lockOnce  sync.Once
)

// Get returns a TCP port that is free on loopback and on every interface,
// that no earlier call in this process returned, and that no other process
// using this package holds.
func Get() (int, error) {
	lo, hi := candidates()
	if hi-lo < 100 {
		return ephemeral()
	}
	mu.Lock()
	defer mu.Unlock()
	start := lo + rand.IntN(hi-lo)
	for i := range hi - lo {
		port := lo + (start-lo+i)%(hi-lo)
		if handedOut[port] || !bindable(port) || !reserve(port) {
			continue
		}
		handedOut[port] = true
		return port, nil
	}
	return 0, errors.New("freeport: no free port below the ephemeral range")
}

// candidates is the range [lo, hi) below the kernel's ephemeral ports.
func candidates() (lo, hi int) {
	hi = 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				hi = n
			}
		}
	}
	return lowest, hi
}

// bindable reports whether port can be bound on loopback and on the
// wildcard addresses, as a server given ":port" would.
func bindable(port int) bool {
	for _, addr := range []string{"127.0.0.1", "0.0.0.0", "[::]"} {
		l, err := net.Listen("tcp", fmt.Sprintf("%s:%d", addr, port))
		if err != nil {
			if addr == "[::]" && isNoIPv6(err) {
				continue
			}
			return false
		}
		l.Close()
	}
	return true
}

func isNoIPv6(err error) bool {
	return errors.Is(err, syscall.EAFNOSUPPORT) || errors.Is(err, syscall.EADDRNOTAVAIL)
}

// reserve takes a write lock on byte port of the shared lock file. Locks of
// one process never conflict with each other, which handedOut covers; the
// kernel drops them all when the process exits. Without a lock file (a
// read-only temporary directory) every port counts as reserved by us.
func reserve(port int) bool {
	lockOnce.Do(func() {
		lockFile, lockErr = os.OpenFile(filepath.Join(os.TempDir(), "mxgate-freeport.lock"), os.O_RDWR|os.O_CREATE, 0o666)
	})
	if lockErr != nil {
		return true
	}
	lk := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: 0, Start: int64(port), Len: 1}
	return syscall.FcntlFlock(lockFile.Fd(), syscall.F_SETLK, &lk) == nil
}

// ephemeral is the fallback where no range below the ephemeral ports is
// left: a port the kernel picks.
func ephemeral() (int, error) {
	mu.Lock()
	defer mu.Unlock()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !handedOut[port] {
			handedOut[port] = true
			return port, nil
		}
	}
}
