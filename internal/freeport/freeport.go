// Package freeport hands out loopback TCP ports for tests and benchmarks
// that start servers. A closed listener's port can come back from the
// kernel at once, so two callers asking in turn could get the same port;
// Get never returns a port it returned before in this process.
package freeport

import (
	"net"
	"sync"
)

var handedOut sync.Map

// Get returns a loopback TCP port that was free a moment ago and that no
// earlier call in this process returned.
func Get() (int, error) {
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if _, dup := handedOut.LoadOrStore(port, true); !dup {
			return port, nil
		}
	}
}
